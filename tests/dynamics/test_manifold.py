"""Poses stay on their manifold during rollouts (sphere, ball): tangent velocities, retraction after every
solver step, equivariance of long rollouts, with the unprojected field as the control that drifts."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _dynamics_utils import make_field, random_latents

from enf import geometry
from enf.dynamics import rollout
from enf.geometry import Geometry
from enf.testing import act_latents, equivariance_error

CURVED = ["sphere", "sphere_axial", "absolute_sphere", "ball"]


def test_curved_geometries_are_the_sphere_and_the_ball() -> None:
    assert sorted(n for n in geometry.names() if geometry.get(n).curved) == sorted(CURVED)


@pytest.mark.parametrize("name", CURVED)
def test_retraction_keeps_the_decoded_invariants_and_is_equivariant(name: str) -> None:
    geom = geometry.get(name)
    gen = torch.Generator().manual_seed(0)
    poses = 0.8 * geom.sample_poses(2, 7, generator=gen, dtype=F64)  # off the manifold
    x = geom.sample_coords(2, 11, generator=gen, dtype=F64)
    back = geom.retract(poses)
    assert geom.manifold_error(poses).max() > 1e-2 and geom.manifold_error(back).max() < 1e-14
    torch.testing.assert_close(geom.invariant(x, back), geom.invariant(x, poses), rtol=0, atol=1e-13)
    torch.testing.assert_close(geom.distance2(x, back), geom.distance2(x, poses), rtol=0, atol=1e-13)
    torch.testing.assert_close(geom.retract(back), back, rtol=0, atol=1e-15)  # a projection
    g = geom.sample_group(2, generator=gen, dtype=F64)
    torch.testing.assert_close(
        geom.retract(geom.act_poses(g, poses)), geom.act_poses(g, back), rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("name", ["sphere", "ball"])
def test_every_pose_velocity_is_tangent(name: str) -> None:
    """The velocity keeps every constraint to first order: d/dt |n|^2 = 0, d/dt |t|^2 = 0, d/dt <n, t> = 0
    (sphere); d/dt <u, u> = <v, v> = <u, v> = 0 (ball frame), checked by a finite difference."""
    geom = geometry.get(name)
    z = random_latents(geom)
    z = z.replace(poses=geom.retract(z.poses))
    v = make_field(geom)(0.0, z).poses
    h = 1e-6
    drift = geom.manifold_error(z.poses + h * v).max() / h
    assert drift < 1e-4, drift  # second order: O(h |v|^2)
    raw = geom.manifold_error(z.poses + h * torch.randn_like(v)).max() / h  # a random velocity is not tangent
    assert raw > 1e-2


@pytest.mark.parametrize("name", ["sphere", "ball"])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_long_rollouts_stay_on_the_manifold_and_equivariant(name: str, method: str) -> None:
    """40 frames of a random order-one field: every state on the manifold to 1e-9 and the rollout
    equivariant to 1e-9; without the retraction the same Euler rollout leaves the manifold."""
    geom = geometry.get(name)
    field = make_field(geom)
    z0 = random_latents(geom, seed=1)
    z0 = z0.replace(poses=1.7 * z0.poses)  # off the manifold: the rollout retracts it first
    times = torch.linspace(0.0, 4.0, 41, dtype=F64)
    with torch.no_grad():
        zs = rollout(field, z0, times, method=method)
        assert geom.manifold_error(zs.poses).max() < 1e-9
        assert (zs.poses[:, -1] - zs.poses[:, 0]).abs().max() > 0.1  # the latents moved
        err = equivariance_error(
            lambda z: rollout(field, z, times, method=method).at_time(len(times) - 1),
            geom,
            (z0,),
            lambda g, args: (act_latents(geom)(g, args[0]),),
            act_latents(geom),
            generator=torch.Generator().manual_seed(2),
        )
        assert err < 1e-9, err
        if method == "euler":
            flat = geometry.get("translation3d")  # a flat pose space: nothing is retracted
            drifting = rollout(field, z0, times, method=method, geometry=flat)
            assert geom.manifold_error(drifting.poses).max() > 1e-2


def test_substeps_are_retracted_and_converge() -> None:
    """With ``step_size`` every sub-step is retracted (states stay on the sphere) and Euler converges to
    the rk4 solution as the step shrinks."""
    geom = geometry.get("sphere")
    field = make_field(geom)
    z0 = random_latents(geom, seed=3)
    times = torch.linspace(0.0, 1.0, 3, dtype=F64)
    with torch.no_grad():
        ref = rollout(field, z0, times, method="rk4", step_size=0.01).poses
        errors = []
        for step in (0.1, 0.05):
            zs = rollout(field, z0, times, method="euler", step_size=step)
            assert geom.manifold_error(zs.poses).max() < 1e-12
            errors.append(float((zs.poses - ref).abs().max()))
    assert errors[1] < 0.7 * errors[0], errors


def test_gradients_flow_through_the_retraction() -> None:
    geom = geometry.get("ball")
    field = make_field(geom)
    z0 = random_latents(geom)
    zs = rollout(field, z0, torch.linspace(0.0, 1.0, 4, dtype=F64), method="rk4")
    (zs.poses.square().sum() + zs.context.square().sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


def test_flat_geometries_are_not_retracted() -> None:
    geom: Geometry = geometry.get("se2")
    assert not geom.curved
    z = random_latents(geom)
    assert torch.equal(geom.retract(z.poses), z.poses)
    assert torch.equal(geom.manifold_error(z.poses), torch.zeros(z.poses.shape[:-1], dtype=F64))
    zs = rollout(make_field(geom), z, torch.linspace(0.0, 1.0, 3, dtype=F64), method="euler")
    assert torch.equal(zs.at_time(0).poses, z.poses)  # the initial latent is returned as it is
