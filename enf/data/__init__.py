"""Data: the field contract (keys, ``FieldSpec``), the pixel/coordinate convention, image datasets (bundled
and local), the field data modules, HDF5 I/O.

Landmark shapes (``landmark_dataset``: trilobite cephala and mosquito wings from ktch, hand skeletons from
geomstats' data files) feed the shape VAE. The data modules (``FieldDataModule``, ``ImageDataModule``, ``LandmarkDataModule``, ``PDEDataModule``,
``PDETrajectoryDataModule``) are imported lazily (they need
Lightning, which is slow to import), so ``import enf.data`` stays light for code that only reads data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from enf.data.base import ArrayImageDataset, FileImageDataset, ImageDataset, collate
from enf.data.bundled import NATURAL_TEST_SOURCES, NATURAL_TRAIN_SOURCES
from enf.data.field import FIELD_KINDS, FieldKind, FieldSpec
from enf.data.grid import (
    image_to_signal,
    imshow_extent,
    pixel_coords,
    plane_grid_to_image,
    rotate_images,
    signal_to_image,
)
from enf.data.hdf5 import read_h5, write_h5
from enf.data.images import IMAGE_DATASETS, ImageDatasetName, image_dataset
from enf.data.landmarks import LANDMARK_DATASETS, LandmarkDataset, landmark_dataset, normalize_positions

if TYPE_CHECKING:
    from enf.data.datamodule import ImageDataModule
    from enf.data.field_module import FieldDataModule
    from enf.data.landmark_module import LandmarkDataModule
    from enf.data.latent_module import LatentCloudDataModule
    from enf.data.pde.datamodule import PDEDataModule
    from enf.data.pde.trajectory_module import PDETrajectoryDataModule
    from enf.data.sdf_module import SDFDataModule

__all__ = [
    "FIELD_KINDS",
    "IMAGE_DATASETS",
    "LANDMARK_DATASETS",
    "LandmarkDataModule",
    "NATURAL_TEST_SOURCES",
    "NATURAL_TRAIN_SOURCES",
    "ArrayImageDataset",
    "FieldDataModule",
    "FieldKind",
    "FieldSpec",
    "FileImageDataset",
    "ImageDataModule",
    "ImageDataset",
    "ImageDatasetName",
    "LandmarkDataset",
    "LatentCloudDataModule",
    "PDEDataModule",
    "PDETrajectoryDataModule",
    "SDFDataModule",
    "collate",
    "image_dataset",
    "image_to_signal",
    "landmark_dataset",
    "normalize_positions",
    "imshow_extent",
    "pixel_coords",
    "plane_grid_to_image",
    "read_h5",
    "rotate_images",
    "signal_to_image",
    "write_h5",
]


_LAZY = {
    "FieldDataModule": "enf.data.field_module",
    "ImageDataModule": "enf.data.datamodule",
    "LandmarkDataModule": "enf.data.landmark_module",
    "LatentCloudDataModule": "enf.data.latent_module",
    "SDFDataModule": "enf.data.sdf_module",
    "PDEDataModule": "enf.data.pde.datamodule",
    "PDETrajectoryDataModule": "enf.data.pde.trajectory_module",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enf.data' has no attribute {name!r}")
