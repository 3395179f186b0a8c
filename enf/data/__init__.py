"""Data: the pixel/coordinate convention, image datasets (bundled and local), the image datamodule, HDF5 I/O.

``ImageDataModule`` is imported lazily (it needs Lightning, which is slow to import), so ``import enf.data``
stays light for code that only reads data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enf.data.base import ArrayImageDataset, FileImageDataset, ImageDataset, collate
from enf.data.bundled import NATURAL_TEST_SOURCES, NATURAL_TRAIN_SOURCES
from enf.data.grid import image_to_signal, imshow_extent, pixel_coords, signal_to_image
from enf.data.hdf5 import read_h5, write_h5
from enf.data.images import IMAGE_DATASETS, ImageDatasetName, image_dataset

if TYPE_CHECKING:
    from enf.data.datamodule import ImageDataModule

__all__ = [
    "IMAGE_DATASETS",
    "NATURAL_TEST_SOURCES",
    "NATURAL_TRAIN_SOURCES",
    "ArrayImageDataset",
    "FileImageDataset",
    "ImageDataModule",
    "ImageDataset",
    "ImageDatasetName",
    "collate",
    "image_dataset",
    "image_to_signal",
    "imshow_extent",
    "pixel_coords",
    "read_h5",
    "signal_to_image",
    "write_h5",
]


def __getattr__(name: str) -> Any:
    if name == "ImageDataModule":
        from enf.data.datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(f"module 'enf.data' has no attribute {name!r}")
