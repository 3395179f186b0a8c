"""LightningCLI for the ``enf fit|validate|test`` commands.

Every run writes ``runs/<logger name>/version_<n>/`` with ``config.yaml`` (the resolved config),
``checkpoints/`` (``last.ckpt`` + best by ``val/psnr``), TensorBoard events, ``figures/`` and
``metrics.json``. Unknown config keys are errors (jsonargparse).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from enf.training.callbacks import RunArtifacts
from enf.training.fitting_module import FieldFittingModule

__all__ = ["ENFLightningCLI", "run_lightning_cli"]

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "default"},
    },
    # The inner loop needs gradients during validation/test.
    "inference_mode": False,
    "log_every_n_steps": 10,
}


class ENFLightningCLI(LightningCLI):
    """LightningCLI with the run-directory callbacks always on and data sizes linked into the model."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.monitor": "val/psnr",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best",
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        parser.link_arguments("data.num_channels", "model.num_out", apply_on="instantiate")
        parser.link_arguments("data.num_train_signals", "model.num_train_signals", apply_on="instantiate")


def run_lightning_cli(args: list[str]) -> ENFLightningCLI:
    return ENFLightningCLI(
        FieldFittingModule,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        args=args,
        save_config_kwargs={"overwrite": True},
    )
