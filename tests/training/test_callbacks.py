"""RunArtifacts: where it writes, and that it never issues a collective call from rank 0 alone."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import pytest
from lightning.pytorch.loggers import TensorBoardLogger

from enf.training import RunArtifacts


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


class _Module(L.LightningModule):
    latest_figure = None


def test_save_figure_writes_once_and_drops_sanity_check_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = trainer(tmp_path, TensorBoardLogger(save_dir=str(tmp_path / "runs"), name="exp", version=0))
    module, callback = _Module(), RunArtifacts()
    figures = tmp_path / "runs" / "exp" / "version_0" / "figures"

    fig = plt.figure()
    module.latest_figure = fig
    monkeypatch.setattr(type(t), "sanity_checking", property(lambda self: True))
    callback._save_figure(t, module, "sanity.png")
    assert module.latest_figure is None and not plt.fignum_exists(fig.number) and not figures.exists()

    monkeypatch.setattr(type(t), "sanity_checking", property(lambda self: False))
    module.latest_figure = plt.figure()
    callback._save_figure(t, module, "val_epoch000.png")
    callback._save_figure(t, module, "val_epoch001.png")  # no new figure: nothing written
    assert sorted(p.name for p in figures.iterdir()) == ["val_epoch000.png"]
    assert module.latest_figure is None
