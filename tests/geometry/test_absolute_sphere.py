"""The non-equivariant sphere control ``absolute_sphere``: hand values, the SO(3) action it is tested under,
the negative controls (bi-invariance, steerability and latent dynamics must fail) and the parts that stay
invariant (the geodesic window distance, hence the k-nearest selection)."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64

from enf import EquivariantNeuralField, Latents, geometry, testing
from enf.geometry import AbsoluteSphere, fibonacci_sphere

NAME = "absolute_sphere"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# -------------------------------------------------------------------------------------------- registry
def test_registered_as_a_control():
    geom = geometry.get(NAME)
    assert isinstance(geom, AbsoluteSphere) and geom.name == NAME
    assert NAME in geometry.names() and NAME in geometry.names(equivariant=False)
    assert NAME not in geometry.names(equivariant=True)
    assert set(geometry.names(equivariant=False)) == {"absolute2d", NAME}
    everything = sorted(geometry.names(equivariant=True) + geometry.names(equivariant=False))
    assert everything == geometry.names()
    with pytest.raises(TypeError, match="equivariant must be None, True or False, got 'yes'"):
        geometry.names(equivariant="yes")
    assert (geom.space_dim, geom.coord_dim, geom.pose_dim, geom.pose_blocks) == (3, 3, 3, (3,))
    assert (geom.invariant_dim, geom.pose_invariant_dim) == (3, 6)
    assert not geom.translates and not geom.periodic


# ----------------------------------------------------------------------------------------- hand values
def test_hand_computed_values():
    geom = geometry.get(NAME)
    # the invariant is the absolute coordinate, whatever the latent
    torch.testing.assert_close(geom.pair_invariant(t(0.6, 0.0, 0.8), t(0.0, 0.0, 2.0)), t(0.6, 0.0, 0.8))
    # the pose invariant is both (normalised) absolute positions: sender and receiver
    torch.testing.assert_close(
        geom.pose_invariant(t(0.0, 3.0, 4.0), t(2.0, 0.0, 0.0)), t(0.0, 0.6, 0.8, 1.0, 0.0, 0.0)
    )
    # geodesic window: a quarter circle, the antipode, the same point (poses need not be unit)
    torch.testing.assert_close(
        geom.pair_distance2(t(1.0, 0, 0), t(0, 0, 2.0)), torch.tensor(math.pi**2 / 4, dtype=F64)
    )
    torch.testing.assert_close(
        geom.pair_distance2(t(0, 0, 1.0), t(0, 0, -5.0)), torch.tensor(math.pi**2, dtype=F64)
    )
    torch.testing.assert_close(geom.pair_distance2(t(0, 1.0, 0), t(0, 3.0, 0)), torch.tensor(0.0, dtype=F64))


def test_all_pairs_against_independent_formulas():
    geom = geometry.get(NAME)
    x = geom.sample_coords(2, 7, generator=gen(1), dtype=F64)
    p = 1.5 * geom.sample_poses(2, 5, generator=gen(2), dtype=F64)  # off the sphere: projected inside
    a, d2 = geom.invariant(x, p), geom.distance2(x, p)
    assert a.shape == (2, 7, 5, 3) and d2.shape == (2, 7, 5)
    torch.testing.assert_close(a, x.unsqueeze(2).expand(-1, -1, 5, -1), atol=0, rtol=0)
    m = p / p.norm(dim=-1, keepdim=True)
    cosine = torch.einsum("bnd,bld->bnl", x, m).clamp(-1.0, 1.0)
    torch.testing.assert_close(d2, torch.arccos(cosine).square(), atol=1e-10, rtol=0)
    # the window distance is the one of the equivariant point-latent sphere geometry
    torch.testing.assert_close(d2, geometry.get("sphere_axial").distance2(x, p), atol=1e-12, rtol=0)
    b = geom.pose_invariant(p.unsqueeze(2), p.unsqueeze(1))  # [B, i, j, 6]
    torch.testing.assert_close(b[..., :3], m.unsqueeze(2).expand(-1, -1, 5, -1), atol=1e-15, rtol=0)
    torch.testing.assert_close(b[..., 3:], m.unsqueeze(1).expand(-1, 5, -1, -1), atol=1e-15, rtol=0)


# ---------------------------------------------------------------------------------- group and domain
def test_group_is_so3_without_translation():
    geom = geometry.get(NAME)
    g = geom.sample_group(64, generator=gen(3), dtype=F64)
    assert g.translation is None
    eye = torch.eye(3, dtype=F64).expand(64, 3, 3)
    torch.testing.assert_close(g.rotation.transpose(-1, -2) @ g.rotation, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(g.rotation), torch.ones(64, dtype=F64), atol=1e-12, rtol=0)
    # Haar: rotated poles cover the sphere (mean near 0, not all near a single axis)
    assert (g.rotation[:, :, 2].mean(0)).abs().max() < 0.3
    testing.assert_group_action(geom, generator=gen(4))
    x = geom.sample_coords(64, 5, generator=gen(5), dtype=F64)
    moved = geom.act_coords(g, x)
    torch.testing.assert_close(moved, torch.einsum("bij,bnj->bni", g.rotation, x), atol=1e-15, rtol=0)
    torch.testing.assert_close(geom.act_poses(g, x), moved, atol=0, rtol=0)  # poses are points too
    torch.testing.assert_close(moved.norm(dim=-1), torch.ones(64, 5, dtype=F64), atol=1e-12, rtol=0)


def test_initialisers():
    geom = geometry.get(NAME)
    for num_latents in (1, 12, 100):
        poses = geom.init_poses(num_latents, dtype=F64)
        torch.testing.assert_close(poses, fibonacci_sphere(num_latents), atol=0, rtol=0)
        assert geom.default_window(num_latents) == pytest.approx(math.sqrt(4.0 * math.pi / num_latents))
    assert geom.init_poses(4).dtype == torch.float32
    x = geom.sample_coords(4, 4096, generator=gen(6), dtype=F64)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(4, 4096, dtype=F64), atol=1e-12, rtol=0)
    # uniform on S^2: mean 0 and second moment I/3 (standard errors about 0.005 and 0.003)
    flat = x.reshape(-1, 3)
    assert flat.mean(0).abs().max() < 0.03
    second = flat.T @ flat / len(flat)
    torch.testing.assert_close(second, torch.eye(3, dtype=F64) / 3, atol=0.02, rtol=0)
    p = geom.sample_poses(2, 6, generator=gen(7), dtype=F64)
    torch.testing.assert_close(p.norm(dim=-1), torch.ones(2, 6, dtype=F64), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------ negative controls
def test_invariants_are_not_invariant():
    geom = geometry.get(NAME)
    with pytest.raises(AssertionError, match="absolute_sphere is not bi-invariant.*tolerance"):
        testing.assert_bi_invariant(geom, generator=gen(8))
    with pytest.raises(AssertionError, match="absolute_sphere pose_invariant is not invariant"):
        testing.assert_pose_invariant(geom, generator=gen(8))
    assert testing.bi_invariance_error(geom, generator=gen(9)) > 0.1
    assert testing.pose_invariance_error(geom, generator=gen(9)) > 0.1
    # the positive counterpart on the same data passes: the harness can tell them apart
    testing.assert_bi_invariant("sphere", generator=gen(8))


def test_window_distance_is_invariant():
    """Only ``distance2`` is invariant, so the k-nearest selection moves with the group (as for ``sphere``)."""
    geom = geometry.get(NAME)
    x = geom.sample_coords(3, 20, generator=gen(10), dtype=F64)
    p = geom.sample_poses(3, 9, generator=gen(11), dtype=F64)
    g = geom.sample_group(3, generator=gen(12), dtype=F64)
    d2, d2_moved = geom.distance2(x, p), geom.distance2(geom.act_coords(g, x), geom.act_poses(g, p))
    torch.testing.assert_close(d2_moved, d2, atol=1e-12, rtol=0)
    assert torch.equal(
        d2.topk(3, dim=-1, largest=False).indices, d2_moved.topk(3, dim=-1, largest=False).indices
    )


def _decoder(name: str, *, k_nearest: int | None) -> EquivariantNeuralField:
    torch.manual_seed(0)
    model = EquivariantNeuralField(
        geometry=name, num_out=2, context_dim=8, hidden_dim=16, num_heads=2, k_nearest=k_nearest
    )
    with torch.no_grad():  # move every parameter off its special initial value
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.double().eval()


def _latents(geom, *, seed: int) -> Latents:
    g = gen(seed)
    poses = geom.sample_poses(2, 12, generator=g, dtype=F64)
    context = torch.randn(2, 12, 8, generator=g, dtype=F64)
    window = torch.full((2, 12, 1), geom.default_window(12), dtype=F64)
    return Latents(poses=poses, context=context, window=window)


@pytest.mark.parametrize("k_nearest", [None, 4])
def test_decoder_is_not_steerable(k_nearest):
    geom = geometry.get(NAME)
    model = _decoder(NAME, k_nearest=k_nearest)
    x, z = geom.sample_coords(2, 24, generator=gen(13), dtype=F64), _latents(geom, seed=14)
    assert model(x, z).std(dim=1).min() > 1e-4  # not a constant field
    with pytest.raises(AssertionError, match="not steerable under absolute_sphere"):
        testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(15))
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(16)) > 1e-3
    # the equivariant sphere decoder, same coordinates and latent positions, passes the same check
    sphere = geometry.get("sphere")
    oriented = sphere.sample_poses(2, 12, generator=gen(17), dtype=F64)
    z_sphere = Latents(
        poses=torch.cat([z.poses, oriented[..., 3:]], dim=-1), context=z.context, window=z.window
    )
    error = testing.steerability_error(
        _decoder("sphere", k_nearest=k_nearest), sphere, x, z_sphere, num_elements=4, generator=gen(16)
    )
    assert error < 1e-9


def test_latent_dynamics_are_not_equivariant():
    field_module = pytest.importorskip("enf.dynamics.field")
    geom = geometry.get(NAME)
    torch.manual_seed(1)
    field = field_module.EquivariantLatentField(
        geometry=geom, context_dim=8, hidden_dim=16, basis_dim=16, num_layers=1, velocity_scale=1.0
    ).double()
    z = _latents(geom, seed=18)
    dz = field(0.0, z)
    # velocities are tangent to the sphere at the latent positions
    radial = (dz.poses * z.poses).sum(-1)
    torch.testing.assert_close(radial, torch.zeros_like(radial), atol=1e-12, rtol=0)
    assert dz.poses.abs().max() > 1e-3

    def velocity(latents: Latents) -> Latents:
        return field(0.0, latents)

    act_in = testing.act_args(testing.act_latents(geom))
    act_out = testing.act_latent_velocity(geom)
    with pytest.raises(AssertionError, match="not equivariant under absolute_sphere"):
        testing.assert_equivariant(velocity, geom, (z,), act_in, act_out, num_samples=2, generator=gen(19))
    # the same field on the equivariant sphere geometry passes the same check
    sphere = geometry.get("sphere")
    torch.manual_seed(1)
    sphere_field = field_module.EquivariantLatentField(
        geometry=sphere, context_dim=8, hidden_dim=16, basis_dim=16, num_layers=1, velocity_scale=1.0
    ).double()
    oriented = sphere.sample_poses(2, 12, generator=gen(20), dtype=F64)
    z_sphere = Latents(
        poses=torch.cat([z.poses, oriented[..., 3:]], dim=-1), context=z.context, window=z.window
    )
    testing.assert_equivariant(
        lambda latents: sphere_field(0.0, latents),
        sphere,
        (z_sphere,),
        testing.act_args(testing.act_latents(sphere)),
        testing.act_latent_velocity(sphere),
        num_samples=2,
        generator=gen(19),
    )
