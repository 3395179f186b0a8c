"""The shipped property checks in ``enf.testing`` accept what is right and reject what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _common import F64
from torchdiffeq import odeint

from enf import Latents, geometry, testing
from enf.geometry import SE2


@dataclass
class _Poses:
    """Minimal stand-in for ``enf.Latents``: only ``poses`` and ``transform``."""

    poses: torch.Tensor

    def transform(self, geom, g):
        return _Poses(geom.act_poses(g, self.poses))


def _invariant_field(geom):
    def field(x, z):
        weights = torch.softmax(-geom.distance2(x, z.poses), dim=-1)  # [B, N, L]
        features = torch.tanh(geom.invariant(x, z.poses))  # [B, N, L, D]
        return torch.einsum("bnl,bnld->bnd", weights, features)

    return field


def _inputs(geom, dtype=F64):
    gen = torch.Generator().manual_seed(3)
    x = geom.sample_coords(2, 12, generator=gen, dtype=dtype)
    z = _Poses(geom.sample_poses(2, 5, generator=gen, dtype=dtype))
    return x, z


@pytest.mark.parametrize("name", ["se2", "sphere", "torus2d"])
def test_invariant_field_is_steerable(name):
    geom = geometry.get(name)
    x, z = _inputs(geom)
    field = _invariant_field(geom)
    testing.assert_steerable(field, geom, x, z, num_elements=4)
    assert testing.steerability_error(field, name, x, z, num_elements=4) < 1e-9
    x32, z32 = _inputs(geom, torch.float32)
    testing.assert_steerable(field, geom, x32, z32, num_elements=4)


def test_non_steerable_field_fails():
    geom = geometry.get("se2")
    x, z = _inputs(geom)
    field = _invariant_field(geom)

    def leaky(coords, latents):  # adds the absolute coordinate: not steerable
        return field(coords, latents) + coords[..., :1]

    with pytest.raises(AssertionError, match="not steerable under se2.*tolerance atol=1e-09"):
        testing.assert_steerable(leaky, geom, x, z)
    assert testing.steerability_error(leaky, geom, x, z) > 0.1
    # the absolute2d control geometry makes even the "invariant" field non-steerable
    absolute = geometry.get("absolute2d")
    xa, za = _inputs(absolute)
    with pytest.raises(AssertionError):
        testing.assert_steerable(_invariant_field(absolute), absolute, xa, za)


class _WrongCompose(SE2):
    name = "wrong_compose"

    def compose(self, g, h):  # h * g instead of g * h
        return super().compose(h, g)


def test_group_action_check_rejects_wrong_compose():
    with pytest.raises(AssertionError, match=r"g\(h coords\) vs \(gh\) coords"):
        testing.assert_group_action(_WrongCompose())
    assert testing.group_action_error(_WrongCompose()) > 0.1
    assert testing.group_action_error("se2") < 1e-12


def test_tolerances_and_group_sampler():
    assert testing.TOLERANCES[F64]["atol"] <= 1e-9
    x = torch.zeros(3, 4, 2, dtype=F64)
    g = testing.sample_group_like("se2", 3, x, torch.Generator().manual_seed(0))
    assert g.rotation.dtype == F64
    torch.testing.assert_close(
        g.rotation @ g.rotation.transpose(-1, -2), torch.eye(2, dtype=F64).expand(3, 2, 2)
    )
    geom = geometry.get("se2")
    x16, z = _inputs(geom)
    with pytest.raises(ValueError, match="no default tolerance"):
        testing.assert_steerable(_invariant_field(geom), geom, x16.half(), _Poses(z.poses.half()))
    with pytest.raises(ValueError, match=r"\[B, N, 2\]"):
        testing.steerability_error(_invariant_field(geom), geom, x16[0], z)


# -------------------------------------------------------------------------- generic assert_equivariant
def _relative_velocity(geom, poses):
    """Equivariant pose velocity ``sum_j w_ij (p_j - p_i)`` (blockwise), ``w_ij = exp(-|q_j - q_i|^2)``.

    On the sphere the position velocity is projected onto the tangent plane at ``n_i``.
    """
    blocks = poses.unflatten(-1, (geom.num_pose_blocks, geom.space_dim))  # [B, L, K, n]
    rel = blocks.unsqueeze(1) - blocks.unsqueeze(2)  # [B, i, j, K, n]: p_j - p_i
    weights = torch.exp(-rel[..., 0, :].pow(2).sum(-1))  # [B, i, j], invariant
    velocity = torch.einsum("bij,bijkn->bikn", weights, rel)
    if not geom.translates:  # sphere: tangent at the position n_i
        n = blocks[..., 0, :]
        tangent = velocity[..., 0, :] - (velocity[..., 0, :] * n).sum(-1, keepdim=True) * n
        velocity = torch.cat([tangent.unsqueeze(-2), velocity[..., 1:, :]], dim=-2)
    return velocity.flatten(-2)


def _latent_field(geom):
    """``F(z)``: equivariant pose velocity, invariant context velocity, constant windows."""

    def field(t, z: Latents) -> Latents:
        dist2 = geom.pose_invariant(z.poses.unsqueeze(2), z.poses.unsqueeze(1)).pow(2).sum(-1)  # [B, L, L]
        dcontext = torch.einsum("bij,bjc->bic", torch.exp(-dist2), torch.tanh(z.context)) - z.context
        return Latents(_relative_velocity(geom, z.poses), dcontext, torch.zeros_like(z.window))

    return field


def _rollout(geom):
    field = _latent_field(geom)
    times = torch.linspace(0.0, 0.5, 3, dtype=F64)

    def rollout(z0: Latents) -> Latents:
        sol = odeint(
            lambda t, y: field(t, Latents.from_tuple(y)).to_tuple(),
            z0.to_tuple(),
            times.to(z0.dtype),
            method="rk4",
            options=dict(step_size=0.1),
        )
        return Latents.from_odeint(sol)

    return rollout


def _latents(geom, dtype=F64, batch_size=2):
    gen = torch.Generator().manual_seed(7)
    return Latents(
        poses=geom.sample_poses(batch_size, 5, generator=gen, dtype=dtype),
        context=torch.randn(batch_size, 5, 3, generator=gen, dtype=torch.float64).to(dtype),
        window=torch.full((batch_size, 5, 1), 0.2, dtype=dtype),
    )


@pytest.mark.parametrize("name", ["se2", "sphere"])
def test_equivariant_rollout_and_field_pass(name):
    geom = geometry.get(name)
    z = _latents(geom)
    act_z = testing.act_args(testing.act_latents(geom))
    rollout = _rollout(geom)
    zs = rollout(z)
    assert zs.poses.shape == (2, 3, 5, geom.pose_dim) and (zs.poses - z.poses.unsqueeze(1)).abs().max() > 0.01
    gen = torch.Generator().manual_seed(1)
    testing.assert_equivariant(
        rollout, geom, (z,), act_z, testing.act_latents(geom), num_samples=3, generator=gen
    )
    assert (
        testing.equivariance_error(rollout, name, (z,), act_z, testing.act_latents(geom), num_samples=3)
        < 1e-9
    )
    field = _latent_field(geom)
    testing.assert_equivariant(
        lambda z: field(0.0, z), geom, (z,), act_z, testing.act_latent_velocity(geom), num_samples=3
    )
    # float32 uses the float32 default tolerances
    z32 = _latents(geom, torch.float32)
    testing.assert_equivariant(rollout, geom, (z32,), act_z, testing.act_latents(geom), num_samples=2)


@pytest.mark.parametrize("name", ["se2", "sphere"])
def test_non_equivariant_maps_fail(name):
    geom = geometry.get(name)
    z = _latents(geom)
    act_z = testing.act_args(testing.act_latents(geom))
    shift = torch.zeros(geom.pose_dim, dtype=F64)
    shift[0] = 0.3

    def drift(z: Latents) -> Latents:  # a fixed direction does not rotate with the input
        return z.replace(poses=z.poses + shift)

    with pytest.raises(
        AssertionError, match=rf"fn is not equivariant under {name}: output.poses under group "
    ):
        testing.assert_equivariant(drift, geom, (z,), act_z, testing.act_latents(geom))
    assert testing.equivariance_error(drift, geom, (z,), act_z, testing.act_latents(geom)) > 0.05
    # the right map with the wrong output action (identity instead of the group action) fails too
    rollout = _rollout(geom)
    with pytest.raises(AssertionError, match=r"differs by up to \d\.\d+e[+-]\d+ .*compared outputs fail"):
        testing.assert_equivariant(rollout, geom, (z,), act_z, testing.act_identity, num_samples=2)
    # and the velocity field checked with the pose action instead of the velocity action (se2 translates)
    if geom.translates:
        field = _latent_field(geom)
        with pytest.raises(AssertionError, match="output.poses"):
            testing.assert_equivariant(lambda z: field(0.0, z), geom, (z,), act_z, testing.act_latents(geom))


def test_message_names_worst_sample_and_leaf():
    geom = geometry.get("se2")
    z = _latents(geom)
    x = geom.sample_coords(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    errors = {}

    def fn(x, z):  # tuple output; only the nested Latents context breaks, a bit more on every call
        errors["calls"] = errors.get("calls", -1) + 1
        return x, (z, z.context.sum(-1)), z.replace(context=z.context + 0.1 * errors["calls"])

    act_in = testing.act_args(testing.act_coords(geom), testing.act_latents(geom))

    def act_out(g, out):
        return (
            testing.act_coords(geom)(g, out[0]),
            (out[1][0].transform(geom, g), out[1][1]),
            out[2].transform(geom, g),
        )

    with pytest.raises(AssertionError) as info:
        testing.assert_equivariant(fn, geom, (x, z), act_in, act_out, num_samples=4)
    message = str(info.value)
    assert "output[2].context under group element #3 differs by up to 4.000e-01" in message
    assert "4 of 32 compared outputs fail" in message
    # sanity: the same map without the drift passes
    testing.assert_equivariant(
        lambda x, z: (x, (z, z.context.sum(-1)), z), geom, (x, z), act_in, act_out, num_samples=2
    )


def test_periodic_positions_compare_modulo_the_period():
    geom = geometry.get("torus2d")
    z = _latents(geom)
    act_z = testing.act_args(testing.act_latents(geom))

    def act_plus(offset):
        return lambda g, z: z.transform(geom, g).map2(lambda a, b: a + b, z.map(lambda t: 0 * t + offset))

    testing.assert_equivariant(lambda z: z, geom, (z,), act_z, act_plus(torch.tensor(0.0)))
    poses_only = lambda g, z: (m := z.transform(geom, g)).replace(poses=m.poses + 2.0)  # noqa: E731
    testing.assert_equivariant(lambda z: z, geom, (z,), act_z, poses_only)  # -1 and 1 are the same point
    off = lambda g, z: (m := z.transform(geom, g)).replace(poses=m.poses + 0.5)  # noqa: E731
    with pytest.raises(AssertionError, match="output.poses"):
        testing.assert_equivariant(lambda z: z, geom, (z,), act_z, off)
    # a non-periodic geometry does not forgive the period
    se2 = geometry.get("translation2d")
    z2 = _latents(se2)
    shifted = lambda g, z: (m := z.transform(se2, g)).replace(poses=m.poses + 2.0)  # noqa: E731
    with pytest.raises(AssertionError):
        testing.assert_equivariant(
            lambda z: z, se2, (z2,), testing.act_args(testing.act_latents(se2)), shifted
        )


def test_bad_arguments():
    geom = geometry.get("se2")
    z = _latents(geom)
    act_z = testing.act_args(testing.act_latents(geom))
    with pytest.raises(TypeError, match="inputs must be a tuple.*got Latents"):
        testing.assert_equivariant(lambda z: z, geom, z, act_z, testing.act_latents(geom))
    with pytest.raises(TypeError, match="act_in must return a tuple.*got Latents"):
        testing.assert_equivariant(
            lambda z: z, geom, (z,), lambda g, inputs: inputs[0].transform(geom, g), testing.act_latents(geom)
        )
    with pytest.raises(ValueError, match="2 actions but got 1 inputs"):
        testing.assert_equivariant(
            lambda z: z, geom, (z,), testing.act_args(act_z, act_z), testing.act_latents(geom)
        )
    with pytest.raises(TypeError, match="no tensor"):
        testing.assert_equivariant(lambda n: n, geom, (3,), testing.act_identity, testing.act_identity)
    with pytest.raises(TypeError, match="got dict at output"):
        testing.assert_equivariant(lambda z: {"z": z}, geom, (z,), act_z, testing.act_identity)
    with pytest.raises(AssertionError, match="output structure differs"):
        testing.assert_equivariant(lambda z: z, geom, (z,), act_z, lambda g, z: z.poses)
    with pytest.raises(ValueError, match="no default tolerance"):
        testing.assert_equivariant(
            lambda z: z, geom, (z.to(torch.float16),), act_z, testing.act_latents(geom)
        )
    # batch_size: the first input tensor need not be batch-first
    times = torch.zeros(7, dtype=F64)
    testing.assert_equivariant(
        lambda t, z: z,
        geom,
        (times, z),
        testing.act_args(testing.act_identity, testing.act_latents(geom)),
        testing.act_latents(geom),
        batch_size=2,
        num_samples=2,
    )


def test_random_latents_are_seeded_on_their_manifold_and_steerable() -> None:
    """``enf.testing.random_latents``: the same generator gives the same cloud, float64, poses of the geometry
    (unit positions and tangent orientations on the sphere), windows 0.7-1.3 times the default width; an ENF
    decoding them passes ``assert_steerable``."""
    from enf import EquivariantNeuralField
    from enf.testing import assert_steerable, random_latents

    geom = geometry.get("sphere")
    a = random_latents(geom, 2, 7, 4, generator=torch.Generator().manual_seed(3))
    b = random_latents("sphere", 2, 7, 4, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.to_tuple(), b.to_tuple(), strict=True))
    assert a.poses.dtype == F64 and a.context.shape == (2, 7, 4) and a.window.shape == (2, 7, 1)
    assert geom.manifold_error(a.poses).max() < 1e-12
    ratio = a.window / geom.default_window(7)
    assert 0.7 <= ratio.min() and ratio.max() <= 1.3
    model = EquivariantNeuralField(geometry=geom, num_out=2, context_dim=4, hidden_dim=16).double()
    x = geom.sample_coords(2, 20, generator=torch.Generator().manual_seed(4), dtype=F64)
    assert_steerable(model, geom, x, a)
