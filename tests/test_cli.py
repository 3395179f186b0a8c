"""The ``enf`` command line end to end on tiny MNIST runs: run directory, metrics, resume, encode, errors.

Every run is tiny (4 latents, hidden 16, 3 optimiser steps on 32 digits) and writes under ``tmp_path/runs``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _cli_utils import MNIST, REPO, TINY  # noqa: E402

from enf.cli import main
from enf.data import read_h5
from enf.training import load_fit_checkpoint

METRIC_KEYS = {
    "psnr_train", "mse_train", "rel_l2_train", "num_train_eval", "psnr_test", "mse_test", "rel_l2_test",
    "equivariance_error", "num_test", "fit_time_s", "global_step", "epoch", "num_parameters",
}  # fmt: skip


def fit(*extra: str) -> None:
    main(["fit", "--config", MNIST, *TINY, *extra])


def read_metrics(run: Path) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    return metrics


def scalar_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny ``enf fit --config configs/mnist.yaml`` run shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("mnist_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        fit("--trainer.log_every_n_steps", "1")
    torch.set_num_threads(threads)
    return root / "runs" / "mnist" / "version_0"


def test_fit_writes_a_complete_run_directory(mnist_run: Path, capsys: pytest.CaptureFixture) -> None:
    run = mnist_run
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    # the resolved config re-parses through the CLI and holds the command-line overrides
    with pytest.raises(SystemExit) as exc:
        from enf.cli.lightning import run_lightning_cli

        run_lightning_cli(["fit", "--config", str(run / "config.yaml"), "--print_config"])
    assert exc.value.code in (0, None)
    reparsed = yaml.safe_load(capsys.readouterr().out)
    assert reparsed["model"]["fitter"]["init_args"]["num_latents"] == 4
    assert reparsed["model"]["decoder"]["init_args"]["context_dim"] == 8
    assert reparsed["data"]["init_args"]["num_train"] == 32
    assert reparsed["trainer"]["max_steps"] == 3
    assert (run / "checkpoints" / "last.ckpt").is_file()
    events = list(run.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert scalar_steps(run, "train/loss") == [0, 1, 2]  # log_every_n_steps 1: one scalar per step
    # no validation epoch completed in 3 of 4 steps: the final reconstructions are still drawn
    assert [p.name for p in (run / "figures").glob("*.png")] == ["final_reconstruction.png"]

    metrics = read_metrics(run)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["global_step"] == 3
    assert metrics["num_test"] == 8 and metrics["num_train_eval"] == 8
    assert 0 < metrics["mse_test"] < 1 and 0 < metrics["mse_train"] < 1
    assert metrics["psnr_test"] > 0 and metrics["psnr_train"] > 0
    assert metrics["equivariance_error"] < 1e-6  # translation2d, measured in float64
    fit_ckpt = load_fit_checkpoint(run / "checkpoints" / "last.ckpt")
    assert fit_ckpt.fitter.num_latents == 4 and fit_ckpt.geometry.name == "translation2d"
    assert fit_ckpt.decoder.context_dim == 8 and fit_ckpt.field_spec.kind == "image"
    assert metrics["num_parameters"] == sum(p.numel() for p in fit_ckpt.module.parameters())
    # the loaded decoder + fitter reproduce the run's test metric (what a stage-2 task builds on)
    dm = fit_ckpt.module  # evaluate with the run's data, reloaded from its config
    from enf.training.run_folder import load_datamodule_from_run

    loader = load_datamodule_from_run(run / "config.yaml").eval_dataloader("test")
    again = dm.evaluate("test", loader=loader)
    assert again["mse"] == pytest.approx(metrics["mse_test"], rel=1e-4)


def test_absolute2d_equivariance_error_is_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control of the metric: the non-equivariant geometry must show a clear error."""
    monkeypatch.chdir(tmp_path)
    fit("--model.decoder.init_args.geometry", "absolute2d")
    metrics = read_metrics(tmp_path / "runs" / "mnist" / "version_0")
    assert metrics["equivariance_error"] > 1e-3


@pytest.fixture(scope="module")
def resumed_run(mnist_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mnist_run`` resumed from its last.ckpt (3 steps) up to 5 steps, in a fresh directory."""
    root = tmp_path_factory.mktemp("resumed_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        ckpt = mnist_run / "checkpoints" / "last.ckpt"
        fit("--ckpt_path", str(ckpt), "--trainer.max_steps", "5", "--trainer.log_every_n_steps", "1")
    torch.set_num_threads(threads)
    return root / "runs" / "mnist" / "version_0"


def test_resume_continues_from_the_checkpoint(resumed_run: Path) -> None:
    metrics = read_metrics(resumed_run)
    assert metrics["global_step"] == 5
    # a restart would have trained (and logged) steps 0..4; the resumed run only steps 3 and 4
    assert scalar_steps(resumed_run, "train/loss") == [3, 4]


def test_last_checkpoint_holds_the_final_model(resumed_run: Path) -> None:
    """A run stopped by max_steps mid-epoch after a validation: last.ckpt is still the final model."""
    ckpt = torch.load(resumed_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == read_metrics(resumed_run)["global_step"] == 5


def test_test_command_reproduces_the_final_metrics(
    mnist_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``enf test --ckpt_path last.ckpt``: test.png, and test metrics equal to the final fit metrics."""
    monkeypatch.chdir(tmp_path)
    main(["test", "--config", MNIST, *TINY, "--ckpt_path", str(mnist_run / "checkpoints" / "last.ckpt")])
    run = tmp_path / "runs" / "mnist" / "version_0"
    assert [p.name for p in (run / "figures").glob("*.png")] == ["test_reconstruction.png"]
    metrics, fitted = read_metrics(run), read_metrics(mnist_run)
    assert "psnr_train" not in metrics and metrics["num_test"] == 8
    for key in ("psnr_test", "mse_test"):
        assert metrics[key] == pytest.approx(fitted[key], rel=1e-4), key
    assert metrics["equivariance_error"] < 1e-6


def test_encode_writes_latents_consistent_with_metrics(mnist_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "lat.h5"
    ckpt = mnist_run / "checkpoints" / "last.ckpt"
    main(["encode", "--ckpt", str(ckpt), "--split", "test", "--out", str(out)])
    arrays, attrs = read_h5(out)
    assert arrays["poses"].shape == (8, 4, 2)
    assert arrays["context"].shape == (8, 4, 8)
    assert arrays["window"].shape == (8, 4, 1)
    np.testing.assert_array_equal(arrays["index"], np.arange(8))
    assert np.isfinite(arrays["psnr"]).all() and (arrays["window"] > 0).all()
    assert attrs["mean_psnr"] == pytest.approx(float(arrays["psnr"].mean()), rel=1e-6)
    assert attrs["geometry"] == "translation2d" and attrs["split"] == "test" and attrs["pose_dim"] == 2
    # same model, same test signals, same inner loop as the final evaluation of the run
    metrics = read_metrics(mnist_run)
    assert float(arrays["psnr"].mean()) == pytest.approx(metrics["psnr_test"], rel=1e-4)
    assert float(arrays["mse"].mean()) == pytest.approx(metrics["mse_test"], rel=1e-4)
    np.testing.assert_allclose(arrays["psnr"], 10 * np.log10(1 / np.maximum(arrays["mse"], 1e-12)), atol=0.5)


def test_encode_missing_checkpoint_exits(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["encode", "--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "x.h5")])
    assert "nope.ckpt" in str(exc.value.code)
    assert not (tmp_path / "x.h5").exists()


def test_unknown_key_on_command_line_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        fit("--model.not_a_key", "3")
    assert exc.value.code not in (0, None)
    assert "not_a_key" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unknown_key_in_yaml_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load(Path(MNIST).read_text())
    cfg["model"]["bogus_setting"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(path), *TINY])
    assert exc.value.code not in (0, None)
    assert "bogus_setting" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_root_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing"
    with pytest.raises((FileNotFoundError, SystemExit)) as exc:
        fit("--data.init_args.dataset", "cifar10", "--data.init_args.root", str(missing))
    message = str(exc.value) + capsys.readouterr().err
    assert str(missing) in message


def test_usage_and_unknown_command(capsys: pytest.CaptureFixture) -> None:
    main([])
    out = capsys.readouterr().out
    assert "enf fit|validate|test" in out and "enf encode" in out
    main(["--help"])
    assert capsys.readouterr().out == out
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'frobnicate'" in err and "enf fit|validate|test" in err


def test_autodecoder_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fit(
        "--model.fitter", "enf.fitting.AutoDecoder", "--model.fitter.init_args.num_latents", "4",
        "--model.fitter.init_args.test_steps", "5",
    )  # fmt: skip
    run = tmp_path / "runs" / "mnist" / "version_0"
    metrics = read_metrics(run)
    assert METRIC_KEYS <= set(metrics) and metrics["global_step"] == 3
    assert 0 < metrics["mse_test"] < 1 and metrics["equivariance_error"] < 1e-6
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # num_train_signals was linked from the datamodule: one table row per training image
    assert ckpt["hyper_parameters"]["num_train_signals"] == 32
    table = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("fitter.")}
    assert table and all(v.shape[0] == 32 for v in table.values())


def test_se2_end_to_end_with_validation_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # 16 images in batches of 8: the 2 steps are one full epoch, so validation runs once (no sanity check)
    fit(
        "--model.decoder.init_args.geometry", "se2", "--trainer.max_steps", "2", "--data.init_args.num_train", "16",
        "--trainer.num_sanity_val_steps", "0",
    )  # fmt: skip
    run = tmp_path / "runs" / "mnist" / "version_0"
    metrics = read_metrics(run)
    assert metrics["global_step"] == 2
    assert metrics["equivariance_error"] < 1e-6
    assert 0 < metrics["mse_test"] < 1
    # the figure of the (only) validation epoch is saved, plus the final reconstructions
    assert sorted(p.name for p in (run / "figures").glob("*.png")) == [
        "best_reconstruction.png", "final_reconstruction.png", "val_reconstruction.png",
    ]  # fmt: skip
    assert scalar_steps(run, "val/psnr") == [1]  # logged once, after the epoch's 2 steps (0-based step 1)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    """The multi-node recipe of docs/scaling.md on one node: ``torchrun --standalone --nproc_per_node 2 -m
    enf.cli fit ...`` (Lightning sees torchrun's environment and launches nothing itself): one run folder,
    written by rank 0, and the metrics of the full evaluation."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "enf.cli", "fit", "--config", MNIST, *TINY,
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.num_nodes", "1",
        "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "world_size: 2" in proc.stderr or "GLOBAL_RANK: 1" in proc.stderr, proc.stderr[-2000:]
    runs = sorted((tmp_path / "runs" / "mnist").iterdir())
    assert [p.name for p in runs] == ["version_0"], runs
    metrics = read_metrics(runs[0])
    assert metrics["global_step"] == 3 and metrics["num_test"] == 8
    assert metrics["equivariance_error"] < 1e-6 and 0 < metrics["mse_test"] < 1


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """``enf fit ... --trainer.strategy ddp --trainer.devices 2`` on CPU (gloo), in a subprocess (DDP re-runs
    argv, so this also checks that the CLI keeps ``sys.argv[0]``)."""
    script = Path(sys.executable).parent / "enf"  # the console script, as users run it (DDP re-runs argv)
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "enf.cli"]
    cmd = [
        *launcher, "fit", "--config", MNIST, *TINY,
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted((tmp_path / "runs" / "mnist").iterdir())
    assert [p.name for p in runs] == ["version_0"], runs  # one run directory, written by rank 0 only
    metrics = read_metrics(runs[0])
    assert metrics["global_step"] == 3
    assert metrics["equivariance_error"] < 1e-6 and 0 < metrics["mse_test"] < 1
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    print(f"DDP 2x CPU run took {elapsed:.1f} s")


# ----------------------------------------------------------------------------------- bad input
def test_resume_with_other_model_settings_is_refused(
    mnist_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Lightning would silently replace them by the checkpoint's: say which values differ, and refuse."""
    monkeypatch.chdir(tmp_path)
    ckpt = str(mnist_run / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit) as exc:
        fit("--ckpt_path", ckpt, "--model.decoder.init_args.hidden_dim", "32", "--model.lr", "0.01")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.decoder.init_args.hidden_dim: checkpoint 16, given 32" in err
    assert "model.lr: checkpoint 0.001, given 0.01" in err
    assert not (tmp_path / "runs").exists()


def test_abbreviated_keys_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        fit("--model.num_sampled_coord", "3")  # a prefix of num_sampled_coords
    assert exc.value.code == 2 and "--model.num_sampled_coord" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--model.num_sampled_coords",
            "0",
            "num_sampled_coords must be None (all coordinates) or >= 1, got 0",
        ),
        ("--data.init_args.batch_size", "0", "batch_size must be an int >= 1, got 0"),
    ],
)
def test_bad_values_give_one_clear_line(
    flag: str, value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        fit(flag, value)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Given value" not in err and len(err.splitlines()) <= 4
    assert not list(tmp_path.glob("runs/*/*/checkpoints/*.ckpt"))


def test_corrupt_checkpoint_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(SystemExit) as exc:
        fit("--ckpt_path", str(bad))
    err = capsys.readouterr().err
    assert (
        exc.value.code == 2
        and "broken.ckpt is not a readable checkpoint" in err
        and "weights_only" not in err
    )
    with pytest.raises(ValueError, match="broken.ckpt is not a readable checkpoint"):
        load_fit_checkpoint(bad)


def test_encode_to_an_unwritable_path_fails_before_encoding(
    mnist_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import enf.cli.encode

    def must_not_load(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before --out was checked")

    monkeypatch.setattr(enf.cli.encode, "load_fit_checkpoint", must_not_load)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(
            ["encode", "--ckpt", str(mnist_run / "checkpoints" / "last.ckpt"), "--out", str(blocker / "x.h5")]
        )
    assert "cannot write" in str(exc.value.code) and "a_file" in str(exc.value.code)


def _instantiate_trainer():
    from enf.cli.lightning import ENFLightningCLI

    return ENFLightningCLI.instantiate_trainer


INSTANTIATE_TRAINER = _instantiate_trainer()  # the unpatched method


def add_callbacks(monkeypatch: pytest.MonkeyPatch, *callbacks) -> None:
    """Every trainer the CLI builds from now on gets ``callbacks`` (replacing earlier ones added here)."""
    from enf.cli import lightning as cli_module

    def with_callbacks(self, **kwargs):
        trainer = INSTANTIATE_TRAINER(self, **kwargs)
        trainer.callbacks.extend(callbacks)
        return trainer

    monkeypatch.setattr(cli_module.ENFLightningCLI, "instantiate_trainer", with_callbacks)


def test_interrupted_fit_leaves_a_checkpoint_to_resume_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of an epoch: ``checkpoints/interrupted.ckpt`` (not 'best'), and it resumes."""
    import lightning as L

    class CtrlC(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 2:
                raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    add_callbacks(monkeypatch, CtrlC())
    with pytest.raises(SystemExit):
        fit("--trainer.max_steps", "6")
    ckpts = tmp_path / "runs" / "mnist" / "version_0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["interrupted.ckpt", "interrupted.ckpt.sha256"]
    assert torch.load(ckpts / "interrupted.ckpt", map_location="cpu", weights_only=True)["global_step"] == 2
    add_callbacks(monkeypatch)
    fit("--trainer.max_steps", "4", "--ckpt_path", str(ckpts / "interrupted.ckpt"))
    assert read_metrics(tmp_path / "runs" / "mnist" / "version_1")["global_step"] == 4


def test_sigterm_is_treated_like_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A real SIGTERM (what SLURM sends) mid-epoch: ``interrupted.ckpt`` at that step, exit code 143 (not 0),
    and the run resumes from it."""
    import os
    import signal

    import lightning as L

    class Term(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 2 and not trainer.received_sigterm:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.chdir(tmp_path)
    add_callbacks(monkeypatch, Term())
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            fit("--trainer.max_steps", "6")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exc.value.code == 143 and "terminated (SIGTERM)" in capsys.readouterr().err
    ckpts = tmp_path / "runs" / "mnist" / "version_0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["interrupted.ckpt", "interrupted.ckpt.sha256"]
    step = torch.load(ckpts / "interrupted.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert step in (2, 3)  # the signal is acted on at the next batch boundary
    add_callbacks(monkeypatch)
    fit("--trainer.max_steps", "5", "--ckpt_path", str(ckpts / "interrupted.ckpt"))
    assert read_metrics(tmp_path / "runs" / "mnist" / "version_1")["global_step"] == 5


def test_scheduled_checkpoints_before_validation_and_resume_from_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``--checkpoint.every_n_train_steps 5`` writes ``last.ckpt`` although no validation ran yet; after a
    crash, ``--ckpt_path last`` resumes from it (not from step 0), and with no run to resume it refuses."""
    import lightning as L

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        fit("--trainer.max_steps", "4", "--ckpt_path", "last")
    assert (
        exc.value.code == 2
        and "no checkpoint under runs/mnist/version_*/checkpoints/" in capsys.readouterr().err
    )

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 12:
                raise RuntimeError("simulated crash")

    add_callbacks(monkeypatch, Crash())
    schedule = ["--checkpoint.every_n_train_steps", "5", "--trainer.check_val_every_n_epoch", "100"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit("--trainer.max_steps", "20", *schedule)
    ckpts = tmp_path / "runs" / "mnist" / "version_0" / "checkpoints"  # the refused run made no folder
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 10
    started: list[int] = []

    class Start(L.Callback):
        def on_train_start(self, trainer, *args) -> None:
            started.append(trainer.global_step)

    add_callbacks(monkeypatch, Start())
    fit("--trainer.max_steps", "14", "--ckpt_path", "last", *schedule)
    assert started == [10]  # resumed, not restarted at step 0
    assert read_metrics(tmp_path / "runs" / "mnist" / "version_1")["global_step"] == 14


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that dies mid-write leaves the previous checkpoint whole and no temporary file."""
    from enf.training.checkpoints import AtomicCheckpointIO, verify_checkpoint

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    names = sorted(p.name for p in path.parent.iterdir())
    assert path.read_bytes() == before and names == ["last.ckpt", "last.ckpt.sha256"]
    verify_checkpoint(path)  # the digest still matches the untouched file


def test_a_flipped_bit_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    """Every checkpoint enf writes has a SHA-256 beside it; a changed byte is refused on every load path
    (read_checkpoint / load_fit_checkpoint, and Lightning's resume through the checkpoint writer)."""
    from enf.training.checkpoints import AtomicCheckpointIO, read_checkpoint

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "state_dict": {"w": torch.arange(1000.0)}}, path)
    assert read_checkpoint(path)["global_step"] == 3
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["global_step"] == 3
    for load in (read_checkpoint, io.load_checkpoint):
        with pytest.raises(
            ValueError, match=r"last.ckpt does not match its SHA-256 digest in last.ckpt.sha256"
        ):
            load(path)
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        load_fit_checkpoint(path)


# ------------------------------------------------------------------------------------ PDE fields
def test_pde_fit_end_to_end_with_the_same_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``configs/fit/diffusion_plane.yaml`` on a tiny generated file: PDE metrics, MSE monitor, figures (3 train
    trajectories: the last is the validation split)."""
    monkeypatch.chdir(tmp_path)
    main([
        "fit", "--config", str(REPO / "configs" / "fit" / "diffusion_plane.yaml"),
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.val_check_interval", "2",
        "--data.init_args.generate_options", '{"num_train": 3, "num_test": 1, "resolution": 16, "num_frames": 4}',
        "--data.init_args.batch_size", "4", "--model.decoder.init_args.hidden_dim", "16",
        "--artifacts.num_train_eval", "4",
    ])  # fmt: skip
    run = tmp_path / "runs" / "diffusion_plane" / "version_0"
    metrics = read_metrics(run)
    assert {"mse_test", "rel_l2_test", "mse_train", "equivariance_error"} <= set(metrics)
    assert not any(k.startswith("psnr") for k in metrics)  # no data range for PDE fields
    assert metrics["num_test"] == 4 and metrics["equivariance_error"] < 1e-9  # se2, float64
    assert 0 < metrics["rel_l2_test"] < 2
    assert (run / "checkpoints" / "best.ckpt").is_file()  # selected by val/mse, the task's monitor
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    monitor = [v for k, v in best["callbacks"].items() if "TaskCheckpoint" in k][0]["monitor"]
    assert monitor == "val/mse"
    assert (run / "figures" / "final_reconstruction.png").is_file()
    fit_ckpt = load_fit_checkpoint(run / "checkpoints" / "last.ckpt")
    assert fit_ckpt.field_spec.kind == "plane" and fit_ckpt.field_spec.normalized
    # encode the test frames: latents with their trajectory/frame, the same MSE as the final evaluation
    out = tmp_path / "frames.h5"
    main(
        [
            "encode",
            "--ckpt",
            str(run / "checkpoints" / "last.ckpt"),
            "--config",
            str(run / "config.yaml"),
            "--out",
            str(out),
        ]
    )
    arrays, attrs = read_h5(out)
    np.testing.assert_array_equal(arrays["trajectory"], np.repeat(np.arange(1), 4))
    np.testing.assert_array_equal(arrays["frame"], np.arange(4))
    assert arrays["poses"].shape == (4, 4, 4) and "psnr" not in arrays  # se2 poses, no PSNR for PDE fields
    assert float(arrays["mse"].mean()) == pytest.approx(metrics["mse_test"], rel=1e-4)


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("3", 3), ("0.5", 0.5), ("1.0", 1.0)])
def test_limit_batches_read_an_integer_as_a_number_of_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: float
) -> None:
    """``limit_val_batches: 1`` is one batch (Lightning's ``Union[float, int]`` made it the fraction 1.0, every
    batch); a float stays a fraction."""
    from enf.cli.lightning import run_lightning_cli

    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        ["--config", MNIST, *TINY, "--trainer.logger", "false", "--trainer.limit_val_batches", value],
        run=False,
    )
    assert cli.trainer.limit_val_batches == expected
    assert type(cli.trainer.limit_val_batches) is type(expected)


def test_every_log_line_prints_once(tmp_path: Path) -> None:
    """Lightning's messages and the model summary print once (they went through Lightning's own handler and
    the root handler of ``enf``), and the project's own lines print too; with the progress bar on, the
    final evaluation passes show theirs."""
    cmd = [sys.executable, "-m", "enf.cli", "fit", "--config", MNIST, *TINY, "--trainer.max_steps", "1",
           "--trainer.enable_progress_bar", "true"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True)
    assert "evaluate test" in proc.stderr and "evaluate train" in proc.stderr
    lines = proc.stderr.replace("\r", "\n").splitlines()
    for text in ("Seed set to 0", "Total params", "GPU available"):
        assert sum(text in line for line in lines) == 1, [line for line in lines if text in line]
    assert sum("wrote runs/mnist/version_0/metrics.json" in line for line in lines) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["encode", "--help"],
        ["forecast", "--help"],
        ["edit", "--help"],
        ["shape", "--help"],
        ["shape", "export", "--help"],
        ["data", "generate", "--help"],
        ["data", "show", "--help"],
        ["bench", "--help"],
    ],  # fmt: skip
    ids=lambda argv: " ".join(argv),
)
def test_help_texts_are_plain_text(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    """Every help answers with exit 0 and reads as terminal text: no reStructuredText literals or roles."""
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert out.strip() and not any(mark in out for mark in ("``", ":class:`", ":func:`", "**")), out


def test_plain_text_strips_the_markup() -> None:
    from enf.cli import plain_text

    assert (
        plain_text("``enf fit`` on :class:`~enf.data.SDFDataModule`, **bold**")
        == "enf fit on SDFDataModule, bold"
    )
