"""Overfit test: a tiny translation-equivariant ENF trained with Meta-SGD reconstructs one image."""

from __future__ import annotations

import math

import pytest
import torch

from enf import EquivariantNeuralField, geometry
from enf.fitting import MetaSGD
from enf.metrics import per_sample_mse, psnr


def smooth_image(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coords ``[1, n*n, 2]`` in ``[-1, 1]^2`` and a smooth image ``[1, n*n, 1]`` in [0, 1]."""
    axis = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2.0 - 1.0
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 2)
    x, y = coords[..., 0], coords[..., 1]
    blob = torch.exp(-((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.1)
    image = 0.5 + 0.25 * torch.sin(math.pi * x) * torch.cos(1.5 * math.pi * y) + 0.2 * blob
    return coords, image.clamp(0.0, 1.0).unsqueeze(-1)


@pytest.mark.parametrize("value_hidden_dim", [None, 32])  # None: the library default
def test_overfit_single_image_reaches_psnr(value_hidden_dim):
    torch.manual_seed(0)
    geom = geometry.get("translation2d")
    extra = {} if value_hidden_dim is None else {"value_hidden_dim": value_hidden_dim}
    decoder = EquivariantNeuralField(
        **extra,
        geometry=geom,
        num_out=1,
        context_dim=16,
        hidden_dim=64,
        num_heads=2,
        num_query_frequencies=16,
        num_value_frequencies=16,
        num_output_layers=2,
    )
    meta = MetaSGD(geometry=geom, num_latents=16, context_dim=16, num_inner_steps=3)
    coords, image = smooth_image(16)
    assert 0.2 < float(image.min()) and float(image.max()) < 0.9  # no clipping inside the metric

    def reconstruction_psnr() -> float:
        fitted = meta(decoder, coords, image, create_graph=False)  # no second-order graph for evaluation
        with torch.no_grad():
            return float(psnr(decoder(coords, fitted), image).mean())

    start = reconstruction_psnr()
    optimiser = torch.optim.Adam([*decoder.parameters(), *meta.parameters()], lr=3e-3)
    for _ in range(150):
        fitted = meta(decoder, coords, image)
        loss = per_sample_mse(decoder(coords, fitted), image).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    final = reconstruction_psnr()
    assert start < 15.0, start
    assert final >= 25.0, f"PSNR after training {final:.2f} dB (start {start:.2f} dB)"
