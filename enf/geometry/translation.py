"""Translations of R^n: poses are positions, the bi-invariant is the relative position ``x - q``."""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, grid_points, resolve_dtype

__all__ = ["Translation"]


class Translation(Geometry):
    """The translation group of ``R^n`` acting on coordinates and positions ``q`` by ``q -> q + t``.

    ``invariant(x, q) = x - q``; ``distance2 = |x - q|^2``; ``pose_invariant(q_i, q_j) = q_i - q_j``.
    Initial poses: a regular grid of cell centres in ``[-1, 1]^n``.

    Args:
        space_dim: 2 (``translation2d``) or 3 (``translation3d``).
        translation_scale: standard deviation of sampled translations.
    """

    translates = True
    #: ``invariant(x, q) == x - q`` exactly: lets the decoder compute query logits with one GEMM.
    invariant_is_difference = True

    def __init__(self, *, space_dim: int = 2, translation_scale: float = 1.0) -> None:
        if space_dim not in (2, 3):
            raise ValueError(f"space_dim must be 2 or 3, got {space_dim}")
        self.space_dim = space_dim
        self.name = f"translation{space_dim}d"
        self.invariant_dim = space_dim
        self.pose_invariant_dim = space_dim
        self.translation_scale = translation_scale

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        t = torch.randn(batch_size, self.space_dim, generator=generator, dtype=torch.float64)
        t = self.translation_scale * t
        return GroupElement(rotation=None, translation=t.to(dtype=dtype, device=device))

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        return x - poses

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        return (x - poses).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        return poses_i - poses_j

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return grid_points(num_latents, self.space_dim).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, self.space_dim, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)
