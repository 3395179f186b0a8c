"""Decoder values: steerability for every geometry (and negative controls), agreement with an independent
per-pair reference implementation, the translation fast path (GEMM form) and k-nearest selection."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _decoder_utils import (
    EQUIVARIANT,
    VALUE_HIDDEN,
    BrokenSE2,
    gen,
    make_model,
    random_coords,
    random_latents,
    reference_decode,
)

from enf import Latents, geometry, testing
from enf.geometry import Translation


# ------------------------------------------------------------------------------------------ steerability
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_steerable_every_geometry(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, value_hidden_dim=value_hidden_dim)
    z = random_latents(geom, 2, 12, seed=3)
    x = random_coords(geom, 2, 24, seed=4)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(5))
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(6)) < 1e-9
    # the field is not trivially constant, so the check above has teeth
    assert model(x, z).std(dim=1).min() > 1e-4


@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_steerable_channel_modulation(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, channel_modulation=True, value_hidden_dim=value_hidden_dim)
    z = random_latents(geom, 2, 12, seed=7)
    x = random_coords(geom, 2, 24, seed=8)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(9))
    # and it is the function of the per-pair reference (alpha per channel)
    torch.testing.assert_close(
        model(x, z), reference_decode(model, x, z, k_nearest=k_nearest), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("name", ["translation2d", "se2", "ball"])
def test_steerable_without_window(name):
    geom = geometry.get(name)
    model = make_model(geom, use_window=False)
    z = random_latents(geom, 2, 12, seed=10)
    x = random_coords(geom, 2, 24, seed=11)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(12))
    torch.testing.assert_close(model(x, z), reference_decode(model, x, z), atol=1e-12, rtol=0)
    # the window really is off: changing it changes nothing
    wide = Latents(poses=z.poses, context=z.context, window=3.0 * z.window)
    torch.testing.assert_close(model(x, wide), model(x, z), atol=0, rtol=0)
    windowed = make_model(geom, use_window=True)
    assert (windowed(x, wide) - windowed(x, z)).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_steerable_float32(name):
    geom = geometry.get(name)
    model = make_model(geom).float()
    z = random_latents(geom, 2, 12, seed=13).to(torch.float32)
    x = random_coords(geom, 2, 24, seed=14).float()
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(15))


@pytest.mark.parametrize("k_nearest", [None, 4])
def test_absolute2d_is_not_steerable(k_nearest):
    geom = geometry.get("absolute2d")
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 2, 12, seed=16)
    x = random_coords(geom, 2, 24, seed=17)
    with pytest.raises(AssertionError, match="not steerable"):
        testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(18))
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(19)) > 1e-3


@pytest.mark.parametrize("k_nearest", [None, 4])
def test_broken_invariant_is_not_steerable(k_nearest):
    geom = BrokenSE2()
    assert geom.name == "se2" and not isinstance(geometry.get("se2"), BrokenSE2)
    with pytest.raises(AssertionError):
        testing.assert_bi_invariant(geom, generator=gen(20))
    model = make_model(geom, k_nearest=k_nearest)
    assert model.geometry is geom
    z = random_latents(geom, 2, 12, seed=21)
    x = random_coords(geom, 2, 24, seed=22)
    with pytest.raises(AssertionError, match="not steerable"):
        testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(23))
    # the correct geometry with the very same weights and inputs passes
    good = make_model(geometry.get("se2"), k_nearest=k_nearest)
    testing.assert_steerable(good, "se2", x, z, num_elements=4, generator=gen(23))


# -------------------------------------------------------------------------- against the reference model
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "translation3d", "se2", "torus2d", "sphere", "ball"])
def test_matches_per_pair_reference(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, value_hidden_dim=value_hidden_dim)
    z = random_latents(geom, 2, 9, seed=24)
    x = random_coords(geom, 2, 20, seed=25)
    expected = reference_decode(model, x, z, k_nearest=k_nearest)
    torch.testing.assert_close(model(x, z), expected, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- translation fast path (GEMM)
def _outputs_and_grads(model, x, z):
    poses = z.poses.clone().requires_grad_(True)
    context = z.context.clone().requires_grad_(True)
    window = z.window.clone().requires_grad_(True)
    y = model(x, Latents(poses=poses, context=context, window=window))
    weights = torch.randn(y.shape, generator=gen(99), dtype=y.dtype)
    grads = torch.autograd.grad((y * weights).sum(), [poses, context, window, *model.parameters()])
    return y.detach(), grads


def _spy_separable_logits(model, monkeypatch) -> list[int]:
    """Count calls of the attention's ``_separable_logits`` (the GEMM form of the query logits)."""
    calls: list[int] = []
    original = model.attention._separable_logits

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model.attention, "_separable_logits", spy)
    return calls


@pytest.mark.parametrize("channel_modulation", [False, True])
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("space_dim", [2, 3])
def test_translation_fast_path_matches_generic_path(
    space_dim, k_nearest, value_hidden_dim, channel_modulation, monkeypatch
):
    fast_geom = Translation(space_dim=space_dim)
    slow_geom = Translation(space_dim=space_dim)
    slow_geom.invariant_is_difference = False  # instance attribute only: the class keeps True
    assert fast_geom.invariant_is_difference and Translation.invariant_is_difference
    kw = dict(k_nearest=k_nearest, value_hidden_dim=value_hidden_dim, channel_modulation=channel_modulation)
    fast = make_model(fast_geom, **kw)
    slow = make_model(slow_geom, **kw)
    slow.load_state_dict(fast.state_dict())
    assert fast.attention.geometry is fast_geom and slow.attention.geometry is slow_geom
    z = random_latents(fast_geom, 3, 12, seed=26)
    x = random_coords(fast_geom, 3, 30, seed=27)

    fast_calls = _spy_separable_logits(fast, monkeypatch)
    slow_calls = _spy_separable_logits(slow, monkeypatch)
    fast_y, fast_grads = _outputs_and_grads(fast, x, z)
    slow_y, slow_grads = _outputs_and_grads(slow, x, z)
    separable = value_hidden_dim == 0 and not channel_modulation
    if k_nearest is None or separable:  # k-nearest with L < 32 k: masked dense GEMMs (k_nearest_mode auto)
        assert fast_calls, "the fast path was not taken"
    else:  # otherwise k-nearest gathers the selected pairs and embeds a = x - q per pair
        assert not fast_calls, "k-nearest used the dense separable logits"
    assert not slow_calls, "the generic path used the separable logits"

    torch.testing.assert_close(fast_y, slow_y, atol=1e-12, rtol=0)
    names = ["poses", "context", "window"] + [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=lambda m, name=name: f"grad {name}: {m}")
    assert fast_grads[0].abs().max() > 1e-6  # pose gradients are not trivially zero
    expected = reference_decode(fast, x, z, k_nearest=k_nearest)
    torch.testing.assert_close(fast_y, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("k_nearest", [None, 4])
def test_translation_fast_path_is_steerable_far_from_the_origin(k_nearest):
    """The GEMM form multiplies phases of x and q separately; large translations must not break it."""
    geom = Translation(space_dim=2, translation_scale=20.0)
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 2, 12, seed=51)
    x = random_coords(geom, 2, 24, seed=52)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(53), atol=1e-8)


# ----------------------------------------------------------------------------------------- k-nearest
@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_k_nearest_equal_to_num_latents_is_dense(name):
    geom = geometry.get(name)
    dense = make_model(geom, k_nearest=None)
    full_k = make_model(geom, k_nearest=10)
    full_k.load_state_dict(dense.state_dict())
    z = random_latents(geom, 2, 10, seed=28)
    x = random_coords(geom, 2, 16, seed=29)
    assert torch.equal(full_k(x, z), dense(x, z))
    bigger_k = make_model(geom, k_nearest=50)
    bigger_k.load_state_dict(dense.state_dict())
    assert torch.equal(bigger_k(x, z), dense(x, z))


@pytest.mark.parametrize(
    "name,k,channel_modulation",
    [
        ("translation2d", 1, False),
        ("translation2d", 2, False),
        ("translation2d", 5, True),
        ("se2", 2, False),
        ("se2", 5, True),
        ("torus2d", 3, False),
        ("sphere_axial", 2, False),
        ("se3", 5, False),
    ],
)
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
def test_k_nearest_matches_masked_brute_force(name, k, channel_modulation, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(
        geom, k_nearest=k, channel_modulation=channel_modulation, value_hidden_dim=value_hidden_dim
    )
    z = random_latents(geom, 2, 12, seed=30)
    x = random_coords(geom, 2, 20, seed=31)
    expected = reference_decode(model, x, z, k_nearest=k)
    torch.testing.assert_close(model(x, z), expected, atol=1e-12, rtol=0)
    # and the selection matters: the dense model differs
    dense = reference_decode(model, x, z, k_nearest=None)
    assert (dense - expected).abs().max() > 1e-6


def test_k_nearest_ignores_far_latents():
    """Changing the context of a latent that is never among the k nearest changes nothing."""
    geom = geometry.get("se2")
    model = make_model(geom, k_nearest=3, use_window=False)
    z = random_latents(geom, 1, 8, seed=32)
    poses = z.poses.clone()
    poses[0, 5, :2] = torch.tensor([3.0, 3.0], dtype=F64)  # outside [-1, 1]^2, farther than the others
    x = random_coords(geom, 1, 16, seed=33)
    d2 = geom.distance2(x, poses)[0]  # [N, L]
    assert (d2.argsort(-1)[:, :3] != 5).all()
    context = z.context.clone()
    context[0, 5] += 10.0
    before = Latents(poses=poses, context=z.context, window=z.window)
    after = Latents(poses=poses, context=context, window=z.window)
    assert torch.equal(model(x, after), model(x, before))
    dense = make_model(geom, k_nearest=None, use_window=False)
    assert (dense(x, after) - dense(x, before)).abs().max() > 1e-6
