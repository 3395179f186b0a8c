"""The shared base of the task modules: what the run-directory callbacks call, with default behaviour.

A task (field fitting, forecasting, ...) is one LightningModule. Besides Lightning's hooks it offers the
:class:`~enf.training.callbacks.FieldTask` protocol: ``monitor``, ``evaluate(split)``, ``figures(batch)``,
and, through this base class, ``run_metrics`` (the flat ``metrics.json`` numbers) and ``artifacts`` (extra
files of the run directory).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor
from tqdm import tqdm

__all__ = ["TaskModule", "lr_factor", "move_batch"]


def move_batch(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The tensors of ``batch`` on ``device`` (other entries unchanged)."""
    return {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}


def lr_factor(step: int, *, warmup: int, total: float | None) -> float:
    """Learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then constant (``total``
    ``None``) or a cosine decay to 0 at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class TaskModule(L.LightningModule):
    """Base class of the enf task modules (subclasses implement ``monitor``, ``evaluate``, ``figures``)."""

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        """Final numbers of a run: ``<metric>_train`` on up to ``num_train_eval`` training signals,
        ``<metric>_test`` on the test split (``num_test_eval``: at most that many), ``equivariance_error``
        (test), ``num_train_eval`` and ``num_test``."""
        metrics: dict[str, float] = {}
        train = self.evaluate("train", max_samples=num_train_eval)
        train.pop("equivariance_error", None)
        metrics["num_train_eval"] = train.pop("num_samples")
        metrics.update({self.metric_key(k, "train"): v for k, v in train.items()})
        metrics.update(self.test_metrics(num_test_eval=num_test_eval))
        return metrics

    def test_metrics(self, *, num_test_eval: int | None) -> dict[str, float]:
        """``<metric>_test``, ``equivariance_error`` (and ``manifold_error`` where evaluated) and ``num_test``
        (what ``enf test`` writes)."""
        test = self.evaluate("test", max_samples=num_test_eval)
        metrics = {"num_test": test.pop("num_samples")}
        for key in ("equivariance_error", "manifold_error"):
            if key in test:
                metrics[key] = test.pop(key)
        metrics.update({self.metric_key(k, "test"): v for k, v in test.items()})
        return metrics

    def metric_key(self, name: str, split: str) -> str:
        """The ``metrics.json`` key of metric ``name`` of ``evaluate(split)``: ``<name>_<split>``."""
        return f"{name}_{split}"

    def attached_datamodule(self, what: str) -> Any:
        """The data module of the trainer this task is attached to; ``ValueError`` saying ``what`` needs it."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            raise ValueError(f"{what} needs a trainer with a datamodule")
        return dm

    def progress(self, iterable, *, desc: str):
        """``iterable`` behind a progress bar (stderr) when the attached trainer shows one
        (``enable_progress_bar``) and this is rank 0: the final evaluation passes take minutes."""
        trainer = self._trainer
        shown = trainer is not None and trainer.progress_bar_callback is not None and trainer.is_global_zero
        return tqdm(iterable, desc=desc, disable=not shown, leave=False, dynamic_ncols=True)

    def artifacts(self) -> dict[str, Any]:
        """Extra run-directory files after :meth:`run_metrics`: ``{file name: dict (JSON) | Figure}``."""
        return {}
