"""``ImageDataModule``: any registered image dataset as a Lightning data module.

Batches are dicts ``{"image": float32 [B, H, W, C] in [0, 1], "index": int64 [B]}`` (plus ``"label"``
``[B]`` for labelled datasets); ``index`` is the position of each image in its split. Validation and test
both use the dataset's test split.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from enf.data.base import ImageDataset, collate
from enf.data.images import IMAGE_DATASETS, ImageDatasetName, image_dataset

__all__ = ["ImageDataModule", "collate"]

log = logging.getLogger(__name__)

_RESIZABLE = {"folder": "image_size", "celeba": "image_size", "natural": "crop_size"}


class ImageDataModule(L.LightningDataModule):
    """Image datasets for field fitting.

    Args:
        dataset: registered name (``mnist``, ``natural``, ``faces``, ``folder``, ``cifar10``, ``stl10``,
            ``celeba``); see :mod:`enf.data.images`.
        root: local data root (``folder``, ``cifar10``, ``stl10``, ``celeba``).
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        num_train: keep only the first ``num_train`` training images (quick runs).
        num_test: keep only the first ``num_test`` test images.
        image_size: output size for ``folder``/``celeba`` (resize) and the crop size of ``natural``.
        seed: seed of the training-set shuffle.
        options: further keyword options of the dataset loader (e.g. ``{"grayscale": true}``).
    """

    def __init__(
        self,
        *,
        dataset: ImageDatasetName = "mnist",
        root: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        num_train: int | None = None,
        num_test: int | None = None,
        image_size: int | None = None,
        seed: int = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown image dataset {dataset!r}; choose one of {list(IMAGE_DATASETS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if image_size is not None and dataset not in _RESIZABLE:
            raise ValueError(
                f"image_size is only supported for {sorted(_RESIZABLE)}, not for {dataset!r} "
                "(its images have a fixed size)"
            )
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.root = root
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_train = num_train
        self.num_test = num_test
        self.image_size = image_size
        self.seed = seed
        self.options = dict(options or {})
        if image_size is not None:
            self.options[_RESIZABLE[dataset]] = image_size
        self._datasets: dict[str, ImageDataset] = {}

    # ------------------------------------------------------------------------------------------ data
    def dataset(self, split: str) -> ImageDataset:
        """The (cached) dataset of ``split`` with the ``num_train``/``num_test`` caps applied."""
        if split not in self._datasets:
            cap = self.num_train if split == "train" else self.num_test
            self._datasets[split] = image_dataset(
                self.dataset_name, split=split, root=self.root, num_samples=cap, **self.options
            )
            log.info("%s", self._datasets[split])
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
        self.dataset("test")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image (builds the test split if needed; no image is decoded)."""
        split = next(iter(self._datasets), "test")
        return self.dataset(split).image_shape

    @property
    def num_channels(self) -> int:
        return self.image_shape[2]

    @property
    def num_train_signals(self) -> int:
        """Number of training images (rows of an auto-decoder table)."""
        return len(self.dataset("train"))

    # ----------------------------------------------------------------------------------- dataloaders
    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        ds = self.dataset(split)
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(ds) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self, split: str = "test") -> DataLoader:
        """Unshuffled loader over ``split`` (default the test split)."""
        return self._loader(split, shuffle=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Unshuffled loader over ``split`` for final metrics and ``enf encode``."""
        return self._loader(split, shuffle=False)
