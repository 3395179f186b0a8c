"""Internally heated convection in the ball (Dedalus): grid, physics, determinism, missing-Dedalus errors.

The simulation tests need the optional dependency Dedalus (``bash scripts/install_dedalus.sh``) and are
skipped without it; the ImportError tests always run. Resolutions are tiny (8 x 4 x 6) to keep this fast.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from enf.data.pde import get_spec
from enf.data.pde.solvers.ball import HEATED_CONVECTION_BALL as SPEC
from enf.data.pde.solvers.ball import import_dedalus

SKIP_REASON = (
    "Dedalus is not installed (optional, GPL-3): bash scripts/install_dedalus.sh, or install "
    "libfftw3-dev libfftw3-mpi-dev libopenmpi-dev openmpi-bin and pip install 'enf[ball]'"
)
TINY = {"nphi": 8, "ntheta": 4, "nr": 6}


def _require_dedalus() -> None:
    # import through enf first: a bare `import dedalus` attaches a stdout handler to the root logger
    try:
        import_dedalus()
    except ImportError:
        pass
    pytest.importorskip("dedalus", reason=SKIP_REASON)


def _params(**overrides):
    return SPEC.params("small", **{**TINY, **overrides})


def _volume_mean(fields: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Volume means over the ball of ``fields [..., nphi, ntheta, nr]``."""
    return np.tensordot(fields.astype(np.float64), weights, axes=3) / weights.sum()


@pytest.fixture(scope="module")
def convective():
    """Ra = 1e6 with noise: two trajectories, frames at t = 0, 0.25, 0.5, 0.75."""
    _require_dedalus()
    params = _params(first_frame=0, frame_dt=0.25, num_frames=4, noise_amplitude=0.1)
    return params, SPEC.simulate(params, "train", [11, 12])


# ------------------------------------------------------------------------------------------- always run


def test_spec_metadata():
    assert get_spec("heated_convection_ball") is SPEC
    assert SPEC.geometry == "ball" and SPEC.channel_names == ("temperature",)
    paper = SPEC.params("paper")
    assert (paper["nphi"], paper["ntheta"], paper["nr"]) == (48, 24, 24)
    assert (paper["num_train"], paper["num_test"]) == (512, 128)
    physics = (paper["rayleigh"], paper["prandtl"], paper["heat_source"], paper["max_dt"])
    assert physics == (1e6, 1.0, 6.0, 0.02)
    # published: a frame every 10 steps of dt <= 0.02 (at most 0.2 apart), recorded frames 16..29
    # (t ~ 3.0 .. 5.6), initial noise fill_random(scale=0.1) low-passed to half the modes
    for preset in ("small", "paper"):
        p = SPEC.params(preset)
        times = SPEC.times(p)
        assert len(times) == 14 and np.diff(times).max() <= 0.2 + 1e-6
        np.testing.assert_allclose(times, 3.0 + 0.2 * np.arange(14), atol=1e-6)
        assert (p["noise_amplitude"], p["noise_scale"], p["max_dt"]) == (0.1, 0.5, 0.02)


@pytest.mark.parametrize("call", ["simulate", "coords", "weights"])
def test_missing_dedalus_raises_import_error_with_hint(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "dedalus.public", None)  # `import dedalus.public` now fails
    params = _params(num_frames=1)
    with pytest.raises(ImportError) as info:
        if call == "simulate":
            SPEC.simulate(params, "train", [0])
        else:
            getattr(SPEC, call)(dict(params, nphi=6))  # a shape not cached by other tests
    message = str(info.value)
    for hint in ("bash scripts/install_dedalus.sh", "enf[ball]", "libfftw3-mpi-dev", "libopenmpi-dev"):
        assert hint in message


def test_module_imports_without_dedalus(monkeypatch):
    for name in ("dedalus", "dedalus.public", "mpi4py", "mpi4py.MPI"):
        monkeypatch.setitem(sys.modules, name, None)
    path = importlib.util.find_spec("enf.data.pde.solvers.ball").origin
    module_spec = importlib.util.spec_from_file_location("_enf_ball_without_dedalus", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    spec = module.HEATED_CONVECTION_BALL
    assert spec.name == "heated_convection_ball"
    assert len(spec.times(spec.params("small"))) == spec.params("small")["num_frames"]
    with pytest.raises(ImportError, match="install_dedalus.sh"):
        spec.coords(spec.params("small"))


# ------------------------------------------------------------------------------------------- need Dedalus


def test_grid_coords_and_weights():
    _require_dedalus()
    params = _params()
    coords, weights = SPEC.coords(params), SPEC.weights(params)
    sph = SPEC.extra_arrays(params)["spherical_coords"]
    assert coords.shape == sph.shape == (8, 4, 6, 3) and weights.shape == (8, 4, 6)
    radius = np.linalg.norm(coords, axis=-1)
    assert radius.max() < 1 and radius.min() > 0
    r = sph[0, 0, :, 2]
    assert np.all(np.diff(r) > 0)
    np.testing.assert_allclose(radius, np.broadcast_to(r, radius.shape), rtol=1e-6)  # radii = r grid
    np.testing.assert_allclose(sph[:, 0, 0, 0], 2 * np.pi * np.arange(8) / 8, rtol=1e-6)
    np.testing.assert_allclose(coords[..., 2], sph[..., 2] * np.cos(sph[..., 1]), atol=1e-6)
    # Gauss quadrature over the ball: volume 4 pi / 3, int r^2 dV = 4 pi / 5, int z^2 dV = 4 pi / 15
    assert np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(), 4 * math.pi / 3, rtol=1e-10)
    np.testing.assert_allclose((weights * radius**2).sum(), 4 * math.pi / 5, rtol=1e-6)
    np.testing.assert_allclose((weights * coords[..., 2] ** 2).sum(), 4 * math.pi / 15, rtol=1e-6)


def test_output_shape_finite_and_evolving(convective):
    params, fields = convective
    assert fields.shape == (2, 4, 8, 4, 6, 1) and fields.dtype == np.float32
    assert np.isfinite(fields).all()
    change = np.abs(fields[:, -1] - fields[:, 0]).max(axis=(1, 2, 3, 4))
    assert np.all(change > 1e-3), change  # the temperature evolves (diffusion of the noise + heating/flow)
    # frame 0 is the initial condition: conductive profile 1 - r^2 plus noise of amplitude ~0.1
    r = SPEC.extra_arrays(params)["spherical_coords"][..., 2]
    assert 1e-3 < np.abs(fields[0, 0, ..., 0] - (1 - r**2)).max() < 1.0


def test_volume_mean_temperature_is_conserved(convective):
    # the fixed wall flux dT/dr = -S/3 removes exactly the heat the source S adds: d/dt int T dV = 0
    params, fields = convective
    means = _volume_mean(fields[..., 0], SPEC.weights(params))
    np.testing.assert_allclose(means - means[:, :1], 0.0, atol=1e-6)


def test_deterministic_per_seed_and_independent_of_chunking(convective):
    params, fields = convective
    again = SPEC.simulate(params, "test", [12])  # the split does not change the distribution
    np.testing.assert_array_equal(again[0], fields[1])
    assert np.abs(fields[0] - fields[1]).max() > 1e-3  # different seeds, different initial noise


def test_conductive_state_is_steady():
    # no noise, subcritical Ra: T = 1 - r^2 (lap T = -S, dT/dr(1) = -S/3, u = 0) is an exact steady state
    _require_dedalus()
    params = _params(rayleigh=1e3, noise_amplitude=0.0, first_frame=0, frame_dt=0.5, num_frames=3)
    fields = SPEC.simulate(params, "train", [0])[0, ..., 0]
    r = SPEC.extra_arrays(params)["spherical_coords"][..., 2]
    np.testing.assert_allclose(fields, np.broadcast_to(1 - r**2, fields.shape), atol=2e-6)


def test_subcritical_perturbation_relaxes_to_conductive_profile():
    # Ra = 10 (kappa = nu ~ 0.32): no convection; the noise diffuses away while the mean is kept, so T tends
    # to 1 - r^2 + c with c fixed by the conserved volume mean (slowest Neumann mode decays like exp(-1.4 t))
    _require_dedalus()
    params = _params(rayleigh=10.0, noise_amplitude=0.1, first_frame=0, frame_dt=1.0, num_frames=4)
    fields = SPEC.simulate(params, "train", [3])[0, ..., 0].astype(np.float64)
    weights = SPEC.weights(params)
    r = SPEC.extra_arrays(params)["spherical_coords"][..., 2].astype(np.float64)
    profile = 1 - r**2
    offset = _volume_mean(fields[0], weights) - _volume_mean(profile, weights)
    deviation = [math.sqrt(_volume_mean((f - profile - offset) ** 2, weights)) for f in fields]
    assert all(b < a for a, b in zip(deviation, deviation[1:], strict=False)), deviation
    assert deviation[-1] < deviation[0] / 20, deviation
