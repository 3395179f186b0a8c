"""2D incompressible Navier-Stokes on the periodic unit square (``navier_stokes_torus``), vorticity form.

Equation, on ``[0, L)^2`` with ``L = 1``:

    w_t + u . grad w = nu lap w + f,   u = (psi_y, -psi_x),   -lap psi = w,

with ``nu = 1e-3`` and the published enf-pde forcing ``f = 0.3 (cos 4 pi x + cos 4 pi y)`` (enf-pde
``datasets/__init__.py``, ``navier_stokes``; DINo's generator instead uses
``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))``, available as ``forcing_type="sin_cos_diagonal"`` with amplitude
0.1 and wavenumber 1). The initial vorticity is the enf-pde/DINo/FNO Gaussian random field ``GRF(alpha=2.5,
tau=7)`` (:func:`gaussian_random_field`), evolved for a warm-up of 30 time units (the published code records
its warm-up state at t = 28.5 because of a frame-rounding quirk; we use exactly 30); the stored trajectory is
then a frame every 1 time unit, 20 frames (t = 0 ... 19 after the warm-up), as published.

Dataset sizes: ``paper`` has 512 train / 32 test trajectories, DINo's NS sequence counts (the setup of the
non-equivariant baselines the ENF paper compares with); enf-pde's own configs use 16 / 16 (MAML config,
looks like a debug setting) or 8192 / 512 (non-MAML config): override ``num_train`` / ``num_test`` for those.
``small`` has 8 / 4. Train and test trajectories come from the same distribution (different seeds).

Grid and coordinates: 64 x 64 points ``x_i = i L / N`` (no duplicate endpoint); ``w[..., i, j] = w(x_i, y_j)``
("ij"). Stored coordinates are ``2 x / L - 1`` in ``[-1, 1)^2``, the ``torus2d`` geometry's convention.

Solver (:func:`solve_vorticity`): batched pseudo-spectral in torch (rfft2), 2/3-rule dealiasing of the
nonlinear term (inputs and output truncated to ``|k_x|, |k_y| <= N/3`` in integer wavenumbers), the viscous
term integrated exactly with an integrating factor and the nonlinear term plus forcing with classical RK4
(Lawson's IF-RK4, 4th order), default ``dt = 0.02`` (the published solver is Crank-Nicolson + forward Euler
at ``dt = 1e-3``, first order in time). Verified: over a full 49-time-unit run (warm-up + 19 frames) the
``dt = 0.02`` solution differs from a ``dt = 0.005`` one by at most 3e-8 relative (float32 storage rounding is
6e-8); 0.01 -> 2e-9, 0.04 -> 5e-7 (4th order). The advective CFL number ``max|u| k_max dt`` is about 0.7
(``max|u| ~ 0.26``, ``k_max = 2 pi 21``), against RK4's stability limit of 2.8 on the imaginary axis. The
Taylor-Green vortex decays as ``exp(-2 nu k^2 t)``, ``k = 2 pi m / L``, to rounding; see
``tests/data/pde/test_navier_stokes.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enf.data.pde.base import PDESpec

__all__ = [
    "NAVIER_STOKES_DECAYING",
    "NAVIER_STOKES_TORUS",
    "advection_term",
    "gaussian_random_field",
    "navier_stokes_coords",
    "navier_stokes_forcing",
    "navier_stokes_times",
    "navier_stokes_weights",
    "simulate_navier_stokes",
    "solve_vorticity",
]

log = logging.getLogger(__name__)

_DTYPES = {"float64": torch.float64, "float32": torch.float32}

_PAPER: dict[str, Any] = {
    "num_train": 512,
    "num_test": 32,
    "viscosity": 1e-3,
    "domain_length": 1.0,
    "resolution": 64,
    "forcing_type": "cos_xy",
    "forcing_amplitude": 0.3,
    "forcing_wavenumber": 2,
    "grf_alpha": 2.5,
    "grf_tau": 7.0,
    "warmup_time": 30.0,
    "frame_dt": 1.0,
    "num_frames": 20,
    "solver": "ifrk4",
    "dt": 0.02,
    "dealias": "2/3",
    "dtype": "float64",
    "batch_size": 32,
}
_SMALL: dict[str, Any] = {**_PAPER, "num_train": 8, "num_test": 4}
# Decaying turbulence: no forcing, so every translation of the torus commutes with the dynamics (the published
# forcing cos 4 pi x + cos 4 pi y only commutes with shifts by multiples of half the period).
# Viscosity 1e-4 keeps it advective: over the stored window the vorticity's standard deviation only falls from
# 0.15 to 0.13, and at frame 10 the nonlinear part of the solution is half its norm (0.19 at nu = 1e-3, where
# the field decays to a quarter, mostly by diffusion).
_DECAYING_PAPER: dict[str, Any] = {
    **_PAPER,
    "viscosity": 1e-4,
    "forcing_type": "none",
    "forcing_amplitude": 0.0,
    "warmup_time": 10.0,
}
_DECAYING_SMALL: dict[str, Any] = {**_DECAYING_PAPER, "num_train": 8, "num_test": 4}


def navier_stokes_coords(params: Mapping[str, Any]) -> np.ndarray:
    """Normalised grid coordinates ``[N, N, 2]`` in ``[-1, 1)^2`` ("ij", no duplicate endpoint).

    ``coords[i, j] = (2 x_i / L - 1, 2 y_j / L - 1)`` on the physical grid ``x_i = i L / N``; the physical
    point is ``L (coords + 1) / 2``.
    """
    n = int(params["resolution"])
    axis = -1.0 + 2.0 * np.arange(n) / n
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).astype(np.float32)


def navier_stokes_times(params: Mapping[str, Any]) -> np.ndarray:
    """Stored times ``[T]`` measured from the end of the warm-up: ``k * frame_dt`` for ``k < num_frames``."""
    return (np.arange(int(params["num_frames"])) * float(params["frame_dt"])).astype(np.float32)


def navier_stokes_weights(params: Mapping[str, Any]) -> np.ndarray:
    """Uniform quadrature weights ``[N, N]`` in physical area units (``(L / N)^2``, summing to ``L^2``)."""
    n, length = int(params["resolution"]), float(params["domain_length"])
    return np.full((n, n), (length / n) ** 2, dtype=np.float32)


def navier_stokes_forcing(
    *, resolution: int, domain_length: float, forcing_type: str, amplitude: float, wavenumber: int
) -> Tensor:
    """Time-independent forcing ``[N, N]`` (float64) on the grid ``x_i = i L / N``.

    ``"cos_xy"``: ``A (cos(2 pi m x / L) + cos(2 pi m y / L))`` (enf-pde: A = 0.3, m = 2);
    ``"sin_cos_diagonal"``: ``A (sin(2 pi m (x + y) / L) + cos(2 pi m (x + y) / L))`` (DINo: A = 0.1, m = 1);
    ``"none"``: zero.
    """
    axis = torch.arange(resolution, dtype=torch.float64) * (domain_length / resolution)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    k = 2.0 * math.pi * wavenumber / domain_length
    if forcing_type == "cos_xy":
        return amplitude * (torch.cos(k * x) + torch.cos(k * y))
    if forcing_type == "sin_cos_diagonal":
        return amplitude * (torch.sin(k * (x + y)) + torch.cos(k * (x + y)))
    if forcing_type == "none":
        return torch.zeros_like(x)
    raise ValueError(f"unknown forcing_type {forcing_type!r}; choose 'cos_xy', 'sin_cos_diagonal' or 'none'")


def gaussian_random_field(*, seeds: Sequence[int], resolution: int, alpha: float, tau: float) -> Tensor:
    """Zero-mean Gaussian random fields ``[n, N, N]`` (float64), one ``torch.Generator`` per seed.

    Same law as the FNO/DINo/enf-pde ``GaussianRF(2, N, alpha, tau)`` sampler on the unit square:
    ``w = Re ifft2(N^2 sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha / 2) xi)`` with ``xi`` standard complex
    normal per integer wavenumber ``k`` in ``[-N/2, N/2)^2``, ``sigma = tau^(alpha - 1)``, ``k = 0`` removed.
    """
    k = torch.fft.fftfreq(resolution, d=1.0 / resolution, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    sigma = tau ** (0.5 * (2.0 * alpha - 2.0))
    sqrt_eig = resolution**2 * math.sqrt(2.0) * sigma * (4.0 * math.pi**2 * k2 + tau**2) ** (-alpha / 2.0)
    sqrt_eig[0, 0] = 0.0
    out = torch.empty(len(seeds), resolution, resolution, dtype=torch.float64)
    for row, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed) % 2**63)
        xi = torch.randn(resolution, resolution, dtype=torch.complex128, generator=gen)
        out[row] = torch.fft.ifft2(sqrt_eig * xi).real
    return out


class _Spectral:
    """Wavenumbers, dealiasing mask and the vorticity right-hand side on an ``N x N`` rfft2 grid.

    The nonlinear term is evaluated in conservative form, ``u . grad w = div(u w)`` (``div u = 0``), from
    dealiased ``u, v, w``: 3 inverse and 2 forward real FFTs per evaluation. With inputs and output truncated
    to ``|k| <= N/3`` (2/3 rule) the grid products are alias-free on the kept modes, so this equals the
    advective form ``u w_x + v w_y`` there up to rounding, and the mean mode of the term is exactly zero.
    """

    def __init__(self, *, resolution: int, domain_length: float, viscosity: float, dtype: torch.dtype):
        n = resolution
        scale = 2.0 * math.pi / domain_length
        kx_int = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None]
        ky_int = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)[None, :]
        kx, ky = scale * kx_int, scale * ky_int
        k2 = kx**2 + ky**2
        inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        mask = ((kx_int.abs() <= n / 3.0) & (ky_int.abs() <= n / 3.0)).to(torch.float64)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        # w_hat -> (u, v, w)_hat: u = psi_y, v = -psi_x with psi_hat = w_hat / |k|^2, all dealiased.
        to_fields = torch.stack([1j * ky * inv_k2 * mask, -1j * kx * inv_k2 * mask, mask + 0j])
        # (u w, v w)_hat -> -div(u w)_hat, dealiased.
        divergence = torch.stack([-1j * kx * mask, -1j * ky * mask])
        self.to_fields = to_fields.to(complex_dtype)[:, None]  # [3, 1, N, N//2+1]
        self.divergence = divergence.to(complex_dtype)[:, None]  # [2, 1, N, N//2+1]
        self.linear = (-viscosity * k2).to(dtype)  # the viscous operator's eigenvalues
        self.n = n

    def nonlinear(self, w_hat: Tensor) -> Tensor:
        """``-(u . grad w)^`` dealiased ``[B, N, N//2+1]`` from ``w_hat`` ``[B, N, N//2+1]``."""
        u, v, w = torch.fft.irfft2(self.to_fields * w_hat, s=(self.n, self.n))
        fluxes = torch.fft.rfft2(torch.stack([u * w, v * w]))
        return (self.divergence * fluxes).sum(dim=0)


def advection_term(w: Tensor, *, domain_length: float = 1.0) -> Tensor:
    """The dealiased nonlinear term ``-u . grad w`` ``[B, N, N]`` of the solver, in physical space.

    ``w`` ``[B, N, N]`` on ``x_i = i L / N``; ``u = (psi_y, -psi_x)``, ``-lap psi = w``.
    """
    sp = _Spectral(resolution=w.shape[-1], domain_length=domain_length, viscosity=0.0, dtype=w.dtype)
    return torch.fft.irfft2(sp.nonlinear(torch.fft.rfft2(w)), s=w.shape[-2:])


def solve_vorticity(
    w0: Tensor,
    *,
    forcing: Tensor | None,
    viscosity: float,
    domain_length: float,
    dt: float,
    record_times: Sequence[float],
) -> Tensor:
    """Integrate the 2D vorticity equation on the periodic square from ``w0``, batched over trajectories.

    Integrating-factor RK4 (Lawson): with ``E = exp(-nu k^2 dt)`` applied exactly to the viscous term, the
    nonlinear term ``-u . grad w`` (2/3-dealiased) plus forcing is advanced by classical RK4. Computation is
    in ``w0.dtype`` (float64 recommended; float32 supported).

    Args:
        w0: initial vorticity ``[B, N, N]`` on ``x_i = i L / N`` ("ij").
        forcing: ``[N, N]`` (or ``[B, N, N]``) time-independent forcing, or ``None``.
        viscosity: ``nu``.
        domain_length: period ``L``.
        dt: time step; every record time must be a multiple of it (to 1e-9 relative).
        record_times: non-decreasing times ``>= 0`` at which to return the state.

    Returns:
        ``[B, len(record_times), N, N]`` vorticity at ``record_times``.
    """
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2]:
        raise ValueError(f"w0 must be [B, N, N], got {tuple(w0.shape)}")
    dtype, n = w0.dtype, w0.shape[-1]
    steps = []
    for t in record_times:
        s = round(float(t) / dt)
        if s < 0 or abs(s * dt - float(t)) > 1e-9 * max(1.0, abs(float(t))):
            raise ValueError(f"record time {t} is not a non-negative multiple of dt = {dt}")
        steps.append(s)
    if any(b < a for a, b in zip(steps[:-1], steps[1:], strict=True)):
        raise ValueError("record_times must be non-decreasing")
    sp = _Spectral(resolution=n, domain_length=domain_length, viscosity=viscosity, dtype=dtype)
    f_hat = torch.fft.rfft2(forcing.to(dtype)) if forcing is not None else torch.zeros((), dtype=dtype)
    e_full = torch.exp(sp.linear * dt)
    e_half = torch.exp(sp.linear * (0.5 * dt))

    def rhs(w_hat: Tensor) -> Tensor:
        return sp.nonlinear(w_hat) + f_hat

    w_hat = torch.fft.rfft2(w0)
    out = torch.empty(w0.shape[0], len(steps), n, n, dtype=dtype)
    done = 0
    for index, target in enumerate(steps):
        for _ in range(target - done):
            k1 = rhs(w_hat)
            k2 = rhs(e_half * (w_hat + 0.5 * dt * k1))
            k3 = rhs(e_half * w_hat + 0.5 * dt * k2)
            k4 = rhs(e_full * w_hat + dt * e_half * k3)
            w_hat = e_full * w_hat + (dt / 6.0) * (e_full * k1 + 2.0 * e_half * (k2 + k3) + k4)
        done = target
        out[:, index] = torch.fft.irfft2(w_hat, s=(n, n))
    return out


@contextlib.contextmanager
def _torch_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op threads, restoring the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def simulate_navier_stokes(params: Mapping[str, Any], split: str, seeds: list[int]) -> np.ndarray:
    """Generate vorticity trajectories ``[len(seeds), T, N, N, 1]`` (float32).

    Each trajectory: GRF initial vorticity from its seed, ``warmup_time`` of forced evolution (not stored),
    then ``num_frames`` frames every ``frame_dt``. Trajectories are solved in batches of
    ``params["batch_size"]``; the result does not depend on the batching (up to floating-point rounding,
    amplified by the flow's sensitivity; see the tests). Train and test draw from the same distribution
    (disjoint by their seeds).

    The solver runs on one torch intra-op thread (the caller's setting is restored afterwards): a 64 x 64
    step is many small tensor operations, too small for intra-op threads to pay off, and on a shared 2-core
    machine two threads made the ``small`` preset 20x slower (468 s instead of 22 s). Parallelise over
    trajectories with processes instead.
    """
    if split not in ("train", "test"):
        raise ValueError(f"navier_stokes_torus: split must be 'train' or 'test', got {split!r}")
    if params["solver"] != "ifrk4" or params["dealias"] != "2/3":
        raise ValueError("navier_stokes_torus: only solver='ifrk4' with dealias='2/3' is implemented")
    n, length = int(params["resolution"]), float(params["domain_length"])
    dtype = _DTYPES[str(params["dtype"])]
    forcing = navier_stokes_forcing(
        resolution=n,
        domain_length=length,
        forcing_type=str(params["forcing_type"]),
        amplitude=float(params["forcing_amplitude"]),
        wavenumber=int(params["forcing_wavenumber"]),
    )
    warmup = float(params["warmup_time"])
    record = [warmup + float(t) for t in navier_stokes_times(params).astype(np.float64)]
    batch = max(1, int(params["batch_size"]))
    out = np.empty((len(seeds), len(record), n, n, 1), dtype=np.float32)
    with torch.no_grad(), _torch_threads(1):
        for start in range(0, len(seeds), batch):
            chunk = list(seeds[start : start + batch])
            w0 = gaussian_random_field(
                seeds=chunk, resolution=n, alpha=float(params["grf_alpha"]), tau=float(params["grf_tau"])
            )
            w = solve_vorticity(
                w0.to(dtype),
                forcing=forcing,
                viscosity=float(params["viscosity"]),
                domain_length=length,
                dt=float(params["dt"]),
                record_times=record,
            )
            out[start : start + len(chunk), ..., 0] = w.to(torch.float32).numpy()
            log.debug("navier_stokes_torus: %s trajectories %d-%d done", split, start, start + len(chunk) - 1)
    return out


NAVIER_STOKES_TORUS = PDESpec(
    name="navier_stokes_torus",
    geometry="torus2d",
    equation="w_t + u.grad w = nu lap w + f, u = (psi_y, -psi_x), -lap psi = w, nu = 1e-3, periodic [0, 1)^2",
    channel_names=("vorticity",),
    presets={"small": _SMALL, "paper": _PAPER},
    coords=navier_stokes_coords,
    times=navier_stokes_times,
    simulate=simulate_navier_stokes,
    weights=navier_stokes_weights,
    version="1",
    description=(
        "2D incompressible Navier-Stokes (vorticity, nu = 1e-3) on the periodic unit square (coords scaled "
        "to [-1, 1)) at 64 x 64, forcing 0.3 (cos 4 pi x + cos 4 pi y) as in enf-pde; initial vorticity a "
        "Gaussian random field (alpha 2.5, tau 7) warmed up for 30 time units; 20 frames every 1 time unit "
        "(train on the first 10, extrapolate to the rest). Pseudo-spectral IF-RK4, dt 0.02, 2/3 dealiasing. "
        "Paper: 512 train / 32 test (DINo's counts)."
    ),
)


NAVIER_STOKES_DECAYING = dataclasses.replace(
    NAVIER_STOKES_TORUS,
    name="navier_stokes_decaying",
    equation="w_t + u.grad w = nu lap w, u = (psi_y, -psi_x), -lap psi = w, nu = 1e-4, periodic [0, 1)^2",
    presets={"small": _DECAYING_SMALL, "paper": _DECAYING_PAPER},
    description=(
        "2D decaying turbulence: the navier_stokes_torus grid and solver without forcing (nu = 1e-4), so the dynamics "
        "commute with every translation of the torus (the honest benchmark of torus2d's translation "
        "equivariance; the forced navier_stokes_torus only commutes with half-period shifts). Initial "
        "vorticity a Gaussian random field (alpha 2.5, tau 7) warmed up for 10 time units; 20 frames every 1 "
        "time unit. Paper preset: 512 train / 32 test."
    ),
)
