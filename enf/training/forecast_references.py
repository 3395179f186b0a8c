"""Forecast errors and the trivial references every forecast is reported beside.

* :func:`rollout_errors`: per-trajectory, per-frame MSE, VRMSE (RMSE over the grid divided by the true
  frame's standard deviation, per channel, then averaged over channels: the convention of PDE-emulation
  benchmarks) and, where the grid has quadrature weights (the sphere, the ball), the area-weighted MSE.
* :func:`nearest_fill`: a field known at some points, filled in everywhere by its nearest known value
  (the trivial reference for sparse or coarser initial states).
* :func:`training_mean_field`: the mean field of the training trajectories' in-horizon frames.

The references of a rollout ``[B, T, N, C]``: **persistence** holds the (observed) initial state for all
time; **meanfield** predicts the training mean field at every time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from enf.data import keys
from enf.geometry import Geometry

__all__ = ["REFERENCES", "nearest_fill", "rollout_errors", "training_mean_field"]

REFERENCES = ("persistence", "meanfield")
_VAR_EPS = 1e-7  # added to the variance in VRMSE (the_well's convention)


def rollout_errors(pred: Tensor, target: Tensor, *, weights: Tensor | None = None) -> dict[str, Tensor]:
    """Errors of ``pred`` against ``target`` (both ``[B, T, N, C]``, the same scale), each ``[B, T]``.

    Returns ``mse`` (mean over points and channels), ``vrmse`` (``sqrt(mean_n err^2 / (var_n target +
    1e-7))`` per channel, averaged over channels) and, with ``weights [N]`` (quadrature weights of the grid),
    ``wmse`` (the squared error integrated with ``weights / sum(weights)``).
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"rollout_errors needs pred and target of one shape [B, T, N, C], got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    err = (pred - target).square()
    out = {
        "mse": err.mean(dim=(2, 3)),
        "vrmse": (err.mean(dim=2) / (target.var(dim=2, unbiased=False) + _VAR_EPS)).sqrt().mean(dim=-1),
    }
    if weights is not None:
        if weights.shape != (target.shape[2],):
            raise ValueError(f"weights must be [N] = [{target.shape[2]}], got {tuple(weights.shape)}")
        w = (weights / weights.sum()).to(err)
        out["wmse"] = torch.einsum("btn,n->bt", err.mean(dim=3), w)
    return out


def nearest_fill(
    geometry: Geometry,
    coords: Tensor,
    values: Tensor,
    *,
    mask: Tensor | None = None,
    query: Tensor | None = None,
    chunk: int = 4096,
) -> Tensor:
    """Values at ``query`` (default ``coords``) copied from the nearest point of ``coords`` where ``mask``.

    Args:
        geometry: the domain (nearest in the distance of its :meth:`~enf.geometry.Geometry.relative_position`:
            wrapped on the torus, chordal on the sphere, Euclidean otherwise).
        coords: ``[B, N, coord_dim]`` points with known ``values [B, N, C]``.
        mask: bool ``[B, N]``: which points are known (``None``: all).
        query: ``[B, M, coord_dim]`` points to fill (``None``: ``coords``).

    Returns:
        ``[B, M, C]``.
    """
    query = coords if query is None else query
    out = []
    for b in range(coords.shape[0]):
        known = coords[b] if mask is None else coords[b][mask[b]]
        vals = values[b] if mask is None else values[b][mask[b]]
        if known.shape[0] == 0:
            raise ValueError(f"nearest_fill: trajectory {b} has no observed point")
        rows = []
        for start in range(0, query.shape[1], chunk):
            q = query[b, start : start + chunk]
            d2 = geometry.relative_position(q.unsqueeze(1), known.unsqueeze(0)).square().sum(-1)
            rows.append(vals[d2.argmin(dim=1)])
        out.append(torch.cat(rows))
    return torch.stack(out)


def training_mean_field(
    batches: Iterable[Mapping[str, Tensor]], *, horizon: int, denormalize: Callable[[Tensor], Tensor]
) -> Tensor:
    """``[N, C]``: the mean over trajectories and in-horizon frames (``[0, horizon)``) of trajectory
    batches (``signal [B, T, N, C]``), on the physical scale (``denormalize``)."""
    total, count = None, 0
    for batch in batches:
        signal = denormalize(batch[keys.SIGNAL][:, :horizon]).double()
        part = signal.sum(dim=(0, 1))
        total = part if total is None else total + part
        count += signal.shape[0] * signal.shape[1]
    if total is None:
        raise ValueError("training_mean_field got no trajectories")
    return (total / count).float()
