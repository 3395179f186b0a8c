"""Sparse observations: masks of observed points, gathering them, random subsets among them.

A mask is ``[B, N]`` bool (``True``: observed). When every sample has the same number ``M`` of observed
points they are gathered into ``[B, M, ...]`` tensors (the decoder then sees only those points); otherwise
the full tensors are kept together with the mask and the per-sample loss is evaluated on each sample's
observed points (:func:`enf.fitting.base.per_sample_loss`). Both give the same fit.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "check_mask",
    "gather_observed",
    "index_mask",
    "sample_coordinate_subsets",
    "sample_observed_subsets",
    "select_points",
]


def check_mask(mask: Tensor, coords: Tensor, *, what: str = "mask") -> Tensor:
    """Validate ``mask [B, N]`` (bool, at least one observed point per sample) against ``coords [B, N, d]``."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{what} must be a bool tensor [B, N], got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{what} must have dtype torch.bool (True: observed), got {mask.dtype}")
    if mask.shape != coords.shape[:2]:
        raise ValueError(
            f"{what} must be [B, N] = {tuple(coords.shape[:2])} like coords {tuple(coords.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    counts = mask.sum(1)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"{what} observes no point of sample(s) {empty}; every sample needs >= 1 point")
    return mask


def gather_observed(
    coords: Tensor, signal: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(coords, signal, mask)`` reduced to the observed points where possible.

    ``mask=None``: everything unchanged. Equal observed counts ``M``: the observed points in their
    original order, ``coords [B, M, d]``, ``signal [B, M, C]`` and mask ``None``. Unequal counts: the
    inputs unchanged with the mask, for a masked per-sample loss.
    """
    if mask is None:
        return coords, signal, None
    counts = mask.sum(1)
    if bool((counts == counts[0]).all()):
        b = coords.shape[0]
        return (
            rearrange(coords[mask], "(b m) d -> b m d", b=b),
            rearrange(signal[mask], "(b m) c -> b m c", b=b),
            None,
        )
    return coords, signal, mask


def index_mask(index: Tensor | None, mask: Tensor) -> Tensor:
    """``mask`` restricted to the points ``index`` (shared by the batch; ``None``: all points)."""
    if index is None:
        return mask
    keep = torch.zeros(mask.shape[1], dtype=torch.bool, device=mask.device)
    keep[index.to(mask.device)] = True
    return mask & keep


def sample_observed_subsets(
    mask: Tensor, subset_size: int | None, num_subsets: int, *, generator: torch.Generator | None = None
) -> list[Tensor]:
    """``num_subsets`` masks ``[B, N]``, each with ``min(subset_size, observed count)`` random observed points
    per sample (``subset_size=None``: all observed points)."""
    if subset_size is None:
        return [mask] * num_subsets
    out = []
    for _ in range(num_subsets):
        scores = torch.rand(mask.shape, generator=generator, dtype=torch.float64).to(mask.device)
        scores = scores.masked_fill(~mask, 2.0)  # unobserved points rank last
        rank = scores.argsort(dim=1).argsort(dim=1)
        out.append(mask & (rank < subset_size))
    return out


def sample_coordinate_subsets(
    num_coords: int,
    subset_size: int | None,
    num_subsets: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor | None]:
    """``num_subsets`` independent random index sets of size ``subset_size`` (``None`` entries: all points)."""
    if subset_size is None or subset_size >= num_coords:
        return [None] * num_subsets
    return [
        torch.randperm(num_coords, generator=generator)[:subset_size].to(device) for _ in range(num_subsets)
    ]


def select_points(
    coords: Tensor, signal: Tensor, subset: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(coords, signal, mask)`` of one step's subset: ``None`` (all points), an index tensor ``[n]``
    shared by the batch, or a bool mask ``[B, N]`` (from :func:`sample_observed_subsets`, gathered with
    :func:`gather_observed`)."""
    if subset is None:
        return coords, signal, None
    if subset.dtype == torch.bool:
        return gather_observed(coords, signal, subset)
    return coords[:, subset], signal[:, subset], None
