"""The latent vector field: F(g.z) = g_* F(z) for every equivariant geometry, with negative controls."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _dynamics_utils import make_field, random_latents

from enf import geometry
from enf.dynamics import EquivariantLatentField, MLPLatentField
from enf.latents import Latents
from enf.testing import act_args, act_latent_velocity, act_latents, assert_equivariant, equivariance_error

EQUIVARIANT = geometry.names(equivariant=True)
CONTROLS = geometry.names(equivariant=False)


def check(field, geom, z, **kwargs) -> None:
    assert_equivariant(
        lambda z: field(0.0, z), geom, (z,), act_args(act_latents(geom)), act_latent_velocity(geom), **kwargs
    )


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_field_is_equivariant_float64(name: str) -> None:
    geom = geometry.get(name)
    field, z = make_field(geom), random_latents(geom)
    check(field, geom, z, generator=torch.Generator().manual_seed(1))
    v = field(0.0, z)
    assert v.poses.abs().max() > 1e-3 and v.context.abs().max() > 1e-3  # not trivially zero
    assert torch.equal(v.window, torch.zeros_like(z.window))


@pytest.mark.parametrize("name", ["se2", "torus2d", "sphere", "ball"])
def test_field_is_equivariant_float32(name: str) -> None:
    geom = geometry.get(name)
    field, z = make_field(geom, dtype=torch.float32), random_latents(geom, dtype=torch.float32)
    check(field, geom, z, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("name", CONTROLS)
def test_negative_control_is_not_equivariant(name: str) -> None:
    geom = geometry.get(name)
    field, z = make_field(geom), random_latents(geom)
    with pytest.raises(AssertionError, match="not equivariant"):
        check(field, geom, z)


def test_broken_relative_vector_is_caught() -> None:
    """A field whose position velocity uses absolute positions instead of q_j - q_i fails the test."""
    geom = geometry.get("se2")
    field, z = make_field(geom), random_latents(geom)

    class Broken(EquivariantLatentField):
        def _pair_vectors(self, poses, node):
            out = super()._pair_vectors(poses, node)
            return out + poses[:, None, :, None, :2]  # adds q_j: moves with translations

    broken = Broken(geometry=geom, context_dim=5, hidden_dim=16, basis_dim=16, velocity_scale=1.0).double()
    broken.load_state_dict(field.state_dict())
    act = act_args(act_latents(geom))
    good = equivariance_error(lambda z: field(0.0, z), geom, (z,), act, act_latent_velocity(geom))
    bad = equivariance_error(lambda z: broken(0.0, z), geom, (z,), act, act_latent_velocity(geom))
    assert good < 1e-12 and bad > 1e-3


@pytest.mark.parametrize("name", ["isotropic2d"])
def test_groups_with_reflections_get_no_chiral_terms(name: str) -> None:
    """E(2) contains reflections: the 90-degree rotated vectors are left out, so the field stays equivariant."""
    geom = geometry.get(name)
    field = make_field(geom)
    assert not field.chiral and field.num_pair_vectors == 1
    check(field, geom, random_latents(geom), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", ["sphere", "sphere_axial", "absolute_sphere"])
def test_sphere_position_velocity_is_tangent(name: str) -> None:
    geom = geometry.get(name)
    z = random_latents(geom)
    v = make_field(geom)(0.0, z).poses[..., :3]
    n = torch.nn.functional.normalize(z.poses[..., :3], dim=-1)
    assert (v * n).sum(-1).abs().max() < 1e-12 and v.abs().max() > 1e-3


def test_torus_relative_positions_wrap() -> None:
    """Two latents close across the seam interact as neighbours: the velocity equals that of the unwrapped pair."""
    geom = geometry.get("torus2d")
    field = make_field(geom)
    ctx = torch.randn(1, 2, 5, dtype=F64)
    window = torch.ones(1, 2, 1, dtype=F64)
    across = Latents(poses=torch.tensor([[[0.95, 0.0], [-0.95, 0.1]]], dtype=F64), context=ctx, window=window)
    inside = Latents(poses=torch.tensor([[[-0.05, 0.0], [0.05, 0.1]]], dtype=F64), context=ctx, window=window)
    torch.testing.assert_close(field(0.0, across).poses, field(0.0, inside).poses, rtol=0, atol=1e-12)


def test_every_parameter_gets_a_gradient() -> None:
    geom = geometry.get("ball")
    field, z = make_field(geom), random_latents(geom)
    v = field(0.0, z)
    (v.poses.square().sum() + v.context.square().sum()).backward()
    missing = [n for n, p in field.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing and all(p.grad.abs().sum() > 0 for p in field.parameters())


def test_bad_inputs_name_the_problem() -> None:
    geom = geometry.get("se2")
    field, z = make_field(geom), random_latents(geom)
    with pytest.raises(ValueError, match="context_dim 5"):
        field(0.0, z.replace(context=torch.zeros(3, 6, 4, dtype=F64)))
    with pytest.raises(ValueError, match="time axis"):
        field(0.0, z.map(lambda t: t.unsqueeze(1)))
    with pytest.raises(TypeError, match="expects Latents"):
        field(0.0, z.poses)
    with pytest.raises(ValueError, match="hidden_dim must be a positive int"):
        EquivariantLatentField(geometry=geom, context_dim=5, hidden_dim=0)


def test_mlp_field_moves_only_the_context() -> None:
    """The vector-latent baseline: poses fixed, context velocity = the MLP of the concatenated contexts."""
    geom = geometry.get("absolute2d")
    z = random_latents(geom, num_latents=2)
    torch.manual_seed(0)
    field = MLPLatentField(
        geometry=geom, context_dim=5, num_latents=2, hidden_dim=8, velocity_scale=1.0
    ).double()
    v = field(0.0, z)
    assert torch.equal(v.poses, torch.zeros_like(z.poses))
    flat = torch.cat([z.context[:, 0], z.context[:, 1]], dim=-1)  # independent of einops
    torch.testing.assert_close(torch.cat([v.context[:, 0], v.context[:, 1]], -1), field.mlp(flat))
    with pytest.raises(ValueError, match="2 latents"):
        field(0.0, random_latents(geom, num_latents=3))


@pytest.mark.parametrize("name", CONTROLS)
def test_nonequivariant_field_tells_its_latents_apart(name: str) -> None:
    """The non-equivariant baseline sees both endpoints of every edge: latents with equal contexts at
    different positions get different context velocities (with the sender's position alone every receiver
    got the same messages, and the velocities agreed to 4e-16)."""
    geom = geometry.get(name)
    field = make_field(geom)
    z = random_latents(geom)
    same = z.replace(context=z.context[:, :1].expand_as(z.context).clone())
    d_context = field(0.0, same).context  # [B, L, C]
    spread = (d_context - d_context[:, :1]).abs().amax(dim=(1, 2))
    assert bool((spread > 1e-4).all()), spread
    # the pose invariant carries the receiver: changing only j changes the edge feature of (i, j)
    p = z.poses
    a = geom.pose_invariant(p[:, :1], p[:, 1:2])
    b = geom.pose_invariant(p[:, :1], p[:, 2:3])
    assert (a - b).abs().max() > 1e-3
