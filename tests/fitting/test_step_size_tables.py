"""Tests of Meta-SGD step sizes per inner step and per latent: the update rule, equivariance of the fit with
random tables, gradients reaching every entry, the same function as scalar step sizes when the table is flat."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _fitting_utils import CONTEXT_DIM, gen, make_decoder

from enf import Latents, geometry
from enf.fitting import MetaSGD, sample_coordinate_subsets
from enf.metrics import per_sample_mse

TABLES = [dict(per_step_lr=True), dict(per_latent_lr=True), dict(per_step_lr=True, per_latent_lr=True)]
IDS = ["per_step", "per_latent", "both"]


def make_meta(geom, **kwargs) -> MetaSGD:
    kwargs = dict(num_inner_steps=3, lr_context=1.0, lr_window=0.05) | kwargs
    return MetaSGD(geometry=geom, num_latents=9, context_dim=CONTEXT_DIM, **kwargs).double()


def randomise(meta: MetaSGD, seed: int) -> None:
    """Move every raw step size to its own random value, so no two steps or latents share one."""
    g = gen(seed)
    with torch.no_grad():
        for name in ("lr_position", "lr_orientation", "lr_context", "lr_window"):
            raw = getattr(meta, name)
            raw.add_(torch.randn(raw.shape, generator=g, dtype=F64))


def problem(geom, *, seed: int = 0):
    x = geom.sample_coords(2, 30, generator=gen(seed), dtype=F64)
    y = torch.randn(2, 30, 2, generator=gen(seed + 1), dtype=F64)
    z0 = Latents(
        poses=geom.sample_poses(2, 9, generator=gen(seed + 2), dtype=F64),
        context=torch.randn(2, 9, CONTEXT_DIM, generator=gen(seed + 3), dtype=F64),
        window=torch.full((2, 9, 1), geom.default_window(9), dtype=F64),
    )
    return x, y, z0


@pytest.mark.parametrize("tables", TABLES, ids=IDS)
def test_shapes_and_step_selection(tables):
    meta = make_meta(geometry.get("se2"), **tables)
    lead = ([3] if tables.get("per_step_lr") else []) + ([9] if tables.get("per_latent_lr") else [])
    assert meta.lr_context.shape == (*lead, CONTEXT_DIM) and meta.lr_position.shape == (*lead, 1)
    randomise(meta, 1)
    every = meta.step_sizes()
    assert every["poses"].shape == (*lead, 4) and every["window"].shape == (*lead, 1)
    for step in range(5):
        picked = meta.step_sizes(step)
        expected = every["context"][min(step, 2)] if tables.get("per_step_lr") else every["context"]
        torch.testing.assert_close(picked["context"], expected, atol=0, rtol=0)
    # one scalar per pose block: position entries equal, orientation entries equal
    poses = meta.step_sizes(0)["poses"]
    assert torch.equal(poses[..., 0], poses[..., 1]) and torch.equal(poses[..., 2], poses[..., 3])


def test_each_step_uses_its_own_step_sizes():
    geom = geometry.get("translation2d")
    decoder = make_decoder(geom)
    meta = make_meta(geom, per_step_lr=True, per_latent_lr=True)
    randomise(meta, 2)
    x, y, z0 = problem(geom)
    subsets = sample_coordinate_subsets(30, 20, 3, generator=gen(5))
    fit = meta(decoder, x, y, subsets=subsets, init=z0)
    # independent recomputation: plain gradient steps with the step-`s` table
    z = z0
    for step, idx in enumerate(subsets):
        leaves = [t.detach().requires_grad_(True) for t in (z.poses, z.context, z.window)]
        loss = per_sample_mse(decoder(x[:, idx], Latents(*leaves)), y[:, idx]).sum()
        gp, gc, gw = torch.autograd.grad(loss, leaves)
        lr = {k: v.detach() for k, v in meta.step_sizes(step).items()}
        z = Latents(
            poses=leaves[0] - lr["poses"] * gp,
            context=leaves[1] - lr["context"] * gc,
            window=(leaves[2] - lr["window"] * gw).clamp_min(meta.min_window),
        )
    for a, b in zip((fit.poses, fit.context, fit.window), (z.poses, z.context, z.window), strict=True):
        torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=0)
    # the tables really differ across steps and latents, so the check above has teeth
    ctx = meta.step_sizes()["context"]
    assert (ctx[0] - ctx[1]).abs().max() > 1e-3 and (ctx[0, 0] - ctx[0, 1]).abs().max() > 1e-3


@pytest.mark.parametrize("tables", TABLES, ids=IDS)
@pytest.mark.parametrize("name", ["se2", "sphere", "ball", "se3"])
def test_fit_with_step_size_tables_is_equivariant(name, tables):
    geom = geometry.get(name)
    decoder = make_decoder(geom)
    meta = make_meta(geom, **tables)
    randomise(meta, 3)
    x, y, z0 = problem(geom)
    subsets = sample_coordinate_subsets(30, 20, 3, generator=gen(6))
    g = geom.sample_group(2, generator=gen(7), dtype=F64)
    fit1 = meta(decoder, x, y, subsets=subsets, init=z0)
    fit2 = meta(decoder, geom.act_coords(g, x), y, subsets=subsets, init=z0.transform(geom, g))
    torch.testing.assert_close(fit2.poses, geom.act_poses(g, fit1.poses), atol=1e-9, rtol=0)
    torch.testing.assert_close(fit2.context, fit1.context, atol=1e-9, rtol=0)
    assert (fit1.poses - z0.poses).abs().max() > 1e-4


def test_a_step_size_per_pose_coordinate_would_break_equivariance():
    """The control: scaling the two position coordinates differently (what a per-coordinate pose table
    would do) makes the se2 fit non-equivariant, which is why the tables stay per pose block."""
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(geom, per_latent_lr=True)
    x, y, z0 = problem(geom)
    subsets = sample_coordinate_subsets(30, 20, 3, generator=gen(6))
    g = geom.sample_group(2, generator=gen(7), dtype=F64)
    sizes = meta.step_sizes
    anisotropic = torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=F64)
    meta.step_sizes = lambda step=None: {**sizes(step), "poses": sizes(step)["poses"] * anisotropic}
    fit1 = meta(decoder, x, y, subsets=subsets, init=z0)
    fit2 = meta(decoder, geom.act_coords(g, x), y, subsets=subsets, init=z0.transform(geom, g))
    assert (fit2.poses - geom.act_poses(g, fit1.poses)).abs().max() > 1e-4


def test_outer_gradient_reaches_every_step_and_latent():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(geom, per_step_lr=True, per_latent_lr=True)
    x, y, _ = problem(geom)
    fit = meta(decoder, x, y, subset_size=20, generator=gen(8))
    per_sample_mse(decoder(x, fit), y).mean().backward()
    for name in ("lr_position", "lr_orientation", "lr_context", "lr_window"):
        grad = getattr(meta, name).grad
        assert grad is not None and (grad.abs() > 0).all(), name


def test_flat_tables_are_the_scalar_step_sizes():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    x, y, z0 = problem(geom)
    subsets = sample_coordinate_subsets(30, 20, 3, generator=gen(9))
    plain = make_meta(geom)(decoder, x, y, subsets=subsets, init=z0)
    tabled = make_meta(geom, per_step_lr=True, per_latent_lr=True)(decoder, x, y, subsets=subsets, init=z0)
    torch.testing.assert_close(tabled.context, plain.context, atol=1e-12, rtol=0)
    torch.testing.assert_close(tabled.poses, plain.poses, atol=1e-12, rtol=0)


def test_per_step_needs_an_inner_step():
    with pytest.raises(ValueError, match="per_step_lr needs num_inner_steps >= 1"):
        MetaSGD(num_latents=4, num_inner_steps=0, per_step_lr=True)
    with pytest.raises(ValueError, match="step must be None or >= 0"):
        make_meta(geometry.get("se2"), per_step_lr=True).step_sizes(-1)
