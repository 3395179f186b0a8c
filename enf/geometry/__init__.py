"""Geometries: a group acting on coordinates and latent poses, with bi-invariants.

``enf.geometry.get(name)`` returns a ready :class:`Geometry`; ``enf.geometry.names()`` lists the registry
(``names(equivariant=True)`` without, ``names(equivariant=False)`` only, the non-equivariant controls
``absolute2d`` and ``absolute_sphere``).
"""

from __future__ import annotations

from collections.abc import Callable

from enf.geometry.absolute import Absolute2d, AbsoluteSphere
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
    "AbsoluteSphere",
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
_CONTROLS: set[str] = set()


def register(name: str, factory: Callable[[], Geometry], *, equivariant: bool = True) -> None:
    """Add a geometry factory under ``name`` (overwrites nothing: duplicate names are an error).

    ``equivariant=False`` marks a non-equivariant control (its invariants are not invariant under its
    group action); :func:`names` can leave such controls out or list only them.
    """
    if name in _REGISTRY:
        raise ValueError(f"geometry {name!r} is already registered")
    _REGISTRY[name] = factory
    if not equivariant:
        _CONTROLS.add(name)


def names(*, equivariant: bool | None = None) -> list[str]:
    """Registered geometry names, sorted.

    Args:
        equivariant: ``None`` lists every geometry; ``True`` only the equivariant ones (those whose
            invariants pass ``enf.testing.assert_bi_invariant``); ``False`` only the non-equivariant
            controls (``absolute2d``, ``absolute_sphere``).
    """
    if equivariant is not None and not isinstance(equivariant, bool):
        raise TypeError(f"equivariant must be None, True or False, got {equivariant!r}")
    return sorted(n for n in _REGISTRY if equivariant is None or (n not in _CONTROLS) == equivariant)


def get(name: str | Geometry) -> Geometry:
    """The geometry registered under ``name`` (a :class:`Geometry` instance is returned unchanged)."""
    if isinstance(name, Geometry):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown geometry {name!r}; choose one of {names()}")
    return _REGISTRY[name]()


register("translation2d", lambda: Translation(space_dim=2))
register("translation3d", lambda: Translation(space_dim=3))
register("absolute2d", Absolute2d, equivariant=False)
register("absolute_sphere", AbsoluteSphere, equivariant=False)
register("isotropic2d", Isotropic2d)
register("se2", SE2)
register("torus2d", Torus2d)
register("sphere", Sphere)
register("sphere_axial", SphereAxial)
register("ball", Ball)
register("se3", SE3)
