"""SE(3): rotations and translations of R^3, with latents carrying a position and a frame."""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, grid_points, random_rotation, resolve_dtype
from enf.geometry.frames import (
    check_pair,
    default_generator,
    frame_coordinates,
    gram_schmidt,
    random_euclidean,
)

__all__ = ["SE3"]


class SE3(Geometry):
    """SE(3) acting on ``R^3``; latents ``p = (q, u, v)``: a position and a frame ``F = GS(u, v)``.

    Action: ``(q, u, v) -> (R q + t, R u, R v)``. With ``F`` the Gram-Schmidt frame (columns ``e1, e2, e3``,
    :func:`~enf.geometry.frames.gram_schmidt`):

    - ``invariant(x, p) = F^T (x - q)`` (dim 3): the coordinate in the latent's local frame;
    - ``distance2 = |x - q|^2``;
    - ``pose_invariant(p_i, p_j) = (F_j^T (q_i - q_j), F_j^T e1_i, F_j^T e2_i)`` (dim 9), with
      ``e1_i, e2_i`` the first two columns of ``F_i``; complete: ``q_i = q_j + F_j a[:3]`` and
      ``F_i = F_j [a[3:6], a[6:9], a[3:6] x a[6:9]]``.

    Initial poses: a regular grid of cell centres in the cube ``[-1, 1]^3``; frames are random-but-seeded
    Haar rotations (``u``, ``v`` = first two columns; generator seeded with 0 when none is given).

    Args:
        translation_scale: standard deviation of sampled translations.
    """

    name = "se3"
    space_dim = 3
    num_pose_blocks = 3
    invariant_dim = 3
    pose_invariant_dim = 9
    translates = True
    periodic = False

    def __init__(self, *, translation_scale: float = 1.0) -> None:
        self.translation_scale = translation_scale

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size,
            3,
            translation_scale=self.translation_scale,
            generator=generator,
            dtype=dtype,
            device=device,
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 9, "poses")
        frame = gram_schmidt(poses[..., 3:6], poses[..., 6:9])
        return frame_coordinates(frame, x - poses[..., :3])

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 9, "poses")
        return (x - poses[..., :3]).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 9, "poses_i", poses_j, 9, "poses_j")
        frame_i = gram_schmidt(poses_i[..., 3:6], poses_i[..., 6:9])
        frame_j = gram_schmidt(poses_j[..., 3:6], poses_j[..., 6:9])
        parts = [
            frame_coordinates(frame_j, poses_i[..., :3] - poses_j[..., :3]),
            frame_coordinates(frame_j, frame_i[..., :, 0]),
            frame_coordinates(frame_j, frame_i[..., :, 1]),
        ]
        return torch.cat(torch.broadcast_tensors(*parts), dim=-1)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        pos = grid_points(num_latents, 3)
        rot = random_rotation(num_latents, 3, generator=default_generator(generator), dtype=torch.float64)
        return torch.cat([pos, rot[:, :, 0], rot[:, :, 1]], dim=-1).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 3, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)
