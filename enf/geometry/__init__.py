"""Geometries: a group acting on coordinates and latent poses, with bi-invariants.

``enf.geometry.get(name)`` returns a ready :class:`Geometry`; ``enf.geometry.names()`` lists the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from enf.geometry.absolute import Absolute2d
from enf.geometry.ball import Ball, ball_points
from enf.geometry.base import Geometry, GroupElement, fibonacci_sphere, grid_points, random_rotation
from enf.geometry.frames import gram_schmidt, safe_normalise
from enf.geometry.planar import SE2, Isotropic2d
from enf.geometry.se3 import SE3
from enf.geometry.sphere import Sphere, SphereAxial
from enf.geometry.torus import Torus2d, wrap_difference
from enf.geometry.translation import Translation

__all__ = [
    "SE2",
    "SE3",
    "Absolute2d",
    "Ball",
    "Geometry",
    "GroupElement",
    "Isotropic2d",
    "Sphere",
    "SphereAxial",
    "Torus2d",
    "Translation",
    "ball_points",
    "fibonacci_sphere",
    "get",
    "gram_schmidt",
    "grid_points",
    "names",
    "random_rotation",
    "register",
    "safe_normalise",
    "wrap_difference",
]

_REGISTRY: dict[str, Callable[[], Geometry]] = {}


def register(name: str, factory: Callable[[], Geometry]) -> None:
    """Add a geometry factory under ``name`` (overwrites nothing: duplicate names are an error)."""
    if name in _REGISTRY:
        raise ValueError(f"geometry {name!r} is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered geometry names, sorted."""
    return sorted(_REGISTRY)


def get(name: str | Geometry) -> Geometry:
    """The geometry registered under ``name`` (a :class:`Geometry` instance is returned unchanged)."""
    if isinstance(name, Geometry):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown geometry {name!r}; choose one of {names()}")
    return _REGISTRY[name]()


register("translation2d", lambda: Translation(space_dim=2))
register("translation3d", lambda: Translation(space_dim=3))
register("absolute2d", Absolute2d)
register("isotropic2d", Isotropic2d)
register("se2", SE2)
register("torus2d", Torus2d)
register("sphere", Sphere)
register("sphere_axial", SphereAxial)
register("ball", Ball)
register("se3", SE3)
