"""Property checks for geometries, steerable fields and equivariant maps (like e3nn's ``assert_equivariant``).

The ``*_error`` functions return the largest absolute deviation (a ``float``) over random inputs and random
group elements; the ``assert_*`` functions raise :class:`AssertionError` naming the quantity, the error and
the tolerance when ``|actual - expected| <= atol + rtol * |expected|`` fails somewhere. Nothing is printed.

Example::

    from enf import geometry, testing
    testing.assert_bi_invariant(geometry.get("se2"))                 # float64, atol 1e-9
    testing.assert_bi_invariant(geometry.get("se2"), dtype=torch.float32)
    testing.assert_steerable(model, geom, coords, latents)           # f(g.x; g.z) == f(x; z)
    testing.assert_equivariant(                                        # F(g.z) == g_* F(z)
        lambda z: field(0.0, z), geom, (z,),
        testing.act_args(testing.act_latents(geom)), testing.act_latent_velocity(geom))

Random draws use ``generator`` when given, else torch's global generator.
"""

from __future__ import annotations

import torch

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.latents import Latents
from enf.testing._core import TOLERANCES, sample_group_like
from enf.testing.equivariance import (
    Action,
    act_args,
    act_coords,
    act_identity,
    act_latent_velocity,
    act_latents,
    assert_equivariant,
    assert_steerable,
    equivariance_error,
    steerability_error,
)
from enf.testing.geometry_checks import (
    assert_bi_invariant,
    assert_group_action,
    assert_pose_invariant,
    bi_invariance_error,
    group_action_error,
    pose_invariance_error,
)

__all__ = [
    "TOLERANCES",
    "Action",
    "act_args",
    "act_coords",
    "act_identity",
    "act_latent_velocity",
    "act_latents",
    "assert_bi_invariant",
    "assert_equivariant",
    "assert_group_action",
    "assert_pose_invariant",
    "assert_steerable",
    "bi_invariance_error",
    "equivariance_error",
    "group_action_error",
    "pose_invariance_error",
    "random_latents",
    "sample_group_like",
    "steerability_error",
]


def random_latents(
    geometry: Geometry | str,
    batch_size: int,
    num_latents: int,
    context_dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Latents:
    """Random latents for property checks: random (off-grid) poses of ``geometry`` on its pose manifold
    (:meth:`~enf.geometry.Geometry.retract`), Gaussian context
    ``[B, L, context_dim]`` and windows ``[B, L, 1]`` of 0.7-1.3 times the geometry's default width (so no
    two latents tie by construction). Float64 by default, the dtype of the equivariance tests."""
    geometry = get_geometry(geometry)
    poses = geometry.retract(geometry.sample_poses(batch_size, num_latents, generator=generator, dtype=dtype))
    context = torch.randn(batch_size, num_latents, context_dim, generator=generator, dtype=dtype)
    scale = 0.7 + 0.6 * torch.rand(batch_size, num_latents, 1, generator=generator, dtype=dtype)
    return Latents(poses=poses, context=context, window=geometry.default_window(num_latents) * scale)
