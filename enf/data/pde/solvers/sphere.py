"""Heat equation on the unit sphere, solved exactly in time with spherical harmonics; sphere grid helpers.

Grid convention (shared with :mod:`enf.data.pde.solvers.shallow_water`): fields on a latitude-longitude grid are
``[..., nlat, nlon, C]``; row ``i`` is the colatitude ``theta_i`` from the north pole (row 0) to the south
pole, column ``j`` the longitude ``phi_j = 2 pi j / nlon`` (eastwards from 0). On torch-harmonics'
``"equiangular"`` grid ``theta_i = pi i / (nlat - 1)`` (both poles are nodes, so the first and last rows
each repeat one point ``nlon`` times); on its ``"legendre-gauss"`` grid the ``theta_i`` are the Gauss
nodes. ``coords[i, j] = (sin theta cos phi, sin theta sin phi, cos theta)`` (unit vectors, the ``sphere``
geometry's convention) and ``weights[i, j]`` are the grid's quadrature weights (Clenshaw-Curtis or Gauss in
``cos theta`` times ``2 pi / nlon``), summing to ``4 pi``: ``sum(weights * f)`` integrates ``f`` over S^2.

Diffusion dataset (``diffusion_sphere``): ``u_t = D lap_S2 u`` on the unit sphere with ``D = 0.01``;
the initial condition is a Gaussian bump ``A exp(-d(x, c)^2 / (2 sigma^2))`` of the geodesic distance
``d`` to a centre ``c`` drawn uniformly on S^2 (normalised Gaussian vector; the published code swapped
the roles of the two angles, so its centres were not uniform). The solution is exact in time:
``u(t) = ISHT(exp(-D l (l + 1) t) SHT(u0))``. The file stores each trajectory's bump centre as its
``ic_params`` (columns ``centre_x, centre_y, centre_z``: the unit vector ``c`` in the ``coords``
convention); width and amplitude are the same for every trajectory (``parameters``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from enf.data.pde.base import PDESpec

__all__ = [
    "DIFFUSION_SPHERE",
    "IC_PARAM_NAMES",
    "angles_to_unit_vectors",
    "block_mean",
    "bump_centre",
    "bump_centres",
    "gaussian_bump",
    "grid_angles",
    "grid_coords",
    "grid_weights",
    "heat_sphere_solution",
    "pool_coords",
    "random_unit_vectors",
    "sht_pair",
]

log = logging.getLogger(__name__)

GRIDS = ("equiangular", "legendre-gauss")


# ----------------------------------------------------------------------------------------------- grid


def grid_angles(*, nlat: int, nlon: int, grid: str = "equiangular") -> tuple[np.ndarray, np.ndarray]:
    """Colatitudes ``[nlat]`` (north pole first, radians) and longitudes ``[nlon]`` (from 0 eastwards).

    The nodes are those of torch-harmonics' transforms for the same ``grid`` (float64).
    """
    from torch_harmonics.quadrature import clenshaw_curtiss_weights, legendre_gauss_weights

    if grid == "equiangular":
        cost, _ = clenshaw_curtiss_weights(nlat, -1.0, 1.0)
    elif grid == "legendre-gauss":
        cost, _ = legendre_gauss_weights(nlat, -1.0, 1.0)
    else:
        raise ValueError(f"unknown sphere grid {grid!r}; choose one of {GRIDS}")
    # torch-harmonics orders the nodes by increasing cos(theta) and flips them: north pole first
    colat = np.arccos(np.clip(np.flip(cost.numpy()), -1.0, 1.0))
    if grid == "equiangular":
        colat = np.pi * np.arange(nlat) / (nlat - 1)  # the same nodes, without arccos rounding
    lon = 2.0 * np.pi * np.arange(nlon) / nlon
    return np.ascontiguousarray(colat, dtype=np.float64), lon


def grid_weights(*, nlat: int, nlon: int, grid: str = "equiangular") -> np.ndarray:
    """Quadrature weights ``[nlat, nlon]`` (float64, sum ``4 pi``) of the grid: ``sum(w f) ~ int_S2 f``."""
    from torch_harmonics.quadrature import clenshaw_curtiss_weights, legendre_gauss_weights

    if grid == "equiangular":
        _, w = clenshaw_curtiss_weights(nlat, -1.0, 1.0)
    elif grid == "legendre-gauss":
        _, w = legendre_gauss_weights(nlat, -1.0, 1.0)
    else:
        raise ValueError(f"unknown sphere grid {grid!r}; choose one of {GRIDS}")
    w_lat = np.flip(w.numpy()).astype(np.float64)
    return np.repeat(w_lat[:, None] * (2.0 * np.pi / nlon), nlon, axis=1)


def angles_to_unit_vectors(colat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(sin t cos p, sin t sin p, cos t) [..., 3]`` for broadcastable colatitude ``t``, longitude ``p``."""
    colat, lon = np.broadcast_arrays(colat, lon)
    st = np.sin(colat)
    return np.stack([st * np.cos(lon), st * np.sin(lon), np.cos(colat)], axis=-1)


def grid_coords(*, nlat: int, nlon: int, grid: str = "equiangular") -> np.ndarray:
    """Unit vectors ``[nlat, nlon, 3]`` (float64) of the grid nodes (see the module docstring)."""
    colat, lon = grid_angles(nlat=nlat, nlon=nlon, grid=grid)
    return angles_to_unit_vectors(colat[:, None], lon[None, :])


def block_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means over 2x2 blocks, ``sum(w f) / sum(w)``: ``values [..., nlat, nlon, C]`` and
    ``weights [nlat, nlon]`` -> ``[..., nlat/2, nlon/2, C]`` (float64)."""
    x = rearrange(np.asarray(values, dtype=np.float64), "... (i a) (j b) c -> ... i j (a b) c", a=2, b=2)
    w = rearrange(np.asarray(weights, dtype=np.float64), "(i a) (j b) -> i j (a b) 1", a=2, b=2)
    return (x * w).sum(axis=-2) / w.sum(axis=-2)


def pool_coords(coords: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area-weighted centroids on the sphere of the 2x2 blocks of a grid.

    Args:
        coords: unit vectors ``[nlat, nlon, 3]`` of the fine grid.
        weights: its quadrature (area) weights ``[nlat, nlon]``.

    Returns:
        ``[nlat/2, nlon/2, 3]`` float64 unit vectors ``normalise(sum(w x) / sum(w))`` per block.
    """
    coords, weights = np.asarray(coords), np.asarray(weights)
    if coords.ndim != 3 or coords.shape[-1] != 3 or coords.shape[:2] != weights.shape:
        raise ValueError(
            f"pool_coords needs coords [nlat, nlon, 3] and weights [nlat, nlon], got {coords.shape}, {weights.shape}"
        )
    if coords.shape[0] % 2 or coords.shape[1] % 2:
        raise ValueError(f"pool_coords needs an even number of rows and columns, got {coords.shape[:2]}")
    centroid = block_mean(coords, weights)
    return centroid / np.linalg.norm(centroid, axis=-1, keepdims=True)


@lru_cache(maxsize=8)
def sht_pair(*, nlat: int, nlon: int, lmax: int, grid: str = "equiangular") -> tuple[Any, Any]:
    """Cached ``(RealSHT, InverseRealSHT)`` with ``mmax = lmax`` (triangular truncation ``l < lmax``).

    The forward transform maps ``[..., nlat, nlon]`` to complex ``[..., lmax, lmax]`` coefficients
    (orthonormal spherical harmonics, index ``[l, m]``, ``m >= 0``); the inverse maps them back.
    """
    import torch_harmonics as th

    if lmax > nlat:
        raise ValueError(f"lmax={lmax} exceeds nlat={nlat}")
    sht = th.RealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid).double()
    isht = th.InverseRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid).double()
    return sht, isht


# ------------------------------------------------------------------------------------- heat equation


def random_unit_vectors(rng: np.random.Generator, num: int) -> np.ndarray:
    """``[num, 3]`` points uniform on S^2 (normalised standard Gaussian vectors)."""
    v = rng.standard_normal((num, 3))
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    while np.any(norm < 1e-12):  # measure zero; redraw to stay well defined
        v = rng.standard_normal((num, 3))
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / norm


def gaussian_bump(coords: np.ndarray, centre: np.ndarray, *, sigma: float, amplitude: float) -> np.ndarray:
    """``amplitude * exp(-d^2 / (2 sigma^2))`` with ``d`` the geodesic angle from ``centre``.

    Args:
        coords: unit vectors ``[..., 3]``.
        centre: a unit vector ``[3]``.
    Returns:
        ``[...]`` values (float64).
    """
    cos_d = np.clip(coords @ np.asarray(centre, dtype=np.float64), -1.0, 1.0)
    d = np.arccos(cos_d)
    return amplitude * np.exp(-(d**2) / (2.0 * sigma**2))


def heat_sphere_solution(
    u0: np.ndarray | Tensor,
    *,
    times: Sequence[float] | np.ndarray,
    diffusivity: float,
    lmax: int,
    grid: str = "equiangular",
) -> np.ndarray:
    """Exact solution of ``u_t = D lap_S2 u`` (unit sphere) at ``times`` for grid data ``u0``.

    ``u0`` is projected onto spherical harmonics of degree ``l < lmax`` (torch-harmonics ``RealSHT``), each
    degree is multiplied by ``exp(-D l (l + 1) t)``, and the result is transformed back. For ``u0`` band
    limited below ``lmax`` this is exact to round-off; otherwise it is the exact solution of the projected
    initial condition. The projection is exact on the equiangular grid when ``2 (lmax - 1) < nlat``.

    Args:
        u0: ``[..., nlat, nlon]`` initial field(s).
        times: ``[T]`` times (any order, ``t >= 0``).
        diffusivity: ``D``.
        lmax: spectral truncation (degrees ``0 .. lmax - 1``).
        grid: torch-harmonics grid name of ``u0``.
    Returns:
        ``[..., T, nlat, nlon]`` float64.
    """
    x = torch.as_tensor(np.asarray(u0), dtype=torch.float64)
    nlat, nlon = x.shape[-2:]
    sht, isht = sht_pair(nlat=nlat, nlon=nlon, lmax=lmax, grid=grid)
    t = torch.as_tensor(np.asarray(times, dtype=np.float64))
    ell = torch.arange(lmax, dtype=torch.float64)
    decay = torch.exp(-diffusivity * t[:, None] * (ell * (ell + 1))[None, :])  # [T, lmax]
    with torch.no_grad():
        coeffs = sht(x)  # [..., lmax, lmax]
        coeffs_t = coeffs.unsqueeze(-3) * decay[:, :, None].to(coeffs.dtype)  # [..., T, lmax, lmax]
        return isht(coeffs_t).numpy()


# -------------------------------------------------------------------------------------------- spec


def _coords(params: Mapping[str, Any]) -> np.ndarray:
    return grid_coords(nlat=params["nlat"], nlon=params["nlon"], grid=params["grid"]).astype(np.float32)


def _weights(params: Mapping[str, Any]) -> np.ndarray:
    return grid_weights(nlat=params["nlat"], nlon=params["nlon"], grid=params["grid"]).astype(np.float32)


def _times(params: Mapping[str, Any]) -> np.ndarray:
    return (np.arange(params["num_frames"]) * params["frame_interval"]).astype(np.float32)


def bump_centre(seed: int) -> np.ndarray:
    """The bump centre ``[3]`` of the trajectory with ``seed`` (uniform on S^2, its own generator)."""
    return random_unit_vectors(np.random.default_rng(seed), 1)[0]


IC_PARAM_NAMES = ("centre_x", "centre_y", "centre_z")


def bump_centres(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """The stored initial-condition parameters ``[len(seeds), 3]``: the bump centre (unit vector) per seed."""
    del params, split  # the centre depends on the trajectory seed only
    return np.stack([bump_centre(int(seed)) for seed in seeds]).reshape(len(seeds), 3)


def _simulate(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """``[len(seeds), T, nlat, nlon, 1]`` float32; one trajectory at a time (independent of batching)."""
    del split  # train and test draw from the same distribution (as published); the seeds differ
    lmax, sigma = params["lmax"], params["sigma"]
    tail = math.exp(-0.5 * sigma**2 * lmax * (lmax + 1))
    if tail > 1e-6:
        log.warning("diffusion_sphere: sigma=%g is not resolved by lmax=%d (tail ~%.1e)", sigma, lmax, tail)
    coords = grid_coords(nlat=params["nlat"], nlon=params["nlon"], grid=params["grid"])
    times = _times(params).astype(np.float64)
    out = np.empty((len(seeds), len(times), params["nlat"], params["nlon"], 1), dtype=np.float32)
    for k, seed in enumerate(seeds):
        u0 = gaussian_bump(coords, bump_centre(seed), sigma=sigma, amplitude=params["amplitude"])
        out[k, ..., 0] = heat_sphere_solution(
            u0, times=times, diffusivity=params["diffusivity"], lmax=lmax, grid=params["grid"]
        )
    return out


_COMMON: dict[str, Any] = {
    "nlat": 64,  # colatitude nodes (poles included); published Dedalus grid 128 (phi) x 64 (theta)
    "nlon": 128,
    "grid": "equiangular",
    "lmax": 32,  # degrees 0..31: exact transforms on 64 equiangular rows; bump spectrum < 1e-14 beyond
    "diffusivity": 0.01,
    "sigma": 0.25,  # geodesic width of the bump (radians)
    "amplitude": 1.0,  # bump height (published: 1)
    "frame_interval": 5.0,  # published: RK222 step 0.5, a frame every 10 steps
    "num_frames": 20,
}

DIFFUSION_SPHERE = PDESpec(
    name="diffusion_sphere",
    geometry="sphere",
    equation="u_t = D lap_S2 u on the unit sphere (D = 0.01), Gaussian bump at a uniform random point",
    channel_names=("u",),
    presets={
        "small": {"num_train": 32, "num_test": 8, **_COMMON},
        "paper": {"num_train": 512, "num_test": 128, **_COMMON},
    },
    coords=_coords,
    times=_times,
    simulate=_simulate,
    weights=_weights,
    ic_params=bump_centres,
    ic_param_names=IC_PARAM_NAMES,
    version="2",  # 2: stores ic_params (the fields are unchanged)
    description=(
        "Heat equation on the unit sphere, solved exactly in time with spherical harmonics (torch-harmonics "
        "RealSHT, degrees l < lmax, each multiplied by exp(-D l(l+1) t)). Initial condition: a Gaussian bump "
        "amplitude * exp(-d^2 / (2 sigma^2)) of the geodesic distance d to a centre drawn uniformly on S^2. "
        "Equiangular grid with poles, rows = colatitude from the north pole, columns = longitude from 0; "
        "coords are unit vectors, weights the Clenshaw-Curtis quadrature (sum 4 pi). Frames at t = 0, 5, "
        "..., 95 (published: step 0.5, every 10 steps, 20 frames; 512/128 trajectories). ic_params: the bump "
        "centre (centre_x, centre_y, centre_z) per trajectory."
    ),
    requires=("torch-harmonics",),
)
