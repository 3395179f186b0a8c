"""What the editing tests share: a small image model built in code (untrained, windows narrow enough that each
latent shapes its own neighbourhood) over a synthetic dataset of blob images, and helpers on its latents."""

from __future__ import annotations

import numpy as np
import torch

import enf
from enf.apps.edit import ImageEditor
from enf.data.field import FieldSpec
from enf.data.images.base import ArrayImageDataset
from enf.fitting import MetaSGD
from enf.training import FieldFittingModule


class BlobData:
    """Stands in for an ImageDataModule: ``dataset(split)`` of Gaussian-blob images ``[N, H, W, C]``."""

    def __init__(self, *, size: int, num_channels: int, num_images: int = 6, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        ys, xs = np.meshgrid(np.linspace(1, -1, size), np.linspace(-1, 1, size), indexing="ij")
        images = np.zeros((num_images, size, size, num_channels), dtype=np.float32)
        for k in range(num_images):
            for _ in range(3):
                cx, cy = rng.uniform(-0.6, 0.6, size=2)
                blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 0.05)
                images[k] += blob[..., None] * rng.uniform(0.3, 1.0, size=num_channels)
        images = np.clip(images, 0.0, 1.0)
        self.splits = {s: ArrayImageDataset(images, name="blobs", split=s) for s in ("train", "test")}

    def dataset(self, split: str) -> ArrayImageDataset:
        return self.splits[split]


def make_editor(
    *,
    geometry: str = "translation2d",
    size: int = 32,
    num_latents: int = 16,
    num_channels: int = 1,
    window: float = 0.12,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    visible: bool = False,
) -> ImageEditor:
    """An :class:`ImageEditor` over an untrained model (seeded) and :class:`BlobData`.

    ``visible=True`` stretches the output (x25, +0.5): the untrained field's values, about +-0.04, would all
    clip to black in PNGs (the page tests); changes stay local."""
    torch.manual_seed(seed)
    decoder = enf.EquivariantNeuralField(
        geometry=geometry, num_out=num_channels, context_dim=8, hidden_dim=32, num_heads=1, k_nearest=None
    )
    fitter = MetaSGD(num_latents=num_latents, num_inner_steps=2, window=window)
    spec = FieldSpec(
        kind="image", coord_dim=2, num_channels=num_channels, grid_shape=(size, size), data_range=1.0
    )
    module = FieldFittingModule(decoder=decoder, fitter=fitter, field=spec.to_dict()).to(dtype)
    with torch.no_grad():  # distinct contexts, so that every latent draws its own patch
        module.fitter.init_context.copy_(torch.randn_like(module.fitter.init_context))
        if visible:
            last = module.decoder.head[-1]
            last.weight.mul_(25.0)
            last.bias.mul_(25.0).add_(0.5)
    return ImageEditor(module, datamodule=BlobData(size=size, num_channels=num_channels))
