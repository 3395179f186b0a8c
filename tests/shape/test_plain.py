"""The plain VAE, the shape VAE's non-equivariant control: its KL against an independent closed form, its
code changes when the input is rotated (where the shape VAE's does not), and it learns."""

from __future__ import annotations

import math

import pytest
import torch

from enf.shape import PlainVAE, ShapeVAE
from enf.training.shape_module import random_similarity


def _cloud(batch: int = 6, num: int = 7, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, num, 2, generator=gen, dtype=torch.float64),
            torch.randn(batch, num, 3, generator=gen, dtype=torch.float64))  # fmt: skip


def test_kl_is_the_gaussian_closed_form():
    torch.manual_seed(0)
    vae = PlainVAE(space_dim=2, num_points=7, code_dim=5, num_out_points=4, feature_dim=3).double()
    x, f = _cloud()
    out = vae(x, f, sample=False)
    mu, sigma = out.posterior.loc, out.posterior.scale
    closed = 0.5 * (sigma.square() + mu.square() - 1.0 - 2.0 * sigma.log()).sum(-1)
    torch.testing.assert_close(out.kl, closed)
    assert torch.equal(out.code, mu) and out.encoding is None and out.points.shape == (6, 4, 2)


def test_the_plain_code_sees_the_pose_and_the_shape_code_does_not():
    torch.manual_seed(0)
    plain = PlainVAE(space_dim=2, num_points=7, code_dim=12, num_out_points=7, feature_dim=3).double()
    shape = ShapeVAE(space_dim=2, num_landmarks=7, num_out_points=7, feature_dim=3, hidden_dim=16).double()
    x, f = _cloud(seed=1)
    g = random_similarity(6, 2, generator=torch.Generator().manual_seed(2))
    moved = g(x)
    assert (shape(moved, f, sample=False).code - shape(x, f, sample=False).code).abs().max() < 1e-9
    assert (plain(moved, f, sample=False).code - plain(x, f, sample=False).code).abs().max() > 1e-3


def test_it_learns_and_checks_its_inputs():
    torch.manual_seed(0)
    vae = PlainVAE(space_dim=2, num_points=7, code_dim=4, num_out_points=7, hidden_dim=64)
    x = torch.randn(1, 7, 2).expand(32, -1, -1) * torch.linspace(0.5, 1.5, 32)[:, None, None]
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        out = vae(x)
        loss = (out.points - x).square().mean() + 1e-3 * out.kl.mean()
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float((vae(x, sample=False).points - x).square().mean()) < 0.05 * first
    with pytest.raises(ValueError, match=r"positions must be \[B, 7, 2\]"):
        vae(torch.zeros(2, 6, 2))
    with pytest.raises(ValueError, match="no mask"):
        vae(x, mask=torch.ones(32, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="code_dim"):
        PlainVAE(space_dim=2, num_points=7, code_dim=0, num_out_points=7)
    assert math.isfinite(float(vae.sample_prior(3)[1].sum()))
