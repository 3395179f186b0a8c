"""Callbacks that fill a run directory: figures and a flat ``metrics.json``."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L

from enf.io import write_json_atomic

__all__ = ["RunArtifacts"]

log = logging.getLogger(__name__)


class RunArtifacts(L.Callback):
    """Save figures to ``<run>/figures/`` and final metrics to ``<run>/metrics.json``.

    Figures: ``val_epoch<NNN>.png`` after each validation, ``test.png`` after ``enf test`` and ``final.png``
    (test reconstructions of the final model) at the end of fitting.

    ``metrics.json`` (numbers only): ``psnr_train``, ``mse_train`` (on up to ``num_train_eval`` training
    signals, encoded like test signals), ``psnr_test``, ``mse_test``, ``equivariance_error`` (test data),
    ``num_test``, ``num_train_eval``, ``fit_time_s``, ``global_step``, ``epoch``, ``num_parameters``.

    Args:
        num_train_eval: training signals to evaluate for ``psnr_train``.
        num_test_eval: test signals to evaluate (``None``: all).
    """

    def __init__(self, *, num_train_eval: int = 256, num_test_eval: int | None = None) -> None:
        self.num_train_eval = num_train_eval
        self.num_test_eval = num_test_eval
        self._t0: float | None = None

    @staticmethod
    def run_dir(trainer: L.Trainer) -> Path:
        """The run directory, found without a collective call: ``trainer.log_dir`` broadcasts under DDP, and
        these hooks write on rank 0 only, so calling it there would deadlock."""
        logger = trainer.logger
        path = None if logger is None else (getattr(logger, "log_dir", None) or logger.save_dir)
        return Path(path or trainer.default_root_dir)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    # Figures are saved in on_validation_end/on_test_end: Lightning calls the callbacks' *_epoch_end hooks
    # before the module's, so the module's figure of the current epoch only exists from here on.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_figure(trainer, pl_module, f"val_epoch{trainer.current_epoch:03d}.png")

    def _save_figure(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> None:
        fig = getattr(pl_module, "latest_figure", None)
        if fig is None:
            return
        pl_module.latest_figure = None
        if not trainer.is_global_zero or trainer.sanity_checking:
            import matplotlib.pyplot as plt

            plt.close(fig)
            return
        from enf.plotting import save_figure

        folder = self.run_dir(trainer) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        save_figure(fig, folder / name)

    def _final_figure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``figures/final.png``: test reconstructions of the final model (also when no validation ran)."""
        dm = trainer.datamodule
        if not trainer.is_global_zero or dm is None or not hasattr(dm, "eval_dataloader"):
            return
        if not hasattr(pl_module, "_eval_step"):
            return
        batch = next(iter(dm.eval_dataloader("test")), None)
        if batch is None or "image" not in batch:
            return
        batch = {k: (v.to(pl_module.device) if hasattr(v, "to") else v) for k, v in batch.items()}
        was_training = pl_module.training
        pl_module.eval()
        try:
            pl_module._plot_batch = None
            pl_module._eval_step(batch, "final")
        finally:
            pl_module._eval_outputs.pop("final", None)
            pl_module.train(was_training)
        pl_module._plot_batch_to_loggers("final")
        self._save_figure(trainer, pl_module, "final.png")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit_time = time.perf_counter() - self._t0 if self._t0 is not None else math.nan
        # ModelCheckpoint may keep a last.ckpt from the last validation (a run stopped by max_steps
        # mid-epoch): overwrite it with the final model, which metrics.json describes. All ranks call this.
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and getattr(ckpt_cb, "save_last", False) and ckpt_cb.dirpath:
            trainer.save_checkpoint(str(Path(ckpt_cb.dirpath) / "last.ckpt"))
        self._write_metrics(trainer, pl_module, extra={"fit_time_s": fit_time})
        self._final_figure(trainer, pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_figure(trainer, pl_module, "test.png")
        self._write_metrics(trainer, pl_module, extra={}, with_train=False)

    def _write_metrics(self, trainer, pl_module, *, extra: dict, with_train: bool = True) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "eval_dataloader"):
            log.warning(
                "RunArtifacts: the datamodule has no eval_dataloader(split); metrics.json not written"
            )
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            metrics: dict[str, float] = {}
            if with_train:
                train = pl_module.evaluate(dm.eval_dataloader("train"), max_samples=self.num_train_eval)
                metrics.update(
                    psnr_train=train["psnr"], mse_train=train["mse"], num_train_eval=train["num_samples"]
                )
            test = pl_module.evaluate(dm.eval_dataloader("test"), max_samples=self.num_test_eval)
            metrics.update(
                psnr_test=test["psnr"],
                mse_test=test["mse"],
                equivariance_error=test["equivariance_error"],
                num_test=test["num_samples"],
            )
        finally:
            pl_module.train(was_training)
        metrics.update(
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
            num_parameters=sum(p.numel() for p in pl_module.parameters()),
            **extra,
        )
        path = self.run_dir(trainer) / "metrics.json"
        write_json_atomic(path, {k: float(v) for k, v in metrics.items()})
        log.info("wrote %s: %s", path, {k: round(float(v), 4) for k, v in metrics.items()})
