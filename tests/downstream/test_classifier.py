"""LatentClassifier: invariance to the group and to the latents' order (float64, random group elements), with
absolute2d as the control that must break; PixelCNN shapes and errors."""

from __future__ import annotations

import pytest
import torch
from _common import F64

from enf import Latents
from enf.downstream import LatentClassifier, PixelCNN
from enf.geometry import get
from enf.testing import random_latents

GEOMETRIES = ["translation2d", "se2", "torus2d", "sphere", "se3", "ball"]


def _classifier(name: str, **kw) -> LatentClassifier:
    torch.manual_seed(0)
    return LatentClassifier(
        geometry=name, context_dim=6, num_classes=4, hidden_dim=16, basis_dim=16, **kw
    ).to(F64)


def _permuted(z: Latents, perm: torch.Tensor) -> Latents:
    return Latents(poses=z.poses[:, perm], context=z.context[:, perm], window=z.window[:, perm])


@pytest.mark.parametrize("k_nearest", [None, 3])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_logits_are_invariant_to_the_group_and_to_latent_order(name: str, k_nearest) -> None:
    geom = get(name)
    clf = _classifier(name, k_nearest=k_nearest, readout="attention" if k_nearest else "mean")
    gen = torch.Generator().manual_seed(1)
    z = random_latents(geom, 4, 9, 6, generator=gen)
    clf.set_context_statistics(z.context)
    with torch.no_grad():
        logits = clf(z)
        for _ in range(3):
            g = geom.sample_group(4, generator=gen, dtype=F64)
            torch.testing.assert_close(clf(z.transform(geom, g)), logits, atol=1e-11, rtol=0)
        perm = torch.randperm(9, generator=gen)
        torch.testing.assert_close(clf(_permuted(z, perm)), logits, atol=1e-12, rtol=0)
    assert logits.shape == (4, 4) and logits.std() > 1e-3  # not a constant function


def test_absolute2d_classifier_is_not_invariant() -> None:
    """The control: the same code with absolute positions changes its logits under a rigid motion."""
    geom = get("absolute2d")
    clf = _classifier("absolute2d")
    gen = torch.Generator().manual_seed(2)
    z = random_latents(geom, 4, 9, 6, generator=gen)
    g = geom.sample_group(4, generator=gen, dtype=F64)
    with torch.no_grad():
        moved = clf(z.transform(geom, g))
        assert (moved - clf(z)).abs().max() > 1e-3
        perm = torch.randperm(9, generator=gen)
        torch.testing.assert_close(clf(_permuted(z, perm)), clf(z), atol=1e-12, rtol=0)  # still order-free


def test_context_statistics_standardise_the_inputs() -> None:
    clf = _classifier("se2")
    z = random_latents("se2", 3, 5, 6, generator=torch.Generator().manual_seed(3))
    shifted = Latents(poses=z.poses, context=1.0 + 0.05 * z.context, window=z.window)
    clf.set_context_statistics(shifted.context)
    flat = shifted.context.reshape(-1, 6)
    torch.testing.assert_close(clf.context_mean, flat.mean(0))
    torch.testing.assert_close(clf.context_std, flat.std(0))
    with pytest.raises(ValueError, match="context_dim=6"):
        clf.set_context_statistics(torch.ones(3, 5))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        LatentClassifier(geometry="se2", context_dim=4, num_classes=1)
    with pytest.raises(ValueError, match="readout must be one of"):
        LatentClassifier(geometry="se2", context_dim=4, num_classes=3, readout="max")
    clf = LatentClassifier(geometry="se2", context_dim=4, num_classes=3)
    with pytest.raises(ValueError, match="do not fit this classifier"):
        clf(random_latents("translation2d", 1, 3, 4, dtype=torch.float32))
    with pytest.raises(TypeError, match="expects enf.Latents"):
        clf(torch.zeros(1, 3, 4))


def test_pixel_cnn_reads_channels_last_images() -> None:
    cnn = PixelCNN(num_channels=1, num_classes=10, width=8)
    assert cnn(torch.rand(2, 28, 28, 1)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 1\]"):
        cnn(torch.rand(2, 1, 28, 28))
