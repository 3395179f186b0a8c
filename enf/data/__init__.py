"""Data: the field contract at the root, sources by kind, the Lightning data modules together.

- the contract: batch keys (:mod:`~enf.data.keys`), what a dataset is (:class:`FieldSpec`,
  :mod:`~enf.data.field`), the pixel/coordinate convention (:mod:`~enf.data.grid`), HDF5 I/O
  (:mod:`~enf.data.hdf5`);
- sources: images (:mod:`enf.data.images`: bundled, local, the registry), 3-D shapes (:mod:`enf.data.shapes`:
  meshes, signed distances, ShapeNet, deduplication), landmark shapes (:mod:`~enf.data.landmarks`) and PDE
  trajectories (:mod:`enf.data.pde`, generators in :mod:`enf.data.pde.solvers`);
- the data modules (:mod:`enf.data.modules`: ``FieldDataModule``, ``ImageDataModule``, ``SDFDataModule``,
  ``PDEDataModule``, ``PDETrajectoryDataModule``, ``LandmarkDataModule``, ``LatentCloudDataModule``), imported
  lazily (they need Lightning, which is slow to import), so ``import enf.data`` stays light.

Module paths of the previous layout (``enf.data.sdf_module``, ``enf.data.pde.sphere``...) still import
(:mod:`enf._legacy`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from enf.data.images import (
    IMAGE_DATASETS,
    NATURAL_TEST_SOURCES,
    NATURAL_TRAIN_SOURCES,
    ArrayImageDataset,
    FileImageDataset,
    ImageDataset,
    ImageDatasetName,
    collate,
    image_dataset,
)
from enf.data.landmarks import LANDMARK_DATASETS, LandmarkDataset, landmark_dataset, normalize_positions

if TYPE_CHECKING:
    from enf.data.modules.field import FieldDataModule
    from enf.data.modules.images import ImageDataModule
    from enf.data.modules.landmarks import LandmarkDataModule
    from enf.data.modules.latents import LatentCloudDataModule
    from enf.data.modules.pde_frames import PDEDataModule
    from enf.data.modules.pde_trajectories import PDETrajectoryDataModule
    from enf.data.modules.sdf import SDFDataModule

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
    "FieldDataModule": "enf.data.modules.field",
    "ImageDataModule": "enf.data.modules.images",
    "LandmarkDataModule": "enf.data.modules.landmarks",
    "LatentCloudDataModule": "enf.data.modules.latents",
    "SDFDataModule": "enf.data.modules.sdf",
    "PDEDataModule": "enf.data.modules.pde_frames",
    "PDETrajectoryDataModule": "enf.data.modules.pde_trajectories",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enf.data' has no attribute {name!r}")
