"""The equivariant neural field decoder ``f_theta(x; z)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from enf.geometry import Geometry, get
from enf.latents import Latents
from enf.nn.attention import BiInvariantCrossAttention

__all__ = ["EquivariantNeuralField"]


class EquivariantNeuralField(nn.Module):
    """Bi-invariant cross-attention followed by a pointwise MLP: ``f(x; z) -> [B, N, num_out]``.

    Steerable by construction: ``f(g x; g z) = f(x; z)`` for every group element ``g`` of the geometry.

    Args:
        geometry: a :class:`~enf.geometry.Geometry` or its registry name.
        num_out: number of output channels ``C_out``.
        context_dim: width of latent context vectors.
        hidden_dim: attention width (split over heads) and MLP width.
        num_heads: attention heads.
        num_query_frequencies / num_value_frequencies: RFF sizes of the query / value embeddings.
        query_freq_scale / value_freq_scale: RFF frequency standard deviations.
        value_hidden_dim: hidden width of the value-conditioning MLP (0: linear).
        k_nearest: attend to the ``k`` nearest latents only (``None``: all latents).
        use_window: Gaussian window on the attention logits.
        channel_modulation: value conditioning ``alpha`` per channel (DESIGN form, per-pair ``[.., C]`` work)
            instead of per head (``beta`` is always per channel).
        num_output_layers: hidden layers of the output MLP.
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        num_out: int,
        context_dim: int = 32,
        hidden_dim: int = 128,
        num_heads: int = 2,
        num_query_frequencies: int = 32,
        num_value_frequencies: int = 32,
        query_freq_scale: float = 1.0,
        value_freq_scale: float = 1.0,
        value_hidden_dim: int = 0,
        k_nearest: int | None = None,
        use_window: bool = True,
        channel_modulation: bool = False,
        num_output_layers: int = 2,
    ) -> None:
        super().__init__()
        if num_out < 1:
            raise ValueError(f"num_out must be >= 1, got {num_out}")
        self.geometry = get(geometry)
        self.num_out = num_out
        self.context_dim = context_dim
        self.attention = BiInvariantCrossAttention(
            geometry=self.geometry,
            context_dim=context_dim,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_query_frequencies=num_query_frequencies,
            num_value_frequencies=num_value_frequencies,
            query_freq_scale=query_freq_scale,
            value_freq_scale=value_freq_scale,
            value_hidden_dim=value_hidden_dim,
            k_nearest=k_nearest,
            use_window=use_window,
            channel_modulation=channel_modulation,
        )
        layers: list[nn.Module] = []
        for _ in range(num_output_layers):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim, num_out))
        self.head = nn.Sequential(*layers)

    def forward(self, coords: Tensor, latents: Latents, *, chunk_size: int | None = None) -> Tensor:
        """Decode ``coords [B, N, coord_dim]`` with ``latents`` (batch ``B``) -> ``[B, N, num_out]``.

        ``chunk_size`` decodes the coordinates in chunks (same result, bounded memory).
        """
        self._check_inputs(coords, latents)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
        if chunk_size is not None and coords.shape[1] > chunk_size:
            parts = [self._decode(c, latents) for c in coords.split(chunk_size, dim=1)]
            return torch.cat(parts, dim=1)
        return self._decode(coords, latents)

    def _decode(self, coords: Tensor, latents: Latents) -> Tensor:
        return self.head(self.attention(coords, latents))

    def _check_inputs(self, coords: Tensor, latents: Latents) -> None:
        geom = self.geometry
        if not isinstance(latents, Latents):
            raise TypeError(f"latents must be enf.Latents, got {type(latents).__name__}")
        if coords.dim() != 3 or coords.shape[-1] != geom.coord_dim:
            raise ValueError(
                f"coords must be [B, N, {geom.coord_dim}] for geometry {geom.name!r}, got {tuple(coords.shape)}"
            )
        if latents.poses.shape[-1] != geom.pose_dim:
            raise ValueError(
                f"latent poses must have pose_dim {geom.pose_dim} for geometry {geom.name!r}, "
                f"got {tuple(latents.poses.shape)}"
            )
        if latents.context.shape[-1] != self.context_dim:
            raise ValueError(
                f"latent context must have width {self.context_dim}, got {tuple(latents.context.shape)}"
            )
        if latents.batch_size != coords.shape[0]:
            raise ValueError(f"coords batch {coords.shape[0]} and latents batch {latents.batch_size} differ")
