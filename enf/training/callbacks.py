"""Callbacks that fill a run directory: figures, a flat ``metrics.json``, checkpoints chosen by the task.

They talk to the module only through the :class:`FieldTask` protocol (``evaluate``, ``figures``,
``monitor``) and to the data only through :class:`~enf.data.FieldDataModule`'s evaluation loaders.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from enf.io import write_json_atomic

__all__ = ["FieldTask", "RunArtifacts", "TaskCheckpoint"]

log = logging.getLogger(__name__)


@runtime_checkable
class FieldTask(Protocol):
    """What run-directory callbacks need from a LightningModule."""

    @property
    def monitor(self) -> tuple[str, str]:
        """``(logged metric, "min" | "max")`` selecting the best checkpoint."""

    def evaluate(self, split: str, *, max_samples: int | None = None) -> dict[str, float]:
        """Flat metrics of ``split`` (``num_samples`` among them)."""

    def figures(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Named matplotlib figures of a batch."""

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        """The flat numbers of ``metrics.json`` after fitting (:class:`~enf.training.TaskModule` has a default)."""

    def test_metrics(self, *, num_test_eval: int | None) -> dict[str, float]:
        """The numbers of ``metrics.json`` after ``enf test``."""

    def artifacts(self) -> dict[str, Any]:
        """Extra files of the run directory: ``{name: dict (JSON) | Figure}``."""


def _short(value: float) -> float | int:
    """A metric for the log line: counts as integers, the rest to 4 significant digits."""
    value = float(value)
    return int(value) if value.is_integer() else float(f"{value:.4g}")


def _check_task(pl_module: L.LightningModule) -> FieldTask:
    if not isinstance(pl_module, FieldTask):
        raise TypeError(
            f"{type(pl_module).__name__} does not implement enf.training.FieldTask "
            "(monitor, evaluate(split), figures(batch), run_metrics, test_metrics, artifacts), which the enf "
            "callbacks need; subclass enf.training.TaskModule for the defaults"
        )
    return pl_module


def _check_datamodule(trainer: L.Trainer):
    from enf.data.modules.field import FieldDataModule

    dm = trainer.datamodule
    if not isinstance(dm, FieldDataModule):
        raise TypeError(
            f"the enf callbacks need an enf.data.FieldDataModule, got {type(dm).__name__}; "
            "wrap your dataset in a FieldDataModule subclass"
        )
    return dm


class TaskCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``monitor="auto"`` is the metric the task declares (``pl_module.monitor``).

    With ``every_n_train_steps``, ``last.ckpt`` is written on schedule even before the monitored metric
    exists (Lightning holds every save back until the first validation, so a run killed before it lost
    everything); ``best.ckpt`` still waits for the metric.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.monitor == "auto":
            metric, mode = _check_task(pl_module).monitor
            self.monitor = metric
            self._ModelCheckpoint__init_monitor_mode(mode)
        super().setup(trainer, pl_module, stage)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every = self._every_n_train_steps
        if not self.save_last or every < 1 or trainer.global_step % every != 0:
            return
        if self._should_skip_saving_checkpoint(trainer):
            return  # saved at this step already (the metric existed), or not fitting
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RunArtifacts(L.Callback):
    """Save figures to ``<run>/figures/``, final metrics to ``<run>/metrics.json``, and a checkpoint on Ctrl-C.

    Figures, for every figure the task draws (``reconstruction``: truth / reconstruction / error with the
    latents): after each validation ``val_<name>.png`` (the latest, replaced) and ``best_<name>.png`` (the
    validation with the best monitored metric so far), ``test_<name>.png`` after ``enf test`` and
    ``final_<name>.png`` at the end of fitting. TensorBoard gets one image tag per figure and stage
    (``val/<name>``, ``final/<name>``, ``test/<name>``) at the global step, so its step slider runs through
    the validations.

    ``metrics.json`` (numbers only): what the task's ``run_metrics`` returns (field fitting:
    ``<metric>_<split>`` for every metric of the task, ``mse``, ``rel_l2`` and, with a known data range,
    ``psnr``, on the test split and on up to ``num_train_eval`` training signals encoded like test signals;
    ``equivariance_error`` (test); ``num_test``, ``num_train_eval``; forecasting: see
    :class:`~enf.training.ForecastingModule`), plus ``fit_time_s``, ``global_step``, ``epoch``,
    ``num_parameters``. The task's ``artifacts`` (JSON files, figures) are written next to it.

    An interrupted fit (Ctrl-C or SIGTERM) leaves ``checkpoints/interrupted.ckpt`` to resume from.

    Args:
        num_train_eval: training signals to evaluate.
        num_test_eval: test signals to evaluate (``None``: all).
    """

    def __init__(self, *, num_train_eval: int = 256, num_test_eval: int | None = None) -> None:
        if num_train_eval < 1:
            raise ValueError(f"num_train_eval must be >= 1, got {num_train_eval}")
        if num_test_eval is not None and num_test_eval < 1:
            raise ValueError(f"num_test_eval must be None (all) or >= 1, got {num_test_eval}")
        self.num_train_eval = num_train_eval
        self.num_test_eval = num_test_eval
        self._t0: float | None = None
        self._plot_batch: dict[str, Any] | None = None
        self._best: float | None = None

    @staticmethod
    def run_dir(trainer: L.Trainer) -> Path:
        """The run directory, found without a collective call: ``trainer.log_dir`` broadcasts under DDP, and
        these hooks write on rank 0 only, so calling it there would deadlock."""
        logger = trainer.logger
        path = None if logger is None else (getattr(logger, "log_dir", None) or logger.save_dir)
        return Path(path or trainer.default_root_dir)

    # ----------------------------------------------------------------------------------- figures
    def _figures(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str, *, best: bool = False
    ) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        task = _check_task(pl_module)
        if self._plot_batch is None:
            loader = _check_datamodule(trainer).eval_dataloader("test", max_samples=8)
            self._plot_batch = next(iter(loader), None)
        if self._plot_batch is None:
            return
        from enf.plotting import save_figure

        folder = self.run_dir(trainer) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        for name, fig in task.figures(self._plot_batch).items():
            for logger in trainer.loggers:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_figure"):
                    experiment.add_figure(
                        f"{prefix}/{name}", fig, global_step=trainer.global_step, close=False
                    )
            if best:
                fig.savefig(folder / f"best_{name}.png", dpi=110)
            save_figure(fig, folder / f"{prefix}_{name}.png")

    def _improved(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """Whether this validation's monitored metric is the best so far (the task's ``monitor``)."""
        metric, mode = _check_task(pl_module).monitor
        value = trainer.callback_metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            return False
        value = float(value)
        if self._best is not None and (value >= self._best if mode == "min" else value <= self._best):
            return False
        self._best = value
        return True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._figures(trainer, pl_module, "val", best=self._improved(trainer, pl_module))

    # --------------------------------------------------------------------------------- lifecycle
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _check_task(pl_module)
        _check_datamodule(trainer)
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit_time = time.perf_counter() - self._t0 if self._t0 is not None else math.nan
        # ModelCheckpoint may keep a last.ckpt from the last validation (a run stopped by max_steps
        # mid-epoch): overwrite it with the final model, which metrics.json describes. All ranks call this.
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and getattr(ckpt_cb, "save_last", False) and ckpt_cb.dirpath:
            trainer.save_checkpoint(str(Path(ckpt_cb.dirpath) / "last.ckpt"))
        self._write_metrics(trainer, pl_module, extra={"fit_time_s": fit_time})
        self._figures(trainer, pl_module, "final")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._figures(trainer, pl_module, "test")
        self._write_metrics(trainer, pl_module, extra={}, with_train=False)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Ctrl-C or SIGTERM (what SLURM and most schedulers send) during fitting: save
        ``checkpoints/interrupted.ckpt`` (not labelled best) to resume from."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        ckpt_cb = trainer.checkpoint_callback
        folder = Path(ckpt_cb.dirpath) if ckpt_cb is not None and ckpt_cb.dirpath else self.run_dir(trainer)
        path = folder / "interrupted.ckpt"
        trainer.save_checkpoint(str(path))
        if trainer.is_global_zero:
            log.warning(
                "%s at step %d: saved %s (resume with --ckpt_path %s)",
                "terminated (SIGTERM)" if isinstance(exception, SIGTERMException) else "interrupted",
                trainer.global_step,
                path,
                path,
            )

    # ----------------------------------------------------------------------------------- metrics
    def _write_artifacts(self, trainer: L.Trainer, artifacts: dict[str, Any]) -> None:
        """JSON files into the run directory, figures into ``figures/`` (and TensorBoard)."""
        if not artifacts:
            return
        from matplotlib.figure import Figure

        from enf.plotting import save_figure

        for name, value in artifacts.items():
            if isinstance(value, Figure):
                for logger in trainer.loggers:
                    experiment = getattr(logger, "experiment", None)
                    if hasattr(experiment, "add_figure"):
                        experiment.add_figure(
                            f"final/{Path(name).stem}", value, global_step=trainer.global_step, close=False
                        )
                folder = self.run_dir(trainer) / "figures"
                folder.mkdir(parents=True, exist_ok=True)
                save_figure(value, folder / name)
            else:
                write_json_atomic(self.run_dir(trainer) / name, value)

    def _write_metrics(self, trainer, pl_module, *, extra: dict, with_train: bool = True) -> None:
        if not trainer.is_global_zero:
            return
        task = _check_task(pl_module)
        _check_datamodule(trainer)
        was_training = pl_module.training
        pl_module.eval()
        try:
            if with_train:
                metrics = task.run_metrics(
                    num_train_eval=self.num_train_eval, num_test_eval=self.num_test_eval
                )
            else:
                metrics = task.test_metrics(num_test_eval=self.num_test_eval)
            artifacts = task.artifacts()
        finally:
            pl_module.train(was_training)
        metrics.update(
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
            num_parameters=sum(p.numel() for p in pl_module.parameters()),
            **extra,
        )
        path = self.run_dir(trainer) / "metrics.json"
        write_json_atomic(path, {k: float(v) for k, v in sorted(metrics.items())})
        self._write_artifacts(trainer, artifacts)
        log.info("wrote %s: %s", path, {k: _short(v) for k, v in sorted(metrics.items())})
