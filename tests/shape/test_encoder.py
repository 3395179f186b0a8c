"""The canonicalising shape encoder (``enf.shape.encoder``): invariance, equivariance, canonical form, masking.

Float64 throughout. Group elements: ``x -> s x R + t`` on row-vector points (``R = g.rotation^T`` for the
column-convention ``GroupElement`` of :mod:`enf.geometry`). Oracles independent of the encoder: numpy
Frobenius norms and centroids, ``enf.shape.kendall.preshape_matrix`` / ``from_preshape``, scipy's Delaunay
hull test (landmarks are convex combinations), and the closed form of a mirror image's pre-shape. Every
invariance/equivariance test has a negative control that must fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial
import torch

from enf import testing
from enf.geometry import get as get_geometry
from enf.geometry.frames import random_euclidean
from enf.shape.encoder import MIN_CONCENTRATION, ShapeEncoder, ShapeEncoding
from enf.shape.kendall import from_preshape, kendall_distance, preshape_matrix

DIMS = [2, 3]
B, N, K, F = 4, 12, 5, 3
TOL = 1e-9
FIELDS = ("landmarks", "centroid", "scale", "rotation", "preshape", "concentration")


def _encoder(d: int, *, reflections: bool = False, feature_dim: int = F, seed: int = 0) -> ShapeEncoder:
    torch.manual_seed(seed)
    enc = ShapeEncoder(
        space_dim=d, feature_dim=feature_dim, num_landmarks=K, hidden_dim=32, reflections=reflections
    ).double()
    torch.nn.init.normal_(enc.concentration_out[-1].weight, std=0.3)  # it starts at 0: give the readout a say
    return enc


def _cloud(d: int, seed: int, *, batch: int = B, num: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(batch, num, d, generator=gen, dtype=torch.float64) * 2.0 + 1.0
    f = torch.randn(batch, num, F, generator=gen, dtype=torch.float64)
    return x, f


def _similarity(d: int, seed: int, *, reflections: bool = False):
    """``(s [B], R [B, d, d] row convention, t [B, d])`` with ``s`` in [0.3, 3]; improper R when asked."""
    gen = torch.Generator().manual_seed(200 + seed)
    g = random_euclidean(B, d, translation_scale=3.0, generator=gen, dtype=torch.float64)
    rot = g.rotation.transpose(-1, -2)
    if reflections:  # make every element improper
        rot = rot.clone()
        rot[:, 0] = -rot[:, 0]
    s = 0.3 + 2.7 * torch.rand(B, generator=gen, dtype=torch.float64)
    return s, rot, g.translation


def _act(s, rot, t, x):
    return s[:, None, None] * x @ rot + t[:, None, :]


def _errors(enc_x: ShapeEncoding, enc_gx: ShapeEncoding, s, rot, t) -> dict[str, float]:
    """Max deviation of each output from its expected transformation."""
    expected = dict(
        landmarks=_act(s, rot, t, enc_x.landmarks),
        centroid=_act(s, rot, t, enc_x.centroid[:, None])[:, 0],
        scale=s * enc_x.scale,
        rotation=rot.transpose(-1, -2) @ enc_x.rotation,  # rotation(gX) = R^T rotation(X)
        preshape=enc_x.preshape,
        concentration=enc_x.concentration,
    )
    return {k: float((getattr(enc_gx, k) - v).detach().abs().max()) for k, v in expected.items()}


@pytest.mark.parametrize("reflections", [False, True])
@pytest.mark.parametrize("d", DIMS)
def test_similarity_invariance_and_equivariance(d: int, reflections: bool) -> None:
    enc = _encoder(d, reflections=reflections)
    x, f = _cloud(d, 0)
    out = enc(x, f)
    worst = dict.fromkeys(FIELDS, 0.0)
    for seed in range(4):
        s, rot, t = _similarity(d, seed, reflections=reflections and seed % 2 == 1)
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
        moved = enc(_act(s, rot, t, x)[:, perm], f[:, perm])
        for k, e in _errors(out, moved, s, rot, t).items():
            worst[k] = max(worst[k], e)
    assert max(worst.values()) <= TOL, worst
    # the outputs are not trivially constant: the pose moved, the shape code is a non-degenerate unit matrix
    assert float((out.preshape[0] - out.preshape[1]).detach().abs().max()) > 1e-2
    assert float(out.scale.detach().min()) > 1e-2


@pytest.mark.parametrize("d", DIMS)
def test_se_equivariance_with_testing_helpers(d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``assert_equivariant`` over SE(d) (column-convention g: rotation(g X) = g.rotation @ rotation(X))."""
    geom = get_geometry(f"se{d}")
    enc = _encoder(d)
    x, f = _cloud(d, 1)

    def fn(points: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(enc(points, feats), k) for k in FIELDS)

    def act_out(g, out):
        landmarks, centroid, scale, rotation, preshape, concentration = out
        moved_c = geom.act_coords(g, centroid[:, None])[:, 0]
        return geom.act_coords(g, landmarks), moved_c, scale, g.rotation @ rotation, preshape, concentration

    act_in = testing.act_args(testing.act_coords(geom), testing.act_identity)
    gen = torch.Generator().manual_seed(3)
    testing.assert_equivariant(fn, geom, (x, f), act_in, act_out, num_samples=4, generator=gen)
    # negative control: the pose is not invariant (claiming it is must fail)
    with pytest.raises(AssertionError, match="not equivariant"):
        testing.assert_equivariant(
            fn, geom, (x, f), act_in, testing.act_identity, num_samples=2, generator=gen
        )
    # negative control: an encoder fed an orientation-dependent "invariant" breaks equivariance
    _break(monkeypatch)
    with pytest.raises(AssertionError, match="not equivariant"):
        testing.assert_equivariant(fn, geom, (x, f), act_in, act_out, num_samples=2, generator=gen)


def _break(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add an absolute (frame-dependent) coordinate to the node invariants."""
    original = ShapeEncoder._node_invariants

    def broken(centred: torch.Tensor, rms: torch.Tensor) -> torch.Tensor:
        return original(centred, rms) + centred[..., :1] / rms[:, None, None]

    monkeypatch.setattr(ShapeEncoder, "_node_invariants", staticmethod(broken))


@pytest.mark.parametrize("d", DIMS)
def test_broken_encoder_is_not_invariant(d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = _encoder(d)
    x, f = _cloud(d, 2)
    s, rot, t = _similarity(d, 5)
    assert _errors(enc(x, f), enc(_act(s, rot, t, x), f), s, rot, t)["preshape"] <= TOL
    _break(monkeypatch)
    errors = _errors(enc(x, f), enc(_act(s, rot, t, x), f), s, rot, t)
    assert errors["preshape"] > 1e-4 and errors["concentration"] > 1e-6, errors


@pytest.mark.parametrize("d", DIMS)
def test_permutation_invariance(d: int) -> None:
    enc = _encoder(d)
    x, f = _cloud(d, 3)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(7))
    a, b = enc(x, f), enc(x[:, perm], f[:, perm])
    for k in FIELDS:
        assert torch.allclose(getattr(a, k), getattr(b, k), rtol=0.0, atol=1e-12), k
    # negative control: permuting the features only (a different feature assignment) changes the code
    c = enc(x, f[:, perm])
    assert float((c.preshape - a.preshape).detach().abs().max()) > 1e-4


@pytest.mark.parametrize("d", DIMS)
def test_mirror_image_changes_the_shape_unless_reflections(d: int) -> None:
    """A reflection maps the SO(d) pre-shape to ``preshape @ diag(1, ..., 1, -1)`` (closed form): a different
    shape for a chiral cloud. With ``reflections=True`` the pre-shape is invariant."""
    x, f = _cloud(d, 4)
    s, rot, t = _similarity(d, 1, reflections=True)
    flip = torch.ones(d, dtype=torch.float64)
    flip[-1] = -1.0
    enc = _encoder(d)
    a, b = enc(x, f), enc(_act(s, rot, t, x), f)
    assert float((b.preshape - a.preshape * flip).detach().abs().max()) <= TOL
    assert float((b.preshape - a.preshape).detach().abs().max()) > 1e-2
    assert (
        float(kendall_distance(a.preshape, b.preshape, preshaped=True).detach().min()) > 1e-2
    )  # another shape
    assert torch.allclose(torch.linalg.det(b.rotation), torch.ones(B, dtype=torch.float64), atol=1e-12)
    enc_o = _encoder(d, reflections=True)
    a, b = enc_o(x, f), enc_o(_act(s, rot, t, x), f)
    assert float((b.preshape - a.preshape).detach().abs().max()) <= TOL
    assert torch.allclose(torch.linalg.det(b.rotation), -torch.linalg.det(a.rotation), atol=1e-12)


@pytest.mark.parametrize("reflections", [False, True])
@pytest.mark.parametrize("d", DIMS)
def test_canonical_form_and_repose(d: int, reflections: bool) -> None:
    enc = _encoder(d, reflections=reflections, feature_dim=0)
    x, _ = _cloud(d, 5)
    out = enc(x)
    lm = out.landmarks.detach().numpy()
    centroid = lm.mean(axis=1)
    size = np.linalg.norm((lm - centroid[:, None]).reshape(B, -1), axis=1)
    np.testing.assert_allclose(out.centroid.detach().numpy(), centroid, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.scale.detach().numpy(), size, rtol=1e-12)
    eye = torch.eye(d, dtype=torch.float64).expand(B, d, d)
    assert torch.allclose(out.rotation.transpose(-1, -2) @ out.rotation, eye, atol=1e-12)
    if not reflections:
        assert torch.allclose(torch.linalg.det(out.rotation), torch.ones(B, dtype=torch.float64), atol=1e-12)
    z = out.preshape
    assert torch.allclose(torch.linalg.vector_norm(z, dim=(-2, -1)), torch.ones(B, dtype=torch.float64))
    assert torch.allclose(z, preshape_matrix(out.landmarks) @ out.rotation, atol=1e-12)
    config = from_preshape(z)
    assert float(config.sum(dim=1).detach().abs().max()) <= 1e-12  # orthogonal to translations
    assert torch.allclose(config, out.canonical, atol=1e-14)
    # exact repose identity: scale * from_preshape(preshape) @ rotation^T + centroid == landmarks
    assert torch.allclose(enc.repose(config, out), out.landmarks, atol=1e-12)
    assert torch.allclose(out.repose(config), out.landmarks, atol=1e-12)
    # negative control: without undoing the frame the landmarks are not reproduced
    naive = out.scale[:, None, None] * config + out.centroid[:, None]
    assert float((naive - out.landmarks).detach().abs().max()) > 1e-3
    # landmarks are convex combinations of the input points: inside their convex hull (scipy)
    for b in range(B):
        hull = scipy.spatial.Delaunay(x[b].numpy())
        assert (hull.find_simplex(lm[b], tol=1e-12) >= 0).all()


@pytest.mark.parametrize("d", DIMS)
def test_masked_padding_changes_nothing(d: int) -> None:
    enc = _encoder(d)
    x, f = _cloud(d, 6)
    pad = 5
    gen = torch.Generator().manual_seed(9)
    junk_x = 1e3 * torch.randn(B, pad, d, generator=gen, dtype=torch.float64)
    junk_f = 1e3 * torch.randn(B, pad, F, generator=gen, dtype=torch.float64)
    junk_x[0, 0, 0], junk_f[1, 2, 1] = float("nan"), float("inf")
    order = torch.randperm(N + pad, generator=gen)  # interleave the padding with the real points
    xp, fp = torch.cat([x, junk_x], dim=1)[:, order], torch.cat([f, junk_f], dim=1)[:, order]
    mask = (torch.arange(N + pad) < N)[order].expand(B, -1).clone()
    a, b = enc(x, f), enc(xp, fp, mask)
    for k in FIELDS:
        assert float((getattr(a, k) - getattr(b, k)).detach().abs().max()) <= 1e-12, k
    # negative control: the same padding (made finite) counted as real points changes the outputs
    c = enc(torch.nan_to_num(xp), torch.nan_to_num(fp, posinf=1.0))
    assert float((c.preshape - a.preshape).detach().abs().max()) > 1e-3
    # gradients stay finite through masked NaN padding
    xp.requires_grad_(True)
    enc(xp, fp, mask).preshape.sum().backward()
    assert bool(torch.isfinite(xp.grad).all()) and float(xp.grad[~mask].detach().abs().max()) == 0.0


@pytest.mark.parametrize("d", DIMS)
def test_gradients_reach_every_parameter(d: int) -> None:
    enc = _encoder(d)
    x, f = _cloud(d, 7)
    out = enc(x, f)
    target = torch.randn_like(out.preshape)
    loss = (
        (out.preshape - target).square().sum() + out.concentration.log().sum() + out.landmarks.square().mean()
    )
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.detach().abs().max()) > 0.0, name


@pytest.mark.parametrize("d", DIMS)
def test_symmetric_cloud_is_finite(d: int) -> None:
    """A regular polygon / octahedron without features has no direction: fallbacks, no NaN."""
    angles = torch.arange(6, dtype=torch.float64) * (2 * torch.pi / 6)
    if d == 2:
        pts = torch.stack([angles.cos(), angles.sin()], dim=-1)
    else:
        pts = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    x = pts.expand(2, -1, -1).clone().requires_grad_(True)
    enc = _encoder(d, feature_dim=0)
    out = enc(x)
    eye = torch.eye(d, dtype=torch.float64).expand(2, d, d)
    assert torch.allclose(out.rotation.transpose(-1, -2) @ out.rotation, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.vector_norm(out.preshape, dim=(-2, -1)), torch.ones(2).double())
    (out.preshape.sum() + out.concentration.sum()).backward()
    assert bool(torch.isfinite(x.grad).all())


def test_bad_inputs() -> None:
    enc = _encoder(2)
    x, f = _cloud(2, 8)
    with pytest.raises(ValueError, match="positions"):
        enc(x[..., :1], f)  # wrong d
    with pytest.raises(ValueError, match="N >= 2"):
        enc(x[:, :1], f[:, :1])
    with pytest.raises(TypeError, match="features"):
        enc(x)  # feature_dim=3 needs features
    with pytest.raises(ValueError, match="features"):
        enc(x, f[..., :2])
    bad = x.clone()
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="positions contains NaN"):
        enc(bad, f)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[2] = False
    with pytest.raises(ValueError, match=r"row\(s\) \[2\]"):
        enc(x, f, mask)
    with pytest.raises(ValueError, match="mask"):
        enc(x, f, mask.float())
    with pytest.raises(ValueError, match="coincide"):
        enc(torch.ones(B, N, 2, dtype=torch.float64), f)
    with pytest.raises(ValueError, match="space_dim"):
        ShapeEncoder(space_dim=4, num_landmarks=3)
    with pytest.raises(ValueError, match="num_landmarks"):
        ShapeEncoder(space_dim=2, num_landmarks=1)
    with pytest.raises(ValueError, match="feature_dim=0"):
        ShapeEncoder(space_dim=2, num_landmarks=3).double()(x, f)


def test_every_shape_starts_at_the_initial_concentration() -> None:
    enc = ShapeEncoder(space_dim=2, feature_dim=F, num_landmarks=K, hidden_dim=16).double()
    x, f = _cloud(2, 9)
    expected = 10.0 * (K - 1) * 2 + MIN_CONCENTRATION
    torch.testing.assert_close(
        enc(x, f).concentration, torch.full((B,), expected, dtype=torch.float64), rtol=0.02, atol=0
    )
    enc = ShapeEncoder(space_dim=2, num_landmarks=K, hidden_dim=16, init_concentration=3.0).double()
    assert torch.allclose(
        enc(x).concentration, torch.tensor(3.0 + MIN_CONCENTRATION, dtype=torch.float64), rtol=0.02
    )
    with pytest.raises(ValueError, match="init_concentration"):
        ShapeEncoder(space_dim=2, num_landmarks=K, init_concentration=0.0)
