"""LightningCLI for the ``enf fit|validate|test`` commands.

Every run writes ``runs/<logger name>/version_<n>/`` with ``config.yaml`` (the resolved config),
``checkpoints/`` (``last.ckpt`` + ``best.ckpt`` by the metric the task declares), TensorBoard events,
``figures/`` and ``metrics.json``. Unknown config keys and abbreviated keys are errors (jsonargparse).

Shared defaults live here (:data:`TRAINER_DEFAULTS`: TensorBoard logger under ``runs/`` named after the
config file, or the dataset without one, no inference mode, log every 10 steps), so per-dataset configs hold only what differs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI

from enf.training.callbacks import RunArtifacts, TaskCheckpoint
from enf.training.checkpoints import AtomicCheckpointIO, read_checkpoint
from enf.training.classification_module import ClassificationModule
from enf.training.fitting_module import FieldFittingModule
from enf.training.forecasting_module import ForecastingModule
from enf.training.shape_module import ShapeModule

__all__ = ["TRAINER_DEFAULTS", "ENFLightningCLI", "run_lightning_cli"]

log = logging.getLogger(__name__)

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # "auto": the task's run_prefix + the config file's stem, else the dataset name (runs/mnist/,
        # runs/mnist_se2/, runs/forecast_diffusion_plane/, runs/shape_mnist_plain/, ...)
        "init_args": {"save_dir": "runs", "name": "auto"},
    },
    # The inner loop needs gradients during validation/test.
    "inference_mode": False,
    "log_every_n_steps": 10,
    "devices": 1,  # multi-GPU: --trainer.devices N --trainer.strategy ddp
    "gradient_clip_val": 1.0,
}

# Filled from the data module at instantiation: never compared when resuming.
LINKED = ("field", "num_train_signals", "decoder.init_args.num_out")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if hasattr(tree, "as_dict"):
        tree = tree.as_dict()
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if str(key).startswith("_"):
            continue
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class Trainer(L.Trainer):
    """``lightning.Trainer`` whose ``limit_*_batches`` read an integer as a number of batches.

    Lightning annotates them ``Union[float, int, None]``, so the config parser turned ``limit_val_batches: 1``
    into the fraction ``1.0``: every batch instead of one. Here ``int`` comes first; ``0.25`` is still a
    fraction. Everything else is Lightning's."""

    def __init__(
        self,
        *,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )


class ENFLightningCLI(LightningCLI):
    """LightningCLI with the run-directory callbacks always on and data sizes linked into the model."""

    def add_arguments_to_parser(self, parser) -> None:
        # checkpoint: the best by the task's metric (val/psnr for images, val/mse for PDE frames, val/mse_in
        # for forecasting)
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.monitor": "auto",  # the task's metric: val/psnr for images, val/mse otherwise
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best",
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        if not issubclass(self.model_class, FieldFittingModule):
            return  # a later stage builds on a fit checkpoint: nothing to link from the data
        parser.link_arguments("data.num_channels", "model.decoder.init_args.num_out", apply_on="instantiate")
        parser.link_arguments("data.num_train_signals", "model.num_train_signals", apply_on="instantiate")
        parser.link_arguments("data.field_spec_dict", "model.field", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and getattr(init_args, "name", None) == "auto":
            init_args.name = f"{getattr(self.model_class, 'run_prefix', '')}{self._run_name(config)}"

    @staticmethod
    def _run_name(config) -> str:
        """The stem of the config file (``configs/fit/mnist_se2.yaml`` -> ``mnist_se2``), else the data set's name.

        A run's own resolved ``config.yaml`` already carries its logger name, so ``config`` stems are skipped.
        """
        files = [Path(str(getattr(c, "relative", c))) for c in (config.get("config") or [])]
        stems = [f.stem for f in files if f.suffix in (".yaml", ".yml") and f.stem != "config"]
        if stems:
            return stems[-1]
        data_args = getattr(config.data, "init_args", None)
        return str(getattr(data_args, "dataset", None) or "default")

    def _resolve_last(self, config, *, kind: str = "last") -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` / ``interrupted.ckpt`` of this run name's folders
        (``runs/<name>/version_*/checkpoints/``), or an error (``kind="best"``: the newest ``best.ckpt``).
        Lightning would look in the new run's empty folder and silently start again at step 0, or validate
        and test an untrained model."""
        logger = config.trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        save_dir = Path(str(getattr(init_args, "save_dir", None) or "runs"))
        name = getattr(init_args, "name", None) or "default"
        if name == "auto":
            name = f"{getattr(self.model_class, 'run_prefix', '')}{self._run_name(config)}"
        found = [
            p
            for pattern in (
                ("version_*/checkpoints/best.ckpt",)
                if kind == "best"
                else ("version_*/checkpoints/last.ckpt", "version_*/checkpoints/interrupted.ckpt")
            )
            for p in (save_dir / name).glob(pattern)
            if p.is_file() and p.stat().st_size > 0
        ]
        if not found:
            sys.stderr.write(
                f"enf: --ckpt_path {kind}: no checkpoint under {save_dir / name}/version_*/checkpoints/ to load; "
                "give a checkpoint file (--ckpt_path runs/.../last.ckpt) or start without --ckpt_path.\n"
            )
            raise SystemExit(2)
        newest = max(found, key=lambda p: p.stat().st_mtime)
        log.info("--ckpt_path %s: loading %s", kind, newest)
        config.ckpt_path = str(newest)

    def _parse_ckpt_path(self) -> None:
        """Resuming (``--ckpt_path``) uses the checkpoint's model settings; refuse a config that differs.

        Lightning would silently replace the model section by the checkpoint's hyperparameters, dropping
        command-line overrides. Here a difference is an error naming every differing value.
        """
        if not self.config.get("subcommand"):
            return
        config = self.config[self.config.subcommand]
        if config.get("ckpt_path") == "last" or (
            config.get("ckpt_path") == "best" and self.config.subcommand in ("validate", "test")
        ):
            self._resolve_last(config, kind=config.get("ckpt_path"))
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
            return
        hparams = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        stored, given = _flatten(hparams), _flatten(config.model)
        differ = [
            (key, stored[key], given[key])
            for key in sorted(set(stored) & set(given))
            if not key.startswith(LINKED) and not _same(stored[key], given[key])
        ]
        if differ:
            lines = "\n".join(f"  model.{k}: checkpoint {a!r}, given {b!r}" for k, a, b in differ)
            sys.stderr.write(
                f"enf: --ckpt_path {ckpt_path} was trained with other model settings than this config and "
                f"command line:\n{lines}\nResume with the run's own config (runs/.../config.yaml) and no model "
                "overrides, or start a new run without --ckpt_path.\n"
            )
            raise SystemExit(2)
        super()._parse_ckpt_path()


TASKS = {
    "fit": FieldFittingModule,
    "forecast": ForecastingModule,
    "shape": ShapeModule,
    "classify": ClassificationModule,
}


def run_lightning_cli(args: list[str] | None, *, run: bool = True, task: str = "fit") -> ENFLightningCLI:
    """``enf fit|validate|test`` (``task="fit"``, field fitting), ``enf forecast fit|validate|test``
    (``task="forecast"``), ``enf shape fit|validate|test`` (``task="shape"``) or ``enf classify fit|validate|test``
    (``task="classify"``); ``run=False``: parse and
    instantiate only, ``args`` without a subcommand."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    return ENFLightningCLI(
        TASKS[task],
        trainer_class=Trainer,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        args=args,
        run=run,
        parser_kwargs={"allow_abbrev": False},
        save_config_kwargs={"overwrite": True},
    )
