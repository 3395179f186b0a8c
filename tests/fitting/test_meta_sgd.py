"""Tests of Meta-SGD auto-decoding: equivariance of the fit, per-sample steps, step sizes, 1st/2nd order."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _fitting_utils import CONTEXT_DIM, SMALL, gen, make_decoder  # noqa: E402

from enf import EquivariantNeuralField, Latents, geometry
from enf.fitting import MetaSGD, optimise_latents, sample_coordinate_subsets, unsquash_step_size
from enf.metrics import per_sample_l1, per_sample_mse


def make_meta(geom, *, num_latents: int = 9, **kwargs) -> MetaSGD:
    kwargs.setdefault("lr_context", 1.0)
    return MetaSGD(geometry=geom, num_latents=num_latents, context_dim=CONTEXT_DIM, **kwargs).double()


def random_latents(geom, batch_size: int, num_latents: int, *, seed: int) -> Latents:
    g = gen(seed)
    poses = geom.sample_poses(batch_size, num_latents, generator=g, dtype=F64)
    context = torch.randn(batch_size, num_latents, CONTEXT_DIM, generator=g, dtype=F64)
    window = geom.default_window(num_latents) * (
        0.7 + 0.6 * torch.rand(batch_size, num_latents, 1, generator=g)
    )
    return Latents(poses=poses, context=context, window=window.to(F64))


def problem(geom, batch_size: int = 2, num_coords: int = 30, channels: int = 2, *, seed: int = 0):
    x = geom.sample_coords(batch_size, num_coords, generator=gen(seed), dtype=F64)
    y = torch.randn(batch_size, num_coords, channels, generator=gen(seed + 1), dtype=F64)
    return x, y


def fixed_subsets(num_coords: int, size: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    return sample_coordinate_subsets(num_coords, size, steps, generator=gen(seed))


# --------------------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize(
    "name,k_nearest,value_hidden_dim",
    [
        ("translation2d", None, 16),
        ("translation2d", None, 0),  # the fully separable (GEMM) decoder path
        ("translation2d", 4, 0),
        ("se2", None, 16),
        ("se2", 4, 16),
        ("se2", None, 0),
        ("sphere", None, 16),
        ("ball", None, 16),
        ("se3", None, 16),
    ],
)
def test_fit_is_equivariant(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    decoder = make_decoder(geom, k_nearest=k_nearest, value_hidden_dim=value_hidden_dim)
    meta = make_meta(geom, lr_window=0.05)
    x, y = problem(geom)
    subsets = fixed_subsets(30, 20, 3)
    z0 = random_latents(geom, 2, 9, seed=2)
    for seed in (3, 4):
        g = geom.sample_group(2, generator=gen(seed), dtype=F64)
        fit1 = meta(decoder, x, y, subsets=subsets, init=z0)
        fit2 = meta(decoder, geom.act_coords(g, x), y, subsets=subsets, init=z0.transform(geom, g))
        torch.testing.assert_close(fit2.poses, geom.act_poses(g, fit1.poses), atol=1e-9, rtol=0)
        torch.testing.assert_close(fit2.context, fit1.context, atol=1e-9, rtol=0)
        torch.testing.assert_close(fit2.window, fit1.window, atol=1e-9, rtol=0)
    # the fit moved everything, so the comparison is not trivially about the initial latent
    assert (fit1.poses - z0.poses).abs().max() > 1e-4
    assert (fit1.context - z0.context).abs().max() > 1e-4
    assert (fit1.window - z0.window).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["se2", "sphere", "ball"])
def test_fit_is_equivariant_with_l1_loss_and_uneven_mask(name):
    geom = geometry.get(name)
    decoder = make_decoder(geom)
    meta = make_meta(geom, lr_window=0.05)
    x, y = problem(geom)
    mask = torch.rand(2, 30, generator=gen(8)) < 0.6  # uneven observed counts per sample
    assert mask.sum(1)[0] != mask.sum(1)[1]
    z0 = random_latents(geom, 2, 9, seed=2)
    g = geom.sample_group(2, generator=gen(3), dtype=F64)
    kw = dict(init=z0, subsets=fixed_subsets(30, 20, 3), loss=per_sample_l1, mask=mask)
    fit1 = meta(decoder, x, y, **kw)
    fit2 = meta(decoder, geom.act_coords(g, x), y, **{**kw, "init": z0.transform(geom, g)})
    torch.testing.assert_close(fit2.poses, geom.act_poses(g, fit1.poses), atol=1e-9, rtol=0)
    torch.testing.assert_close(fit2.context, fit1.context, atol=1e-9, rtol=0)
    assert (fit1.poses - z0.poses).abs().max() > 1e-4


def test_fit_is_not_equivariant_for_absolute2d():
    geom = geometry.get("absolute2d")
    decoder = make_decoder(geom)
    meta = make_meta(geom)
    x, y = problem(geom)
    subsets = fixed_subsets(30, 20, 3)
    z0 = random_latents(geom, 2, 9, seed=2)
    g = geom.sample_group(2, generator=gen(3), dtype=F64)
    fit1 = meta(decoder, x, y, subsets=subsets, init=z0)
    fit2 = meta(decoder, geom.act_coords(g, x), y, subsets=subsets, init=z0.transform(geom, g))
    assert (fit2.poses - geom.act_poses(g, fit1.poses)).abs().max() > 1e-4
    assert (fit2.context - fit1.context).abs().max() > 1e-4


# ------------------------------------------------------------------------------------- per-sample steps
@pytest.mark.parametrize("mode", ["second_order", "first_order", "no_grad"])
@pytest.mark.parametrize("name", ["translation2d", "se2"])
def test_per_sample_inner_gradients(name, mode):
    geom = geometry.get(name)
    decoder = make_decoder(geom)
    meta = make_meta(geom, lr_window=0.05, first_order=mode == "first_order")
    x, y = problem(geom, batch_size=3)
    subsets = fixed_subsets(30, 15, 3)
    with torch.set_grad_enabled(mode != "no_grad"):
        batched = meta(decoder, x, y, subsets=subsets)
        alone = meta(decoder, x[:1], y[:1], subsets=subsets)
        y2 = y.clone()
        y2[1:] += 1.0
        other = meta(decoder, x, y2, subsets=subsets)
    assert batched.context.requires_grad == (mode != "no_grad")
    for field in ("poses", "context", "window"):
        torch.testing.assert_close(getattr(batched, field)[:1], getattr(alone, field), atol=1e-12, rtol=0)
    # a different signal in another batch entry does not change sample 0
    torch.testing.assert_close(other.context[:1], batched.context[:1], atol=1e-12, rtol=0)
    assert (other.context[1:] - batched.context[1:]).abs().max() > 1e-4


def test_one_inner_step_is_sgd_on_the_per_sample_mse():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(
        geom, lr_position=0.3, lr_orientation=0.7, lr_context=2.0, lr_window=0.4, min_window=1e-3
    )
    with torch.no_grad():  # exact float64 raw values (the constructor stores float32)
        bounds = meta.lr_bounds
        meta.lr_position.fill_(unsquash_step_size(0.3, bounds))
        meta.lr_orientation.fill_(unsquash_step_size(0.7, bounds))
        meta.lr_window.fill_(unsquash_step_size(0.4, bounds))
        meta.lr_context.copy_(
            torch.tensor([unsquash_step_size(v, bounds) for v in (0.5, 1.0, 3.0) * 3][:8], dtype=F64)
        )
    lr_context = torch.tensor([0.5, 1.0, 3.0] * 3, dtype=F64)[:CONTEXT_DIM]
    torch.testing.assert_close(meta.step_sizes()["context"], lr_context, atol=1e-12, rtol=0)
    x, y = problem(geom, batch_size=2)
    z0 = random_latents(geom, 2, 9, seed=5)
    idx = fixed_subsets(30, 12, 1)[0]
    fit = meta(decoder, x, y, subsets=[idx], num_steps=1, init=z0)

    leaves = [t.clone().requires_grad_(True) for t in (z0.poses, z0.context, z0.window)]
    pred = decoder(x[:, idx], Latents(*leaves))
    loss = ((pred - y[:, idx]) ** 2).mean(dim=(1, 2)).sum()  # each sample's own mean
    gp, gc, gw = torch.autograd.grad(loss, leaves)
    lr_pose = torch.tensor([0.3, 0.3, 0.7, 0.7], dtype=F64)
    torch.testing.assert_close(fit.poses, z0.poses - lr_pose * gp, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.context, z0.context - lr_context * gc, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.window, (z0.window - 0.4 * gw).clamp_min(1e-3), atol=1e-12, rtol=0)


def test_inner_loop_reduces_the_loss():
    geom = geometry.get("translation2d")
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=1, **SMALL).double()  # at init
    meta = MetaSGD(geometry=geom, num_latents=9, context_dim=CONTEXT_DIM).double()  # default step sizes
    axis = torch.linspace(-1.0, 1.0, 12, dtype=F64)
    x = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 2)
    y = 0.5 + 0.4 * torch.sin(2.0 * x[..., :1]) * torch.cos(3.0 * x[..., 1:])
    with torch.no_grad():
        losses = [
            float(per_sample_mse(decoder(x, meta(decoder, x, y, num_steps=k)), y)) for k in (0, 1, 3, 10)
        ]
        at_init = float(per_sample_mse(decoder(x, meta.initial(1)), y))
    assert losses[0] == pytest.approx(at_init, abs=1e-14)
    assert losses[0] > losses[1] > losses[2] > losses[3]


# ------------------------------------------------------------------------------- first / second order
def _outer(meta, decoder, x, y, subsets, outer_idx):
    fit = meta(decoder, x, y, subsets=subsets, num_steps=len(subsets))
    return per_sample_mse(decoder(x[:, outer_idx], fit), y[:, outer_idx]).mean()


def test_second_order_gradients_differ_from_first_order():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    second = make_meta(geom, first_order=False)
    first = make_meta(geom, first_order=True)
    for (n1, a), (n2, b) in zip(second.state_dict().items(), first.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(a, b)
    x, y = problem(geom)
    subsets = fixed_subsets(30, 20, 2)
    outer_idx = fixed_subsets(30, 20, 1, seed=9)[0]
    params = list(decoder.parameters())

    grads = {}
    for label, meta in (("second", second), ("first", first)):
        decoder.zero_grad()
        meta.zero_grad()
        _outer(meta, decoder, x, y, subsets, outer_idx).backward()
        grads[label] = torch.cat([p.grad.flatten() for p in params])
        for name in ("lr_position", "lr_orientation", "lr_context", "init_poses", "init_context"):
            grad = getattr(meta, name).grad
            assert grad is not None and grad.abs().max() > 0, f"{label}: no gradient for {name}"
        assert meta.lr_window.grad is None and not meta.lr_window.requires_grad  # lr_window=0: frozen
    diff = (grads["second"] - grads["first"]).norm()
    assert diff > 1e-3 * grads["second"].norm()

    # the second-order gradient is the true derivative: compare with central finite differences
    direction = [torch.randn(p.shape, generator=gen(10), dtype=F64) for p in params]
    eps = 1e-5

    def outer_at(t: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(t * d)
        value = float(_outer(second, decoder, x, y, subsets, outer_idx).detach())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(t * d)
        return value

    fd = (outer_at(eps) - outer_at(-eps)) / (2 * eps)
    flat_dir = torch.cat([d.flatten() for d in direction])
    assert float(grads["second"] @ flat_dir) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    assert abs(float(grads["first"] @ flat_dir) - fd) > 1e-4 * abs(fd)


def test_first_order_keeps_no_graph_through_inner_gradients():
    geom = geometry.get("translation2d")
    decoder = make_decoder(geom)
    meta = make_meta(geom, first_order=True)
    x, y = problem(geom)
    fit = meta(decoder, x, y, subsets=fixed_subsets(30, 20, 3))
    # the fitted latent depends on the decoder only through constant offsets: no decoder gradient
    grads = torch.autograd.grad(fit.context.sum(), list(decoder.parameters()), allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in grads)
    second = make_meta(geom, first_order=False)
    fit2 = meta(decoder, x, y, subsets=fixed_subsets(30, 20, 3), create_graph=False)
    fit3 = second(decoder, x, y, subsets=fixed_subsets(30, 20, 3))
    torch.testing.assert_close(fit2.context, fit3.context, atol=1e-12, rtol=0)  # same values either way
    grads = torch.autograd.grad(fit3.context.sum(), list(decoder.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().max() > 0 for g in grads)


# ------------------------------------------------------------------------------------------ step sizes
def test_step_sizes_stay_inside_bounds():
    geom = geometry.get("se2")
    meta = make_meta(geom, lr_bounds=(1e-3, 10.0))
    with torch.no_grad():  # raw parameters anywhere on the real line
        meta.lr_position.fill_(1e6)
        meta.lr_orientation.fill_(-1e6)
        meta.lr_context.copy_(torch.linspace(-50.0, 50.0, CONTEXT_DIM))
    sizes = meta.step_sizes()
    torch.testing.assert_close(sizes["poses"], torch.tensor([10.0, 10.0, 1e-3, 1e-3], dtype=F64))
    assert (sizes["context"] >= 1e-3 * (1 - 1e-12)).all() and (sizes["context"] <= 10.0 * (1 + 1e-12)).all()
    assert (sizes["context"].diff() >= 0).all()  # monotone in the raw parameter
    # lr_window=0 starts (frozen) at the lower bound
    assert sizes["window"].item() == pytest.approx(1e-3, rel=1e-4)
    # constructor values are clipped into the bounds
    clipped = MetaSGD(
        geometry=geom, num_latents=4, context_dim=3, lr_context=1e9, lr_position=1e-9, lr_bounds=(1e-3, 10.0)
    )
    torch.testing.assert_close(clipped.step_sizes()["context"], torch.full((3,), 10.0), rtol=1e-4, atol=0)
    assert clipped.step_sizes()["poses"][0].item() == pytest.approx(1e-3, rel=1e-4)


def test_step_sizes_are_what_the_inner_loop_uses():
    geom = geometry.get("translation2d")
    decoder = make_decoder(geom)
    x, y = problem(geom)
    subsets = fixed_subsets(30, 20, 2)
    a = make_meta(geom, lr_position=0.2, lr_context=0.5)
    b = make_meta(geom, lr_position=0.01, lr_context=0.01)
    with torch.no_grad():  # copy a's raw parameters into b: b must fit exactly like a
        b.lr_position.copy_(a.lr_position)
        b.lr_context.copy_(a.lr_context)
    torch.testing.assert_close(a.step_sizes()["context"], torch.full((CONTEXT_DIM,), 0.5, dtype=F64))
    fit_a = a(decoder, x, y, subsets=subsets, num_steps=2)
    fit_b = b(decoder, x, y, subsets=subsets, num_steps=2)
    torch.testing.assert_close(fit_a.poses, fit_b.poses, atol=1e-14, rtol=0)
    torch.testing.assert_close(fit_a.context, fit_b.context, atol=1e-14, rtol=0)


def test_lr_bounds_and_steps_are_validated():
    geom = geometry.get("se2")
    with pytest.raises(ValueError, match="lr_bounds"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, lr_bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="lr_bounds"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, lr_bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="num_inner_steps"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, num_inner_steps=-1)


# ----------------------------------------------------------------------------------------------- window
def test_lr_window_zero_freezes_the_window():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(geom, lr_window=0.0)
    x, y = problem(geom)
    z0 = random_latents(geom, 2, 9, seed=6)
    fit = meta(decoder, x, y, init=z0, subsets=fixed_subsets(30, 20, 3))
    assert torch.equal(fit.window, z0.window)
    assert (fit.context - z0.context).abs().max() > 1e-4
    assert not meta.lr_window.requires_grad


def test_lr_window_positive_moves_the_window_and_respects_min_window():
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(geom, lr_window=100.0, min_window=0.2)
    x, y = problem(geom)
    z0 = random_latents(geom, 2, 9, seed=3)
    fit = meta(decoder, x, y, init=z0, num_steps=1)
    assert meta.lr_window.requires_grad
    assert (fit.window >= 0.2).all()
    assert (fit.window == 0.2).any(), "no window hit the lower clamp"
    assert (fit.window > z0.window + 0.1).any(), "no window grew"
    small = make_meta(geom, lr_window=1e-3)
    fit_small = small(decoder, x, y, init=z0, num_steps=1)
    change = (fit_small.window - z0.window).abs()
    assert 0 < change.max() < 0.1


def test_lr_window_with_a_decoder_that_ignores_the_window():
    """BUG (enf/fitting/meta_sgd.py, MetaSGD._step): with ``lr_window > 0`` and a decoder whose output does
    not depend on the window (translation fast path with ``use_window=False``), ``torch.autograd.grad``
    raises ``RuntimeError: The differentiated Tensor at index 2 appears to not have been used in the
    graph``. Expected: a zero window gradient (window unchanged), or a ``ValueError`` explaining that
    ``lr_window`` needs a windowed decoder."""
    geom = geometry.get("translation2d")
    torch.manual_seed(0)
    kw = {**SMALL, "value_hidden_dim": 0}  # the fully separable translation path
    decoder = EquivariantNeuralField(geometry=geom, num_out=2, use_window=False, **kw).double()
    meta = make_meta(geom, lr_window=0.1)
    x, y = problem(geom)
    z0 = random_latents(geom, 2, 9, seed=7)
    wide = Latents(poses=z0.poses, context=z0.context, window=2.0 * z0.window)
    assert torch.equal(decoder(x, wide), decoder(x, z0))  # the window is not used
    try:
        fit = meta(decoder, x, y, init=z0, subsets=fixed_subsets(30, 20, 3))
    except ValueError:
        return
    torch.testing.assert_close(fit.window, z0.window, atol=0, rtol=0)
    assert (fit.context - z0.context).abs().max() > 1e-4


# ----------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise():
    geom = geometry.get("translation2d")
    decoder = make_decoder(geom)
    meta = make_meta(geom)
    x, y = problem(geom)
    with pytest.raises(ValueError, match=r"\(2, 30, 2\).*\(2, 29, 2\)"):
        meta(decoder, x, y[:, :29])
    with pytest.raises(ValueError, match="must agree"):
        meta(decoder, x, y[:1])
    with pytest.raises(ValueError, match="must agree"):
        meta(decoder, x[0], y[0])
    with pytest.raises(ValueError, match=r"one coordinate subset per inner step \(3\), got 2"):
        meta(decoder, x, y, subsets=fixed_subsets(30, 10, 2))
    with pytest.raises(ValueError, match=r"\(5\), got 3"):
        meta(decoder, x, y, num_steps=5, subsets=fixed_subsets(30, 10, 3))


def test_sample_coordinate_subsets():
    a = sample_coordinate_subsets(20, 7, 3, generator=gen(0))
    b = sample_coordinate_subsets(20, 7, 3, generator=gen(0))
    assert len(a) == 3
    for s, t in zip(a, b, strict=True):
        assert torch.equal(s, t)
        assert s.numel() == 7 and s.unique().numel() == 7 and 0 <= s.min() and s.max() < 20
    assert not torch.equal(a[0], a[1])
    assert sample_coordinate_subsets(20, None, 2) == [None, None]
    assert sample_coordinate_subsets(20, 20, 2) == [None, None]


def test_initial_latent_is_shared_and_learnable():
    geom = geometry.get("se2")
    meta = make_meta(geom)
    z = meta.initial(3)
    expected = geom.init_poses(9, dtype=F64)
    for i in range(3):
        torch.testing.assert_close(z.poses[i], expected, atol=1e-7, rtol=0)
    assert torch.equal(z.context, torch.ones(3, 9, CONTEXT_DIM, dtype=F64))
    assert meta.init_poses.requires_grad and meta.lr_context.requires_grad
    frozen = MetaSGD(geometry=geom, num_latents=9, context_dim=CONTEXT_DIM, learn_init=False, learn_lr=False)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_initial_window_is_clamped_to_min_window():
    """An outer step (large ``lr``) that drives the learned initial window to zero or below gives the narrowest
    valid window (``min_window``), not a decoder error that stops the fit; above it the window is unchanged and
    its gradient flows."""
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    meta = make_meta(geom, min_window=0.05)
    window = meta.initial(2).window
    torch.testing.assert_close(window, meta.init_window.detach().expand(2, -1, -1), atol=0, rtol=0)
    with torch.no_grad():
        meta.init_window[0, :3] = torch.tensor([-0.5, 0.0, 0.01], dtype=F64).unsqueeze(-1)
    z = meta.initial(2)
    assert torch.equal(z.window[:, :3], torch.full((2, 3, 1), 0.05, dtype=F64))
    x, y = problem(geom)
    fit = meta(decoder, x, y, subsets=fixed_subsets(30, 20, 3))  # the decoder rejects windows <= 0
    per_sample_mse(decoder(x, fit), y).mean().backward()
    grad = meta.init_window.grad[0, :, 0]
    assert torch.equal(grad[:3], torch.zeros(3, dtype=F64))  # clamped: no gradient
    assert grad[3:].abs().min() > 0


# ---------------------------------------------------------------------------------- test-time refinement
def test_refinement_is_block_adam_after_the_eval_steps():
    """``num_refine_steps``: the unrefined test-time fit, then cosine-decayed pose-block Adam on the same
    points (an independent call of ``optimise_latents``); ``refine=False`` and training skip it."""
    geom = geometry.get("se2")
    decoder = make_decoder(geom)
    x, y = problem(geom, num_coords=40)
    plain = make_meta(geom, num_eval_steps=2)
    refined = make_meta(geom, num_eval_steps=2, num_refine_steps=7, refine_lr=3e-2)
    refined.load_state_dict(plain.state_dict())
    unrefined = plain.encode(decoder, x, y, train=False, loss=per_sample_l1)
    expect = optimise_latents(
        decoder,
        x,
        y,
        unrefined,
        num_steps=7,
        lr=3e-2,
        lr_schedule="cosine",
        loss=per_sample_l1,
        geometry=geom,
    )
    got = refined.encode(decoder, x, y, train=False, loss=per_sample_l1)
    torch.testing.assert_close(got.poses, expect.poses, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.context, expect.context, atol=1e-12, rtol=0)
    skipped = refined.encode(decoder, x, y, train=False, loss=per_sample_l1, refine=False)
    torch.testing.assert_close(skipped.context, unrefined.context, atol=0, rtol=0)
    assert (got.context - unrefined.context).abs().max() > 1e-3
    loss = lambda z: per_sample_l1(decoder(x, z), y).sum().item()  # noqa: E731
    assert loss(got) < loss(unrefined)
    subsets = fixed_subsets(40, 20, 3)
    torch.testing.assert_close(  # the training-time fit (the outer loop) never refines
        refined(decoder, x, y, subsets=subsets).context, plain(decoder, x, y, subsets=subsets).context
    )


@pytest.mark.parametrize("name", ["se2", "se3"])
def test_refined_encoding_is_equivariant(name):
    """With moment-posed initial latents the whole test-time encoding (Meta-SGD steps + refinement) is
    equivariant; the control refines with per-coordinate Adam moments and is not."""
    geom = geometry.get(name)
    decoder = make_decoder(geom)
    meta = make_meta(geom, init_frame="moments", num_eval_steps=2, num_refine_steps=10, refine_lr=5e-2)
    x, y = problem(geom, num_coords=40)
    g = geom.sample_group(2, generator=gen(5), dtype=F64)
    gx = geom.act_coords(g, x)
    fit, fit_g = (meta.encode(decoder, c, y, train=False) for c in (x, gx))
    torch.testing.assert_close(fit_g.poses, geom.act_poses(g, fit.poses), atol=1e-8, rtol=0)
    torch.testing.assert_close(fit_g.context, fit.context, atol=1e-8, rtol=0)
    unrefined = [meta.encode(decoder, c, y, train=False, refine=False) for c in (x, gx)]
    assert (fit.poses - unrefined[0].poses).abs().max() > 1e-3  # the refinement moved the poses
    kw = dict(num_steps=10, lr=5e-2, lr_schedule="cosine", shared_pose_moments=False)
    plain = [optimise_latents(decoder, c, y, z, **kw) for c, z in zip((x, gx), unrefined, strict=True)]
    assert (plain[1].poses - geom.act_poses(g, plain[0].poses)).abs().max() > 1e-4


def test_refinement_settings_are_validated():
    geom = geometry.get("se2")
    with pytest.raises(ValueError, match="num_refine_steps"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, num_refine_steps=-1)
    with pytest.raises(ValueError, match="refine_lr"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, num_refine_steps=5, refine_lr=0.0)
    with pytest.raises(ValueError, match="freezes"):
        MetaSGD(geometry=geom, num_latents=4, context_dim=3, num_refine_steps=5, lr_position=0.0)
