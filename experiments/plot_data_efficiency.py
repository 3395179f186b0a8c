"""Test MSE against the number of training trajectories, per model, from ``experiments/forecast.py`` results.

    python experiments/plot_data_efficiency.py experiments/results/diffusion_sphere_16traj_steps01.json \\
        experiments/results/diffusion_sphere_64traj.json --out figures/forecast_diffusion_sphere_data.png

Each results file is one training-set size (its ``num_train`` argument), all of one dataset and budget
(``--fit-time``, ``--ode-time``); a model's point is the mean over
its seeds of ``--metric`` (error bars: the spread over seeds). ``--published`` adds the sphere-diffusion
values read off the published log-scale figure (approximate, ``notes/paper-results.md`` section 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# equivariant / non-equivariant ENF, test in-horizon MSE, read off the published figure (approximate)
PUBLISHED_SPHERE = {
    "equivariant": {16: 8e-5, 32: 3.5e-5, 64: 3e-5},
    "nonequivariant": {16: 3e-3, 64: 1.3e-3},
}


SAME = ("dataset", "fit_time", "ode_time")  # what every results file of one figure must share


def collect(paths: list[Path], metric: str) -> tuple[str, dict[str, dict[int, list[float]]]]:
    """The dataset and ``{model: {num_train: [metric of every seed]}}``; files of another dataset or
    budget than the first are refused."""
    points: dict[str, dict[int, list[float]]] = {}
    first: dict | None = None
    for path in paths:
        record = json.loads(path.read_text())
        args = record["args"]
        first = first or {key: args.get(key) for key in SAME}
        if (other := {key: args.get(key) for key in SAME}) != first:
            raise SystemExit(f"{path}: {other} differs from {paths[0]}: {first}; plot like with like")
        if args.get("num_train") is None:
            raise SystemExit(
                f"{path}: no num_train in its args; rerun experiments/forecast.py with --num-train"
            )
        for run in record["runs"]:
            if metric not in run["metrics"]:
                raise SystemExit(
                    f"{path}: run {run['run']} has no {metric!r}; choose one of {sorted(run['metrics'])}"
                )
            points.setdefault(run["model"], {}).setdefault(int(args["num_train"]), []).append(
                run["metrics"][metric]
            )
    return first["dataset"], points


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path, help="experiments/forecast.py results JSON files")
    parser.add_argument("--metric", default="mse_test_in")
    parser.add_argument("--published", action="store_true", help="add the published sphere-diffusion values")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from enf.plotting import save_figure

    dataset, points = collect(args.results, args.metric)
    if args.published and dataset != "diffusion_sphere":
        raise SystemExit(f"--published holds the sphere-diffusion values only, not {dataset}'s")
    colors = {model: f"C{i}" for i, model in enumerate(sorted(points.keys() | PUBLISHED_SPHERE.keys()))}
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    sizes_seen: set[int] = set()
    for model, rows in sorted(points.items()):
        sizes = sorted(rows)
        sizes_seen.update(sizes)
        mean = [np.mean(rows[n]) for n in sizes]
        std = [np.std(rows[n]) for n in sizes]
        ax.errorbar(
            sizes, mean, yerr=std, marker="o", capsize=3, color=colors[model], label=f"{model}, measured"
        )
        for n, m in zip(sizes, mean, strict=True):
            print(f"{model:>16s}  num_train {n:4d}  {args.metric} {m:.3e}  ({len(rows[n])} seed(s))")
    if args.published:
        for model, rows in PUBLISHED_SPHERE.items():
            sizes_seen.update(rows)
            ax.plot(list(rows), list(rows.values()), linestyle="--", marker="x", alpha=0.6, color=colors[model],
                    label=f"{model}, published (GPU, approximate)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(sizes_seen), [str(n) for n in sorted(sizes_seen)])
    ax.set_xlabel("training trajectories")
    ax.set_ylabel(args.metric)
    ax.set_title(f"{dataset}: test MSE against training-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
