"""Every YAML in ``configs/`` instantiates through the CLI parser (no training) with the values it states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _common import write_fake_cifar
from PIL import Image

from enf.cli.lightning import ENFLightningCLI, run_lightning_cli
from enf.data.grid import signal_to_image
from enf.data.modules.field import FieldDataModule
from enf.training import FieldFittingModule, RunArtifacts, TaskCheckpoint

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted((REPO_CONFIGS / "fit").glob("*.yaml"))
SHAPE_CONFIGS = [
    "shapes",
    "shapes_bundled",
    "primitives_se3",
    "primitives_translation3d",
]  # SDFs (the mesh extra)
IMAGE_CHANNELS = {"mnist": 1, "mnist_se2": 1, "faces": 1, "natural": 3, "cifar10": 3, "folder": 3}
PDE_CONFIGS = [
    "diffusion_plane",
    "navier_stokes_torus",
    "diffusion_sphere",
    "shallow_water_sphere",
    "heated_convection_ball",
]
# Tiny versions of the small presets, so that instantiating a PDE config generates its data in seconds (two
# training trajectories: the last is the validation split).
TINY_PDE = {
    "diffusion_plane": {"num_train": 2, "num_test": 1, "resolution": 16, "num_frames": 3},
    "navier_stokes_torus": {
        "num_train": 2,
        "num_test": 1,
        "resolution": 16,
        "warmup_time": 0.1,
        "num_frames": 2,
    },
    "diffusion_sphere": {"num_train": 2, "num_test": 1, "nlat": 16, "nlon": 32, "lmax": 12, "num_frames": 2},
    "shallow_water_sphere": {
        "num_train": 2,
        "num_test": 1,
        "skip_frames": 0,
        "num_frames": 2,
        "steps_per_frame": 2,
    },
    "heated_convection_ball": {
        "num_train": 2,
        "num_test": 1,
        "nphi": 8,
        "ntheta": 4,
        "nr": 6,
        "num_frames": 2,
    },
}
PDE_GEOMETRY = {
    "diffusion_plane": "se2", "navier_stokes_torus": "torus2d", "diffusion_sphere": "sphere",
    "shallow_water_sphere": "sphere_axial", "heated_convection_ball": "ball",
}  # fmt: skip


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def needs_root(path: Path) -> bool:
    return "root" in (load(path)["data"].get("init_args") or {})


def is_pde(path: Path) -> bool:
    return load(path)["data"]["class_path"] == "enf.data.PDEDataModule"


def instantiate(path: Path, *extra: str) -> ENFLightningCLI:
    return run_lightning_cli(["--config", str(path), "--trainer.logger", "false", *extra], run=False)


def check_matches_yaml(cli: ENFLightningCLI, cfg: dict, *, root: str | None = None) -> None:
    model = cli.model
    assert isinstance(model, FieldFittingModule)
    for part in ("decoder", "fitter"):  # the built objects carry the values the YAML states
        obj = getattr(model, part)
        assert f"{type(obj).__module__.split('.')[0]}" == "enf"
        for key, value in cfg["model"][part]["init_args"].items():
            got = getattr(obj, key, None)
            if key == "geometry":
                assert obj.geometry.name == value
            elif got is not None and not isinstance(got, torch.Tensor) and not callable(got):
                assert got == value, (part, key)
    assert model.hparams["decoder"]["init_args"] == {
        **model.hparams["decoder"]["init_args"],
        **cfg["model"]["decoder"]["init_args"],
    }
    assert model.hparams["fitter"]["init_args"] == {
        **model.hparams["fitter"]["init_args"],
        **cfg["model"]["fitter"]["init_args"],
    }
    for key, value in cfg["model"].items():
        if key not in ("decoder", "fitter"):
            assert model.hparams[key] == value, key
    assert model.fitter.initial(2).poses.shape[:2] == (2, cfg["model"]["fitter"]["init_args"]["num_latents"])
    dm = cli.datamodule
    assert isinstance(dm, FieldDataModule)
    for key, value in cfg["data"]["init_args"].items():
        if key != "generate_options":
            assert dm.hparams[key] == (root if key == "root" and root is not None else value), key
    # linked from the datamodule into the model: channels, the field description, table rows
    assert model.decoder.num_out == dm.num_channels
    assert model.field_spec == dm.field_spec
    coords = dm.dataset("test")[0]["coords"][None, :3]
    assert model.decoder(coords, model.fitter.initial(1)).shape[-1] == dm.num_channels
    for key, value in cfg["trainer"].items():
        if key in ("logger", "accelerator", "devices", "max_time"):
            continue
        assert getattr(cli.trainer, key) == value, key
    artifacts = [cb for cb in cli.trainer.callbacks if isinstance(cb, RunArtifacts)]
    assert len(artifacts) == 1
    if "artifacts" in cfg:
        assert artifacts[0].num_train_eval == cfg["artifacts"]["num_train_eval"]
    ckpt = [cb for cb in cli.trainer.callbacks if isinstance(cb, TaskCheckpoint)]
    assert (
        len(ckpt) == 1 and ckpt[0].monitor == "auto" and ckpt[0].save_last
    )  # resolved from the task at setup


def test_every_config_is_covered() -> None:
    assert {p.stem for p in CONFIGS} == set(IMAGE_CHANNELS) | set(PDE_CONFIGS) | set(SHAPE_CONFIGS)


@pytest.mark.parametrize("name", SHAPE_CONFIGS)
def test_shape_config_instantiates(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
    monkeypatch.chdir(tmp_path)
    path = next(p for p in CONFIGS if p.stem == name)
    cfg = load(path)
    tiny = ["--data.init_args.num_train", "2", "--data.init_args.num_test", "1", "--data.init_args.num_near", "64",
            "--data.init_args.num_uniform", "16", "--data.init_args.num_surface", "8"]  # fmt: skip
    sizes = dict(num_train=2, num_test=1, num_near=64, num_uniform=16, num_surface=8)
    if cfg["data"]["init_args"].get("dataset") == "bundled":
        pytest.importorskip("pymeshlab", reason="the bundled meshes ship in the pymeshlab wheel")
        tiny += ["--data.init_args.names", "[cube, bone]"]
        sizes["names"] = ["cube", "bone"]
    cli = instantiate(path, *tiny)
    cfg["data"]["init_args"].update(sizes)
    check_matches_yaml(cli, cfg)
    assert cli.datamodule.field_spec.kind == "sdf" and cli.model.decoder.num_out == 1
    assert cli.model.monitor == ("val/iou", "max")
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert batch["coords"].shape == (2, 80, 3)
    z = cli.model.fitter.initial(2)
    assert cli.model.decoder(batch["coords"], z).shape == (2, 80, 1)


def test_configs_share_the_trainer_block() -> None:
    """Logger, inference mode, clipping live in one place (TRAINER_DEFAULTS), not in every file."""
    for path in CONFIGS:
        trainer = load(path).get("trainer", {})
        assert not {"logger", "inference_mode", "gradient_clip_val", "accelerator"} & set(trainer), path.name


@pytest.mark.parametrize(
    "path",
    [p for p in CONFIGS if not needs_root(p) and not is_pde(p) and p.stem not in SHAPE_CONFIGS],
    ids=lambda p: p.stem,
)
def test_image_config_instantiates(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(path)
    cli = instantiate(path)
    check_matches_yaml(cli, cfg)
    assert cli.datamodule.field_spec.kind == "image"
    assert cli.model.decoder.num_out == IMAGE_CHANNELS[path.stem]
    assert cli.model.monitor == ("val/psnr", "max")
    assert not (tmp_path / "runs").exists()  # nothing was run or written


@pytest.mark.parametrize("name", PDE_CONFIGS)
def test_pde_config_instantiates(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each PDE config builds the same module on its generated data (tiny files here), geometry as published."""
    if name == "heated_convection_ball":
        pytest.importorskip(
            "dedalus", reason="the ball generator needs Dedalus (CI installs it and runs this)"
        )
    monkeypatch.chdir(tmp_path)
    path = next(p for p in CONFIGS if p.stem == name)
    cfg = load(path)
    cli = instantiate(path, "--data.init_args.generate_options", json.dumps(TINY_PDE[name]))
    check_matches_yaml(cli, cfg)
    assert (tmp_path / "data" / name / "train.h5").is_file()
    spec = cli.datamodule.field_spec
    assert cli.model.geometry.name == PDE_GEOMETRY[name] and spec.normalized and spec.data_range is None
    assert cli.model.monitor == ("val/mse", "min") and "psnr" not in cli.model.metric_names


@pytest.mark.parametrize("path", [p for p in CONFIGS if needs_root(p)], ids=lambda p: p.stem)
def test_config_with_missing_root_names_it(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the YAML's relative root does not exist here
    root = load(path)["data"]["init_args"]["root"]
    with pytest.raises((FileNotFoundError, ValueError)) as exc:
        instantiate(path)
    assert root in str(exc.value)


def test_cifar10_config_with_a_local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    written = write_fake_cifar(tmp_path / "cifar")
    path = next(p for p in CONFIGS if p.stem == "cifar10")
    cli = instantiate(path, "--data.init_args.root", str(tmp_path / "cifar"))
    check_matches_yaml(cli, load(path), root=str(tmp_path / "cifar"))
    dm = cli.datamodule
    assert dm.num_train_signals == 9 and len(dm.dataset("val")) == 1 and len(dm.dataset("test")) == 2
    item = dm.dataset("test")[1]
    image = signal_to_image(item["signal"][None], 32, 32)[0]
    np.testing.assert_allclose(image.numpy(), written["test_batch"][1] / 255.0, atol=1e-6)
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
    test_image = signal_to_image(dm.dataset("test")[0]["signal"][None], 32, 32)[0].numpy()
    # already 32x32, so the resize to image_size 32 keeps the pixels: the test image is one of the files
    assert min(np.abs(test_image - im / 255.0).max() for im in images) < 1e-6


# ------------------------------------------------------------------------------------ forecasting
FORECAST_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "forecast").rglob("*.yaml"))


def test_every_forecast_config_is_covered() -> None:
    """A small (CPU) and a paper (published sizes) forecasting config per PDE dataset."""
    stems = [(p.parent.name, p.stem) for p in FORECAST_CONFIGS]
    assert sorted(stems) == sorted(
        [("forecast", n) for n in PDE_CONFIGS] + [("paper", n) for n in PDE_CONFIGS]
    )


@pytest.mark.parametrize("path", FORECAST_CONFIGS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_forecast_config_is_consistent(path: Path) -> None:
    """Dynamics geometry/width = the fit config's decoder; the horizon fits in the time window."""
    cfg = load(path)
    fit = load(next(p for p in CONFIGS if p.stem == path.stem))
    dyn = cfg["model"]["dynamics"]["init_args"]
    assert dyn["geometry"] == fit["model"]["decoder"]["init_args"]["geometry"] == PDE_GEOMETRY[path.stem]
    assert dyn["context_dim"] == fit["model"]["decoder"]["init_args"]["context_dim"]
    start, stop = cfg["data"]["init_args"]["time_window"]
    assert cfg["model"]["horizon"] < stop - start  # frames left beyond the horizon for mse_*_out
    assert cfg["data"]["class_path"] == "enf.data.PDETrajectoryDataModule"
    assert cfg["model"]["fit_checkpoint"] == f"runs/{path.stem}/version_0/checkpoints/last.ckpt"


@pytest.mark.parametrize("name", PDE_CONFIGS)
def test_forecast_config_instantiates(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 1 for one step on tiny files, then the small forecasting config builds on its checkpoint."""
    if name == "heated_convection_ball":
        pytest.importorskip(
            "dedalus", reason="the ball generator needs Dedalus (CI installs it and runs this)"
        )
    from enf.training import ForecastingModule

    monkeypatch.chdir(tmp_path)
    tiny = ["--data.init_args.generate_options", json.dumps(TINY_PDE[name])]
    fit_path = next(p for p in CONFIGS if p.stem == name)
    run_lightning_cli(
        ["fit", "--config", str(fit_path), *tiny, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
         "--trainer.enable_progress_bar", "false", "--model.decoder.init_args.hidden_dim", "16",
         "--artifacts.num_train_eval", "1", "--artifacts.num_test_eval", "1"]
    )  # fmt: skip
    ckpt = tmp_path / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"
    path = REPO_CONFIGS / "forecast" / f"{name}.yaml"
    cfg = load(path)
    cli = run_lightning_cli(
        ["--config", str(path), "--trainer.logger", "false", *tiny, "--model.fit_checkpoint", str(ckpt)],
        run=False,
        task="forecast",
    )
    model = cli.model
    assert isinstance(model, ForecastingModule) and model.geometry.name == PDE_GEOMETRY[name]
    dyn = cfg["model"]["dynamics"]["init_args"]
    assert (
        model.dynamics.geometry.name == dyn["geometry"] and model.dynamics.context_dim == dyn["context_dim"]
    )
    stored = model.hparams["dynamics"][
        "init_args"
    ]  # the built field's settings, as the checkpoint keeps them
    assert {k: stored[k] for k in dyn} == dyn
    assert (
        len(model.dynamics.blocks) == dyn["num_layers"]
        and model.dynamics.node_in.out_features == dyn["hidden_dim"]
    )
    assert model.hparams.horizon == cfg["model"]["horizon"] and model.hparams.method == cfg["model"]["method"]
    assert not any(p.requires_grad for p in model.decoder.parameters())  # stage 2: the ENF is frozen
    item = cli.datamodule.dataset("test")[0]
    assert item["signal"].dim() == 3 and item["signal"].shape[0] == TINY_PDE[name]["num_frames"]
    assert model.monitor == ("val/mse_in", "min")
