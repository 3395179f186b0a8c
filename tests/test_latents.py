"""Tests of the Latents container and the initial latent."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _common import F64
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from enf import Latents, geometry
from enf.latents import initial_latents


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


# ------------------------------------------------------------------------------- immutability / ops
def test_latents_are_frozen():
    z = random_latents()
    for name in ("poses", "context", "window"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(z, name, torch.zeros(2, 5, 1, dtype=F64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        z.extra = 1  # no new attributes either


def test_map_map2_replace_clone_and_properties():
    z = random_latents()
    double = z.map(lambda t: t * 2)
    for a, b in zip(double.to_tuple(), z.to_tuple(), strict=True):
        assert torch.equal(a, 2 * b)
    summed = z.map2(lambda a, b: a + 0.5 * b, double)
    for a, b in zip(summed.to_tuple(), z.to_tuple(), strict=True):
        assert torch.equal(a, 2 * b)
    with pytest.raises(TypeError, match="map2 needs another Latents, got tuple"):
        z.map2(torch.add, z.to_tuple())
    with pytest.raises(ValueError, match="must agree"):
        z.map(lambda t: t[:, :, :1] if t.shape[-1] == 3 else t[:, :-1])  # map results are validated
    new_window = torch.full_like(z.window, 0.3)
    moved = z.replace(window=new_window)
    assert moved.window is new_window and moved.poses is z.poses and moved.context is z.context
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['widths'\].*'window'"):
        z.replace(widths=new_window)
    with pytest.raises(ValueError, match="must agree"):
        z.replace(window=torch.ones(2, 4, 1, dtype=F64))
    assert z.dtype == F64 and z.device == torch.device("cpu")
    assert z.to(torch.float32).dtype == torch.float32
    # clone: new storage, same values, differentiable, requires_grad untouched
    leaf = z.context.clone().requires_grad_(True)
    copy = z.replace(context=leaf).clone()
    assert copy.context.data_ptr() != leaf.data_ptr() and torch.equal(copy.context, leaf)
    assert copy.context.requires_grad and not copy.poses.requires_grad
    (3.0 * copy.context).sum().backward()
    assert torch.equal(leaf.grad, torch.full_like(leaf, 3.0))
    copy.poses.add_(1.0)
    assert not torch.equal(copy.poses, z.poses)
    assert "Latents(poses=(2, 5, 4), context=(2, 5, 3), window=(2, 5, 1)" in repr(z)


def test_tuple_bridge_round_trip_and_errors():
    z = random_latents()
    t = z.to_tuple()
    assert isinstance(t, tuple) and t[0] is z.poses and t[1] is z.context and t[2] is z.window
    back = Latents.from_tuple(t)
    assert all(a is b for a, b in zip(back.to_tuple(), t, strict=True))
    assert torch.equal(Latents.from_tuple(list(t)).poses, z.poses)
    with pytest.raises(
        TypeError, match="from_tuple expects a \\(poses, context, window\\) tuple, got length 2"
    ):
        Latents.from_tuple(t[:2])
    with pytest.raises(TypeError, match="got Latents"):
        Latents.from_tuple(z)
    with pytest.raises(ValueError, match=r"from_odeint: poses must be odeint's \[T, B, L, dim\].*from_tuple"):
        Latents.from_odeint(t)


# ---------------------------------------------------------------------------------------- time axis
def test_time_axis_stack_at_time_and_validation():
    geom = geometry.get("se2")
    states = [random_latents().map(lambda x, k=k: x + k) for k in range(4)]
    zs = Latents.stack_time(states)
    assert zs.has_time_axis and not states[0].has_time_axis
    assert zs.poses.shape == (2, 4, 5, 4) and zs.window.shape == (2, 4, 5, 1)
    assert (zs.batch_size, zs.num_times, zs.num_latents, zs.context_dim) == (2, 4, 5, 3)
    for k in range(4):
        for a, b in zip(zs.at_time(k).to_tuple(), states[k].to_tuple(), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(zs.at_time(-1).context, states[3].context)
    with pytest.raises(IndexError, match="time index 4 out of range for 4"):
        zs.at_time(4)
    with pytest.raises(ValueError, match="no time axis"):
        _ = states[0].num_times
    with pytest.raises(ValueError, match="without a time axis"):
        Latents.stack_time([zs])
    with pytest.raises(ValueError, match="at least one"):
        Latents.stack_time([])
    # batch ops keep the time axis
    assert torch.equal(zs[1].poses[0], zs.poses[1])
    assert Latents.cat([zs, zs]).poses.shape == (4, 4, 5, 4)
    assert zs[0].expand(3).poses.shape == (3, 4, 5, 4)
    # all fields share the rank
    with pytest.raises(
        ValueError, match=r"Latents.window must be \[B, T, L, dim\] like the poses.*\(2, 5, 1\)"
    ):
        Latents(zs.poses, zs.context, states[0].window)
    with pytest.raises(ValueError, match=r"window \[B, T, L, 1\] must agree"):
        Latents(zs.poses, zs.context, zs.window[:, :3])
    # a group element acts on every time step alike
    g = geom.sample_group(2, generator=gen(2), dtype=F64)
    moved = zs.transform(geom, g)
    for k in range(4):
        assert torch.equal(moved.at_time(k).poses, states[k].transform(geom, g).poses)
    assert torch.equal(moved.context, zs.context)


@pytest.mark.parametrize("name", ["se2", "sphere", "se3"])
def test_transform_velocity_uses_the_linear_part(name):
    geom = geometry.get(name)
    dz = random_latents(name)
    g = geom.sample_group(2, generator=gen(3), dtype=F64)
    moved = dz.transform_velocity(geom, g)
    assert torch.equal(moved.poses, geom.act_pose_velocity(g, dz.poses))
    assert torch.equal(moved.context, dz.context) and torch.equal(moved.window, dz.window)
    # a velocity is a difference of poses: it moves like one, translations cancel
    other = random_latents(name).poses
    diff = geom.act_poses(g, other) - geom.act_poses(g, dz.poses)
    torch.testing.assert_close(
        Latents(other - dz.poses, dz.context, dz.window).transform_velocity(geom, g).poses, diff
    )
    traj = Latents.stack_time([dz, dz.map(lambda t: -t)])
    assert torch.equal(traj.transform_velocity(geom, g).at_time(1).poses, -moved.poses)


# ------------------------------------------------------------------------------ torchdiffeq odeint
def _linear_system(seed: int = 4):
    """dz/dt = A z on each field: ``poses @ A_p^T``, ``context @ A_c^T``, ``a_w * window``."""
    g = gen(seed)
    a_p = 0.5 * torch.randn(4, 4, generator=g, dtype=F64)
    a_c = 0.5 * torch.randn(3, 3, generator=g, dtype=F64)
    a_w = torch.tensor(-0.7, dtype=F64)
    return a_p, a_c, a_w


def _analytic(z0: Latents, a_p, a_c, a_w, t) -> Latents:
    return Latents(
        poses=z0.poses @ torch.linalg.matrix_exp(t * a_p).mT,
        context=z0.context @ torch.linalg.matrix_exp(t * a_c).mT,
        window=z0.window * torch.exp(t * a_w),
    )


@pytest.mark.parametrize(
    "method,options,kwargs",
    [("rk4", dict(step_size=0.01), {}), ("dopri5", None, dict(rtol=1e-11, atol=1e-12))],
)
def test_odeint_linear_ode_matches_matrix_exponential(method, options, kwargs):
    a_p, a_c, a_w = _linear_system()
    z0 = random_latents()
    times = torch.linspace(0.0, 1.5, 4, dtype=F64)

    def field(t, z: Latents) -> Latents:
        return Latents(poses=z.poses @ a_p.mT, context=z.context @ a_c.mT, window=a_w * z.window)

    sol = odeint(
        lambda t, y: field(t, Latents.from_tuple(y)).to_tuple(),
        z0.to_tuple(),
        times,
        method=method,
        options=options,
        **kwargs,
    )
    assert isinstance(sol, tuple) and sol[0].shape == (4, 2, 5, 4)  # odeint: time first
    zs = Latents.from_odeint(sol)
    assert zs.poses.shape == (2, 4, 5, 4) and zs.num_times == 4
    assert torch.equal(zs.at_time(0).poses, z0.poses)
    for k, t in enumerate(times):
        expected = _analytic(z0, a_p, a_c, a_w, t)
        for a, b in zip(zs.at_time(k).to_tuple(), expected.to_tuple(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)
    # the solution really moved (not a trivial pass)
    assert (zs.at_time(-1).poses - z0.poses).abs().max() > 0.1


class _LinearField(nn.Module):
    def __init__(self, a_p, a_c, a_w):
        super().__init__()
        self.a_p, self.a_c, self.a_w = nn.Parameter(a_p), nn.Parameter(a_c), nn.Parameter(a_w)

    def forward(self, t, y):
        z = Latents.from_tuple(y)
        return Latents(z.poses @ self.a_p.mT, z.context @ self.a_c.mT, self.a_w * z.window).to_tuple()


@pytest.mark.parametrize("adjoint", [False, True])
def test_odeint_gradients_match_analytic(adjoint):
    a_p, a_c, a_w = _linear_system(seed=5)
    z0 = random_latents().map(lambda t: t.clone().requires_grad_(True))
    weights = random_latents(batch_size=2).map(lambda t: torch.cos(3.0 * t))  # fixed readout weights
    times = torch.tensor([0.0, 0.8], dtype=F64)
    module = _LinearField(a_p.clone(), a_c.clone(), a_w.clone())
    solve = odeint_adjoint if adjoint else odeint
    sol = solve(module, z0.to_tuple(), times, method="rk4", options=dict(step_size=0.01))
    z_end = Latents.from_odeint(sol).at_time(-1)
    loss = sum((w * z).sum() for w, z in zip(weights.to_tuple(), z_end.to_tuple(), strict=True))
    loss.backward()
    # independent: the same loss through the matrix exponential, differentiated by autograd
    ref_z0 = random_latents().map(lambda t: t.clone().requires_grad_(True))
    ref_a = [a.clone().requires_grad_(True) for a in (a_p, a_c, a_w)]
    ref_end = _analytic(ref_z0, *ref_a, times[-1])
    ref = sum((w * z).sum() for w, z in zip(weights.to_tuple(), ref_end.to_tuple(), strict=True))
    ref.backward()
    torch.testing.assert_close(float(loss.detach()), float(ref.detach()), atol=1e-9, rtol=1e-9)
    # d loss / d poses0 = W_p expm(T A_p): checked through autograd of the analytic solution
    for a, b in zip(z0.to_tuple(), ref_z0.to_tuple(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-7)
    for p, r in zip((module.a_p, module.a_c, module.a_w), ref_a, strict=True):
        torch.testing.assert_close(p.grad, r.grad, atol=1e-7, rtol=1e-7)
    assert module.a_p.grad.abs().max() > 1e-2
