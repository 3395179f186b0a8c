"""Rollouts: torchdiffeq against an exact linear flow, equivariance of the whole trajectory, bad input."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _dynamics_utils import make_field, random_latents
from torch import nn

from enf import geometry
from enf.dynamics import EquivariantLatentField, rollout
from enf.latents import Latents
from enf.testing import act_args, act_latents, assert_equivariant, equivariance_error


class LinearField(nn.Module):
    """``dc/dt = A c``, ``dp/dt = B p`` (per latent): the flow is ``exp(tA)``, ``exp(tB)``."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)
        self.b = nn.Parameter(b)

    def forward(self, t, z: Latents) -> Latents:
        return Latents(
            poses=z.poses @ self.b.T, context=z.context @ self.a.T, window=torch.zeros_like(z.window)
        )


def linear_case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = 0.5 * torch.randn(4, 4, generator=gen, dtype=F64)
    b = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)  # rotation: the poses circle
    z0 = Latents(
        poses=torch.randn(2, 3, 2, generator=gen, dtype=F64),
        context=torch.randn(2, 3, 4, generator=gen, dtype=F64),
        window=torch.ones(2, 3, 1, dtype=F64),
    )
    times = torch.linspace(0.0, 2.0, 5, dtype=F64)
    exact_c = torch.stack([z0.context @ torch.linalg.matrix_exp(t * a).T for t in times], dim=1)
    exact_p = torch.stack([z0.poses @ torch.linalg.matrix_exp(t * b).T for t in times], dim=1)
    return LinearField(a, b), z0, times, exact_p, exact_c


@pytest.mark.parametrize(
    ("method", "options", "tol"), [("rk4", {"step_size": 0.01}, 1e-9), ("dopri5", {}, 1e-6)]
)
def test_rollout_matches_the_exact_linear_flow(method: str, options: dict, tol: float) -> None:
    field, z0, times, exact_p, exact_c = linear_case()
    zs = rollout(field, z0, times, method=method, rtol=1e-10, atol=1e-10, **options)
    assert zs.poses.shape == (2, 5, 3, 2)
    torch.testing.assert_close(zs.poses, exact_p, rtol=0, atol=tol)
    torch.testing.assert_close(zs.context, exact_c, rtol=0, atol=tol)
    torch.testing.assert_close(zs.window, z0.window.unsqueeze(1).expand(-1, 5, -1, -1))


def test_euler_converges_at_first_order() -> None:
    field, z0, times, _, exact_c = linear_case()
    errors = [
        float((rollout(field, z0, times, method="euler", step_size=h).context - exact_c).abs().max())
        for h in (0.02, 0.01)
    ]
    assert 1.8 < errors[0] / errors[1] < 2.2  # halving the step halves the error


def test_adjoint_gradient_matches_backprop() -> None:
    field, z0, times, _, _ = linear_case()
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        zs = rollout(field, z0, times, method="dopri5", adjoint=adjoint, rtol=1e-10, atol=1e-10)
        (zs.context.square().sum() + zs.poses.square().sum()).backward()
        grads.append((field.a.grad.clone(), field.b.grad.clone()))
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["se2", "torus2d", "sphere", "sphere_axial", "ball"])
def test_rollout_is_equivariant(name: str) -> None:
    """rollout(g.z0) = g.rollout(z0) at every output time (rk4, float64)."""
    geom = geometry.get(name)
    field, z0 = make_field(geom), random_latents(geom, batch_size=2, num_latents=5)
    times = torch.linspace(0.0, 1.0, 4, dtype=F64)
    assert_equivariant(
        lambda z: rollout(field, z, times, method="rk4"),
        geom,
        (z0,),
        act_args(act_latents(geom)),
        act_latents(geom),
        num_samples=3,
        generator=torch.Generator().manual_seed(4),
    )


def test_rollout_negative_control() -> None:
    geom = geometry.get("absolute2d")
    field, z0 = make_field(geom), random_latents(geom, batch_size=2, num_latents=5)
    times = torch.linspace(0.0, 1.0, 4, dtype=F64)
    err = equivariance_error(
        lambda z: rollout(field, z, times, method="rk4"),
        geom,
        (z0,),
        act_args(act_latents(geom)),
        act_latents(geom),
    )
    assert err > 1e-3


def test_output_at_arbitrary_times_is_consistent() -> None:
    """Outputs at uneven times agree with a dense rollout sampled at those times (dopri5, tight tolerance)."""
    geom = geometry.get("se2")
    field, z0 = make_field(geom), random_latents(geom, batch_size=1, num_latents=4)
    dense = torch.linspace(0.0, 1.0, 11, dtype=F64)
    uneven = dense[[0, 3, 4, 10]]
    a = rollout(field, z0, dense, method="dopri5", rtol=1e-10, atol=1e-10)
    b = rollout(field, z0, uneven, method="dopri5", rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(b.poses, a.poses[:, [0, 3, 4, 10]], rtol=0, atol=1e-8)
    torch.testing.assert_close(b.at_time(0).poses, z0.poses)


def test_rollout_bad_inputs() -> None:
    geom = geometry.get("se2")
    field, z0 = make_field(geom), random_latents(geom)
    with pytest.raises(ValueError, match="unknown ODE method 'leapfrog'"):
        rollout(field, z0, torch.arange(3.0, dtype=F64), method="leapfrog")
    with pytest.raises(ValueError, match="strictly increasing"):
        rollout(field, z0, torch.tensor([0.0, 1.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="step_size applies"):
        rollout(field, z0, torch.arange(3.0, dtype=F64), method="dopri5", step_size=0.1)
    with pytest.raises(TypeError, match="without a time axis"):
        rollout(field, z0.map(lambda t: t.unsqueeze(1)), torch.arange(3.0, dtype=F64))
    assert isinstance(field, EquivariantLatentField)
