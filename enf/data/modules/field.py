"""``FieldDataModule``: the Lightning data module every field dataset (images, PDE frames...) derives from.

A subclass declares two things: ``dataset(split) -> Dataset`` (items follow :mod:`enf.data.keys`) and
``field_spec -> FieldSpec``. The base class builds every loader from them, so tasks and callbacks can rely
on one interface (never ``hasattr``):

* ``train_dataloader()``: the ``"train"`` split, shuffled with a generator seeded by ``seed``, dropping the
  last incomplete batch when the split is larger than one batch;
* ``val_dataloader()`` / ``test_dataloader()``: the ``"test"`` split, in order (``eval_batch_size``); data
  modules with a validation split of their own override ``val_dataloader`` (PDE data: the end of the train
  file; images: the last images of the training source; procedural shapes: further shapes), so model
  selection never sees the test data;
* ``eval_splits``: the splits final metrics are computed on (default ``("train", "test")``);
* ``eval_dataloader(split, max_samples=...)``: one of them in order, optionally only its first items;
* ``metrics_dataloader(split, max_samples=...)``: what the final metrics read (default: ``eval_dataloader``;
  signed distances add held-out evaluation points).

Batches are :func:`enf.data.images.base.collate` d dicts: ``coords [B, N, coord_dim]``, ``signal [B, N, C]``,
``index [B]`` plus the dataset's optional keys.
"""

from __future__ import annotations

import abc
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from enf.data.field import FieldSpec
from enf.data.images.base import collate

__all__ = ["FieldDataModule"]


def _check_int(label: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
    return value


class FieldDataModule(L.LightningDataModule, abc.ABC):
    """Base class of the field data modules.

    Args:
        batch_size: signals per training batch (>= 1).
        eval_batch_size: signals per validation/test/evaluation batch (default: ``batch_size``).
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: seed of the training-set shuffle.
    """

    def __init__(
        self, *, batch_size: int = 32, eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__()
        self.batch_size = _check_int("batch_size", batch_size, minimum=1)
        if eval_batch_size is not None:
            _check_int("eval_batch_size", eval_batch_size, minimum=1)
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = _check_int("num_workers", num_workers, minimum=0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed

    # ------------------------------------------------------------------------------- what subclasses give
    @abc.abstractmethod
    def dataset(self, split: str) -> Dataset:
        """The (cached) dataset of ``split``; its items follow :mod:`enf.data.keys`."""

    @property
    @abc.abstractmethod
    def field_spec(self) -> FieldSpec:
        """What the signals are (kind, grid, channels, normalisation...)."""

    # ------------------------------------------------------------------------------------ derived facts
    @property
    def field_spec_dict(self) -> dict[str, Any]:
        """``field_spec.to_dict()``: plain types, for linking to the model in the CLI."""
        return self.field_spec.to_dict()

    @property
    def num_channels(self) -> int:
        return self.field_spec.num_channels

    @property
    def num_train_signals(self) -> int:
        """Number of signals of the training split (rows of an auto-decoder table)."""
        return len(self.dataset("train"))

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The splits final metrics are computed on, each through :meth:`eval_dataloader`."""
        return ("train", "test")

    # ------------------------------------------------------------------------------------- dataloaders
    def _loader(self, dataset: Dataset, *, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train"), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), batch_size=self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), batch_size=self.eval_batch_size, shuffle=False)

    def eval_dataloader(self, split: str, *, max_samples: int | None = None) -> DataLoader:
        """Unshuffled loader over ``split`` (final metrics, ``enf encode``), ``eval_batch_size`` per batch.

        Args:
            split: a split of this data module (e.g. one of :attr:`eval_splits`).
            max_samples: keep only the first ``max_samples`` signals of the split (all if it has fewer).
        """
        dataset = self.dataset(split)
        if max_samples is not None:
            _check_int("max_samples", max_samples, minimum=1)
            if max_samples < len(dataset):
                dataset = Subset(dataset, range(max_samples))
        return self._loader(dataset, batch_size=self.eval_batch_size, shuffle=False)

    def metrics_dataloader(self, split: str, *, max_samples: int | None = None) -> DataLoader:
        """The loader the final metrics of ``split`` are computed on (``evaluate``): :meth:`eval_dataloader`
        here; a subclass may add evaluation-only keys (e.g. held-out points no fitting step sees)."""
        return self.eval_dataloader(split, max_samples=max_samples)
