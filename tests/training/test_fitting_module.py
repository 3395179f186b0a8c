"""FieldFittingModule without a Trainer: batch contract, metrics per data kind, evaluate(), figures, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from enf.data import keys, pixel_coords
from enf.data.field import FieldSpec
from enf.fitting import AutoDecoder, MetaSGD
from enf.nn import EquivariantNeuralField
from enf.training import FieldFittingModule, FieldTask

DECODER = {
    "context_dim": 8,
    "hidden_dim": 16,
    "num_heads": 2,
    "num_query_frequencies": 4,
    "num_value_frequencies": 4,
}
IMAGE = FieldSpec(kind="image", coord_dim=2, num_channels=1, grid_shape=(4, 4), data_range=1.0)
PLANE = FieldSpec(
    kind="plane", coord_dim=2, num_channels=2, grid_shape=(4, 4), mean=(1.0, -2.0), std=(3.0, 0.5)
)


def tiny(*, num_out: int = 1, geometry: str = "translation2d", field: FieldSpec | None = IMAGE, **kwargs):
    decoder = EquivariantNeuralField(geometry=geometry, num_out=num_out, **DECODER)
    fitter = kwargs.pop("fitter", None) or MetaSGD(num_latents=4, num_inner_steps=2)
    return FieldFittingModule(
        decoder=decoder, fitter=fitter, field=None if field is None else field.to_dict(), **kwargs
    )


def constant_output(module: FieldFittingModule, value: float) -> None:
    """Make the decoder output ``value`` everywhere (zero last layer, constant bias)."""
    last = module.decoder.head[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def field_batch(b: int, n: int, c: int = 1, *, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    coords = pixel_coords(4, 4)[:n].expand(b, -1, -1)
    return {keys.COORDS: coords, keys.SIGNAL: torch.rand(b, n, c, generator=gen), keys.INDEX: torch.arange(b)}


# ------------------------------------------------------------------------------------------ contract
def test_module_implements_the_task_protocol() -> None:
    assert isinstance(tiny(), FieldTask)


def test_unpack_validates_the_batch() -> None:
    module = tiny(num_out=1)
    with pytest.raises(KeyError, match="enf.data.keys"):
        module.unpack({"image": torch.rand(2, 4, 4, 1)})
    with pytest.raises(ValueError, match="3 channels.*num_out=1"):
        module.unpack(field_batch(2, 16, 3))
    batch = field_batch(2, 16)
    batch[keys.SIGNAL][1, 3, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        module.unpack(batch)


@pytest.mark.parametrize("bad", [0, -3])
def test_num_sampled_coords_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="num_sampled_coords"):
        tiny(num_sampled_coords=bad)


def test_field_spec_must_match_the_decoder() -> None:
    with pytest.raises(ValueError, match="2 channels but the decoder has num_out=1"):
        tiny(num_out=1, field=PLANE)
    ball = FieldSpec(kind="ball", coord_dim=3, num_channels=1, grid_shape=(2, 2, 2))
    with pytest.raises(ValueError, match="3-D coordinates but geometry 'translation2d'"):
        tiny(field=ball)


def test_a_zonal_background_in_the_field_spec_reaches_the_decoder_and_its_checkpoint() -> None:
    """The data's zonal mean becomes ``decoder.background`` (saved with the weights, rebuilt from the
    hyperparameters on load); ``sphere`` latents refuse it (it is not invariant under their rotations)."""
    from enf.nn import ZonalProfile

    profile = ZonalProfile(latitudes=[-1.0, 0.0, 1.0], values=[[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]])
    spec = FieldSpec(
        kind="sphere",
        coord_dim=3,
        num_channels=2,
        grid_shape=(3, 4),
        mean=(0.0, 0.0),
        std=(1.0, 1.0),
        extra={"background": profile.to_dict()},
    )
    module = tiny(num_out=2, geometry="sphere_axial", field=spec)
    assert isinstance(module.decoder.background, ZonalProfile)
    state = module.state_dict()
    assert torch.equal(state["decoder.background.values"], profile.values)
    again = tiny(num_out=2, geometry="sphere_axial", field=spec)
    again.load_state_dict(state, strict=True)
    constant_output(module, 0.0)
    coords = torch.tensor([[[1.0, 0.0, 0.0], [0.0, math.cos(1.0), math.sin(1.0)]]])
    decoded = module.decoder(coords, module.fitter.initial(1))  # the head outputs 0: the profile alone
    torch.testing.assert_close(decoded, torch.tensor([[[2.0, 1.0], [3.0, -1.0]]]))
    with pytest.raises(ValueError, match="not invariant under the rotations of geometry 'sphere'"):
        tiny(num_out=2, geometry="sphere", field=spec)
    plain = FieldSpec.from_dict({**spec.to_dict(), "extra": {}})
    assert tiny(num_out=2, geometry="sphere", field=plain).decoder.background is None


# ----------------------------------------------------------------------------------------- metrics
def test_metrics_and_monitor_follow_the_data_kind() -> None:
    image, plane, bare = tiny(), tiny(num_out=2, field=PLANE), tiny(field=None)
    assert image.metric_names == ("mse", "rel_l2", "psnr") and image.monitor == ("val/psnr", "max")
    assert plane.metric_names == ("mse", "rel_l2") and plane.monitor == ("val/mse", "min")
    assert bare.metric_names == ("mse", "rel_l2")


def test_pde_metrics_are_on_the_physical_scale() -> None:
    """A constant normalised prediction 0 against a normalised target t: physical error std * t per channel."""
    module = tiny(num_out=2, field=PLANE)
    pred = torch.zeros(3, 16, 2, dtype=torch.float64)
    target = torch.rand(3, 16, 2, dtype=torch.float64)
    got = module.sample_metrics(pred, target)
    std, mean = torch.tensor(PLANE.std, dtype=torch.float64), torch.tensor(PLANE.mean, dtype=torch.float64)
    diff = target * std  # physical(pred) - physical(target) = std * (0 - t)
    torch.testing.assert_close(got["mse"], diff.square().mean((1, 2)))
    phys_target = target * std + mean
    expected_rel = diff.flatten(1).norm(dim=1) / phys_target.flatten(1).norm(dim=1)
    torch.testing.assert_close(got["rel_l2"], expected_rel)
    assert "psnr" not in got


def test_evaluate_against_an_independent_computation() -> None:
    """Constant output 0.25 (no step can change it): MSE and PSNR of every signal follow in closed form."""
    module = tiny()
    constant_output(module, 0.25)
    batches = [field_batch(3, 16, seed=s) for s in range(2)]
    result = module.evaluate("test", loader=batches)
    signals = torch.cat([b[keys.SIGNAL] for b in batches])
    mse = (signals - 0.25).square().mean((1, 2))
    assert result["mse"] == pytest.approx(float(mse.mean()), rel=1e-5)
    assert result["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    assert result["num_samples"] == 6
    assert result["equivariance_error"] < 1e-9  # translation2d, float64 copy of the decoder
    # max_samples stops after the batch that reaches it
    assert module.evaluate("test", loader=batches, max_samples=2)["num_samples"] == 3


def test_evaluate_equivariance_error_negative_control() -> None:
    assert (
        tiny(geometry="absolute2d").evaluate("test", loader=[field_batch(2, 16)])["equivariance_error"] > 1e-4
    )


def test_evaluate_needs_a_loader_or_a_datamodule() -> None:
    with pytest.raises(ValueError, match=r"without loader=\.\.\. needs a trainer with a datamodule"):
        tiny().evaluate("test")


# -------------------------------------------------------------------------------------- training
def test_training_step_gives_every_parameter_a_gradient() -> None:
    module = tiny(num_sampled_coords=8)
    module.training_step(field_batch(2, 16), 0).backward()
    missing = [
        n
        for n, p in module.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    assert not missing, missing


def test_training_step_refuses_a_non_finite_loss() -> None:
    module = tiny(fitter=MetaSGD(num_latents=4, num_inner_steps=0))
    with torch.no_grad():
        module.decoder.head[-1].bias.fill_(math.inf)
    with pytest.raises(FloatingPointError, match="training loss is"):
        module.training_step(field_batch(2, 16), 0)


def test_l1_loss_is_used_for_training() -> None:
    module = tiny(loss="l1", fitter=MetaSGD(num_latents=4, num_inner_steps=0))
    constant_output(module, 0.5)
    batch = field_batch(2, 16)
    expected = (batch[keys.SIGNAL] - 0.5).abs().mean()
    assert float(module.training_step(batch, 0)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        tiny(loss="huber")


def test_autodecoder_fitter_trains_table_rows() -> None:
    module = tiny(fitter=AutoDecoder(num_latents=4, test_steps=2), num_train_signals=5)
    batch = field_batch(2, 16)
    batch[keys.INDEX] = torch.tensor([1, 3])
    module.training_step(batch, 0).backward()
    grads = {n: p.grad for n, p in module.fitter.named_parameters() if p.grad is not None}
    assert grads
    for grad in grads.values():  # only the rows of the batch are touched
        touched = grad.flatten(1).abs().sum(1).nonzero().flatten().tolist()
        assert touched == [1, 3]


# --------------------------------------------------------------------------------------- figures
def test_figures_for_an_image_spec() -> None:
    figs = tiny(num_plot_samples=2).figures(field_batch(3, 16))
    assert set(figs) == {"reconstruction"} and isinstance(figs["reconstruction"], Figure)
    assert tiny(field=None).figures(field_batch(3, 16)) == {}


def test_lr_factor_warms_up_then_decays_along_a_cosine():
    from enf.training.task import lr_factor

    assert [lr_factor(s, warmup=4, total=None) for s in (0, 1, 3, 10)] == [0.25, 0.5, 1.0, 1.0]
    # cosine from 1 at the end of the warm-up to 0 at step `total`: 0.5 (1 + cos(pi p)), p = (s - w) / (T - w)
    for step, expected in [
        (4, 1.0),
        (8, 0.5 * (1 + math.cos(math.pi * 4 / 16))),
        (12, 0.5),
        (20, 0.0),
        (30, 0.0),
    ]:
        assert lr_factor(step, warmup=4, total=20) == pytest.approx(expected, abs=1e-12)
    assert lr_factor(0, warmup=0, total=10) == 1.0


def test_refinement_runs_at_test_time_not_in_validation() -> None:
    """``MetaSGD(num_refine_steps=...)``: ``evaluate`` and test steps encode with the refinement, validation
    steps without it; ``num_eval_coords`` points per test-time step, deterministically."""
    torch.manual_seed(0)
    fitter = MetaSGD(num_latents=4, num_inner_steps=2, num_refine_steps=15, refine_lr=0.05)
    module = tiny(fitter=fitter, num_eval_coords=8)
    batch = field_batch(2, 16, seed=3)
    coords, signal = module.unpack(batch)
    z = module.encode(batch, train=False)
    expect = fitter.encode(module.decoder, coords, signal, train=False, loss=module.loss_fn, subset_size=8)
    torch.testing.assert_close(z.context, expect.context, atol=0, rtol=0)
    torch.testing.assert_close(module.encode(batch, train=False).context, z.context, atol=0, rtol=0)
    unrefined = module.encode(batch, train=False, refine=False)
    mse = {
        name: float(((module.decoder(coords, latents) - signal) ** 2).mean())
        for name, latents in (("refined", z), ("unrefined", unrefined))
    }
    assert mse["refined"] < mse["unrefined"]
    module.validation_step(batch, 0)
    module.test_step(batch, 0)
    assert float(module._eval_rows["val"][0]["mse"].mean()) == pytest.approx(mse["unrefined"], rel=1e-5)
    assert float(module._eval_rows["test"][0]["mse"].mean()) == pytest.approx(mse["refined"], rel=1e-5)
    assert module.evaluate("test", loader=[batch])["mse"] == pytest.approx(mse["refined"], rel=1e-5)
