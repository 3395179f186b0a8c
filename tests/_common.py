"""Constants shared by the test files (importable from every test folder: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

F64 = torch.float64
"""The dtype of every property test: equivariance and invariance are checked at float64 tolerance."""


def write_fake_cifar(root: Path) -> dict[str, np.ndarray]:
    """The "python version" layout: pickled dicts, bytes keys, ``data`` uint8 [N, 3072] (R, G, B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        rows = images.transpose(0, 3, 1, 2).reshape(2, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": rows, b"labels": [1, 7]}, f, protocol=2)
        written[name] = images
    return written
