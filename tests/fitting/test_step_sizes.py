"""Tests of the squashed Meta-SGD step-size parametrisation: values, derivative, no vanishing gradient."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64

from enf import EquivariantNeuralField
from enf.fitting import MetaSGD, sample_coordinate_subsets, squash_step_size, unsquash_step_size
from enf.metrics import per_sample_mse

SMALL = dict(
    context_dim=4,
    hidden_dim=16,
    num_heads=2,
    num_query_frequencies=4,
    num_value_frequencies=4,
    value_hidden_dim=8,
    num_output_layers=1,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bounds", [(1e-6, 100.0), (1e-3, 10.0)])
def test_initial_step_sizes_are_the_configured_values(bounds):
    values = dict(lr_position=0.3, lr_orientation=2e-3, lr_context=5.0, lr_window=0.05)
    meta = MetaSGD(geometry="se2", num_latents=4, context_dim=3, lr_bounds=bounds, **values)
    sizes = meta.step_sizes()
    expected_poses = torch.tensor([0.3, 0.3, 2e-3, 2e-3])
    torch.testing.assert_close(sizes["poses"], expected_poses, rtol=2e-6, atol=0)
    torch.testing.assert_close(sizes["context"], torch.full((3,), 5.0), rtol=2e-6, atol=0)
    torch.testing.assert_close(sizes["window"], torch.tensor([0.05]), rtol=2e-6, atol=0)
    for v in (bounds[0] * 1.5, 1e-2, bounds[1] / 1.5):  # the inverse map, in float64
        raw = torch.tensor(unsquash_step_size(v, bounds), dtype=F64)
        assert squash_step_size(raw, bounds).item() == pytest.approx(v, rel=1e-12)


def test_squash_derivative_matches_the_analytic_one_in_both_tails():
    bounds = (1e-4, 10.0)
    span = math.log(bounds[1]) - math.log(bounds[0])
    raw = torch.linspace(-60.0, 60.0, 41, dtype=F64, requires_grad=True)
    eta = squash_step_size(raw, bounds)
    (grad,) = torch.autograd.grad(eta.sum(), raw)
    r = raw.detach()
    s_one_minus_s = torch.exp(-r.abs()) / (1.0 + torch.exp(-r.abs())) ** 2  # sigmoid'(r), no cancellation
    expected = eta.detach() * span * s_one_minus_s
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=0)
    assert (grad > 0).all()
    assert (eta > bounds[0] * (1 - 1e-12)).all() and (eta < bounds[1] * (1 + 1e-12)).all()
    # float32: still positive far in the upper tail, where torch.sigmoid's own backward would give 0
    raw32 = torch.tensor([30.0, -30.0], requires_grad=True)
    (g32,) = torch.autograd.grad(squash_step_size(raw32, bounds).sum(), raw32)
    assert (g32 > 0).all()
    naive = torch.tensor([30.0], requires_grad=True)
    (g_naive,) = torch.autograd.grad(torch.sigmoid(naive).sum(), naive)
    assert g_naive.item() == 0.0  # what the stable form avoids


def _clamped_step_sizes(self: MetaSGD, step: int | None = None) -> dict[str, torch.Tensor]:
    """The old parametrisation: the raw parameter *is* the step size, clamped into the bounds."""
    lo, hi = self.lr_bounds
    geom = self.geometry
    pos = self.lr_position.clamp(lo, hi).expand(geom.position_dim)
    ori = self.lr_orientation.clamp(lo, hi).expand(geom.pose_dim - geom.position_dim)
    return {
        "poses": torch.cat([pos, ori]),
        "context": self.lr_context.clamp(lo, hi),
        "window": self.lr_window.clamp(lo, hi),
    }


def _outer_gradients(meta: MetaSGD, value: float, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Gradients of an outer loss w.r.t. the step-size parameters, all pushed to ``value``."""
    geom = meta.geometry
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=2, **SMALL).to(dtype)
    meta = meta.to(dtype)
    with torch.no_grad():
        for p in (meta.lr_position, meta.lr_orientation, meta.lr_context, meta.lr_window):
            p.fill_(value)
    x = geom.sample_coords(2, 24, generator=gen(1), dtype=dtype)
    y = torch.randn(2, 24, 2, generator=gen(2), dtype=dtype)
    subsets = sample_coordinate_subsets(24, 16, 2, generator=gen(3))
    fit = meta(decoder, x, y, subsets=subsets, num_steps=2)
    per_sample_mse(decoder(x, fit), y).mean().backward()
    return {n: getattr(meta, n).grad for n in ("lr_position", "lr_orientation", "lr_context", "lr_window")}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("value", [-30.0, 30.0])
def test_outer_gradient_survives_far_out_step_size_parameters(value, dtype, monkeypatch):
    def make() -> MetaSGD:
        return MetaSGD(geometry="se2", num_latents=4, context_dim=4, lr_window=0.1, lr_bounds=(1e-4, 1.0))

    grads = _outer_gradients(make(), value, dtype)
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert (grad.abs() > 0).all(), f"{name}: gradient vanished at raw={value}"
    # negative control: with the old clamp the same test fails - zero gradient outside the bounds
    monkeypatch.setattr(MetaSGD, "step_sizes", _clamped_step_sizes)
    old = _outer_gradients(make(), value, dtype)
    assert all(g.abs().max() == 0 for g in old.values())


def test_zero_position_step_freezes_poses_in_the_inner_loop() -> None:
    """``lr_position=0`` (published shallow-water / ball setups): poses stay at the init, context adapts."""
    import enf

    for name, lr_ori in (("sphere_axial", 0.1), ("ball", 0.0), ("se2", 0.5)):
        geom = enf.geometry.get(name)
        decoder = enf.EquivariantNeuralField(geometry=geom, num_out=1, context_dim=4, hidden_dim=8).double()
        fitter = MetaSGD(num_latents=3, num_inner_steps=2, lr_position=0.0, lr_orientation=lr_ori)
        fitter.bind(geometry=geom, context_dim=4).double()
        coords = geom.sample_coords(2, 16, dtype=torch.float64)
        signal = torch.randn(2, 16, 1, dtype=torch.float64)
        z = fitter.encode(decoder, coords, signal, train=True)
        init = fitter.initial(2)
        moved = (z.poses - init.poses).abs().detach()
        p = geom.position_dim
        assert float(moved[..., :p].max()) == 0.0, name
        if lr_ori > 0 and geom.pose_dim > p:
            assert float(moved[..., p:].max()) > 0.0, name  # orientations still move
        else:
            assert float(moved.max()) == 0.0, name
        assert float((z.context - init.context).abs().max().detach()) > 0.0
        assert not fitter.lr_position.requires_grad
