"""The flat torus ``[-1, 1)^2`` with periodic translations."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, grid_points, resolve_dtype
from enf.geometry.frames import check_pair

__all__ = ["Torus2d", "wrap_difference"]


def wrap_difference(delta: Tensor) -> Tensor:
    """Shortest periodic representative of a difference on ``[-1, 1)^n``: ``delta - 2 round(delta / 2)``.

    Values lie in ``[-1, 1]``; the gradient is the identity (``round`` contributes nothing).
    """
    return delta - 2.0 * torch.round(delta / 2.0)


class Torus2d(Geometry):
    """Periodic translations of the torus ``[-1, 1)^2`` (period 2 per axis); latents are positions ``q``.

    Action: ``q -> (q + t)`` wrapped into ``[-1, 1)``. With ``D = x - q``:

    - ``invariant(x, q) = (cos pi D_1, sin pi D_1, cos pi D_2, sin pi D_2)`` (dim 4, in this order), smooth
      and periodic, so no wrapping is needed;
    - ``distance2 = |wrap(D)|^2`` with ``wrap(D) = D - 2 round(D / 2)`` (the squared geodesic distance on
      the torus, peaking at the antipode ``|wrap(D)| = 1`` per axis, never there);
    - ``pose_invariant(q_i, q_j)``: the same formula on ``q_i - q_j`` (dim 4);
      ``wrap(q_i - q_j) = atan2(sin, cos) / pi`` per axis recovers the relative position.

    Initial poses: a regular periodic grid of **cell centres** ``-1 + (k + 1/2) 2/m`` per axis (``m`` points
    per axis), equally spaced across the periodic boundary as well; cell centres rather than cell starts so
    that no latent sits on the seam ``-1 == 1``.
    """

    name = "torus2d"
    space_dim = 2
    num_pose_blocks = 1
    invariant_dim = 4
    pose_invariant_dim = 4
    translates = True
    periodic = True

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        t = 2.0 * torch.rand(batch_size, 2, generator=generator, dtype=torch.float64) - 1.0
        return GroupElement(rotation=None, translation=t.to(dtype=dtype, device=device))

    @staticmethod
    def _features(delta: Tensor) -> Tensor:
        ang = math.pi * delta
        return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1).flatten(-2)

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return self._features(x - poses)

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return wrap_difference(x - poses).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 2, "poses_i", poses_j, 2, "poses_j")
        return self._features(poses_i - poses_j)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return grid_points(num_latents, 2, periodic=False).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 2, generator=generator, dtype=torch.float64)
        return self._wrap(2.0 * u - 1.0).to(dtype)
