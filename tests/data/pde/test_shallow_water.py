"""Shallow water on the sphere: solver equivalence, steady balanced states, mass, grids, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from enf.data.pde.dataset import PDETrajectories

pytest.importorskip("torch_harmonics")

from enf.data.pde import get_spec, trajectory_seed  # noqa: E402
from enf.data.pde.solvers.shallow_water import (  # noqa: E402
    SHALLOW_WATER_SPHERE,
    coords_full,
    draw_perturbation,
    galewsky_state,
    get_solver,
    hyperdiffusion_factor,
    integrate,
    pool_to_training_grid,
    simulate_full,
    spectral_to_huv,
    tendency,
    weights_full,
    williamson2_state,
)
from enf.data.pde.solvers.sphere import angles_to_unit_vectors, grid_angles  # noqa: E402

SPEC = SHALLOW_WATER_SPHERE
# small grid, 6-hourly frames from t = 0: a fast trajectory for the tests
SHORT = {"skip_frames": 0, "num_frames": 5, "steps_per_frame": 36}


@pytest.fixture(scope="module")
def params():
    return SPEC.params("small")


@pytest.fixture(scope="module")
def solver(params):
    return get_solver(params)


def test_tendency_and_stepper_match_the_solver(params, solver):
    with torch.no_grad():
        u0 = galewsky_state(solver, hpert=150.0, alpha=0.3, beta=0.08)
        ref = solver.dudtspec(u0.clone())
        assert (tendency(solver, u0) - ref).abs().max() < 1e-12 * ref.abs().max()
        batch = torch.stack([u0, williamson2_state(solver)])
        assert (tendency(solver, batch)[0] - ref).abs().max() < 1e-12 * ref.abs().max()  # batched = single
        damp = hyperdiffusion_factor(solver, dt=params["dt"], timescale=7200.0, order=4)
        torch.testing.assert_close(damp, solver.hyperdiff, rtol=0, atol=0)
        mine = integrate(solver, u0[None], dt=params["dt"], save_steps=[0, 20])[0]
        theirs = solver.timestep(u0.clone(), 20)  # restarts its multistep history on every call
        torch.testing.assert_close(mine[0], u0)
        assert (mine[1] - theirs).abs().max() < 1e-12 * theirs.abs().max()


def _relative_change(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """max |last - first| per channel over the scale of the initial state (h: its range, u/v: max |u|)."""
    scale = np.array([np.ptp(first[..., 0]), np.abs(first[..., 1]).max(), np.abs(first[..., 1]).max()])
    return np.abs(last - first).max(axis=(0, 1)) / scale


@pytest.mark.parametrize("case", ["williamson2", "galewsky_unperturbed"])
def test_balanced_zonal_flow_stays_steady_for_a_day(params, solver, case):
    day = round(86400 / params["dt"])
    with torch.no_grad():
        if case == "williamson2":  # exact steady solution; hyperdiffusion as in the solver (l = 1 untouched)
            u0, tau = williamson2_state(solver), params["hyperdiffusion_timescale"]
        else:  # nonlinearly balanced jet (no bump); hyperdiffusion off, as it erodes a T21 jet
            u0, tau = galewsky_state(solver, hpert=0.0), math.inf
        states = integrate(
            solver, u0[None], dt=params["dt"], save_steps=[0, day], hyperdiffusion_timescale=tau
        )
        f = spectral_to_huv(solver, states[0], nlat=params["nlat"], nlon=params["nlon"]).numpy()
    change = _relative_change(f[0], f[1])
    assert np.all(change < 1e-6), change
    assert np.abs(f[0, ..., 2]).max() < 1e-9 * np.abs(f[0, ..., 1]).max()  # purely zonal


def test_williamson2_fields_match_the_analytic_state(params, solver):
    u0, a, omega, g = 2 * math.pi * 6.37122e6 / (12 * 86400.0), 6.37122e6, 7.292e-5, 9.80616
    with torch.no_grad():
        state = williamson2_state(solver, u0=u0)
        f = spectral_to_huv(solver, state, nlat=params["nlat"], nlon=params["nlon"]).numpy()
    colat, _ = grid_angles(nlat=params["nlat"], nlon=params["nlon"])
    lat = (0.5 * np.pi - colat)[:, None]
    h = -(a * omega * u0 + 0.5 * u0**2) * (np.sin(lat) ** 2 - 1.0 / 3.0) / g
    assert np.abs(f[..., 0] - h).max() < 1e-6  # height anomaly, m
    assert np.abs(f[..., 1] - u0 * np.cos(lat)).max() < 1e-9  # eastward u
    assert np.abs(f[..., 2]).max() < 1e-9  # northward v


def test_mass_conserved_on_both_grids_and_pooling(params):
    p = SPEC.params("small", **SHORT)
    full = simulate_full(p, "train", [3, 4])
    both = SPEC.simulate(p, "train", [3, 4])
    low = both["fields"]
    np.testing.assert_array_equal(both["fields_full"], full)
    np.testing.assert_array_equal(low, pool_to_training_grid(full, p))  # one solve serves both grids
    assert full.shape == (2, 5, 32, 64, 3) and low.shape == (2, 5, 16, 32, 3)
    assert np.isfinite(full).all() and np.abs(full[..., 2]).max() > 1e-3  # the bump excites motion
    total = 4 * np.pi * p["havg"]  # area integral of the mean depth (unit sphere)
    for fields, w in ((full, weights_full(p)), (low, SPEC.weights(p))):
        mass = (fields[..., 0].astype(np.float64) * w).sum(axis=(-2, -1))  # integral of h - havg
        assert np.abs(mass - mass[:, :1]).max() / total < 1e-9, mass
    mass_full = (full[..., 0].astype(np.float64) * weights_full(p)).sum(axis=(-2, -1))
    mass_low = (low[..., 0].astype(np.float64) * SPEC.weights(p)).sum(axis=(-2, -1))
    np.testing.assert_allclose(mass_low, mass_full, rtol=0, atol=1e-8 * total)  # pooling keeps integrals


def test_grids_times_and_presets(params):
    assert get_spec("shallow_water_sphere") is SPEC
    cf, wf = coords_full(params), weights_full(params)
    c, w = SPEC.coords(params), SPEC.weights(params)
    assert cf.shape == (32, 64, 3) and wf.shape == (32, 64) and c.shape == (16, 32, 3) and w.shape == (16, 32)
    for x in (cf, c):
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose([wf.sum(), w.sum()], 4 * np.pi, rtol=1e-6)
    block = cf[:2, :2].reshape(-1, 3).mean(0)  # coarse node near the 2x2 block it averages
    assert float(block @ c[0, 0]) / np.linalg.norm(block) > 0.99
    extra = SPEC.extra_arrays(params)
    np.testing.assert_array_equal(extra["coords_full"], cf)
    np.testing.assert_array_equal(extra["weights_full"], wf)
    times = SPEC.times(params)
    assert len(times) == 14 and times[0] == pytest.approx(100.0)
    assert np.diff(times) == pytest.approx(60000 / 3600, abs=1e-3)
    paper = SPEC.params("paper")
    assert (paper["num_train"], paper["num_test"]) == (512, 128)
    assert (paper["nlat"], paper["nlon"], paper["num_frames"], paper["skip_frames"]) == (96, 192, 14, 6)
    assert paper["steps_per_frame"] * paper["dt"] == params["steps_per_frame"] * params["dt"] == 60000.0
    for p in (params, paper):  # the Gauss simulation grid is alias-free for quadratic products
        assert 2 * p["solver_nlat"] >= 3 * p["lmax"] + 1 and p["solver_nlon"] >= 3 * p["lmax"] + 1


def test_seeded_perturbations_and_determinism(params):
    draws = [draw_perturbation(params, s) for s in range(200)]
    for key, centre, spread in (("hpert", 120.0, 30.0), ("alpha", 1 / 3, 1 / 9), ("beta", 1 / 15, 1 / 45)):
        v = np.array([d[key] for d in draws])
        assert np.all(np.abs(v - centre) <= spread) and v.std() > 0.4 * spread  # ~ U(centre +- spread)
    assert all(d["lon2"] == 0.0 for d in draws)
    p = SPEC.params("small", skip_frames=0, num_frames=2, steps_per_frame=18)
    a = SPEC.simulate(p, "train", [21, 22])["fields"]
    np.testing.assert_array_equal(a, SPEC.simulate(p, "train", [21, 22])["fields"])
    b = SPEC.simulate(p, "train", [22])["fields"]  # another batching: equal up to round-off
    np.testing.assert_allclose(a[1:], b, rtol=0, atol=1e-4 * np.abs(a[..., 0]).max())
    assert np.abs(a[0, -1] - a[1, -1]).max() > 1e-2


@pytest.mark.slow
def test_perturbed_jet_becomes_unstable_at_t42():
    """The published dynamics: at T42 the bump triggers the barotropic instability of the jet (v grows to
    tens of m/s within a week), while the unperturbed balanced jet stays zonal."""
    p = SPEC.params("paper")
    solver = get_solver(p)
    steps = [round(h * 3600 / p["dt"]) for h in (0, 72, 144)]
    with torch.no_grad():
        u0 = torch.stack([galewsky_state(solver, hpert=120.0), galewsky_state(solver, hpert=0.0)])
        states = integrate(solver, u0, dt=p["dt"], save_steps=steps)
        f = spectral_to_huv(solver, states, nlat=48, nlon=96).numpy()
    vmax = np.abs(f[..., 2]).max(axis=(-2, -1))  # [2, 3]
    assert vmax[0, 2] > 10.0 and vmax[0, 2] > 5 * vmax[0, 1] > 0, vmax
    assert vmax[1].max() < 0.05, vmax  # only a weak zonal-mean adjustment to the hyperdiffused jet


def test_writer_round_trip(tmp_path):
    from enf.data.pde.io import generate_split, open_trajectories, read_ic_params, read_metadata

    params = SPEC.params("small", num_test=2, **SHORT)
    path = generate_split(SPEC, params, split="test", out_dir=tmp_path, seed=0, chunk_size=1, progress=False)
    assert read_metadata(path)["fields_shape"] == (2, 5, 16, 32, 3)
    with open_trajectories(path) as f:
        assert f["coords_full"].shape == (32, 64, 3) and f["weights_full"].shape == (32, 64)
        assert list(f.attrs["channel_names"]) == ["h", "u", "v"]
        second = SPEC.simulate(params, "test", [trajectory_seed(0, "test", 1)])
        np.testing.assert_array_equal(f["fields"][1], second["fields"][0])
        np.testing.assert_array_equal(f["fields_full"][1], second["fields_full"][0])
    names, ic = read_ic_params(path)
    assert names == ["hpert", "alpha", "beta", "lon2"] and read_metadata(path)["generator_version"] == "2"
    for i in range(2):
        draw = draw_perturbation(params, trajectory_seed(0, "test", i))
        np.testing.assert_allclose(ic[i], [draw[n] for n in names], rtol=1e-6)
    assert np.all(np.abs(ic[:, 0] - 120.0) <= 30.0) and ic[0, 0] != ic[1, 0]
    stored_coords = PDETrajectories(path).coords.numpy()  # the block centroids, flattened row-major
    np.testing.assert_array_equal(stored_coords, SPEC.coords(params).reshape(-1, 3))
    full = PDETrajectories(path, resolution="full")[1]
    assert full["fields"].shape == (5, 32 * 64, 3) and full["coords"].shape == (32 * 64, 3)
    np.testing.assert_array_equal(full["fields"].numpy(), second["fields_full"][0].reshape(5, -1, 3))


def test_training_coords_are_area_weighted_block_centroids(params):
    """Coarse coords == normalise(sum(w x) / sum(w)) of each 2x2 block, by a loop and in closed form."""
    from enf.data.pde.solvers.sphere import grid_coords, grid_weights

    nlat, nlon = params["nlat"], params["nlon"]
    x, w = grid_coords(nlat=nlat, nlon=nlon), grid_weights(nlat=nlat, nlon=nlon)
    coarse = SPEC.coords(params).astype(np.float64)
    assert coarse.shape == (nlat // 2, nlon // 2, 3)
    loop = np.empty_like(coarse)
    for i in range(nlat // 2):
        for j in range(nlon // 2):
            v = sum(w[2 * i + a, 2 * j + b] * x[2 * i + a, 2 * j + b] for a in (0, 1) for b in (0, 1))
            loop[i, j] = v / np.linalg.norm(v)
    np.testing.assert_allclose(coarse, loop, atol=1e-6)
    # closed form: longitude = mean of the two longitudes; colatitude from the weighted z and the weighted
    # horizontal radius shortened by cos(dlon / 2)
    colat, lon = grid_angles(nlat=nlat, nlon=nlon)
    w1, w2 = w[0::2, 0], w[1::2, 0]
    z = w1 * np.cos(colat[0::2]) + w2 * np.cos(colat[1::2])
    rho = (w1 * np.sin(colat[0::2]) + w2 * np.sin(colat[1::2])) * np.cos(0.5 * (lon[1] - lon[0]))
    colat_c, lon_c = np.arctan2(rho, z), 0.5 * (lon[0::2] + lon[1::2])
    closed = angles_to_unit_vectors(colat_c[:, None], lon_c[None, :])
    np.testing.assert_allclose(coarse, closed, atol=1e-6)
    # negative control: the plain mean of the angles (generator_version 1) is off by up to 40 % of a cell
    mean_angles = angles_to_unit_vectors(colat.reshape(-1, 2).mean(1)[:, None], lon_c[None, :])
    offset = np.arccos(np.clip((mean_angles * coarse).sum(-1), -1, 1))
    assert offset.max() > 0.3 * (colat[1] - colat[0])
    assert np.abs(mean_angles - closed).max() > 1e-2


def test_pooled_fields_are_area_weighted_block_means(params):
    """Pooling == sum(w f) / sum(w) per block (not the plain mean); a linear field a.x pools to a.c_bar with
    c_bar the unnormalised centroid, consistent with the coarse coords."""
    from enf.data.pde.solvers.sphere import grid_coords, grid_weights

    nlat, nlon = params["nlat"], params["nlon"]
    w = grid_weights(nlat=nlat, nlon=nlon)
    f = np.random.default_rng(0).standard_normal((2, nlat, nlon, 3))
    pooled = pool_to_training_grid(f, params).astype(np.float64)
    for i, j in ((0, 0), (3, 5), (nlat // 4, 0), (nlat // 2 - 1, nlon // 2 - 1)):
        rows, cols = slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2)
        ref = (w[rows, cols, None] * f[:, rows, cols]).sum(axis=(1, 2)) / w[rows, cols].sum()
        np.testing.assert_allclose(pooled[:, i, j], ref, rtol=1e-5, atol=1e-6)
        assert np.abs(pooled[:, i, j] - f[:, rows, cols].mean(axis=(1, 2))).max() > 1e-3  # not the plain mean
    x = grid_coords(nlat=nlat, nlon=nlon)
    a = np.array([0.3, -0.5, 0.8])
    linear = pool_to_training_grid((x @ a)[..., None], params)[..., 0].astype(np.float64)
    centroid = pool_to_training_grid(x, params).astype(np.float64)  # sum(w x) / sum(w), not normalised
    np.testing.assert_allclose(linear, centroid @ a, atol=1e-6)
    unit = centroid / np.linalg.norm(centroid, axis=-1, keepdims=True)
    np.testing.assert_allclose(unit, SPEC.coords(params), atol=1e-6)
