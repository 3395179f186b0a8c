"""Planar heat diffusion generator: heat kernel, Neumann spectral propagation, mass, splits, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from enf.data.pde.solvers.plane import (
    DIFFUSION_PLANE,
    diffusion_plane_coords,
    diffusion_plane_times,
    diffusion_plane_weights,
    heat_solution_plane,
    sample_point_sources,
    simulate_diffusion_plane,
)

AXIS = np.linspace(-3.0, 3.0, 64)


def _solution(times, *, domain=(-3.0, 3.0), cx=0.7, cy=-1.3, mass=5.2):
    return heat_solution_plane(
        x=AXIS,
        y=AXIS,
        center_x=np.array([cx]),
        center_y=np.array([cy]),
        mass=np.array([mass]),
        times=np.asarray(times, dtype=np.float64),
        diffusivity=0.1,
        source_std=0.1,
        domain=domain,
    )[0]


def _trapezoid_mass(u: np.ndarray) -> np.ndarray:
    w = np.full(64, AXIS[1] - AXIS[0])
    w[0] = w[-1] = 0.5 * w[0]
    return np.einsum("i,j,...ij->...", w, w, u)


def _neumann_propagate(u: np.ndarray, *, diffusivity: float, dt: float) -> np.ndarray:
    """Exact heat flow over ``dt`` with zero-flux walls: cosine series (DCT-I via the even extension)."""
    n = u.shape[-1]
    wavenumber = 2.0 * np.pi * np.fft.fftfreq(2 * (n - 1), d=AXIS[1] - AXIS[0])  # pi m / L
    for axis in (-2, -1):
        ext = np.concatenate([u, np.flip(np.take(u, range(1, n - 1), axis=axis), axis=axis)], axis=axis)
        shape = [1] * ext.ndim
        shape[axis] = -1
        spec = np.fft.fft(ext, axis=axis) * np.exp(-diffusivity * wavenumber**2 * dt).reshape(shape)
        u = np.take(np.fft.ifft(spec, axis=axis).real, range(n), axis=axis)
    return u


def test_spec_shapes_and_conventions() -> None:
    for preset in ("small", "paper"):
        p = DIFFUSION_PLANE.params(preset)
        assert {"num_train", "num_test", "diffusivity", "domain", "source_std"} <= set(p)
    p = DIFFUSION_PLANE.params("paper")
    assert (p["num_train"], p["num_test"]) == (2048, 32)
    coords = diffusion_plane_coords(p)
    assert coords.shape == (64, 64, 2) and coords.dtype == np.float32
    np.testing.assert_allclose(coords[:, 0, 0], AXIS / 3.0, atol=1e-7)  # x grows with i
    np.testing.assert_allclose(coords[0, :, 1], AXIS / 3.0, atol=1e-7)  # y grows with j
    assert coords.min() == -1.0 and coords.max() == 1.0
    np.testing.assert_allclose(diffusion_plane_times(p), 3.5 + 0.5 * np.arange(20))
    assert diffusion_plane_weights(p).shape == (64, 64)
    np.testing.assert_allclose(diffusion_plane_weights(p).sum(dtype=np.float64), 36.0, rtol=1e-6)


def test_free_boundary_matches_analytic_heat_kernel() -> None:
    """Free mode vs M / (2 pi s^2) exp(-|x - c|^2 / (2 s^2)), s^2 = s0^2 + 2 D t, in the stored layout."""
    p = DIFFUSION_PLANE.params("small", boundary="free")
    seeds = [11, 12, 13]
    fields = simulate_diffusion_plane(p, "train", seeds)
    src = sample_point_sources(p, "train", seeds)
    xy = 3.0 * diffusion_plane_coords(p).astype(np.float64)
    times = diffusion_plane_times(p).astype(np.float64)
    for s, (cx, cy, mass) in enumerate(src):
        for k in (0, 5, 19):
            var = 0.1**2 + 2 * 0.1 * times[k]
            r2 = (xy[..., 0] - cx) ** 2 + (xy[..., 1] - cy) ** 2
            exact = mass / (2 * np.pi * var) * np.exp(-r2 / (2 * var))
            err = np.abs(fields[s, k, ..., 0] - exact).max() / exact.max()
            assert err < 1e-6, (s, k, err)
    # Also at t = 0 and early times (the initial Gaussian itself), in float64.
    for t in (0.0, 0.25, 1.0):
        var = 0.01 + 0.2 * t
        r2 = (AXIS[:, None] - 0.7) ** 2 + (AXIS[None, :] + 1.3) ** 2
        exact = 5.2 / (2 * np.pi * var) * np.exp(-r2 / (2 * var))
        np.testing.assert_allclose(_solution([t], domain=None)[0], exact, rtol=1e-12, atol=1e-14)


def test_neumann_solution_matches_spectral_exponential_integrator() -> None:
    """Image solution == an independent exact cosine-series (Neumann) propagation of its t = 0.5 frame."""
    times = [0.5, 3.5, 8.0, 13.0, 16.0]
    u = _solution(times, cx=1.9, cy=-1.95)  # near two walls, where the boundary matters
    for k in range(1, len(times)):
        propagated = _neumann_propagate(u[0], diffusivity=0.1, dt=times[k] - times[0])
        err = np.abs(propagated - u[k]).max() / np.abs(u[k]).max()
        assert err < 1e-11, (times[k], err)
    # Early on the images are negligible: Neumann == free kernel in the interior.
    early = _solution([0.5], cx=0.0, cy=0.0)
    np.testing.assert_allclose(early, _solution([0.5], domain=None, cx=0.0, cy=0.0), atol=1e-12)


def test_mass_is_conserved_with_neumann_walls() -> None:
    # t = 0 is left out: the std-0.1 source is one grid cell wide, its trapezoidal mass is off by 1e-9.
    times = np.linspace(0.5, 16.0, 9)
    mass = _trapezoid_mass(_solution(times, cx=2.0, cy=2.0))
    np.testing.assert_allclose(mass, 5.2, rtol=1e-12)
    free = _trapezoid_mass(_solution(times, domain=None, cx=2.0, cy=2.0))
    assert free[-1] < 0.6 * 5.2  # the free kernel leaks through the walls (why Neumann is used)
    p = DIFFUSION_PLANE.params("small")
    fields = simulate_diffusion_plane(p, "test", [3, 4]).astype(np.float64)
    w = diffusion_plane_weights(p).astype(np.float64)
    stored = np.einsum("ij,stij->st", w, fields[..., 0])
    src = sample_point_sources(p, "test", [3, 4])
    np.testing.assert_allclose(stored, np.broadcast_to(src[:, 2:3], stored.shape), rtol=1e-6)


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_source_ranges(split: str) -> None:
    p = DIFFUSION_PLANE.params("small")
    src = sample_point_sources(p, split, list(range(300)))
    assert np.all((src[:, 0] >= -2) & (src[:, 0] <= 2))
    assert np.all((src[:, 2] >= 5.0) & (src[:, 2] <= 5.5))
    low, high = (0.0, 2.0) if split == "train" else (-2.0, 0.0)
    assert np.all((src[:, 1] >= low) & (src[:, 1] <= high))
    assert src[:, 1].max() - src[:, 1].min() > 1.8 and src[:, 0].max() - src[:, 0].min() > 3.6
    fields = simulate_diffusion_plane(p, split, list(range(20)))
    coords = diffusion_plane_coords(p)
    peaks = fields[:, 0, ..., 0].reshape(20, -1).argmax(axis=1)
    peak_y = coords[..., 1].reshape(-1)[peaks]
    tol = 1.0 / 63.0  # one grid cell in normalised units
    assert np.all(peak_y >= -tol) if split == "train" else np.all(peak_y <= tol)


def test_deterministic_and_batch_independent() -> None:
    p = DIFFUSION_PLANE.params("small")
    a = simulate_diffusion_plane(p, "train", [5, 7, 9])
    assert a.shape == (3, 20, 64, 64, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, simulate_diffusion_plane(p, "train", [5, 7, 9]))
    np.testing.assert_array_equal(a[1:2], simulate_diffusion_plane(p, "train", [7]))
    assert not np.allclose(a[0], a[1])
    assert np.isfinite(a).all() and a.min() >= 0.0
    with pytest.raises(ValueError, match="split"):
        simulate_diffusion_plane(p, "val", [1])


def test_small_preset_generates_all_trajectories() -> None:
    p = DIFFUSION_PLANE.params("small")
    for split in ("train", "test"):
        n = p[f"num_{split}"]
        out = DIFFUSION_PLANE.simulate(p, split, list(range(n)))
        assert out.shape == (n, 20, 64, 64, 1)


def _generate(tmp_path, **overrides):
    from enf.data.pde.io import generate_split

    params = DIFFUSION_PLANE.params("small", **overrides)
    for split in ("train", "test"):
        generate_split(DIFFUSION_PLANE, params, split=split, out_dir=tmp_path, seed=4, progress=False)
    return params


def _log_parabola_peak(u: np.ndarray, i: int, j: int, spacing: float) -> tuple[float, float]:
    """Sub-grid maximum of ``u`` around node ``(i, j)``: exact for a Gaussian (its log is a parabola)."""
    out = []
    for minus, centre, plus in ((u[i - 1, j], u[i, j], u[i + 1, j]), (u[i, j - 1], u[i, j], u[i, j + 1])):
        lm, l0, lp = np.log([minus, centre, plus])
        out.append(0.5 * spacing * (lm - lp) / (lm - 2.0 * l0 + lp))
    return out[0], out[1]


def test_stored_sources_match_the_initial_peak_and_mass(tmp_path) -> None:
    """ic_params of the files == where the t = 0 field peaks (sub-grid fit) and its integral, per split."""
    from enf.data.pde.dataset import PDETrajectories
    from enf.data.pde.io import read_ic_params, read_metadata

    params = _generate(tmp_path, num_train=6, num_test=6, skip_frames=0, num_frames=2)  # t = 0, 0.5
    coords = diffusion_plane_coords(params).astype(np.float64)
    weights = diffusion_plane_weights(params).astype(np.float64)
    spacing = 2.0 / 63.0  # normalised grid spacing
    for split in ("train", "test"):
        path = tmp_path / f"{split}.h5"
        assert read_metadata(path)["generator_version"] == "2"
        names, ic = read_ic_params(path)
        assert names == ["source_x", "source_y", "source_mass"] and ic.shape == (6, 3)
        data = PDETrajectories(path)
        np.testing.assert_array_equal(data.ic_params, ic)
        assert data.ic_param_names == names
        if split == "train":  # the published out-of-distribution split: train y > 0, test y < 0
            assert np.all((ic[:, 1] > 0) & (ic[:, 1] <= 2 / 3))
        else:
            assert np.all((ic[:, 1] < 0) & (ic[:, 1] >= -2 / 3))
        assert np.all(np.abs(ic[:, 0]) <= 2 / 3) and np.all((ic[:, 2] >= 5.0) & (ic[:, 2] <= 5.5))
        for s in range(6):
            u0 = data[s]["fields"][0, :, 0].numpy().astype(np.float64).reshape(64, 64)
            i, j = np.unravel_index(np.argmax(u0), u0.shape)
            node = coords[i, j]
            assert np.all(np.abs(node - ic[s, :2]) <= 0.5 * spacing + 1e-6)  # nearest node is the peak
            dx, dy = _log_parabola_peak(u0, i, j, spacing)
            np.testing.assert_allclose(node + [dx, dy], ic[s, :2], atol=1e-5)
            mass = (weights * data[s]["fields"].numpy()[..., 0].reshape(2, 64, 64)).sum(axis=(-2, -1))
            np.testing.assert_allclose(mass, ic[s, 2], rtol=1e-6)
    # negative control: another trajectory's source is far from this peak
    other = read_ic_params(tmp_path / "train.h5")[1]
    assert np.abs(other[0, :2] - other[1, :2]).max() > 4 * spacing


def test_stored_sources_match_the_stored_frames_by_split(tmp_path) -> None:
    """Default frames (t >= 3.5): the first frame peaks within 2.5 cells of the stored source, on its side.

    The zero-flux walls shift the peak towards a near wall (wall images; at most ~1.3 cells for sources at
    least 1 from the walls at t = 3.5) on top of the half-cell grid offset.
    """
    from enf.data.pde.io import open_trajectories, read_ic_params

    params = _generate(tmp_path, num_train=8, num_test=8)
    coords = diffusion_plane_coords(params).reshape(-1, 2)
    for split, sign in (("train", 1.0), ("test", -1.0)):
        _, ic = read_ic_params(tmp_path / f"{split}.h5")
        with open_trajectories(tmp_path / f"{split}.h5") as f:
            first = f["fields"][:, 0, ..., 0].reshape(8, -1)
        peak = coords[first.argmax(axis=1)]
        assert np.abs(peak - ic[:, :2]).max() < 2.5 * 2 / 63
        assert np.all(sign * ic[:, 1] > 0) and np.all(sign * peak[:, 1] > -2 / 63)


def test_ic_params_use_the_simulation_seeds() -> None:
    p = DIFFUSION_PLANE.params("small")
    src = sample_point_sources(p, "test", [8, 9])
    ic = DIFFUSION_PLANE.ic_params(p, "test", [8, 9])
    np.testing.assert_allclose(ic[:, :2], src[:, :2] / 3.0, rtol=1e-12)
    np.testing.assert_array_equal(ic[:, 2], src[:, 2])
    assert DIFFUSION_PLANE.ic_param_names == ("source_x", "source_y", "source_mass")
