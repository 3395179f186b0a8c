"""Gated feed-forward block (GeGLU): the per-query block MetaLF places after the cross-attention."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GatedFeedForward"]


class GatedFeedForward(nn.Module):
    """``x <- x + W_out(GELU(W_gate LN(x)) * W_value LN(x))``: a pre-norm residual GeGLU block.

    ``x [..., dim] -> [..., dim]``. Pointwise in every leading axis, so it keeps whatever invariance its
    input has.

    Args:
        dim: width of the input and output.
        hidden_dim: width of the gated hidden layer (``None``: ``dim``).
        zero_init: start as the identity (output projection zero), so adding the block to a trained model
            changes nothing until it learns.
    """

    def __init__(self, *, dim: int, hidden_dim: int | None = None, zero_init: bool = False) -> None:
        super().__init__()
        hidden_dim = dim if hidden_dim is None else hidden_dim
        if dim < 1 or hidden_dim < 1:
            raise ValueError(f"dim and hidden_dim must be >= 1, got {dim} and {hidden_dim}")
        self.norm = nn.LayerNorm(dim)
        self.gate_value = nn.Linear(dim, 2 * hidden_dim)
        self.out = nn.Linear(hidden_dim, dim)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.gate_value(self.norm(x)).chunk(2, dim=-1)
        return x + self.out(F.gelu(gate) * value)
