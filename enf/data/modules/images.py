"""``ImageDataModule``: any registered image dataset as a :class:`~enf.data.modules.field.FieldDataModule`.

Batches follow the field contract (:mod:`enf.data.keys`): ``coords`` float32 ``[B, H * W, 2]``
(:func:`enf.data.grid.pixel_coords`), ``signal`` float32 ``[B, H * W, C]`` in ``[0, 1]`` (images flattened
row-major, :func:`enf.data.grid.image_to_signal` order), ``index`` int64 ``[B]`` (position of each image in its
split) and ``label`` ``[B]`` for labelled datasets. Validation and test both use the dataset's test split.
"""

from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import DataLoader

from enf.data.field import FieldSpec
from enf.data.images import IMAGE_DATASETS, ImageDatasetName, image_dataset
from enf.data.images.base import ImageDataset, collate
from enf.data.modules.field import FieldDataModule

__all__ = ["FieldDataModule", "ImageDataModule", "collate"]

log = logging.getLogger(__name__)

_RESIZABLE = {"folder": "image_size", "celeba": "image_size", "natural": "crop_size"}
_CHANNEL_NAMES = {1: ("gray",), 3: ("r", "g", "b")}


class ImageDataModule(FieldDataModule):
    """Image datasets for field fitting.

    Args:
        dataset: registered name (``mnist``, ``natural``, ``faces``, ``folder``, ``cifar10``, ``stl10``,
            ``celeba``); see :mod:`enf.data.images`.
        root: local data root (``folder``, ``cifar10``, ``stl10``, ``celeba``).
        batch_size: images per training batch.
        eval_batch_size: images per validation/test/evaluation batch (default: ``batch_size``).
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
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_train: int | None = None,
        num_test: int | None = None,
        image_size: int | None = None,
        seed: int = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        if dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown image dataset {dataset!r}; choose one of {list(IMAGE_DATASETS)}")
        if image_size is not None and dataset not in _RESIZABLE:
            raise ValueError(
                f"image_size is only supported for {sorted(_RESIZABLE)}, not for {dataset!r} "
                "(its images have a fixed size)"
            )
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.root = root
        self.num_train = num_train
        self.num_test = num_test
        self.image_size = image_size
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
    def field_spec(self) -> FieldSpec:
        """Kind ``image``: pixel coordinates in ``[-1, 1]^2``, grid ``(H, W)``, values in ``[0, 1]``."""
        height, width, channels = self.image_shape
        return FieldSpec(
            kind="image",
            coord_dim=2,
            num_channels=channels,
            grid_shape=(height, width),
            channel_names=_CHANNEL_NAMES.get(channels, ()),
            data_range=1.0,
            name=self.dataset_name,
        )

    @property
    def num_channels(self) -> int:
        return self.image_shape[2]

    def predict_dataloader(self, split: str = "test") -> DataLoader:
        """Unshuffled loader over ``split`` (default the test split)."""
        return self.eval_dataloader(split)
