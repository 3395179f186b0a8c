"""Hyperspherical distributions against independent oracles: scipy.stats / scipy.special / mpmath and closed forms.

Monte-Carlo checks are seeded and use a tolerance of five standard errors; every oracle comparison has a
negative control (a normaliser or closed form with ``m`` off by one) that the same tolerance must reject.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from enf.shape.distributions import (
    PowerSpherical,
    VonMisesFisher,
    _vmf_dw_dkappa,
    _vmf_log_norm_plus_kappa,
    log_bessel_ive,
    sample_uniform_sphere,
    uniform_sphere_log_area,
)

DT = torch.float64
GRID_M = (3, 8, 30)
GRID_KAPPA = (0.1, 10.0, 1e3, 1e4)


def _unit(m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(m, generator=g, dtype=DT), dim=0)


def _tangent(mu: torch.Tensor, seed: int) -> torch.Tensor:
    v = _unit(mu.shape[-1], seed)
    return F.normalize(v - (v @ mu) * mu, dim=0)


def _mean_length(m: int, kappa: float) -> float:
    return float(scipy.special.ive(m / 2, kappa) / scipy.special.ive(m / 2 - 1, kappa))


def _within(estimate: np.ndarray, target: float, *, sigmas: float = 5.0) -> bool:
    """Sample mean of ``estimate`` within ``sigmas`` standard errors of ``target``."""
    se = estimate.std(ddof=1) / math.sqrt(estimate.size)
    return abs(estimate.mean() - target) <= sigmas * se + 1e-15


def _ps_log_norm(m: int, kappa: float) -> float:
    a, b = (m - 1) / 2 + kappa, (m - 1) / 2
    return -((a + b) * math.log(2) + b * math.log(math.pi) + math.lgamma(a) - math.lgamma(a + b))


def test_uniform_sphere_log_area_closed_forms():
    expected = {1: 2.0, 2: 2 * math.pi, 3: 4 * math.pi, 4: 2 * math.pi**2, 5: 8 * math.pi**2 / 3}
    for m, area in expected.items():
        assert uniform_sphere_log_area(m) == pytest.approx(math.log(area), abs=1e-14)
    assert abs(uniform_sphere_log_area(6) - math.log(expected[5])) > 0.1  # negative control: m off by one
    with pytest.raises(ValueError, match="m must be"):
        uniform_sphere_log_area(0)


def test_sample_uniform_sphere_moments():
    m, n = 5, 200_000
    x = sample_uniform_sphere((n,), m, dtype=DT, generator=torch.Generator().manual_seed(3)).numpy()
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-14
    for i in range(m):
        assert _within(x[:, i], 0.0)
        assert _within(x[:, i] ** 2, 1 / m)  # E[x_i^2] = 1/m
        assert _within(x[:, i] ** 4, 3 / (m * (m + 2)))  # E[x_i^4] = 3 / (m (m + 2))
    assert not _within(x[:, 0] ** 2, 1 / (m + 1))  # negative control


def test_log_bessel_ive_matches_scipy_and_mpmath():
    orders = np.array([0, 0.5, 1, 1.5, 2.5, 3, 4, 9.5, 14, 24, 24.5, 29, 49, 99])
    nu, x = np.meshgrid(orders, np.logspace(-4, 5.5, 300), indexing="ij")
    with np.errstate(divide="ignore"):
        ref = np.log(scipy.special.ive(nu, x))
    ok = np.isfinite(ref)
    got = log_bessel_ive(torch.tensor(nu), torch.tensor(x)).numpy()
    assert (np.abs(got - ref)[ok] / np.maximum(1, np.abs(ref[ok]))).max() < 5e-14
    # Where scipy's ive underflows, mpmath (50 digits) is the oracle.
    mpmath.mp.dps = 50
    for order, xv in [(99, 1e-3), (49, 1e-4), (29, 1e-4)]:
        exact = float(mpmath.log(mpmath.besseli(order, xv)) - xv)
        val = float(log_bessel_ive(float(order), torch.tensor(xv, dtype=DT)))
        assert abs(val - exact) <= 1e-13 * abs(exact)
    wrong = log_bessel_ive(torch.tensor(nu + 1), torch.tensor(x)).numpy()  # negative control: order + 1
    assert (np.abs(wrong - ref)[ok] / np.maximum(1, np.abs(ref[ok]))).max() > 1e-3


def test_log_bessel_ive_gradient_matches_bessel_ratio():
    orders = np.array([0, 0.5, 2.5, 14, 29, 49])
    nu, x = np.meshgrid(orders, np.logspace(-2, 5, 200), indexing="ij")
    xt = torch.tensor(x, requires_grad=True)
    log_bessel_ive(torch.tensor(nu), xt).sum().backward()
    # d/dx log(I_nu(x) e^{-x}) = I_{nu+1}(x) / I_nu(x) + nu / x - 1
    ref = scipy.special.ive(nu + 1, x) / scipy.special.ive(nu, x) + nu / x - 1
    ok = np.isfinite(ref)
    assert (np.abs(xt.grad.numpy() - ref) / np.maximum(1, np.abs(ref)))[ok].max() < 1e-11


@pytest.mark.parametrize("m", GRID_M)
@pytest.mark.parametrize("kappa", GRID_KAPPA)
def test_vmf_log_prob_and_entropy_match_scipy(m, kappa):
    mu = _unit(m, seed=m)
    ref = scipy.stats.vonmises_fisher(mu.numpy(), kappa)
    x = np.concatenate([ref.rvs(300, random_state=1), sample_uniform_sphere((300,), m, dtype=DT).numpy()])
    dist = VonMisesFisher(mu, torch.tensor(kappa, dtype=DT))
    want = ref.logpdf(x)
    tol = 1e-12 * (1 + kappa + np.abs(want))  # float64 rounding of kappa <mu, x>
    assert np.all(np.abs(dist.log_prob(torch.tensor(x)).numpy() - want) <= tol)
    assert abs(float(dist.entropy()) - ref.entropy()) <= 1e-12 * (1 + kappa)
    # KL to the uniform prior = -H + log area, with scipy's entropy as the oracle.
    assert abs(float(dist.kl_to_uniform()) - (uniform_sphere_log_area(m) - ref.entropy())) <= 1e-12 * (
        1 + kappa
    )
    # Negative control: the normaliser with m off by one fails the same comparison.
    kappa64 = torch.tensor(kappa, dtype=DT)
    shift = float(_vmf_log_norm_plus_kappa(m + 1, kappa64) - _vmf_log_norm_plus_kappa(m, kappa64))
    assert abs(shift) > 1e-3


@pytest.mark.parametrize("m", GRID_M)
@pytest.mark.parametrize("kappa", GRID_KAPPA)
def test_vmf_samples_match_scipy(m, kappa):
    mu, n = _unit(m, seed=10 + m), 20_000
    dist = VonMisesFisher(mu, torch.tensor(kappa, dtype=DT))
    x = dist.sample((n,)).numpy()
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-13
    w, a = x @ mu.numpy(), _mean_length(m, kappa)
    assert _within(w, a)  # mean resultant length A_m(kappa) = I_{m/2} / I_{m/2-1}
    np.testing.assert_allclose(dist.mean.numpy(), a * mu.numpy(), rtol=1e-12, atol=1e-15)
    for i in range(m):  # the whole mean vector, i.e. the orientation of the reflection
        assert _within(x[:, i], a * float(mu[i]))
    w_ref = scipy.stats.vonmises_fisher(mu.numpy(), kappa).rvs(n, random_state=2) @ mu.numpy()
    assert scipy.stats.ks_2samp(w, w_ref).pvalue > 1e-3
    if kappa >= 10:  # negative control (at kappa = 0.1, A_m and A_{m+1} differ by less than the MC error)
        assert not _within(w, _mean_length(m + 1, kappa))


@pytest.mark.parametrize("m", (2, 3, 8, 30))
@pytest.mark.parametrize("kappa", (0.5, 10.0, 300.0, 1e4))
def test_vmf_implicit_gradient_matches_cdf_derivative(m, kappa):
    """dw/dkappa = -(dF/dkappa) / p(w), F the CDF of w = <x, mu>, differentiated under the integral sign and
    integrated by scipy's adaptive quadrature in theta = arccos(t) (no Bessel functions, no fixed nodes)."""
    scale = math.sqrt(m / kappa)  # the mass of theta sits at ~ sqrt(m / kappa)

    def moments(
        w: float,
    ) -> tuple[float, float]:  # int_0^theta_w e^{k(cos th - 1)} sin^{m-2} th (1, cos th - 1) dth
        top = math.acos(w)

        def log_f(th):
            return (
                -2 * kappa * math.sin(th / 2) ** 2 + (m - 2) * math.log(math.sin(th)) if th > 0 else -math.inf
            )

        points = [c * scale for c in (0.25, 0.5, 1, 1.5, 2, 3, 5, 8) if c * scale < top]
        opts = {"points": points or None, "epsabs": 0, "epsrel": 1e-13, "limit": 500}
        m0 = scipy.integrate.quad(lambda th: math.exp(log_f(th)), 0, top, **opts)[0]
        m1 = scipy.integrate.quad(
            lambda th: -2 * math.sin(th / 2) ** 2 * math.exp(log_f(th)), 0, top, **opts
        )[0]
        return m0, m1

    dist = VonMisesFisher(_unit(m, 0), torch.tensor(kappa, dtype=DT))
    w = np.quantile(dist.sample((2000,)).numpy() @ _unit(m, 0).numpy(), [0.01, 0.5, 0.99])
    z0, z1 = moments(-1.0)
    for wi in w:
        t0, t1 = moments(float(wi))
        d_tail = t1 / z0 - t0 * z1 / z0**2  # d/dkappa P(W > w) = -dF/dkappa
        dens = math.exp(kappa * (wi - 1) + (m - 3) / 2 * math.log1p(-wi * wi)) / z0
        want = d_tail / dens
        got = float(_vmf_dw_dkappa(torch.tensor(1 - wi, dtype=DT), torch.tensor(kappa, dtype=DT), m))
        assert abs(got - want) <= 1e-8 * abs(want)
        assert abs(1.001 * got - want) > 1e-8 * abs(want)  # the tolerance resolves a 0.1% error


def _expected_linear(kind: str, m: int, kappa: float) -> tuple[float, float]:
    """``E[<a, x>] = c(kappa) <a, mu>``: returns ``(c, dc/dkappa)`` in closed form."""
    if kind == "vmf":
        a = _mean_length(m, kappa)
        return a, 1 - a * a - (m - 1) / kappa * a  # A' = 1 - A^2 - (m - 1) A / kappa
    return kappa / (kappa + m - 1), (m - 1) / (kappa + m - 1) ** 2


@pytest.mark.parametrize("kind", ("vmf", "ps"))
@pytest.mark.parametrize("kappa", (0.5, 5.0, 50.0))
def test_reparameterised_gradients_match_closed_form(kind, kappa):
    m, n = 8, 100_000
    mu, tangent, a = _unit(m, 1), _tangent(_unit(m, 1), 2), _unit(m, 3) * 2
    cls = VonMisesFisher if kind == "vmf" else PowerSpherical
    loc = mu.expand(n, m).clone().requires_grad_(True)
    conc = torch.full((n,), kappa, dtype=DT, requires_grad=True)
    (cls(loc, conc).rsample() @ a).sum().backward()  # per-sample gradients: one batch element per sample
    c, dc = _expected_linear(kind, m, kappa)
    g_kappa, g_loc = conc.grad.numpy(), (loc.grad @ tangent).numpy()
    assert _within(g_kappa, dc * float(a @ mu))
    assert _within(g_loc, c * float(a @ tangent))  # d/de E<a, x> along the geodesic mu cos e + t sin e
    wrong_c, wrong_dc = _expected_linear(kind, m + 1, kappa)  # negative control
    assert not (_within(g_kappa, wrong_dc * float(a @ mu)) and _within(g_loc, wrong_c * float(a @ tangent)))


@pytest.mark.parametrize("kappa", (0.5, 5.5, 40.0))
def test_densities_normalise_on_s2(kappa):
    """Tensor-product quadrature on S^2: Gauss–Legendre in s with t = <x, mu> = 2 s^2 - 1 (smooth at t = -1 for
    kappa in 0.5 + N), periodic trapezoid in the angle; the area element is dt dphi = 4 s ds dphi."""
    mu = _unit(3, 4)
    e1, e2 = _tangent(mu, 5), None
    e2 = torch.linalg.cross(mu, e1)
    nodes, weights = np.polynomial.legendre.leggauss(400)
    s = (nodes + 1) / 2
    t, wt = 2 * s**2 - 1, weights / 2 * 4 * s
    phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    tt, pp = (torch.tensor(v) for v in np.meshgrid(t, phi, indexing="ij"))
    r = torch.sqrt(1 - tt**2)
    x = tt[..., None] * mu + r[..., None] * (torch.cos(pp)[..., None] * e1 + torch.sin(pp)[..., None] * e2)
    for dist in (
        PowerSpherical(mu, torch.tensor(kappa, dtype=DT)),
        VonMisesFisher(mu, torch.tensor(kappa, dtype=DT)),
    ):
        integral = float((torch.exp(dist.log_prob(x)) * torch.tensor(wt)[:, None]).sum() * (2 * np.pi / 64))
        assert abs(integral - 1) < 1e-11
    assert abs(math.exp(_ps_log_norm(4, kappa) - _ps_log_norm(3, kappa)) - 1) > 1e-3  # negative control


@pytest.mark.parametrize("m", (3, 8, 30, 100))
@pytest.mark.parametrize("kappa", (0.5, 10.0, 1e3, 1e5))
def test_power_spherical_marginal_and_entropy_match_beta(m, kappa):
    mu = _unit(m, 6)
    dist = PowerSpherical(mu, torch.tensor(kappa, dtype=DT))
    alpha, beta = (m - 1) / 2 + kappa, (m - 1) / 2
    t = torch.tensor([-0.99, -0.5, 0.0, 0.3, 0.9, 0.999, 0.99999], dtype=DT)
    x = t[:, None] * mu + torch.sqrt(1 - t**2)[:, None] * _tangent(mu, 7)
    # p_w(t) = p_x(x) |S^{m-2}| (1 - t^2)^{(m-3)/2}; (1 + t) / 2 ~ Beta(alpha, beta)
    log_pw = (
        dist.log_prob(x).numpy() + uniform_sphere_log_area(m - 1) + (m - 3) / 2 * np.log1p(-(t**2).numpy())
    )
    want = scipy.stats.beta(alpha, beta).logpdf((1 + t.numpy()) / 2) - math.log(2)
    assert np.all(np.abs(log_pw - want) <= 1e-11 * (1 + kappa + np.abs(want)))
    # H_x = H_w + log|S^{m-2}| + (m-3)/2 E[log(1 - w^2)], w = 2z - 1, z ~ Beta, from scipy's Beta entropy.
    dg = scipy.special.digamma
    e_log = math.log(4) + dg(alpha) + dg(beta) - 2 * dg(alpha + beta)
    h = (
        scipy.stats.beta(alpha, beta).entropy()
        + math.log(2)
        + uniform_sphere_log_area(m - 1)
        + (m - 3) / 2 * e_log
    )
    assert abs(float(dist.entropy()) - h) <= 1e-10 * (1 + abs(h))
    assert abs(float(dist.kl_to_uniform()) - (uniform_sphere_log_area(m) - h)) <= 1e-10 * (1 + abs(h))
    wrong = _ps_log_norm(m + 1, kappa) - _ps_log_norm(m, kappa)  # negative control: m off by one
    assert np.all(np.abs(log_pw + wrong - want) > 1e-3)


@pytest.mark.parametrize("m", GRID_M)
@pytest.mark.parametrize("kappa", GRID_KAPPA)
def test_power_spherical_samples(m, kappa):
    mu, n = _unit(m, 20 + m), 20_000
    dist = PowerSpherical(mu, torch.tensor(kappa, dtype=DT))
    x = dist.rsample((n,)).numpy()
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-13
    w = x @ mu.numpy()
    alpha, beta = (m - 1) / 2 + kappa, (m - 1) / 2
    assert scipy.stats.kstest((1 + w) / 2, scipy.stats.beta(alpha, beta).cdf).pvalue > 1e-3
    c = kappa / (kappa + m - 1)
    np.testing.assert_allclose(dist.mean.numpy(), c * mu.numpy(), rtol=1e-14)
    for i in range(m):
        assert _within(x[:, i], c * float(mu[i]))
    if kappa >= 10:  # negative control
        assert scipy.stats.kstest((1 + w) / 2, scipy.stats.beta(alpha + 0.5, beta + 0.5).cdf).pvalue < 1e-3


@pytest.mark.parametrize("cls", (PowerSpherical, VonMisesFisher))
@pytest.mark.parametrize(("m", "kappa"), ((3, 1.0), (30, 50.0)))
def test_kl_to_uniform_matches_monte_carlo(cls, m, kappa):
    dist = cls(_unit(m, 8), torch.tensor(kappa, dtype=DT))
    x = dist.sample((50_000,))
    log_ratio = (dist.log_prob(x) + uniform_sphere_log_area(m)).numpy()  # log q(x) - log u(x)
    assert _within(log_ratio, float(dist.kl_to_uniform()))
    assert not _within(log_ratio, float(dist.kl_to_uniform()) + 0.25)  # negative control


@pytest.mark.parametrize("cls", (PowerSpherical, VonMisesFisher))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_stable_at_large_concentration_and_dimension(cls, dtype):
    m, kappa, n = 100, 1e5, 4096
    loc = _unit(m, 9).to(dtype).expand(n, m).clone().requires_grad_(True)
    conc = torch.full((n,), kappa, dtype=dtype, requires_grad=True)
    dist = cls(loc, conc)
    x = dist.rsample()
    lp = dist.log_prob(x)
    loss = lp.sum() + (x @ _unit(m, 10).to(dtype)).sum() + dist.kl_to_uniform().sum()
    loss.backward()
    for tensor in (x, lp, loc.grad, conc.grad, dist.entropy()):
        assert bool(torch.isfinite(tensor).all())
    assert float((x.detach().norm(dim=-1) - 1).abs().max()) < (1e-5 if dtype == torch.float32 else 1e-13)
    # The marginal keeps its precision: 1 - <x, mu> against its mean (m - 1) / (kappa + m - 1) (PS) or 1 - A.
    one_minus_w = (1 - (x.detach().double() @ _unit(m, 9))).numpy()
    target = (m - 1) / (kappa + m - 1) if cls is PowerSpherical else 1 - _mean_length(m, kappa)
    assert abs(one_minus_w.mean() / target - 1) < 0.01
    ref = cls(_unit(m, 9), torch.tensor(kappa, dtype=DT)).log_prob(x.detach().double())
    np.testing.assert_allclose(
        lp.detach().double().numpy(), ref.numpy(), rtol=1e-4 if dtype == torch.float32 else 1e-12
    )


def test_batch_broadcasting_matches_scipy_per_element():
    m = 5
    locs = torch.stack([_unit(m, s) for s in range(4)])[:, None, :]  # [4, 1, m]
    kappas = torch.tensor([0.3, 4.0, 70.0], dtype=DT)  # [3]
    dist = VonMisesFisher(locs, kappas)
    assert dist.batch_shape == (4, 3) and dist.event_shape == (m,)
    x = dist.sample((2,))  # [2, 4, 3, m]
    lp = dist.log_prob(x)
    ps = PowerSpherical(locs, kappas).log_prob(x)
    for i in range(4):
        for j in range(3):
            want = scipy.stats.vonmises_fisher(locs[i, 0].numpy(), float(kappas[j])).logpdf(
                x[:, i, j].numpy()
            )
            np.testing.assert_allclose(lp[:, i, j].numpy(), want, rtol=1e-12)
            k = float(kappas[j])
            want_ps = _ps_log_norm(m, k) + k * np.log1p(x[:, i, j].numpy() @ locs[i, 0].numpy())
            np.testing.assert_allclose(ps[:, i, j].numpy(), want_ps, rtol=1e-12)
    expanded = VonMisesFisher(_unit(m, 0), torch.tensor(2.0, dtype=DT)).expand((6,))
    y = expanded.sample()  # [6, m]
    want = scipy.stats.vonmises_fisher(_unit(m, 0).numpy(), 2.0).logpdf(y.numpy())
    np.testing.assert_allclose(expanded.log_prob(y).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("cls", (PowerSpherical, VonMisesFisher))
def test_bad_inputs_raise(cls):
    mu = _unit(4, 0)
    with pytest.raises(ValueError, match="unit-norm"):
        cls(mu * 1.01, 1.0)
    with pytest.raises(ValueError, match="m >= 2"):
        cls(torch.ones(1, dtype=DT), 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        cls(torch.tensor([1, 0, 0]), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        cls(torch.tensor([float("nan"), 0, 0], dtype=DT), 1.0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite and > 0"):
            cls(mu, torch.tensor(bad, dtype=DT))
    with pytest.raises(TypeError, match="dtype"):
        cls(mu, torch.tensor(1.0, dtype=torch.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        cls(mu.expand(3, 4), torch.ones(2, dtype=DT))
    with pytest.raises(ValueError):
        cls(mu, 1.0, validate_args=True).log_prob(mu * 2)
    cls(mu * (1 + 5e-5), 1.0)  # inside the documented tolerance
