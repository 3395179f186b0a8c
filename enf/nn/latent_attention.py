"""Invariant self-attention over a latent point cloud: the latents exchange context before decoding.

Each latent attends to its ``k`` nearest latents (ties with the k-th all kept) with logits
``q_i . k_j / sqrt(d) + b(e_ij)`` and values ``v_j * (1 + m(e_ij))``, where ``e_ij`` embeds the
bi-invariant ``pose_invariant(p_j, p_i)`` (:func:`~enf.nn.message_passing.edge_embedding`). Only invariants
enter, so the updated contexts are invariant to the group acting on the poses and the poses are untouched:
a decoder that mixes its latents first stays exactly steerable.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.latents import Latents
from enf.nn.feed_forward import GatedFeedForward
from enf.nn.message_passing import edge_embedding, nearest_latent_mask

__all__ = ["LatentSelfAttention"]


class _Block(nn.Module):
    def __init__(self, *, context_dim: int, num_heads: int, basis_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(context_dim)
        self.qkv = nn.Linear(context_dim, 3 * context_dim)
        self.edge_bias = nn.Linear(basis_dim, num_heads)
        self.edge_value = nn.Linear(basis_dim, context_dim)
        self.out = nn.Linear(context_dim, context_dim)
        nn.init.zeros_(self.out.weight)  # start as the identity: a trained decoder is unchanged at first
        nn.init.zeros_(self.out.bias)
        self.feed_forward = GatedFeedForward(dim=context_dim, zero_init=True)

    def forward(self, context: Tensor, basis: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = rearrange(self.qkv(self.norm(context)), "b l (t h d) -> t b h l d", t=3, h=self.num_heads)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, i, j]
        logits = logits + rearrange(self.edge_bias(basis), "b i j h -> b h i j")
        if mask is not None:
            logits = logits.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = rearrange(torch.softmax(logits, dim=-1), "b h i j -> b i j h 1")
        values = rearrange(v, "b h j d -> b 1 j h d") * (
            1.0 + rearrange(self.edge_value(basis), "b i j (h d) -> b i j h d", h=self.num_heads)
        )
        mixed = rearrange((weights * values).sum(2), "b i h d -> b i (h d)")
        return self.feed_forward(context + self.out(mixed))


class LatentSelfAttention(nn.Module):
    """``num_layers`` pre-norm attention blocks (each followed by a :class:`~enf.nn.GatedFeedForward`) over
    the latents: ``Latents [B, L, ...] -> Latents`` with new context, same poses and windows.

    Every block starts as the identity (zero output projections).

    Args:
        geometry: the geometry of the poses.
        context_dim: width of the context vectors (split over ``num_heads``).
        num_layers: attention blocks (>= 1).
        num_heads: heads (must divide ``context_dim``).
        k_nearest: attend to the ``k`` nearest latents (``None``: all).
        basis_dim: width of the embedded edge invariants.
        num_frequencies / freq_scale: random Fourier features of the edge invariants.
    """

    def __init__(
        self,
        *,
        geometry: Geometry,
        context_dim: int,
        num_layers: int = 1,
        num_heads: int = 2,
        k_nearest: int | None = None,
        basis_dim: int = 32,
        num_frequencies: int = 16,
        freq_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_heads < 1 or context_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide context_dim={context_dim}")
        if k_nearest is not None and k_nearest < 1:
            raise ValueError(f"k_nearest must be None or >= 1, got {k_nearest}")
        self.geometry = geometry
        self.k_nearest = k_nearest
        self.edge_embedding = edge_embedding(
            geometry=geometry, num_frequencies=num_frequencies, freq_scale=freq_scale, basis_dim=basis_dim
        )
        self.blocks = nn.ModuleList(
            _Block(context_dim=context_dim, num_heads=num_heads, basis_dim=basis_dim)
            for _ in range(num_layers)
        )

    def forward(self, latents: Latents) -> Latents:
        poses = latents.poses
        basis = self.edge_embedding(
            self.geometry.pose_invariant(poses.unsqueeze(1), poses.unsqueeze(2))
        )  # [B, i, j, basis_dim]
        mask = nearest_latent_mask(self.geometry, poses, self.k_nearest)
        context = latents.context
        for block in self.blocks:
            context = block(context, basis, mask)
        return Latents(poses=poses, context=context, window=latents.window)

    def extra_repr(self) -> str:
        return f"geometry={self.geometry.name}, num_layers={len(self.blocks)}, k_nearest={self.k_nearest}"
