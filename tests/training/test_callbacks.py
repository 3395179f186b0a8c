"""RunArtifacts: where it writes, and that it never issues a collective call from rank 0 alone."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from enf.training import FieldTask, RunArtifacts, TaskModule


def trainer(tmp_path: Path, logger) -> L.Trainer:
    return L.Trainer(
        logger=logger, default_root_dir=str(tmp_path / "root"), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip


def test_run_dir_is_the_logger_version_dir_without_a_broadcast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = trainer(tmp_path, TensorBoardLogger(save_dir=str(tmp_path / "runs"), name="exp", version=3))

    def no_collective(*args, **kwargs):  # under DDP only rank 0 gets here: a broadcast would deadlock
        raise AssertionError("RunArtifacts.run_dir must not call a collective")

    monkeypatch.setattr(t.strategy, "broadcast", no_collective)
    assert RunArtifacts.run_dir(t) == tmp_path / "runs" / "exp" / "version_3"


def test_run_dir_without_logger_is_the_default_root(tmp_path: Path) -> None:
    assert RunArtifacts.run_dir(trainer(tmp_path, False)) == tmp_path / "root"


class _Task(TaskModule):
    """The smallest FieldTask: two figures, fixed metrics (run_metrics, artifacts: TaskModule's defaults)."""

    monitor = ("val/mse", "min")

    def evaluate(self, split, *, max_samples=None):
        return {"mse": 0.5, "num_samples": 3.0}

    def figures(self, batch):
        return {"reconstruction": plt.figure(), "latents": plt.figure()}


class _Data:
    def eval_dataloader(self, split, *, max_samples=None):
        return [{"coords": None}]


def test_figures_go_through_the_protocol_once_per_name_and_skip_sanity_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = trainer(tmp_path, TensorBoardLogger(save_dir=str(tmp_path / "runs"), name="exp", version=0))
    callback, figures = RunArtifacts(), tmp_path / "runs" / "exp" / "version_0" / "figures"
    monkeypatch.setattr("enf.training.callbacks._check_datamodule", lambda trainer: _Data())
    before = len(plt.get_fignums())
    monkeypatch.setattr(type(t), "sanity_checking", property(lambda self: True))
    callback._figures(t, _Task(), "val")
    assert not figures.exists()
    monkeypatch.setattr(type(t), "sanity_checking", property(lambda self: False))
    callback._figures(t, _Task(), "val")
    assert sorted(p.name for p in figures.iterdir()) == ["val_latents.png", "val_reconstruction.png"]
    assert len(plt.get_fignums()) == before  # every pyplot figure closed after saving


def test_validation_figures_keep_the_latest_and_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file per figure for the latest validation, one for the best by the task's monitor (min val/mse);
    a validation that does not improve leaves best_*.png alone."""
    t = trainer(tmp_path, TensorBoardLogger(save_dir=str(tmp_path / "runs"), name="exp", version=0))
    callback, figures = RunArtifacts(), tmp_path / "runs" / "exp" / "version_0" / "figures"
    monkeypatch.setattr("enf.training.callbacks._check_datamodule", lambda trainer: _Data())
    monkeypatch.setattr(type(t.state), "fn", property(lambda self: "fit"))
    written = {}
    for mse in (0.5, 0.7, 0.3):
        t.callback_metrics["val/mse"] = torch.tensor(mse)
        callback.on_validation_end(t, _Task())
        written[mse] = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()}
    assert sorted(written[0.3]) == [
        "best_latents.png", "best_reconstruction.png", "val_latents.png", "val_reconstruction.png",
    ]  # fmt: skip
    assert written[0.7]["best_latents.png"] == written[0.5]["best_latents.png"]  # 0.7 is worse: kept
    assert written[0.7]["val_latents.png"] != written[0.5]["val_latents.png"]
    assert written[0.3]["best_latents.png"] != written[0.7]["best_latents.png"]
    assert callback._best == pytest.approx(0.3)


def test_a_module_without_the_protocol_is_refused(tmp_path: Path) -> None:
    t = trainer(tmp_path, False)
    with pytest.raises(TypeError, match="does not implement enf.training.FieldTask"):
        RunArtifacts().on_fit_start(t, L.LightningModule())
    assert isinstance(_Task(), FieldTask)


def test_artifacts_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="num_train_eval must be >= 1"):
        RunArtifacts(num_train_eval=0)
    with pytest.raises(ValueError, match="num_test_eval"):
        RunArtifacts(num_test_eval=0)
