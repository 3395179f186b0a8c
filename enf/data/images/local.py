"""Image datasets read from a local root given by the user (nothing is downloaded).

* ``folder``: any folder of PNG/JPEG files.
* ``cifar10``: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (the "python version" pickles).
* ``stl10``: ``ROOT/stl10_binary/{train,test}_X.bin`` (+ optional ``_y.bin`` labels), 96x96x3.
* ``celeba``: ``ROOT/celeba/img_align_celeba/*.jpg`` + ``ROOT/celeba/list_eval_partition.txt``, centre-cropped
  and resized to ``image_size`` (default 64).

These are the layouts torchvision uses, so an existing torchvision data root works as is.
"""

from __future__ import annotations

import logging
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from enf.data.images.base import ArrayImageDataset, FileImageDataset

__all__ = ["celeba_dataset", "cifar10_dataset", "folder_dataset", "stl10_dataset"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_STL_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
_CELEBA_URL = (
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/img_align_celeba.zip, Eval/)"
)


def _check_split(split: str, valid: tuple[str, ...], name: str) -> None:
    if split not in valid:
        raise ValueError(f"dataset {name!r}: unknown split {split!r}; choose one of {list(valid)}")


def _require_root(root: str | Path | None, name: str, how: str) -> Path:
    if root is None:
        raise FileNotFoundError(f"dataset {name!r} is read from a local root: pass root=... . {how}")
    return Path(root).expanduser()


# --------------------------------------------------------------------------------------------- folder
def _check_image_file(path: Path, folder: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file after PIL has parsed its header and verified its structure.

    ``Image.verify`` checks the PNG chunk checksums (so truncated or altered PNGs are caught) without
    decoding the pixels; for JPEG it checks the markers. Raises ``ValueError`` naming the file.
    """
    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()
    except Image.UnidentifiedImageError as err:
        raise ValueError(
            f"image folder {folder}: {path} is not an image PIL can read ({err}); remove or replace the file"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise ValueError(
            f"image folder {folder}: {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "remove or replace the file"
        ) from err
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"image folder {folder}: {path} has an empty size {size[0]}x{size[1]} (WxH)")
    return size


def folder_dataset(
    *,
    root: str | Path | None,
    split: str,
    image_size: int | None = None,
    grayscale: bool = False,
    center_crop: bool = True,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    recursive: bool = False,
) -> FileImageDataset:
    """PNG/JPEG files of a folder (sorted by path), decoded on access.

    Args:
        root: the folder.
        split: ``"train"``, ``"test"`` or ``"all"``. A seeded permutation (``split_seed``) of the sorted files
            picks ``max(1, round(test_fraction * N))`` test files; each split keeps sorted-path order.
        image_size: resize every image to ``image_size x image_size`` (after a centre crop to a square if
            ``center_crop``). Without it all images must have the same size.

    Every file is checked when the dataset is built (PIL parses its header and verifies its structure):
    a corrupt file, or one that is not an image, raises ``ValueError`` naming it.
        grayscale: one channel instead of RGB.
        recursive: also look in sub-folders.
    """
    _check_split(split, ("train", "test", "all"), "folder")
    folder = _require_root(root, "folder", "Give the folder that holds the PNG/JPEG files.")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a directory")
    pattern = "**/*" if recursive else "*"
    paths = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"image folder {folder} contains no PNG/JPEG files ({', '.join(IMAGE_SUFFIXES)})")
    channels = 1 if grayscale else 3
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    sizes = [_check_image_file(p, folder) for p in paths]  # every file, before any batch is drawn
    if image_size is not None:
        shape = (image_size, image_size, channels)
    else:
        first_size = None
        for p, size in zip(paths, sizes, strict=True):
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise ValueError(
                    f"image folder {folder} holds images of different sizes: {paths[0].name} is "
                    f"{first_size[0]}x{first_size[1]} (WxH) but {p.name} is {size[0]}x{size[1]}; "
                    "pass image_size=... to resize them all"
                )
        assert first_size is not None
        shape = (first_size[1], first_size[0], channels)
    if split != "all":
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if len(paths) < 2:
            raise ValueError(
                f"image folder {folder} has only {len(paths)} file; a train/test split needs >= 2"
            )
        num_test = min(len(paths) - 1, max(1, round(test_fraction * len(paths))))
        is_test = np.zeros(len(paths), dtype=bool)
        is_test[np.random.default_rng(split_seed).permutation(len(paths))[:num_test]] = True
        paths = [p for p, t in zip(paths, is_test, strict=True) if t == (split == "test")]
    log.info("folder %s/%s: %d images of shape %s", folder, split, len(paths), shape)
    return FileImageDataset(
        paths,
        image_shape=shape,
        name=f"folder:{folder}",
        split=split,
        grayscale=grayscale,
        size=image_size,
        center_crop=center_crop,
    )


# -------------------------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: numpy arrays and plain containers only (no arbitrary code)."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str):
        if (module == "numpy" or module.startswith(("numpy.core", "numpy._core"))) and name in self._ALLOWED:
            return super().find_class(module, name)
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return super().find_class("copyreg", name)
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles written by Python 3
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            raw = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"CIFAR-10 batch {path} is corrupt or not a CIFAR pickle: {err}") from err
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"CIFAR-10 batch {path} has keys {sorted(batch)}, expected 'data' and 'labels'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR-10 batch {path}: 'data' must be [N, 3072], got {data.shape}")
    # each row: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    return np.ascontiguousarray(images), labels


def cifar10_dataset(*, root: str | Path | None, split: str) -> ArrayImageDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (train 50,000, test 10,000; 32x32x3, labels 0..9)."""
    _check_split(split, ("train", "test"), "cifar10")
    how = f"Download {_CIFAR_URL} and unpack it under the root: tar -xzf cifar-10-python.tar.gz -C ROOT"
    root_path = _require_root(root, "cifar10", how)
    folder = root_path / "cifar-10-batches-py"
    if not folder.is_dir() and (root_path / "test_batch").is_file():
        folder = root_path  # root is the batches folder itself
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [str(folder / n) for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 files not found: {missing[0]}{' and others' if len(missing) > 1 else ''} "
            f"(looked in {folder}). {how.replace('ROOT', str(root_path))} "
            f"(this creates {root_path}/cifar-10-batches-py/)"
        )
    parts = [_load_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ArrayImageDataset(images, labels=labels, name="cifar10", split=split)


# ---------------------------------------------------------------------------------------------- STL-10
_STL_IMAGE_BYTES = 3 * 96 * 96


def stl10_dataset(*, root: str | Path | None, split: str) -> ArrayImageDataset:
    """STL-10 from ``root/stl10_binary/{split}_X.bin`` (train 5,000, test 8,000; 96x96x3), memory-mapped.

    Each image in the ``.bin`` file is 3 channel planes (R, G, B) of 96x96 bytes stored column-major
    (column by column); labels from ``{split}_y.bin`` (1..10 on disk) are returned as 0..9.
    """
    _check_split(split, ("train", "test", "unlabeled"), "stl10")
    how = f"Download {_STL_URL} and unpack it under the root: tar -xzf stl10_binary.tar.gz -C ROOT"
    root_path = _require_root(root, "stl10", how)
    folder = root_path / "stl10_binary"
    x_path = folder / f"{split}_X.bin"
    if not x_path.is_file():
        raise FileNotFoundError(
            f"STL-10 file not found: {x_path}. {how.replace('ROOT', str(root_path))} (this creates {folder}/)"
        )
    size = x_path.stat().st_size
    if size == 0 or size % _STL_IMAGE_BYTES:
        raise ValueError(
            f"STL-10 file {x_path} has {size} bytes, not a multiple of {_STL_IMAGE_BYTES} (corrupt?)"
        )
    raw = np.memmap(x_path, dtype=np.uint8, mode="r", shape=(size // _STL_IMAGE_BYTES, 3, 96, 96))
    images = raw.transpose(0, 3, 2, 1)  # [N, C, col, row] -> [N, row, col, C]
    labels = None
    y_path = folder / f"{split}_y.bin"
    if y_path.is_file():
        labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"STL-10 labels {y_path} hold {labels.size} entries for {images.shape[0]} images"
            )
    return ArrayImageDataset(images, labels=labels, name="stl10", split=split)


# ---------------------------------------------------------------------------------------------- CelebA
_CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}


def celeba_dataset(
    *, root: str | Path | None, split: str, image_size: int | None = 64, grayscale: bool = False
) -> FileImageDataset:
    """Aligned CelebA (``root/celeba/img_align_celeba/*.jpg``), official partition, centre crop + resize.

    Splits from ``list_eval_partition.txt``: train (162,770), val (19,867), test (19,962). Each 178x218 image
    is centre-cropped to 178x178 and resized to ``image_size`` (``None`` keeps 178x178).
    """
    _check_split(split, tuple(_CELEBA_SPLITS), "celeba")
    how = (
        f"Download img_align_celeba.zip and list_eval_partition.txt from {_CELEBA_URL}, then: "
        "mkdir -p ROOT/celeba && unzip img_align_celeba.zip -d ROOT/celeba && "
        "mv list_eval_partition.txt ROOT/celeba/"
    )
    root_path = _require_root(root, "celeba", how)
    folder = root_path / "celeba"
    image_dir, partition = folder / "img_align_celeba", folder / "list_eval_partition.txt"
    for needed in (partition, image_dir):
        if not needed.exists():
            raise FileNotFoundError(
                f"CelebA not found: {needed} does not exist. {how.replace('ROOT', str(root_path))}"
            )
    code = _CELEBA_SPLITS[split]
    files = []
    for line_no, line in enumerate(partition.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{partition}:{line_no}: expected '<file> <0|1|2>', got {line!r}")
        if int(parts[1]) == code:
            files.append(image_dir / parts[0])
    if not files:
        raise ValueError(f"{partition} lists no images for split {split!r} (code {code})")
    for p in (files[0], files[-1]):
        if not p.is_file():
            raise FileNotFoundError(
                f"CelebA image {p} listed in {partition} is missing; unpack img_align_celeba.zip"
            )
    if image_size is None:
        with Image.open(files[0]) as im:
            image_size = min(im.size)
    shape = (image_size, image_size, 1 if grayscale else 3)
    return FileImageDataset(
        files, image_shape=shape, name="celeba", split=split, grayscale=grayscale, size=image_size
    )
