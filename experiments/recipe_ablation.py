"""Equal-budget comparison of fitting recipes: today's configs against the new recipe options.

Every arm is ``enf fit --config configs/fit/<dataset>.yaml`` plus command-line overrides, at the config's own
wall-clock budget (``trainer.max_time``), with ``--workers`` runs at a time and one torch thread each (so each
arm gets the same share of the machine). The metric is test PSNR for images and test IoU (on held-out points of
fresh shapes) for signed distances (``shapes``), read from each run's ``metrics.json`` (the final model) and from
``enf test`` of the checkpoint the validation split selected (``<metric>_test_best``); the validation metric
against wall-clock time comes from the run's TensorBoard events. Writes ``<out>/<run>.json`` per run and
``<out>/recipe_ablation.json`` and ``.png`` over every run there.

    python experiments/recipe_ablation.py --datasets mnist natural faces --arms baseline recipe --seeds 0 1
    python experiments/recipe_ablation.py --datasets mnist --arms step_tables geglu latent_attention narrow_head all_coords
    python experiments/recipe_ablation.py --datasets shapes --arms baseline recipe --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DECODER = "--model.decoder.init_args."
FITTER = "--model.fitter.init_args."
OPTIONS = {
    "step_tables": [f"{FITTER}per_step_lr", "true", f"{FITTER}per_latent_lr", "true"],
    "geglu": [f"{DECODER}feed_forward", "geglu"],
    "latent_attention": [f"{DECODER}num_latent_layers", "1"],
    "all_coords": ["--model.num_sampled_coords", "null"],
    "narrow_head": [f"{DECODER}head_hidden_dim", "32"],
}
#: arm name -> overrides of the config
ARMS = {
    "baseline": [],
    # the options that won alone on MNIST (seed 0): step-size tables and a narrow head
    "recipe": OPTIONS["step_tables"] + OPTIONS["narrow_head"],
    # the first guess, every new option at once: lost on MNIST (GeGLU and latent attention each lost alone)
    "recipe_all": OPTIONS["step_tables"] + OPTIONS["geglu"] + OPTIONS["latent_attention"],
    **OPTIONS,
}
#: the metric of each dataset (``<metric>_test`` in ``metrics.json``): PSNR unless listed
METRICS = {"shapes": "iou", "shapes_bundled": "iou"}


def metric_of(dataset: str) -> str:
    return METRICS.get(dataset, "psnr")


def run_arm(dataset: str, arm: str, seed: int, out: Path) -> dict:
    metric = metric_of(dataset)
    name = f"{dataset}_{arm}_s{seed}"
    cmd = [
        sys.executable, "-m", "enf.cli", "fit", "--config", f"configs/fit/{dataset}.yaml", *ARMS[arm],
        "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name,
    ]  # fmt: skip
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ | {"OMP_NUM_THREADS": "1"}
        ).returncode
    if code != 0:  # a failed (e.g. diverged) run is a result too: recorded with its error, the rest go on
        error = " ".join(log.read_text().strip().splitlines()[-2:])
        result = {
            "dataset": dataset,
            "arm": arm,
            "seed": seed,
            "failed": True,
            "error": error,
            f"{metric}_test": None,
        }
        runs = sorted((out / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
        if runs:
            result |= {"run": str(runs[-1]), "val_curve": val_curve(runs[-1], metric)}
            if (runs[-1] / "checkpoints" / "best.ckpt").is_file():
                result |= test_best(runs[-1], metric)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        return result
    wall = time.perf_counter() - t0
    run = max((out / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    metrics = json.loads((run / "metrics.json").read_text())
    result = {
        "dataset": dataset, "arm": arm, "seed": seed, "run": str(run), "wall_s": wall,
        f"{metric}_test": metrics[f"{metric}_test"], f"{metric}_train": metrics[f"{metric}_train"],
        "global_step": metrics["global_step"], "num_parameters": metrics.get("num_parameters"),
        "equivariance_error": metrics.get("equivariance_error"), "val_curve": val_curve(run, metric),
    }  # fmt: skip
    result |= test_best(run, metric)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))  # kept if a later run fails
    return result


def test_best(run: Path, metric: str = "psnr") -> dict:
    """Test metric of the checkpoint the validation split selected (``best.ckpt``), beside the final model's:
    ``enf test`` on the run's own config, logged to ``<run>/test_best/``."""
    name = f"{run.parent.name}_{run.name}_test_best"
    cmd = [sys.executable, "-m", "enf.cli", "test", "--config", str(run / "config.yaml"),
           "--ckpt_path", str(run / "checkpoints" / "best.ckpt"), "--trainer.enable_progress_bar", "false",
           "--trainer.logger.init_args.save_dir", str(run), "--trainer.logger.init_args.name", name,
           "--trainer.logger.init_args.version", "0"]  # fmt: skip
    with (run / "test_best.log").open("w") as f:
        subprocess.run(
            cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=os.environ | {"OMP_NUM_THREADS": "1"}
        )
    shutil.rmtree(run / "test_best", ignore_errors=True)
    (run / name / "version_0").rename(run / "test_best")
    (run / name).rmdir()
    best = json.loads((run / "test_best" / "metrics.json").read_text())
    return {f"{metric}_test_best": best[f"{metric}_test"]}


def val_curve(run: Path, metric: str = "psnr") -> list[tuple[float, int, float]]:
    """``(seconds since the first event, step, validation metric)`` from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run)).Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("val") and metric in t]
    if not tags:
        return []
    events = acc.Scalars(tags[0])
    t0 = min(e.wall_time for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag))
    return [(e.wall_time - t0, e.step, e.value) for e in events]


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    datasets = sorted({r["dataset"] for r in results})
    fig = Figure(figsize=(4.5 * len(datasets), 3.6), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    colours = {}
    for ax, dataset in zip(axes, datasets, strict=True):
        for r in (r for r in results if r["dataset"] == dataset and r.get("val_curve")):
            colour = colours.setdefault(r["arm"], f"C{len(colours)}")
            m = metric_of(dataset)
            t, _, v = zip(*r["val_curve"], strict=True)
            ax.plot([s / 60 for s in t], v, color=colour, alpha=0.8, label=f"{r['arm']} s{r['seed']}")
            end = r["val_curve"][-1][0] / 60
            if r.get(f"{m}_test") is not None:
                ax.scatter([end], [r[f"{m}_test"]], color=colour, marker="x", s=30)
            if f"{m}_test_best" in r:
                ax.scatter([end], [r[f"{m}_test_best"]], color=colour, marker="*", s=60)
        label = {"psnr": "PSNR (dB)", "iou": "IoU"}[metric_of(dataset)]
        ax.set(
            title=f"{dataset}: val {label.split()[0]}; test: best (*), final (x)",
            xlabel="wall-clock minutes",
            ylabel=label,
        )
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def table(results: list[dict]) -> str:
    """Markdown: per dataset and arm, the test metric (PSNR in dB, or IoU; validation-selected checkpoint and final
    model), mean ± std over seeds."""
    import statistics

    def stat(values: list[float], digits: int) -> str:
        if not values:
            return "–"
        spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.{digits}f}{spread}"

    rows = ["| dataset | arm | seeds | metric | test, best val ckpt | test, final | outer steps | parameters |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(r["dataset"], r["arm"]) for r in results}, key=lambda k: (k[0], k[1] != "baseline", k[1]))
    for dataset, arm in keys:
        runs = sorted(
            (r for r in results if (r["dataset"], r["arm"]) == (dataset, arm)), key=lambda r: r["seed"]
        )
        m = metric_of(dataset)
        digits = 2 if m == "psnr" else 3
        best = [r[f"{m}_test_best"] for r in runs if f"{m}_test_best" in r]
        final = [r[f"{m}_test"] for r in runs if r.get(f"{m}_test") is not None]
        failed = [f"s{r['seed']} failed" for r in runs if r.get("failed")]
        steps = "/".join(str(int(r["global_step"])) for r in runs if "global_step" in r) or "–"
        params = next((str(int(r["num_parameters"])) for r in runs if r.get("num_parameters")), "–")
        seeds = ",".join(str(r["seed"]) for r in runs)
        rows.append(
            f"| {dataset} | {arm} | {seeds} | {'PSNR (dB)' if m == 'psnr' else 'IoU'} | {stat(best, digits)} | {stat(final, digits)}{' (' + ', '.join(failed) + ')' if failed else ''} | {steps} | {params} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["mnist"], help="configs/fit/<name>.yaml (default: mnist)"
    )
    parser.add_argument(
        "--arms", nargs="+", default=["baseline", "recipe"], choices=sorted(ARMS), help="arms to run"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0], help="seed_everything values (default: 0)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="runs at a time, one torch thread each (default: 2)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/recipe"), help="output folder (default: runs/recipe)"
    )
    parser.add_argument(
        "--skip-done", action="store_true", help="skip the runs whose <out>/<run>.json exists"
    )
    parser.add_argument(
        "--collect", action="store_true", help="only gather finished runs into the table and figure"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(d, a, s) for s in args.seeds for d in args.datasets for a in args.arms]
    if args.skip_done:
        jobs = [(d, a, s) for d, a, s in jobs if not (args.out / f"{d}_{a}_s{s}.json").exists()]
    if not args.collect:
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda job: run_arm(*job, args.out), jobs))
    results = []
    for path in sorted(args.out.glob("*_s*.json")):
        result = json.loads(path.read_text())
        m = metric_of(result["dataset"])
        if f"{m}_test_best" not in result and not result.get("failed"):  # a run from before test_best existed
            result |= test_best(Path(result["run"]), m)
            path.write_text(json.dumps(result, indent=1))
        results.append(result)
    (args.out / "recipe_ablation.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "recipe_ablation.png")
    (args.out / "recipe_ablation.md").write_text(table(results) + "\n")
    print(table(results))
    for r in (r for r in results if not r.get("failed")):
        m = metric_of(r["dataset"])
        print(f"{r['dataset']:8s} {r['arm']:17s} seed {r['seed']}: test {m} {r[f'{m}_test']:.3f}, "
              f"{int(r['global_step'])} steps, {r['wall_s'] / 60:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
