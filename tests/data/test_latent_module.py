"""LatentCloudDataModule: items read back what `enf encode --store-signal` wrote; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enf.data import read_h5, write_h5
from enf.data.modules.latents import LatentCloudDataModule, LatentCloudDataset


def _file(path: Path, *, num: int = 6, latents: int = 5, width: int = 3, pose_dim: int = 4, **edit) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "poses": rng.normal(size=(num, latents, pose_dim)).astype(np.float32),
        "context": rng.normal(size=(num, latents, width)).astype(np.float32),
        "window": np.full((num, latents, 1), 0.4, np.float32),
        "index": np.arange(num),
        "label": np.arange(num) % 3,
        "signal": rng.random((num, 16, 1)).astype(np.float32),
        "coords": rng.random((16, 2)).astype(np.float32),
    }
    arrays.update(edit)
    return write_h5(path, arrays, {"geometry": "se2", "pose_dim": pose_dim})


def test_items_are_the_file_rows(tmp_path: Path) -> None:
    path = _file(tmp_path / "a_train.h5")
    data = LatentCloudDataset(path)
    item = data[2]
    assert item["positions"].shape == (5, 2) and item["poses"].shape == (5, 4) and item["label"] == 2
    np.testing.assert_array_equal(item["positions"].numpy(), item["poses"][:, :2].numpy())
    dm = LatentCloudDataModule(train=str(path), test=str(path), extra={"again": str(path)}, batch_size=4)
    assert dm.eval_splits == ("train", "test", "again") and dm.dataset_name == "a"
    batch = next(iter(dm.train_dataloader()))
    assert batch["coords"].shape == (4, 16, 2) and batch["context"].shape == (4, 5, 3)


def test_bad_files_fail_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds NaN"):
        LatentCloudDataset(_file(tmp_path / "nan.h5", context=np.full((6, 5, 3), np.nan, np.float32)))
    with pytest.raises(ValueError, match="'signal' has 8 points but 'coords' has 16"):
        LatentCloudDataset(_file(tmp_path / "pts.h5", signal=np.zeros((6, 8, 1), np.float32)))
    arrays = {k: v for k, v in read_h5(_file(tmp_path / "full.h5"))[0].items() if k != "signal"}
    bare = write_h5(tmp_path / "bare.h5", arrays, {"geometry": "se2", "pose_dim": 4})
    with pytest.raises(ValueError, match="(?s)has no dataset 'signal'.*--store-signal"):
        LatentCloudDataset(bare)
    other = _file(tmp_path / "ctx.h5", context=np.zeros((6, 5, 7), np.float32))
    dm = LatentCloudDataModule(train=str(_file(tmp_path / "t.h5")), test=str(other))
    dm.dataset("train")
    with pytest.raises(ValueError, match="encode every split with the same model"):
        dm.dataset("test")
    with pytest.raises(ValueError, match="extra split names"):
        LatentCloudDataModule(train="a", test="b", extra={"test": "c"})
    with pytest.raises(ValueError, match="unknown split"):
        dm.dataset("val")
