"""The non-equivariant control: the decoder sees absolute coordinates, not relative ones."""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, grid_points, resolve_dtype
from enf.geometry.frames import check_pair, random_euclidean

__all__ = ["Absolute2d"]


class Absolute2d(Geometry):
    """Control geometry on ``R^2`` that is deliberately **not** equivariant (registry name ``absolute2d``).

    Poses are positions ``q`` in ``R^2``. ``invariant(x, q) = x`` (the absolute coordinate, independent of
    ``q``), ``pose_invariant(q_i, q_j) = q_i`` (the absolute position) and ``distance2 = |x - q|^2`` (so the
    attention window still localises latents). The group action used by tests and the equivariance
    metrics is SE(2) (random rotation + translation, as for ``se2``), under which ``invariant`` and
    ``pose_invariant`` are *not* invariant: ``assert_bi_invariant`` must fail on this geometry, which makes
    it the negative control of every equivariance test and the non-equivariant baseline of experiments.
    Initial poses: a regular grid of cell centres in ``[-1, 1]^2``.

    Args:
        translation_scale: standard deviation of sampled translations.
    """

    name = "absolute2d"
    space_dim = 2
    num_pose_blocks = 1
    invariant_dim = 2
    pose_invariant_dim = 2
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
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        shape = torch.broadcast_shapes(x.shape, poses.shape)
        return x.expand(shape)

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return (x - poses).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 2, "poses_i", poses_j, 2, "poses_j")
        shape = torch.broadcast_shapes(poses_i.shape, poses_j.shape)
        return poses_i.expand(shape)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return grid_points(num_latents, 2).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 2, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)
