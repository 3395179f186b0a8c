"""Shared pieces of the fitting tests: a small float64 decoder and seeded generators."""

from __future__ import annotations

import torch

from enf import EquivariantNeuralField

CONTEXT_DIM = 8
SMALL = dict(
    context_dim=CONTEXT_DIM,
    hidden_dim=32,
    num_heads=2,
    num_query_frequencies=8,
    num_value_frequencies=8,
    value_hidden_dim=16,
    num_output_layers=1,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_decoder(
    geom, *, num_out: int = 2, k_nearest=None, seed: int = 0, **overrides
) -> EquivariantNeuralField:
    """A small float64 decoder with every parameter moved away from its initial value (so outputs depend on
    the latents)."""
    torch.manual_seed(seed)
    kw = {**SMALL, **overrides}
    model = EquivariantNeuralField(geometry=geom, num_out=num_out, k_nearest=k_nearest, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.double()
