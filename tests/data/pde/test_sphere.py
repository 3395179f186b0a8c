"""Heat equation on S^2: grid conventions, exact spectral decay, conservation, uniform bump centres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("torch_harmonics")

from enf.data.pde import get_spec  # noqa: E402
from enf.data.pde.solvers.sphere import (  # noqa: E402
    DIFFUSION_SPHERE,
    bump_centre,
    gaussian_bump,
    grid_angles,
    grid_coords,
    grid_weights,
    heat_sphere_solution,
    random_unit_vectors,
    sht_pair,
)

D = 0.01


@pytest.mark.parametrize("grid", ["equiangular", "legendre-gauss"])
def test_grid_nodes_weights_and_orientation(grid):
    from torch_harmonics.examples import ShallowWaterSolver

    nlat, nlon = 24, 48
    colat, lon = grid_angles(nlat=nlat, nlon=nlon, grid=grid)
    solver = ShallowWaterSolver(nlat, nlon, 600.0, grid=grid)  # nodes: latitudes (north first), longitudes
    np.testing.assert_allclose(colat, 0.5 * np.pi - solver.lats.numpy(), atol=1e-12)
    np.testing.assert_allclose(lon, solver.lons.numpy(), atol=1e-12)
    x, w = grid_coords(nlat=nlat, nlon=nlon, grid=grid), grid_weights(nlat=nlat, nlon=nlon, grid=grid)
    assert x.shape == (nlat, nlon, 3) and w.shape == (nlat, nlon)
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-12)
    assert x[0, 0, 2] > x[1, 0, 2] > x[-2, 0, 2] > x[-1, 0, 2]  # north pole first
    assert x[nlat // 2, 0, 0] > 0.9 and abs(x[nlat // 2, 0, 1]) < 1e-12  # column 0 at longitude 0
    assert x[nlat // 2, nlon // 4, 1] > 0.9  # longitude increases eastwards (towards +y)
    if grid == "equiangular":
        np.testing.assert_allclose(x[0, :, 2], 1.0) and np.testing.assert_allclose(x[-1, :, 2], -1.0)
    assert abs(w.sum() - 4 * np.pi) < 1e-12
    assert abs((w * x[..., 2] ** 2).sum() - 4 * np.pi / 3) < 1e-10  # exact for low degrees
    assert abs((w * x[..., 0] * x[..., 1]).sum()) < 1e-12


def test_band_limited_coefficients_decay_exactly():
    nlat, nlon, lmax = 64, 128, 32
    sht, isht = sht_pair(nlat=nlat, nlon=nlon, lmax=lmax)
    gen = torch.Generator().manual_seed(1)
    coeffs = torch.randn(lmax, lmax, 2, generator=gen, dtype=torch.float64)
    coeffs = torch.tril(torch.view_as_complex(coeffs))  # m <= l
    coeffs[:, 0] = coeffs[:, 0].real  # a real field has real m = 0 coefficients
    coeffs[21:] = 0  # band limited: l <= 20
    u0 = isht(coeffs).numpy()
    times = np.array([0.0, 1.0, 7.5, 40.0])
    u = heat_sphere_solution(u0, times=times, diffusivity=D, lmax=lmax)
    got = sht(torch.as_tensor(u))  # [T, lmax, lmax]
    ell = np.arange(lmax)
    for k, t in enumerate(times):
        want = coeffs * torch.as_tensor(np.exp(-D * ell * (ell + 1) * t))[:, None]
        err = (got[k] - want).abs().max().item()
        assert err < 1e-11 * coeffs.abs().max().item(), (t, err)
    w = grid_weights(nlat=nlat, nlon=nlon)
    means = (u * w).sum(axis=(-2, -1))  # l = 0 is conserved
    np.testing.assert_allclose(means, means[0], rtol=0, atol=1e-12 * np.abs(u0).max())


def test_analytic_eigenfunctions():
    """z is a degree-1, xy and 3z^2 - 1 degree-2 eigenfunction of lap_S2 (eigenvalues -2, -6)."""
    x = grid_coords(nlat=64, nlon=128)
    u0 = x[..., 2] + 2 * x[..., 0] * x[..., 1] + 3 * x[..., 2] ** 2 - 1
    times = np.array([0.0, 3.0, 50.0])
    u = heat_sphere_solution(u0, times=times, diffusivity=D, lmax=32)
    for k, t in enumerate(times):
        degree2 = 2 * x[..., 0] * x[..., 1] + 3 * x[..., 2] ** 2 - 1
        want = np.exp(-2 * D * t) * x[..., 2] + np.exp(-6 * D * t) * degree2
        assert np.abs(u[k] - want).max() < 1e-12


def test_bump_centres_uniform_on_sphere():
    rng = np.random.default_rng(0)
    for c in (random_unit_vectors(rng, 4000), np.stack([bump_centre(s) for s in range(2000)])):
        np.testing.assert_allclose(np.linalg.norm(c, axis=-1), 1.0, atol=1e-12)
        assert np.abs(c.mean(0)).max() < 0.05  # E[x] = 0
        assert abs(np.abs(c[:, 2]).mean() - 0.5) < 0.03  # |z| ~ U(0, 1) for a uniform point
        assert abs((c[:, 2] ** 2).mean() - 1 / 3) < 0.03
        assert abs((c[:, 0] ** 2).mean() - 1 / 3) < 0.03


def test_spec_presets_shapes_and_determinism():
    assert get_spec("diffusion_sphere") is DIFFUSION_SPHERE
    paper = DIFFUSION_SPHERE.params("paper")
    assert (paper["num_train"], paper["num_test"], paper["nlat"], paper["nlon"]) == (512, 128, 64, 128)
    assert (paper["diffusivity"], paper["sigma"], paper["amplitude"]) == (0.01, 0.25, 1.0)
    assert (paper["num_frames"], paper["frame_interval"]) == (20, 5.0)
    params = DIFFUSION_SPHERE.params("small", num_frames=4)
    coords, times = DIFFUSION_SPHERE.coords(params), DIFFUSION_SPHERE.times(params)
    w = DIFFUSION_SPHERE.weights(params)
    assert coords.shape == (64, 128, 3) and coords.dtype == np.float32 and w.shape == (64, 128)
    np.testing.assert_allclose(times, [0, 5, 10, 15])
    fields = DIFFUSION_SPHERE.simulate(params, "train", [11, 12, 13])
    assert fields.shape == (3, 4, 64, 128, 1) and fields.dtype == np.float32
    np.testing.assert_array_equal(fields[1:2], DIFFUSION_SPHERE.simulate(params, "train", [12]))  # batching
    assert not np.array_equal(fields[0], fields[1])
    for k, seed in enumerate([11, 12, 13]):
        c = bump_centre(seed)
        ref = gaussian_bump(grid_coords(nlat=64, nlon=128), c, sigma=0.25, amplitude=1.0)
        assert np.abs(fields[k, 0, ..., 0] - ref).max() < 1e-6  # frame 0 is the bump itself
        peak = coords.reshape(-1, 3)[np.argmax(fields[k, -1, ..., 0])]
        assert math.acos(min(1.0, float(peak @ c))) < 0.1  # the heat stays centred on the bump
        assert np.all(np.diff(fields[k, :, ..., 0].max(axis=(-2, -1))) < 0)  # the peak decays
        mass = (fields[k, ..., 0].astype(np.float64) * w).sum(axis=(-2, -1))
        np.testing.assert_allclose(mass, mass[0], rtol=1e-6)
        d = np.linspace(0.0, np.pi, 20001)  # exact mass: 2 pi int_0^pi exp(-d^2 / (2 sigma^2)) sin d dd
        exact = 2 * np.pi * np.trapezoid(np.exp(-(d**2) / (2 * 0.25**2)) * np.sin(d), d)
        np.testing.assert_allclose(mass[0], exact, rtol=1e-6)


def test_writer_round_trip(tmp_path):
    from enf.data.pde.io import generate_split, open_trajectories, read_metadata

    params = DIFFUSION_SPHERE.params("small", num_train=3, num_frames=3)
    path = generate_split(
        DIFFUSION_SPHERE, params, split="train", out_dir=tmp_path, seed=5, chunk_size=2, progress=False
    )
    meta = read_metadata(path)
    assert meta["geometry"] == "sphere" and meta["fields_shape"] == (3, 3, 64, 128, 1)
    assert meta["parameters"]["diffusivity"] == 0.01
    with open_trajectories(path) as f:
        assert abs(float(f["weights"][:].sum()) - 4 * np.pi) < 1e-4


def test_stored_bump_centres_match_the_fields(tmp_path):
    """ic_params == the direction of each frame's first moment sum(w x u) (the bump is symmetric about c)."""
    from enf.data.pde import trajectory_seed
    from enf.data.pde.dataset import PDETrajectories
    from enf.data.pde.io import generate_split, read_ic_params, read_metadata

    params = DIFFUSION_SPHERE.params(
        "small", num_train=4, nlat=32, nlon=64, lmax=16, sigma=0.4, num_frames=3, frame_interval=20.0
    )
    path = generate_split(
        DIFFUSION_SPHERE, params, split="train", out_dir=tmp_path, seed=2, chunk_size=3, progress=False
    )
    assert read_metadata(path)["generator_version"] == "2"
    names, centres = read_ic_params(path)
    assert names == ["centre_x", "centre_y", "centre_z"] and centres.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 1.0, atol=1e-6)
    want = np.stack([bump_centre(trajectory_seed(2, "train", i)) for i in range(4)])
    np.testing.assert_allclose(centres, want, atol=1e-7)
    data = PDETrajectories(path)
    np.testing.assert_array_equal(data.ic_params, centres)
    coords, w = grid_coords(nlat=32, nlon=64).reshape(-1, 3), grid_weights(nlat=32, nlon=64).reshape(-1)
    for s in range(4):
        fields = data[s]["fields"].numpy()[..., 0].astype(np.float64)  # [T, N]
        moment = np.einsum("n,nd,tn->td", w, coords, fields)
        direction = moment / np.linalg.norm(moment, axis=-1, keepdims=True)
        np.testing.assert_allclose(direction, np.broadcast_to(centres[s], direction.shape), atol=2e-5)
        peak = coords[np.argmax(fields[0])]
        assert math.acos(min(1.0, float(peak @ centres[s]))) < math.pi / 31  # within a grid spacing
        other = centres[(s + 1) % 4]  # negative control: another trajectory's centre does not fit
        assert np.abs(direction[0] - other).max() > 0.1


def test_file_without_ic_params(tmp_path):
    import h5py

    from enf.data.pde.dataset import PDETrajectories
    from enf.data.pde.io import generate_split, read_ic_params

    params = DIFFUSION_SPHERE.params("small", num_test=1, nlat=16, nlon=32, lmax=8, sigma=0.6, num_frames=1)
    path = generate_split(DIFFUSION_SPHERE, params, split="test", out_dir=tmp_path, seed=0, progress=False)
    with h5py.File(path, "r+") as f:  # as written by generator_version 1
        del f["ic_params"]
    assert PDETrajectories(path).ic_params is None and PDETrajectories(path).ic_param_names is None
    with pytest.raises(ValueError, match="no 'ic_params'") as info:
        read_ic_params(path)
    assert "test.h5" in str(info.value)
