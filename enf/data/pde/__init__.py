"""PDE datasets: generators (``enf data generate``), the HDF5 trajectory format, and loaders.

Generators are :class:`PDESpec` objects registered by name; their modules are imported lazily so that an
optional solver dependency (torch-harmonics, Dedalus) is only needed for the generator that uses it.
The loaders (:class:`PDETrajectories`, :class:`PDEFrames`, :func:`channel_statistics`) and the Lightning
:class:`PDEDataModule` are imported lazily too, so ``import enf.data.pde`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from enf.data.pde.base import PDESpec, trajectory_seed

if TYPE_CHECKING:
    from enf.data.modules.pde_frames import PDEDataModule
    from enf.data.modules.pde_trajectories import PDETrajectoryDataModule
    from enf.data.pde.dataset import PDEFrames, PDETrajectories, channel_statistics

__all__ = [
    "PDEDataModule",
    "PDEFrames",
    "PDESpec",
    "PDETrajectories",
    "PDETrajectoryDataModule",
    "channel_statistics",
    "get_spec",
    "spec_names",
    "trajectory_seed",
]

_SPECS: dict[str, str] = {
    "diffusion_plane": "enf.data.pde.solvers.plane:DIFFUSION_PLANE",
    "navier_stokes_torus": "enf.data.pde.solvers.navier_stokes:NAVIER_STOKES_TORUS",
    "navier_stokes_decaying": "enf.data.pde.solvers.navier_stokes:NAVIER_STOKES_DECAYING",
    "diffusion_sphere": "enf.data.pde.solvers.sphere:DIFFUSION_SPHERE",
    "shallow_water_sphere": "enf.data.pde.solvers.shallow_water:SHALLOW_WATER_SPHERE",
    "heated_convection_ball": "enf.data.pde.solvers.ball:HEATED_CONVECTION_BALL",
}

_LAZY: dict[str, str] = {
    "PDEDataModule": "enf.data.modules.pde_frames",
    "PDEFrames": "enf.data.pde.dataset",
    "PDETrajectories": "enf.data.pde.dataset",
    "PDETrajectoryDataModule": "enf.data.modules.pde_trajectories",
    "channel_statistics": "enf.data.pde.dataset",
}


def spec_names() -> list[str]:
    """Registered PDE dataset names."""
    return sorted(_SPECS)


def get_spec(name: str) -> PDESpec:
    """The :class:`PDESpec` registered as ``name`` (imports its module on first use)."""
    if name not in _SPECS:
        raise ValueError(f"unknown PDE dataset {name!r}; choose one of {spec_names()}")
    module_name, _, attr = _SPECS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enf.data.pde' has no attribute {name!r}")
