"""Edits of latent clouds: the full-cloud guarantee (decoded edit == transformed image, float64), untouched
latents stay bit for bit, planar motions against closed forms, refusals with clear errors."""

from __future__ import annotations

import math

import pytest
import torch

import enf
from enf.data.grid import pixel_coords
from enf.editing import (
    copy_context,
    delete,
    duplicate,
    is_symmetry,
    paste,
    planar_motion,
    rotate,
    scale,
    select_box,
    select_indices,
    select_radius,
    selection_mask,
    swap,
    transform,
    translate,
)
from enf.geometry import GroupElement


def cloud(geometry: str, *, batch: int = 2, num: int = 9, context_dim: int = 8, seed: int = 0) -> enf.Latents:
    gen = torch.Generator().manual_seed(seed)
    geom = enf.geometry.get(geometry)
    poses = geom.init_poses(num, dtype=torch.float64).expand(batch, -1, -1)
    poses = poses + 0.05 * torch.randn(batch, num, geom.pose_dim, generator=gen, dtype=torch.float64)
    context = torch.randn(batch, num, context_dim, generator=gen, dtype=torch.float64)
    window = 0.2 + 0.1 * torch.rand(batch, num, 1, generator=gen, dtype=torch.float64)
    return enf.Latents(poses=poses, context=context, window=window)


def decoder(geometry: str, seed: int = 0) -> enf.EquivariantNeuralField:
    torch.manual_seed(seed)
    return (
        enf.EquivariantNeuralField(geometry=geometry, num_out=2, context_dim=8, hidden_dim=32).double().eval()
    )


def edit_error(geometry: str, g_of_geom, *, num_elements: int = 6) -> float:
    """Max over group elements of |f(x; transform(z, g)) - f(g^-1 x; z)| on a 20x20 pixel grid."""
    geom, model, z = enf.geometry.get(geometry), decoder(geometry), cloud(geometry)
    x = pixel_coords(20, 20, dtype=torch.float64).expand(z.batch_size, -1, -1)
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for _ in range(num_elements):
            g = g_of_geom(geom, gen)
            edited = model(x, transform(z, geom, g))
            moved = model(geom.act_coords(geom.inverse(g), x), z)
            worst = max(worst, float((edited - moved).abs().max()))
    return worst


def sampled(geom, gen):
    return geom.sample_group(2, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("geometry", ["translation2d", "se2"])
def test_moving_every_latent_moves_the_image_exactly(geometry: str) -> None:
    assert edit_error(geometry, sampled) <= 1e-9


def test_se2_rotation_about_a_centre_moves_the_image_exactly() -> None:
    def motion(geom, gen):
        angle = float(torch.rand(1, generator=gen)) * 2 * math.pi
        return planar_motion(angle=angle, center=(0.3, -0.2), translation=(0.1, 0.05), batch_size=2,
                             dtype=torch.float64)  # fmt: skip

    assert edit_error("se2", motion) <= 1e-9


@pytest.mark.parametrize(
    "geometry, motion",
    [
        ("absolute2d", sampled),
        ("translation2d", lambda geom, gen: planar_motion(angle=0.7, batch_size=2, dtype=torch.float64)),
    ],  # fmt: skip
    ids=["absolute2d", "rotating-translation2d"],
)
def test_negative_controls_do_not_move_the_image_exactly(geometry: str, motion) -> None:
    assert edit_error(geometry, motion) > 1e-3


def test_is_symmetry_says_which_motions_move_the_field_exactly() -> None:
    rot = planar_motion(angle=0.4, batch_size=1, dtype=torch.float64)
    shift = planar_motion(translation=(0.2, 0.0), batch_size=1, dtype=torch.float64)
    flip = GroupElement(
        rotation=torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))[None], translation=None
    )
    get = enf.geometry.get
    assert is_symmetry(get("se2"), rot) and is_symmetry(get("se2"), shift)
    assert not is_symmetry(get("translation2d"), rot) and is_symmetry(get("translation2d"), shift)
    assert is_symmetry(get("isotropic2d"), flip) and not is_symmetry(get("se2"), flip)
    assert not is_symmetry(get("absolute2d"), shift)
    assert not is_symmetry(get("sphere"), GroupElement(rotation=None, translation=torch.ones(1, 3)))


# ---------------------------------------------------------------------------------------- untouched latents
EDITS = {
    "transform": lambda z, geom, sel: transform(
        z, geom, geom.sample_group(2, dtype=torch.float64), select=sel
    ),
    "translate": lambda z, geom, sel: translate(z, geom, [0.3, -0.1], select=sel),
    "rotate": lambda z, geom, sel: rotate(z, geom, 1.1, select=sel),
    "scale": lambda z, geom, sel: scale(z, geom, 1.7, select=sel),
    "copy_context": lambda z, geom, sel: copy_context(z, source=0, select=sel),
}


@pytest.mark.parametrize("op", sorted(EDITS))
@pytest.mark.parametrize("geometry", ["translation2d", "se2", "torus2d"])
def test_edits_change_only_the_selected_latents(op: str, geometry: str) -> None:
    geom, z = enf.geometry.get(geometry), cloud(geometry)
    before = z.clone()
    sel = torch.zeros(2, z.num_latents, dtype=torch.bool)
    sel[0, [1, 4]] = True
    sel[1, [2, 3, 7]] = True
    out = EDITS[op](z, geom, sel)
    for name in ("poses", "context", "window"):
        new, old = getattr(out, name), getattr(z, name)
        assert torch.equal(new[~sel], old[~sel]), f"{op} changed unselected {name}"
        assert torch.equal(old, getattr(before, name)), f"{op} changed its input's {name}"
    changed = (out.poses != z.poses).any(-1) | (out.context != z.context).any(-1)
    assert changed[sel].all(), f"{op} left selected latents unchanged"


def test_rotation_by_quarter_turns_matches_the_closed_form() -> None:
    geom = enf.geometry.get("se2")
    z = enf.Latents(
        poses=torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 2.0]]], dtype=torch.float64),
        context=torch.zeros(1, 2, 3, dtype=torch.float64),
        window=torch.ones(1, 2, 1, dtype=torch.float64),
    )
    out = rotate(z, geom, math.pi / 2, center=[0.0, 0.0], select=[0])
    torch.testing.assert_close(out.poses[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
                               atol=1e-15, rtol=0)  # fmt: skip
    assert torch.equal(out.poses[0, 1], z.poses[0, 1])
    back = z
    for _ in range(4):
        back = rotate(back, geom, math.pi / 2, center=[0.2, -0.3])
    torch.testing.assert_close(back.poses, z.poses, atol=1e-14, rtol=0)


def test_rotate_defaults_to_the_selection_centroid_and_scale_widens_windows() -> None:
    geom = enf.geometry.get("translation2d")
    z = cloud("translation2d", batch=1)
    sel = [0, 1, 2]
    centroid = z.poses[0, sel].mean(0)
    out = rotate(z, geom, 0.9, select=sel)
    torch.testing.assert_close(out.poses[0, sel].mean(0), centroid, atol=1e-15, rtol=0)
    grown = scale(z, geom, 2.0, select=sel)
    torch.testing.assert_close(
        grown.poses[0, sel] - centroid, 2.0 * (z.poses[0, sel] - centroid), atol=1e-15, rtol=0
    )
    torch.testing.assert_close(grown.window[0, sel], 2.0 * z.window[0, sel], atol=0, rtol=0)


def test_torus_translation_wraps_into_the_domain() -> None:
    geom = enf.geometry.get("torus2d")
    z = cloud("torus2d", batch=1)
    out = translate(z, geom, [1.5, -1.25])
    assert (out.poses >= -1).all() and (out.poses < 1).all()
    delta = geom.relative_position(z.poses, out.poses)
    torch.testing.assert_close(
        delta, torch.tensor([-0.5, 0.75], dtype=torch.float64).expand_as(delta), atol=1e-12, rtol=0
    )


# ---------------------------------------------------------------------------------------- selections
def test_radius_and_box_selections_match_brute_force() -> None:
    geom, z = enf.geometry.get("se2"), cloud("se2", num=25)
    q = z.poses[..., :2]
    dist = (q - torch.tensor([0.1, -0.2], dtype=torch.float64)).norm(dim=-1)
    assert torch.equal(select_radius(z, geom, center=[0.1, -0.2], radius=0.5), dist <= 0.5)
    box = select_box(z, geom, low=[-0.5, -1.0], high=[0.2, 0.3])
    assert torch.equal(
        box, (q[..., 0] >= -0.5) & (q[..., 0] <= 0.2) & (q[..., 1] >= -1.0) & (q[..., 1] <= 0.3)
    )
    assert 0 < int(box.sum()) < box.numel()


def test_radius_selection_wraps_on_the_torus() -> None:
    geom = enf.geometry.get("torus2d")
    z = enf.Latents(poses=torch.tensor([[[0.95, 0.0], [-0.95, 0.0], [0.0, 0.0]]]), context=torch.zeros(1, 3, 2),
                    window=torch.ones(1, 3, 1))  # fmt: skip
    assert select_radius(z, geom, center=[-0.98, 0.0], radius=0.2).tolist() == [[True, True, False]]


def test_selection_errors_name_the_problem() -> None:
    z = cloud("se2", num=4)
    with pytest.raises(IndexError, match="latent index 7 out of range for 4"):
        select_indices(z, [0, 7])
    with pytest.raises(ValueError, match=r"\[L\] = \[4\]"):
        selection_mask(z, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="radius"):
        select_radius(z, enf.geometry.get("se2"), center=[0, 0], radius=-1.0)
    with pytest.raises(ValueError, match="low <= high"):
        select_box(z, enf.geometry.get("se2"), low=[0.5, 0], high=[0, 1])


# ---------------------------------------------------------------------------------------- structural edits
def test_delete_duplicate_paste_and_swap_move_the_right_latents() -> None:
    geom = enf.geometry.get("translation2d")
    a, b = cloud("translation2d", batch=1, seed=1), cloud("translation2d", batch=1, seed=2)
    kept = delete(a, select=[0, 3])
    assert torch.equal(kept.context[0], a.context[0, [1, 2, 4, 5, 6, 7, 8]])
    dup = duplicate(a, geom, select=[2], g=planar_motion(translation=(0.1, 0.0), dtype=torch.float64))
    assert dup.num_latents == 10 and torch.equal(dup.context[0, -1], a.context[0, 2])
    torch.testing.assert_close(
        dup.poses[0, -1], a.poses[0, 2] + torch.tensor([0.1, 0.0], dtype=torch.float64)
    )
    pasted = paste(a, b, geom, select=[5, 6])
    assert torch.equal(pasted.context[0, -2:], b.context[0, [5, 6]])
    a2, b2 = swap(a, b, select_a=[0], select_b=[1, 2])
    assert (a2.num_latents, b2.num_latents) == (10, 8)
    assert torch.equal(a2.context[0, -2:], b.context[0, [1, 2]]) and torch.equal(
        b2.context[0, -1], a.context[0, 0]
    )
    moved = copy_context(a, source=4, select=[0])
    assert torch.equal(moved.context[0, 0], a.context[0, 4]) and torch.equal(moved.poses, a.poses)


def test_invalid_edits_are_refused_with_clear_errors() -> None:
    geom, z = enf.geometry.get("se2"), cloud("se2")
    with pytest.raises(ValueError, match="every latent"):
        delete(z, select=list(range(z.num_latents)))
    with pytest.raises(ValueError, match="explicit selection"):
        delete(z, select=None)
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale factor"):
            scale(z, geom, factor)
    bad = GroupElement(rotation=None, translation=torch.full((2, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite poses"):
        transform(z, geom, bad)
    zero_window = z.replace(window=torch.cat([torch.zeros(2, 1, 1, dtype=torch.float64), z.window[:, 1:]], 1))
    with pytest.raises(ValueError, match="window <= 0"):
        copy_context(zero_window, source=0, select=[1])
    with pytest.raises(ValueError, match="same number of selected latents"):
        delete(z, select=torch.tensor([[True] + [False] * 8, [True, True] + [False] * 7]))
    with pytest.raises(ValueError, match="different models"):
        paste(z, cloud("se2", context_dim=4), geom, select=[0])
    with pytest.raises(ValueError, match="planar edit"):
        rotate(cloud("ball"), enf.geometry.get("ball"), 0.3)
    with pytest.raises(ValueError, match="at_time"):
        translate(z.stack_time([z, z]), geom, [0.1, 0.0])
