"""Tests of the fitter protocol: bind, encode on MetaSGD and AutoDecoder, losses, masks, clear errors."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _fitting_utils import CONTEXT_DIM, gen  # noqa: E402
from _fitting_utils import make_decoder as _make_decoder  # noqa: E402

from enf import EquivariantNeuralField, Latents, geometry
from enf.fitting import AutoDecoder, AutoDecoderTable, Fitter, MetaSGD, optimise_latents
from enf.fitting.observed import sample_observed_subsets
from enf.metrics import per_sample_l1, per_sample_mse


def make_decoder(name: str = "se2") -> EquivariantNeuralField:
    return _make_decoder(geometry.get(name))


def problem(geom, batch_size: int = 3, num_coords: int = 30):
    x = geom.sample_coords(batch_size, num_coords, generator=gen(1), dtype=F64)
    y = torch.randn(batch_size, num_coords, 2, generator=gen(2), dtype=F64)
    return x, y


def fitters(decoder) -> dict[str, Fitter]:
    kw = dict(geometry=decoder.geometry, context_dim=decoder.context_dim)
    return {
        "meta_sgd": MetaSGD(num_latents=9, lr_context=20.0).bind(**kw).double(),
        "autodecoder": AutoDecoder(num_latents=9, test_steps=10, test_lr=0.05)
        .bind(**kw, num_signals=5)
        .double(),
    }


# ------------------------------------------------------------------------------------------------ bind
def test_meta_sgd_bind_later_equals_bind_at_construction():
    geom = geometry.get("se2")
    late = MetaSGD(num_latents=9, num_inner_steps=2, lr_context=2.0)
    assert not late.is_bound and list(late.parameters()) == []
    assert late.bind(geometry="se2", context_dim=CONTEXT_DIM, num_signals=7) is late
    now = MetaSGD(geometry=geom, context_dim=CONTEXT_DIM, num_latents=9, num_inner_steps=2, lr_context=2.0)
    assert late.is_bound and late.num_latents == 9 and late.context_dim == CONTEXT_DIM
    a, b = late.state_dict(), now.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # binding again with the same settings is a no-op (num_signals is ignored by Meta-SGD)
    assert late.bind(geometry=geometry.get("se2"), context_dim=CONTEXT_DIM) is late
    with pytest.raises(ValueError, match=f"already bound.*context_dim={CONTEXT_DIM}.*context_dim=5"):
        late.bind(geometry="se2", context_dim=5)
    with pytest.raises(ValueError, match="already bound.*'se2'.*'sphere'"):
        late.bind(geometry="sphere", context_dim=CONTEXT_DIM)
    with pytest.raises(ValueError, match="already bound"):  # same name, different settings
        late.bind(geometry=geometry.SE2(translation_scale=2.0), context_dim=CONTEXT_DIM)


def test_unbound_fitters_raise_runtime_errors():
    decoder = make_decoder()
    x, y = problem(decoder.geometry)
    for fitter in (MetaSGD(num_latents=4), AutoDecoder(num_latents=4)):
        with pytest.raises(RuntimeError, match=r"bind\(geometry=.*context_dim="):
            fitter.encode(decoder, x, y, train=False)
    with pytest.raises(RuntimeError, match="step_sizes needs a bound fitter"):
        MetaSGD(num_latents=4).step_sizes()
    with pytest.raises(RuntimeError, match="initial needs a bound fitter"):
        MetaSGD(num_latents=4).initial(2)


def test_autodecoder_bind_needs_training_signals():
    with pytest.raises(ValueError, match="num_signals >= 1.*got 0"):
        AutoDecoder(num_latents=4).bind(geometry="se2", context_dim=3)
    fitter = AutoDecoder(num_latents=4).bind(geometry="se2", context_dim=3, num_signals=5)
    assert fitter.table.poses.shape == (5, 4, 4) and fitter.table.context.shape == (5, 4, 3)
    assert fitter.bind(geometry="se2", context_dim=3, num_signals=5) is fitter
    with pytest.raises(ValueError, match="already bound.*num_signals=5.*num_signals=6"):
        fitter.bind(geometry="se2", context_dim=3, num_signals=6)
    at_once = AutoDecoder(num_latents=4, geometry="se2", context_dim=3, num_signals=5)
    assert at_once.is_bound
    with pytest.raises(ValueError, match="all of geometry, context_dim and num_signals"):
        AutoDecoder(num_latents=4, geometry="se2", context_dim=3)
    with pytest.raises(ValueError, match="both geometry and context_dim"):
        MetaSGD(num_latents=4, geometry="se2")


@pytest.mark.parametrize(
    "build,match,error",
    [
        (lambda: MetaSGD(num_latents=0), "num_latents must be >= 1, got 0", ValueError),
        (lambda: MetaSGD(num_latents=2.5), "num_latents must be an int", TypeError),
        (
            lambda: MetaSGD(num_latents=4, geometry="se2", context_dim=0),
            "context_dim must be >= 1",
            ValueError,
        ),
        (lambda: MetaSGD(num_latents=4, window=0.0), "window must be None", ValueError),
        (lambda: MetaSGD(num_latents=4, window=-1.0), "window must be None", ValueError),
        (lambda: MetaSGD(num_latents=4, num_inner_steps=-1), "num_inner_steps must be >= 0", ValueError),
        (lambda: MetaSGD(num_latents=4, num_eval_steps=-2), "num_eval_steps must be >= 0", ValueError),
        (lambda: MetaSGD(num_latents=4, min_window=0.0), "min_window must be > 0", ValueError),
        (lambda: AutoDecoder(num_latents=0), "num_latents must be >= 1", ValueError),
        (lambda: AutoDecoder(num_latents=4, window=0.0), "window must be None", ValueError),
        (lambda: AutoDecoder(num_latents=4, test_steps=-1), "test_steps must be >= 0", ValueError),
        (lambda: AutoDecoder(num_latents=4, test_lr=0.0), "test_lr must be > 0", ValueError),
        (
            lambda: AutoDecoderTable(
                geometry=geometry.get("se2"), num_signals=2, num_latents=0, context_dim=3
            ),
            "num_latents must be >= 1",
            ValueError,
        ),
        (
            lambda: AutoDecoderTable(
                geometry=geometry.get("se2"), num_signals=2, num_latents=3, context_dim=0
            ),
            "context_dim must be >= 1",
            ValueError,
        ),
        (
            lambda: AutoDecoderTable(
                geometry=geometry.get("se2"), num_signals=2, num_latents=3, context_dim=2, window=-0.5
            ),
            "window must be None",
            ValueError,
        ),
    ],
)
def test_constructor_validation(build, match, error):
    with pytest.raises(error, match=match):
        build()


# ---------------------------------------------------------------------------------------------- encode
@pytest.mark.parametrize("kind", ["meta_sgd", "autodecoder"])
def test_test_time_encode_fits_and_detaches(kind):
    decoder = make_decoder()
    fitter = fitters(decoder)[kind]
    assert isinstance(fitter, Fitter) and fitter.num_latents == 9
    x, _ = problem(decoder.geometry)
    start = fitter.encode(decoder, x, torch.zeros(3, 30, 2, dtype=F64), train=False, num_steps=0)
    with torch.no_grad():  # a reachable target: the decoder at other contexts
        shift = 0.5 * torch.randn(start.context.shape, generator=gen(4), dtype=F64)
        other = Latents(poses=start.poses, context=start.context + shift, window=start.window)
        y = decoder(x, other)
    z = fitter.encode(decoder, x, y, train=False, num_steps=20)
    assert isinstance(z, Latents) and z.poses.shape == (3, 9, 4) and z.context.shape == (3, 9, CONTEXT_DIM)
    assert not (z.poses.requires_grad or z.context.requires_grad)
    with torch.no_grad():
        before, after = per_sample_mse(decoder(x, start), y), per_sample_mse(decoder(x, z), y)
    assert (after < 0.9 * before).all(), (before, after)
    assert all(p.grad is None for p in decoder.parameters())


def test_meta_sgd_encode_modes():
    decoder = make_decoder()
    meta = MetaSGD(num_latents=9, num_inner_steps=2, num_eval_steps=5, lr_context=1.0)
    meta = meta.bind(geometry=decoder.geometry, context_dim=CONTEXT_DIM).double()
    x, y = problem(decoder.geometry)
    z_train = meta.encode(decoder, x, y, train=True)
    assert z_train.context.requires_grad  # differentiable training-time latents
    torch.testing.assert_close(z_train.context, meta(decoder, x, y).context, atol=0, rtol=0)
    z_eval = meta.encode(decoder, x, y, train=False, loss=per_sample_l1)
    expected = meta(decoder, x, y, num_steps=5, loss=per_sample_l1, create_graph=False)
    torch.testing.assert_close(z_eval.context, expected.context.detach(), atol=0, rtol=0)
    assert not z_eval.context.requires_grad
    # subset_size at training time: a random subset of that many points per step
    torch.manual_seed(3)
    a = meta.encode(decoder, x, y, train=True, subset_size=10)
    assert (a.context - z_train.context).abs().max() > 1e-6


def test_autodecoder_encode_modes():
    decoder = make_decoder()
    fitter = fitters(decoder)["autodecoder"]
    x, y = problem(decoder.geometry)
    index = torch.tensor([4, 0, 4])
    z = fitter.encode(decoder, x, y, index=index, train=True)
    assert torch.equal(z.context, fitter.table.context[index])
    per_sample_mse(decoder(x, z), y).sum().backward()
    rows = fitter.table.context.grad.flatten(1).abs().sum(1)
    assert (rows[[0, 4]] > 0).all() and (rows[[1, 2, 3]] == 0).all()
    with pytest.raises(ValueError, match="needs index"):
        fitter.encode(decoder, x, y, train=True)
    with pytest.raises(ValueError, match=r"index must be \[B\]"):
        fitter.encode(decoder, x, y, index=index[:2], train=True)
    # test time: optimise_latents from the table mean, test_steps and test_lr
    got = fitter.encode(decoder, x, y, train=False, loss=per_sample_l1)
    init = fitter.table.mean().detach().expand(3)
    expected = optimise_latents(decoder, x, y, init, num_steps=10, lr=0.05, loss=per_sample_l1)
    torch.testing.assert_close(got.poses, expected.poses, atol=0, rtol=0)
    torch.testing.assert_close(got.context, expected.context, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------- losses
def test_inner_step_with_l1_loss_matches_an_independent_gradient():
    decoder = make_decoder()
    geom = decoder.geometry
    meta = MetaSGD(geometry=geom, context_dim=CONTEXT_DIM, num_latents=9, lr_context=1.0).double()
    x, y = problem(geom, batch_size=2)
    fit = meta(decoder, x, y, num_steps=1, loss=per_sample_l1)
    z0 = meta.initial(2)
    leaves = [
        z0.poses.detach().clone().requires_grad_(True),
        z0.context.detach().clone().requires_grad_(True),
    ]
    pred = decoder(x, Latents(poses=leaves[0], context=leaves[1], window=z0.window.detach()))
    loss = (pred - y).abs().mean(dim=(1, 2)).sum()
    gp, gc = torch.autograd.grad(loss, leaves)
    lr = {k: v.detach() for k, v in meta.step_sizes().items()}
    torch.testing.assert_close(fit.poses, z0.poses - lr["poses"] * gp, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.context, z0.context - lr["context"] * gc, atol=1e-12, rtol=0)
    # and it is not the MSE step
    mse_fit = meta(decoder, x, y, num_steps=1)
    assert (mse_fit.context - fit.context).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["meta_sgd", "autodecoder"])
def test_a_loss_that_is_not_per_sample_is_refused(kind):
    decoder = make_decoder()
    fitter = fitters(decoder)[kind]
    x, y = problem(decoder.geometry)

    def batch_mean(pred, target):
        return (pred - target).square().mean()

    with pytest.raises(
        ValueError, match=r"batch_mean must return one value per sample, shape \(3,\), got \(\)"
    ):
        fitter.encode(decoder, x, y, train=False, loss=batch_mean, num_steps=1)


# ------------------------------------------------------------------------------------------------ masks
def equal_count_mask(batch_size: int, num_coords: int, count: int, seed: int) -> torch.Tensor:
    g = gen(seed)
    mask = torch.zeros(batch_size, num_coords, dtype=torch.bool)
    for b in range(batch_size):
        mask[b, torch.randperm(num_coords, generator=g)[:count]] = True
    return mask


def gathered(x, y, mask):
    b = x.shape[0]
    return x[mask].reshape(b, -1, x.shape[-1]), y[mask].reshape(b, -1, y.shape[-1])


@pytest.mark.parametrize("kind", ["meta_sgd", "autodecoder"])
def test_masked_encode_equals_encode_on_the_observed_points(kind):
    decoder = make_decoder()
    fitter = fitters(decoder)[kind]
    x, y = problem(decoder.geometry)
    mask = equal_count_mask(3, 30, 12, seed=5)
    xo, yo = gathered(x, y, mask)
    y_noisy = torch.where(mask.unsqueeze(-1), y, y + 100.0)  # unobserved values must not matter
    z_mask = fitter.encode(decoder, x, y_noisy, train=False, mask=mask, num_steps=4)
    z_sub = fitter.encode(decoder, xo, yo, train=False, num_steps=4)
    torch.testing.assert_close(z_mask.poses, z_sub.poses, atol=1e-12, rtol=0)
    torch.testing.assert_close(z_mask.context, z_sub.context, atol=1e-12, rtol=0)
    # unequal counts: each sample is fitted on its own observed points only
    mask[0, mask[0].nonzero()[:5, 0]] = False  # sample 0 now sees 7 points
    z_uneven = fitter.encode(decoder, x, y_noisy, train=False, mask=mask, num_steps=4)
    for b in range(3):
        xb, yb = x[b : b + 1, mask[b]], y[b : b + 1, mask[b]]
        alone = fitter.encode(decoder, xb, yb, train=False, num_steps=4)
        torch.testing.assert_close(z_uneven.context[b : b + 1], alone.context, atol=1e-12, rtol=0)
        torch.testing.assert_close(z_uneven.poses[b : b + 1], alone.poses, atol=1e-12, rtol=0)


def test_masked_training_encode_with_explicit_subsets_and_subset_size():
    decoder = make_decoder()
    meta = fitters(decoder)["meta_sgd"]
    x, y = problem(decoder.geometry)
    mask = equal_count_mask(3, 30, 20, seed=6)
    xo, yo = gathered(x, y, mask)
    z_mask = meta.encode(decoder, x, y, train=True, mask=mask)
    z_sub = meta.encode(decoder, xo, yo, train=True)
    torch.testing.assert_close(z_mask.context, z_sub.context, atol=1e-12, rtol=0)
    assert z_mask.context.requires_grad
    # random observed subsets per step: min(subset_size, observed) points of each sample, reproducible
    subsets = sample_observed_subsets(mask, 8, 3, generator=gen(7))
    again = sample_observed_subsets(mask, 8, 3, generator=gen(7))
    for s, t in zip(subsets, again, strict=True):
        assert torch.equal(s, t) and (s.sum(1) == 8).all() and not (s & ~mask).any()
    few = sample_observed_subsets(mask, 25, 1, generator=gen(7))[0]
    assert torch.equal(few, mask)
    fit = meta(decoder, x, y, mask=mask, subset_size=8, generator=gen(7))
    z = meta.initial(3)
    for s in subsets:  # the same fit, one step at a time on each step's gathered points
        z = meta(decoder, *gathered(x, y, s), num_steps=1, init=z)
    torch.testing.assert_close(fit.context, z.context, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.poses, z.poses, atol=1e-12, rtol=0)
    # explicit index subsets shared by the batch: only their observed points count
    idx = torch.arange(0, 30, 2)
    shared = meta(decoder, x, y, mask=mask, subsets=[idx], num_steps=1)
    keep = mask & torch.zeros(30, dtype=torch.bool).index_fill(0, idx, True)
    for b in range(3):
        alone = meta(decoder, x[b : b + 1, keep[b]], y[b : b + 1, keep[b]], num_steps=1, init=meta.initial(1))
        torch.testing.assert_close(shared.context[b : b + 1], alone.context, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "mask,error,match",
    [
        (torch.ones(3, 30), TypeError, "dtype torch.bool"),
        (torch.ones(3, 29, dtype=torch.bool), ValueError, r"must be \[B, N\] = \(3, 30\)"),
        (torch.ones(3, 30, dtype=torch.bool).index_fill(0, torch.tensor([1]), False), ValueError, r"\[1\]"),
    ],
)
def test_bad_masks_raise(mask, error, match):
    decoder = make_decoder()
    x, y = problem(decoder.geometry)
    for fitter in fitters(decoder).values():
        with pytest.raises(error, match=match):
            fitter.encode(decoder, x, y, train=False, mask=mask, num_steps=1)
