"""The shipped property checks in ``enf.testing`` accept what is right and reject what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from enf import geometry, testing
from enf.geometry import SE2

F64 = torch.float64


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
