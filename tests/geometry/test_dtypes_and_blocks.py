"""Samplers follow the default dtype, the actions refuse mixed dtypes, and pose blocks are rotation-stable."""

from __future__ import annotations

import pytest
import torch
from _common import F64

from enf import geometry

ALL = geometry.names()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dtypes(geom, **kw) -> set[torch.dtype]:
    g = geom.sample_group(3, generator=gen(1), **kw)
    out = {t.dtype for t in (g.rotation, g.translation) if t is not None}
    out |= {geom.sample_coords(2, 5, generator=gen(2), **kw).dtype}
    out |= {geom.sample_poses(2, 4, generator=gen(3), **kw).dtype}
    out |= {geom.init_poses(4, **kw).dtype}
    e = geom.identity(2, **kw)
    return out | {t.dtype for t in (e.rotation, e.translation) if t is not None}


@pytest.mark.parametrize("name", ALL)
def test_samplers_default_to_the_default_dtype(name):
    geom = geometry.get(name)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(F64)
        assert _dtypes(geom) == {F64}
        torch.set_default_dtype(torch.float32)
        assert _dtypes(geom) == {torch.float32}
    finally:
        torch.set_default_dtype(previous)
    assert _dtypes(geom, dtype=F64) == {F64}  # an explicit dtype wins
    # the float64 draw is the float32 draw in more precision (same stream, cast at the end)
    a = geom.sample_group(3, generator=gen(4), dtype=F64)
    b = geom.sample_group(3, generator=gen(4), dtype=torch.float32)
    ref_a = a.rotation if a.rotation is not None else a.translation
    ref_b = b.rotation if b.rotation is not None else b.translation
    torch.testing.assert_close(ref_a.float(), ref_b, atol=0, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_actions_refuse_mixed_dtypes(name):
    geom = geometry.get(name)
    g32 = geom.sample_group(2, generator=gen(1), dtype=torch.float32)
    x = geom.sample_coords(2, 5, generator=gen(2), dtype=F64)
    p = geom.sample_poses(2, 3, generator=gen(3), dtype=F64)
    for act, value in ((geom.act_coords, x), (geom.act_poses, p), (geom.act_pose_velocity, p)):
        with pytest.raises(TypeError, match=r"torch\.float32.*torch\.float64.*sample_group\(\.\.\., dtype="):
            act(g32, value)
        # the fix named in the message works and matches acting in float32 up to precision
        moved = act(g32.to(dtype=F64), value)
        torch.testing.assert_close(moved.float(), act(g32, value.float()), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- blocks
EXPECTED_BLOCKS = {
    "translation2d": (2,),
    "translation3d": (3,),
    "absolute2d": (2,),
    "absolute_sphere": (3,),
    "isotropic2d": (2,),
    "torus2d": (2,),
    "se2": (2, 2),
    "sphere": (3, 3),
    "sphere_axial": (3,),
    "ball": (3, 3, 3),
    "se3": (3, 3, 3),
}


def _block_norms(v: torch.Tensor, blocks: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([c.norm(dim=-1) for c in v.split(list(blocks), dim=-1)], dim=-1)


@pytest.mark.parametrize("name", ALL)
def test_pose_blocks_have_invariant_norms_under_the_action(name):
    geom = geometry.get(name)
    blocks = geom.pose_blocks
    assert blocks == EXPECTED_BLOCKS[name] and sum(blocks) == geom.pose_dim
    assert blocks[0] == geom.position_dim
    v = torch.randn(4, 6, geom.pose_dim, generator=gen(5), dtype=F64)  # e.g. a pose gradient
    for seed in (6, 7, 8):
        g = geom.sample_group(4, generator=gen(seed), dtype=F64)
        moved = geom.act_pose_velocity(g, v)
        torch.testing.assert_close(_block_norms(moved, blocks), _block_norms(v, blocks), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["se2", "sphere", "ball", "se3", "isotropic2d"])
def test_finer_blocks_are_not_invariant(name):
    """Negative control: per-coordinate 'blocks' change under rotations (what plain Adam assumes)."""
    geom = geometry.get(name)
    v = torch.randn(4, 6, geom.pose_dim, generator=gen(5), dtype=F64)
    g = geom.sample_group(4, generator=gen(6), dtype=F64)
    singles = (1,) * geom.pose_dim
    moved = geom.act_pose_velocity(g, v)
    assert (_block_norms(moved, singles) - _block_norms(v, singles)).abs().max() > 1e-2
