"""``LatentClassifier``: class logits of a latent point cloud, invariant to the group and to latent order.

    clf = LatentClassifier(geometry="se2", context_dim=32, num_classes=10)
    logits = clf(z)        # Latents [B, L, ...] -> [B, num_classes]

Node features start from the (standardised) context vectors and the log windows; edges carry
``pose_invariant(p_j, p_i)``; residual message-passing blocks (:mod:`enf.nn.message_passing`, the same ones
as the latent ODE) update the nodes, optionally only over each latent's ``k_nearest`` neighbours (by the
invariant distance of their positions); an invariant readout (mean, or attention pooling) and an MLP give
the logits. Everything the network sees is invariant, so ``clf(g z) = clf(z)`` for every group element of the
geometry and every permutation of the latents. With an ``absolute*`` geometry (``pose_invariant`` is the
sender's absolute pose) the same code is the non-equivariant baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.latents import Latents
from enf.nn.message_passing import MessagePassingBlock, edge_embedding, nearest_latent_mask

__all__ = ["READOUTS", "LatentClassifier"]

READOUTS = ("mean", "attention")


class LatentClassifier(nn.Module):
    """Invariant message passing over latent point clouds, then an invariant readout and an MLP.

    Args:
        geometry: the geometry of the latents (registry name or instance); ``absolute2d`` and the other
            ``absolute*`` geometries give the non-equivariant baseline.
        context_dim: width of the latent context vectors.
        num_classes: number of classes ``K``.
        hidden_dim: width of the node features.
        basis_dim: width of the embedded edge invariants.
        num_layers: residual message-passing blocks.
        widening: hidden width factor of the block MLPs.
        num_frequencies: random Fourier frequencies of the edge invariants.
        freq_scale: standard deviation of those frequencies.
        k_nearest: each latent listens to its ``k_nearest`` nearest latents (itself included; by the
            geometry's invariant distance of the poses) instead of all of them.
        readout: ``mean`` over the latents or ``attention`` pooling (softmax weights from the node features).
        dropout: dropout before the last layer (training only).

    The context vectors are standardised with the buffers ``context_mean`` / ``context_std`` (identity until
    :meth:`set_context_statistics` is called with training latents: Meta-SGD contexts sit close to their shared
    initial value, so their offsets are small).

    Shapes: ``forward(latents)`` with poses ``[B, L, pose_dim]``, context ``[B, L, context_dim]``, window
    ``[B, L, 1]`` -> logits ``[B, num_classes]``.
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        context_dim: int,
        num_classes: int,
        hidden_dim: int = 64,
        basis_dim: int = 64,
        num_layers: int = 3,
        widening: int = 2,
        num_frequencies: int = 32,
        freq_scale: float = 1.0,
        k_nearest: int | None = None,
        readout: str = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for label, value in (
            ("context_dim", context_dim),
            ("num_classes", num_classes),
            ("hidden_dim", hidden_dim),
            ("basis_dim", basis_dim),
            ("num_layers", num_layers),
            ("widening", widening),
            ("num_frequencies", num_frequencies),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if k_nearest is not None and (
            isinstance(k_nearest, bool) or not isinstance(k_nearest, int) or k_nearest < 1
        ):
            raise ValueError(f"k_nearest must be None or a positive int, got {k_nearest!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.geometry = get_geometry(geometry)
        self.context_dim = context_dim
        self.num_classes = num_classes
        self.k_nearest = k_nearest
        self.readout = readout
        self.edge_embedding = edge_embedding(
            geometry=self.geometry,
            num_frequencies=num_frequencies,
            freq_scale=freq_scale,
            basis_dim=basis_dim,
        )
        self.node_in = nn.Linear(context_dim + 1, hidden_dim)  # context and log window
        self.blocks = nn.ModuleList(
            MessagePassingBlock(hidden_dim=hidden_dim, basis_dim=basis_dim, widening=widening)
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.pool = nn.Linear(hidden_dim, 1) if readout == "attention" else None
        self.head = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
        self.register_buffer("context_mean", torch.zeros(context_dim))
        self.register_buffer("context_std", torch.ones(context_dim))

    @torch.no_grad()
    def set_context_statistics(self, context: Tensor) -> None:
        """Standardise contexts with the per-channel mean and std of ``context [..., context_dim]``."""
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must end in context_dim={self.context_dim}, got {tuple(context.shape)}"
            )
        flat = context.reshape(-1, self.context_dim).to(self.context_mean)
        if flat.shape[0] < 2 or not torch.isfinite(flat).all():
            raise ValueError("context statistics need at least two finite context vectors")
        self.context_mean.copy_(flat.mean(0))
        self.context_std.copy_(flat.std(0).clamp_min(1e-6))

    def forward(self, latents: Latents) -> Tensor:
        """Class logits ``[B, num_classes]`` of ``latents`` (poses ``[B, L, pose_dim]``)."""
        if not isinstance(latents, Latents):
            raise TypeError(f"LatentClassifier expects enf.Latents, got {type(latents).__name__}")
        geom = self.geometry
        if latents.has_time_axis or latents.poses.shape[-1] != geom.pose_dim:
            raise ValueError(
                f"latents {latents!r} do not fit this classifier: expected poses [B, L, {geom.pose_dim}] "
                f"({geom.name}) without a time axis"
            )
        if latents.context_dim != self.context_dim:
            raise ValueError(f"latent context has width {latents.context_dim}, expected {self.context_dim}")
        poses = latents.poses
        basis = self.edge_embedding(
            geom.pose_invariant(poses.unsqueeze(1), poses.unsqueeze(2))
        )  # [B, i, j, F]
        mask = nearest_latent_mask(geom, poses, self.k_nearest)
        context = (latents.context - self.context_mean) / self.context_std
        h = self.node_in(torch.cat([context, latents.window.clamp_min(1e-12).log()], dim=-1))
        for block in self.blocks:
            h = block(h, basis, mask)
        h = self.out_norm(h)
        if self.pool is None:
            pooled = h.mean(1)
        else:
            pooled = (torch.softmax(self.pool(h), dim=1) * h).sum(1)
        return self.head(pooled)

    def extra_repr(self) -> str:
        return (
            f"geometry={self.geometry.name}, context_dim={self.context_dim}, num_classes={self.num_classes}, "
            f"k_nearest={self.k_nearest}, readout={self.readout}"
        )
