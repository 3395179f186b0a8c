"""Forecasting end to end through the CLI: ``enf fit`` -> ``enf forecast fit`` -> ``enf forecast``, on a tiny
generated planar-diffusion file; the module's evaluation against independent computations."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from enf import GlobalLatentField
from enf.cli import main
from enf.data.pde.dataset import PDETrajectories
from enf.training import ForecastingModule, load_fit_checkpoint, load_forecast_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY_DATA = '{"num_train": 4, "num_test": 2, "resolution": 16, "num_frames": 6}'
FIT = [
    "fit", "--config", str(REPO / "configs" / "fit" / "diffusion_plane.yaml"),
    "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
    "--trainer.num_sanity_val_steps", "0", "--data.init_args.generate_options", TINY_DATA,
    "--data.init_args.batch_size", "4", "--model.decoder.init_args.hidden_dim", "16",
    "--artifacts.num_train_eval", "4",
]  # fmt: skip


def forecast_args(fit_ckpt: Path, *extra: str) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "forecast" / "diffusion_plane.yaml"),
        "--model.fit_checkpoint", str(fit_ckpt), "--data.init_args.generate_options", TINY_DATA,
        "--data.init_args.time_window", "[0, 6]", "--model.horizon", "4", "--model.num_sampled_coords", "64",
        "--model.dynamics.init_args.hidden_dim", "16", "--model.dynamics.init_args.basis_dim", "16",
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0", "--data.init_args.batch_size", "2",
        "--artifacts.num_train_eval", "4", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("forecast")
    cwd = os.getcwd()
    os.chdir(path)
    try:
        main(FIT)
        main(["forecast", "fit", *forecast_args(fit_ckpt(path))])
    finally:
        os.chdir(cwd)
    return path


def fit_ckpt(path: Path) -> Path:
    return path / "runs" / "diffusion_plane" / "version_0" / "checkpoints" / "last.ckpt"


def forecast_run(path: Path) -> Path:
    return path / "runs" / "forecast_diffusion_plane" / "version_0"


def test_forecast_run_writes_the_protocol(workdir: Path) -> None:
    run = forecast_run(workdir)
    metrics = json.loads((run / "metrics.json").read_text())
    keys = {f"mse_{s}_{h}" for s in ("train", "test") for h in ("in", "out")}
    keys |= {f"mse_test_in_obs{p}" for p in (50, 10, 5)}
    assert keys <= set(metrics), sorted(metrics)
    assert metrics["equivariance_error"] < 1e-9  # se2 rollout decoded in float64
    assert metrics["global_step"] == 3 and metrics["num_test"] == 2 and metrics["horizon"] == 4
    curves = json.loads((run / "mse_per_frame.json").read_text())
    assert curves["horizon"] == 4 and len(curves["times"]) == 6
    window_times = PDETrajectories(workdir / "data" / "diffusion_plane" / "test.h5", time_window=(0, 6)).times
    np.testing.assert_allclose(curves["times"], window_times.numpy(), rtol=1e-6)  # physical, not ODE, times
    test = np.asarray(curves["curves"]["test"])
    # the flat numbers are the means of the per-frame curve over the horizon and beyond it
    assert np.isclose(test[:4].mean(), metrics["mse_test_in"]) and np.isclose(
        test[4:].mean(), metrics["mse_test_out"]
    )
    assert np.isclose(np.mean(curves["curves"]["test_obs5"][:4]), metrics["mse_test_in_obs5"])
    assert {"final_rollout.png", "mse_per_frame.png"} <= {p.name for p in (run / "figures").iterdir()}
    assert "mse_test_in_fullres" not in metrics  # the plane files store one resolution
    # the trivial references, computed independently from the files (physical scale)
    test_file = PDETrajectories(workdir / "data" / "diffusion_plane" / "test.h5")
    truth = np.stack([test_file[i]["fields"].numpy() for i in range(2)])  # [2, 6, N, 1]
    held = ((truth - truth[:, :1]) ** 2).mean((2, 3))
    assert np.isclose(held[:, :4].mean(), metrics["persistence_test_in"], rtol=1e-5)
    assert np.isclose(held[:, 4:].mean(), metrics["persistence_test_out"], rtol=1e-5)
    train_file = PDETrajectories(workdir / "data" / "diffusion_plane" / "train.h5")
    used = int(metrics["num_train_used"])
    mean = np.stack([train_file[i]["fields"].numpy()[:4] for i in range(used)]).mean((0, 1))
    flat = ((truth - mean) ** 2).mean((2, 3))
    assert np.isclose(flat[:, :4].mean(), metrics["meanfield_test_in"], rtol=1e-4)
    for key in ("vrmse_test_in", "persistence_vrmse_test_in", "meanfield_vrmse_test_out", "meanfield_train_in",
                "persistence_test_in_obs5", "meanfield_test_in_obs5", "manifold_error"):  # fmt: skip
        assert key in metrics, key
    assert metrics["manifold_error"] == 0.0  # se2 poses are flat
    # from 5 % of the points, persistence holds the nearest observed value: worse than from all of them
    assert metrics["persistence_test_in_obs5"] > metrics["persistence_test_in"]
    assert "test_persistence" in curves["curves"] and "test_meanfield" in curves["curves"]


def test_forecast_command_reproduces_the_metrics(workdir: Path, tmp_path: Path) -> None:
    """``enf forecast`` on the test file: the same per-frame errors as the run's evaluation, HDF5 + figures."""
    ckpt = forecast_run(workdir) / "checkpoints" / "last.ckpt"
    data = workdir / "data" / "diffusion_plane" / "test.h5"
    out = tmp_path / "pred.h5"
    main(["forecast", "--ckpt", str(ckpt), "--data", str(data), "--out", str(out)])
    metrics = json.loads((forecast_run(workdir) / "metrics.json").read_text())
    with h5py.File(out) as f:
        fields, mse = f["fields"][()], f["mse_per_frame"][()]
        assert fields.shape == (2, 6, 16, 16, 1) and f["poses"].shape[:2] == (2, 6)
    # independent check of the stored error: against the file's own fields (physical scale)
    truth = PDETrajectories(data)
    expected = np.stack(
        [((fields[i].reshape(6, -1, 1) - truth[i]["fields"].numpy()) ** 2).mean((1, 2)) for i in range(2)]
    )
    np.testing.assert_allclose(mse, expected, rtol=1e-4)
    assert np.isclose(mse[:, :4].mean(), metrics["mse_test_in"], rtol=1e-4)
    figures = tmp_path / "pred_figures"
    assert {"rollout.png", "rollout.gif", "mse_per_frame.png"} <= {p.name for p in figures.iterdir()}


def test_forecast_beyond_the_data_and_sparse(workdir: Path, tmp_path: Path) -> None:
    ckpt = forecast_run(workdir) / "checkpoints" / "last.ckpt"
    data = workdir / "data" / "diffusion_plane" / "test.h5"
    out = tmp_path / "long.h5"
    main(["forecast", "--ckpt", str(ckpt), "--data", str(data), "--out", str(out), "--horizon", "9",
          "--observed-fraction", "0.05"])  # fmt: skip
    metrics = json.loads((forecast_run(workdir) / "metrics.json").read_text())
    with h5py.File(out) as f:
        assert f["fields"].shape[1] == 9 and f["mse_per_frame"].shape[1] == 6  # truth only for 6 frames
        # frames are labelled with the file's physical times, continued at its spacing past its last frame
        file_times = PDETrajectories(data).times.numpy().astype(np.float64)
        step = file_times[-1] - file_times[-2]
        expected = np.concatenate([file_times, file_times[-1] + step * np.arange(1, 4)])
        np.testing.assert_allclose(f["times"][()], expected, rtol=1e-6)
        assert f["ode_times"].shape == (9,)
        assert f["observed"][()].sum(1).tolist() == [13, 13]  # round(0.05 * 256)
        assert np.isclose(f["mse_per_frame"][:, :4].mean(), metrics["mse_test_in_obs5"], rtol=1e-4)


def test_sparse_encoding_uses_only_the_observed_points(workdir: Path) -> None:
    module = load_forecast_checkpoint(forecast_run(workdir) / "checkpoints" / "last.ckpt")
    traj = PDETrajectories(workdir / "data" / "diffusion_plane" / "test.h5", observed_fraction=0.1)
    item = traj[0]
    coords, state, mask = item["coords"][None], item["fields"][:1, :, :], item["mask"][None]
    z = module.encode_initial(coords, state, mask=mask)
    garbage = state.clone()
    garbage[~mask] = 1e3  # unobserved values must not matter
    z_garbage = module.encode_initial(coords, garbage, mask=mask)
    z_subset = module.encode_initial(coords[:, mask[0]], state[:, mask[0]])  # only the observed points given
    for a, b in ((z, z_garbage), (z, z_subset)):
        torch.testing.assert_close(a.context, b.context, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.poses, b.poses, rtol=1e-5, atol=1e-6)


def test_stage_three_starts_from_stage_two(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``finetune`` + ``init_checkpoint``: the decoder trains too, starting from the stage-2 weights."""
    monkeypatch.chdir(workdir)
    stage2 = forecast_run(workdir) / "checkpoints" / "last.ckpt"
    main(["forecast", "fit", *forecast_args(fit_ckpt(workdir), "--model.finetune", "true",
          "--model.init_checkpoint", str(stage2), "--trainer.max_steps", "1")])  # fmt: skip
    run = workdir / "runs" / "forecast_diffusion_plane" / "version_1"
    before = torch.load(stage2, map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"decoder", "dynamics"} <= changed


def test_mismatched_dynamics_is_refused(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "forecast",
                "fit",
                *forecast_args(fit_ckpt(workdir), "--model.dynamics.init_args.geometry", "translation2d"),
            ]
        )
    assert (
        "dynamics geometry 'translation2d' differs from the fitted decoder's 'se2'" in capsys.readouterr().err
    )


def test_horizon_longer_than_the_data_is_refused(
    workdir: Path, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit):
        main(["forecast", "fit", *forecast_args(fit_ckpt(workdir), "--model.horizon", "7")])
    assert "horizon 7 exceeds the 6 frames" in capsys.readouterr().err


def test_forecast_needs_a_forecasting_checkpoint(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a forecasting checkpoint"):
        main(
            ["forecast", "--ckpt", str(fit_ckpt(workdir)), "--data", "x.h5", "--out", str(tmp_path / "o.h5")]
        )
    with pytest.raises(SystemExit, match="does not exist"):
        main(
            [
                "forecast",
                "--ckpt",
                str(tmp_path / "none.ckpt"),
                "--data",
                "x.h5",
                "--out",
                str(tmp_path / "o.h5"),
            ]
        )


def test_module_implements_the_task_protocol(workdir: Path) -> None:
    from enf.training import FieldTask

    module = load_forecast_checkpoint(forecast_run(workdir) / "checkpoints" / "last.ckpt")
    assert isinstance(module, ForecastingModule) and isinstance(module, FieldTask)
    assert module.monitor == ("val/mse_in", "min")


@pytest.mark.slow
def test_forecasting_ddp_two_cpu_processes(workdir: Path, tmp_path: Path) -> None:
    """``enf forecast fit ... --trainer.strategy ddp --trainer.devices 2`` on CPU (gloo), in a subprocess."""
    script = Path(sys.executable).parent / "enf"
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "enf.cli"]
    (tmp_path / "data").symlink_to(workdir / "data")
    cmd = [*launcher, "forecast", "fit", *forecast_args(fit_ckpt(workdir)),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted((tmp_path / "runs" / "forecast_diffusion_plane").iterdir())
    assert [p.name for p in runs] == ["version_0"]
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["equivariance_error"] < 1e-9


def test_vector_latent_dynamics_keep_the_decoder_equivariant(
    workdir: Path, tmp_path: Path, monkeypatch
) -> None:
    """The same module with the MLP ODE (DINo-like dynamics) on the se2 ENF: it moves only the invariant
    contexts and keeps the poses, so the forecast stays equivariant (the DINo-like baseline of the experiments
    is non-equivariant through its absolute-coordinate decoder, not through the ODE)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(workdir / "data")
    dynamics = {
        "class_path": "enf.dynamics.MLPLatentField",
        "init_args": {
            "geometry": "se2",
            "context_dim": 16,
            "num_latents": 4,
            "hidden_dim": 16,
            "velocity_scale": 1.0,
        },
    }
    main(["forecast", "fit", *forecast_args(fit_ckpt(workdir), "--model.dynamics", json.dumps(dynamics))])
    metrics = json.loads((forecast_run(tmp_path) / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and np.isfinite(metrics["mse_test_in"])
    assert metrics["equivariance_error"] < 1e-9


def forecast_experiment():
    """experiments/forecast.py as a module."""
    spec = importlib.util.spec_from_file_location("forecast_experiment", REPO / "experiments" / "forecast.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    return experiment


def test_reuse_keeps_finished_runs_and_reruns_the_rest(tmp_path: Path, monkeypatch) -> None:
    """``--reuse``: a run folder whose two stages wrote metrics is kept (no training), one with stage 1 only is
    run again; without ``--reuse`` every run starts afresh."""
    experiment = forecast_experiment()
    monkeypatch.setattr(experiment, "REPO", tmp_path)
    calls = []
    monkeypatch.setattr(experiment, "run", lambda cmd, log, threads: calls.append(cmd[3]) or 1 / 0)
    args = SimpleNamespace(dataset="diffusion_plane", out="runs", reuse=True)
    done = tmp_path / "runs" / "diffusion_plane_equivariant_s0"
    for stage, m in [("fit", {"fit_time_s": 480.0, "mse_test": 0.5}), ("forecast", {"fit_time_s": 360.0})]:
        (done / stage / "version_0").mkdir(parents=True)
        (done / stage / "version_0" / "metrics.json").write_text(json.dumps({**m, "mse_test_in": 0.25}))
    record = experiment.one(args, "equivariant", 0)
    assert calls == [] and record["run"] == os.path.relpath(done, tmp_path)
    assert record["metrics"]["mse_test_in"] == 0.25 and record["metrics"]["stage1_mse_test"] == 0.5
    assert (record["metrics"]["stage1_time_s"], record["metrics"]["stage2_time_s"]) == (480.0, 360.0)
    half = tmp_path / "runs" / "diffusion_plane_equivariant_s1"
    (half / "fit" / "version_0").mkdir(parents=True)
    (half / "fit" / "version_0" / "metrics.json").write_text("{}")
    for target, reuse in [(1, True), (0, False)]:  # unfinished, or not asked to reuse: run again
        args.reuse = reuse
        monkeypatch.setattr(experiment, "overrides", lambda model, dataset: ([], []))
        full = SimpleNamespace(**vars(args), fit_args="", root="data", generate_options={}, num_train=None,
                               data_args="", num_val=8, fit_time="1", threads=1)  # fmt: skip
        with pytest.raises(ZeroDivisionError):
            experiment.one(full, "equivariant", target)
        assert calls[-1] == "fit"
    assert not (done / "forecast").exists()  # without --reuse the finished folder was cleared


def test_vector_baseline_of_the_experiments_runs_both_stages(
    workdir: Path, tmp_path: Path, monkeypatch
) -> None:
    """The ``vector`` model of experiments/forecast.py as it overrides the configs: stage 1 with the global-latent
    decoder (one latent, no pose steps), stage 2 with the MLP ODE on its code; not equivariant."""
    fit_extra, ode_extra = forecast_experiment().overrides("vector", "diffusion_plane")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(workdir / "data")
    main([*FIT, *fit_extra])
    fit = load_fit_checkpoint(fit_ckpt(tmp_path))
    assert isinstance(fit.decoder, GlobalLatentField) and fit.decoder.num_out == 1
    assert fit.decoder.context_dim == 64 and fit.decoder.num_latents == fit.fitter.num_latents == 1
    assert fit.fitter.freeze_position
    default = GlobalLatentField(geometry="absolute2d", num_out=1)  # no width inherited from the ENF config
    assert sum(p.numel() for p in fit.decoder.parameters()) == sum(p.numel() for p in default.parameters())
    main(["forecast", "fit", *forecast_args(fit_ckpt(tmp_path), *ode_extra)])
    metrics = json.loads((forecast_run(tmp_path) / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and np.isfinite(metrics["mse_test_in"])
    assert metrics["equivariance_error"] > 1e-3  # absolute coordinates: a clear error


def test_a_diverging_rollout_names_the_fix(workdir: Path) -> None:
    module = load_forecast_checkpoint(forecast_run(workdir) / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        for p in module.dynamics.context_out.parameters():
            p.fill_(1e30)  # velocities overflow within a few Euler steps
    traj = PDETrajectories(workdir / "data" / "diffusion_plane" / "test.h5")
    z0 = module.encode_initial(traj[0]["coords"][None], traj[0]["fields"][0][None])
    with pytest.raises(FloatingPointError, match="rollout diverged"):
        module.forecast(z0, 6)


def test_missing_fit_checkpoint_says_to_run_stage_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["forecast", "fit", *forecast_args(tmp_path / "missing.ckpt")])
    err = capsys.readouterr().err
    assert (
        "missing.ckpt does not exist" in err
        and "run `enf fit --config configs/fit/<dataset>.yaml` first" in err
    )


def test_evaluate_with_a_loader_of_ones_own(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate(loader=...)`` works without a data module (no references then) and gives the same model
    errors as the attached evaluation; asking for references without the data module is refused."""
    from enf.data import PDETrajectoryDataModule

    monkeypatch.chdir(workdir)  # the run records its fit checkpoint relative to it
    run = forecast_run(workdir)
    module = load_forecast_checkpoint(run / "checkpoints" / "last.ckpt")
    module = getattr(module, "module", module)
    dm = PDETrajectoryDataModule(
        dataset="diffusion_plane", root="data", time_window=(0, 6), eval_batch_size=2
    )
    module._curves = {}
    out = module.evaluate("test", loader=dm.trajectory_loader("test"), equivariance=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isclose(out["mse_in"], metrics["mse_test_in"], rtol=1e-4)
    assert not any(k.startswith(("persistence", "meanfield")) for k in out)
    with pytest.raises(ValueError, match="references=True needs the attached data module"):
        module.evaluate("test", loader=dm.trajectory_loader("test"), references=True)
