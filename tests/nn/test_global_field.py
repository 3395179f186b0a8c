"""The global-latent decoder of the vector-latent baseline: every parameter learns, the code steers the field,
it overfits, it fits under Meta-SGD, and bad inputs are named. Also why the single-latent ENF was replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from _common import F64

from enf import EquivariantNeuralField, GlobalLatentField, Latents, geometry
from enf.fitting import MetaSGD
from enf.metrics import per_sample_mse

SMALL = dict(context_dim=8, hidden_dim=24, num_layers=2, num_frequencies=8)
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "fit"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_field(geom: str = "absolute2d", *, num_out: int = 2, num_latents: int = 1, **overrides):
    """A small float64 field with every parameter moved off its initial value (the zero FiLM biases too)."""
    torch.manual_seed(0)
    field = GlobalLatentField(
        geometry=geom, num_out=num_out, num_latents=num_latents, **{**SMALL, **overrides}
    )
    with torch.no_grad():
        for p in field.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return field.double()


def random_latents(geom: str, batch_size: int, num_latents: int, *, context_dim: int = 8, seed: int = 0):
    g = gen(seed)
    geom = geometry.get(geom)
    return Latents(
        poses=geom.sample_poses(batch_size, num_latents, generator=g, dtype=F64),
        context=torch.randn(batch_size, num_latents, context_dim, generator=g, dtype=F64),
        window=torch.ones(batch_size, num_latents, 1, dtype=F64),
    )


def random_coords(geom: str, batch_size: int, num_coords: int, *, seed: int = 1):
    return geometry.get(geom).sample_coords(batch_size, num_coords, generator=gen(seed), dtype=F64)


def parameter_grads(model, x, z) -> dict[str, torch.Tensor]:
    y = model(x, z)
    weights = torch.randn(y.shape, generator=gen(7), dtype=F64)  # no symmetric cancellation of the sum
    model.zero_grad()
    (y * weights).sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


# ------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("num_latents", [1, 3])
@pytest.mark.parametrize("geom", ["absolute2d", "absolute_sphere"])
def test_every_parameter_gets_a_gradient(geom, num_latents):
    field = make_field(geom, num_latents=num_latents)
    grads = parameter_grads(field, random_coords(geom, 2, 32), random_latents(geom, 2, num_latents))
    assert len(grads) == 2 * (2 * 2 + 1)  # weight and bias of 2 layers, 2 FiLM maps, the output
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().max() > 1e-8, f"{name} gets no gradient"


def test_code_steers_the_field_and_poses_and_windows_are_ignored():
    field = make_field(num_latents=1)
    x = random_coords("absolute2d", 2, 64)
    z = random_latents("absolute2d", 2, 1, seed=3)
    other = random_latents("absolute2d", 2, 1, seed=4)
    y = field(x, z)
    assert y.std(dim=1).min() > 1e-2  # a field over x, not a constant
    # another code, another field
    assert (field(x, z.replace(context=other.context)) - y).abs().amax(dim=(1, 2)).min() > 1e-2
    # other poses and windows, the same field, exactly
    moved = z.replace(poses=other.poses, window=2.0 * z.window)
    torch.testing.assert_close(field(x, moved), y, atol=0, rtol=0)
    context = z.context.clone().requires_grad_(True)
    poses = z.poses.clone().requires_grad_(True)
    g_context, g_poses = torch.autograd.grad(
        field(x, z.replace(context=context, poses=poses)).sum(), [context, poses], allow_unused=True
    )
    assert g_poses is None and g_context.abs().min() > 0  # every code entry moves the field


def test_single_latent_enf_leaves_query_and_key_without_gradient():
    """Why the baseline no longer reuses the ENF: with one latent the attention softmax is identically 1, so
    its query and key weights get exactly zero gradient (with two latents they do get one)."""
    torch.manual_seed(0)
    enf = EquivariantNeuralField(geometry="absolute2d", num_out=2, context_dim=8, hidden_dim=16).double()
    x = random_coords("absolute2d", 2, 32)
    zero = {
        n
        for n, g in parameter_grads(enf, x, random_latents("absolute2d", 2, 1)).items()
        if g.abs().max() == 0
    }
    assert {"attention.query.weight", "attention.query.bias", "attention.key.weight"} <= zero
    two = parameter_grads(enf, x, random_latents("absolute2d", 2, 2))
    assert min(float(two[name].abs().max()) for name in zero) > 0


def test_default_size_matches_the_enf_decoders():
    """The defaults (context 64, one latent) have about as many parameters as the ENF decoders of the PDE
    fit configs (83.8k to 85.4k; this field 83.8k for one output channel)."""
    count = sum(p.numel() for p in GlobalLatentField(geometry="absolute2d", num_out=1).parameters())
    for name in ("diffusion_plane", "diffusion_sphere", "navier_stokes_torus"):
        args = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]["decoder"]["init_args"]
        enf = EquivariantNeuralField(num_out=1, **args)
        assert abs(count / sum(p.numel() for p in enf.parameters()) - 1) < 0.05, name


# ---------------------------------------------------------------------------------------------- values
def test_chunks_and_batches_decode_alike():
    field = make_field()
    x, z = random_coords("absolute2d", 3, 50), random_latents("absolute2d", 3, 1)
    y = field(x, z)
    torch.testing.assert_close(field(x, z, chunk_size=7), y, atol=1e-13, rtol=0)
    torch.testing.assert_close(field(x[1:2], z[1:2]), y[1:2], atol=1e-13, rtol=0)


def test_overfits_two_fields_told_apart_by_their_codes():
    """One network, two fixed random codes, two different sums of sinusoids on 256 points: relative MSE below
    2e-3 after 300 Adam steps (observed at most 1.8e-4 over 8 seeds; the single-latent ENF of the same
    size reached 1.6e-3 to 6.3e-3)."""
    torch.manual_seed(0)
    field = GlobalLatentField(geometry="absolute2d", num_out=1).double()
    g = gen(0)
    x = (2 * torch.rand(1, 256, 2, generator=g, dtype=F64) - 1).expand(2, -1, -1)
    u, v = x[0, :, 0], x[0, :, 1]
    a = torch.sin(3 * u) * torch.cos(2 * v) + 0.5 * torch.sin(5 * u + 4 * v)
    b = torch.cos(4 * u - 2 * v) + 0.3 * torch.cos(7 * v)
    y = torch.stack([a, b])[..., None]  # [2, 256, 1]
    z = Latents(
        poses=torch.zeros(2, 1, 2, dtype=F64),
        context=torch.randn(2, 1, 64, generator=g, dtype=F64),
        window=torch.ones(2, 1, 1, dtype=F64),
    )
    opt = torch.optim.Adam(field.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 300)
    for _ in range(300):
        opt.zero_grad()
        (field(x, z) - y).square().mean().backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        relative = per_sample_mse(field(x, z), y) / y.square().mean(dim=(1, 2))
    assert relative.max() < 2e-3, relative.tolist()


@pytest.mark.parametrize("lr_position", [0.0, 0.1])
def test_meta_sgd_fits_the_code_and_keeps_the_poses(lr_position):
    """The baseline's fitter (one latent, no pose steps) fits the code; pose steps do no harm."""
    field = make_field(num_out=1)
    meta = MetaSGD(
        geometry="absolute2d", num_latents=1, context_dim=8, lr_position=lr_position, lr_context=0.5
    ).double()
    x = random_coords("absolute2d", 2, 100)
    y = torch.sin(3.0 * x[..., :1]) * torch.cos(2.0 * x[..., 1:]) + torch.tensor(
        [[[0.2]], [[-0.3]]], dtype=F64
    )
    fit = meta(field, x, y, num_steps=3)
    loss = per_sample_mse(field(x, fit), y)
    assert (loss < per_sample_mse(field(x, meta.initial(2)), y)).all()
    torch.testing.assert_close(fit.poses, meta.initial(2).poses, atol=0, rtol=0)
    loss.mean().backward()  # the outer loss reaches the decoder and the fitter's code and step sizes
    for name, p in [
        *field.named_parameters(),
        ("init_context", meta.init_context),
        ("lr_context", meta.lr_context),
    ]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_latents=0), "num_latents must be a positive int, got 0"),
        (dict(hidden_dim=0), "hidden_dim must be a positive int, got 0"),
        (dict(num_layers=0), "num_layers must be a positive int, got 0"),
        (dict(num_frequencies=0), "num_frequencies must be"),
        (dict(num_out=0), "num_out must be a positive int, got 0"),
        (dict(freq_scale=0.0), "freq_scale must be positive, got 0.0"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GlobalLatentField(**{"geometry": "absolute2d", "num_out": 1, **kwargs})


def test_bad_inputs_are_named():
    field = make_field(num_latents=1)
    x, z = random_coords("absolute2d", 2, 10), random_latents("absolute2d", 2, 1)
    with pytest.raises(ValueError, match=r"latent context must have width 8, got \(2, 1, 5\)"):
        field(x, z.replace(context=z.context[..., :5]))
    with pytest.raises(ValueError, match=r"takes 1 latent\(s\) \(num_latents\), got 3"):
        field(x, random_latents("absolute2d", 2, 3))
    with pytest.raises(
        ValueError, match=r"coords must be \[B, N, 2\] for geometry 'absolute2d', got \(2, 10, 3\)"
    ):
        field(random_coords("absolute_sphere", 2, 10), z)
    with pytest.raises(ValueError, match=r"coords batch 1 and latents batch 2 differ"):
        field(x[:1], z)
    with pytest.raises(TypeError, match=r"dtype mismatch: coords is torch.float32"):
        field(x.float(), z)
    with pytest.raises(ValueError, match=r"latents.context contains NaN or inf"):
        field(x, z.replace(context=torch.full_like(z.context, float("nan"))))
    with pytest.raises(ValueError, match=r"latents have a time axis \(4 times"):
        field(x, Latents.stack_time([z] * 4))
    with pytest.raises(TypeError, match=r"latents must be enf.Latents, got tuple"):
        field(x, z.to_tuple())
