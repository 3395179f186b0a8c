"""Euclidean geometries of the plane: E(2) with isotropic latents, and SE(2) with oriented latents."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, grid_points, resolve_dtype
from enf.geometry.frames import check_pair, default_generator, random_euclidean, rotation_2d, safe_norm

__all__ = ["SE2", "Isotropic2d"]


class Isotropic2d(Geometry):
    """E(2) (rotations, reflections, translations) acting on ``R^2`` with position-only latents ``q``.

    ``invariant(x, q) = |x - q|`` (dim 1); ``distance2 = |x - q|^2``;
    ``pose_invariant(q_i, q_j) = |q_i - q_j|`` (dim 1, the complete invariant of a pair of points under
    E(2)). Norms are computed as ``sqrt(|d|^2 + 1e-24)`` so gradients stay finite at ``x = q``.
    Initial poses: a regular grid of cell centres in ``[-1, 1]^2``.

    Args:
        translation_scale: standard deviation of sampled translations.
    """

    name = "isotropic2d"
    reflections = True
    space_dim = 2
    num_pose_blocks = 1
    invariant_dim = 1
    pose_invariant_dim = 1
    translates = True
    periodic = False

    def __init__(self, *, translation_scale: float = 1.0) -> None:
        self.translation_scale = translation_scale

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size,
            2,
            translation_scale=self.translation_scale,
            reflections=True,
            generator=generator,
            dtype=dtype,
            device=device,
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return safe_norm(x - poses).unsqueeze(-1)

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return (x - poses).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 2, "poses_i", poses_j, 2, "poses_j")
        return safe_norm(poses_i - poses_j).unsqueeze(-1)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return grid_points(num_latents, 2).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 2, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)


class SE2(Geometry):
    """SE(2) acting on ``R^2``; latents are oriented points ``p = (q, o)`` with ``o`` an orientation vector.

    Action: ``(q, o) -> (R q + t, R o)``. With ``R_o`` the rotation taking ``e1`` to ``o/|o|``
    (``(c, s) = o/|o|``):

    - ``invariant(x, p) = R_o^T (x - q) = (c d_1 + s d_2, -s d_1 + c d_2)``, ``d = x - q`` (dim 2);
    - ``distance2 = |x - q|^2``;
    - ``pose_invariant(p_i, p_j) = (R_{o_j}^T (q_i - q_j), cos(th_i - th_j), sin(th_i - th_j))`` (dim 4),
      computed from the normalised ``o`` vectors without ``atan2``; ``q_i = q_j + R_{o_j} a[:2]`` and
      ``o_i/|o_i| = R_{o_j} a[2:]`` recover pose ``i`` from pose ``j``.

    Initial poses: positions on a regular grid of cell centres in ``[-1, 1]^2``; orientations unit vectors
    at random-but-seeded angles, uniform in ``[0, 2 pi)`` (generator seeded with 0 when none is given).

    Args:
        translation_scale: standard deviation of sampled translations.
    """

    name = "se2"
    space_dim = 2
    num_pose_blocks = 2
    invariant_dim = 2
    pose_invariant_dim = 4
    translates = True
    periodic = False

    def __init__(self, *, translation_scale: float = 1.0) -> None:
        self.translation_scale = translation_scale

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size,
            2,
            translation_scale=self.translation_scale,
            generator=generator,
            dtype=dtype,
            device=device,
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 4, "poses")
        d = x - poses[..., :2]
        c, s = rotation_2d(poses[..., 2:])
        return torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], dim=-1)

    def linear_phase(self, poses: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``pair_invariant(x, p) @ weight == x @ M + c`` for ``weight [2, K]``: ``M = R_o weight``
        ``[..., 2, K]``, ``c = -q M`` ``[..., K]``."""
        c, s = rotation_2d(poses[..., 2:])
        c, s = c[..., None], s[..., None]
        m = torch.stack([c * weight[0] - s * weight[1], s * weight[0] + c * weight[1]], dim=-2)
        return m, -(poses[..., :2].unsqueeze(-2) @ m).squeeze(-2)

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 4, "poses")
        return (x - poses[..., :2]).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 4, "poses_i", poses_j, 4, "poses_j")
        d = poses_i[..., :2] - poses_j[..., :2]
        ci, si = rotation_2d(poses_i[..., 2:])
        cj, sj = rotation_2d(poses_j[..., 2:])
        return torch.stack(
            [
                cj * d[..., 0] + sj * d[..., 1],
                -sj * d[..., 0] + cj * d[..., 1],
                ci * cj + si * sj,
                si * cj - ci * sj,
            ],
            dim=-1,
        )

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        pos = grid_points(num_latents, 2)
        theta = (
            2.0
            * math.pi
            * torch.rand(num_latents, generator=default_generator(generator), dtype=torch.float64)
        )
        ori = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
        return torch.cat([pos, ori], dim=-1).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 2, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)
