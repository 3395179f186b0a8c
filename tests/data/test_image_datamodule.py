"""ImageDataModule: batches, caps, shuffling, shapes before setup, and its LightningCLI schema."""

from __future__ import annotations

import pytest
import torch

from enf.data import ImageDataModule, collate, image_dataset


def test_batches_match_the_dataset() -> None:
    dm = ImageDataModule(dataset="mnist", batch_size=16, num_train=64, num_test=40)
    assert dm.image_shape == (28, 28, 1) and dm.num_channels == 1  # before setup
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    batch = batches[0]
    assert batch["image"].shape == (16, 28, 28, 1) and batch["image"].dtype == torch.float32
    assert batch["index"].dtype == torch.int64 and batch["label"].shape == (16,)
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert float(batch["image"].max()) > 0.5
    seen = torch.cat([b["index"] for b in batches])
    assert sorted(seen.tolist()) == list(range(64))  # shuffled, every training image once
    assert seen.tolist() != list(range(64))
    full = image_dataset("mnist", split="train")
    for k in (0, 7):
        i = int(batch["index"][k])
        assert torch.equal(batch["image"][k], full[i]["image"]) and int(batch["label"][k]) == full[i]["label"]
    val = list(dm.val_dataloader())
    assert [len(b["index"]) for b in val] == [16, 16, 8]  # no drop_last outside training
    assert torch.cat([b["index"] for b in val]).tolist() == list(range(40))
    test_first = next(iter(dm.test_dataloader()))
    assert torch.equal(test_first["image"], val[0]["image"])


def test_shuffle_is_seeded_and_small_sets_keep_their_last_batch() -> None:
    def first_indices(seed: int) -> list[int]:
        dm = ImageDataModule(dataset="faces", batch_size=8, seed=seed)
        return next(iter(dm.train_dataloader()))["index"].tolist()

    assert first_indices(0) == first_indices(0) and first_indices(0) != first_indices(1)
    dm = ImageDataModule(dataset="faces", batch_size=100)  # 80 training faces < batch size
    (batch,) = list(dm.train_dataloader())
    assert sorted(batch["index"].tolist()) == list(range(80)) and "label" not in batch


def test_image_size_and_options() -> None:
    dm = ImageDataModule(
        dataset="natural", image_size=16, num_test=10, options={"num_test_crops_per_image": 5}
    )
    assert dm.image_shape == (16, 16, 3)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (10, 16, 16, 3) and batch["index"].tolist() == list(range(10))
    with pytest.raises(ValueError, match="image_size is only supported"):
        ImageDataModule(dataset="mnist", image_size=32)
    with pytest.raises(ValueError, match="unknown image dataset"):
        ImageDataModule(dataset="imagenet")  # type: ignore[arg-type]


def test_collate_stacks_values() -> None:
    items = [{"image": torch.full((2, 2, 1), float(i)), "index": i} for i in range(3)]
    batch = collate(items)
    assert batch["index"].tolist() == [0, 1, 2] and batch["image"][:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_signature_is_a_valid_cli_schema() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ImageDataModule, "data")
    cfg = parser.parse_args(["--data.dataset=faces", "--data.batch_size=4", "--data.options={crop_size: 3}"])
    assert cfg.data.dataset == "faces" and cfg.data.batch_size == 4 and cfg.data.options == {"crop_size": 3}
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_args(["--data.dataset=imagenet"])
