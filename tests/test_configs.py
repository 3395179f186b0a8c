"""Every YAML in ``configs/`` instantiates through the CLI parser (no training) with the values it states."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from enf.data.datamodule import ImageDataModule
from enf.training import FieldFittingModule, RunArtifacts
from enf.training.cli import TRAINER_DEFAULTS, ENFLightningCLI

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
CHANNELS = {"mnist": 1, "faces": 1, "natural": 3, "cifar10": 3, "folder": 3}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def needs_root(path: Path) -> bool:
    return "root" in (load(path)["data"].get("init_args") or {})


def instantiate(path: Path, *extra: str) -> ENFLightningCLI:
    return ENFLightningCLI(
        FieldFittingModule,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        args=["--config", str(path), "--trainer.logger", "false", *extra],
        run=False,
    )


def check_matches_yaml(cli: ENFLightningCLI, cfg: dict, *, root: str | None = None) -> None:
    model = cli.model
    assert isinstance(model, FieldFittingModule)
    for key, value in cfg["model"].items():
        assert model.hparams[key] == value, key
    assert model.geometry.name == cfg["model"]["geometry"]
    assert model.meta is not None
    assert model.meta.initial(2).poses.shape[:2] == (2, cfg["model"]["num_latents"])
    dm = cli.datamodule
    assert isinstance(dm, ImageDataModule) and cfg["data"]["class_path"] == "enf.data.ImageDataModule"
    for key, value in cfg["data"]["init_args"].items():
        assert dm.hparams[key] == (root if key == "root" and root is not None else value), key
    # linked from the datamodule into the model
    assert model.hparams.num_out == dm.num_channels == CHANNELS[cfg["data"]["init_args"]["dataset"]]
    z0 = model.meta.initial(1)  # the decoder really was built with the linked channel count
    assert model.decoder(torch.zeros(1, 3, model.geometry.coord_dim), z0).shape[-1] == dm.num_channels
    for key, value in cfg["trainer"].items():
        if key in ("logger", "accelerator", "devices", "max_time"):
            continue
        assert getattr(cli.trainer, key) == value, key
    artifacts = [cb for cb in cli.trainer.callbacks if isinstance(cb, RunArtifacts)]
    assert len(artifacts) == 1
    if "artifacts" in cfg:
        assert artifacts[0].num_train_eval == cfg["artifacts"]["num_train_eval"]
    ckpt = [cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    assert len(ckpt) == 1 and ckpt[0].monitor == "val/psnr" and ckpt[0].save_last


def test_every_config_is_covered() -> None:
    assert {p.stem for p in CONFIGS} >= {"mnist", "natural", "faces", "cifar10", "folder"}


@pytest.mark.parametrize("path", [p for p in CONFIGS if not needs_root(p)], ids=lambda p: p.stem)
def test_config_instantiates(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(path)
    cli = instantiate(path)
    check_matches_yaml(cli, cfg)
    assert not (tmp_path / "runs").exists()  # nothing was run or written


@pytest.mark.parametrize("path", [p for p in CONFIGS if needs_root(p)], ids=lambda p: p.stem)
def test_config_with_missing_root_names_it(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the YAML's relative root does not exist here
    root = load(path)["data"]["init_args"]["root"]
    with pytest.raises((FileNotFoundError, ValueError)) as exc:
        instantiate(path)
    assert root in str(exc.value)


def _write_fake_cifar(root: Path) -> dict[str, np.ndarray]:
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


def test_cifar10_config_with_a_local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    written = _write_fake_cifar(tmp_path / "cifar")
    path = next(p for p in CONFIGS if p.stem == "cifar10")
    cli = instantiate(path, "--data.init_args.root", str(tmp_path / "cifar"))
    check_matches_yaml(cli, load(path), root=str(tmp_path / "cifar"))
    dm = cli.datamodule
    assert dm.num_train_signals == 10 and len(dm.dataset("test")) == 2
    item = dm.dataset("test")[1]
    np.testing.assert_allclose(np.asarray(item["image"]), written["test_batch"][1] / 255.0, atol=1e-6)
    assert int(item["label"]) == 7


def test_folder_config_with_a_local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i}.png")
    path = next(p for p in CONFIGS if p.stem == "folder")
    cli = instantiate(path, "--data.init_args.root", str(folder))
    check_matches_yaml(cli, load(path), root=str(folder))
    dm = cli.datamodule
    assert dm.image_shape == (32, 32, 3)
    assert dm.num_train_signals == 4 and len(dm.dataset("test")) == 1  # 10 % held out, at least one
    test_image = np.asarray(dm.dataset("test")[0]["image"])
    # already 32x32, so the resize to image_size 32 keeps the pixels: the test image is one of the files
    assert min(np.abs(test_image - im / 255.0).max() for im in images) < 1e-6
