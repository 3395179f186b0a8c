"""Image dataset building blocks: in-memory arrays and lazily decoded image files.

Every image dataset in ``enf`` follows the field contract of :mod:`enf.data.keys`: item ``i`` is a dict with

* ``coords``: float32 ``[H * W, 2]``, :func:`enf.data.grid.pixel_coords` ``(H, W)`` (one tensor shared by
  every item of the dataset, computed once);
* ``signal``: float32 ``[H * W, C]`` with values in ``[0, 1]``, the image flattened row-major in the order of
  :func:`enf.data.grid.image_to_signal` (``signal[r * W + c]`` is pixel ``(r, c)``);
* ``index``: ``i``, the position of the item in this split (use it to index per-sample latent tables);
* ``label``: int class label, only for labelled datasets (MNIST, CIFAR-10, STL-10).

All images of one dataset share one shape, available without loading as ``dataset.image_shape``;
``dataset._image(i)`` decodes image ``i`` as ``[H, W, C]``. :func:`collate` stacks any such items.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from enf.data.grid import pixel_coords
from enf.data.keys import COORDS, INDEX, LABEL, SIGNAL

__all__ = ["ArrayImageDataset", "FileImageDataset", "ImageDataset", "collate", "load_image_file"]

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Base class: a split of images of one shape ``image_shape = (H, W, C)``.

    Subclasses implement ``__len__``, ``_image(i) -> float32 array [H, W, C] in [0, 1]`` and
    ``rows(start, stop)`` (a contiguous part of the split; ``head(n)`` is ``rows(0, n)``).
    """

    name: str
    split: str
    image_shape: tuple[int, int, int]
    labels: np.ndarray | None = None

    def _image(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def head(self, num_samples: int) -> ImageDataset:
        """The first ``num_samples`` items of this split (all of them if there are fewer)."""
        return self.rows(0, self._check_head(num_samples))

    def rows(self, start: int, stop: int) -> ImageDataset:
        """Items ``start .. stop - 1`` of this split, in order (``0 <= start < stop <= len(self)``)."""
        raise NotImplementedError

    def _check_rows(self, start: int, stop: int) -> None:
        if not 0 <= start < stop <= len(self):
            raise ValueError(
                f"{self.name}/{self.split}: rows [{start}, {stop}) are not within its {len(self)} items"
            )

    def __len__(self) -> int:
        raise NotImplementedError

    def _check_head(self, num_samples: int) -> int:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if num_samples > len(self):
            log.warning(
                "%s/%s has %d images; num_samples=%d keeps all of them",
                self.name,
                self.split,
                len(self),
                num_samples,
            )
        return min(num_samples, len(self))

    @property
    def coords(self) -> Tensor:
        """``pixel_coords(H, W)``, float32 ``[H * W, 2]``: computed once, shared by every item."""
        coords = self.__dict__.get("_coords")
        if coords is None:
            coords = pixel_coords(self.image_shape[0], self.image_shape[1])
            self.__dict__["_coords"] = coords
        return coords

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name}/{self.split} of length {len(self)}")
        index %= len(self)
        image = torch.from_numpy(self._image(index))  # [H, W, C]
        item = {COORDS: self.coords, SIGNAL: image.reshape(-1, image.shape[-1]), INDEX: index}
        if self.labels is not None:
            item[LABEL] = int(self.labels[index])
        return item

    @property
    def num_channels(self) -> int:
        return self.image_shape[2]

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"{cls}(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.image_shape})"


def _validate_array(images: np.ndarray, name: str) -> np.ndarray:
    if images.ndim == 3:  # [N, H, W] -> [N, H, W, 1]
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0 or 0 in images.shape[1:]:
        raise ValueError(
            f"dataset {name!r}: images must have shape [N, H, W, C] with N >= 1, got {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"dataset {name!r}: images must be uint8 or floating point, got dtype {images.dtype}"
        )
    finite = np.isfinite(images)
    if not finite.all():
        bad = np.argwhere(~finite.reshape(images.shape[0], -1).all(axis=1)).ravel()
        raise ValueError(
            f"dataset {name!r}: {bad.size} image(s) contain NaN or inf values "
            f"(first indices: {bad[:5].tolist()})"
        )
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"dataset {name!r}: float images must lie in [0, 1], got values in [{low}, {high}]")
    return images


class ArrayImageDataset(ImageDataset):
    """Images held in an array ``[N, H, W, C]`` (or ``[N, H, W]`` for grayscale).

    Args:
        images: uint8 (0..255, scaled to ``[0, 1]`` on access; may be a ``np.memmap``) or float in ``[0, 1]``.
            NaN/inf or out-of-range float values raise ``ValueError`` naming the dataset.
        name: dataset name used in messages.
        split: split name (``"train"``/``"test"``...).
        labels: optional integer labels ``[N]``.
    """

    def __init__(
        self, images: np.ndarray, *, name: str, split: str, labels: np.ndarray | Sequence[int] | None = None
    ) -> None:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        self.images = _validate_array(np.asanyarray(images), name)
        self.name = name
        self.split = split
        self.image_shape = tuple(int(s) for s in self.images.shape[1:])  # type: ignore[assignment]
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (self.images.shape[0],):
                raise ValueError(
                    f"dataset {name!r}: labels must have shape [{self.images.shape[0]}], got {labels.shape}"
                )
        self.labels = labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _image(self, i: int) -> np.ndarray:
        img = np.asarray(self.images[i])
        if img.dtype == np.uint8:
            return img.astype(np.float32) / np.float32(255.0)
        return np.ascontiguousarray(img, dtype=np.float32)

    def rows(self, start: int, stop: int) -> ArrayImageDataset:
        self._check_rows(start, stop)
        out = ArrayImageDataset.__new__(ArrayImageDataset)
        out.__dict__.update(self.__dict__)
        out.images = self.images[start:stop]
        out.labels = None if self.labels is None else self.labels[start:stop]
        return out


def load_image_file(path: Path, *, grayscale: bool, size: int | None, center_crop: bool = True) -> np.ndarray:
    """Decode one 8-bit image file with PIL into uint8 ``[H, W, C]`` (C = 1 if ``grayscale`` else 3).

    With ``size``: centre-crop to a square (if ``center_crop``) and resize to ``size x size`` (bicubic,
    antialiased); without ``center_crop`` the image is resized to ``size x size`` directly (aspect changes).
    """
    with Image.open(path) as im:
        im = im.convert("L" if grayscale else "RGB")
        if size is not None:
            if center_crop:
                w, h = im.size
                side = min(w, h)
                left, top = (w - side) // 2, (h - side) // 2
                im = im.crop((left, top, left + side, top + side))
            if im.size != (size, size):
                im = im.resize((size, size), resample=Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


class FileImageDataset(ImageDataset):
    """Images decoded from files on access (for folders and CelebA: nothing is held in memory).

    Args:
        paths: image files, in dataset order.
        image_shape: ``(H, W, C)`` every decoded image must have (checked on access).
        name, split: used in messages.
        grayscale: decode as one channel (``"L"``) instead of RGB.
        size: optional square output size (centre crop + resize, see :func:`load_image_file`).
        center_crop: centre-crop to a square before resizing.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        image_shape: tuple[int, int, int],
        name: str,
        split: str,
        grayscale: bool = False,
        size: int | None = None,
        center_crop: bool = True,
    ) -> None:
        if len(paths) == 0:
            raise ValueError(f"dataset {name!r}/{split}: no image files")
        self.paths = [Path(p) for p in paths]
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.name = name
        self.split = split
        self.grayscale = grayscale
        self.size = size
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, i: int) -> np.ndarray:
        path = self.paths[i]
        try:
            arr = load_image_file(
                path, grayscale=self.grayscale, size=self.size, center_crop=self.center_crop
            )
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for corrupt/truncated data
            raise ValueError(
                f"dataset {self.name!r}: cannot decode {path} ({type(err).__name__}: {err}); "
                "the file is corrupt or not an image"
            ) from err
        if arr.shape != self.image_shape:
            raise ValueError(
                f"dataset {self.name!r}: {path} decodes to shape {arr.shape}, expected {self.image_shape}"
            )
        return arr.astype(np.float32) / np.float32(255.0)

    def rows(self, start: int, stop: int) -> FileImageDataset:
        self._check_rows(start, stop)
        out = FileImageDataset.__new__(FileImageDataset)
        out.__dict__.update(self.__dict__)
        out.paths = self.paths[start:stop]
        out.labels = None if self.labels is None else self.labels[start:stop]
        return out


def _as_tensor(key: str, value: object, position: int) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, np.bool_)):
        return torch.tensor(bool(value))
    if isinstance(value, (int, np.integer)):
        return torch.tensor(int(value), dtype=torch.int64)
    if isinstance(value, (float, np.floating)):
        return torch.tensor(float(value), dtype=torch.float32)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(
        f"collate: item {position} has {key!r} of type {type(value).__name__}; "
        "items may hold tensors, numpy arrays, ints, floats or bools only"
    )


def collate(items: Sequence[Mapping[str, object]]) -> dict[str, Tensor]:
    """Stack dataset items into a batch: every key gets a leading batch dimension ``B``.

    Tensors (and numpy arrays) ``[...]`` become ``[B, ...]``; ints become int64 ``[B]``, floats float32
    ``[B]``, bools bool ``[B]``. E.g. image items give ``coords [B, N, 2]``, ``signal [B, N, C]``,
    ``index [B]`` (and ``label [B]``).

    Raises:
        ValueError: ``items`` is empty, the items do not all have the same keys, or a key has different
            shapes/dtypes across items (the message names the key).
        TypeError: a value is not a tensor, numpy array, int, float or bool.
    """
    if len(items) == 0:
        raise ValueError("cannot collate an empty list of items")
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(
                f"collate: item {position} is a {type(item).__name__}; datasets must yield dicts with the keys "
                "of enf.data.keys (coords, signal, index, ...)"
            )
    keys = list(items[0])
    for position, item in enumerate(items[1:], start=1):
        if set(item) != set(keys):
            missing, extra = sorted(set(keys) - set(item)), sorted(set(item) - set(keys))
            raise ValueError(
                f"collate: item {position} has keys {sorted(item)} but item 0 has {sorted(keys)} "
                f"(missing {missing}, extra {extra}); every item of a batch needs the same keys"
            )
    batch = {}
    for key in keys:
        values = [_as_tensor(key, item[key], position) for position, item in enumerate(items)]
        first = values[0]
        for position, value in enumerate(values[1:], start=1):
            if value.shape != first.shape or value.dtype != first.dtype:
                raise ValueError(
                    f"collate: {key!r} of item {position} has shape {tuple(value.shape)} and dtype "
                    f"{value.dtype} but item 0 has shape {tuple(first.shape)} and dtype {first.dtype}; "
                    f"every item of a batch needs the same {key!r} shape"
                )
        batch[key] = torch.stack(values)
    return batch
