"""Kendall shape space (``enf.shape.kendall``) against independent computations.

Oracles: ``scipy.linalg.helmert``, ``scipy.spatial.procrustes``, ``scipy.spatial.transform.Rotation``
(Kabsch ``align_vectors``), the complex-number closed form for planar shapes, and a brute-force search
over rotation angles in 2-D. Every invariance test has a negative control that must fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.spatial
import torch
from scipy.spatial.transform import Rotation

from enf.shape.kendall import (
    exp_map,
    from_preshape,
    helmert,
    kendall_distance,
    log_map,
    preshape,
    preshape_geodesic,
    preshape_matrix,
    procrustes_align,
    procrustes_distance,
    shape_geodesic,
)

SEEDS = [0, 1, 2, 3, 4]
DIMS = [2, 3]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(1000 + seed)


def _rotation(rng: np.random.Generator, d: int, *, proper: bool = True) -> np.ndarray:
    """Random orthogonal ``[d, d]`` (Haar, via QR with the sign fix); ``det = +1`` when ``proper``."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def _similar(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``s x R + c`` for a random scale, rotation (row-vector convention) and translation."""
    d = x.shape[-1]
    return math.exp(rng.uniform(-1.5, 1.5)) * x @ _rotation(rng, d) + rng.standard_normal(d) * 3.0


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _configs(rng: np.random.Generator, batch: int, k: int, d: int) -> np.ndarray:
    return rng.standard_normal((batch, k, d))


# ---------------------------------------------------------------------------------------------- Helmert
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_helmert_matches_scipy_and_is_orthonormal(k: int) -> None:
    h = helmert(k, dtype=torch.float64).numpy()
    np.testing.assert_allclose(h, -scipy.linalg.helmert(k), atol=1e-15)  # Dryden-Mardia sign convention
    np.testing.assert_allclose(h @ h.T, np.eye(k - 1), atol=1e-14)
    np.testing.assert_allclose(h @ np.ones(k), 0.0, atol=1e-14)
    np.testing.assert_allclose(h.T @ h, np.eye(k) - 1.0 / k, atol=1e-14)


# ---------------------------------------------------------------------------------------------- pre-shapes
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_preshape_on_sphere_and_orthogonal_to_translations(seed: int, d: int) -> None:
    rng = _rng(seed)
    x = _configs(rng, 4, 6, d) + 5.0
    z = preshape(_t(x))
    assert z.shape == (4, 5 * d)
    np.testing.assert_allclose(torch.linalg.vector_norm(z, dim=-1).numpy(), 1.0, atol=1e-15)
    conf = from_preshape(z, d=d).numpy()
    # Independent: centre with the mean, scale by the Frobenius norm.
    centred = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        conf, centred / np.linalg.norm(centred, axis=(1, 2), keepdims=True), atol=1e-14
    )
    np.testing.assert_allclose(conf.sum(axis=1), 0.0, atol=1e-14)  # orthogonal to every translation 1 c^T
    # Negative control: merely scaling the raw configuration keeps a translation component.
    raw = x / np.linalg.norm(x, axis=(1, 2), keepdims=True)
    assert np.abs(raw.sum(axis=1)).min() > 0.1


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_preshape_invariant_to_translation_and_scale(seed: int, d: int) -> None:
    rng = _rng(seed)
    x = _configs(rng, 3, 7, d)
    moved = 2.7 * x + rng.standard_normal((3, 1, d)) * 4.0
    np.testing.assert_allclose(preshape(_t(moved)).numpy(), preshape(_t(x)).numpy(), atol=1e-13)
    # Rotation equivariance z(x R) = z(x) R ...
    rot = _rotation(rng, d)
    np.testing.assert_allclose(
        preshape_matrix(_t(x @ rot)).numpy(), preshape_matrix(_t(x)).numpy() @ rot, atol=1e-13
    )
    # ... negative controls: anisotropic scaling, and a rotation, both change the pre-shape.
    stretch = np.diag([1.0, 2.0, 1.0][:d])
    assert np.abs(preshape(_t(x @ stretch)).numpy() - preshape(_t(x)).numpy()).max() > 1e-2
    assert np.abs(preshape(_t(x @ rot)).numpy() - preshape(_t(x)).numpy()).max() > 1e-2


# ---------------------------------------------------------------------------------------------- distance
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_kendall_distance_invariant_to_similarities_of_each_argument(seed: int, d: int) -> None:
    rng = _rng(seed)
    a, b = _configs(rng, 4, 6, d), _configs(rng, 4, 6, d)
    ref = kendall_distance(_t(a), _t(b)).numpy()
    assert ref.min() > 0.1
    moved = kendall_distance(_t(_similar(a, rng)), _t(_similar(b, rng))).numpy()
    np.testing.assert_allclose(moved, ref, atol=1e-9)
    np.testing.assert_allclose(kendall_distance(_t(b), _t(a)).numpy(), ref, atol=1e-12)  # symmetric
    np.testing.assert_allclose(kendall_distance(_t(a), _t(_similar(a, rng))).numpy(), 0.0, atol=1e-9)
    # Negative controls: a shear and an anisotropic scaling are not similarities.
    shear = np.eye(d)
    shear[0, 1] = 0.8
    assert kendall_distance(_t(a), _t(a @ shear)).min() > 1e-2
    assert kendall_distance(_t(a), _t(a @ np.diag([1.0, 0.4, 1.7][:d]))).min() > 1e-2


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_reflections_change_the_distance_unless_allowed(seed: int, d: int) -> None:
    rng = _rng(seed)
    a = _configs(rng, 4, 6, d)  # generic configurations are chiral
    mirrored = a @ _rotation(rng, d, proper=False) * 1.3 + 2.0
    with_reflection = kendall_distance(_t(a), _t(mirrored), reflection=True).numpy()
    np.testing.assert_allclose(with_reflection, 0.0, atol=1e-9)
    rot, _ = procrustes_align(_t(a), _t(mirrored), reflection=True)
    np.testing.assert_allclose(torch.linalg.det(rot).numpy(), -1.0, atol=1e-12)
    # Negative control: in SO(d) the mirror image is a different shape.
    assert kendall_distance(_t(a), _t(mirrored)).min() > 5e-2
    rot, _ = procrustes_align(_t(a), _t(mirrored))
    np.testing.assert_allclose(torch.linalg.det(rot).numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_procrustes_distance_matches_scipy_disparity(seed: int, d: int) -> None:
    rng = _rng(seed)
    a = _configs(rng, 1, 8, d)[0]
    for b in (
        _configs(rng, 1, 8, d)[0],
        a @ _rotation(rng, d, proper=False) + 0.3 * rng.standard_normal((8, d)),
    ):
        std_a, std_b, disparity = scipy.spatial.procrustes(a, b)
        ours = procrustes_distance(_t(a), _t(b), reflection=True).item()
        assert abs(ours**2 - disparity) <= 1e-12
        # scipy's mtx2 = standardised b R^T s with s = cos(rho): our aligned b is mtx2 / s.
        _, aligned = procrustes_align(_t(a), _t(b), reflection=True)
        np.testing.assert_allclose(aligned.numpy() * math.sqrt(1.0 - disparity), std_b, atol=1e-12)
        np.testing.assert_allclose(from_preshape(preshape_matrix(_t(a))).numpy(), std_a, atol=1e-14)
    # Negative control: for the mirrored pair, the SO(d) distance is not scipy's O(d) disparity.
    assert abs(procrustes_distance(_t(a), _t(b)).item() ** 2 - disparity) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_planar_kendall_distance_matches_complex_closed_form(seed: int) -> None:
    rng = _rng(seed)
    a, b = _configs(rng, 6, 5, 2), _configs(rng, 6, 5, 2)
    za, zb = a[..., 0] + 1j * a[..., 1], b[..., 0] + 1j * b[..., 1]
    za, zb = za - za.mean(-1, keepdims=True), zb - zb.mean(-1, keepdims=True)
    cos = np.abs((np.conj(za) * zb).sum(-1)) / (np.linalg.norm(za, axis=-1) * np.linalg.norm(zb, axis=-1))
    np.testing.assert_allclose(kendall_distance(_t(a), _t(b)).numpy(), np.arccos(cos), atol=1e-12)
    # Negative control: without the modulus (no rotation), Re<z_a, z_b> gives a larger angle.
    real = (np.conj(za) * zb).sum(-1).real / (np.linalg.norm(za, axis=-1) * np.linalg.norm(zb, axis=-1))
    assert np.all(np.arccos(real) >= np.arccos(cos) - 1e-12)
    assert (np.arccos(real) - np.arccos(cos)).max() > 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_planar_rotation_matches_brute_force_angle_search(seed: int) -> None:
    rng = _rng(seed)
    a, b = _configs(rng, 1, 6, 2)[0], _configs(rng, 1, 6, 2)[0]
    za, zb = preshape_matrix(_t(a)).numpy(), preshape_matrix(_t(b)).numpy()

    def rot(phi: float) -> np.ndarray:
        return np.array([[math.cos(phi), math.sin(phi)], [-math.sin(phi), math.cos(phi)]])

    def loss(phi: float) -> float:
        return float(np.sum((za - zb @ rot(phi)) ** 2))

    grid = np.linspace(0.0, 2.0 * math.pi, 3601)
    best = grid[np.argmin([loss(p) for p in grid])]
    step = grid[1] - grid[0]
    res = scipy.optimize.minimize_scalar(
        loss, bounds=(best - step, best + step), method="bounded", options={"xatol": 1e-13}
    )
    rho = 2.0 * math.asin(math.sqrt(res.fun) / 2.0)
    assert abs(kendall_distance(_t(a), _t(b)).item() - rho) <= 1e-9
    ours, _ = procrustes_align(_t(za), _t(zb), preshaped=True)
    np.testing.assert_allclose(ours.numpy(), rot(res.x), atol=1e-7)  # the angle is flat to second order
    # Negative control: the identity rotation is not optimal.
    assert math.acos(np.sum(za * zb)) - rho > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_spatial_rotation_matches_kabsch_align_vectors(seed: int) -> None:
    rng = _rng(seed)
    a, b = _configs(rng, 1, 7, 3)[0], _configs(rng, 1, 7, 3)[0]
    za, zb = preshape_matrix(_t(a)).numpy(), preshape_matrix(_t(b)).numpy()
    kabsch, rssd = Rotation.align_vectors(za, zb)  # minimises sum |za_i - C zb_i|^2 (column vectors)
    ours, aligned = procrustes_align(_t(za), _t(zb), preshaped=True)
    np.testing.assert_allclose(ours.numpy(), kabsch.as_matrix().T, atol=1e-10)  # row vectors: R = C^T
    np.testing.assert_allclose(aligned.numpy(), kabsch.apply(zb), atol=1e-12)
    assert abs(kendall_distance(_t(a), _t(b)).item() - 2.0 * math.asin(rssd / 2.0)) <= 1e-10
    # Negative control: R itself (not its transpose) applied to column vectors is a different rotation.
    assert np.abs(ours.numpy() - kabsch.as_matrix()).max() > 1e-3


# ---------------------------------------------------------------------------------------------- geodesics
def _angle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2.0 * np.arctan2(np.linalg.norm(x - y, axis=(-2, -1)), np.linalg.norm(x + y, axis=(-2, -1)))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_preshape_geodesic_endpoints_unit_norm_constant_speed(seed: int, d: int) -> None:
    rng = _rng(seed)
    za, zb = preshape_matrix(_t(_configs(rng, 3, 5, d))), preshape_matrix(_t(_configs(rng, 3, 5, d)))
    ts = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    path = preshape_geodesic(za, zb, ts)
    assert path.shape == (3, 11, 4, d)
    assert torch.equal(path[:, 0], za) and torch.equal(path[:, -1], zb)
    assert torch.equal(preshape_geodesic(za, zb, 0.0), za) and torch.equal(preshape_geodesic(za, zb, 1.0), zb)
    p = path.numpy()
    np.testing.assert_allclose(np.linalg.norm(p, axis=(-2, -1)), 1.0, atol=1e-14)
    theta = _angle(za.numpy(), zb.numpy())
    steps = _angle(p[:, 1:], p[:, :-1])
    np.testing.assert_allclose(steps, np.broadcast_to(theta[:, None] / 10, steps.shape), atol=1e-13)
    # Smooth: a great circle has gamma'' = -theta^2 gamma (central second differences).
    h = 1e-3
    t3 = torch.tensor([0.4 - h, 0.4, 0.4 + h], dtype=torch.float64)
    g = preshape_geodesic(za, zb, t3).numpy()
    np.testing.assert_allclose(
        (g[:, 2] - 2 * g[:, 1] + g[:, 0]) / h**2, -(theta**2)[:, None, None] * g[:, 1], atol=1e-5
    )
    # Negative control: normalised linear interpolation has the right endpoints but not constant speed.
    lin = (1 - ts.numpy())[None, :, None, None] * za.numpy()[:, None] + ts.numpy()[
        None, :, None, None
    ] * zb.numpy()[:, None]
    lin = lin / np.linalg.norm(lin, axis=(-2, -1), keepdims=True)
    assert np.ptp(_angle(lin[:, 1:], lin[:, :-1]), axis=-1).min() > 1e-4


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_shape_geodesic_is_shortest_path_of_kendall_length(seed: int, d: int) -> None:
    rng = _rng(seed)
    a, b = _configs(rng, 3, 6, d), _similar(_configs(rng, 3, 6, d), rng)
    rho = kendall_distance(_t(a), _t(b)).numpy()
    ts = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)
    path = shape_geodesic(preshape_matrix(_t(a)), preshape_matrix(_t(b)), ts, preshaped=True)
    za = preshape_matrix(_t(a))
    _, zb_aligned = procrustes_align(za, preshape_matrix(_t(b)), preshaped=True)
    assert torch.equal(path[:, 0], za) and torch.equal(path[:, -1], zb_aligned)
    np.testing.assert_allclose(_angle(za.numpy(), zb_aligned.numpy()), rho, atol=1e-12)  # pre-shape arc = rho
    hops = kendall_distance(path[:, 1:], path[:, :-1], preshaped=True).numpy()
    np.testing.assert_allclose(hops.sum(-1), rho, atol=1e-10)  # length in shape space
    np.testing.assert_allclose(hops, np.broadcast_to(rho[:, None] / 8, hops.shape), atol=1e-10)
    # Additivity of the distance along the path.
    mid = path[:, 3]
    left = kendall_distance(za, mid, preshaped=True) + kendall_distance(mid, zb_aligned, preshaped=True)
    np.testing.assert_allclose(left.numpy(), rho, atol=1e-10)
    # Configuration output: centred, unit size, endpoints the normalised a and the aligned b.
    conf = shape_geodesic(_t(a), _t(b), ts)
    np.testing.assert_allclose(conf[:, 0].numpy(), from_preshape(za).numpy(), atol=1e-14)
    np.testing.assert_allclose(conf[:, -1].numpy(), procrustes_align(_t(a), _t(b))[1].numpy(), atol=1e-14)
    np.testing.assert_allclose(conf.sum(-2).numpy(), 0.0, atol=1e-14)
    # Negative control: the unaligned pre-shape slerp is a longer path in shape space (not horizontal).
    raw = preshape_geodesic(za, preshape_matrix(_t(b)), ts)
    raw_len = kendall_distance(raw[:, 1:], raw[:, :-1], preshaped=True).numpy().sum(-1)
    assert np.all(raw_len >= rho - 1e-12) and (raw_len - rho).max() > 1e-2


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_exp_and_log_are_inverse(seed: int, d: int) -> None:
    rng = _rng(seed)
    za, zb = preshape_matrix(_t(_configs(rng, 4, 5, d))), preshape_matrix(_t(_configs(rng, 4, 5, d)))
    v = log_map(za, zb)
    np.testing.assert_allclose(
        torch.linalg.vector_norm(v, dim=(-2, -1)).numpy(), _angle(za.numpy(), zb.numpy()), atol=1e-13
    )
    np.testing.assert_allclose((v * za).sum((-2, -1)).numpy(), 0.0, atol=1e-14)  # tangent
    np.testing.assert_allclose(exp_map(za, v).numpy(), zb.numpy(), atol=1e-13)
    np.testing.assert_allclose(
        exp_map(za, 0.5 * v).numpy(), preshape_geodesic(za, zb, 0.5).numpy(), atol=1e-13
    )
    np.testing.assert_allclose(log_map(za, za).numpy(), 0.0, atol=1e-15)
    assert torch.equal(exp_map(za, torch.zeros_like(za)), za)
    # Negative control: the chord b - a is not the logarithm.
    assert np.abs(exp_map(za, zb - za).numpy() - zb.numpy()).max() > 1e-3


# ---------------------------------------------------------------------------------------------- batching, dtypes, gradients
def test_batched_leading_dims_and_float32() -> None:
    rng = _rng(7)
    a, b = rng.standard_normal((2, 3, 5, 3)), rng.standard_normal((2, 3, 5, 3))
    batched = kendall_distance(_t(a), _t(b))
    assert batched.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert abs(batched[i, j].item() - kendall_distance(_t(a[i, j]), _t(b[i, j])).item()) <= 1e-14
    # Broadcasting one shape against a batch.
    np.testing.assert_allclose(
        kendall_distance(_t(a[0, 0]), _t(b)).numpy()[0, 0], batched[0, 0].item(), atol=1e-14
    )
    single = kendall_distance(_t(a).float(), _t(_similar(b, rng)).float())
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), batched.numpy(), atol=1e-5)


@pytest.mark.parametrize("d", DIMS)
def test_gradients_pass_gradcheck(d: int) -> None:
    rng = _rng(11 + d)
    a = _t(rng.standard_normal((2, 4, d))).requires_grad_()
    b = _t(rng.standard_normal((2, 4, d))).requires_grad_()
    ts = torch.tensor([0.25, 0.7], dtype=torch.float64)
    assert torch.autograd.gradcheck(preshape, (a,))
    assert torch.autograd.gradcheck(kendall_distance, (a, b))
    assert torch.autograd.gradcheck(procrustes_distance, (a, b))
    assert torch.autograd.gradcheck(lambda x, y: procrustes_align(x, y)[0], (a, b))
    assert torch.autograd.gradcheck(lambda x, y: shape_geodesic(x, y, ts), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: log_map(preshape_matrix(x), preshape_matrix(y)), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: exp_map(preshape_matrix(x), 0.3 * y[:, 1:]), (a, b))


def test_bad_inputs_raise_clear_errors() -> None:
    good = torch.randn(2, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="degenerate"):
        preshape(torch.full((2, 4, 3), 3.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="K >= 2"):
        preshape(torch.randn(2, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="d in"):
        preshape(torch.randn(2, 4, 4, dtype=torch.float64))
    nan = good.clone()
    nan[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kendall_distance(good, nan)
    with pytest.raises(TypeError, match="floating-point"):
        preshape(torch.ones(2, 4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="same number of landmarks"):
        kendall_distance(good, torch.randn(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="unit Frobenius norm"):
        preshape_geodesic(good[:, 1:], good[:, 1:], 0.5)
    z = preshape_matrix(good)
    with pytest.raises(ValueError, match="antipodal"):
        preshape_geodesic(z, -z, 0.5)
    with pytest.raises(ValueError, match="flat pre-shape"):
        from_preshape(preshape(good), d=2)
    with pytest.raises(ValueError, match="num_points"):
        helmert(1)
