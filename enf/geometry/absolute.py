"""The non-equivariant controls: the decoder sees absolute coordinates, not relative ones.

``absolute2d`` on the plane and ``absolute_sphere`` on the unit sphere are the negative controls of the
equivariance tests and the non-equivariant baselines of the experiments (DESIGN.md sections 7 and 11).
"""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry.base import Geometry, GroupElement, fibonacci_sphere, grid_points, resolve_dtype
from enf.geometry.frames import check_pair, random_euclidean, safe_normalise
from enf.geometry.sphere import _SphereBase

__all__ = ["Absolute2d", "AbsoluteSphere"]


class Absolute2d(Geometry):
    """Control geometry on ``R^2`` that is deliberately **not** equivariant (registry name ``absolute2d``).

    Poses are positions ``q`` in ``R^2``. ``invariant(x, q) = x`` (the absolute coordinate, independent of
    ``q``), ``pose_invariant(q_i, q_j) = (q_i, q_j)`` (both absolute positions: a message-passing network
    on this geometry sees both endpoints of every edge, so it can tell its receivers apart) and
    ``distance2 = |x - q|^2`` (so the attention window still localises latents). The group action used by tests and the equivariance
    metrics is SE(2) (random rotation + translation, as for ``se2``), under which ``invariant`` and
    ``pose_invariant`` are *not* invariant: ``assert_bi_invariant`` must fail on this geometry, which makes
    it the negative control of every equivariance test and the non-equivariant baseline of experiments.
    Initial poses: a regular grid of cell centres in ``[-1, 1]^2``.

    Args:
        translation_scale: standard deviation of sampled translations.
    """

    name = "absolute2d"
    equivariant = False
    space_dim = 2
    num_pose_blocks = 1
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
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        shape = torch.broadcast_shapes(x.shape, poses.shape)
        return x.expand(shape)

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 2, "coords", poses, 2, "poses")
        return (x - poses).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 2, "poses_i", poses_j, 2, "poses_j")
        return torch.cat(torch.broadcast_tensors(poses_i, poses_j), dim=-1)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return grid_points(num_latents, 2).to(dtype=dtype, device=device)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        u = torch.rand(batch_size, num_coords, 2, generator=generator, dtype=torch.float64)
        return (2.0 * u - 1.0).to(dtype)


class AbsoluteSphere(_SphereBase):
    """Control geometry on the unit sphere that is deliberately **not** equivariant (``absolute_sphere``).

    The sphere analogue of :class:`Absolute2d`. Poses are points ``n`` in ``R^3`` (one block, as for
    ``sphere_axial``); with ``m = n/|n|``:

    - ``invariant(x, n) = x`` (dim 3): the absolute coordinate, independent of ``n``;
    - ``pose_invariant(n_i, n_j) = (m_i, m_j)`` (dim 6): both absolute positions, so a message-passing
      network sees both endpoints of every edge;
    - ``distance2`` = squared geodesic angle between ``x`` and ``m`` (invariant, so the attention window
      still localises latents and the k-nearest selection is the one of ``sphere``).

    As for ``absolute2d``, the latent position reaches the decoder only through the window: the invariant
    carries no ``m`` (concatenating it would be a different, stronger baseline; this one keeps to the
    planar control so that both controls differ from their equivariant geometries in the same way).

    The group action used by tests and the equivariance metrics is SO(3) (Haar-random rotations, as for
    ``sphere``), under which ``invariant`` and ``pose_invariant`` are *not* invariant:
    ``assert_bi_invariant`` must fail on this geometry. Coordinates are unit vectors ``[B, N, 3]``;
    poses ``[B, L, 3]``. Initial poses: the Fibonacci lattice (no orientation to choose); default window
    ``sqrt(4 pi / L)`` radians; :meth:`sample_coords` and :meth:`sample_poses` draw uniformly on the sphere.

    Example:
        >>> geom = AbsoluteSphere()
        >>> x = torch.tensor([[[0.0, 0.0, 1.0]]])
        >>> geom.invariant(x, geom.init_poses(4)[None]).shape
        torch.Size([1, 1, 4, 3])
    """

    name = "absolute_sphere"
    equivariant = False
    num_pose_blocks = 1
    invariant_dim = 3
    pose_invariant_dim = 6

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size, 3, translation_scale=None, generator=generator, dtype=dtype, device=device
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 3, "poses")
        return x.expand(torch.broadcast_shapes(x.shape, poses.shape))

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 3, "poses_i", poses_j, 3, "poses_j")
        return torch.cat(torch.broadcast_tensors(safe_normalise(poses_i), safe_normalise(poses_j)), dim=-1)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        return fibonacci_sphere(num_latents).to(dtype=dtype, device=device)
