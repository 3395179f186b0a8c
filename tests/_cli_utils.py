"""What the command-line tests share: the quick-start config and tiny overrides (4 latents, hidden 16,
3 steps on 32 digits), so no test trains for long."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MNIST = str(REPO / "configs" / "fit" / "mnist.yaml")
TINY = [
    "--trainer.enable_progress_bar", "false",
    "--trainer.max_steps", "3",
    "--trainer.limit_val_batches", "1",
    "--data.init_args.num_train", "32",
    "--data.init_args.num_test", "8",
    "--data.init_args.batch_size", "8",
    "--model.fitter.init_args.num_latents", "4",
    "--model.decoder.init_args.hidden_dim", "16",
    "--model.decoder.init_args.context_dim", "8",
    "--artifacts.num_train_eval", "8",
]  # fmt: skip
