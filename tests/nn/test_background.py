"""The zonal background of a decoder: exact interpolation of its rows, invariance under rotations about the
axis (and not under tilts), a ``sphere_axial`` field that keeps its exact equivariance with it, and refusal
where it would break the symmetry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _common import F64

from enf import EquivariantNeuralField, Latents, geometry
from enf.nn import ZonalProfile
from enf.nn.background import check_background
from enf.testing import (
    act_args,
    act_coords,
    act_identity,
    act_latents,
    assert_equivariant,
    equivariance_error,
)


def profile(num_rows: int = 9, num_channels: int = 2, seed: int = 0) -> ZonalProfile:
    g = torch.Generator().manual_seed(seed)
    lat = torch.linspace(-1.4, 1.4, num_rows, dtype=F64) + 0.05 * torch.rand(num_rows, generator=g, dtype=F64)
    return ZonalProfile(latitudes=lat, values=torch.randn(num_rows, num_channels, generator=g, dtype=F64))


def unit_vectors(num: int, seed: int = 1) -> torch.Tensor:
    x = torch.randn(num, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x / x.norm(dim=-1, keepdim=True)


def rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """Rodrigues' formula, float64 ``[3, 3]``."""
    a = axis / axis.norm()
    k = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=F64)
    return torch.eye(3, dtype=F64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def test_interpolates_its_rows_like_numpy() -> None:
    bg = profile()
    x = unit_vectors(500)
    lat = np.arcsin(x[:, 2].numpy())
    nodes, values = bg.latitudes.double().numpy(), bg.values.double().numpy()
    expected = np.stack(
        [np.interp(lat, nodes, values[:, c]) for c in range(2)], axis=-1
    )  # clamps at the ends
    np.testing.assert_allclose(bg(x).numpy(), expected, rtol=0, atol=1e-12)
    at_rows = torch.stack(
        [torch.cos(bg.latitudes.double()), torch.zeros(9, dtype=F64), torch.sin(bg.latitudes.double())], -1
    )
    torch.testing.assert_close(bg(at_rows), bg.values.double(), rtol=0, atol=1e-12)


def test_invariant_under_rotations_about_the_axis_not_under_tilts() -> None:
    bg, x = profile(), unit_vectors(300)
    z_axis = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    for angle in torch.rand(8, generator=torch.Generator().manual_seed(2), dtype=F64) * 2 * math.pi:
        r = rotation(z_axis, float(angle))
        assert (bg(x @ r.T) - bg(x)).abs().max() <= 1e-12
    tilt = rotation(torch.tensor([1.0, 0.3, 0.0], dtype=F64), 0.4)
    assert (bg(x @ tilt.T) - bg(x)).abs().max() > 1e-2  # the negative control


def test_round_trip_and_bad_profiles() -> None:
    bg = profile()
    again = ZonalProfile.from_dict(bg.to_dict())
    x = unit_vectors(50).float()
    assert torch.equal(again(x), bg(x))
    with pytest.raises(ValueError, match="increase strictly"):
        ZonalProfile(latitudes=[0.2, 0.1], values=[[0.0], [1.0]])
    with pytest.raises(ValueError, match=r"values \[R, C\]"):
        ZonalProfile(latitudes=[0.1, 0.2, 0.3], values=[[0.0], [1.0]])
    with pytest.raises(ValueError, match="finite"):
        ZonalProfile(latitudes=[0.1, 0.2], values=[[0.0], [float("nan")]])
    with pytest.raises(ValueError, match="unknown background kind"):
        ZonalProfile.from_dict({"kind": "mean_field"})
    with pytest.raises(ValueError, match="3-D unit vectors"):
        bg(torch.zeros(4, 2))


def _field(geom: str, bg: ZonalProfile | None) -> EquivariantNeuralField:
    torch.manual_seed(0)
    field = EquivariantNeuralField(
        geometry=geom, num_out=2, context_dim=8, hidden_dim=16, num_heads=2
    ).double()
    field.background = bg
    return field


def _latents(geom: str, batch_size: int = 4, num_latents: int = 5) -> Latents:
    g = geometry.get(geom)
    gen = torch.Generator().manual_seed(3)
    return Latents(
        poses=g.sample_poses(batch_size, num_latents, generator=gen, dtype=F64),
        context=torch.randn(batch_size, num_latents, 8, generator=gen, dtype=F64),
        window=torch.full((batch_size, num_latents, 1), 0.7, dtype=F64),
    )


def test_sphere_axial_field_with_background_stays_equivariant() -> None:
    bg = profile(num_channels=2)
    field = _field("sphere_axial", bg.double())
    coords, z = unit_vectors(4 * 64).reshape(4, 64, 3), _latents("sphere_axial")
    out = field(coords, z)
    field.background = None
    torch.testing.assert_close(out - field(coords, z), bg.double()(coords), rtol=0, atol=1e-12)  # added as is
    field.background = bg.double()
    act = act_args(act_coords("sphere_axial"), act_latents("sphere_axial"))
    assert_equivariant(field, "sphere_axial", (coords, z), act, act_identity, atol=1e-10, rtol=0)
    # the negative control: the full rotation group moves the profile (the latents alone stay equivariant)
    sphere_field = _field("sphere", bg.double())
    err = equivariance_error(
        sphere_field,
        "sphere",
        (coords, _latents("sphere")),
        act_args(act_coords("sphere"), act_latents("sphere")),
        act_identity,
    )
    assert err > 1e-3


def test_refused_where_it_breaks_the_symmetry_or_the_width() -> None:
    with pytest.raises(ValueError, match="not invariant under the rotations of geometry 'sphere'"):
        check_background(profile(), geometry_name="sphere", num_out=2)
    with pytest.raises(ValueError, match="num_out=3"):
        check_background(profile(), geometry_name="sphere_axial", num_out=3)
    check_background(profile(), geometry_name="sphere_axial", num_out=2)
