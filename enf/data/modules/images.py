"""``ImageDataModule``: any registered image dataset as a :class:`~enf.data.modules.field.FieldDataModule`.

Batches follow the field contract (:mod:`enf.data.keys`): ``coords`` float32 ``[B, H * W, 2]``
(:func:`enf.data.grid.pixel_coords`), ``signal`` float32 ``[B, H * W, C]`` in ``[0, 1]`` (images flattened
row-major, :func:`enf.data.grid.image_to_signal` order), ``index`` int64 ``[B]`` (position of each image in its
split) and ``label`` ``[B]`` for labelled datasets. Validation uses the last ``num_val`` images of the training
source (never trained on), test the dataset's test split.
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
        num_val: validation images for model selection (``best.ckpt``, the validation figures), the last
            ``num_val`` images of the training source, never trained on (the training split is the images
            before them, then capped by ``num_train``). Default: as many as the test split (after ``num_test``),
            at most a tenth of the training source.
            ``0`` validates on the test split instead (logged as a warning: model selection then sees test).
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
        num_val: int | None = None,
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
        if num_val is not None and (isinstance(num_val, bool) or not isinstance(num_val, int) or num_val < 0):
            raise ValueError(
                f"num_val must be an int >= 0 or None (as many as the test split), got {num_val!r}"
            )
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.root = root
        self.num_train = num_train
        self.num_test = num_test
        self._num_val = num_val
        self.image_size = image_size
        self.options = dict(options or {})
        if image_size is not None:
            self.options[_RESIZABLE[dataset]] = image_size
        self._datasets: dict[str, ImageDataset] = {}

    # ------------------------------------------------------------------------------------------ data
    def _source(self, split: str) -> ImageDataset:
        """The whole ``split`` of the dataset (no caps)."""
        key = f"source_{split}"
        if key not in self._datasets:
            self._datasets[key] = image_dataset(
                self.dataset_name, split=split, root=self.root, **self.options
            )
        return self._datasets[key]

    @property
    def num_val(self) -> int:
        """Validation images: ``num_val`` as given, else as many as the test split has (after ``num_test``),
        at most a tenth of the training source."""
        if self._num_val is not None:
            return self._num_val
        return min(len(self.dataset("test")), len(self._source("train")) // 10)

    def dataset(self, split: str) -> ImageDataset:
        """The (cached) dataset of ``split`` (``train``, ``val``, ``test``) with the caps applied: ``val`` is
        the last :attr:`num_val` images of the training source, ``train`` the images before them (first
        ``num_train``), ``test`` the first ``num_test`` of the test source."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if split not in self._datasets:
            if split == "test":
                data = self._source("test")
                data = data if self.num_test is None else data.head(self.num_test)
            else:
                source, num_val = self._source("train"), self.num_val
                if split == "val" and num_val == 0:
                    raise ValueError(
                        "num_val=0: this data module has no validation split (it validates on test)"
                    )
                if num_val >= len(source):
                    raise ValueError(
                        f"num_val={num_val} leaves no training images ({self.dataset_name} has {len(source)}); "
                        "lower num_val"
                    )
                end = len(source) - num_val
                if split == "val":
                    data = source.rows(end, len(source))
                else:
                    data = source.rows(0, end if self.num_train is None else min(end, self.num_train))
                    if self.num_train is not None and self.num_train > end:
                        log.warning("num_train=%d: only %d training images precede the %d validation images",
                                    self.num_train, end, num_val)  # fmt: skip
            self._datasets[split] = data
            log.info("%s", data)
        return self._datasets[split]

    def val_dataloader(self) -> DataLoader:
        """The validation images (never trained on); the test split where ``num_val=0``."""
        if self.num_val == 0:
            log.warning("num_val=0: validation and best.ckpt use the test split")
            return super().val_dataloader()
        return self._loader(self.dataset("val"), batch_size=self.eval_batch_size, shuffle=False)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
            if self.num_val > 0:
                self.dataset("val")
        self.dataset("test")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image (builds the test split if needed; no image is decoded)."""
        split = next((k for k in self._datasets if not k.startswith("source_")), "test")
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
