"""Property tests for every registered geometry: invariance, group action, initialisers, completeness."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64

from enf import geometry, testing
from enf.geometry import SE2, gram_schmidt
from enf.geometry.frames import tangent_frame

NAMES = geometry.names(equivariant=True)  # the controls (absolute2d, absolute_sphere) must fail
ORIENTED = ["se2", "sphere", "ball", "se3"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- invariance
def test_registry_contains_design_names():
    required = {"translation2d", "translation3d", "absolute2d", "isotropic2d", "se2", "torus2d", "sphere"}
    required |= {"sphere_axial", "ball", "se3"}
    assert required <= set(geometry.names())
    for name in geometry.names():
        geom = geometry.get(name)
        assert geom.name == name
        assert geom.pose_dim == geom.space_dim * geom.num_pose_blocks
    with pytest.raises(ValueError, match="unknown geometry 'nope'"):
        geometry.get("nope")


@pytest.mark.parametrize("name", NAMES)
def test_bi_invariance_float64(name):
    geom = geometry.get(name)
    testing.assert_bi_invariant(geom, num_elements=16, generator=gen(1))
    assert testing.bi_invariance_error(geom, num_elements=16, generator=gen(2)) < 1e-9
    # the invariant is not trivially constant
    x = geom.sample_coords(2, 16, generator=gen(3), dtype=F64)
    p = geom.sample_poses(2, 8, generator=gen(4), dtype=F64)
    assert geom.invariant(x, p).std(dim=(0, 1, 2)).min() > 1e-2
    assert geom.distance2(x, p).std() > 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_pose_invariance_float64(name):
    geom = geometry.get(name)
    testing.assert_pose_invariant(geom, num_elements=16, generator=gen(1))
    assert testing.pose_invariance_error(geom, num_elements=16, generator=gen(2)) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_invariance_float32(name):
    geom = geometry.get(name)
    testing.assert_bi_invariant(geom, dtype=torch.float32, generator=gen(5))
    testing.assert_pose_invariant(geom, dtype=torch.float32, generator=gen(6))
    assert testing.bi_invariance_error(geom, dtype=torch.float32, generator=gen(7)) < 1e-4


@pytest.mark.parametrize("name", geometry.names())
def test_group_action(name):
    geom = geometry.get(name)
    testing.assert_group_action(geom, generator=gen(8))
    assert testing.group_action_error(geom, generator=gen(9)) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_all_pairs_match_single_pairs(name):
    geom = geometry.get(name)
    x = geom.sample_coords(2, 5, generator=gen(10), dtype=F64)
    p = geom.sample_poses(2, 3, generator=gen(11), dtype=F64)
    a, d2 = geom.invariant(x, p), geom.distance2(x, p)
    pp = geom.pose_invariant(p.unsqueeze(2), p.unsqueeze(1))
    assert a.shape == (2, 5, 3, geom.invariant_dim) and pp.shape == (2, 3, 3, geom.pose_invariant_dim)
    for b, n, l in [(0, 0, 0), (1, 4, 2), (0, 3, 1)]:
        torch.testing.assert_close(a[b, n, l], geom.pair_invariant(x[b, n], p[b, l]))
        torch.testing.assert_close(d2[b, n, l], geom.pair_distance2(x[b, n], p[b, l]))
        torch.testing.assert_close(pp[b, n % 3, l], geom.pose_invariant(p[b, n % 3], p[b, l]))


def test_isotropic2d_group_contains_reflections():
    geom = geometry.get("isotropic2d")
    g = geom.sample_group(64, generator=gen(1), dtype=F64)
    det = torch.linalg.det(g.rotation)
    torch.testing.assert_close(det.abs(), torch.ones_like(det))
    assert (det < 0).sum() > 10 and (det > 0).sum() > 10
    # a pure reflection leaves the E(2) invariant unchanged but changes the chiral se2 invariant
    flip = geometry.GroupElement(rotation=torch.diag(torch.tensor([1.0, -1.0], dtype=F64))[None])
    se2 = geometry.get("se2")
    x = se2.sample_coords(1, 6, generator=gen(2), dtype=F64)
    p = se2.sample_poses(1, 4, generator=gen(3), dtype=F64)
    q = p[..., :2]
    torch.testing.assert_close(
        geom.invariant(geom.act_coords(flip, x), geom.act_poses(flip, q)), geom.invariant(x, q)
    )
    moved = se2.invariant(se2.act_coords(flip, x), se2.act_poses(flip, p))
    assert (moved - se2.invariant(x, p)).abs().max() > 0.1


# ------------------------------------------------------------------------------------ negative controls
def test_absolute2d_is_not_invariant():
    geom = geometry.get("absolute2d")
    with pytest.raises(AssertionError, match="tolerance"):
        testing.assert_bi_invariant(geom, generator=gen(1))
    with pytest.raises(AssertionError, match="pose_invariant"):
        testing.assert_pose_invariant(geom, generator=gen(1))
    assert testing.bi_invariance_error(geom, generator=gen(2)) > 0.1
    x = geom.sample_coords(1, 4, generator=gen(3), dtype=F64)
    p = geom.sample_poses(1, 2, generator=gen(4), dtype=F64)
    torch.testing.assert_close(geom.invariant(x, p)[0, :, 1], x[0])  # the absolute coordinate


class _BrokenSE2(SE2):
    """R_o instead of R_o^T: the classic pitfall (DESIGN.md section 12)."""

    name = "broken_se2"

    def pair_invariant(self, x, poses):
        d = x - poses[..., :2]
        o = poses[..., 2:] / poses[..., 2:].norm(dim=-1, keepdim=True)
        c, s = o[..., 0], o[..., 1]
        return torch.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], dim=-1)


def test_broken_invariant_fails():
    with pytest.raises(AssertionError, match="invariant differs"):
        testing.assert_bi_invariant(_BrokenSE2(), generator=gen(1))
    assert testing.bi_invariance_error(_BrokenSE2(), generator=gen(1)) > 0.1


# -------------------------------------------------------------------------------------- hand values
def test_hand_computed_values():
    t = lambda *v: torch.tensor(v, dtype=F64)  # noqa: E731
    scalar = lambda v: torch.tensor(v, dtype=F64)  # noqa: E731
    se2 = geometry.get("se2")
    torch.testing.assert_close(se2.pair_invariant(t(1.0, 0.0), t(0.0, 0.0, 0.0, 2.0)), t(0.0, -1.0))
    torch.testing.assert_close(se2.pair_distance2(t(1.0, 2.0), t(0.0, 0.0, 0.0, 2.0)), scalar(5.0))
    iso = geometry.get("isotropic2d")
    torch.testing.assert_close(iso.pair_invariant(t(3.0, 4.0), t(0.0, 0.0)), t(5.0))
    torus = geometry.get("torus2d")
    torch.testing.assert_close(torus.pair_distance2(t(0.9, 0.0), t(-0.9, 0.5)), scalar(0.04 + 0.25))
    torch.testing.assert_close(torus.pair_invariant(t(0.5, 0.0), t(0.0, 0.0)), t(0.0, 1.0, 1.0, 0.0))
    sphere = geometry.get("sphere")
    torch.testing.assert_close(
        sphere.pair_invariant(t(1.0, 0.0, 0.0), t(0, 0, 2.0, 3.0, 0, 1.0)), t(1.0, 0, 0)
    )
    torch.testing.assert_close(sphere.pair_invariant(t(0, 1.0, 0), t(0, 0, 1.0, 1.0, 0, 0)), t(0, 1.0, 0))
    torch.testing.assert_close(
        sphere.pair_distance2(t(1.0, 0, 0), t(0, 0, 1.0, 1.0, 0, 0)), scalar(math.pi**2 / 4)
    )
    axial = geometry.get("sphere_axial")
    torch.testing.assert_close(axial.pair_invariant(t(1.0, 0, 0), t(0, 2.0, 0)), t(0, 0, 0, 1.0))
    se3 = geometry.get("se3")
    pose = t(1.0, 1.0, 1.0, 0, 2.0, 0, 0, 0, 3.0)  # e1 = y, e2 = z, e3 = x
    torch.testing.assert_close(se3.pair_invariant(t(1.0, 3.0, 5.0), pose), t(2.0, 4.0, 0.0))
    ball = geometry.get("ball")
    torch.testing.assert_close(ball.pair_invariant(t(0.5, 0, 0), pose), t(0, 0, 0.5, 1.0, 1.0, 1.0))


# ------------------------------------------------------------------------------------- initialisers
def _positions(geom, poses):
    return poses[..., : geom.space_dim]


def _check_domain(name, geom, poses):
    pos = _positions(geom, poses)
    if name in ("sphere", "sphere_axial", "absolute_sphere"):
        torch.testing.assert_close(pos.norm(dim=-1), torch.ones(len(pos), dtype=F64))
    elif name == "ball":
        assert pos.norm(dim=-1).max() < 1.0
    elif name == "torus2d":
        assert pos.min() >= -1.0 and pos.max() < 1.0
    else:
        assert pos.abs().max() <= 1.0
    ones = torch.ones(len(pos), dtype=F64)
    if name == "se2":
        torch.testing.assert_close(poses[:, 2:].norm(dim=-1), ones)
    if name == "sphere":  # unit tangent orientation
        torch.testing.assert_close(poses[:, 3:].norm(dim=-1), ones)
        torch.testing.assert_close((poses[:, 3:] * pos).sum(-1), torch.zeros_like(ones), atol=1e-12, rtol=0)
    if name in ("ball", "se3"):  # u, v orthonormal: a rotation's first two columns
        u, v = poses[:, 3:6], poses[:, 6:9]
        torch.testing.assert_close(u.norm(dim=-1), ones)
        torch.testing.assert_close(v.norm(dim=-1), ones)
        torch.testing.assert_close((u * v).sum(-1), torch.zeros_like(ones), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", geometry.names())
@pytest.mark.parametrize("num_latents", [1, 25, 64])
def test_init_poses(name, num_latents):
    geom = geometry.get(name)
    poses = geom.init_poses(num_latents, dtype=F64)
    assert poses.shape == (num_latents, geom.pose_dim) and poses.dtype == F64
    torch.testing.assert_close(poses, geom.init_poses(num_latents, dtype=F64), atol=0, rtol=0)
    torch.testing.assert_close(poses, geom.init_poses(num_latents, generator=gen(0), dtype=F64))
    assert geom.init_poses(num_latents).dtype == torch.float32
    _check_domain(name, geom, poses)
    if num_latents == 1:
        return
    # distinct and spread out: nearest-neighbour distance comparable to the default window
    d2 = geom.distance2(_positions(geom, poses)[None], poses[None])[0]
    d2 = d2 + torch.diag(torch.full((num_latents,), math.inf, dtype=F64))
    nearest = d2.min(dim=1).values.sqrt()
    window = geom.default_window(num_latents)
    assert nearest.min() > 0.2 * window
    assert 0.4 * window < nearest.median() < 2.5 * window


@pytest.mark.parametrize("name", ORIENTED)
def test_init_orientations_follow_generator(name):
    geom = geometry.get(name)
    a = geom.init_poses(16, generator=gen(1), dtype=F64)
    b = geom.init_poses(16, generator=gen(2), dtype=F64)
    n = geom.space_dim
    torch.testing.assert_close(a[:, :n], b[:, :n])  # positions are fixed
    assert (a[:, n:] - b[:, n:]).abs().max() > 0.1  # orientations are seeded random
    _check_domain(name, geom, b)


def test_default_windows():
    assert geometry.get("sphere").default_window(100) == pytest.approx(math.sqrt(4 * math.pi / 100))
    assert geometry.get("ball").default_window(8) == pytest.approx((4 * math.pi / 3 / 8) ** (1 / 3))
    assert geometry.get("se2").default_window(64) == pytest.approx(0.25)


# ------------------------------------------------------------------------------------- completeness
def _recover(name, geom, b, pj):
    """Canonical form of pose i rebuilt from ``pose_invariant(p_i, p_j)`` and ``p_j``."""
    if name == "se2":
        o = pj[..., 2:] / pj[..., 2:].norm(dim=-1, keepdim=True)
        rot = torch.stack(
            [torch.stack([o[..., 0], -o[..., 1]], -1), torch.stack([o[..., 1], o[..., 0]], -1)], -2
        )
        q = pj[..., :2] + (rot @ b[..., :2, None])[..., 0]
        return torch.cat([q, (rot @ b[..., 2:, None])[..., 0]], dim=-1)
    if name in ("se3", "ball"):
        frame = gram_schmidt(pj[..., 3:6], pj[..., 6:9])
        off = 3 if name == "se3" else 6
        q = (frame @ b[..., :3, None])[..., 0] + (pj[..., :3] if name == "se3" else 0.0)
        e1, e2 = (
            (frame @ b[..., off : off + 3, None])[..., 0],
            (frame @ b[..., off + 3 : off + 6, None])[..., 0],
        )
        return torch.cat([q, e1, e2], dim=-1)
    if name == "sphere":
        frame = tangent_frame(pj[..., :3], pj[..., 3:])
        return torch.cat([(frame @ b[..., :3, None])[..., 0], (frame @ b[..., 3:, None])[..., 0]], dim=-1)
    if name == "sphere_axial":
        m = pj / pj.norm(dim=-1, keepdim=True)
        a, a_perp = m[..., :2], torch.stack([m[..., 1], -m[..., 0]], -1)
        xy = (b[..., 2:3] * a + b[..., 3:4] * a_perp) / a.square().sum(-1, keepdim=True)
        return torch.cat([xy, b[..., :1]], dim=-1)
    if name == "torus2d":
        delta = torch.atan2(b[..., 1::2], b[..., 0::2]) / math.pi
        return geom._wrap(pj + delta)
    if name.startswith("translation"):
        return pj + b
    raise AssertionError(name)


def _canonical(name, pi):
    if name == "se2":
        return torch.cat([pi[..., :2], pi[..., 2:] / pi[..., 2:].norm(dim=-1, keepdim=True)], dim=-1)
    if name in ("se3", "ball"):
        frame = gram_schmidt(pi[..., 3:6], pi[..., 6:9])
        return torch.cat([pi[..., :3], frame[..., :, 0], frame[..., :, 1]], dim=-1)
    if name == "sphere":
        frame = tangent_frame(pi[..., :3], pi[..., 3:])
        return torch.cat([frame[..., :, 2], frame[..., :, 0]], dim=-1)
    if name == "sphere_axial":
        return pi / pi.norm(dim=-1, keepdim=True)
    return pi


@pytest.mark.parametrize("name", [n for n in NAMES if n != "isotropic2d"])
def test_pose_invariant_is_complete(name):
    geom = geometry.get(name)
    p = geom.sample_poses(3, 6, generator=gen(12), dtype=F64)
    pi, pj = p.unsqueeze(2), p.unsqueeze(1)
    b = geom.pose_invariant(pi, pj)
    rebuilt = _recover(name, geom, b, pj.expand(*b.shape[:-1], geom.pose_dim))
    expected = _canonical(name, pi).expand_as(rebuilt)
    torch.testing.assert_close(rebuilt, expected, atol=1e-10, rtol=0)
    if name == "ball":  # the middle block is q_j in its own frame
        frame_j = gram_schmidt(pj[..., 3:6], pj[..., 6:9])
        q_j = (frame_j @ b[..., 3:6, None])[..., 0]
        torch.testing.assert_close(q_j, pj[..., :3].expand_as(q_j), atol=1e-10, rtol=0)


def test_isotropic_pose_invariant_is_the_distance():
    geom = geometry.get("isotropic2d")
    p = geom.sample_poses(2, 5, generator=gen(13), dtype=F64)
    b = geom.pose_invariant(p.unsqueeze(2), p.unsqueeze(1))[..., 0]
    torch.testing.assert_close(b, torch.cdist(p, p), atol=1e-10, rtol=0)


def test_sphere_sees_tangent_orientation():
    geom = geometry.get("sphere")
    n = torch.tensor([0.3, -0.2, 0.9], dtype=F64)
    n = n / n.norm()
    t1 = torch.linalg.cross(n, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    t2 = torch.linalg.cross(n, t1)
    p1, p2 = torch.cat([n, t1]), torch.cat([n, t2])
    pj = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=F64)
    diff_pose = (geom.pose_invariant(p1, pj) - geom.pose_invariant(p2, pj)).abs().max()
    assert diff_pose > 0.5
    x = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    assert (geom.pair_invariant(x, p1) - geom.pair_invariant(x, p2)).abs().max() > 0.1
    # ... while the positions agree and so does the window distance
    torch.testing.assert_close(geom.pair_distance2(x, p1), geom.pair_distance2(x, p2))


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", geometry.names())
def test_gradients_finite_at_coincident_points(name):
    geom = geometry.get(name)
    poses = geom.sample_poses(2, 4, generator=gen(14), dtype=F64).requires_grad_(True)
    x = _positions(geom, poses).detach().clone().requires_grad_(True)
    d2 = geom.pair_distance2(x, poses)
    torch.testing.assert_close(d2, torch.zeros_like(d2), atol=1e-20, rtol=0)
    (gx, gp) = torch.autograd.grad(d2.sum(), (x, poses))
    torch.testing.assert_close(gx, torch.zeros_like(gx), atol=1e-10, rtol=0)
    assert torch.isfinite(gp).all()
    a = geom.pair_invariant(x, poses)
    b = geom.pose_invariant(poses, poses)
    grads = torch.autograd.grad(a.square().sum() + a.sum() + b.sum() + b.square().sum(), (x, poses))
    assert all(torch.isfinite(g).all() for g in grads)
    if name in SELF_POSE_INVARIANT:  # a pose relative to itself is the identity
        expected = torch.tensor(SELF_POSE_INVARIANT[name], dtype=F64).expand_as(b)
        torch.testing.assert_close(b.detach(), expected, atol=1e-10, rtol=0)


SELF_POSE_INVARIANT = {
    "translation2d": [0.0, 0.0],
    "translation3d": [0.0, 0.0, 0.0],
    "isotropic2d": [0.0],
    "se2": [0.0, 0.0, 1.0, 0.0],
    "torus2d": [1.0, 0.0, 1.0, 0.0],
    "sphere": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
    "se3": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
}


@pytest.mark.parametrize("name", ORIENTED + ["sphere_axial", "absolute_sphere"])
def test_gradients_finite_for_degenerate_orientation(name):
    geom = geometry.get(name)
    poses = geom.sample_poses(1, 3, generator=gen(15), dtype=F64)
    start = 0 if geom.pose_dim == geom.space_dim else geom.space_dim  # zero orientation (or zero point)
    poses[..., start:] = 0.0
    poses.requires_grad_(True)
    x = geom.sample_coords(1, 5, generator=gen(16), dtype=F64)
    a = geom.invariant(x, poses)
    b = geom.pose_invariant(poses.unsqueeze(2), poses.unsqueeze(1))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    (g,) = torch.autograd.grad(a.sum() + b.sum() + geom.distance2(x, poses).sum(), poses)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("name", ["sphere", "sphere_axial", "absolute_sphere"])
def test_sphere_distance_at_antipode(name):
    geom = geometry.get(name)
    poses = geom.sample_poses(1, 3, generator=gen(17), dtype=F64).requires_grad_(True)
    x = -poses[..., :3].detach().clone().requires_grad_(True)
    d2 = geom.pair_distance2(x, poses)
    torch.testing.assert_close(d2, torch.full_like(d2, math.pi**2))
    grads = torch.autograd.grad(d2.sum(), (x, poses))
    assert all(torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", geometry.names())
def test_shape_errors(name):
    geom = geometry.get(name)
    x = geom.sample_coords(2, 5, dtype=F64)
    p = geom.sample_poses(2, 3, dtype=F64)
    bad_x = torch.zeros(2, 5, geom.coord_dim + 1, dtype=F64)
    with pytest.raises(ValueError, match=rf"\(2, 5, {geom.coord_dim + 1}\)"):
        geom.invariant(bad_x, p)
    with pytest.raises(ValueError, match=rf"\(2, 5, {geom.coord_dim + 1}\)"):
        geom.distance2(bad_x, p)
    if not name.startswith("translation"):
        with pytest.raises(ValueError, match=rf"\(3, {geom.pose_dim + 1}\)"):
            geom.pose_invariant(torch.zeros(3, geom.pose_dim + 1, dtype=F64), p[0])
    with pytest.raises(ValueError, match="same B"):
        geom.invariant(x[:1], p)
    if not name.startswith("translation"):  # translation.py leaves pair-level checks to torch
        with pytest.raises(ValueError, match=rf"\(2, 5, {geom.coord_dim}\)"):
            geom.pair_invariant(x, p)  # N = 5 and L = 3 do not broadcast
    # well-formed inputs still give invariant values
    torch.testing.assert_close(geom.distance2(x, p)[:, 0, 0], geom.pair_distance2(x[:, 0], p[:, 0]))


def test_the_equivariant_attribute_matches_the_registry_and_is_symmetry() -> None:
    """``Geometry.equivariant`` is False exactly for the registry's non-equivariant controls, which have no
    symmetry; the identity is a symmetry of every other geometry, and a reflection only where the group has
    reflections."""
    for name in geometry.names():
        geom = geometry.get(name)
        assert geom.equivariant == (name in geometry.names(equivariant=True)), name
        identity = geom.sample_group(1, dtype=F64)
        if identity.rotation is not None:
            identity = type(identity)(rotation=torch.eye(geom.space_dim, dtype=F64)[None],
                                      translation=None if identity.translation is None else 0 * identity.translation)  # fmt: skip
        else:
            identity = type(identity)(rotation=None, translation=0 * identity.translation)
        assert geom.is_symmetry(identity) == geom.equivariant, name
        if identity.rotation is not None:
            mirror = torch.diag(torch.tensor([1.0] * (geom.space_dim - 1) + [-1.0], dtype=F64))[None]
            flipped = type(identity)(rotation=mirror, translation=identity.translation)
            assert geom.is_symmetry(flipped) == (geom.equivariant and geom.reflections), name
