"""Heat diffusion on the plane (``diffusion_plane``), solved exactly in closed form.

Equation: ``u_t = D (u_xx + u_yy)`` with ``D = 0.1`` on the physical square ``[-3, 3]^2`` with zero-flux
(Neumann) walls, sampled on a 64 x 64 grid that includes the walls (``x_i = -3 + 6 i / 63``). The stored
coordinates are the physical ones divided by 3, so they span ``[-1, 1]^2`` (``coords[i, j] = (x_i, y_j) / 3``,
"ij" indexing: x grows with the first grid axis, y with the second), the ``se2`` geometry's convention.

Published setup (enf-pde, ``DiffusionDataset``): py-pde ``DiffusionPDE(0.1)`` on ``[-3, 3]^2`` with py-pde's
default non-periodic boundary condition (Neumann), explicit steps of 0.01, a frame every 0.5 up to t = 16,
drop the first 7 frames and keep 20 (t = 3.5, 4.0, ..., 13.0). The initial condition is
``ScalarField.insert([x, y], value)`` with ``value`` uniform in ``[5, 5.5]``: py-pde *adds an integrated
amount*, so 5 - 5.5 is the source's total mass (its grid peak is ``value / cell_area``, about 570). Sources
lie at ``x`` uniform in ``[-2, 2]`` and ``y`` uniform in ``[0, 2]`` for train but ``[-2, 0]`` for test (the
out-of-distribution split of the paper).

Here the source is a Gaussian of that mass and standard deviation ``source_std = 0.1`` (about one grid cell,
like py-pde's cell-sized insertion), and the solution is exact: a Gaussian stays a Gaussian with variance
``s^2(t) = source_std^2 + 2 D t`` per axis, and the Neumann walls are imposed exactly by the method of images
(reflect the source across ``x = -3`` and ``x = 3``, period 12; the same in y; at t = 0 the images add less
than ``exp(-200)`` because sources are at least 1 from the walls). Each axis factorises:

    u(x, y, t) = M g_x(x, t) g_y(y, t),  g(x, t) = sum_n [phi(x - c - 2nL) + phi(x - (2a - c) - 2nL)],

with ``phi`` the normal density of variance ``s^2(t)``, ``a = -3``, ``L = 6``. Why Neumann and not the free
(unbounded) kernel: the horizon is not short relative to the domain. A source may sit 1 from a wall; at the
first stored time t = 3.5 the free kernel's value on that wall is 0.61 (peak 1.23, mass 5.5), at t = 13 it
is 0.28 (peak 0.34), and over the stored frames a free kernel would lose up to 47 % of the mass through the
walls (source in a corner). The Neumann solution conserves the mass exactly, as py-pde's does.
``boundary="free"`` is available for comparison. Images ``|n| <= num_images`` (3) are summed; the nearest
omitted image is 36 away, a relative truncation error below ``exp(-36^2 / (2 * 3.21)) ~ 1e-87`` for t <= 16.

Stored initial-condition parameters (``ic_params``, columns :data:`IC_PARAM_NAMES`): the source centre
``source_x, source_y`` in the *stored coordinate convention* (physical / 3, like ``coords``; train files have
``source_y`` in ``[0, 2/3]``, test files in ``[-2/3, 0]``) and its total mass ``source_mass`` (physical units,
``sum(weights * u)`` of every frame).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from enf.data.pde.base import PDESpec

__all__ = [
    "DIFFUSION_PLANE",
    "IC_PARAM_NAMES",
    "diffusion_plane_coords",
    "diffusion_plane_ic_params",
    "diffusion_plane_times",
    "diffusion_plane_weights",
    "heat_kernel_1d",
    "heat_solution_plane",
    "sample_point_sources",
    "simulate_diffusion_plane",
]

log = logging.getLogger(__name__)

_PAPER: dict[str, Any] = {
    "num_train": 2048,
    "num_test": 32,
    "diffusivity": 0.1,
    "domain": [-3.0, 3.0],
    "resolution": 64,
    "boundary": "neumann",
    "num_images": 3,
    "source_std": 0.1,
    "source_mass_range": [5.0, 5.5],
    "source_x_range": [-2.0, 2.0],
    "source_y_range_train": [0.0, 2.0],
    "source_y_range_test": [-2.0, 0.0],
    "frame_dt": 0.5,
    "skip_frames": 7,
    "num_frames": 20,
}
_SMALL: dict[str, Any] = {**_PAPER, "num_train": 32, "num_test": 8}

IC_PARAM_NAMES = ("source_x", "source_y", "source_mass")


def _axis(params: Mapping[str, Any]) -> np.ndarray:
    """Physical grid points of one axis ``[resolution]`` (float64), walls included."""
    low, high = (float(v) for v in params["domain"])
    return np.linspace(low, high, int(params["resolution"]))


def diffusion_plane_coords(params: Mapping[str, Any]) -> np.ndarray:
    """Normalised grid coordinates ``[N, N, 2]`` in ``[-1, 1]^2``: ``coords[i, j] = (x_i, y_j) / half_width``.

    The physical point is ``centre + half_width * coords`` with ``centre, half_width`` of ``params["domain"]``
    (``[-3, 3]``: ``x = 3 * coords``).
    """
    low, high = (float(v) for v in params["domain"])
    axis = (_axis(params) - 0.5 * (low + high)) / (0.5 * (high - low))
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
    return grid.astype(np.float32)


def diffusion_plane_times(params: Mapping[str, Any]) -> np.ndarray:
    """Stored physical times ``[T]``: ``(skip_frames + k) frame_dt`` for ``k < num_frames`` (3.5 ... 13)."""
    k = np.arange(int(params["num_frames"])) + int(params["skip_frames"])
    return (k * float(params["frame_dt"])).astype(np.float32)


def diffusion_plane_weights(params: Mapping[str, Any]) -> np.ndarray:
    """Trapezoidal quadrature weights ``[N, N]`` in *physical* area units (they sum to 36 on ``[-3, 3]^2``).

    ``sum(weights * u)`` is the mass ``integral u dx dy``; for the Neumann solution (even about both walls)
    the trapezoidal rule on a wall-inclusive grid is spectrally accurate.
    """
    axis = _axis(params)
    w = np.full(axis.shape, axis[1] - axis[0])
    w[0] = w[-1] = 0.5 * (axis[1] - axis[0])
    return np.outer(w, w).astype(np.float32)


def heat_kernel_1d(
    x: np.ndarray,
    *,
    center: np.ndarray,
    variance: np.ndarray,
    domain: Sequence[float] | None = None,
    num_images: int = 3,
) -> np.ndarray:
    """One-dimensional heat solution of unit mass: a Gaussian, optionally reflected at Neumann walls.

    Args:
        x: evaluation points ``[P]``.
        center: source centres ``[n]``.
        variance: variances ``[T]`` (``source_std^2 + 2 D t``).
        domain: ``(a, b)`` for zero-flux walls at ``a`` and ``b`` (method of images, period ``2 (b - a)``);
            ``None`` for the free (unbounded) kernel.
        num_images: image periods ``|n| <= num_images`` summed when ``domain`` is given.

    Returns:
        ``[n, T, P]`` float64 densities (each integrates to 1 over the domain, or over R when free).
    """
    x = np.asarray(x, dtype=np.float64)[None, None, None, :]
    var = np.asarray(variance, dtype=np.float64)[None, :, None, None]
    c = np.asarray(center, dtype=np.float64)[:, None, None]
    if domain is None:
        shifts = c[..., None]  # [n, 1, 1, 1]
    else:
        a, b = (float(v) for v in domain)
        period = 2.0 * (b - a) * np.arange(-num_images, num_images + 1)  # [K]
        shifts = np.concatenate([c + period, (2.0 * a - c) + period], axis=-1)[..., None]  # [n, 1, 2K, 1]
    dens = np.exp(-((x - shifts) ** 2) / (2.0 * var)) / np.sqrt(2.0 * np.pi * var)  # [n, T, K', P]
    return dens.sum(axis=2)


def heat_solution_plane(
    *,
    x: np.ndarray,
    y: np.ndarray,
    center_x: np.ndarray,
    center_y: np.ndarray,
    mass: np.ndarray,
    times: np.ndarray,
    diffusivity: float,
    source_std: float,
    domain: Sequence[float] | None,
    num_images: int = 3,
) -> np.ndarray:
    """Exact solution of ``u_t = D lap u`` from Gaussian sources ``M N((cx, cy), source_std^2 I)``.

    Args:
        x, y: grid axes ``[Nx]``, ``[Ny]`` (physical units).
        center_x, center_y, mass: per-trajectory source centre and total mass ``[n]``.
        times: physical times ``[T]`` (t = 0 is the initial Gaussian).
        diffusivity: ``D``.
        source_std: standard deviation of the initial Gaussian (per axis).
        domain: ``(a, b)`` of the square ``[a, b]^2`` with Neumann walls, or ``None`` for free space.
        num_images: see :func:`heat_kernel_1d`.

    Returns:
        ``[n, T, Nx, Ny]`` float64 fields, ``u[s, k, i, j] = u_s(x_i, y_j, t_k)``.
    """
    variance = float(source_std) ** 2 + 2.0 * float(diffusivity) * np.asarray(times, dtype=np.float64)
    gx = heat_kernel_1d(x, center=center_x, variance=variance, domain=domain, num_images=num_images)
    gy = heat_kernel_1d(y, center=center_y, variance=variance, domain=domain, num_images=num_images)
    m = np.asarray(mass, dtype=np.float64)[:, None, None, None]
    return m * gx[..., :, None] * gy[..., None, :]


def sample_point_sources(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """Source ``(x, y, mass)`` per trajectory ``[n, 3]`` in physical units, one generator per seed.

    ``x`` is uniform in ``source_x_range``, ``y`` in ``source_y_range_<split>`` (train: upper half plane,
    test: lower half plane), the mass in ``source_mass_range``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"diffusion_plane: split must be 'train' or 'test', got {split!r}")
    x_range, y_range = params["source_x_range"], params[f"source_y_range_{split}"]
    m_range = params["source_mass_range"]
    out = np.empty((len(seeds), 3), dtype=np.float64)
    for row, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        out[row] = (rng.uniform(*x_range), rng.uniform(*y_range), rng.uniform(*m_range))
    return out


def diffusion_plane_ic_params(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """The stored initial-condition parameters ``[n, 3]``: :data:`IC_PARAM_NAMES` of each trajectory.

    The source centre in the ``coords`` convention (``(x, y) / half_width`` about the domain centre) and its
    mass, from :func:`sample_point_sources` with the same seeds as :func:`simulate_diffusion_plane`.
    """
    sources = sample_point_sources(params, split, seeds)
    low, high = (float(v) for v in params["domain"])
    centre = np.stack(
        [(sources[:, k] - 0.5 * (low + high)) / (0.5 * (high - low)) for k in (0, 1)], axis=-1
    )  # [n, 2]
    return np.concatenate([centre, sources[:, 2:3]], axis=-1)


def simulate_diffusion_plane(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """Generate trajectories ``[len(seeds), T, N, N, 1]`` (float32) of the planar heat equation.

    Args:
        params: a ``DIFFUSION_PLANE`` preset (see the module docstring for every key).
        split: ``"train"`` (sources with ``y`` in ``[0, 2]``) or ``"test"`` (``y`` in ``[-2, 0]``).
        seeds: one integer per trajectory; trajectory ``s`` depends on ``seeds[s]`` only.
    """
    if params["boundary"] not in ("neumann", "free"):
        raise ValueError(f"diffusion_plane: boundary must be 'neumann' or 'free', got {params['boundary']!r}")
    sources = sample_point_sources(params, split, seeds)
    axis = _axis(params)
    fields = heat_solution_plane(
        x=axis,
        y=axis,
        center_x=sources[:, 0],
        center_y=sources[:, 1],
        mass=sources[:, 2],
        times=diffusion_plane_times(params).astype(np.float64),
        diffusivity=float(params["diffusivity"]),
        source_std=float(params["source_std"]),
        domain=params["domain"] if params["boundary"] == "neumann" else None,
        num_images=int(params["num_images"]),
    )
    log.debug("diffusion_plane: %d %s trajectories", len(seeds), split)
    return fields[..., None].astype(np.float32)


DIFFUSION_PLANE = PDESpec(
    name="diffusion_plane",
    geometry="se2",
    equation="u_t = D (u_xx + u_yy), D = 0.1, on [-3, 3]^2 with zero-flux walls; Gaussian point source",
    channel_names=("u",),
    presets={"small": _SMALL, "paper": _PAPER},
    coords=diffusion_plane_coords,
    times=diffusion_plane_times,
    simulate=simulate_diffusion_plane,
    weights=diffusion_plane_weights,
    ic_params=diffusion_plane_ic_params,
    ic_param_names=IC_PARAM_NAMES,
    version="2",  # 2: stores ic_params (the fields are unchanged)
    description=(
        "Heat diffusion (D = 0.1) on [-3, 3]^2 (coords scaled to [-1, 1]) at 64 x 64 with Neumann walls, "
        "solved exactly (Gaussian kernel plus wall images). Initial condition: a narrow Gaussian (std 0.1) "
        "of mass 5 - 5.5 at x in [-2, 2]; y in [0, 2] for train and [-2, 0] for test (out-of-distribution "
        "split, as in enf-pde). 20 frames at t = 3.5, 4.0, ..., 13.0. Paper: 2048 train / 32 test. "
        "ic_params: source_x, source_y (coords convention) and source_mass per trajectory."
    ),
)
