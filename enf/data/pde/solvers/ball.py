"""Internally heated Boussinesq convection in the unit ball, simulated with Dedalus (optional dependency).

Equations (free-fall units: length = ball radius, time = free-fall time, temperature scaled so that the
conductive profile is ``1 - r^2``), gravity proportional to radius as in a ball of constant density::

    div u = 0
    dt u + (curl u) x u = -grad p + nu lap u + T r_vec           nu    = (Ra / Pr)^(-1/2)
    dt T + u . grad T   = kappa (lap T + S)                      kappa = (Ra Pr)^(-1/2)

with ``r_vec = r e_r``, ``p`` the pressure head (it absorbs ``|u|^2 / 2``) and the uniform heat source ``S``
(published: 6). Boundary conditions at ``r = 1``: impermeable ``u_r = 0``, stress-free
``e_r x ((grad u + grad u^T) . e_r) = 0`` and a fixed heat flux ``dT/dr = -S / 3``, which carries out exactly
the heat produced inside: ``d/dt int T dV = kappa (S V - (S / 3) 4 pi) = 0``, so the volume mean of ``T`` is
conserved whatever the flow. The steady conductive state is ``u = 0``, ``T = c + S (1 - r^2) / 6``
(``T = c + 1 - r^2`` for ``S = 6``), with hydrostatic pressure. Pressure gauge: ``int p dV = 0``.

Discretisation: Dedalus ``BallBasis`` (real Fourier in ``phi`` x spin-weighted spherical harmonics in
``theta`` x Zernike polynomials in ``r``), 3/2 dealiasing, boundary conditions imposed with tau terms lifted
to the highest radial mode, SBDF2 time stepping. Each frame interval ``frame_dt`` is split into equal steps
no longer than ``min(max_dt, CFL)`` (the CFL limit is re-checked every step and the rest of the interval
re-split if it shrinks), so frames land exactly on the stored times and the step size -- hence the LU
factorisation of the implicit operator -- rarely changes.

Initial condition (one per trajectory, seeded by the trajectory seed): ``T0 = 1 - r^2 + A * lowpass(xi)``,
``xi`` white Gaussian noise on the grid (``Field.fill_random``, reproducible for a given seed and grid),
low-pass filtered by keeping the lower ``noise_scale`` fraction of modes in each dimension; ``u0 = 0``.
Train and test draw from the same distribution (as published); their seeds differ. The files store no
``ic_params``: the only random input is the noise field, fixed by the trajectory seed
(:func:`enf.data.pde.base.trajectory_seed` of the file's ``seed``, split and index).

Published setup (``ihc`` in enf-pde, from the Dedalus ball example): Ra = 1e6, Pr = 1, S = 6, SBDF2, CFL with
``max_dt = 0.02``, grid 48 (phi) x 24 (theta) x 24 (r); the initial noise is ``fill_random`` with standard
deviation (scale) 0.1, low-pass filtered to half the modes (our ``noise_amplitude = 0.1``,
``noise_scale = 0.5``). A frame was recorded every 10 solver steps, so frames are at most
``10 max_dt = 0.2`` apart (exactly 0.2 while the CFL limit does not bind), recorded frames 10..36 were kept,
cut to 20 and the first 6 skipped: recorded frames 16..29, at ``t ~ 0.02 + 0.2 (k - 1)`` = 3.02 ... 5.62.
Both presets store 14 frames 0.2 apart at ``t = 3.0, 3.2, ..., 5.6`` (frames 15..28 of a 0.2 cadence) with
noise 0.1. At 48x24x24 the convective instability then grows through the stored window (volume rms
deviation from ``1 - r^2``: 0.025 at t = 0, 0.05 at t = 3, 0.24 at t = 5.6, measured for one seed).

Grid and stored arrays: fields are ``[n, T, nphi, ntheta, nr, 1]`` on Dedalus' grid (scale 1):
``phi_i = 2 pi i / nphi``; ``theta_j = arccos`` of the Gauss-Legendre nodes, in Dedalus' order (from near
the south pole to near the north pole); ``r_k`` the Gauss nodes of the radial Zernike quadrature (all in
``(0, 1)``). ``coords`` are the Cartesian points ``(r sin theta cos phi, r sin theta sin phi, r cos theta)``
(the ``ball`` geometry), ``spherical_coords`` the same points as ``(phi, theta, r)`` and ``weights`` the
grid's quadrature weights (``2 pi / nphi`` x Gauss weights in ``cos theta`` x radial weights, summing to
``4 pi / 3``): ``sum(weights * f)`` is exact for band-limited fields such as ``T``.

Dedalus is GPL-3 licensed and needs MPI and FFTW: install with ``bash scripts/install_dedalus.sh`` (system
packages ``libfftw3-dev libfftw3-mpi-dev libopenmpi-dev openmpi-bin``, then ``pip install "dedalus==3.0.5"``)
or, after the system packages, ``pip install "enf[ball]"``. It is imported lazily: this module imports
without it, and ``coords``/``weights``/``simulate`` raise :class:`ImportError` with these instructions.
Importing Dedalus attaches a stdout handler to the root logger and sets the root level to 0; we undo both
and set Dedalus' loggers to WARNING, so its messages go through Python logging like everything else.
Dedalus parallelises with MPI, not threads: run with ``OMP_NUM_THREADS=1`` (we set it when it is unset
before Dedalus is first imported; libraries initialised earlier keep their thread counts). Trajectories run
one after another in this process (``MPI.COMM_SELF``); no ``mpirun`` is needed.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from enf.data.pde.base import PDESpec

__all__ = ["HEATED_CONVECTION_BALL", "INSTALL_HINT", "ball_grid", "conductive_profile", "import_dedalus"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the heated_convection_ball generator needs Dedalus 3.0.5 (GPL-3), which builds from source against MPI "
    "and FFTW. Install it with `bash scripts/install_dedalus.sh` (installs the system packages libfftw3-dev "
    "libfftw3-mpi-dev libopenmpi-dev openmpi-bin with apt-get, then runs pip), or install those system "
    'packages yourself and run `pip install "enf[ball]"` (or `pip install "dedalus==3.0.5"`) with '
    "MPI_INCLUDE_PATH, MPI_LIBRARY_PATH, FFTW_INCLUDE_PATH and FFTW_LIBRARY_PATH set (see the script)."
)


# ------------------------------------------------------------------------------------------- dedalus


def _quiet_dedalus_loggers() -> None:
    """Dedalus' modules log to ``logging.getLogger(<last dotted part>)``; keep those at WARNING and above."""
    modules = [name for name in list(sys.modules) if name.startswith("dedalus.")]
    names = {"dedalus"} | {name.rsplit(".", 1)[-1] for name in modules}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)


def import_dedalus():
    """``(dedalus.public, mpi4py.MPI)`` imported on demand; :class:`ImportError` with install hints if absent.

    The first import sets ``OMP_NUM_THREADS=1`` when it is unset, and afterwards removes the stdout handler
    Dedalus adds to the root logger, restores the root level and sets Dedalus' loggers to WARNING.
    """
    first = "dedalus" not in sys.modules
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    if first:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        d3 = importlib.import_module("dedalus.public")
        mpi = importlib.import_module("mpi4py.MPI")
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
    finally:
        if first:  # undo dedalus.tools.logging: its stdout/file handlers on the root logger, root level 0
            for handler in list(root.handlers):
                if handler not in root_handlers:
                    root.removeHandler(handler)
            root.setLevel(root_level)
    _quiet_dedalus_loggers()
    return d3, mpi


def _basis(d3, mpi, shape: tuple[int, int, int]):
    coords = d3.SphericalCoordinates("phi", "theta", "r")
    dist = d3.Distributor(coords, dtype=np.float64, comm=mpi.COMM_SELF)
    basis = d3.BallBasis(coords, shape=shape, radius=1.0, dealias=3 / 2, dtype=np.float64)
    return coords, dist, basis


@lru_cache(maxsize=8)
def _grid_cached(nphi: int, ntheta: int, nr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d3, mpi = import_dedalus()
    _, dist, basis = _basis(d3, mpi, (nphi, ntheta, nr))
    phi, theta, r = (np.asarray(g, dtype=np.float64).ravel() for g in dist.local_grids(basis, scales=1))
    w_theta = np.asarray(basis.global_colatitude_weights(dist, 1), dtype=np.float64).ravel()
    w_r = np.asarray(basis.global_radial_weights(dist, 1), dtype=np.float64).ravel()
    weights = (2 * np.pi / nphi) * np.ones(nphi)[:, None, None] * w_theta[None, :, None] * w_r[None, None, :]
    for a in (phi, theta, r, weights):
        a.setflags(write=False)
    return phi, theta, r, weights


def _check_shape(nphi: int, ntheta: int, nr: int) -> tuple[int, int, int]:
    nphi, ntheta, nr = int(nphi), int(ntheta), int(nr)
    if nphi < 4 or nphi % 2 or ntheta < 2 or nr < 3:
        raise ValueError(
            f"heated_convection_ball: need even nphi >= 4, ntheta >= 2, nr >= 3; got {nphi, ntheta, nr}"
        )
    return nphi, ntheta, nr


def ball_grid(nphi: int, ntheta: int, nr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dedalus' ball grid (scale 1): ``phi``, ``theta``, ``r`` (1D) and ``weights [nphi, ntheta, nr]``.

    Needs Dedalus (builds the basis, no simulation). The weights integrate over the unit ball (sum 4 pi / 3).
    """
    phi, theta, r, weights = _grid_cached(*_check_shape(nphi, ntheta, nr))
    return phi.copy(), theta.copy(), r.copy(), weights.copy()


def conductive_profile(r: np.ndarray, heat_source: float = 6.0, offset: float = 0.0) -> np.ndarray:
    """The steady conductive temperature ``offset + S (1 - r^2) / 6``: ``lap T = -S``, ``dT/dr(1) = -S/3``."""
    return offset + heat_source * (1.0 - np.asarray(r) ** 2) / 6.0


# ------------------------------------------------------------------------------------------- spec functions


def _shape(params: Mapping[str, Any]) -> tuple[int, int, int]:
    return _check_shape(params["nphi"], params["ntheta"], params["nr"])


def _times(params: Mapping[str, Any]) -> np.ndarray:
    frames = int(params["first_frame"]) + np.arange(int(params["num_frames"]))
    return (frames * float(params["frame_dt"])).astype(np.float64)


def _spherical(params: Mapping[str, Any]) -> np.ndarray:
    phi, theta, r, _ = ball_grid(*_shape(params))
    grids = np.meshgrid(phi, theta, r, indexing="ij")
    return np.stack(grids, axis=-1)


def _coords(params: Mapping[str, Any]) -> np.ndarray:
    """``[nphi, ntheta, nr, 3]`` Cartesian points of the grid (inside the unit ball)."""
    sph = _spherical(params)
    phi, theta, r = sph[..., 0], sph[..., 1], sph[..., 2]
    return np.stack(
        [r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)], axis=-1
    )


def _weights(params: Mapping[str, Any]) -> np.ndarray:
    return ball_grid(*_shape(params))[3]


def _extra_arrays(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"spherical_coords": _spherical(params).astype(np.float32)}


def _check_params(params: Mapping[str, Any]) -> None:
    for key in ("rayleigh", "prandtl", "frame_dt", "max_dt", "cfl_safety"):
        if not float(params[key]) > 0:
            raise ValueError(f"heated_convection_ball: {key} must be positive, got {params[key]!r}")
    if int(params["first_frame"]) < 0 or int(params["num_frames"]) < 1:
        raise ValueError("heated_convection_ball: need first_frame >= 0 and num_frames >= 1")
    if float(params["noise_amplitude"]) < 0 or not 0 < float(params["noise_scale"]) <= 1:
        raise ValueError("heated_convection_ball: need noise_amplitude >= 0 and 0 < noise_scale <= 1")


def _simulate_one(d3, mpi, params: Mapping[str, Any], seed: int) -> np.ndarray:
    """One trajectory ``[T, nphi, ntheta, nr]`` (float64) from the initial condition seeded by ``seed``."""
    shape = _shape(params)
    ra, pr, source = float(params["rayleigh"]), float(params["prandtl"]), float(params["heat_source"])
    coords, dist, basis = _basis(d3, mpi, shape)
    surface = basis.surface
    _, _, r = dist.local_grids(basis, scales=1)

    p = dist.Field(name="p", bases=basis)
    T = dist.Field(name="T", bases=basis)
    u = dist.VectorField(coords, name="u", bases=basis)
    tau_p = dist.Field(name="tau_p")
    tau_T = dist.Field(name="tau_T", bases=surface)
    tau_u = dist.VectorField(coords, name="tau_u", bases=surface)
    r_vec = dist.VectorField(coords, name="r_vec", bases=basis.radial_basis)
    r_vec.change_scales(1)
    r_vec["g"][2] = r  # components are ordered (phi, theta, r)

    namespace = {
        "p": p,
        "T": T,
        "u": u,
        "tau_p": tau_p,
        "tau_T": tau_T,
        "tau_u": tau_u,
        "r_vec": r_vec,
        "nu": (ra / pr) ** -0.5,
        "kappa": (ra * pr) ** -0.5,
        "S": source,
        "lift": lambda a: d3.Lift(a, basis, -1),
        "strain": d3.grad(u) + d3.trans(d3.grad(u)),
    }
    problem = d3.IVP([p, u, T, tau_p, tau_u, tau_T], namespace=namespace)
    problem.add_equation("div(u) + tau_p = 0")
    problem.add_equation("dt(u) - nu*lap(u) + grad(p) - r_vec*T + lift(tau_u) = - cross(curl(u), u)")
    problem.add_equation("dt(T) - kappa*lap(T) + lift(tau_T) = - u@grad(T) + kappa*S")
    problem.add_equation("radial(u(r=1)) = 0")
    problem.add_equation("angular(radial(strain(r=1))) = 0")
    problem.add_equation("radial(grad(T)(r=1)) = -S/3")
    problem.add_equation("integ(p) = 0")
    solver = problem.build_solver(d3.SBDF2)

    # initial condition: conductive profile plus low-pass filtered white noise
    T.fill_random("g", scales=1, seed=int(seed), distribution="standard_normal")
    T.low_pass_filter(scales=float(params["noise_scale"]))
    T.change_scales(1)
    T["g"] = float(params["noise_amplitude"]) * T["g"] + conductive_profile(r, source)

    frame_dt, max_dt = float(params["frame_dt"]), float(params["max_dt"])
    cfl = d3.CFL(
        solver,
        initial_dt=max_dt,
        cadence=1,
        safety=float(params["cfl_safety"]),
        threshold=0.1,
        max_change=1.5,
        min_change=0.5,
        max_dt=max_dt,
    )
    cfl.add_velocity(u)

    first, num = int(params["first_frame"]), int(params["num_frames"])
    out = np.empty((num, *shape), dtype=np.float64)
    for frame in range(first + num):
        if frame > 0:  # advance from frame - 1 to frame in equal steps no longer than the CFL limit
            remaining, n, dt = frame_dt, 0, math.inf
            while True:
                limit = min(float(cfl.compute_timestep()), max_dt)
                if n == 0 or limit < dt * (1 - 1e-9):  # new interval, or the flow sped up: split the rest
                    n = math.ceil(remaining / limit - 1e-9)
                    dt = remaining / n
                solver.step(dt)
                remaining -= dt
                n -= 1
                if n == 0:
                    break
        if frame >= first:
            T.change_scales(1)
            data = np.array(T["g"], dtype=np.float64)
            if not np.isfinite(data).all():
                raise RuntimeError(
                    f"heated_convection_ball: non-finite temperature at t = {frame * frame_dt:g} "
                    f"(seed {seed}); the resolution is too coarse for this Rayleigh number or the CFL safety "
                    "too large"
                )
            out[frame - first] = data
    log.debug("heated_convection_ball: seed %d, %d steps to t = %g", seed, solver.iteration, solver.sim_time)
    return out


def _simulate(params: Mapping[str, Any], split: str, seeds: Sequence[int]) -> np.ndarray:
    """``[len(seeds), T, nphi, ntheta, nr, 1]`` float32, one trajectory after another (chunk-independent)."""
    del split  # train and test draw from the same distribution (as published); the seeds differ
    d3, mpi = import_dedalus()
    _check_params(params)
    shape = _shape(params)
    out = np.empty((len(seeds), int(params["num_frames"]), *shape, 1), dtype=np.float32)
    for k, seed in enumerate(seeds):
        out[k, ..., 0] = _simulate_one(d3, mpi, params, int(seed))
    return out


_PHYSICS: dict[str, Any] = {
    "rayleigh": 1e6,
    "prandtl": 1.0,
    "heat_source": 6.0,  # S: dT/dt = kappa (lap T + S); conductive profile S (1 - r^2) / 6
    "noise_amplitude": 0.1,  # published: fill_random(scale=0.1)
    "noise_scale": 0.5,  # low-pass filter: keep this fraction of the modes in each dimension (published)
    "max_dt": 0.02,  # published CFL cap
    "cfl_safety": 0.35,
}
# published cadence: a frame every 10 steps of <= 0.02; recorded frames 16..29 ~ t = 3.0 .. 5.6
_FRAMES: dict[str, Any] = {"frame_dt": 0.2, "first_frame": 15, "num_frames": 14}

HEATED_CONVECTION_BALL = PDESpec(
    name="heated_convection_ball",
    geometry="ball",
    equation=(
        "Boussinesq internally heated convection in the unit ball (free-fall units): div u = 0, "
        "u_t + (curl u) x u = -grad p + (Ra/Pr)^-1/2 lap u + T r, T_t + u.grad T = (Ra Pr)^-1/2 (lap T + S); "
        "at r = 1: u_r = 0, stress-free, dT/dr = -S/3"
    ),
    channel_names=("temperature",),
    presets={
        # the published frames and noise on a coarse grid: 16x8x12, 280 steps of 0.02 to t = 5.6; 12
        # trajectories in 80 s on a shared 2-core machine (the previous 8 frames 0.5 apart to t = 5.5: 89 s)
        "small": {"num_train": 8, "num_test": 4, "nphi": 16, "ntheta": 8, "nr": 12, **_PHYSICS, **_FRAMES},
        # published: 512/128 trajectories, 48x24x24, 14 frames 0.2 apart (t = 3.0 .. 5.6), noise 0.1
        "paper": {
            "num_train": 512,
            "num_test": 128,
            "nphi": 48,
            "ntheta": 24,
            "nr": 24,
            **_PHYSICS,
            **_FRAMES,
        },
    },
    coords=_coords,
    times=_times,
    simulate=_simulate,
    weights=_weights,
    extra_arrays=_extra_arrays,
    version="2",  # 2: presets store frames 0.2 apart (t = 3.0 .. 5.6) with noise 0.1, as published
    description=(
        "Internally heated Boussinesq convection in the unit ball (Dedalus BallBasis, free-fall units, "
        "Ra = 1e6, Pr = 1, heat source S = 6, stress-free impermeable wall with fixed heat flux "
        "dT/dr = -S/3, SBDF2 with CFL steps <= 0.02). Initial condition: conductive profile 1 - r^2 plus "
        "low-pass filtered random noise; "
        "the convective instability grows through the stored window. Channel: temperature on Dedalus' "
        "(phi, theta, r) grid; coords are Cartesian points, spherical_coords (phi, theta, r), weights the "
        "quadrature (sum 4 pi / 3). Presets: noise 0.1, 14 frames t = 3.0, 3.2, .., 5.6 (published cadence); "
        "paper 48x24x24 with 512/128 trajectories. "
        "Needs the optional GPL-3 dependency Dedalus (bash scripts/install_dedalus.sh)."
    ),
    requires=("dedalus", "mpi4py"),
)
