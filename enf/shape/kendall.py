"""Kendall shape space: pre-shapes, Procrustes alignment, Kendall distance and geodesics, in 2-D and 3-D.

A *configuration* is ``K`` landmarks in ``d = 2`` or ``3`` dimensions, ``[..., K, d]`` (rows are points, any
number of leading batch dimensions). Its *pre-shape* removes translation and scale:
``z = H x / |H x|_F``, ``[..., K-1, d]`` with ``H`` the Helmert sub-matrix (:func:`helmert`, Dryden & Mardia
convention), a point on the unit sphere ``S^{(K-1) d - 1}``; :func:`preshape` is its row-major flattening
``[..., (K-1) d]`` (point index outer, coordinate inner). The *shape* is the orbit of ``z`` under rotations
``z -> z R``, ``R`` in SO(d) (or O(d) with ``reflection=True``).

Rotations act on the **right** of the row-vector points: ``aligned = b @ R`` (on column vectors this is
``R^T x``). :func:`procrustes_align` returns the ``R`` minimising ``|a - b R|_F``: with ``b^T a = U S V^T``,
``R = U D V^T``, ``D = diag(1, ..., 1, sign det(U V^T))`` (``D = I`` with ``reflection=True``).

Distances (``rho`` in ``[0, pi/2]``):

- :func:`kendall_distance`: the Riemannian distance in shape space, ``rho = arccos max_R <a, b R>`` with
  ``max_R <a, b R> = s_1 + ... + s_{d-1} + sign(det(U V^T)) s_d`` (the singular values of ``b^T a``),
  computed as ``2 arcsin(d_P / 2)`` from the partial Procrustes distance ``d_P = min_R |a - b R|`` (accurate
  near 0, where ``arccos`` of a cosine close to 1 is not).
- :func:`procrustes_distance`: the *full* Procrustes distance ``d_F = sin(rho) = sqrt(1 - cos^2 rho)`` (the
  residual after optimal rotation *and* scaling). ``scipy.spatial.procrustes(a, b)`` allows reflections and
  returns ``disparity = procrustes_distance(a, b, reflection=True) ** 2``.

Geodesics: :func:`preshape_geodesic` is the great circle (slerp) on the pre-shape sphere;
:func:`shape_geodesic` first rotates ``b`` onto ``a`` (which makes ``a^T b R`` symmetric, the horizontal
condition), then slerps: the result is a horizontal geodesic whose length is ``kendall_distance(a, b)``.

Everything is batched, differentiable (float32/float64) and validated on detached values: degenerate input
(zero size, ``K < 2``, ``d`` not in 2, 3, NaN/inf) raises ValueError.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from enf.shape._helmert import check_configuration, check_preshape, helmert

__all__ = [
    "exp_map",
    "from_preshape",
    "helmert",
    "kendall_distance",
    "log_map",
    "preshape",
    "preshape_geodesic",
    "preshape_matrix",
    "procrustes_align",
    "procrustes_distance",
    "shape_geodesic",
]


def _inner(a: Tensor, b: Tensor) -> Tensor:
    """Frobenius inner product over the last two dimensions, ``[..., m, d] -> [...]``."""
    return (a * b).sum(dim=(-2, -1))


def _norm(a: Tensor) -> Tensor:
    return torch.linalg.vector_norm(a, dim=(-2, -1))


def _sinc(x: Tensor) -> Tensor:
    """``sin(x) / x`` with the value 1 at 0 (smooth, finite gradient everywhere)."""
    return torch.sinc(x / math.pi)


def preshape_matrix(points: Tensor) -> Tensor:
    """Pre-shape matrix ``z = H x / |H x|_F`` of configurations ``[..., K, d] -> [..., K-1, d]``.

    Invariant to translating and scaling ``points``; equivariant to rotations
    (``preshape_matrix(x R) = preshape_matrix(x) R``).
    """
    x = check_configuration("points", points)
    hx = torch.einsum("jk,...kd->...jd", helmert(x.shape[-2], dtype=x.dtype, device=x.device), x)
    return hx / _norm(hx)[..., None, None]


def preshape(points: Tensor) -> Tensor:
    """Flat pre-shape ``[..., K, d] -> [..., (K-1) d]``: unit vectors (centred, Helmertised, scaled).

    The row-major flattening of :func:`preshape_matrix` (point index outer, coordinate inner).
    """
    return rearrange(preshape_matrix(points), "... k d -> ... (k d)")


def from_preshape(z: Tensor, *, d: int | None = None) -> Tensor:
    """Centred configuration of unit size ``H^T z`` from a pre-shape, ``-> [..., K, d]``.

    ``z`` is a pre-shape matrix ``[..., K-1, d]`` when ``d`` is None, or flat ``[..., (K-1) d]`` when ``d``
    is given. Inverse of :func:`preshape_matrix` up to translation and scale:
    ``from_preshape(preshape_matrix(x)) = (x - mean(x)) / |x - mean(x)|_F``.
    """
    if d is not None:
        if d not in (2, 3):
            raise ValueError(f"d must be 2 or 3, got {d!r}")
        if not isinstance(z, Tensor) or z.ndim < 1 or z.shape[-1] % d != 0 or z.shape[-1] < d:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"flat pre-shape z must be [..., (K-1)*d] with d={d}, got {shape}")
        z = rearrange(z, "... (k d) -> ... k d", d=d)
    z = check_preshape("z", z)
    return torch.einsum("jk,...jd->...kd", helmert(z.shape[-2] + 1, dtype=z.dtype, device=z.device), z)


def _pair(a: Tensor, b: Tensor, *, preshaped: bool) -> tuple[Tensor, Tensor]:
    """Pre-shape matrices of ``a`` and ``b`` (configurations unless ``preshaped``), broadcast together."""
    if preshaped:
        za, zb = check_preshape("a", a), check_preshape("b", b)
    else:
        za, zb = preshape_matrix(a), preshape_matrix(b)
    if za.shape[-2:] != zb.shape[-2:]:
        raise ValueError(
            f"a and b must have the same number of landmarks and dimension, got shapes {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if za.dtype != zb.dtype:
        raise TypeError(f"a and b must have the same dtype, got {za.dtype} and {zb.dtype}")
    return torch.broadcast_tensors(za, zb)


def _rotation(za: Tensor, zb: Tensor, *, reflection: bool) -> Tensor:
    """``R = U D V^T`` maximising ``<za, zb R>`` (``b^T a = U S V^T``), ``[..., d, d]``, differentiable."""
    u, _, vh = torch.linalg.svd(zb.transpose(-2, -1) @ za)
    if not reflection:
        with torch.no_grad():  # the sign is locally constant: no gradient
            sign = torch.sign(torch.linalg.det(u @ vh))
            sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        fix = torch.ones(u.shape[:-1], dtype=u.dtype, device=u.device)
        fix[..., -1] = sign
        u = u * fix[..., None, :]
    return u @ vh


def procrustes_align(
    a: Tensor, b: Tensor, *, reflection: bool = False, preshaped: bool = False
) -> tuple[Tensor, Tensor]:
    """Ordinary Procrustes alignment of ``b`` onto ``a``: ``(R [..., d, d], aligned)``.

    ``R`` minimises ``|z_a - z_b R|_F`` over SO(d) (over O(d) when ``reflection=True``), where ``z`` are
    the pre-shapes; it multiplies the row-vector points on the right. Inputs are configurations
    ``[..., K, d]`` (centred and scaled inside; ``aligned = from_preshape(z_b R)`` is the centred,
    unit-size, rotated ``b``, ``[..., K, d]``) or, with ``preshaped=True``, pre-shape matrices
    ``[..., K-1, d]`` (``aligned = b R``). Leading dimensions broadcast. Gradients flow through the SVD
    (well defined where the singular values of ``z_b^T z_a`` are distinct).
    """
    za, zb = _pair(a, b, preshaped=preshaped)
    rot = _rotation(za, zb, reflection=reflection)
    aligned = zb @ rot
    return rot, (aligned if preshaped else from_preshape(aligned))


def kendall_distance(a: Tensor, b: Tensor, *, reflection: bool = False, preshaped: bool = False) -> Tensor:
    """Riemannian (great-circle) distance in Kendall shape space, ``[..., K, d] x [..., K, d] -> [...]``.

    ``rho = arccos max_R <z_a, z_b R>`` in ``[0, pi/2]``, computed as ``2 arcsin(min_R |z_a - z_b R| / 2)``
    (clamped). Invariant to translating, scaling and rotating (SO(d); O(d) with ``reflection=True``) either
    argument. ``preshaped=True`` takes pre-shape matrices ``[..., K-1, d]``. The optimal rotation is
    detached: by the envelope theorem the gradient of the minimum equals the gradient at the minimiser, so
    no gradient passes through the SVD. Like any distance it has a kink at ``rho = 0`` (the gradient there is
    a bounded but arbitrary subgradient); use ``kendall_distance(a, b) ** 2`` where a smooth loss is needed.
    """
    za, zb = _pair(a, b, preshaped=preshaped)
    with torch.no_grad():
        rot = _rotation(za.detach(), zb.detach(), reflection=reflection)
    partial = _norm(za - zb @ rot)
    return 2.0 * torch.asin(torch.clamp(0.5 * partial, max=1.0))


def procrustes_distance(a: Tensor, b: Tensor, *, reflection: bool = False, preshaped: bool = False) -> Tensor:
    """Full Procrustes distance ``d_F = sin(rho) = sqrt(1 - cos^2 rho)``, ``[..., K, d] x [..., K, d] -> [...]``.

    ``rho`` is :func:`kendall_distance`; ``d_F = min_{R, s} |z_a - s z_b R|`` (optimal rotation and scale).
    ``scipy.spatial.procrustes(a, b)[2] == procrustes_distance(a, b, reflection=True) ** 2`` (scipy allows
    reflections). The partial Procrustes distance, if needed, is ``2 sin(rho / 2)``.
    """
    return torch.sin(kendall_distance(a, b, reflection=reflection, preshaped=preshaped))


def _angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle between unit matrices ``[..., m, d]`` as ``2 atan2(|a - b|, |a + b|)``, accurate at 0 and pi."""
    return 2.0 * torch.atan2(_norm(a - b), _norm(a + b))


def _check_not_antipodal(a: Tensor, b: Tensor) -> None:
    with torch.no_grad():
        if bool((_norm(a.detach() + b.detach()) < 1e-6).any()):
            raise ValueError("a and b contain antipodal pre-shapes (z_b = -z_a): the geodesic is not unique")


def _times(t: float | Tensor, ref: Tensor) -> Tensor:
    """``t`` as a 0-d or 1-d ``[T]`` tensor of ``ref``'s dtype and device."""
    if isinstance(t, bool) or not isinstance(t, (int, float, Tensor)):
        raise TypeError(f"t must be a float or a 0-d/1-d tensor, got {type(t).__name__}")
    tt = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
    if tt.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-d tensor [T], got shape {tuple(tt.shape)}")
    if not bool(torch.isfinite(tt.detach()).all()):
        raise ValueError("t must be finite")
    return tt


def _slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Great circle from ``a`` (t=0) to ``b`` (t=1), unit matrices ``[..., m, d]``; see preshape_geodesic."""
    _check_not_antipodal(a, b)
    theta = _angle(a, b)
    if t.ndim == 1:  # time axis after the batch dimensions
        theta, a, b = theta[..., None], a[..., None, :, :], b[..., None, :, :]
    # sin(t theta) / sin(theta) = t sinc(t theta) / sinc(theta): stable at theta = 0, exact at t = 0 and 1.
    denom = _sinc(theta)
    ca = (1.0 - t) * _sinc((1.0 - t) * theta) / denom
    cb = t * _sinc(t * theta) / denom
    return ca[..., None, None] * a + cb[..., None, None] * b


def preshape_geodesic(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Great-circle interpolation (slerp) between pre-shape matrices ``a``, ``b`` ``[..., K-1, d]``.

    ``gamma(t) = (sin((1 - t) theta) a + sin(t theta) b) / sin(theta)``, ``theta`` the angle between ``a``
    and ``b``: ``gamma(0) = a`` and ``gamma(1) = b`` exactly, unit norm, constant speed ``theta``; ``t``
    outside ``[0, 1]`` extrapolates along the great circle. ``t`` scalar -> ``[..., K-1, d]``; ``t`` of
    shape ``[T]`` -> ``[..., T, K-1, d]`` (time axis after the batch dimensions). Antipodal inputs raise.
    """
    za, zb = _pair(a, b, preshaped=True)
    return _slerp(za, zb, _times(t, za))


def shape_geodesic(
    a: Tensor, b: Tensor, t: float | Tensor, *, reflection: bool = False, preshaped: bool = False
) -> Tensor:
    """Geodesic in shape space from ``a`` (t=0) to ``b`` (t=1): align ``b`` to ``a``, then slerp.

    ``b`` is rotated by the Procrustes rotation of :func:`procrustes_align`, which makes the great circle
    from ``z_a`` to ``z_b R`` horizontal: it is the shortest path between the two shapes, of length
    :func:`kendall_distance`. Inputs are configurations ``[..., K, d]`` (output: centred unit-size
    configurations ``[..., (T,) K, d]``, ``gamma(1)`` the aligned ``b``) or, with ``preshaped=True``,
    pre-shape matrices (output ``[..., (T,) K-1, d]``, ``gamma(0) = a`` and ``gamma(1) = b R`` exactly).
    ``t`` as in :func:`preshape_geodesic`.
    """
    za, zb = _pair(a, b, preshaped=preshaped)
    rot = _rotation(za, zb, reflection=reflection)
    path = _slerp(za, zb @ rot, _times(t, za))
    return path if preshaped else from_preshape(path)


def exp_map(base: Tensor, tangent: Tensor) -> Tensor:
    """Exponential map of the pre-shape sphere at ``base`` ``[..., K-1, d]``: ``cos|v| base + sin|v| v/|v|``.

    ``tangent`` ``[..., K-1, d]`` (broadcast with ``base``); its radial component ``<v, base> base`` is
    removed first, so ``v`` is projected onto the tangent space. ``exp_map(base, 0) = base``.
    """
    base = check_preshape("base", base)
    if not isinstance(tangent, Tensor) or tangent.shape[-2:] != base.shape[-2:]:
        shape = tuple(tangent.shape) if isinstance(tangent, Tensor) else type(tangent).__name__
        raise ValueError(f"tangent must be a tensor [..., K-1, d] like base {tuple(base.shape)}, got {shape}")
    v = tangent - _inner(tangent, base)[..., None, None] * base
    n = _norm(v)
    return torch.cos(n)[..., None, None] * base + _sinc(n)[..., None, None] * v


def log_map(base: Tensor, point: Tensor) -> Tensor:
    """Logarithm of the pre-shape sphere: the tangent ``v`` at ``base`` with ``exp_map(base, v) = point``.

    ``base``, ``point`` ``[..., K-1, d]`` pre-shapes; ``|v| = theta`` (their angle, ``< pi``) and
    ``v = (point - cos(theta) base) / sinc(theta)``. ``log_map(a, a) = 0``.
    """
    za, zb = _pair(base, point, preshaped=True)
    _check_not_antipodal(za, zb)
    theta = _angle(za, zb)
    u = zb - _inner(za, zb)[..., None, None] * za
    return u / _sinc(theta)[..., None, None]
