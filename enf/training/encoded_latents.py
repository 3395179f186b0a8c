"""Latents of a whole split read from an ``enf encode`` file, checked against the data and the ENF that uses them.

Two-stage classification (:class:`~enf.training.ClassificationModule`, ``latent_files``) reads the training and
validation clouds from such files instead of encoding them at the start of every run. A file is accepted only if
it is the split asked for, encoded with the same geometry, holds one row per signal of the split, carries the
same labels, and its first rows equal what the attached ENF encodes from the same signals now (so a file made
by another checkpoint or from other data is refused, not silently trained on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from enf.data import keys
from enf.data.hdf5 import read_h5
from enf.latents import Latents

__all__ = ["ENCODED_SPLITS", "load_encoded_split"]

#: splits a latent file can stand for (the test split is always encoded by the run itself)
ENCODED_SPLITS = ("train", "val")
#: largest difference between a file's latents and the ENF's encoding of the same signals now (float32 noise of
#: a few inner steps with another batch size is ~1e-5)
MATCH_TOLERANCE = 1e-3


def load_encoded_split(
    path: str | Path,
    *,
    split: str,
    geometry_name: str,
    loader,
    encode: Callable[[Mapping[str, Tensor]], Latents],
    device: torch.device | str = "cpu",
) -> tuple[Latents, Tensor]:
    """The latents ``[S, L, ...]`` and labels ``[S]`` of ``split``, row ``i`` for the signal with ``index == i``.

    Args:
        path: an ``enf encode --split <split>`` file (poses, context, window, index, label).
        split: the split the file must hold.
        geometry_name: the geometry the ENF encodes with.
        loader: an unshuffled loader over the split (labels and indices; its first batch is encoded again).
        encode: the ENF's test-time encoding of a batch.
        device: where the returned tensors live.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message gives the ``enf encode`` command).
        ValueError: another split or geometry, missing or extra rows, other labels, or latents that the ENF does
            not reproduce (another checkpoint or other inner-step settings).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"latent file {path} ({split} split) does not exist; write it with "
            f"`enf encode --ckpt <model.fit_checkpoint> --split {split} --out {path}`"
        )
    arrays, attrs = read_h5(
        path,
        required={"poses": 3, "context": 3, "window": 3, "index": 1, keys.LABEL: 1},
        required_attrs=("geometry", "split"),
    )
    if attrs["split"] != split:
        raise ValueError(f"latent file {path} holds the {attrs['split']!r} split, not {split!r}")
    if attrs["geometry"] != geometry_name:
        raise ValueError(
            f"latent file {path} was encoded with geometry {attrs['geometry']!r}, but the ENF of "
            f"model.fit_checkpoint uses {geometry_name!r}"
        )
    labels, index = [], []
    first = None
    for batch in loader:
        first = batch if first is None else first
        labels.append(torch.as_tensor(batch[keys.LABEL]).long())
        index.append(torch.as_tensor(batch[keys.INDEX]).long())
    if first is None:
        raise ValueError(
            f"the {split} split of this run's data is empty: there is nothing to read {path} for"
        )
    data_labels = torch.empty(sum(len(i) for i in index), dtype=torch.long)
    data_labels[torch.cat(index)] = torch.cat(labels)
    rows = arrays["index"].astype(np.int64)
    for name in ("poses", "context", "window", keys.LABEL):
        if arrays[name].shape[0] != len(rows):
            raise ValueError(
                f"latent file {path}: {name!r} has {arrays[name].shape[0]} rows but 'index' has {len(rows)}"
            )
    for name in ("poses", "context", "window"):
        if not np.isfinite(arrays[name]).all():
            raise ValueError(f"latent file {path}: {name!r} holds NaN or inf; encode the split again")
    num_signals = len(data_labels)
    if len(rows) != num_signals or not np.array_equal(np.sort(rows), np.arange(num_signals)):
        raise ValueError(
            f"latent file {path} has {len(rows)} rows (indices {rows.min()}..{rows.max()}) but the {split} split "
            f"has {num_signals} signals: encode it again with the data settings of this run"
        )
    order = np.argsort(rows)
    file_labels = torch.from_numpy(arrays[keys.LABEL][order].astype(np.int64))
    if not torch.equal(file_labels, data_labels):
        wrong = int((file_labels != data_labels).sum())
        raise ValueError(
            f"latent file {path}: {wrong} of {num_signals} labels differ from the {split} split of this run's data; "
            "it was encoded from other data"
        )
    z = Latents(
        poses=torch.from_numpy(arrays["poses"][order]),
        context=torch.from_numpy(arrays["context"][order]),
        window=torch.from_numpy(arrays["window"][order]),
    )
    # the first batch again, with the ENF that will encode the test split
    now = encode({k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in first.items()})
    rows_now = torch.as_tensor(first[keys.INDEX]).long()
    for name in ("poses", "context", "window"):
        stored = getattr(z, name)[rows_now].to(device=device, dtype=getattr(now, name).dtype)
        diff = float((stored - getattr(now, name)).abs().max())
        if not diff <= MATCH_TOLERANCE * (1.0 + float(stored.abs().max())):
            raise ValueError(
                f"latent file {path}: its {name} differ from what model.fit_checkpoint encodes from the same "
                f"signals now (max difference {diff:.3g}); it was encoded by another checkpoint or with other "
                "inner-step settings: encode the split again with this checkpoint"
            )
    return z.to(device), data_labels.to(device)
