"""Module paths of the previous layout (``enf.data``, ``enf.editing``), kept importable.

Pickled objects, saved run configs and user code may name a module where it lived before the data sources
moved by kind (``enf/data/images/``, ``shapes/``, ``pde/solvers/``), the Lightning data modules into
``enf/data/modules/`` and the edit application (editor, sessions, server, page) into ``enf/apps/edit/``.
:func:`install` puts a finder at the end of ``sys.meta_path`` that answers only such an import, with the
module at its new path (the same module object, so classes compare equal); ``import enf`` installs it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "install"]

#: old dotted module path -> new one
MOVED: dict[str, str] = {
    "enf.data.base": "enf.data.images.base",
    "enf.data.bundled": "enf.data.images.bundled",
    "enf.data.local": "enf.data.images.local",
    "enf.data.meshes": "enf.data.shapes.meshes",
    "enf.data.sdf": "enf.data.shapes.sdf",
    "enf.data.shapenet": "enf.data.shapes.shapenet",
    "enf.data.shape_dedup": "enf.data.shapes.dedup",
    "enf.data.datamodule": "enf.data.modules.images",
    "enf.data.field_module": "enf.data.modules.field",
    "enf.data.landmark_module": "enf.data.modules.landmarks",
    "enf.data.latent_module": "enf.data.modules.latents",
    "enf.data.sdf_module": "enf.data.modules.sdf",
    "enf.data.pde.datamodule": "enf.data.modules.pde_frames",
    "enf.data.pde.trajectory_module": "enf.data.modules.pde_trajectories",
    "enf.data.pde.ball": "enf.data.pde.solvers.ball",
    "enf.data.pde.navier_stokes": "enf.data.pde.solvers.navier_stokes",
    "enf.data.pde.plane": "enf.data.pde.solvers.plane",
    "enf.data.pde.shallow_water": "enf.data.pde.solvers.shallow_water",
    "enf.data.pde.sphere": "enf.data.pde.solvers.sphere",
    "enf.editing.model": "enf.apps.edit.editor",
    "enf.editing.server": "enf.apps.edit.server",
    "enf.editing.sessions": "enf.apps.edit.sessions",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the target module is already executed
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    """Answer imports of the old module paths (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
