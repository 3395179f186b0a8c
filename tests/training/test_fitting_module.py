"""FieldFittingModule without a Trainer: batch unpacking, evaluate(), optimiser and gradients."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from enf.data import pixel_coords
from enf.training import FieldFittingModule

TINY = {
    "num_latents": 4, "context_dim": 8, "hidden_dim": 16, "num_heads": 2, "num_query_frequencies": 4,
    "num_value_frequencies": 4, "num_inner_steps": 2,
}  # fmt: skip


def tiny(**kwargs) -> FieldFittingModule:
    return FieldFittingModule(**{**TINY, **kwargs})


def constant_output(module: FieldFittingModule, value: float) -> None:
    """Make the decoder output ``value`` everywhere (zero last layer, constant bias)."""
    last = module.decoder.head[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def image_batch(
    b: int, h: int, w: int, c: int = 1, *, seed: int = 0, start: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(b, h, w, c, generator=gen), "index": torch.arange(start, start + b)}


# --------------------------------------------------------------------------------------------- unpack
def test_unpack_image_uses_the_pixel_convention() -> None:
    module = tiny(num_out=2)
    batch = image_batch(2, 3, 4, 2)
    coords, signal = module.unpack(batch)
    assert coords.shape == (2, 12, 2) and signal.shape == (2, 12, 2)
    torch.testing.assert_close(coords[0], pixel_coords(3, 4), rtol=0, atol=0)
    torch.testing.assert_close(coords[1], coords[0], rtol=0, atol=0)
    xs, ys = torch.linspace(-1, 1, 4), torch.linspace(1, -1, 3)
    for r in range(3):
        for c in range(4):
            # pixel (r, c) is row-major entry r * W + c, at (x_c, y_r) with y pointing up
            torch.testing.assert_close(coords[1, r * 4 + c], torch.stack([xs[c], ys[r]]))
            torch.testing.assert_close(signal[:, r * 4 + c], batch["image"][:, r, c], rtol=0, atol=0)


def test_unpack_coordinate_batch_passes_through() -> None:
    module = tiny(num_out=3)
    coords, signal = torch.rand(2, 7, 2), torch.rand(2, 7, 3)
    out_coords, out_signal = module.unpack({"coords": coords, "signal": signal, "index": torch.arange(2)})
    assert out_coords is coords and out_signal is signal


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_unpack_rejects_non_finite_signals(bad: float) -> None:
    module = tiny()
    batch = image_batch(2, 4, 4)
    batch["image"][1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        module.unpack(batch)
    coords, signal = torch.rand(1, 5, 2), torch.rand(1, 5, 1)
    signal[0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        module.unpack({"coords": coords, "signal": signal})


def test_unpack_rejects_wrong_channel_count() -> None:
    with pytest.raises(ValueError, match="3 channels.*num_out=1"):
        tiny(num_out=1).unpack(image_batch(2, 4, 4, 3))
    with pytest.raises(ValueError, match="1 channels.*num_out=3"):
        tiny(num_out=3).unpack(image_batch(2, 4, 4, 1))


def test_unpack_rejects_images_for_3d_geometries_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="translation3d.*coord_dim 3"):
        tiny(geometry="translation3d").unpack(image_batch(2, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        tiny().unpack({"image": torch.rand(4, 4, 1)})


# ------------------------------------------------------------------------------------------- evaluate
def test_evaluate_psnr_matches_mse_for_one_sample() -> None:
    module = tiny().eval()
    constant_output(module, 0.3)  # predictions in [0, 1]: PSNR is exactly 10 log10(1 / MSE)
    batch = image_batch(1, 5, 6)
    result = module.evaluate([batch])
    expected_mse = float((batch["image"] - 0.3).square().mean())
    assert result["num_samples"] == 1
    assert result["mse"] == pytest.approx(expected_mse, rel=1e-5)
    assert result["psnr"] == pytest.approx(10 * math.log10(1 / expected_mse), rel=1e-5)
    assert result["equivariance_error"] < 1e-12  # a constant field is invariant


def test_evaluate_averages_per_sample_and_stops_at_max_samples() -> None:
    module = tiny().eval()
    constant_output(module, 0.6)
    batches = [image_batch(2, 4, 5, seed=1), image_batch(1, 4, 5, seed=2, start=2)]
    images = torch.cat([b["image"] for b in batches])
    per_sample = (images - 0.6).square().flatten(1).mean(1)
    result = module.evaluate(batches)
    assert result["num_samples"] == 3
    assert result["mse"] == pytest.approx(float(per_sample.mean()), rel=1e-5)
    # mean of per-sample PSNRs, not PSNR of the mean MSE
    assert result["psnr"] == pytest.approx(float((10 * torch.log10(1 / per_sample)).mean()), rel=1e-5)
    first = module.evaluate(batches, max_samples=2)
    assert first["num_samples"] == 2
    assert first["mse"] == pytest.approx(float(per_sample[:2].mean()), rel=1e-5)
    with pytest.raises(ValueError, match="empty"):
        module.evaluate([])


def test_evaluate_reconstruction_matches_an_independent_decode() -> None:
    """The real (untrained) model: evaluate() agrees with fit_latents + decoder, clamping only inside PSNR."""
    module = tiny().eval()
    batch = image_batch(2, 5, 5, seed=3)
    result = module.evaluate([batch])
    coords, signal = module.unpack(batch)
    pred = module.decoder(coords, module.fit_latents(batch, train=False)).detach()
    mse = (pred - signal).square().flatten(1).mean(1)
    mse_clamped = (pred.clamp(0, 1) - signal).square().flatten(1).mean(1)
    assert result["mse"] == pytest.approx(float(mse.mean()), rel=1e-4)
    assert result["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse_clamped)).mean()), rel=1e-4)
    assert module.decoder.head[-1].weight.dtype == torch.float32  # the float64 check left the model float32


@pytest.mark.parametrize(
    ("geometry", "equivariant"), [("translation2d", True), ("se2", True), ("absolute2d", False)]
)
def test_evaluate_equivariance_error(geometry: str, equivariant: bool) -> None:
    module = tiny(geometry=geometry).eval()
    error = module.evaluate([image_batch(2, 5, 5)])["equivariance_error"]
    if equivariant:
        assert error < 1e-9
    else:  # negative control
        assert error > 1e-3


# ------------------------------------------------------------------------------------------ optimiser
def optimised_params(module: FieldFittingModule) -> list[torch.Tensor]:
    out = module.configure_optimizers()
    opt = out["optimizer"] if isinstance(out, dict) else out
    return [p for group in opt.param_groups for p in group["params"]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"geometry": "se2", "lr_window": 0.1},
        {"learn_init": False},
        {"fitting": "autodecoder", "num_train_signals": 5},
    ],
    ids=["meta_sgd", "se2_window", "fixed_init", "autodecoder"],
)
def test_configure_optimizers_covers_every_trainable_parameter(kwargs: dict) -> None:
    module = tiny(**kwargs)
    params = optimised_params(module)
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert len(params) == len({id(p) for p in params})  # no duplicates
    assert {id(p) for p in params} == {id(p) for p in trainable}
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    assert any(n.startswith("decoder.") for n in names)
    if kwargs.get("fitting") == "autodecoder":
        assert any(n.startswith("table.") for n in names)
    else:
        assert ("meta.init_poses" in names) == kwargs.get("learn_init", True)
        assert ("meta.lr_window" in names) == ("lr_window" in kwargs)  # lr_window 0: window frozen


def test_warmup_schedule_values() -> None:
    module = tiny(lr=1e-2, lr_warmup_steps=4, weight_decay=0.1)
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step"
    assert opt.param_groups[0]["weight_decay"] == 0.1
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])
    assert not isinstance(tiny().configure_optimizers(), dict)  # no warm-up: a bare optimiser


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"geometry": "se2"}, {"fitting": "autodecoder", "num_train_signals": 3}],
    ids=["meta_sgd", "se2", "autodecoder"],
)
def test_training_step_gives_every_used_parameter_a_gradient(kwargs: dict) -> None:
    module = tiny(**kwargs)
    batch = image_batch(2, 5, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = module.training_step(batch, 0)
    coords, signal = module.unpack(batch)
    assert float(loss) > 0 and math.isfinite(float(loss))
    loss.backward()
    no_grad = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if p.grad.abs().sum() == 0:
            no_grad.append(name)
    assert no_grad == []
    # translation2d poses have no orientation: that Meta-SGD step size is frozen, not dead weight
    geom = module.geometry
    if module.meta is not None:
        assert module.meta.lr_orientation.requires_grad == (geom.pose_dim > geom.position_dim)
    if module.table is not None:  # only the rows of the batch's signals get a gradient
        trainable = [p for p in module.table.parameters() if p.requires_grad]
        assert len(trainable) == 2  # poses and context (the window is frozen by default)
        for p in trainable:
            rows = p.grad.flatten(1).abs().sum(1)
            assert (rows[[0, 1]] > 0).all() and rows[2] == 0
