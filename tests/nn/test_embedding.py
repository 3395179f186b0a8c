"""Random Fourier features: the formula, the fixed seeded buffer, and how the decoder stores them."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64
from _decoder_utils import (
    gen,
    make_model,
    random_coords,
    random_latents,
)

from enf import geometry
from enf.nn import RandomFourierFeatures


# ------------------------------------------------------------------------------ random Fourier features
def test_random_fourier_features_formula():
    rff = RandomFourierFeatures(in_dim=3, num_frequencies=5, freq_scale=2.5, seed=7)
    assert rff.out_dim == 10
    a = torch.randn(4, 6, 3, generator=gen(48), dtype=F64)
    w = rff.weight.to(F64)  # [in_dim, F], already includes 2 pi * freq_scale
    phase = torch.einsum("...i,if->...f", a, w)
    expected = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)
    torch.testing.assert_close(rff(a), expected, atol=1e-13, rtol=0)
    # the buffer is W ~ N(0, 1) scaled by 2 pi freq_scale, drawn from a generator seeded with `seed`
    raw = torch.randn(3, 5, generator=gen(7)) * (2.0 * math.pi * 2.5)
    torch.testing.assert_close(rff.weight, raw)


def test_random_fourier_features_buffer_is_fixed_and_seeded():
    a = RandomFourierFeatures(in_dim=2, num_frequencies=16, seed=3)
    b = RandomFourierFeatures(in_dim=2, num_frequencies=16, seed=3)
    c = RandomFourierFeatures(in_dim=2, num_frequencies=16, seed=4)
    assert list(a.parameters()) == []
    assert "weight" in dict(a.named_buffers())
    assert "weight" in a.state_dict()
    assert not a.weight.requires_grad
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)
    # independent of the global random state
    torch.manual_seed(123)
    d = RandomFourierFeatures(in_dim=2, num_frequencies=16, seed=3)
    assert torch.equal(a.weight, d.weight)
    # the frequency scale is in cycles per unit: std of W is 2 pi freq_scale
    big = RandomFourierFeatures(in_dim=2, num_frequencies=4096, freq_scale=0.5, seed=0)
    assert abs(float(big.weight.std()) / (2 * math.pi * 0.5) - 1.0) < 0.05
    with pytest.raises(ValueError):
        RandomFourierFeatures(in_dim=2, num_frequencies=4, freq_scale=0.0)
    with pytest.raises(ValueError):
        RandomFourierFeatures(in_dim=0, num_frequencies=4)


def test_decoder_embeddings_are_not_trained_and_survive_state_dict():
    geom = geometry.get("se2")
    model = make_model(geom)
    names = {n for n, _ in model.named_parameters()}
    assert not any("embedding" in n for n in names)
    clone = make_model(geom, seed=1)
    clone.load_state_dict(model.state_dict())
    z = random_latents(geom, 1, 6, seed=49)
    x = random_coords(geom, 1, 8, seed=50)
    assert torch.equal(clone(x, z), model(x, z))
