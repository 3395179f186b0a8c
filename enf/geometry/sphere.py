"""The 2-sphere: full SO(3) with oriented latents, and rotations about the polar axis with point latents."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, fibonacci_sphere, resolve_dtype
from enf.geometry.frames import (
    check_pair,
    default_generator,
    frame_coordinates,
    geodesic_angle,
    random_euclidean,
    safe_normalise,
    tangent_frame,
)

__all__ = ["Sphere", "SphereAxial"]


class _SphereBase(Geometry):
    """Shared parts: unit-vector coordinates, uniform sampling, Fibonacci positions, geodesic window."""

    space_dim = 3
    translates = False
    periodic = False
    position_on_sphere = True

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, self.pose_dim, "poses")
        return geodesic_angle(x, poses[..., :3]).square()

    def tangent_velocity(self, poses: Tensor, velocity: Tensor) -> Tensor:
        """Remove the radial part of the position velocity (positions stay on the sphere to first order)."""
        n = safe_normalise(poses[..., :3])
        v = velocity[..., :3]
        v = v - (v * n).sum(-1, keepdim=True) * n
        return torch.cat([v, velocity[..., 3:]], dim=-1)

    def retract(self, poses: Tensor) -> Tensor:
        """Unit positions (the decoder only sees ``n / |n|``)."""
        return torch.cat([safe_normalise(poses[..., :3]), poses[..., 3:]], dim=-1)

    def manifold_error(self, poses: Tensor) -> Tensor:
        """``| |n| - 1 |``."""
        return (poses[..., :3].norm(dim=-1) - 1.0).abs()

    def default_window(self, num_latents: int) -> float:
        """Geodesic spacing of ``num_latents`` evenly spread points: ``sqrt(4 pi / L)`` radians."""
        return math.sqrt(4.0 * math.pi / num_latents)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        g = torch.randn(batch_size, num_coords, 3, generator=generator, dtype=torch.float64)
        return safe_normalise(g).to(dtype)


class Sphere(_SphereBase):
    """SO(3) acting on the unit sphere; latents are oriented points ``p = (n, t)`` in ``R^3 x R^3``.

    Action: ``(n, t) -> (R n, R t)`` (no translation). Frame of a pose (columns of ``F``):
    ``e3 = n/|n|``, ``e1`` = normalised tangent part of ``t`` (``t - <t, e3> e3``), ``e2 = e3 x e1``.

    - ``invariant(x, p) = F^T x = (<x, e1>, <x, e2>, <x, e3>)`` (dim 3);
    - ``distance2`` = squared geodesic angle between ``x`` and ``n/|n|`` (``atan2`` form, finite gradients);
    - ``pose_invariant(p_i, p_j) = (F_j^T e3_i, F_j^T e1_i)`` (dim 6): the position and the tangent
      orientation of ``i`` in the frame of ``j``; ``F_j^T F_i`` (the relative rotation) follows as
      ``e2 = e3 x e1``, so the invariant is complete.

    Initial poses: Fibonacci lattice positions; orientations random-but-seeded unit tangent vectors (a
    Gaussian vector projected onto the tangent plane and normalised; generator seeded with 0 when none is
    given). :meth:`sample_poses` draws uniform positions and Gaussian tangent orientation vectors.
    """

    name = "sphere"
    num_pose_blocks = 2
    invariant_dim = 3
    pose_invariant_dim = 6

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size, 3, translation_scale=None, generator=generator, dtype=dtype, device=device
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 6, "poses")
        return frame_coordinates(tangent_frame(poses[..., :3], poses[..., 3:]), x)

    def tangent_velocity(self, poses: Tensor, velocity: Tensor) -> Tensor:
        """Project ``(dn, dt)`` onto the tangent space of the unit tangent bundle at ``(n, t)``.

        With ``n``, ``t`` the retracted (unit, orthogonal) position and orientation: ``dn`` loses its part
        along ``n``; ``dt`` loses its part along ``t`` (``|t|`` stays 1) and its part along ``n`` becomes
        ``-<t, dn>`` (``<t, n>`` stays 0). Both are equivariant (built from ``n``, ``t`` and inner products).
        """
        unit = self.retract(poses)
        n, t = unit[..., :3], unit[..., 3:]
        dn, dt = velocity[..., :3], velocity[..., 3:]
        dn = dn - (dn * n).sum(-1, keepdim=True) * n
        dt = (
            dt
            - (dt * t).sum(-1, keepdim=True) * t
            - ((dt * n).sum(-1, keepdim=True) + (t * dn).sum(-1, keepdim=True)) * n
        )
        return torch.cat([dn, dt], dim=-1)

    def retract(self, poses: Tensor) -> Tensor:
        """``(n / |n|, t')`` with ``t'`` the normalised tangent part of ``t``: the frame the invariants use."""
        frame = tangent_frame(poses[..., :3], poses[..., 3:])
        return torch.cat([frame[..., :, 2], frame[..., :, 0]], dim=-1)

    def manifold_error(self, poses: Tensor) -> Tensor:
        """Max of ``| |n| - 1 |``, ``| |t| - 1 |`` and ``|<n, t>| / |n|``."""
        n, t = poses[..., :3], poses[..., 3:]
        return torch.stack(
            [
                (n.norm(dim=-1) - 1.0).abs(),
                (t.norm(dim=-1) - 1.0).abs(),
                (safe_normalise(n) * t).sum(-1).abs(),
            ],
            dim=-1,
        ).amax(-1)

    def linear_phase(self, poses: Tensor, weight: Tensor) -> tuple[Tensor, None]:
        """``pair_invariant(x, p) @ weight == x @ M`` for ``weight [3, K]``: ``M = F weight``, ``[..., 3, K]``."""
        return tangent_frame(poses[..., :3], poses[..., 3:]) @ weight, None

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 6, "poses_i", poses_j, 6, "poses_j")
        frame_i = tangent_frame(poses_i[..., :3], poses_i[..., 3:])
        frame_j = tangent_frame(poses_j[..., :3], poses_j[..., 3:])
        return torch.cat(
            [frame_coordinates(frame_j, frame_i[..., :, 2]), frame_coordinates(frame_j, frame_i[..., :, 0])],
            dim=-1,
        )

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        n = fibonacci_sphere(num_latents)
        g = torch.randn(num_latents, 3, generator=default_generator(generator), dtype=torch.float64)
        t = safe_normalise(g - (g * n).sum(-1, keepdim=True) * n)
        return torch.cat([n, t], dim=-1).to(dtype=dtype, device=device)

    def sample_poses(self, batch_size, num_latents, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        n = self.sample_coords(batch_size, num_latents, generator=generator, dtype=torch.float64)
        g = torch.randn(batch_size, num_latents, 3, generator=generator, dtype=torch.float64)
        t = g - (g * n).sum(-1, keepdim=True) * n
        return torch.cat([n, t], dim=-1).to(dtype)


class SphereAxial(_SphereBase):
    """Rotations about the polar (z) axis acting on the unit sphere; latents are points ``n`` in ``R^3``.

    Action: ``n -> R_z(phi) n``. With ``m = n/|n|``:

    - ``invariant(x, n) = (x_z, m_z, x_x m_x + x_y m_y, x_x m_y - x_y m_x)`` (dim 4): both heights and the
      planar dot and cross product of the horizontal parts;
    - ``distance2`` = squared geodesic angle between ``x`` and ``m``;
    - ``pose_invariant(n_i, n_j)``: the same formula with ``x = m_i``, ``m = m_j`` (dim 4). It is complete:
      with ``a = (m_jx, m_jy)``, the horizontal part of ``m_i`` is
      ``(dot a + cross (a_y, -a_x)) / |a|^2``.

    Initial poses: Fibonacci lattice positions (no orientation to choose).
    """

    name = "sphere_axial"
    num_pose_blocks = 1
    invariant_dim = 4
    pose_invariant_dim = 4

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        phi = 2.0 * math.pi * torch.rand(batch_size, generator=generator, dtype=torch.float64)
        c, s = torch.cos(phi), torch.sin(phi)
        zero, one = torch.zeros_like(phi), torch.ones_like(phi)
        rot = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(batch_size, 3, 3)
        return GroupElement(rotation=rot.to(dtype=dtype, device=device), translation=None)

    @staticmethod
    def _features(x: Tensor, m: Tensor) -> Tensor:
        x, m = torch.broadcast_tensors(x, m)
        return torch.stack(
            [
                x[..., 2],
                m[..., 2],
                x[..., 0] * m[..., 0] + x[..., 1] * m[..., 1],
                x[..., 0] * m[..., 1] - x[..., 1] * m[..., 0],
            ],
            dim=-1,
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 3, "poses")
        return self._features(x, safe_normalise(poses))

    def linear_phase(self, poses: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``pair_invariant(x, n) @ weight == x @ M + c`` for ``weight [4, K]``: ``M [..., 3, K]``, ``c [..., K]``
        (the planar dot and cross products are linear in ``x``)."""
        m = safe_normalise(poses)
        mx, my, mz = m[..., 0:1], m[..., 1:2], m[..., 2:3]  # [..., 1] each
        row_x, row_y = mx * weight[2] + my * weight[3], my * weight[2] - mx * weight[3]
        return torch.stack([row_x, row_y, weight[0].expand_as(row_x)], dim=-2), mz * weight[1]

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 3, "poses_i", poses_j, 3, "poses_j")
        return self._features(safe_normalise(poses_i), safe_normalise(poses_j))

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return fibonacci_sphere(num_latents).to(dtype=dtype, device=device)
