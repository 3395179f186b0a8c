"""Selections of latent points: boolean masks ``[B, L]`` (``True`` = selected).

Every edit takes ``select=``: ``None`` (every latent), a boolean mask ``[L]`` or ``[B, L]``, or indices
(a sequence of ints or an integer tensor ``[K]``, the same for every batch entry). :func:`selection_mask`
turns any of these into the ``[B, L]`` mask; the ``select_*`` functions build masks from geometry
(a radius or a box around a point, in the pose's position block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from enf.geometry import Geometry
from enf.latents import Latents

__all__ = ["Selection", "select_box", "select_indices", "select_radius", "selected_indices", "selection_mask"]

Selection = Tensor | Sequence[int] | None


def _check_flat(z: Latents, what: str) -> None:
    if not isinstance(z, Latents):
        raise TypeError(f"{what} needs Latents, got {type(z).__name__}")
    if z.has_time_axis:
        raise ValueError(f"{what} edits one state [B, L, dim]; pick one with z.at_time(t) first")


def selection_mask(z: Latents, select: Selection = None) -> Tensor:
    """The ``[B, L]`` boolean mask of ``select`` (see the module docstring) on ``z``."""
    _check_flat(z, "a selection")
    batch, num = z.batch_size, z.num_latents
    if select is None:
        return torch.ones(batch, num, dtype=torch.bool, device=z.device)
    if isinstance(select, Tensor) and select.dtype == torch.bool:
        if select.shape == (num,):
            select = select.expand(batch, num)
        if select.shape != (batch, num):
            raise ValueError(
                f"a boolean selection must be [L] = [{num}] or [B, L] = [{batch}, {num}], "
                f"got {tuple(select.shape)}"
            )
        return select.to(z.device)
    return select_indices(z, select)


def select_indices(z: Latents, indices: Sequence[int] | Tensor) -> Tensor:
    """Mask ``[B, L]`` of the latents ``indices`` (the same in every batch entry; negatives count from the end)."""
    _check_flat(z, "select_indices")
    num = z.num_latents
    idx = torch.as_tensor(indices if not isinstance(indices, Tensor) else indices.cpu())
    if idx.dim() != 1 or idx.dtype in (torch.bool,) or idx.is_floating_point():
        raise TypeError(
            f"indices must be a 1-D sequence of ints, got {tuple(idx.shape)} {idx.dtype}; "
            "pass a boolean mask for per-entry selections"
        )
    bad = idx[(idx >= num) | (idx < -num)]
    if bad.numel():
        raise IndexError(f"latent index {int(bad[0])} out of range for {num} latents")
    mask = torch.zeros(num, dtype=torch.bool)
    mask[idx.long() % num] = True
    return mask.to(z.device).expand(z.batch_size, num).clone()


def _center(center: Sequence[float] | Tensor, z: Latents, width: int, what: str) -> Tensor:
    c = torch.as_tensor(center, dtype=z.dtype, device=z.device)
    if c.shape == (width,):
        c = c.expand(z.batch_size, width)
    if c.shape != (z.batch_size, width):
        raise ValueError(f"{what} must be [{width}] or [B, {width}], got {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise ValueError(f"{what} must be finite, got {c.tolist()}")
    return c


def select_radius(
    z: Latents, geometry: Geometry, *, center: Sequence[float] | Tensor, radius: float
) -> Tensor:
    """Mask ``[B, L]`` of the latents whose position lies within ``radius`` of ``center`` (inclusive).

    Distances are Euclidean in the position block (the shortest way round on periodic domains;
    chordal on the sphere). ``center`` is ``[position_dim]`` or ``[B, position_dim]``.
    """
    _check_flat(z, "select_radius")
    if not radius >= 0 or radius == float("inf"):
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    dim = geometry.position_dim
    c = _center(center, z, dim, "center")
    delta = geometry.relative_position(c.unsqueeze(1), z.poses[..., :dim])
    return delta.square().sum(-1) <= radius**2


def select_box(
    z: Latents, geometry: Geometry, *, low: Sequence[float] | Tensor, high: Sequence[float] | Tensor
) -> Tensor:
    """Mask ``[B, L]`` of the latents whose position lies in the axis-aligned box ``low <= q <= high``."""
    _check_flat(z, "select_box")
    dim = geometry.position_dim
    lo, hi = _center(low, z, dim, "low"), _center(high, z, dim, "high")
    if (lo > hi).any():
        raise ValueError(
            f"box corners must satisfy low <= high, got low {lo.tolist()} and high {hi.tolist()}"
        )
    q = z.poses[..., :dim]
    return ((q >= lo.unsqueeze(1)) & (q <= hi.unsqueeze(1))).all(-1)


def selected_indices(mask: Tensor) -> list[int]:
    """Indices selected by a mask ``[L]`` or ``[1, L]`` (one cloud), for edit records."""
    if mask.dim() == 2:
        if mask.shape[0] != 1 and not (mask == mask[:1]).all():
            raise ValueError("the selection differs between batch entries; edit records hold one index list")
        mask = mask[0]
    return torch.nonzero(mask, as_tuple=False).flatten().tolist()
