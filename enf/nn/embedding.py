"""Random Fourier features of invariants."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RandomFourierFeatures"]


class RandomFourierFeatures(nn.Module):
    """``gamma(a) = [sin(2 pi a W), cos(2 pi a W)]`` with a fixed ``W ~ N(0, freq_scale^2)``.

    Args:
        in_dim: width of the invariant ``a``.
        num_frequencies: number of frequencies ``F``; the output width is ``2 F``.
        freq_scale: standard deviation of the frequencies (in cycles per unit of ``a``).
        seed: seed of the frequency matrix (a buffer: saved in checkpoints, never trained).

    Shapes: ``a [..., in_dim] -> [..., 2 * num_frequencies]``.
    """

    def __init__(
        self, *, in_dim: int, num_frequencies: int = 32, freq_scale: float = 1.0, seed: int = 0
    ) -> None:
        super().__init__()
        if in_dim < 1 or num_frequencies < 1:
            raise ValueError(f"in_dim and num_frequencies must be >= 1, got {in_dim}, {num_frequencies}")
        if not freq_scale > 0:
            raise ValueError(f"freq_scale must be positive, got {freq_scale}")
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(in_dim, num_frequencies, generator=gen) * (2.0 * math.pi * freq_scale)
        self.register_buffer("weight", weight)
        self.in_dim = in_dim
        self.out_dim = 2 * num_frequencies

    def forward(self, a: Tensor) -> Tensor:
        phase = a @ self.weight.to(a.dtype)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}"
