"""``LatentCloudDataModule``: ENF latent point clouds written by ``enf encode --store-signal``, for the shape VAE.

    enf encode --ckpt runs/mnist/version_0/checkpoints/last.ckpt --split train --store-signal \\
        --out data/symbols/mnist_train.h5

Each split is one such file. Items carry ``positions [L, d]`` (the position block of the poses), ``poses [L,
pose_dim]``, ``context [L, F]``, ``window [L, 1]``, the encoded signal ``signal [N, C]`` on ``coords [N,
coord_dim]`` (the grid, shared), ``index`` and ``label`` where the file has labels. Besides ``train`` and
``test``, any number of named extra splits (e.g. the test digits rotated, ``enf encode --rotate random``)
are evaluated at the end of a run: ``eval_splits`` lists them after ``train`` and ``test``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from enf.data import keys
from enf.data.field import FieldSpec
from enf.data.hdf5 import read_h5
from enf.data.modules.field import FieldDataModule

__all__ = ["LatentCloudDataModule", "LatentCloudDataset"]

_REQUIRED = {"poses": 3, "context": 3, "window": 3, "index": 1, keys.SIGNAL: 3, keys.COORDS: 2}


class LatentCloudDataset(Dataset):
    """One ``enf encode --store-signal`` file in memory (see the module docstring for the items)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            arrays, attrs = read_h5(path, required=_REQUIRED, required_attrs=("geometry", "pose_dim"))
        except (FileNotFoundError, ValueError) as exc:
            raise type(exc)(
                f"{exc}. Latent-cloud files are written by `enf encode --ckpt <fit run>/checkpoints/last.ckpt "
                f"--split train --store-signal --out {path}` (see the README, 'Geometric symbols')"
            ) from None
        self.path = path
        self.attrs = attrs
        self.geometry = str(attrs["geometry"])
        num = len(arrays["index"])
        for name in ("poses", "context", "window", keys.SIGNAL):
            if arrays[name].shape[0] != num:
                raise ValueError(f"{path}: {name!r} has {arrays[name].shape[0]} rows but 'index' has {num}")
        for name in ("poses", "context", "window", keys.SIGNAL, keys.COORDS):
            if not np.isfinite(arrays[name]).all():
                raise ValueError(f"{path}: {name!r} holds NaN or inf; re-encode the split")
        if arrays[keys.SIGNAL].shape[1] != arrays[keys.COORDS].shape[0]:
            raise ValueError(
                f"{path}: 'signal' has {arrays[keys.SIGNAL].shape[1]} points but 'coords' has "
                f"{arrays[keys.COORDS].shape[0]}"
            )
        self.space_dim = int(arrays[keys.COORDS].shape[1])
        self.poses = torch.as_tensor(arrays["poses"], dtype=torch.float32)
        self.context = torch.as_tensor(arrays["context"], dtype=torch.float32)
        self.window = torch.as_tensor(arrays["window"], dtype=torch.float32)
        self.signal = torch.as_tensor(arrays[keys.SIGNAL], dtype=torch.float32)
        self.coords = torch.as_tensor(arrays[keys.COORDS], dtype=torch.float32)
        self.index = torch.as_tensor(arrays["index"], dtype=torch.int64)
        self.label = torch.as_tensor(arrays[keys.LABEL], dtype=torch.int64) if keys.LABEL in arrays else None
        self.rotation = torch.as_tensor(arrays["rotation"]) if "rotation" in arrays else None

    @property
    def num_latents(self) -> int:
        return self.poses.shape[1]

    @property
    def context_dim(self) -> int:
        return self.context.shape[2]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, object]:
        item = {
            keys.POSITIONS: self.poses[i, :, : self.space_dim],
            keys.POSES: self.poses[i],
            keys.CONTEXT: self.context[i],
            keys.WINDOW: self.window[i],
            keys.COORDS: self.coords,
            keys.SIGNAL: self.signal[i],
            keys.INDEX: int(self.index[i]),
        }
        if self.label is not None:
            item[keys.LABEL] = int(self.label[i])
        return item


class LatentCloudDataModule(FieldDataModule):
    """Latent point clouds of a trained ENF, one ``enf encode --store-signal`` file per split.

    Args:
        train: file of the training split.
        test: file of the test split (validation uses it too).
        extra: more evaluation splits, ``{name: file}`` (e.g. ``{"test_rotated": ...}``).
        batch_size, eval_batch_size, num_workers, seed: as for every field data module.
    """

    def __init__(
        self,
        *,
        train: str,
        test: str,
        extra: dict[str, str] | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        extra = dict(extra or {})
        for name in extra:
            if name in ("train", "test") or not name.isidentifier():
                raise ValueError(f"extra split names must be identifiers other than train/test, got {name!r}")
        self.save_hyperparameters()
        self.paths = {"train": train, "test": test, **extra}
        self.dataset_name = Path(train).stem.removesuffix("_train")
        self._datasets: dict[str, LatentCloudDataset] = {}

    def dataset(self, split: str) -> LatentCloudDataset:
        if split not in self.paths:
            raise ValueError(f"unknown split {split!r}; this data module has {sorted(self.paths)}")
        if split not in self._datasets:
            data = LatentCloudDataset(self.paths[split])
            if self._datasets:
                ref = next(iter(self._datasets.values()))
                if (data.geometry, data.poses.shape[1:], data.context_dim) != (
                    ref.geometry,
                    ref.poses.shape[1:],
                    ref.context_dim,
                ):
                    raise ValueError(
                        f"{self.paths[split]} holds {data.geometry} latents {tuple(data.poses.shape[1:])} with "
                        f"context {data.context_dim}, but {ref.path} holds {ref.geometry} "
                        f"{tuple(ref.poses.shape[1:])} with context {ref.context_dim}: encode every split "
                        "with the same model"
                    )
            self._datasets[split] = data
        return self._datasets[split]

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(self.paths)

    @property
    def field_spec(self) -> FieldSpec:
        """The encoded signals' spec, as written by ``enf encode`` (kind ``image`` for image data)."""
        data = self.dataset("test")
        spec = data.attrs.get("field")
        if isinstance(spec, dict):
            return FieldSpec.from_dict(spec)
        return FieldSpec(
            kind="points",
            coord_dim=data.space_dim,
            num_channels=data.signal.shape[-1],
            name=self.dataset_name,
        )
