"""Hyperspherical distributions on ``S^{m-1}`` for the shape VAE: Power Spherical and von Mises–Fisher.

Both are ``torch.distributions.Distribution`` subclasses with reparameterised ``rsample``, ``log_prob``,
``entropy``, ``mean`` and ``kl_to_uniform()`` (the KL divergence to the uniform prior on the sphere).
``loc`` has shape ``[..., m]`` (unit norm), ``concentration`` shape ``[...]``; the two broadcast to the
batch shape, the event shape is ``[m]``.

Conventions shared by both: a sample is ``x = H(loc) [t, sqrt(1 - t^2) v]`` where ``t = <x, loc>`` is the
scalar marginal, ``v`` is uniform on ``S^{m-2}`` and ``H`` is a Householder reflection taking ``e_1`` to
``loc`` (built from ``e_1 + sign(loc_1) loc``, whose norm is at least ``sqrt(2)``, so it never degenerates).
Normalisers, entropies and KLs are evaluated in float64 and cast back, so float32 stays accurate at
concentrations up to ``1e5``. Samples are drawn from torch's global generator.

Gradients w.r.t. the concentration: Power Spherical samples ``t`` from two Gamma variates (torch's implicit
reparameterisation of the Gamma). The von Mises–Fisher marginal comes from Wood's (1994) rejection sampler,
which is not differentiable; its gradient is the implicit reparameterisation ``dt/dkappa =
-(dF(t | kappa)/dkappa) / p(t | kappa)`` (Figurnov et al., 2018) with ``F`` the CDF of ``t``, evaluated by a
fixed Gauss–Legendre quadrature. It is exact to quadrature accuracy (first derivatives only: second
derivatives through the concentration are not supported).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from enf.shape.bessel import log_bessel_ive

__all__ = [
    "PowerSpherical",
    "VonMisesFisher",
    "log_bessel_ive",
    "sample_uniform_sphere",
    "uniform_sphere_log_area",
]

logger = logging.getLogger(__name__)

NORM_TOL = 1e-4  # default tolerance on | |loc| - 1 | (and on sample norms in validated log_prob calls)
_QUAD_NODES = 96  # Gauss–Legendre nodes of the implicit vMF gradient
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(_QUAD_NODES)
_MAX_ROUNDS = 64  # rounds of Wood's vectorised rejection sampler (acceptance is above 1/2 per round)


def uniform_sphere_log_area(m: int) -> float:
    """Log of the surface area of the unit sphere ``S^{m-1}`` in ``R^m``: ``log(2 pi^{m/2} / Gamma(m/2))``."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be an integer >= 1 (the ambient dimension), got {m!r}")
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def sample_uniform_sphere(
    shape: tuple[int, ...] | torch.Size,
    m: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform samples on ``S^{m-1}``, shape ``[*shape, m]`` (normalised standard Gaussians)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be an integer >= 1 (the ambient dimension), got {m!r}")
    g = torch.randn(*tuple(shape), m, dtype=dtype, device=device, generator=generator)
    return g / torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)


class _UnitSphere(constraints.Constraint):
    """Vectors whose last axis has unit norm within ``tol``."""

    event_dim = 1

    def __init__(self, tol: float) -> None:
        self.tol = tol
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return (torch.linalg.vector_norm(value, dim=-1) - 1).abs() <= self.tol


def _reflect(y: Tensor, loc: Tensor) -> Tensor:
    """Apply the Householder reflection taking ``e_1`` to ``loc`` (with ``t`` sign-adjusted) to ``y [..., m]``.

    With ``s = sign(loc_1)`` (``+1`` at 0), ``u = e_1 + s loc`` maps ``e_1`` to ``-s loc``; negating the first
    coordinate by ``s`` then gives ``<x, loc> = y_1``. ``|u|^2 = 2 (1 + |loc_1|) >= 2``.
    """
    loc = loc.expand_as(y)
    s = torch.where(loc[..., :1] >= 0, 1.0, -1.0).to(y.dtype)
    u = loc * s
    u = torch.cat([u[..., :1] + 1, u[..., 1:]], dim=-1)
    y = torch.cat([-s * y[..., :1], y[..., 1:]], dim=-1)
    coef = 2 * (u * y).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True)
    return y - coef * u


class _Hyperspherical(Distribution):
    """Shared validation, shapes and sample assembly of the two distributions."""

    arg_constraints = {"concentration": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        concentration: Tensor | float,
        *,
        norm_tol: float = NORM_TOL,
        validate_args: bool | None = None,
    ) -> None:
        name = type(self).__name__
        if not isinstance(loc, Tensor) or not loc.is_floating_point():
            raise TypeError(f"{name}: loc must be a floating-point tensor [..., m], got {type(loc).__name__}")
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"{name}: loc must have shape [..., m] with m >= 2, got {tuple(loc.shape)}")
        if not bool(torch.isfinite(loc).all()):
            raise ValueError(f"{name}: loc contains non-finite values")
        dev = (torch.linalg.vector_norm(loc.detach(), dim=-1) - 1).abs().max().item()
        if dev > norm_tol:
            raise ValueError(
                f"{name}: loc must be unit-norm along its last axis (tolerance {norm_tol:g}), but a norm "
                f"deviates from 1 by {dev:.3g}; normalise it first, e.g. torch.nn.functional.normalize(loc, dim=-1)"
            )
        if isinstance(concentration, bool) or not isinstance(concentration, (Tensor, int, float)):
            raise TypeError(
                f"{name}: concentration must be a tensor or a float, got {type(concentration).__name__}"
            )
        if not isinstance(concentration, Tensor):
            concentration = torch.tensor(float(concentration), dtype=loc.dtype, device=loc.device)
        if concentration.dtype != loc.dtype:
            raise TypeError(
                f"{name}: concentration dtype {concentration.dtype} differs from loc dtype {loc.dtype}; "
                "cast one of them"
            )
        bad = ~(torch.isfinite(concentration) & (concentration > 0))
        if bool(bad.any()):
            raise ValueError(
                f"{name}: concentration must be finite and > 0, got {concentration[bad].flatten()[:4].tolist()}"
            )
        try:
            batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        except RuntimeError as err:
            raise ValueError(
                f"{name}: loc batch shape {tuple(loc.shape[:-1])} and concentration shape "
                f"{tuple(concentration.shape)} do not broadcast"
            ) from err
        self.dim = int(loc.shape[-1])
        self.loc = loc.expand(*batch_shape, self.dim)
        self.concentration = concentration.expand(batch_shape)
        self._support = _UnitSphere(norm_tol)
        super().__init__(batch_shape, torch.Size([self.dim]), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return self._support

    @property
    def mode(self) -> Tensor:
        return self.loc

    def _kappa64(self) -> Tensor:
        return self.concentration.to(torch.float64)

    def _assemble(self, t: Tensor, one_minus_t: Tensor) -> Tensor:
        """Sample ``[..., m]`` from the marginal ``t`` (and ``1 - t``, for precision), shape ``[...]``."""
        v = sample_uniform_sphere(t.shape, self.dim - 1, dtype=t.dtype, device=t.device)
        sin = torch.sqrt((one_minus_t * (2 - one_minus_t)).clamp_min(torch.finfo(t.dtype).tiny))
        return _reflect(torch.cat([t[..., None], sin[..., None] * v], dim=-1), self.loc)

    def kl_to_uniform(self) -> Tensor:
        """``KL(q || uniform on S^{m-1}) = -entropy + log area(S^{m-1})``, shape ``batch_shape``."""
        return (uniform_sphere_log_area(self.dim) - self._entropy64()).to(self.loc.dtype)

    def entropy(self) -> Tensor:
        return self._entropy64().to(self.loc.dtype)

    def _entropy64(self) -> Tensor:
        raise NotImplementedError

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance=None) -> _Hyperspherical:
        """The same distribution with its parameters expanded to ``batch_shape`` (validation off)."""
        batch_shape = torch.Size(batch_shape)
        return type(self)(
            self.loc.expand(*batch_shape, self.dim),
            self.concentration.expand(batch_shape),
            norm_tol=self._support.tol,
            validate_args=False,
        )


class PowerSpherical(_Hyperspherical):
    """Power Spherical distribution (De Cao & Aziz, 2020): density ``C (1 + <loc, x>)^kappa`` on ``S^{m-1}``.

    The marginal ``(1 + t) / 2`` is ``Beta(alpha, beta)`` with ``alpha = (m - 1)/2 + kappa``,
    ``beta = (m - 1)/2``; ``log C = -[(alpha + beta) log 2 + beta log pi + lgamma(alpha) - lgamma(alpha + beta)]``.

    Args:
        loc: mean direction ``[..., m]``, unit norm within ``norm_tol`` (raises otherwise; not normalised).
        concentration: ``kappa > 0``, shape broadcastable with ``loc.shape[:-1]``.
        norm_tol: tolerance on ``| |loc| - 1 |`` and on the norm of values passed to ``log_prob``.
        validate_args: torch's argument/sample validation switch.
    """

    def _ab(self) -> tuple[Tensor, float]:
        beta = 0.5 * (self.dim - 1)
        return self._kappa64() + beta, beta

    def _log_normaliser64(self) -> Tensor:
        alpha, beta = self._ab()
        return -(
            (alpha + beta) * math.log(2)
            + beta * math.log(math.pi)
            + torch.lgamma(alpha)
            - torch.lgamma(alpha + beta)
        )

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))[:-1]
        kappa = self.concentration.expand(shape)
        beta = torch.full_like(kappa, 0.5 * (self.dim - 1))
        g1 = torch.distributions.Gamma(kappa + beta, torch.ones_like(kappa)).rsample()
        g2 = torch.distributions.Gamma(beta, torch.ones_like(kappa)).rsample()
        tiny = torch.finfo(kappa.dtype).tiny
        total = (g1 + g2).clamp_min(tiny)
        return self._assemble((g1 - g2) / total, 2 * g2 / total)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dot = (self.loc * value).sum(-1)
        return self._log_normaliser64().to(dot.dtype) + self.concentration * torch.log1p(dot)

    def _entropy64(self) -> Tensor:
        alpha, beta = self._ab()
        mean_log = math.log(2) + torch.digamma(alpha) - torch.digamma(alpha + beta)  # E[log(1 + t)]
        return -self._log_normaliser64() - self._kappa64() * mean_log

    @property
    def mean(self) -> Tensor:
        """``E[x] = kappa / (kappa + m - 1) loc``, shape ``[..., m]``."""
        k = self.concentration
        return (k / (k + self.dim - 1))[..., None] * self.loc


def _vmf_log_norm_plus_kappa(m: int, kappa: Tensor) -> Tensor:
    """``log C_m(kappa) + kappa`` for the vMF density ``C_m(kappa) exp(kappa <loc, x>)`` (float64)."""
    nu = 0.5 * m - 1
    return torch.xlogy(nu, kappa) - 0.5 * m * math.log(2 * math.pi) - log_bessel_ive(nu, kappa)


def _vmf_one_minus_mean_length(m: int, kappa: Tensor) -> Tensor:
    """``1 - A_m(kappa)`` with ``A_m = I_{m/2} / I_{m/2-1}`` the mean resultant length (float64)."""
    return -torch.expm1(log_bessel_ive(0.5 * m, kappa) - log_bessel_ive(0.5 * m - 1, kappa))


def _wood_one_minus_w(kappa: Tensor, m: int) -> Tensor:
    """``1 - w`` for Wood's (1994) rejection sampler of the vMF marginal ``w = <x, loc>`` (float64, no grad).

    Vectorised: each round proposes for every element still pending; at most ``_MAX_ROUNDS`` rounds. All
    quantities use the cancellation-free forms ``1 - w = 2 b z / (1 - (1 - b) z)`` and the acceptance
    ``kappa (w - x0) + (m - 1) log((1 + b) / (2 (1 - (1 - b) z))) >= log U``.
    """
    n1 = float(m - 1)
    b = n1 / (2 * kappa + torch.sqrt(4 * kappa**2 + n1**2))
    half = torch.full_like(kappa, 0.5 * n1)
    proposal = torch.distributions.Gamma(half, torch.ones_like(kappa))
    out = torch.full_like(kappa, float("nan"))
    pending = torch.ones_like(kappa, dtype=torch.bool)
    for rounds in range(1, _MAX_ROUNDS + 1):
        g1, g2 = proposal.sample(), proposal.sample()
        total = g1 + g2
        z, one_minus_z = g1 / total, g2 / total
        denom = one_minus_z + b * z
        one_minus_w = 2 * b * z / denom
        log_accept = kappa * (2 * b / (1 + b) - one_minus_w) + n1 * (
            torch.log1p(b) - math.log(2) - torch.log(denom)
        )
        accept = pending & (torch.log(torch.rand_like(kappa)) <= log_accept)
        out = torch.where(accept, one_minus_w, out)
        pending = pending & ~accept
        if not bool(pending.any()):
            logger.debug("Wood's sampler: %d samples accepted in %d rounds", out.numel(), rounds)
            return out
    raise RuntimeError(
        f"Wood's sampler left {int(pending.sum())} samples unaccepted after {_MAX_ROUNDS} rounds"
    )


def _vmf_dw_dkappa(one_minus_w: Tensor, kappa: Tensor, m: int) -> Tensor:
    """Implicit reparameterisation ``dw/dkappa = int_w^1 (t - A) p(t) dt / p(w)`` of the vMF marginal (float64).

    ``p(t) ~ exp(kappa t) (1 - t^2)^{(m-3)/2}``, ``A = E[t]``. With ``t = cos(theta)``, ``L = 1 - w`` and
    ``theta_w = arccos(w) = 2 asin(sqrt(L / 2))`` the integral is ``int_0^theta_w ((1 - A) - (1 - cos theta))
    exp(kappa (L - (1 - cos theta))) sin(theta)^{m-2} dtheta / (L (2 - L))^{(m-3)/2}``, smooth in ``theta`` for
    every integer ``m >= 2``; evaluated in log space with Gauss–Legendre nodes on ``[0, theta_w]``.
    """
    u = torch.as_tensor((_GL_NODES + 1) / 2, dtype=torch.float64, device=kappa.device)
    wts = torch.as_tensor(_GL_WEIGHTS / 2, dtype=torch.float64, device=kappa.device)
    one_minus_a = _vmf_one_minus_mean_length(m, kappa)[..., None]
    L, k = one_minus_w[..., None], kappa[..., None]
    theta_w = 2 * torch.asin(torch.sqrt(L / 2).clamp(max=1.0))
    theta = theta_w * u
    one_minus_cos = 2 * torch.sin(theta / 2) ** 2
    log_pos = k * (L - one_minus_cos) + (m - 2) * torch.log(torch.sin(theta))
    log_pos = log_pos - 0.5 * (m - 3) * torch.log((L * (2 - L)).clamp_min(torch.finfo(L.dtype).tiny))
    top = log_pos.amax(dim=-1, keepdim=True)
    integrand = (one_minus_a - one_minus_cos) * torch.exp(log_pos - top)
    return theta_w[..., 0] * (wts * integrand).sum(-1) * torch.exp(top[..., 0])


class VonMisesFisher(_Hyperspherical):
    """von Mises–Fisher distribution: density ``C_m(kappa) exp(kappa <loc, x>)`` on ``S^{m-1}``.

    ``log C_m(kappa) = (m/2 - 1) log kappa - (m/2) log(2 pi) - log I_{m/2-1}(kappa)`` (``log_bessel_ive``).
    ``rsample`` uses Wood's rejection sampler for ``w = <x, loc>`` with the implicit reparameterisation
    gradient w.r.t. the concentration (see the module docstring); the gradient w.r.t. ``loc`` is pathwise.

    Args:
        loc: mean direction ``[..., m]``, unit norm within ``norm_tol`` (raises otherwise; not normalised).
        concentration: ``kappa > 0``, shape broadcastable with ``loc.shape[:-1]``.
        norm_tol: tolerance on ``| |loc| - 1 |`` and on the norm of values passed to ``log_prob``.
        validate_args: torch's argument/sample validation switch.
    """

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))[:-1]
        kappa = self.concentration.expand(shape)
        k64 = kappa.detach().to(torch.float64)
        with torch.no_grad():
            one_minus_w64 = _wood_one_minus_w(k64, self.dim)
        one_minus_w = one_minus_w64.to(kappa.dtype)
        if kappa.requires_grad:
            with torch.no_grad():
                dw = _vmf_dw_dkappa(one_minus_w64, k64, self.dim).to(kappa.dtype)
            # The value is unchanged; d(1 - w)/dkappa = -dw/dkappa.
            one_minus_w = one_minus_w - dw * (kappa - kappa.detach())
        return self._assemble(1 - one_minus_w, one_minus_w)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dot = (self.loc * value).sum(-1)
        log_norm = _vmf_log_norm_plus_kappa(self.dim, self._kappa64()).to(dot.dtype)
        return log_norm + self.concentration * (dot - 1)

    def _entropy64(self) -> Tensor:
        kappa = self._kappa64()
        return -_vmf_log_norm_plus_kappa(self.dim, kappa) + kappa * _vmf_one_minus_mean_length(
            self.dim, kappa
        )

    @property
    def mean(self) -> Tensor:
        """``E[x] = A_m(kappa) loc`` with ``A_m = I_{m/2} / I_{m/2-1}``, shape ``[..., m]``."""
        a = 1 - _vmf_one_minus_mean_length(self.dim, self._kappa64())
        return a.to(self.loc.dtype)[..., None] * self.loc
