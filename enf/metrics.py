"""Metrics: per-sample MSE, L1 and relative L2, PSNR, and the equivariance error of a decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from enf.geometry import Geometry
from enf.latents import Latents

__all__ = [
    "equivariance_error",
    "knn_accuracy",
    "per_sample_clamped_l1",
    "per_sample_l1",
    "per_sample_mse",
    "psnr",
    "relative_l2",
]


def per_sample_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per batch entry: ``[B, N, C] x [B, N, C] -> [B]``."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return (pred - target).square().flatten(1).mean(1)


def per_sample_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per batch entry: ``[B, N, C] x [B, N, C] -> [B]``."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return (pred - target).abs().flatten(1).mean(1)


def relative_l2(pred: Tensor, target: Tensor, *, eps: float = 1e-12) -> Tensor:
    """Relative L2 error per batch entry, ``||pred - target|| / max(||target||, eps)`` -> ``[B]``.

    Norms are Euclidean over all points and channels of a sample (``[B, N, C] x [B, N, C] -> [B]``); the
    clamp ``eps`` keeps an all-zero target finite (the error is then the absolute norm divided by ``eps``).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    num = (pred - target).flatten(1).norm(dim=1)
    return num / target.flatten(1).norm(dim=1).clamp_min(eps)


def psnr(pred: Tensor, target: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per batch entry in dB, predictions clipped to ``[0, data_range]``."""
    mse = per_sample_mse(pred.clamp(0.0, data_range), target)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


@torch.no_grad()
def equivariance_error(
    decoder: Callable[[Tensor, Latents], Tensor],
    geometry: Geometry,
    coords: Tensor,
    latents: Latents,
    *,
    generator: torch.Generator | None = None,
) -> float:
    """``max |f(g x; g z) - f(x; z)|`` over one random group element per batch entry."""
    g = geometry.sample_group(coords.shape[0], generator=generator, dtype=coords.dtype, device=coords.device)
    ref = decoder(coords, latents)
    moved = decoder(geometry.act_coords(g, coords), latents.transform(geometry, g))
    return float((moved - ref).abs().max())


def knn_accuracy(
    reference: Tensor, reference_labels: Tensor, query: Tensor, query_labels: Tensor, *, k: int = 5
) -> float:
    """Accuracy of a ``k``-nearest-neighbour classifier (Euclidean) fitted on ``reference [R, D]`` with
    ``reference_labels [R]``, on ``query [Q, D]`` with ``query_labels [Q]``. A tie of votes goes to the class
    of the nearer neighbours."""
    if reference.ndim != 2 or query.ndim != 2 or reference.shape[1] != query.shape[1]:
        raise ValueError(
            f"knn_accuracy needs reference [R, D] and query [Q, D], got {tuple(reference.shape)} and "
            f"{tuple(query.shape)}"
        )
    if reference_labels.shape != reference.shape[:1] or query_labels.shape != query.shape[:1]:
        raise ValueError("knn_accuracy: one label per reference and per query row")
    if reference.shape[0] == 0 or query.shape[0] == 0:
        raise ValueError("knn_accuracy needs at least one reference and one query row")
    k = min(k, reference.shape[0])
    dist = torch.cdist(query.double(), reference.double())
    nearest = dist.topk(k, dim=1, largest=False).indices  # [Q, k], nearest first
    votes = reference_labels[nearest]  # [Q, k]
    classes = torch.unique(reference_labels)
    onehot = (votes.unsqueeze(-1) == classes).double()  # [Q, k, C]
    weight = 1.0 + 1e-3 * (k - torch.arange(k, dtype=torch.float64)) / k  # nearer votes break ties
    pred = classes[(onehot * weight[None, :, None]).sum(1).argmax(-1)]
    return float((pred == query_labels).double().mean())


def per_sample_clamped_l1(pred: Tensor, target: Tensor, *, clamp: float = 0.1) -> Tensor:
    """``mean |clamp(pred) - clamp(target)|`` per batch entry, values clamped to ``[-clamp, clamp]``: the
    signed-distance loss that spends the model's capacity near the surface (DeepSDF's choice, 0.1)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return (pred.clamp(-clamp, clamp) - target.clamp(-clamp, clamp)).abs().flatten(1).mean(1)
