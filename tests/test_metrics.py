"""Tests of the metrics: per-sample MSE, PSNR and the decoder equivariance error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _common import F64

from enf import EquivariantNeuralField, Latents, geometry
from enf.metrics import equivariance_error, per_sample_l1, per_sample_mse, psnr, relative_l2


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_per_sample_mse_by_hand():
    target = torch.zeros(2, 3, 2, dtype=F64)
    pred = torch.tensor(
        [[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=F64
    )
    assert torch.equal(per_sample_mse(pred, target), torch.tensor([2.0 / 6.0, 9.0 / 6.0], dtype=F64))
    with pytest.raises(ValueError, match=r"\(2, 3, 2\).*\(2, 3, 1\)"):
        per_sample_mse(pred, target[..., :1])


def test_per_sample_l1_against_numpy():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(3, 7, 2)), rng.normal(size=(3, 7, 2))
    expected = np.array([np.mean(np.abs(pred[b] - target[b])) for b in range(3)])
    got = per_sample_l1(torch.from_numpy(pred), torch.from_numpy(target))
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match=r"\(3, 7, 2\).*\(3, 7, 1\)"):
        per_sample_l1(torch.from_numpy(pred), torch.from_numpy(target[..., :1]))


def test_relative_l2_against_numpy():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 9, 3))
    target[2] *= 1e3  # scale invariance: the same relative error at any scale
    pred[2] = target[2] + 1e3 * (pred[2] - rng.normal(size=(9, 3)))
    expected = np.array([np.linalg.norm(pred[b] - target[b]) / np.linalg.norm(target[b]) for b in range(4)])
    got = relative_l2(torch.from_numpy(pred), torch.from_numpy(target))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13, atol=0)
    scaled = relative_l2(torch.from_numpy(5.0 * pred), torch.from_numpy(5.0 * target))
    np.testing.assert_allclose(scaled.numpy(), expected, rtol=1e-13, atol=0)
    # a zero target: the denominator is clamped, the value stays finite
    zero = relative_l2(torch.full((1, 2, 1), 1e-3, dtype=F64), torch.zeros(1, 2, 1, dtype=F64), eps=1e-6)
    assert zero.item() == pytest.approx(np.sqrt(2) * 1e-3 / 1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_l2(torch.zeros(1, 2, 1), torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="eps must be > 0"):
        relative_l2(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), eps=0.0)


def test_psnr_of_known_mse():
    target = torch.full((3, 10, 1), 0.5, dtype=F64)
    offsets = torch.tensor([0.1, 0.01, 0.3], dtype=F64)
    pred = target + offsets.view(3, 1, 1) * torch.tensor([1.0, -1.0] * 5, dtype=F64).view(1, 10, 1)
    expected = torch.tensor([10.0 * math.log10(1.0 / d**2) for d in (0.1, 0.01, 0.3)], dtype=F64)
    torch.testing.assert_close(psnr(pred, target), expected, atol=1e-10, rtol=0)
    assert psnr(pred, target)[0].item() == pytest.approx(20.0)
    assert psnr(pred, target)[1].item() == pytest.approx(40.0)
    # data range 255: the same relative error gives the same PSNR
    torch.testing.assert_close(psnr(255 * pred, 255 * target, data_range=255.0), expected, atol=1e-9, rtol=0)


def test_psnr_clips_predictions():
    target = torch.tensor([[[1.0], [0.0], [0.2], [0.8]]], dtype=F64)
    pred = torch.tensor([[[1.7], [-0.4], [-0.3], [1.5]]], dtype=F64)
    # clipped to [1, 0, 0, 1]: squared errors 0, 0, 0.04, 0.04 -> mse 0.02
    assert psnr(pred, target).item() == pytest.approx(10.0 * math.log10(1.0 / 0.02), abs=1e-10)
    # a perfect (after clipping) prediction is capped, not infinite
    perfect = psnr(torch.tensor([[[2.0], [-1.0]]]), torch.tensor([[[1.0], [0.0]]]))
    assert perfect.item() == pytest.approx(120.0, abs=1e-3)
    # targets are not clipped: the error to an out-of-range target remains
    assert psnr(
        torch.tensor([[[1.0]]], dtype=F64), torch.tensor([[[1.5]]], dtype=F64)
    ).item() == pytest.approx(10.0 * math.log10(1.0 / 0.25))


def _decoder_and_latents(name: str):
    torch.manual_seed(0)
    geom = geometry.get(name)
    model = EquivariantNeuralField(
        geometry=geom,
        num_out=2,
        context_dim=8,
        hidden_dim=32,
        num_query_frequencies=8,
        num_value_frequencies=8,
        value_hidden_dim=16,
        num_output_layers=1,
    ).double()
    g = gen(1)
    z = Latents(
        poses=geom.sample_poses(2, 9, generator=g, dtype=F64),
        context=torch.randn(2, 9, 8, generator=g, dtype=F64),
        window=torch.full((2, 9, 1), 0.6, dtype=F64),
    )
    x = geom.sample_coords(2, 20, generator=g, dtype=F64)
    return model, geom, x, z


@pytest.mark.parametrize("name", ["translation2d", "se2"])
def test_equivariance_error_small_for_equivariant_decoder(name):
    model, geom, x, z = _decoder_and_latents(name)
    err = equivariance_error(model, geom, x, z, generator=gen(2))
    assert isinstance(err, float) and 0.0 <= err < 1e-9


def test_equivariance_error_large_for_absolute2d():
    model, geom, x, z = _decoder_and_latents("absolute2d")
    err = equivariance_error(model, geom, x, z, generator=gen(2))
    assert err > 1e-3
    # it is the max |f(g x; g z) - f(x; z)| for the group element drawn from the generator
    g = geom.sample_group(2, generator=gen(2), dtype=F64)
    with torch.no_grad():
        expected = (model(geom.act_coords(g, x), z.transform(geom, g)) - model(x, z)).abs().max().item()
    assert err == pytest.approx(expected, rel=1e-12)


def test_knn_accuracy_matches_scikit_learn():
    """Against sklearn's KNeighborsClassifier (brute force, uniform weights) on continuous data (no ties)."""
    pytest.importorskip("sklearn")
    from sklearn.neighbors import KNeighborsClassifier

    from enf.metrics import knn_accuracy

    gen = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    ref_y = torch.randint(0, 4, (300,), generator=gen)
    ref = centres[ref_y] + torch.randn(300, 6, generator=gen, dtype=torch.float64)
    q_y = torch.randint(0, 4, (120,), generator=gen)
    query = centres[q_y] + torch.randn(120, 6, generator=gen, dtype=torch.float64)
    for k in (1, 5, 7):
        clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(ref.numpy(), ref_y.numpy())
        expected = float((clf.predict(query.numpy()) == q_y.numpy()).mean())
        assert knn_accuracy(ref, ref_y, query, q_y, k=k) == pytest.approx(expected)
    shuffled = ref_y[torch.randperm(300, generator=gen)]
    assert knn_accuracy(ref, shuffled, query, q_y, k=5) < 0.5  # negative control: labels carry no signal


def test_knn_accuracy_breaks_ties_towards_the_nearer_neighbours_and_checks_shapes():
    from enf.metrics import knn_accuracy

    ref = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert knn_accuracy(ref, labels, torch.tensor([[5.4], [5.6]]), torch.tensor([0, 1]), k=2) == 1.0
    with pytest.raises(ValueError, match="reference"):
        knn_accuracy(ref, labels, torch.zeros(2, 3), torch.zeros(2), k=1)
    with pytest.raises(ValueError, match="one label"):
        knn_accuracy(ref, labels[:3], torch.zeros(2, 1), torch.zeros(2), k=1)


def test_clamped_l1_by_hand():
    from enf.metrics import per_sample_clamped_l1

    pred = torch.tensor([[[0.05], [0.5], [-0.3]]])
    target = torch.tensor([[[0.0], [0.2], [0.05]]])
    # clamped to 0.1: |0.05 - 0| + |0.1 - 0.1| + |-0.1 - 0.05| = 0.2, mean over 3 points
    torch.testing.assert_close(per_sample_clamped_l1(pred, target), torch.tensor([0.2 / 3]))
    assert float(per_sample_clamped_l1(pred, target, clamp=1.0)) == pytest.approx((0.05 + 0.3 + 0.35) / 3)


def test_tanh_l1_by_hand_keeps_a_gradient_beyond_the_clamp():
    from enf.metrics import per_sample_tanh_l1

    pred = torch.tensor([[[0.05], [0.5]]], dtype=F64, requires_grad=True)
    target = torch.tensor([[[0.0], [-0.3]]], dtype=F64)
    expected = (abs(math.tanh(0.5) - 0.0) + abs(math.tanh(5.0) - math.tanh(-3.0))) / 2
    loss = per_sample_tanh_l1(pred, target)
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    loss.sum().backward()
    assert pred.grad[0, 1, 0] > 0  # 0.5 vs -0.3: both beyond 0.1, a clamp would give no gradient here
    from enf.metrics import per_sample_sdf_l1

    raw = (0.05 + 0.8) / 2  # mean |pred - target|
    assert float(per_sample_sdf_l1(pred, target, raw_weight=0.5)) == pytest.approx(
        expected + 0.5 * raw, rel=1e-12
    )


def test_occupancy_iou_matches_scikit_learn_jaccard():
    from sklearn.metrics import jaccard_score

    from enf.metrics import occupancy_iou

    pred = torch.randn(3, 200, 1, generator=gen(0), dtype=F64)
    true = torch.randn(3, 200, 1, generator=gen(1), dtype=F64)
    mask = torch.rand(200, generator=gen(2)) < 0.5
    got = occupancy_iou(pred, true, mask=mask)
    for b in range(3):
        m = mask.numpy()
        want = jaccard_score(true[b, m, 0].numpy() < 0, pred[b, m, 0].numpy() < 0)
        assert float(got[b]) == pytest.approx(want, rel=1e-12)
    assert float(occupancy_iou(true, true)[0]) == 1.0 and float(occupancy_iou(-true, true)[0]) == 0.0
    assert float(occupancy_iou(torch.ones(1, 5), torch.ones(1, 5))[0]) == 1.0  # both empty
    with pytest.raises(ValueError, match="one channel"):
        occupancy_iou(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2))


def test_chamfer_distance_matches_a_kd_tree():
    from scipy.spatial import cKDTree

    from enf.metrics import chamfer_distance

    a = torch.rand(2, 500, 3, generator=gen(0), dtype=F64)
    b = torch.rand(2, 300, 3, generator=gen(1), dtype=F64) + 0.2
    got = chamfer_distance(a, b, chunk_size=128)  # several chunks
    for i in range(2):
        ab = cKDTree(b[i].numpy()).query(a[i].numpy())[0].mean()
        ba = cKDTree(a[i].numpy()).query(b[i].numpy())[0].mean()
        assert float(got[i]) == pytest.approx(0.5 * (ab + ba), rel=1e-12)
    assert float(chamfer_distance(a, a).max()) < 1e-8  # cdist by matrix products: round-off of sqrt(~0)
    with pytest.raises(ValueError, match=r"\[B, P, d\]"):
        chamfer_distance(a[0], b[0])
