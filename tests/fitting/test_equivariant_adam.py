"""Tests of test-time encoding with pose-block-shared Adam moments: equivariance and exact update rule."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64
from _fitting_utils import CONTEXT_DIM, SMALL, gen  # noqa: E402

from enf import EquivariantNeuralField, Latents, geometry
from enf.fitting import BlockAdam, optimise_latents, sample_coordinate_subsets
from enf.metrics import per_sample_l1, per_sample_mse


def setup(name: str, *, batch_size: int = 2, num_coords: int = 40, num_latents: int = 8):
    geom = geometry.get(name)
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=2, **SMALL).double()
    g = gen(1)
    z0 = Latents(
        poses=geom.sample_poses(batch_size, num_latents, generator=g, dtype=F64),
        context=torch.randn(batch_size, num_latents, CONTEXT_DIM, generator=g, dtype=F64),
        window=torch.full((batch_size, num_latents, 1), geom.default_window(num_latents), dtype=F64),
    )
    x = geom.sample_coords(batch_size, num_coords, generator=gen(2), dtype=F64)
    y = torch.randn(batch_size, num_coords, 2, generator=gen(3), dtype=F64)
    return geom, decoder, x, y, z0


def pose_error(
    name: str, *, shared: bool, seed: int, subset_size: int | None = None
) -> tuple[float, float, float]:
    """(pose error, context error, how far the poses moved) of fitting ``g.signal`` from ``g.z0``."""
    geom, decoder, x, y, z0 = setup(name)
    g = geom.sample_group(2, generator=gen(seed), dtype=F64)
    kw = dict(num_steps=15, lr=2e-2, learn_window=True, shared_pose_moments=shared, subset_size=subset_size)
    fit = optimise_latents(decoder, x, y, z0, generator=gen(9), **kw)
    fit_g = optimise_latents(decoder, geom.act_coords(g, x), y, z0.transform(geom, g), generator=gen(9), **kw)
    err = (fit_g.poses - geom.act_poses(g, fit.poses)).abs().max().item()
    ctx = max(
        (fit_g.context - fit.context).abs().max().item(), (fit_g.window - fit.window).abs().max().item()
    )
    return err, ctx, (fit.poses - z0.poses).abs().max().item()


@pytest.mark.parametrize("name,subset_size", [("se2", None), ("sphere", None), ("ball", None), ("se2", 16)])
def test_test_time_encoding_is_equivariant(name, subset_size):
    for seed in (4, 5):
        err, ctx, moved = pose_error(name, shared=True, seed=seed, subset_size=subset_size)
        assert err < 1e-8 and ctx < 1e-8, (err, ctx)
    assert moved > 0.05  # the fit moved the poses: the comparison is not about the initial latent


@pytest.mark.parametrize("name", ["se2", "sphere", "ball"])
def test_per_coordinate_adam_is_not_equivariant(name):
    """Negative control: plain Adam's per-coordinate second moments do not commute with rotations."""
    err, ctx, _ = pose_error(name, shared=False, seed=4)
    assert err > 1e-3, err


def test_per_coordinate_mode_is_torch_adam():
    geom, decoder, x, y, z0 = setup("se2")
    fit = optimise_latents(decoder, x, y, z0, num_steps=5, lr=3e-2, shared_pose_moments=False)
    poses = z0.poses.clone().requires_grad_(True)
    context = z0.context.clone().requires_grad_(True)
    opt = torch.optim.Adam([poses, context], lr=3e-2)
    for _ in range(5):
        opt.zero_grad()
        per_sample_mse(
            decoder(x, Latents(poses=poses, context=context, window=z0.window)), y
        ).sum().backward()
        opt.step()
    torch.testing.assert_close(fit.poses, poses.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.context, context.detach(), atol=1e-12, rtol=0)


def test_cosine_schedule_is_torch_adam_with_a_cosine_lambda_lr():
    """``lr_schedule="cosine"``: step ``k`` uses ``lr (1 + cos(pi k / K)) / 2``, as torch's LambdaLR does."""
    geom, decoder, x, y, z0 = setup("se2")
    steps, lr = 6, 5e-2
    fit = optimise_latents(
        decoder, x, y, z0, num_steps=steps, lr=lr, shared_pose_moments=False, lr_schedule="cosine"
    )
    poses = z0.poses.clone().requires_grad_(True)
    context = z0.context.clone().requires_grad_(True)
    opt = torch.optim.Adam([poses, context], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    for _ in range(steps):
        opt.zero_grad()
        per_sample_mse(
            decoder(x, Latents(poses=poses, context=context, window=z0.window)), y
        ).sum().backward()
        opt.step()
        sched.step()
    torch.testing.assert_close(fit.poses, poses.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.context, context.detach(), atol=1e-12, rtol=0)
    constant = optimise_latents(decoder, x, y, z0, num_steps=steps, lr=lr, shared_pose_moments=False)
    assert (constant.context - fit.context).abs().max() > 1e-4  # the schedule changed the fit
    with pytest.raises(ValueError, match="lr_schedule"):
        optimise_latents(decoder, x, y, z0, num_steps=1, lr_schedule="linear")


def test_subset_size_draws_fresh_points_every_step():
    """``subset_size``: step ``k`` uses the ``k``-th index set of ``sample_coordinate_subsets`` with the same
    generator (checked against torch's Adam on those points)."""
    geom, decoder, x, y, z0 = setup("se2")
    fit = optimise_latents(
        decoder, x, y, z0, num_steps=4, lr=3e-2, shared_pose_moments=False, subset_size=12, generator=gen(7)
    )
    poses = z0.poses.clone().requires_grad_(True)
    context = z0.context.clone().requires_grad_(True)
    opt = torch.optim.Adam([poses, context], lr=3e-2)
    for sel in sample_coordinate_subsets(x.shape[1], 12, 4, generator=gen(7)):
        assert len(set(sel.tolist())) == 12
        opt.zero_grad()
        per_sample_mse(
            decoder(x[:, sel], Latents(poses=poses, context=context, window=z0.window)), y[:, sel]
        ).sum().backward()
        opt.step()
    torch.testing.assert_close(fit.context, context.detach(), atol=1e-12, rtol=0)
    full = optimise_latents(decoder, x, y, z0, num_steps=4, lr=3e-2, shared_pose_moments=False)
    assert (full.context - fit.context).abs().max() > 1e-4  # the subsets changed the fit


def test_one_step_with_l1_loss_is_the_block_normalised_gradient():
    """First Adam step: ``-lr g / (rms_block(g) + eps)`` on poses, ``-lr g / (|g| + eps)`` on context."""
    geom, decoder, x, y, z0 = setup("sphere")
    lr, eps = 0.05, 1e-8
    fit = optimise_latents(decoder, x, y, z0, num_steps=1, lr=lr, loss=per_sample_l1, eps=eps)
    leaves = [z0.poses.clone().requires_grad_(True), z0.context.clone().requires_grad_(True)]
    pred = decoder(x, Latents(poses=leaves[0], context=leaves[1], window=z0.window))
    loss = (pred - y).abs().mean(dim=(1, 2)).sum()  # each sample's mean absolute error
    gp, gc = torch.autograd.grad(loss, leaves)
    rms = gp.unflatten(-1, (2, 3)).square().mean(-1, keepdim=True).sqrt()  # blocks n, t
    expected_poses = z0.poses - lr * (gp.unflatten(-1, (2, 3)) / (rms + eps)).flatten(-2)
    torch.testing.assert_close(fit.poses, expected_poses, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.context, z0.context - lr * gc / (gc.abs() + eps), atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.window, z0.window, atol=0, rtol=0)  # learn_window=False


def test_block_adam_validates_its_arguments():
    p = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="do not sum"):
        BlockAdam([p], [(2, 1)], lr=0.1)
    with pytest.raises(ValueError, match="one blocks entry per parameter"):
        BlockAdam([p], [], lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        BlockAdam([p], [None], lr=0.0)


def test_optimise_latents_needs_the_pose_blocks():
    geom, decoder, x, y, z0 = setup("se2")
    bare = lambda coords, z: decoder(coords, z)  # noqa: E731  (a decoder without a geometry attribute)
    with pytest.raises(ValueError, match="geometry="):
        optimise_latents(bare, x, y, z0, num_steps=1)
    a = optimise_latents(bare, x, y, z0, num_steps=2, geometry=geom)
    b = optimise_latents(decoder, x, y, z0, num_steps=2)
    torch.testing.assert_close(a.poses, b.poses, atol=0, rtol=0)
    with pytest.raises(ValueError, match="batch size"):
        optimise_latents(decoder, x[:1], y[:1], z0, num_steps=1)
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        optimise_latents(decoder, x, y, z0, num_steps=-1)


def test_fitted_windows_respect_min_window():
    geom, decoder, x, y, z0 = setup("se2")
    fit = optimise_latents(decoder, x, y, z0, num_steps=10, lr=0.5, learn_window=True, min_window=0.3)
    assert (fit.window >= 0.3).all()
    assert (fit.window == 0.3).any(), "no window reached the clamp"
    assert (fit.window > z0.window + 0.1).any(), "no window grew"
    with pytest.raises(ValueError, match="min_window must be > 0"):
        optimise_latents(decoder, x, y, z0, num_steps=1, min_window=0.0)


@pytest.mark.parametrize("subset_size", [None, 10])
def test_masked_fit_uses_only_observed_points(subset_size):
    """Uneven masks, with and without per-step subsets: unobserved values play no part."""
    geom, decoder, x, y, z0 = setup("se2")
    mask = torch.rand(x.shape[:2], generator=gen(11)) < 0.5
    mask[0, :3] = True
    other = torch.where(mask[..., None], y, torch.randn(y.shape, generator=gen(12), dtype=F64))
    kw = dict(num_steps=5, lr=3e-2, mask=mask, subset_size=subset_size)
    fit, fit_other = (optimise_latents(decoder, x, s, z0, generator=gen(13), **kw) for s in (y, other))
    torch.testing.assert_close(fit.context, fit_other.context, atol=1e-12, rtol=0)
    unmasked = optimise_latents(decoder, x, other, z0, num_steps=5, lr=3e-2, subset_size=subset_size,
                                generator=gen(13))  # fmt: skip
    assert (unmasked.context - fit.context).abs().max() > 1e-4
