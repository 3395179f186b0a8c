"""Image sources: the dataset building blocks (:mod:`~enf.data.images.base`), images bundled inside installed
wheels (:mod:`~enf.data.images.bundled`), images read from a local root (:mod:`~enf.data.images.local`) and
the registry that names them all (:func:`image_dataset`, :mod:`~enf.data.images.registry`)."""

from __future__ import annotations

from enf.data.images.base import ArrayImageDataset, FileImageDataset, ImageDataset, collate, load_image_file
from enf.data.images.bundled import NATURAL_TEST_SOURCES, NATURAL_TRAIN_SOURCES
from enf.data.images.registry import IMAGE_DATASETS, ImageDatasetName, image_dataset

__all__ = [
    "IMAGE_DATASETS",
    "NATURAL_TEST_SOURCES",
    "NATURAL_TRAIN_SOURCES",
    "ArrayImageDataset",
    "FileImageDataset",
    "ImageDataset",
    "ImageDatasetName",
    "collate",
    "image_dataset",
    "load_image_file",
]
