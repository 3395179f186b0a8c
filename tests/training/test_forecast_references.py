"""The forecast error measures and trivial references against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _common import F64

from enf import geometry
from enf.training.forecast_references import nearest_fill, rollout_errors, training_mean_field


def test_rollout_errors_against_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 50, 2, generator=gen, dtype=F64) * torch.tensor([1.0, 10.0], dtype=F64)
    pred = target + 0.1 * torch.randn(2, 3, 50, 2, generator=gen, dtype=F64)
    weights = torch.rand(50, generator=gen, dtype=F64)
    out = rollout_errors(pred, target, weights=weights)
    p, t, w = pred.numpy(), target.numpy(), weights.numpy()
    np.testing.assert_allclose(out["mse"].numpy(), ((p - t) ** 2).mean((2, 3)))
    vrmse = np.sqrt(((p - t) ** 2).mean(2) / (t.var(2) + 1e-7)).mean(-1)
    np.testing.assert_allclose(out["vrmse"].numpy(), vrmse)
    np.testing.assert_allclose(out["wmse"].numpy(), (((p - t) ** 2).mean(3) * w).sum(2) / w.sum())
    # VRMSE is scale-free per channel: the second channel's 10x scale does not dominate it
    scaled = rollout_errors(pred * 7.0, target * 7.0)
    torch.testing.assert_close(scaled["vrmse"], out["vrmse"])
    assert "wmse" not in scaled
    # a constant prediction at the frame's spatial mean has VRMSE 1
    mean = target.mean(dim=2, keepdim=True).expand_as(target)
    torch.testing.assert_close(
        rollout_errors(mean, target)["vrmse"], torch.ones(2, 3, dtype=F64), atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="one shape"):
        rollout_errors(pred[:, :2], target)
    with pytest.raises(ValueError, match="weights must be"):
        rollout_errors(pred, target, weights=weights[:10])


def test_nearest_fill_wraps_on_the_torus_and_uses_only_observed_points() -> None:
    geom = geometry.get("torus2d")
    coords = torch.tensor([[[-0.95, 0.0], [0.0, 0.0], [0.9, 0.0], [0.5, 0.5]]], dtype=F64)
    values = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]], dtype=F64)
    mask = torch.tensor([[True, True, False, False]])
    query = torch.tensor([[[0.97, 0.0], [0.1, 0.1], [0.3, 0.3]]], dtype=F64)
    out = nearest_fill(geom, coords, values, mask=mask, query=query)
    # 0.97 is 0.08 from -0.95 across the seam; (0.3, 0.3) is nearest to (0, 0) among the observed points
    assert out[0, :, 0].tolist() == [1.0, 2.0, 2.0]
    plane = nearest_fill(geometry.get("translation2d"), coords, values, mask=mask, query=query)
    assert plane[0, 0, 0] == 2.0  # without wrapping, 0.97 is nearest to 0
    torch.testing.assert_close(nearest_fill(geom, coords, values), values)  # all observed: the identity
    with pytest.raises(ValueError, match="no observed point"):
        nearest_fill(geom, coords, values, mask=torch.zeros(1, 4, dtype=torch.bool))


def test_training_mean_field_averages_the_in_horizon_frames() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 5, 7, 2, generator=gen)
    b = torch.randn(2, 5, 7, 2, generator=gen)
    mean = training_mean_field([{"signal": a}, {"signal": b}], horizon=3, denormalize=lambda t: 2.0 * t + 1.0)
    expected = (2.0 * torch.cat([a, b])[:, :3] + 1.0).mean(dim=(0, 1))
    torch.testing.assert_close(mean, expected)
    with pytest.raises(ValueError, match="no trajectories"):
        training_mean_field([], horizon=3, denormalize=lambda t: t)
    assert math.isfinite(float(mean.sum()))
