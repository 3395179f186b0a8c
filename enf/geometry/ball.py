"""SO(3) acting on the unit ball, with latents carrying a position and a frame."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from enf.geometry.base import (
    Geometry,
    GroupElement,
    check_num_points,
    fibonacci_sphere,
    random_rotation,
    resolve_dtype,
)
from enf.geometry.frames import (
    check_pair,
    default_generator,
    frame_coordinates,
    gram_schmidt,
    random_euclidean,
    safe_normalise,
)

__all__ = ["Ball", "ball_points"]


def _allocate(total: int, weights: Tensor) -> list[int]:
    """Split ``total`` into positive integers proportional to ``weights`` (largest remainder method)."""
    exact = total * weights / weights.sum()
    counts = torch.clamp(torch.floor(exact), min=1).long()
    while int(counts.sum()) < total:
        counts[int(torch.argmax(exact - counts))] += 1
    while int(counts.sum()) > total:
        excess = torch.where(counts > 1, counts - exact, torch.full_like(exact, -math.inf))
        counts[int(torch.argmax(excess))] -= 1
    return [int(c) for c in counts]


def ball_points(num_points: int) -> Tensor:
    """``num_points`` distinct points spread through the open unit ball, ``[num_points, 3]`` (float64).

    Layered Fibonacci set: ``S ~ (3 L / 4 pi)^(1/3)`` concentric shells at radii ``(k + 1/2) / S``
    (``k = 0..S-1``, all strictly inside the ball), with points allotted to shells proportionally to
    ``r_k^2`` (uniform volume density) and placed on each shell by a Fibonacci lattice.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be positive, got {num_points}")
    num_shells = max(1, min(num_points, round((3.0 * num_points / (4.0 * math.pi)) ** (1.0 / 3.0))))
    radii = (torch.arange(num_shells, dtype=torch.float64) + 0.5) / num_shells
    counts = _allocate(num_points, radii.square())
    return torch.cat([r * fibonacci_sphere(n) for r, n in zip(radii, counts, strict=True)], dim=0)


class Ball(Geometry):
    """SO(3) acting on the unit ball (no translation); latents ``p = (q, u, v)``: a position and a frame.

    Action: ``(q, u, v) -> (R q, R u, R v)``. With ``F = GS(u, v)`` (columns ``e1, e2, e3``,
    :func:`~enf.geometry.frames.gram_schmidt`):

    - ``invariant(x, p) = (F^T x, F^T q)`` (dim 6): the coordinate and the latent's position seen from the
      latent's frame (the ball has a centre, so absolute radii are invariant);
    - ``distance2 = |x - q|^2``;
    - ``pose_invariant(p_i, p_j) = (F_j^T q_i, F_j^T q_j, F_j^T e1_i, F_j^T e2_i)`` (dim 12), with
      ``e1_i, e2_i`` the first two columns of ``F_i``; complete: ``F_j^T F_i`` follows via ``e3 = e1 x e2``.

    Initial poses: the layered Fibonacci set :func:`ball_points`; frames are random-but-seeded Haar
    rotations (``u``, ``v`` = first two columns; generator seeded with 0 when none is given).
    """

    name = "ball"
    space_dim = 3
    num_pose_blocks = 3
    invariant_dim = 6
    pose_invariant_dim = 12
    translates = False
    periodic = False

    def sample_group(self, batch_size, *, generator=None, dtype=None, device=None) -> GroupElement:
        dtype = resolve_dtype(dtype)
        return random_euclidean(
            batch_size, 3, translation_scale=None, generator=generator, dtype=dtype, device=device
        )

    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 9, "poses")
        frame = gram_schmidt(poses[..., 3:6], poses[..., 6:9])
        fx = frame_coordinates(frame, x)
        fq = frame_coordinates(frame, poses[..., :3])
        fx, fq = torch.broadcast_tensors(fx, fq)
        return torch.cat([fx, fq], dim=-1)

    def linear_phase(self, poses: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``pair_invariant(x, p) @ weight == x @ M + c`` for ``weight [6, K]``: ``M = F weight[:3]``
        ``[..., 3, K]``, ``c = (F^T q) weight[3:]`` ``[..., K]``."""
        frame = gram_schmidt(poses[..., 3:6], poses[..., 6:9])
        return frame @ weight[:3], frame_coordinates(frame, poses[..., :3]) @ weight[3:]

    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        check_pair(self.name, x, 3, "coords", poses, 9, "poses")
        return (x - poses[..., :3]).square().sum(-1)

    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        check_pair(self.name, poses_i, 9, "poses_i", poses_j, 9, "poses_j")
        frame_i = gram_schmidt(poses_i[..., 3:6], poses_i[..., 6:9])
        frame_j = gram_schmidt(poses_j[..., 3:6], poses_j[..., 6:9])
        parts = [
            frame_coordinates(frame_j, poses_i[..., :3]),
            frame_coordinates(frame_j, poses_j[..., :3]),
            frame_coordinates(frame_j, frame_i[..., :, 0]),
            frame_coordinates(frame_j, frame_i[..., :, 1]),
        ]
        return torch.cat(torch.broadcast_tensors(*parts), dim=-1)

    def init_poses(self, num_latents, *, generator=None, dtype=None, device=None) -> Tensor:
        check_num_points(num_latents)
        dtype = resolve_dtype(dtype)
        pos = ball_points(num_latents)
        rot = random_rotation(num_latents, 3, generator=default_generator(generator), dtype=torch.float64)
        return torch.cat([pos, rot[:, :, 0], rot[:, :, 1]], dim=-1).to(dtype=dtype, device=device)

    def tangent_velocity(self, poses: Tensor, velocity: Tensor) -> Tensor:
        """Keep the frame orthonormal: with ``F = [e1, e2]`` (``3 x 2``, the retracted ``u``, ``v``) and
        ``V = [du, dv]``, ``V <- V - F sym(F^T V)`` (the tangent space of the Stiefel manifold). The position
        velocity is free (positions are kept inside the ball by :meth:`retract`). Equivariant."""
        frame = gram_schmidt(poses[..., 3:6], poses[..., 6:9])[..., :2]  # [..., 3, 2]
        dframe = torch.stack([velocity[..., 3:6], velocity[..., 6:9]], dim=-1)  # [..., 3, 2]
        inner = frame.transpose(-1, -2) @ dframe  # [..., 2, 2]
        dframe = dframe - frame @ (0.5 * (inner + inner.transpose(-1, -2)))
        return torch.cat([velocity[..., :3], dframe[..., 0], dframe[..., 1]], dim=-1)

    def retract(self, poses: Tensor) -> Tensor:
        """Positions scaled back onto the unit sphere when outside the ball, ``(u, v) <- (e1, e2)`` of
        ``GS(u, v)`` (the frame the invariants use)."""
        q = poses[..., :3]
        radius = q.norm(dim=-1, keepdim=True)
        q = torch.where(radius > 1.0, q / radius.clamp_min(1.0), q)
        frame = gram_schmidt(poses[..., 3:6], poses[..., 6:9])
        return torch.cat([q, frame[..., :, 0], frame[..., :, 1]], dim=-1)

    def manifold_error(self, poses: Tensor) -> Tensor:
        """Max of ``max(|q| - 1, 0)``, ``| |u| - 1 |``, ``| |v| - 1 |`` and ``|<u, v>|``."""
        q, u, v = poses[..., :3], poses[..., 3:6], poses[..., 6:9]
        return torch.stack(
            [
                (q.norm(dim=-1) - 1.0).clamp_min(0.0),
                (u.norm(dim=-1) - 1.0).abs(),
                (v.norm(dim=-1) - 1.0).abs(),
                (u * v).sum(-1).abs(),
            ],
            dim=-1,
        ).amax(-1)

    def default_window(self, num_latents: int) -> float:
        """Spacing of ``num_latents`` evenly spread points in the unit ball: ``(4 pi / 3 / L)^(1/3)``."""
        return (4.0 * math.pi / 3.0 / num_latents) ** (1.0 / 3.0)

    def sample_coords(self, batch_size, num_coords, *, generator=None, dtype=None) -> Tensor:
        dtype = resolve_dtype(dtype)
        direction = safe_normalise(
            torch.randn(batch_size, num_coords, 3, generator=generator, dtype=torch.float64)
        )
        radius = torch.rand(batch_size, num_coords, 1, generator=generator, dtype=torch.float64) ** (
            1.0 / 3.0
        )
        return (radius * direction).to(dtype)
