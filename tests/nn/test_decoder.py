"""Tests of the ENF decoder: steerability, the translation fast path, k-nearest selection, batching, gradients.

Values are compared against an independent per-pair reference implementation of DESIGN.md section 5
(:func:`reference_decode`), against the decoder itself under group actions, or against hand-written formulas.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from enf import EquivariantNeuralField, Latents, geometry, testing
from enf.geometry import SE2, Translation
from enf.geometry.frames import rotation_2d
from enf.latents import initial_latents
from enf.nn import BiInvariantCrossAttention, RandomFourierFeatures

F64 = torch.float64
EQUIVARIANT = [n for n in geometry.names() if n != "absolute2d"]
CONTEXT_DIM = 8
SMALL = dict(
    context_dim=CONTEXT_DIM,
    hidden_dim=32,
    num_heads=2,
    num_query_frequencies=8,
    num_value_frequencies=8,
    value_hidden_dim=16,
    num_output_layers=1,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_model(
    geom, *, num_out: int = 3, k_nearest=None, use_window: bool = True, channel_modulation: bool = False,
    seed: int = 0, **overrides,
) -> EquivariantNeuralField:
    """A small float64 decoder; ``channel_modulation`` is reached through the attention module if the
    decoder's constructor does not expose it."""
    kw = {**SMALL, **overrides}
    torch.manual_seed(seed)
    takes_cm = "channel_modulation" in inspect.signature(EquivariantNeuralField).parameters
    extra = {"channel_modulation": channel_modulation} if takes_cm else {}
    model = EquivariantNeuralField(
        geometry=geom, num_out=num_out, k_nearest=k_nearest, use_window=use_window, **kw, **extra
    )
    if channel_modulation and not takes_cm:
        model.attention = BiInvariantCrossAttention(
            geometry=model.geometry,
            context_dim=kw["context_dim"],
            hidden_dim=kw["hidden_dim"],
            num_heads=kw["num_heads"],
            num_query_frequencies=kw["num_query_frequencies"],
            num_value_frequencies=kw["num_value_frequencies"],
            value_hidden_dim=kw["value_hidden_dim"],
            k_nearest=k_nearest,
            use_window=use_window,
            channel_modulation=True,
        )
    assert model.attention.channel_modulation == channel_modulation
    # Perturb every parameter so that no layer sits at a special value (LayerNorm 1/0, zero biases).
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.double()


def random_latents(geom, batch_size: int, num_latents: int, *, seed: int = 0, context_dim: int = CONTEXT_DIM):
    """Random (non-grid) poses, random context and random positive windows, float64."""
    g = gen(seed)
    poses = geom.sample_poses(batch_size, num_latents, generator=g, dtype=F64)
    context = torch.randn(batch_size, num_latents, context_dim, generator=g, dtype=F64)
    base = geom.default_window(num_latents)
    window = base * (0.7 + 0.6 * torch.rand(batch_size, num_latents, 1, generator=g, dtype=F64))
    return Latents(poses=poses, context=context, window=window)


def random_coords(geom, batch_size: int, num_coords: int, *, seed: int = 1):
    return geom.sample_coords(batch_size, num_coords, generator=gen(seed), dtype=F64)


def _rff(embedding: RandomFourierFeatures, a: torch.Tensor) -> torch.Tensor:
    phase = a @ embedding.weight.to(a.dtype)
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


def reference_decode(model: EquivariantNeuralField, coords, z: Latents, *, k_nearest=None) -> torch.Tensor:
    """Straightforward per-pair implementation of DESIGN.md section 5 (no algebraic rewrites).

    ``q_ij = W_q gamma_q(a_ij) + b_q`` is formed for every pair, ``beta_ij`` too, and the k-nearest selection
    is a mask of ``-inf`` on all but the ``k`` latents with the smallest ``d2`` (found by ``argsort``).
    """
    att = model.attention
    geom = att.geometry
    b, n, _ = coords.shape
    num_latents = z.num_latents
    heads, head_dim = att.num_heads, att.head_dim
    h = att.latent_norm(att.latent_proj(z.context))
    keys = att.key(h).view(b, 1, num_latents, heads, head_dim)
    values = att.value(h).view(b, 1, num_latents, heads, head_dim)
    a = geom.pair_invariant(coords.unsqueeze(2), z.poses.unsqueeze(1))  # [B, N, L, inv]
    q = att.query(_rff(att.query_embedding, a)).view(b, n, num_latents, heads, head_dim)
    logits = (q * keys).sum(-1) / math.sqrt(head_dim)  # [B, N, L, H]
    d2 = geom.pair_distance2(coords.unsqueeze(2), z.poses.unsqueeze(1))  # [B, N, L]
    if att.use_window:
        logits = logits - (d2 / z.window[..., 0].square().unsqueeze(1)).unsqueeze(-1)
    if k_nearest is not None:
        order = torch.argsort(d2, dim=-1)
        keep = torch.zeros_like(d2, dtype=torch.bool).scatter(-1, order[..., :k_nearest], True)
        logits = logits.masked_fill(~keep.unsqueeze(-1), -math.inf)
    weights = torch.softmax(logits, dim=2)
    e = _rff(att.value_embedding, a)
    if att.value_hidden is not None:
        e = F.gelu(att.value_hidden(e))
    alpha = att.value_scale(e)
    alpha = alpha.view(b, n, num_latents, heads, head_dim) if att.channel_modulation else alpha.unsqueeze(-1)
    beta = att.value_shift(e).view(b, n, num_latents, heads, head_dim)
    modulated = values * (1.0 + alpha) + beta
    out = (weights.unsqueeze(-1) * modulated).sum(2).reshape(b, n, heads * head_dim)
    return model.head(out)


class BrokenSE2(SE2):
    """SE(2) with the classic bug: ``R_o (x - q)`` instead of ``R_o^T (x - q)``. Registered nowhere."""

    def pair_invariant(self, x, poses):
        d = x - poses[..., :2]
        c, s = rotation_2d(poses[..., 2:])
        return torch.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], dim=-1)


# ------------------------------------------------------------------------------------------ steerability
@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_steerable_every_geometry(name, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 2, 12, seed=3)
    x = random_coords(geom, 2, 24, seed=4)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(5))
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(6)) < 1e-9
    # the field is not trivially constant, so the check above has teeth
    assert model(x, z).std(dim=1).min() > 1e-4


@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_steerable_channel_modulation(name, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, channel_modulation=True)
    z = random_latents(geom, 2, 12, seed=7)
    x = random_coords(geom, 2, 24, seed=8)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(9))
    # and it is the function of the per-pair reference (alpha per channel)
    torch.testing.assert_close(model(x, z), reference_decode(model, x, z, k_nearest=k_nearest), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["se2", "ball"])
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


@pytest.mark.parametrize("name", ["se2", "sphere"])
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
@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "se2", "torus2d", "sphere", "ball"])
def test_matches_per_pair_reference(name, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest)
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


@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("space_dim", [2, 3])
def test_translation_fast_path_matches_generic_path(space_dim, k_nearest, monkeypatch):
    geom = Translation(space_dim=space_dim)
    assert geom.invariant_is_difference
    model = make_model(geom, k_nearest=k_nearest)
    assert model.attention.geometry is geom
    z = random_latents(geom, 3, 12, seed=26)
    x = random_coords(geom, 3, 30, seed=27)

    calls = []
    original = model.attention._separable_logits

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model.attention, "_separable_logits", spy)
    fast_y, fast_grads = _outputs_and_grads(model, x, z)
    assert calls, "the fast path was not taken"
    geom.invariant_is_difference = False  # instance attribute only: the class keeps True
    assert Translation.invariant_is_difference
    n_calls = len(calls)
    slow_y, slow_grads = _outputs_and_grads(model, x, z)
    assert len(calls) == n_calls, "the generic path still used the separable logits"

    torch.testing.assert_close(fast_y, slow_y, atol=1e-12, rtol=0)
    names = ["poses", "context", "window"] + [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=lambda m, name=name: f"grad {name}: {m}")
    assert fast_grads[0].abs().max() > 1e-6  # pose gradients are not trivially zero
    torch.testing.assert_close(fast_y, reference_decode(model, x, z, k_nearest=k_nearest), atol=1e-12, rtol=0)


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
        ("translation2d", 5, True),
        ("se2", 2, False),
        ("se2", 5, True),
        ("torus2d", 3, False),
        ("sphere_axial", 2, False),
        ("se3", 5, False),
    ],
)
def test_k_nearest_matches_masked_brute_force(name, k, channel_modulation):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k, channel_modulation=channel_modulation)
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


# ---------------------------------------------------------------------------------------- batching
@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "se2", "ball"])
def test_batch_consistency(name, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 3, 12, seed=34)
    x = random_coords(geom, 3, 20, seed=35)
    batched = model(x, z)
    for i in range(3):
        alone = model(x[i : i + 1], z[i])
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-12, rtol=0)
    # samples are independent: changing sample 2 leaves samples 0 and 1 unchanged
    context = z.context.clone()
    context[2] += 1.0
    other = model(x, Latents(poses=z.poses, context=context, window=z.window))
    torch.testing.assert_close(other[:2], batched[:2], atol=1e-12, rtol=0)
    assert (other[2] - batched[2]).abs().max() > 1e-6


@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_num_coords_differs_from_num_latents(name, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 2, 5, seed=36)
    x = random_coords(geom, 2, 37, seed=37)
    y = model(x, z)
    assert y.shape == (2, 37, 3)
    torch.testing.assert_close(y, reference_decode(model, x, z, k_nearest=k_nearest), atol=1e-12, rtol=0)
    # one coordinate at a time gives the same values (no mixing along N)
    for i in (0, 17, 36):
        torch.testing.assert_close(model(x[:, i : i + 1], z), y[:, i : i + 1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("k_nearest", [None, 4])
def test_chunked_decoding_equals_unchunked(k_nearest):
    geom = geometry.get("se2")
    model = make_model(geom, k_nearest=k_nearest)
    z = random_latents(geom, 2, 12, seed=38)
    x = random_coords(geom, 2, 37, seed=39)
    full = model(x, z)
    for chunk in (1, 7, 36, 37, 100):
        torch.testing.assert_close(model(x, z, chunk_size=chunk), full, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "name,channel_modulation,k_nearest",
    [
        ("translation2d", False, None),
        ("translation2d", True, None),
        ("se2", False, None),
        ("se2", True, None),
        ("se2", False, 4),
        ("se2", True, 4),
    ],
)
def test_every_parameter_gets_a_gradient(name, channel_modulation, k_nearest):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, channel_modulation=channel_modulation)
    z = random_latents(geom, 2, 12, seed=40)
    x = random_coords(geom, 2, 20, seed=41)
    target = torch.randn(2, 20, 3, generator=gen(42), dtype=F64)
    model.zero_grad()
    ((model(x, z) - target) ** 2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, f"parameters without gradient: {missing}"
    buffers = dict(model.named_buffers())
    assert {n for n in buffers if n.endswith("embedding.weight")} == {
        "attention.query_embedding.weight",
        "attention.value_embedding.weight",
    }


def test_latent_gradients_are_finite_at_coincident_points():
    """A coordinate exactly on a latent position (d = 0) gives finite gradients (safe norms)."""
    for name in ("isotropic2d", "se2", "se3"):
        geom = geometry.get(name)
        model = make_model(geom)
        z = random_latents(geom, 1, 6, seed=43)
        x = torch.cat([z.poses[:, :, : geom.coord_dim], random_coords(geom, 1, 4, seed=44)], dim=1)
        poses = z.poses.clone().requires_grad_(True)
        y = model(x, Latents(poses=poses, context=z.context, window=z.window))
        (grad,) = torch.autograd.grad(y.sum(), poses)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0


# ---------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise():
    geom = geometry.get("se2")
    model = make_model(geom)
    z = random_latents(geom, 2, 6, seed=45)
    x = random_coords(geom, 2, 10, seed=46)
    with pytest.raises(ValueError, match=r"coords must be \[B, N, 2\].*\(2, 10, 3\)"):
        model(torch.zeros(2, 10, 3, dtype=F64), z)
    with pytest.raises(ValueError, match=r"\(10, 2\)"):
        model(x[0], z)
    bad_pose = Latents(poses=torch.zeros(2, 6, 3, dtype=F64), context=z.context, window=z.window)
    with pytest.raises(ValueError, match=r"pose_dim 4.*\(2, 6, 3\)"):
        model(x, bad_pose)
    with pytest.raises(ValueError, match=r"batch 1 and latents batch 2"):
        model(x[:1], z)
    bad_ctx = Latents(poses=z.poses, context=torch.zeros(2, 6, CONTEXT_DIM + 1, dtype=F64), window=z.window)
    with pytest.raises(ValueError, match=rf"width {CONTEXT_DIM}.*\(2, 6, {CONTEXT_DIM + 1}\)"):
        model(x, bad_ctx)
    with pytest.raises(TypeError, match="Latents"):
        model(x, (z.poses, z.context, z.window))
    with pytest.raises(ValueError, match="num_out"):
        EquivariantNeuralField(geometry=geom, num_out=0)
    with pytest.raises(ValueError, match="divisible"):
        EquivariantNeuralField(geometry=geom, num_out=1, hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="k_nearest"):
        EquivariantNeuralField(geometry=geom, num_out=1, k_nearest=0)
    with pytest.raises(ValueError, match="unknown geometry"):
        EquivariantNeuralField(geometry="se7", num_out=1)


def test_registry_name_and_instance_give_the_same_model():
    torch.manual_seed(0)
    by_name = EquivariantNeuralField(geometry="se2", num_out=2, **SMALL).double()
    torch.manual_seed(0)
    by_instance = EquivariantNeuralField(geometry=SE2(), num_out=2, **SMALL).double()
    z = initial_latents(by_name.geometry, num_latents=9, context_dim=CONTEXT_DIM, dtype=F64).expand(2)
    x = random_coords(by_name.geometry, 2, 11, seed=47)
    assert torch.equal(by_name(x, z), by_instance(x, z))


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
