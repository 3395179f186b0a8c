"""Metrics: per-sample MSE, L1 and relative L2, PSNR, occupancy IoU and Chamfer distance of shapes, k-NN
accuracy, and the equivariance error of a decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from enf.geometry import Geometry
from enf.latents import Latents

__all__ = [
    "chamfer_distance",
    "equivariance_error",
    "knn_accuracy",
    "occupancy_iou",
    "per_sample_clamped_l1",
    "per_sample_l1",
    "per_sample_mse",
    "per_sample_sdf_l1",
    "per_sample_tanh_l1",
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


def occupancy_iou(pred_sdf: Tensor, true_sdf: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Intersection over union of the occupancies ``sdf < 0`` (inside), per batch entry:
    ``[B, N, 1] x [B, N, 1] -> [B]`` (``[B, N]`` also accepted). ``mask`` (bool ``[N]`` or ``[B, N]``) selects
    the points that count, e.g. uniform samples of the volume. Two empty occupancies have IoU 1."""
    if pred_sdf.shape != true_sdf.shape:
        raise ValueError(
            f"prediction {tuple(pred_sdf.shape)} and target {tuple(true_sdf.shape)} shapes differ"
        )
    if pred_sdf.dim() == 3:
        if pred_sdf.shape[-1] != 1:
            raise ValueError(
                f"occupancy_iou needs one channel (the signed distance), got {pred_sdf.shape[-1]}"
            )
        pred_sdf, true_sdf = pred_sdf[..., 0], true_sdf[..., 0]
    if pred_sdf.dim() != 2:
        raise ValueError(f"occupancy_iou needs [B, N] or [B, N, 1], got {tuple(pred_sdf.shape)}")
    pred, true = pred_sdf < 0, true_sdf < 0
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=pred.device).expand_as(pred)
        pred, true = pred & mask, true & mask
    inter = (pred & true).sum(1).double()
    union = (pred | true).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def chamfer_distance(a: Tensor, b: Tensor, *, chunk_size: int = 4096) -> Tensor:
    """Symmetric Chamfer-L1 distance of point sets ``a [B, P, d]`` and ``b [B, Q, d]`` -> ``[B]``:
    ``(mean_a min_b |a - b| + mean_b min_a |a - b|) / 2`` (Euclidean norms, not squared), computed in chunks
    of ``chunk_size`` points so memory stays ``O(chunk_size * Q)``."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"chamfer_distance needs [B, P, d] and [B, Q, d], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError("chamfer_distance needs at least one point in each set")

    def nearest(x: Tensor, y: Tensor) -> Tensor:  # mean over x of the distance to the nearest y
        return torch.cat([torch.cdist(c, y).amin(2) for c in x.split(chunk_size, dim=1)], dim=1).mean(1)

    return 0.5 * (nearest(a, b) + nearest(b, a))


def per_sample_tanh_l1(pred: Tensor, target: Tensor, *, delta: float = 0.1) -> Tensor:
    """``mean |tanh(pred / delta) - tanh(target / delta)|`` per batch entry: L1 on signed distances squashed
    smoothly to ``(-1, 1)``, so the loss concentrates near the surface like a clamp (``|d| < delta``) but keeps
    a gradient everywhere (the ENF reference's shape loss, averaged rather than summed)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return (torch.tanh(pred / delta) - torch.tanh(target / delta)).abs().flatten(1).mean(1)


def per_sample_sdf_l1(pred: Tensor, target: Tensor, *, delta: float = 0.1, raw_weight: float = 1.0) -> Tensor:
    """:func:`per_sample_tanh_l1` plus ``raw_weight * mean |pred - target|``: the squashed term places the
    surface, the raw term keeps the sign right far from it (where ``tanh`` is flat, a field left to itself
    grows spurious inside regions that cost occupancy IoU)."""
    return per_sample_tanh_l1(pred, target, delta=delta) + raw_weight * per_sample_l1(pred, target)
