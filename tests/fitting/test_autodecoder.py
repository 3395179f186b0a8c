"""Tests of the auto-decoder table and test-time latent optimisation."""

from __future__ import annotations

import pytest
import torch
from _common import F64

from enf import EquivariantNeuralField, Latents, geometry
from enf.fitting import AutoDecoderTable, optimise_latents
from enf.metrics import per_sample_mse

SMALL = dict(
    context_dim=8,
    hidden_dim=32,
    num_heads=2,
    num_query_frequencies=8,
    num_value_frequencies=8,
    value_hidden_dim=16,
    num_output_layers=1,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_table(name: str = "se2", num_signals: int = 5, **kwargs) -> AutoDecoderTable:
    torch.manual_seed(0)
    geom = geometry.get(name)
    return AutoDecoderTable(
        geometry=geom, num_signals=num_signals, num_latents=9, context_dim=8, **kwargs
    ).double()


def test_table_initialisation():
    geom = geometry.get("se2")
    table = make_table()
    expected_poses = geom.init_poses(9, dtype=F64)
    for i in range(5):
        torch.testing.assert_close(table.poses[i], expected_poses, atol=1e-7, rtol=0)
    torch.testing.assert_close(
        table.window, torch.full((5, 9, 1), geom.default_window(9), dtype=F64), atol=1e-7, rtol=0
    )
    # context: ones plus small per-row noise, so rows are distinguishable
    assert (table.context - 1.0).abs().max() < 0.1
    assert (table.context[0] - table.context[1]).abs().max() > 0
    assert not table.window.requires_grad
    assert make_table(learn_window=True).window.requires_grad


def test_table_returns_the_rows_asked_for():
    table = make_table()
    with torch.no_grad():
        table.context.copy_(torch.randn(table.context.shape, generator=gen(1), dtype=F64))
        table.poses.copy_(torch.randn(table.poses.shape, generator=gen(2), dtype=F64))
        table.window.copy_(torch.rand(table.window.shape, generator=gen(3), dtype=F64) + 0.1)
    index = torch.tensor([3, 0, 3, 4])
    z = table(index)
    assert isinstance(z, Latents) and z.batch_size == 4
    for row, i in enumerate(index.tolist()):
        assert torch.equal(z.poses[row], table.poses[i])
        assert torch.equal(z.context[row], table.context[i])
        assert torch.equal(z.window[row], table.window[i])
    mean = table.mean()
    assert mean.batch_size == 1
    torch.testing.assert_close(mean.context[0], table.context.mean(0), atol=1e-14, rtol=0)
    torch.testing.assert_close(mean.poses[0], table.poses.mean(0), atol=1e-14, rtol=0)


@pytest.mark.parametrize("index", [[5], [0, 5], [-1], [2, -3]])
def test_out_of_range_index_raises(index):
    table = make_table()
    with pytest.raises(ValueError, match=r"out of range \[0, 5\)"):
        table(torch.tensor(index))


def test_num_signals_validated():
    with pytest.raises(ValueError, match="num_signals"):
        AutoDecoderTable(geometry=geometry.get("se2"), num_signals=0, num_latents=4, context_dim=3)


def test_only_selected_rows_get_gradients():
    geom = geometry.get("se2")
    table = make_table()
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=1, **SMALL).double()
    x = geom.sample_coords(2, 16, generator=gen(4), dtype=F64)
    per_sample_mse(decoder(x, table(torch.tensor([1, 3]))), torch.zeros(2, 16, 1, dtype=F64)).sum().backward()
    row_grad = table.context.grad.flatten(1).abs().amax(1)
    assert (row_grad[[1, 3]] > 0).all()
    assert (row_grad[[0, 2, 4]] == 0).all()


@pytest.mark.parametrize("learn_window", [False, True])
def test_optimise_latents_reduces_loss_and_leaves_decoder_alone(learn_window):
    geom = geometry.get("translation2d")
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=1, **SMALL).double()
    before = {n: p.detach().clone() for n, p in decoder.named_parameters()}
    axis = torch.linspace(-1.0, 1.0, 8, dtype=F64)
    x = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 2).repeat(2, 1, 1)
    y = torch.stack([torch.sin(2.0 * x[0, :, :1]), torch.cos(3.0 * x[1, :, 1:]) * x[1, :, :1]])
    table = make_table("translation2d", num_signals=2)
    init = table(torch.tensor([0, 1]))
    init_copy = Latents(
        init.poses.detach().clone(), init.context.detach().clone(), init.window.detach().clone()
    )
    fit = optimise_latents(decoder, x, y, init, num_steps=30, lr=3e-2, learn_window=learn_window)
    with torch.no_grad():
        loss0 = per_sample_mse(decoder(x, init), y)
        loss1 = per_sample_mse(decoder(x, fit), y)
    assert (loss1 < 0.8 * loss0).all(), (loss0, loss1)
    for n, p in decoder.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None, n
    # the init is not modified in place and the result is detached
    assert torch.equal(init.poses, init_copy.poses) and torch.equal(init.context, init_copy.context)
    assert not fit.context.requires_grad and not fit.poses.requires_grad
    assert (fit.poses - init_copy.poses).abs().max() > 1e-3
    if learn_window:
        assert (fit.window - init_copy.window).abs().max() > 1e-4
    else:
        assert torch.equal(fit.window, init_copy.window)
