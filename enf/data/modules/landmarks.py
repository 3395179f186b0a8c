"""``LandmarkDataModule``: real landmark shapes (:func:`enf.data.landmark_dataset`) for the shape VAE.

Items carry ``positions [K, d]`` (:data:`enf.data.keys.POSITIONS`), ``index`` and, where the data has one,
``label``. The field spec is of kind ``points``: ``K`` unstructured points whose ``d`` channels are their
coordinates.
"""

from __future__ import annotations

from typing import Literal

from torch.utils.data import Dataset

from enf.data.field import FieldSpec
from enf.data.landmarks import LANDMARK_DATASETS, landmark_dataset
from enf.data.modules.field import FieldDataModule

__all__ = ["LandmarkDataModule"]


class LandmarkDataModule(FieldDataModule):
    """Train/test splits of a landmark data set.

    Args:
        dataset: ``trilobite`` (2-D, K=16), ``mosquito`` (2-D, K=18) or ``hands`` (3-D, K=22).
        test_fraction: share of the specimens in the test split (seeded by ``split_seed``).
        split_seed: seed of the train/test split.
        normalize: ``rms`` (centre and divide by the RMS radius, default), ``center`` or ``none``.
        batch_size, eval_batch_size, num_workers, seed: as for every field data module.
    """

    def __init__(
        self,
        *,
        dataset: Literal["trilobite", "mosquito", "hands"] = "trilobite",
        test_fraction: float = 0.2,
        split_seed: int = 0,
        normalize: Literal["rms", "center", "none"] = "rms",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        if dataset not in LANDMARK_DATASETS:
            raise ValueError(
                f"unknown landmark dataset {dataset!r}; choose one of {sorted(LANDMARK_DATASETS)}"
            )
        self.save_hyperparameters()
        self.dataset_name = dataset
        self._datasets: dict[str, Dataset] = {}

    def dataset(self, split: str) -> Dataset:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self._datasets:
            hp = self.hparams
            self._datasets[split] = landmark_dataset(
                hp.dataset,
                split=split,
                seed=hp.split_seed,
                test_fraction=hp.test_fraction,
                normalize=hp.normalize,
            )
        return self._datasets[split]

    @property
    def num_landmarks(self) -> int:
        return self.dataset("test").num_landmarks

    @property
    def space_dim(self) -> int:
        return self.dataset("test").dim

    @property
    def field_spec(self) -> FieldSpec:
        """Kind ``points``: ``K`` landmarks, ``d`` coordinate channels."""
        d = self.space_dim
        return FieldSpec(kind="points", coord_dim=d, num_channels=d, channel_names=("x", "y", "z")[:d],
                         name=self.dataset_name)  # fmt: skip
