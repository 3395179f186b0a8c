"""ImageDataModule: contract batches, caps, shuffling, field_spec, eval loaders, and its LightningCLI schema."""

from __future__ import annotations

import pytest
import torch

from enf.data import FieldDataModule, FieldSpec, ImageDataModule, image_dataset, pixel_coords, signal_to_image


def test_batches_follow_the_field_contract_and_match_the_dataset() -> None:
    dm = ImageDataModule(dataset="mnist", batch_size=16, num_train=64, num_test=40)
    assert isinstance(dm, FieldDataModule)
    assert dm.image_shape == (28, 28, 1) and dm.num_channels == 1  # before setup
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    batch = batches[0]
    assert set(batch) == {"coords", "signal", "index", "label"}
    assert batch["signal"].shape == (16, 28 * 28, 1) and batch["signal"].dtype == torch.float32
    torch.testing.assert_close(batch["coords"], pixel_coords(28, 28).expand(16, -1, -1), rtol=0, atol=0)
    assert batch["index"].dtype == torch.int64 and batch["label"].shape == (16,)
    assert 0.0 <= float(batch["signal"].min()) and float(batch["signal"].max()) <= 1.0
    assert float(batch["signal"].max()) > 0.5
    seen = torch.cat([b["index"] for b in batches])
    assert sorted(seen.tolist()) == list(range(64))  # shuffled, every training image once
    assert seen.tolist() != list(range(64))
    full = image_dataset("mnist", split="train")
    images = signal_to_image(batch["signal"], 28, 28)  # back to [B, H, W, C]: row-major flattening
    for k in (0, 7):
        i = int(batch["index"][k])
        expected = torch.from_numpy(full._image(i))
        assert torch.equal(images[k], expected) and int(batch["label"][k]) == full[i]["label"]
    val = list(dm.val_dataloader())
    assert [len(b["index"]) for b in val] == [16, 16, 8]  # no drop_last outside training
    assert torch.cat([b["index"] for b in val]).tolist() == list(range(40))
    # validation: the last 40 images of the training source (never trained on), not the test images
    first_val = torch.from_numpy(full._image(len(full) - 40)).reshape(1, -1, 1)
    assert torch.equal(val[0]["signal"][:1], first_val)
    test_first = next(iter(dm.test_dataloader()))
    assert not torch.equal(test_first["signal"], val[0]["signal"])


def test_validation_images_are_held_out_of_training() -> None:
    dm = ImageDataModule(dataset="faces", num_val=10)
    dm.setup("fit")
    train, val, source = dm.dataset("train"), dm.dataset("val"), image_dataset("faces", split="train")
    assert len(train) == len(source) - 10 and len(val) == 10
    train_images = {train._image(i).tobytes() for i in range(len(train))}
    assert not any(val._image(i).tobytes() in train_images for i in range(len(val)))
    # default: as many as the test split (20 faces), at most a tenth of the 80 training faces
    assert ImageDataModule(dataset="faces").num_val == 8
    assert ImageDataModule(dataset="mnist", num_test=8).num_val == 8


def test_num_val_zero_validates_on_test_and_says_so(caplog) -> None:
    dm = ImageDataModule(dataset="faces", num_val=0)
    assert dm.num_train_signals == 80
    with caplog.at_level("WARNING"):
        val = next(iter(dm.val_dataloader()))
    assert "validation and best.ckpt use the test split" in caplog.text
    assert torch.equal(val["signal"], next(iter(dm.test_dataloader()))["signal"])
    with pytest.raises(ValueError, match="has no validation split"):
        dm.dataset("val")


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_num_val_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="num_val must be an int >= 0 or None"):
        ImageDataModule(dataset="faces", num_val=bad)
    with pytest.raises(ValueError, match="num_val=80 leaves no training images"):
        ImageDataModule(dataset="faces", num_val=80).dataset("train")


def test_field_spec_describes_the_images() -> None:
    spec = ImageDataModule(dataset="natural", image_size=16, num_test=4).field_spec
    assert spec == FieldSpec(
        kind="image",
        coord_dim=2,
        num_channels=3,
        grid_shape=(16, 16),
        channel_names=("r", "g", "b"),
        data_range=1.0,
        name="natural",
    )
    dm = ImageDataModule(dataset="faces")
    assert dm.field_spec.channel_names == ("gray",) and dm.field_spec.grid_shape == (25, 25)
    assert FieldSpec.from_dict(dm.field_spec_dict) == dm.field_spec
    assert dm.num_train_signals == 72 and dm.eval_splits == ("train", "test")  # 8 of 80 validate


def test_eval_loaders_are_ordered_capped_and_use_eval_batch_size() -> None:
    dm = ImageDataModule(dataset="faces", batch_size=8, eval_batch_size=6)
    batches = list(dm.eval_dataloader("train", max_samples=15))
    assert [len(b["index"]) for b in batches] == [6, 6, 3]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(15))
    everything = torch.cat([b["index"] for b in dm.eval_dataloader("test", max_samples=1000)])
    assert everything.tolist() == list(range(20))
    assert [len(b["index"]) for b in dm.val_dataloader()] == [6, 2]  # the 8 validation faces
    with pytest.raises(ValueError, match="max_samples must be an int >= 1, got 0"):
        dm.eval_dataloader("test", max_samples=0)


def test_shuffle_is_seeded_and_small_sets_keep_their_last_batch() -> None:
    def first_indices(seed: int) -> list[int]:
        dm = ImageDataModule(dataset="faces", batch_size=8, seed=seed)
        return next(iter(dm.train_dataloader()))["index"].tolist()

    assert first_indices(0) == first_indices(0) and first_indices(0) != first_indices(1)
    dm = ImageDataModule(dataset="faces", batch_size=100)  # 72 training faces < batch size
    (batch,) = list(dm.train_dataloader())
    assert sorted(batch["index"].tolist()) == list(range(72)) and "label" not in batch


def test_image_size_options_and_argument_errors() -> None:
    dm = ImageDataModule(
        dataset="natural", image_size=16, num_test=10, options={"num_test_crops_per_image": 5}
    )
    assert dm.image_shape == (16, 16, 3)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["signal"].shape == (10, 16 * 16, 3) and batch["index"].tolist() == list(range(10))
    with pytest.raises(ValueError, match="image_size is only supported"):
        ImageDataModule(dataset="mnist", image_size=32)
    with pytest.raises(ValueError, match="unknown image dataset"):
        ImageDataModule(dataset="imagenet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        ImageDataModule(dataset="faces", batch_size=0)
    with pytest.raises(ValueError, match="eval_batch_size must be an int >= 1"):
        ImageDataModule(dataset="faces", eval_batch_size=-2)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0, got -1"):
        ImageDataModule(dataset="faces", num_workers=-1)


def test_signature_is_a_valid_cli_schema() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ImageDataModule, "data")
    cfg = parser.parse_args(["--data.dataset=faces", "--data.batch_size=4", "--data.options={crop_size: 3}"])
    assert cfg.data.dataset == "faces" and cfg.data.batch_size == 4 and cfg.data.options == {"crop_size": 3}
    assert cfg.data.eval_batch_size is None
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_args(["--data.dataset=imagenet"])
