"""Tests of the Latents container and the initial latent."""

from __future__ import annotations

import pytest
import torch

from enf import Latents, geometry
from enf.latents import initial_latents

F64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_latents(name: str = "se2", batch_size: int = 2, num_latents: int = 5, context_dim: int = 3):
    geom = geometry.get(name)
    g = gen(0)
    return Latents(
        poses=geom.sample_poses(batch_size, num_latents, generator=g, dtype=F64),
        context=torch.randn(batch_size, num_latents, context_dim, generator=g, dtype=F64),
        window=torch.rand(batch_size, num_latents, 1, generator=g, dtype=F64) + 0.1,
    )


# ----------------------------------------------------------------------------------------- validation
def test_valid_latents_properties():
    z = random_latents()
    assert (z.batch_size, z.num_latents, z.context_dim) == (2, 5, 3)


@pytest.mark.parametrize(
    "poses,context,window,match",
    [
        ((5, 4), (2, 5, 3), (2, 5, 1), r"Latents.poses must be \[B, L, dim\].*\(5, 4\)"),
        ((2, 5, 4), (2, 5, 3, 1), (2, 5, 1), r"Latents.context must be \[B, L, dim\].*\(2, 5, 3, 1\)"),
        ((2, 5, 4), (2, 5, 3), (2, 5), r"Latents.window must be \[B, L, dim\].*\(2, 5\)"),
        ((2, 5, 4), (2, 6, 3), (2, 5, 1), r"must agree.*\(2, 6, 3\)"),
        ((2, 5, 4), (1, 5, 3), (2, 5, 1), r"must agree.*\(1, 5, 3\)"),
        ((2, 5, 4), (2, 5, 3), (2, 4, 1), r"must agree.*\(2, 4, 1\)"),
        ((2, 5, 4), (2, 5, 3), (2, 5, 2), r"must agree.*\(2, 5, 2\)"),
    ],
)
def test_shape_validation(poses, context, window, match):
    with pytest.raises(ValueError, match=match):
        Latents(poses=torch.zeros(poses), context=torch.zeros(context), window=torch.ones(window))


def test_type_validation():
    with pytest.raises(TypeError, match="Latents.context must be a torch.Tensor, got list"):
        Latents(poses=torch.zeros(1, 2, 2), context=[[0.0]], window=torch.ones(1, 2, 1))


def test_check_finite():
    z = random_latents()
    z.check_finite()
    z.context[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="context contains NaN"):
        z.check_finite()


# ------------------------------------------------------------------------------------------- transform
@pytest.mark.parametrize("name", ["translation2d", "se2", "torus2d", "sphere", "ball", "se3"])
def test_transform_acts_on_poses_only(name):
    geom = geometry.get(name)
    z = random_latents(name)
    g = geom.sample_group(2, generator=gen(1), dtype=F64)
    moved = z.transform(geom, g)
    assert torch.equal(moved.poses, geom.act_poses(g, z.poses))
    assert (moved.poses - z.poses).abs().max() > 1e-3
    assert torch.equal(moved.context, z.context)
    assert torch.equal(moved.window, z.window)
    # group action: transforming by g then g^-1 gives the original poses back (modulo the period)
    back = moved.transform(geom, geom.inverse(g)).poses
    diff = back - z.poses
    if geom.periodic:
        diff = diff - 2.0 * torch.round(diff / 2.0)
    assert diff.abs().max() < 1e-12


# ------------------------------------------------------------------------------- expand / index / cat
def test_expand_makes_independent_copies():
    z = random_latents(batch_size=1)
    big = z.expand(3)
    assert big.batch_size == 3
    for i in range(3):
        assert torch.equal(big.poses[i], z.poses[0])
        assert torch.equal(big.context[i], z.context[0])
        assert torch.equal(big.window[i], z.window[0])
    big.context[1] += 1.0
    big.poses[2, 0] = 7.0
    assert torch.equal(big.context[0], z.context[0]) and torch.equal(big.context[2], z.context[0])
    assert torch.equal(big.poses[1], z.poses[0])
    assert (z.poses != 7.0).all()  # the source is untouched
    with pytest.raises(ValueError, match="batch of 1, got batch size 2"):
        random_latents(batch_size=2).expand(3)


def test_getitem_cat_detach_to():
    z = random_latents(batch_size=3)
    one = z[1]
    assert one.batch_size == 1 and torch.equal(one.poses[0], z.poses[1])
    pick = z[torch.tensor([2, 0])]
    assert torch.equal(pick.context, z.context[[2, 0]])
    joined = Latents.cat([z[2], z[0], z[1]])
    assert torch.equal(joined.window, z.window[[2, 0, 1]])
    z32 = z.to(torch.float32)
    assert z32.poses.dtype == torch.float32 and torch.allclose(z32.context.double(), z.context, atol=1e-6)
    leaf = z.context.clone().requires_grad_(True)
    assert not Latents(z.poses, leaf * 2.0, z.window).detach().context.requires_grad


def test_getitem_negative_int_selects_from_the_end():
    """BUG (enf/latents.py, Latents.__getitem__): an int index becomes ``slice(i, i + 1)``, so ``z[-1]`` is
    ``slice(-1, 0)``: an empty batch instead of the last sample (tensors give ``t[-1]`` = last entry)."""
    z = random_latents(batch_size=3)
    last = z[-1]
    assert last.batch_size == 1
    assert torch.equal(last.poses[0], z.poses[2])
    assert torch.equal(z[-3].context[0], z.context[0])


# -------------------------------------------------------------------------------------- initial latent
@pytest.mark.parametrize("name", geometry.names())
def test_initial_latents_values(name):
    geom = geometry.get(name)
    z = initial_latents(geom, num_latents=12, context_dim=4, dtype=F64)
    assert z.batch_size == 1 and z.num_latents == 12 and z.context_dim == 4
    assert torch.equal(z.poses[0], geom.init_poses(12, dtype=F64))
    assert torch.equal(z.window, torch.full((1, 12, 1), geom.default_window(12), dtype=F64))
    assert torch.equal(z.context, torch.ones(1, 12, 4, dtype=F64))
    # the initial poses are spread out: distinct positions
    pos = z.poses[0, :, : geom.space_dim]
    assert torch.cdist(pos, pos).add(torch.eye(12, dtype=F64)).min() > 1e-3


def test_initial_latents_options():
    geom = geometry.get("se2")
    z = initial_latents(geom, num_latents=9, context_dim=2, window=0.3, context_init=0.5)
    assert z.poses.dtype == torch.float32
    assert torch.equal(z.window, torch.full((1, 9, 1), 0.3))
    assert torch.equal(z.context, torch.full((1, 9, 2), 0.5))
    # the default window of the planar geometries: domain size / latents per axis
    assert initial_latents(geom, num_latents=16, context_dim=1).window[0, 0, 0].item() == pytest.approx(0.5)
    # a seeded generator decides the orientations, the default one is fixed
    a = initial_latents(geom, num_latents=9, context_dim=2, generator=gen(5))
    b = initial_latents(geom, num_latents=9, context_dim=2, generator=gen(5))
    c = initial_latents(geom, num_latents=9, context_dim=2)
    assert torch.equal(a.poses, b.poses) and torch.equal(c.poses[0], geom.init_poses(9))
    for bad in (dict(num_latents=0, context_dim=2), dict(num_latents=4, context_dim=0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            initial_latents(geom, **bad)
    for window in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="window must be a positive number"):
            initial_latents(geom, num_latents=4, context_dim=2, window=window)
