"""Rotating shallow water on the sphere: a randomly perturbed Galewsky jet, torch-harmonics' spectral solver.

Equations (torch-harmonics ``ShallowWaterSolver``, vorticity-divergence form on a sphere of radius ``a``
rotating at ``Omega``): prognostic spectral geopotential ``Phi = g h``, vorticity and divergence, truncated
to degrees and orders ``< lmax``, third-order Adams-Bashforth steps (forward-Euler / AB start exactly as
the solver's ``timestep``) and implicit hyperdiffusion of vorticity and divergence
``exp(-(dt / tau) (l (l + 1) / (L (L + 1)))^order)`` per step (``L = lmax - 1``; ``tau = 2 h``, order 4 as in
the solver). Our stepper batches trajectories and keeps the multistep history across stored frames; its
tendency is the solver's ``dudtspec`` (checked in the tests).

Initial condition (Galewsky et al. 2004, as in the published setup): the zonal jet
``u = umax / e_n exp(1 / ((lat - lat0)(lat - lat1)))`` between ``lat0 = pi / 7`` and ``lat1 = pi / 2 - lat0``
(``umax = 80 m/s``), the height in nonlinear balance with it (mean depth ``havg``), plus the unbalanced bump
``hpert cos(lat) exp(-(dlon / alpha)^2) exp(-((lat2 - lat) / beta)^2)`` with ``dlon`` the wrapped
longitude offset from ``pert_lon``; per trajectory ``hpert ~ U(120 +- 30) m``, ``alpha ~ U(1/3 +- 1/9)``,
``beta ~ U(1/15 +- 1/45)`` (and ``pert_lon`` jittered by ``U(+- pert_lon_spread)``; 0 by default). The
file stores them per trajectory as ``ic_params`` (columns :data:`IC_PARAM_NAMES`: ``hpert`` in m, ``alpha``,
``beta`` and the bump longitude ``lon2`` in radians).

Grids: the solver runs on a Gauss grid sized for alias-free quadratic products (``solver_nlat >=
(3 lmax + 1) / 2``, ``solver_nlon >= 3 lmax + 1``); stored frames are evaluated exactly from the spectral
state on the equiangular FULL grid ``nlat x nlon`` (poles included, :mod:`enf.data.pde.solvers.sphere`
convention) and then area-weighted 2x2 average pooled to the TRAINING grid ``nlat/2 x nlon/2``:
``f_c = sum(w f) / sum(w)`` over each 2x2 block, ``weights_c = sum(w)`` (so quadrature integrals are
preserved exactly); the coarse coords are the blocks' area-weighted centroids on the sphere,
``normalise(sum(w x) / sum(w))`` of the four fine unit vectors ``x`` (``sphere.pool_coords``). A centroid's
longitude is the mean of its block's two longitudes, but its colatitude is not the mean colatitude: the
weights favour the row nearer the equator, and averaging two longitudes shortens the horizontal part by
``cos(dlon / 2)`` (version 1 used the mean angles).

Channels (both grids): ``h`` height anomaly ``Phi / g - havg`` (m), ``u`` eastward and ``v`` northward
velocity (m/s; the published Dedalus data stored the southward ``u_theta``). Times in hours. Symmetry:
rotation (Coriolis) leaves only rotations about the polar axis (the ``sphere_axial`` group); the dataset is
registered with geometry ``sphere`` as in the published setup, and ``u, v`` are not SO(3) scalars.

Interface: ``SHALLOW_WATER_SPHERE.simulate`` returns the training grid, ``coords``/``weights`` describe it,
``extra_arrays`` gives ``coords_full`` / ``weights_full``. For the super-resolution test
:func:`simulate_full` returns the full grid; ``pool_to_training_grid(simulate_full(...))`` equals
``simulate(...)`` bit for bit, so a writer can run the solver once and store both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enf.data.pde.base import PDESpec
from enf.data.pde.solvers.sphere import block_mean, grid_coords, grid_weights, pool_coords

__all__ = [
    "IC_PARAM_NAMES",
    "SHALLOW_WATER_SPHERE",
    "balanced_zonal_state",
    "coords_full",
    "draw_perturbation",
    "galewsky_state",
    "get_solver",
    "hyperdiffusion_factor",
    "integrate",
    "perturbation_ic_params",
    "pool_to_training_grid",
    "simulate_full",
    "spectral_to_huv",
    "tendency",
    "weights_full",
    "williamson2_state",
]

log = logging.getLogger(__name__)

_SOLVER_KEYS = (
    "solver_nlat",
    "solver_nlon",
    "solver_grid",
    "lmax",
    "dt",
    "radius",
    "omega",
    "gravity",
    "havg",
)


@lru_cache(maxsize=4)
def _solver(key: tuple) -> Any:
    from torch_harmonics.examples import ShallowWaterSolver

    nlat, nlon, grid, lmax, dt, radius, omega, gravity, havg = key
    if 2 * nlat < 3 * lmax + 1 or nlon < 3 * lmax + 1:
        log.warning("shallow water: %dx%d %s grid is not alias-free for lmax=%d", nlat, nlon, grid, lmax)
    solver = ShallowWaterSolver(
        nlat,
        nlon,
        dt,
        lmax=lmax,
        mmax=lmax,
        grid=grid,
        radius=radius,
        omega=omega,
        gravity=gravity,
        havg=havg,
    )
    return solver.double()


def get_solver(params: Mapping[str, Any]) -> Any:
    """The (cached, float64) ``ShallowWaterSolver`` for the simulation grid and constants of ``params``."""
    return _solver(tuple(params[k] for k in _SOLVER_KEYS))


@lru_cache(maxsize=4)
def _output_transforms(nlat: int, nlon: int, lmax: int) -> tuple[Any, Any]:
    import torch_harmonics as th

    kw = {"lmax": lmax, "mmax": lmax, "grid": "equiangular", "csphase": False}  # the solver's convention
    return th.InverseRealSHT(nlat, nlon, **kw).double(), th.InverseRealVectorSHT(nlat, nlon, **kw).double()


# ------------------------------------------------------------------------------------------ dynamics


def tendency(solver: Any, uspec: Tensor) -> Tensor:
    """``d/dt`` of the spectral state ``[..., 3, lmax, lmax]`` (geopotential, vorticity, divergence).

    The solver's ``dudtspec`` for a batch of states (the two vector transforms are fused into one call).
    """
    grid = solver.spec2grid(uspec)  # [..., 3, nlat, nlon]
    uv = solver.getuv(uspec[..., 1:, :, :])  # [..., 2, nlat, nlon]
    phi, absvrt = grid[..., 0:1, :, :], grid[..., 1:2, :, :] + solver.coriolis
    fluxes = solver.vrtdivspec(torch.stack([uv * absvrt, uv * phi], dim=-4))  # [..., 2, 2, lmax, lmax]
    energy = solver.grid2spec(phi[..., 0, :, :] + 0.5 * uv.square().sum(dim=-3))
    return torch.stack(
        [-fluxes[..., 1, 1, :, :], -fluxes[..., 0, 1, :, :], fluxes[..., 0, 0, :, :] - solver.lap * energy],
        dim=-3,
    )


def hyperdiffusion_factor(solver: Any, *, dt: float, timescale: float, order: int) -> Tensor:
    """Per-step damping ``[lmax, lmax]`` of vorticity/divergence (``timescale=inf`` switches it off)."""
    ratio = solver.lap / solver.lap[-1, 0]
    return torch.exp(-(dt / timescale) * ratio**order)


def integrate(
    solver: Any,
    uspec: Tensor,
    *,
    dt: float,
    save_steps: list[int],
    hyperdiffusion_timescale: float = 7200.0,
    hyperdiffusion_order: int = 4,
) -> Tensor:
    """Adams-Bashforth-3 steps of states ``[B, 3, lmax, lmax]`` -> ``[B, len(save_steps), 3, lmax, lmax]``.

    ``save_steps`` are increasing step counts (0 = the initial state). The first two steps use the solver's
    start-up (forward Euler, then its two-level formula); the history is kept between saved frames.
    """
    damp = hyperdiffusion_factor(
        solver, dt=dt, timescale=hyperdiffusion_timescale, order=hyperdiffusion_order
    )
    saved, history, step = [], [], 0
    u = uspec.clone()
    for target in save_steps:
        if target < step:
            raise ValueError(f"save_steps must be increasing, got {save_steps}")
        while step < target:
            history = [tendency(solver, u), *history][:3]
            f0 = history[0]
            f1 = history[1] if len(history) > 1 else f0
            f2 = history[2] if len(history) > 2 else f0  # start-up: Euler, then the solver's 2-level step
            u = u + dt * ((23.0 / 12.0) * f0 - (16.0 / 12.0) * f1 + (5.0 / 12.0) * f2)
            u[..., 1:, :, :] = damp * u[..., 1:, :, :]
            step += 1
        saved.append(u.clone())
    return torch.stack(saved, dim=1)


# ----------------------------------------------------------------------------------- initial states


def balanced_zonal_state(solver: Any, u_zonal: Tensor, *, extra_height: Tensor | None = None) -> Tensor:
    """Spectral state ``[3, lmax, lmax]`` of the zonal wind ``u_zonal [nlat, nlon]`` (m/s, solver grid)
    with the geopotential in nonlinear balance (mean depth ``havg``) plus ``g * extra_height`` (m).

    The balance ``lap(Phi + |u|^2 / 2) = curl((zeta + f) u)`` (zero divergence tendency) is solved with the
    spectrally truncated wind, so a zonal state without ``extra_height`` is steady up to round-off (the
    solver's own ``galewsky_initial_condition`` uses the untruncated grid wind instead).
    """
    vrtdiv = torch.tril(solver.vrtdivspec(torch.stack([u_zonal, torch.zeros_like(u_zonal)])))
    uv = solver.getuv(vrtdiv)  # the truncated wind the dynamics sees, so the balance holds discretely
    absvrt = solver.spec2grid(vrtdiv[0]) + solver.coriolis
    flux = solver.vrtdivspec(uv * absvrt)
    phi = solver.invlap * flux[0] - solver.grid2spec(0.5 * uv.square().sum(0))
    phi[0, 0] = math.sqrt(4.0 * math.pi) * solver.gravity * solver.havg  # Y_00 = 1 / sqrt(4 pi)
    if extra_height is not None:
        phi = phi + solver.grid2spec(solver.gravity * extra_height)
    return torch.tril(torch.stack([phi, vrtdiv[0], vrtdiv[1]]))


def galewsky_state(
    solver: Any,
    *,
    umax: float = 80.0,
    lat0: float = math.pi / 7,
    lat1: float = 0.5 * math.pi - math.pi / 7,
    hpert: float = 120.0,
    alpha: float = 1.0 / 3.0,
    beta: float = 1.0 / 15.0,
    lat2: float = 0.25 * math.pi,
    lon2: float = 0.0,
) -> Tensor:
    """Galewsky jet with a height bump ``[3, lmax, lmax]`` (``hpert = 0``: the balanced, steady jet)."""
    lat = solver.lats.reshape(-1, 1).expand(solver.nlat, solver.nlon)
    lon = solver.lons.reshape(1, -1).expand(solver.nlat, solver.nlon)
    inside = (lat > lat0) & (lat < lat1)
    en = math.exp(-4.0 / (lat1 - lat0) ** 2)
    safe = torch.where(inside, lat, torch.full_like(lat, 0.5 * (lat0 + lat1)))
    jet = (umax / en) * torch.exp(1.0 / ((safe - lat0) * (safe - lat1)))
    u = torch.where(inside, jet, torch.zeros_like(lat))
    dlon = torch.remainder(lon - lon2 + math.pi, 2.0 * math.pi) - math.pi  # wrapped to [-pi, pi)
    bump = hpert * torch.cos(lat) * torch.exp(-((dlon / alpha) ** 2) - ((lat2 - lat) / beta) ** 2)
    return balanced_zonal_state(solver, u, extra_height=bump)


def williamson2_state(solver: Any, *, u0: float = 2.0 * math.pi * 6.37122e6 / (12 * 86400.0)) -> Tensor:
    """Williamson et al. (1992) test 2: solid-body zonal flow ``u0 cos(lat)`` in exact geostrophic balance,
    ``Phi = g havg - (a Omega u0 + u0^2 / 2)(sin^2 lat - 1/3)``; a steady solution. ``[3, lmax, lmax]``."""
    lat = solver.lats.reshape(-1, 1).expand(solver.nlat, solver.nlon)
    uv = torch.stack([u0 * torch.cos(lat), torch.zeros_like(lat)])
    coef = solver.radius * solver.omega * u0 + 0.5 * u0**2
    phi = solver.gravity * solver.havg - coef * (torch.sin(lat) ** 2 - 1.0 / 3.0)
    vrtdiv = solver.vrtdivspec(uv)
    return torch.tril(torch.stack([solver.grid2spec(phi), vrtdiv[0], vrtdiv[1]]))


# ------------------------------------------------------------------------------------------ outputs


def spectral_to_huv(solver: Any, uspec: Tensor, *, nlat: int, nlon: int) -> Tensor:
    """Evaluate states ``[..., 3, lmax, lmax]`` on the equiangular ``nlat x nlon`` grid.

    Returns ``[..., nlat, nlon, 3]`` float64: height anomaly ``Phi / g - havg`` (m), eastward ``u`` and
    northward ``v`` (m/s) from the vorticity/divergence with the solver's ``invlap`` (as its ``getuv``).
    """
    isht, ivsht = _output_transforms(nlat, nlon, solver.lmax)
    h = isht(uspec[..., 0, :, :]) / solver.gravity - solver.havg
    uv = ivsht(solver.invlap * uspec[..., 1:, :, :] / solver.radius)
    return torch.cat([h.unsqueeze(-3), uv], dim=-3).movedim(-3, -1)


def pool_to_training_grid(fields_full: np.ndarray | Tensor, params: Mapping[str, Any]) -> np.ndarray:
    """Area-weighted 2x2 average pooling ``[..., nlat, nlon, C] -> [..., nlat/2, nlon/2, C]`` (float32).

    Each coarse value is ``sum(w f) / sum(w)`` over its 2x2 block, ``w`` the full grid's quadrature weights.
    """
    if params["nlat"] % 2 or params["nlon"] % 2:
        raise ValueError(
            f"shallow water: nlat, nlon must be even (2x2 pooling), got {params['nlat']}, {params['nlon']}"
        )
    w = grid_weights(nlat=params["nlat"], nlon=params["nlon"])
    return block_mean(fields_full, w).astype(np.float32)


def coords_full(params: Mapping[str, Any]) -> np.ndarray:
    """Unit vectors ``[nlat, nlon, 3]`` of the full-resolution equiangular grid."""
    return grid_coords(nlat=params["nlat"], nlon=params["nlon"]).astype(np.float32)


def weights_full(params: Mapping[str, Any]) -> np.ndarray:
    """Clenshaw-Curtis quadrature weights ``[nlat, nlon]`` of the full grid (sum ``4 pi``)."""
    return grid_weights(nlat=params["nlat"], nlon=params["nlon"]).astype(np.float32)


def _coords(params: Mapping[str, Any]) -> np.ndarray:
    """Training-grid coords ``[nlat/2, nlon/2, 3]``: area-weighted block centroids (``sphere.pool_coords``)."""
    nlat, nlon = params["nlat"], params["nlon"]
    full = grid_coords(nlat=nlat, nlon=nlon)
    return pool_coords(full, grid_weights(nlat=nlat, nlon=nlon)).astype(np.float32)


def _weights(params: Mapping[str, Any]) -> np.ndarray:
    w = grid_weights(nlat=params["nlat"], nlon=params["nlon"])
    return w.reshape(params["nlat"] // 2, 2, params["nlon"] // 2, 2).sum(axis=(1, 3)).astype(np.float32)


def _extra_arrays(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"coords_full": coords_full(params), "weights_full": weights_full(params)}


def _times(params: Mapping[str, Any]) -> np.ndarray:
    frames = params["skip_frames"] + np.arange(params["num_frames"])
    return (frames * params["steps_per_frame"] * params["dt"] / 3600.0).astype(np.float32)


def draw_perturbation(params: Mapping[str, Any], seed: int) -> dict[str, float]:
    """The random bump parameters ``hpert, alpha, beta, lon2`` of the trajectory with ``seed``."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(-1.0, 1.0, size=4)
    return {
        "hpert": params["pert_height"] + params["pert_height_spread"] * float(r[0]),
        "alpha": params["pert_alpha"] + params["pert_alpha_spread"] * float(r[1]),
        "beta": params["pert_beta"] + params["pert_beta_spread"] * float(r[2]),
        "lon2": params["pert_lon"] + params["pert_lon_spread"] * float(r[3]),
    }


IC_PARAM_NAMES = ("hpert", "alpha", "beta", "lon2")


def perturbation_ic_params(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """The stored initial-condition parameters ``[len(seeds), 4]``: :data:`IC_PARAM_NAMES` per seed."""
    del split  # train and test draw from the same distribution
    rows = [draw_perturbation(params, int(s)) for s in seeds]
    return np.array([[row[name] for name in IC_PARAM_NAMES] for row in rows], dtype=np.float64).reshape(
        len(seeds), len(IC_PARAM_NAMES)
    )


def simulate_full(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """Trajectories on the FULL equiangular grid: ``[len(seeds), T, nlat, nlon, 3]`` float32 (h, u, v).

    Each seed fixes its own perturbation (:func:`draw_perturbation`); the trajectories are stepped as one
    batch (float64), so results agree with other batchings to round-off, not necessarily bit for bit.
    """
    del split  # train and test draw from the same distribution (as published); the seeds differ
    if params["nlat"] % 2 or params["nlon"] % 2:
        raise ValueError("shallow water: nlat and nlon must be even (2x2 pooling)")
    solver = get_solver(params)
    jet = {"umax": params["umax"], "lat0": params["jet_lat0"], "lat1": params["jet_lat1"]}
    jet["lat2"] = params["pert_lat"]
    with torch.no_grad():
        u0 = torch.stack([galewsky_state(solver, **jet, **draw_perturbation(params, s)) for s in seeds])
        first = params["skip_frames"]
        save = [(first + k) * params["steps_per_frame"] for k in range(params["num_frames"])]
        states = integrate(
            solver,
            u0,
            dt=params["dt"],
            save_steps=save,
            hyperdiffusion_timescale=params["hyperdiffusion_timescale"],
            hyperdiffusion_order=params["hyperdiffusion_order"],
        )
        fields = spectral_to_huv(solver, states, nlat=params["nlat"], nlon=params["nlon"])
    return fields.numpy().astype(np.float32)


def _simulate(params: Mapping[str, Any], split: str, seeds: list[int]) -> dict[str, np.ndarray]:
    """``fields``: training-grid trajectories ``[len(seeds), T, nlat/2, nlon/2, 3]`` (pooled
    :func:`simulate_full`) and ``fields_full``: the full-resolution ones ``[len(seeds), T, nlat, nlon, 3]``
    for super-resolution evaluation (one solver run for both)."""
    full = simulate_full(params, split, seeds)
    return {"fields": pool_to_training_grid(full, params), "fields_full": full}


_PHYSICS: dict[str, Any] = {
    "radius": 6.37122e6,
    "omega": 7.292e-5,
    "gravity": 9.80616,
    "havg": 1.0e4,  # SI units
    "umax": 80.0,
    "jet_lat0": math.pi / 7,
    "jet_lat1": 0.5 * math.pi - math.pi / 7,
    "pert_height": 120.0,
    "pert_height_spread": 30.0,
    "pert_alpha": 1.0 / 3.0,
    "pert_alpha_spread": 1.0 / 9.0,
    "pert_beta": 1.0 / 15.0,
    "pert_beta_spread": 1.0 / 45.0,
    "pert_lat": 0.25 * math.pi,
    "pert_lon": 0.0,
    "pert_lon_spread": 0.0,
    "hyperdiffusion_timescale": 7200.0,
    "hyperdiffusion_order": 4,  # torch-harmonics' solver values
    "skip_frames": 6,
    "num_frames": 14,  # published: 20 stored, first 6 skipped (10 train + 4 extrapolation)
    "solver_grid": "legendre-gauss",
}

SHALLOW_WATER_SPHERE = PDESpec(
    name="shallow_water_sphere",
    geometry="sphere",
    equation="rotating shallow water on an Earth-sized sphere (vorticity-divergence), perturbed Galewsky jet",
    channel_names=("h", "u", "v"),
    presets={
        # 16x32 stored (32x64 full), T21 on a 32x64 Gauss grid, frames every 120 x 500 s = 16.7 h
        "small": {
            "num_train": 8,
            "num_test": 4,
            "nlat": 32,
            "nlon": 64,
            "lmax": 21,
            "solver_nlat": 32,
            "solver_nlon": 64,
            "dt": 500.0,
            "steps_per_frame": 120,
            **_PHYSICS,
        },
        # published sizes: 48x96 stored, 96x192 full; T42 on a 64x128 Gauss grid, frames every 240 x 250 s
        "paper": {
            "num_train": 512,
            "num_test": 128,
            "nlat": 96,
            "nlon": 192,
            "lmax": 42,
            "solver_nlat": 64,
            "solver_nlon": 128,
            "dt": 250.0,
            "steps_per_frame": 240,
            **_PHYSICS,
        },
    },
    coords=_coords,
    times=_times,
    simulate=_simulate,
    weights=_weights,
    extra_arrays=_extra_arrays,
    ic_params=perturbation_ic_params,
    ic_param_names=IC_PARAM_NAMES,
    version="2",  # 2: coords are area-weighted block centroids; stores ic_params
    description=(
        "Rotating shallow water (Earth radius, rotation and gravity, mean depth 10 km) solved with "
        "torch-harmonics' spectral ShallowWaterSolver (AB3, hyperdiffusion), from a Galewsky jet (80 m/s) in "
        "nonlinear balance plus "
        "a random height bump (120+-30 m, alpha 1/3+-1/9, beta 1/15+-1/45). Channels: height anomaly h (m), "
        "eastward u and northward v (m/s). Stored every 60000 s (16.7 h), frames 6..19 (14 = 10 train + 4 "
        "extrapolation), times in hours. `fields` are on the 2x2 area-weighted-pooled grid (coords: the "
        "blocks' area-weighted centroids); `coords_full` / `weights_full` (and simulate_full) give the full "
        "equiangular grid for super-resolution tests. ic_params: hpert, alpha, beta, lon2 per trajectory."
    ),
    requires=("torch-harmonics",),
)
