"""Decoder behaviour users rely on: batch consistency, N != L, chunking, gradients, input validation."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _decoder_utils import (
    CONTEXT_DIM,
    SMALL,
    VALUE_HIDDEN,
    gen,
    make_model,
    random_coords,
    random_latents,
    reference_decode,
)

from enf import EquivariantNeuralField, Latents, geometry
from enf.geometry import SE2
from enf.latents import initial_latents


# ---------------------------------------------------------------------------------------- batching
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "se2", "ball"])
def test_batch_consistency(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, value_hidden_dim=value_hidden_dim)
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


@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_num_coords_differs_from_num_latents(name, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=k_nearest, value_hidden_dim=value_hidden_dim)
    z = random_latents(geom, 2, 5, seed=36)
    x = random_coords(geom, 2, 37, seed=37)
    y = model(x, z)
    assert y.shape == (2, 37, 3)
    torch.testing.assert_close(y, reference_decode(model, x, z, k_nearest=k_nearest), atol=1e-12, rtol=0)
    # one coordinate at a time gives the same values (no mixing along N)
    for i in (0, 17, 36):
        torch.testing.assert_close(model(x[:, i : i + 1], z), y[:, i : i + 1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("k_nearest", [None, 4])
@pytest.mark.parametrize("name", ["translation2d", "se2"])
def test_chunked_decoding_equals_unchunked(name, k_nearest):
    geom = geometry.get(name)
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
        ("translation2d", False, 4),
        ("translation2d", True, None),
        ("se2", False, None),
        ("se2", True, None),
        ("se2", False, 4),
        ("se2", True, 4),
    ],
)
@pytest.mark.parametrize("value_hidden_dim", VALUE_HIDDEN)
def test_every_parameter_gets_a_gradient(name, channel_modulation, k_nearest, value_hidden_dim):
    geom = geometry.get(name)
    model = make_model(
        geom, k_nearest=k_nearest, channel_modulation=channel_modulation, value_hidden_dim=value_hidden_dim
    )
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


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_non_positive_chunk_size_raises_value_error(chunk_size):
    """BUG (enf/nn/decoder.py, EquivariantNeuralField.forward): ``chunk_size <= 0`` reaches ``Tensor.split``
    and surfaces as torch's ``RuntimeError`` instead of a ``ValueError`` naming ``chunk_size``
    (DESIGN.md section 2: bad input raises ValueError/TypeError naming the offending value)."""
    geom = geometry.get("se2")
    model = make_model(geom)
    z = random_latents(geom, 1, 6, seed=54)
    x = random_coords(geom, 1, 10, seed=55)
    with pytest.raises(ValueError, match="chunk_size"):
        model(x, z, chunk_size=chunk_size)


def test_registry_name_and_instance_give_the_same_model():
    torch.manual_seed(0)
    by_name = EquivariantNeuralField(geometry="se2", num_out=2, **SMALL).double()
    torch.manual_seed(0)
    by_instance = EquivariantNeuralField(geometry=SE2(), num_out=2, **SMALL).double()
    z = initial_latents(by_name.geometry, num_latents=9, context_dim=CONTEXT_DIM, dtype=F64).expand(2)
    x = random_coords(by_name.geometry, 2, 11, seed=47)
    assert torch.equal(by_name(x, z), by_instance(x, z))
