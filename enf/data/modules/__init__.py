"""The Lightning data modules, one per kind of input, all following the field contract of
:mod:`enf.data.keys`: :class:`FieldDataModule` (the base of every field dataset), :class:`ImageDataModule`,
:class:`SDFDataModule`, :class:`PDEDataModule` (frames), :class:`PDETrajectoryDataModule` (whole
trajectories), :class:`LandmarkDataModule` and :class:`LatentCloudDataModule` (for the shape VAE).

Imported lazily: they need Lightning, which is slow to import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enf.data.modules.field import FieldDataModule
    from enf.data.modules.images import ImageDataModule
    from enf.data.modules.landmarks import LandmarkDataModule
    from enf.data.modules.latents import LatentCloudDataModule
    from enf.data.modules.pde_frames import PDEDataModule
    from enf.data.modules.pde_trajectories import PDETrajectoryDataModule
    from enf.data.modules.sdf import SDFDataModule

__all__ = [
    "FieldDataModule",
    "ImageDataModule",
    "LandmarkDataModule",
    "LatentCloudDataModule",
    "PDEDataModule",
    "PDETrajectoryDataModule",
    "SDFDataModule",
]

_LAZY = {
    "FieldDataModule": "enf.data.modules.field",
    "ImageDataModule": "enf.data.modules.images",
    "LandmarkDataModule": "enf.data.modules.landmarks",
    "LatentCloudDataModule": "enf.data.modules.latents",
    "PDEDataModule": "enf.data.modules.pde_frames",
    "PDETrajectoryDataModule": "enf.data.modules.pde_trajectories",
    "SDFDataModule": "enf.data.modules.sdf",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enf.data.modules' has no attribute {name!r}")
