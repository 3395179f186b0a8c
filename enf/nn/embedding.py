"""Random Fourier features of invariants."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RandomFourierFeatures", "fourier_features"]


class _FourierFeatures(torch.autograd.Function):
    """``[sin p, cos p]`` saving only its output: ``d sin = cos dp``, ``d cos = -sin dp``."""

    @staticmethod
    def forward(ctx, phase: Tensor) -> Tensor:
        out = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        s, c = out.chunk(2, dim=-1)
        grad_s, grad_c = grad.chunk(2, dim=-1)
        return grad_s * c - grad_c * s


def fourier_features(phase: Tensor) -> Tensor:
    """``[sin phase, cos phase]``: ``[..., F] -> [..., 2F]``, differentiable to any order.

    The backward reuses the output instead of keeping ``phase``: a consumer that saves the features anyway
    (a GEMM with an input-dependent operand) shares that storage, so one embedding keeps ``2F`` rather than
    ``3F`` numbers per pair alive for the backward.
    """
    return _FourierFeatures.apply(phase)


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
        return fourier_features(a @ self.weight.to(a.dtype))

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}"
