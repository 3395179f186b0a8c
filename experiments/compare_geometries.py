"""Compare geometries on the bundled image datasets under the same optimisation budget.

Runs ``enf fit`` for every (dataset config, geometry) pair with the same number of outer steps and batch
size, then prints a Markdown table of test PSNR, equivariance error and wall time from each run's
``metrics.json``.

    python experiments/compare_geometries.py --steps 200 --out runs/compare
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

GEOMETRIES = ("absolute2d", "translation2d", "se2")
CONFIGS = {"mnist": "configs/fit/mnist.yaml", "natural": "configs/fit/natural.yaml"}


def run(config: str, geometry: str, *, steps: int, batch_size: int, out: Path) -> dict:
    name = f"{Path(config).stem}_{geometry}"
    cmd = [
        sys.executable,
        "-m",
        "enf.cli",
        "fit",
        "--config",
        config,
        "--model.decoder.init_args.geometry",
        geometry,
        "--trainer.max_steps",
        str(steps),
        "--trainer.max_time",
        "null",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(out),
        "--trainer.logger.init_args.name",
        name,
        "--data.init_args.batch_size",
        str(batch_size),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    runs = sorted((out / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    metrics = json.loads((runs[-1] / "metrics.json").read_text())
    metrics["wall_s"] = wall
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        for geometry in GEOMETRIES:
            m = run(CONFIGS[dataset], geometry, steps=args.steps, batch_size=args.batch_size, out=args.out)
            rows.append((dataset, geometry, m))
            print(f"{dataset} {geometry}: {json.dumps(m)}", flush=True)
    lines = [
        "| dataset | geometry | test PSNR (dB) | train PSNR (dB) | equivariance error | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, geometry, m in rows:
        lines.append(
            f"| {dataset} | {geometry} | {m['psnr_test']:.2f} | {m['psnr_train']:.2f} | "
            f"{m['equivariance_error']:.1e} | {m['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
