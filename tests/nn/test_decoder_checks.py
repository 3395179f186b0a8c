"""Input checks of ``EquivariantNeuralField.forward``: each bad input raises a clear error naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _common import F64
from _decoder_utils import make_model, random_coords, random_latents

from enf import Latents, geometry


@pytest.fixture
def case():
    geom = geometry.get("se2")
    model = make_model(geom, k_nearest=3)
    return model, random_coords(geom, 2, 10, seed=90), random_latents(geom, 2, 6, seed=91)


def _with(z: Latents, **parts) -> Latents:
    fields = dict(poses=z.poses, context=z.context, window=z.window) | parts
    return Latents(**fields)


@pytest.mark.parametrize("part", ["poses", "context", "window"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_latent_part_is_named(case, part, bad):
    """A NaN in one latent would be hidden by the k-nearest selection if that latent is never selected."""
    model, x, z = case
    value = getattr(z, part).clone()
    value[1, 4, 0] = bad
    with pytest.raises(
        ValueError, match=rf"latents\.{part} contains NaN or inf \(1 entries, first at index \[1, 4, 0\]\)"
    ):
        model(x, _with(z, **{part: value}))
    assert torch.isfinite(model(x, z)).all()  # the clean input decodes


def test_non_finite_coords(case):
    model, x, z = case
    x = x.clone()
    x[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"coords contains NaN or inf"):
        model(x, z)


@pytest.mark.parametrize("width", [0.0, -0.5])
def test_non_positive_window(case, width):
    model, x, z = case
    window = z.window.clone()
    window[0, 2, 0] = width
    with pytest.raises(ValueError, match=rf"latents\.window must be positive, got min {width:.3g}"):
        model(x, _with(z, window=window))


def test_zero_latents(case):
    model, x, z = case
    empty = Latents(poses=z.poses[:, :0], context=z.context[:, :0], window=z.window[:, :0])
    with pytest.raises(ValueError, match=r"latents have no points \(L = 0"):
        model(x, empty)


def test_zero_coords(case):
    model, x, z = case
    with pytest.raises(ValueError, match=r"coords has no points \(N = 0"):
        model(x[:, :0], z)


def test_numpy_coords(case):
    model, x, z = case
    with pytest.raises(
        TypeError, match=r"torch\.Tensor, got numpy\.ndarray; pass torch tensors.*torch\.from_numpy"
    ):
        model(x.numpy(), z)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(x.tolist(), z)
    # numpy latents cannot even be built (enf.Latents rejects them)
    with pytest.raises(TypeError, match="torch.Tensor"):
        Latents(poses=z.poses.numpy(), context=z.context, window=z.window)
    assert isinstance(x.numpy(), np.ndarray)


@pytest.mark.parametrize("which", ["coords", "poses", "context", "window", "all inputs"])
def test_dtype_mismatch_names_both_dtypes(case, which):
    model, x, z = case  # float64 model
    if which == "coords":
        x, name = x.float(), "coords"
    elif which == "all inputs":
        x, z, name = x.float(), z.to(torch.float32), "coords"
    else:
        z, name = _with(z, **{which: getattr(z, which).float()}), f"latents.{which}"
    pattern = (
        rf"dtype mismatch: {name} is torch\.float32 but the model parameters are torch\.float64.*\.double\(\)"
    )
    with pytest.raises(TypeError, match=pattern):
        model(x, z)


def test_float32_model_with_float64_inputs(case):
    model, x, z = case
    model = model.float()
    with pytest.raises(
        TypeError, match=r"coords is torch\.float64 but the model parameters are torch\.float32.*\.to\("
    ):
        model(x, z)
    y = model(x.float(), z.to(torch.float32))  # the suggested fix works
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert (y.double() - make_model(geometry.get("se2"), k_nearest=3)(x, z)).abs().max() < 1e-4


def test_hidden_nan_in_a_never_selected_latent_is_reported():
    """The reported case: a far latent with NaN context is outside every k-nearest set."""
    geom = geometry.get("translation2d")
    model = make_model(geom, k_nearest=2)
    z = random_latents(geom, 1, 6, seed=92)
    poses, context = z.poses.clone(), z.context.clone()
    poses[0, 5] = torch.tensor([50.0, 50.0], dtype=F64)
    context[0, 5, 0] = float("nan")
    x = random_coords(geom, 1, 8, seed=93)
    with torch.no_grad():
        sel = model.attention._select(x, poses)
    assert sel is not None and not (sel[0] == 5).any()  # never selected: the output would look clean
    with pytest.raises(ValueError, match=r"latents\.context contains NaN"):
        model(x, _with(z, poses=poses, context=context))
