"""Forecasting experiments: stage 1 (``enf fit``) + stage 2 (``enf forecast fit``) per model and seed, then a
mean +- std table of the protocol's metrics (``metrics.json`` of each forecasting run).

    python experiments/forecast.py --dataset diffusion_plane --models equivariant nonequivariant \\
        --seeds 0 1 2 --fit-time 00:00:12:00 --ode-time 00:00:15:00 --num-train 256 --parallel 2

Models (same fitter and forecasting code; only the config differs):

* ``equivariant``: the dataset's geometry (configs/fit/<dataset>.yaml, configs/forecast/<dataset>.yaml);
* ``nonequivariant``: absolute coordinates (``absolute2d`` on the plane and torus, ``absolute_sphere`` on the
  sphere), the same decoder and latent ODE otherwise;
* ``equivariant_shared``: the equivariant model with every fit starting from the shared initial latent
  (``init_frame: shared``), the ablation of a moment-posed initial latent;
* ``vector``: one global code per state (one latent of context 64) decoded by ``enf.nn.GlobalLatentField``
  (an MLP on Fourier features of the absolute coordinates, FiLM-modulated by the code, about as many
  parameters as the ENF decoder; poses and windows unused, so the fitter takes no pose steps) and an MLP
  ODE on the code (``enf.dynamics.MLPLatentField``): the DINo-like baseline.

Stage 1 fits the frames of the training horizon (the first 10, as the reference does). Each run gets
``--fit-time`` for stage 1 and ``--ode-time`` for stage 2 (Lightning ``max_time``), with
``--threads`` CPU threads; ``--parallel`` runs that many (model, seed) pairs at once. Results go to
``experiments/results/<dataset>.json`` (every run's metrics and the summary). ``--fit-args`` passes extra
``enf fit`` words to every model's stage 1 (the model's own overrides come after and win); ``--data-args``
passes data words to both stages (e.g. ``'--data.init_args.background none'``, the ablation of the
shallow-water zonal background). ``--reuse`` keeps the finished runs of an interrupted sweep and runs the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NONEQUIVARIANT = {"plane": "absolute2d", "torus": "absolute2d", "sphere": "absolute_sphere"}
# datasets run with another dataset's configs (the same grid and model sizes, other data)
CONFIG = {"navier_stokes_decaying": "navier_stokes_torus"}
KIND = {
    "navier_stokes_decaying": "torus",
    "diffusion_plane": "plane",
    "navier_stokes_torus": "torus",
    "diffusion_sphere": "sphere",
    "shallow_water_sphere": "sphere",
    "heated_convection_ball": "ball",
}
SHOWN = [
    "mse_train_in", "mse_train_out", "mse_test_in", "mse_test_out",
    "mse_test_in_obs50", "mse_test_in_obs10", "mse_test_in_obs5", "mse_test_in_fullres", "equivariance_error",
    "manifold_error", "vrmse_test_in", "vrmse_test_out", "wmse_test_in", "wmse_test_out",
    "persistence_test_in", "persistence_test_out", "meanfield_test_in", "meanfield_test_out",
    "persistence_vrmse_test_in", "persistence_vrmse_test_out", "meanfield_vrmse_test_in", "meanfield_vrmse_test_out",
    "persistence_test_in_obs5", "meanfield_test_in_obs5",
]  # fmt: skip


def overrides(model: str, dataset: str) -> tuple[list[str], list[str]]:
    """Extra (stage-1, stage-2) command-line words of ``model``."""
    if model == "equivariant":
        return [], []
    # ablation: the dataset's geometry, every fit from the shared initial latent
    if model == "equivariant_shared":
        return ["--model.fitter.init_args.init_frame", "shared"], []
    kind = KIND[dataset]
    if kind not in NONEQUIVARIANT:
        raise SystemExit(f"no non-equivariant geometry for {dataset} ({kind}); run --models equivariant")
    geom = NONEQUIVARIANT[kind]
    # absolute coordinates have no frame to pose the initial latent by: every fit starts from the shared one
    shared = ["--model.fitter.init_args.init_frame", "shared"]
    if model == "nonequivariant":
        return (
            ["--model.decoder.init_args.geometry", geom, *shared],
            ["--model.dynamics.init_args.geometry", geom],
        )
    if model == "vector":
        context = 64
        # Every width is spelled out: jsonargparse carries the fit config's same-named ENF arguments
        # (hidden_dim 128) over to the new class otherwise. num_out is linked from the data.
        decoder = {
            "class_path": "enf.nn.GlobalLatentField",
            "init_args": {
                "geometry": geom, "context_dim": context, "hidden_dim": 120, "num_layers": 3,
                "num_frequencies": 32, "freq_scale": 1.0, "num_latents": 1,
            },
        }  # fmt: skip
        dynamics = {
            "class_path": "enf.dynamics.MLPLatentField",
            "init_args": {"geometry": geom, "context_dim": context, "num_latents": 1, "hidden_dim": 256},
        }
        return (
            # the decoder ignores poses: no inner pose steps (absolute poses have no orientation block)
            ["--model.decoder", json.dumps(decoder), "--model.fitter.init_args.num_latents", "1",
             "--model.fitter.init_args.lr_position", "0.0", *shared],
            ["--model.dynamics", json.dumps(dynamics)],
        )  # fmt: skip
    raise SystemExit(
        f"unknown model {model!r}; choose equivariant, equivariant_shared, nonequivariant, vector"
    )


def run(cmd: list[str], log: Path, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); see {log}")


def finished(out: Path) -> dict | None:
    """The record of a finished (model, seed) run folder, or None: both stages wrote their metrics."""
    paths = [out / stage / "version_0" / "metrics.json" for stage in ("fit", "forecast")]
    if not all(p.is_file() for p in paths):
        return None
    fit_metrics, metrics = (json.loads(p.read_text()) for p in paths)
    metrics.update(
        stage1_time_s=fit_metrics["fit_time_s"],
        stage2_time_s=metrics["fit_time_s"],
        stage1_mse_test=fit_metrics.get("mse_test"),
    )
    return metrics


def one(args, model: str, seed: int) -> dict:
    name = f"{args.dataset}_{model}_s{seed}"
    out = REPO / args.out / name
    if args.reuse and (metrics := finished(out)) is not None:
        print(f"{name}: reusing the finished run in {out}", flush=True)
        return {"model": model, "seed": seed, "metrics": metrics, "run": os.path.relpath(out, REPO)}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fit_extra, ode_extra = overrides(model, args.dataset)
    fit_extra = [*shlex.split(args.fit_args), *fit_extra]  # the model's own overrides win
    enf = [sys.executable, "-m", "enf.cli"]
    config = CONFIG.get(args.dataset, args.dataset)
    data = [
        "--data.init_args.dataset", args.dataset,
        "--data.init_args.root", args.root, "--data.init_args.seed", "0",
        "--data.init_args.generate_options", json.dumps(args.generate_options),
    ]  # fmt: skip
    if args.num_train is not None:
        data += ["--data.init_args.num_train", str(args.num_train)]
    data += shlex.split(args.data_args)
    data += ["--data.init_args.num_val", str(args.num_val)]
    logger = ["--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false"]
    t0 = time.perf_counter()
    run(
        [*enf, "fit", "--config", f"configs/fit/{config}.yaml", "--seed_everything", str(seed),
         "--trainer.max_time", args.fit_time, "--trainer.max_epochs", "100000", *data, *logger,
         "--trainer.logger.init_args.name", "fit", "--data.init_args.time_window", "[0, 10]",
         "--artifacts.num_train_eval", "32", "--artifacts.num_test_eval", "64", *fit_extra],
        out / "fit.log", args.threads,
    )  # fmt: skip
    t1 = time.perf_counter()
    fit_ckpt = out / "fit" / "version_0" / "checkpoints" / "last.ckpt"
    run(
        [*enf, "forecast", "fit", "--config", f"configs/forecast/{config}.yaml", "--seed_everything",
         str(seed), "--model.fit_checkpoint", str(fit_ckpt), "--trainer.max_time", args.ode_time,
         "--trainer.max_epochs", "100000", *data, *logger, "--trainer.logger.init_args.name", "forecast", *ode_extra],
        out / "forecast.log", args.threads,
    )  # fmt: skip
    t2 = time.perf_counter()
    metrics = json.loads((out / "forecast" / "version_0" / "metrics.json").read_text())
    fit_metrics = json.loads((out / "fit" / "version_0" / "metrics.json").read_text())
    metrics.update(stage1_time_s=t1 - t0, stage2_time_s=t2 - t1, stage1_mse_test=fit_metrics.get("mse_test"))
    print(f"{name}: mse_train_in {metrics['mse_train_in']:.3e} mse_test_in {metrics['mse_test_in']:.3e} "
          f"({t2 - t0:.0f} s)", flush=True)  # fmt: skip
    return {"model": model, "seed": seed, "metrics": metrics, "run": os.path.relpath(out, REPO)}


def persistence(args, *, num_frames: int, horizon: int) -> dict:
    """Two references a forecaster has to beat, from the test file alone: holding the true frame 0 for all
    time (``mse_test_in`` / ``mse_test_out``, per frame under ``curve``), and a flat field at each test
    trajectory's frame-0 spatial mean (``flat_mse_test_in`` / ``flat_mse_test_out``).

    Per frame over every test trajectory of the data file, on its stored grid and physical scale, like the
    runs' ``mse_per_frame.json``; ``in`` / ``out`` average frames ``[0, horizon)`` and
    ``[horizon, num_frames)``.
    """
    import h5py

    with h5py.File(REPO / args.root / args.dataset / "test.h5", "r") as f:
        fields = f["fields"][:, :num_frames].astype(np.float64)  # [S, T, *grid, C]
    fields = fields.reshape(*fields.shape[:2], -1, fields.shape[-1])  # [S, T, N, C]

    def split(per_frame: np.ndarray, key: str) -> dict:
        out = float(per_frame[horizon:].mean()) if num_frames > horizon else None
        return {f"{key}_test_in": float(per_frame[:horizon].mean()), f"{key}_test_out": out}

    held = ((fields - fields[:, :1]) ** 2).mean(axis=(0, 2, 3))
    flat = ((fields - fields[:, :1].mean(axis=2, keepdims=True)) ** 2).mean(axis=(0, 2, 3))
    return {
        "curve": held.tolist(),
        **split(held, "mse"),
        "flat_curve": flat.tolist(),
        **split(flat, "flat_mse"),
        "field_variance": float(fields.var()),
    }


def run_curves(record: dict) -> tuple[dict, list[float], int]:
    """Test MSE per frame of every run, grouped by model, with the frame times and the horizon."""
    rows: dict[str, list] = {}
    times, horizon = None, None
    for r in record["runs"]:
        data = json.loads((Path(r["run"]) / "forecast" / "version_0" / "mse_per_frame.json").read_text())
        rows.setdefault(r["model"], []).append(data["curves"]["test"])
        times, horizon = data["times"], data["horizon"]
    return rows, times, horizon


def plot_curves(record: dict, out: Path) -> None:
    """Test MSE per frame, mean +- std over seeds, for every model side by side (from the runs' curves),
    and the persistence reference (frame 0 held) as one more line."""
    import matplotlib

    matplotlib.use("Agg")
    from enf.plotting import save_figure
    from enf.plotting.rollout import plot_error_curves

    rows, times, horizon = run_curves(record)
    curves = {model: (np.mean(r, axis=0), np.std(r, axis=0)) for model, r in rows.items()}
    if "persistence" in record:
        held = np.asarray(record["persistence"]["curve"])
        # frame 0 is exact (error 0), which a log axis cannot show
        curves["persistence (frame 0 held)"] = np.where(held > 0, held, np.nan)
    fig = plot_error_curves(
        curves,
        times=np.asarray(times),
        horizon=horizon,
        title=f"{record['args']['dataset']}: test MSE per frame",
    )
    save_figure(fig, out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=sorted(KIND))
    parser.add_argument("--models", nargs="+", default=["equivariant", "nonequivariant"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fit-time", default="00:00:12:00", help="stage-1 budget (DD:HH:MM:SS)")
    parser.add_argument("--ode-time", default="00:00:15:00", help="stage-2 budget (DD:HH:MM:SS)")
    parser.add_argument("--num-train", type=int, default=None, help="training trajectories used")
    parser.add_argument(
        "--num-val",
        type=int,
        default=8,
        help="validation trajectories (best.ckpt), the last of the train file: generate num_train + num_val",
    )
    parser.add_argument(
        "--generate", default="{}", help="JSON overrides of the small preset (e.g. num_train)"
    )
    parser.add_argument("--root", default="data/experiments", help="data root (apart from data/)")
    parser.add_argument("--out", default="experiments/runs", help="run directories")
    parser.add_argument(
        "--fit-args",
        default="",
        help="extra `enf fit` words for every model, e.g. '--model.fitter.init_args.lr_context 1.0'",
    )
    parser.add_argument(
        "--data-args",
        default="",
        help="extra data words for both stages, e.g. '--data.init_args.background none'",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep (model, seed) runs under --out whose two stages finished (their training times are then "
        "the runs' fit_time_s) and run only the missing ones; without it every run starts afresh",
    )
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="only recompute the references and redraw the figure of a results file",
    )
    args = parser.parse_args()
    path = REPO / "experiments" / "results" / f"{args.dataset}{args.tag}.json"
    if args.plot_only:
        record = json.loads(path.read_text())
        _, times, horizon = run_curves(record)
        record["persistence"] = persistence(args, num_frames=len(times), horizon=horizon)
        path.write_text(json.dumps(record, indent=2) + "\n")
        plot_curves(record, path.with_suffix(".png"))
        return
    args.generate_options = json.loads(args.generate)
    # generate the data once, before runs start in parallel
    gen = [sys.executable, "-m", "enf.cli", "data", "generate", args.dataset, "--preset", "small",
           "--out", f"{args.root}/{args.dataset}"]  # fmt: skip
    gen += ["--set", *[f"{k}={v}" for k, v in args.generate_options.items()]] if args.generate_options else []
    if not (REPO / args.root / args.dataset / "test.h5").is_file():
        subprocess.run(gen, cwd=REPO, check=True)
    jobs = [(m, s) for s in args.seeds for m in args.models]  # seed-major: each seed's models side by side
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(lambda job: one(args, *job), jobs))
    summary: dict[str, dict[str, list[float]]] = {}
    for model in args.models:
        rows = [r["metrics"] for r in results if r["model"] == model]
        summary[model] = {
            k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))]
            for k in [*SHOWN, "stage1_time_s", "stage2_time_s", "global_step"]
            if all(k in r for r in rows)
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "runs": results, "summary": summary}
    _, times, horizon = run_curves(record)
    record["persistence"] = persistence(args, num_frames=len(times), horizon=horizon)
    path.write_text(json.dumps(record, indent=2) + "\n")
    plot_curves(record, path.with_suffix(".png"))
    keys = [k for k in SHOWN if all(k in summary[m] for m in args.models)]
    print(f"\n{args.dataset}: mean +- std over seeds {args.seeds}")
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for model in args.models:
        cells = [f"{summary[model][k][0]:.2e} ± {summary[model][k][1]:.1e}" for k in keys]
        print(f"| {model} | " + " | ".join(cells) + " |")
    held = record["persistence"]
    for name, key in [("persistence (frame 0 held)", "mse"), ("flat field (frame-0 mean)", "flat_mse")]:
        print(f"{name}: mse_test_in {held[f'{key}_test_in']:.2e}, mse_test_out "
              f"{held[f'{key}_test_out'] or float('nan'):.2e}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
