"""3-D shape classification (labelled primitives: sphere, box, torus, capsule), side by side at one budget.

Arms (``configs/classify/<arm>.yaml``), all started at once with one torch thread each:

- ``primitives``: se3 latents (moment-posed encoder, ``configs/fit/primitives_se3.yaml``), se3 classifier;
- ``primitives_translation``: the same se3 latents read by a translation3d classifier (positions, no frames);
- ``primitives_t3d``: translation3d latents (``configs/fit/primitives_translation3d.yaml``, one shared initial
  latent) and a translation3d classifier: the non-equivariant pipeline.

The training shapes are axis-aligned; ``accuracy_test_rotated`` encodes the 200 test shapes again after random
rotations. With ``--fit`` the two encoders are fitted first, side by side, one thread each, ``--fit-max-time``
each. Writes ``<out>/classify_shapes.json`` (every run's ``metrics.json``) and prints a table.

    python experiments/classify_shapes.py --fit --out runs/classify_shapes
    python experiments/classify_shapes.py --se3-checkpoint runs/primitives_se3/version_0/checkpoints/best.ckpt \\
        --t3d-checkpoint runs/primitives_translation3d/version_0/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from classify_mnist import run  # the same subprocess runner (one log per run)

REPO = Path(__file__).resolve().parents[1]
#: arm -> the encoder it reads (its fit config)
ARMS = {"primitives": "primitives_se3", "primitives_translation": "primitives_se3",
        "primitives_t3d": "primitives_translation3d"}  # fmt: skip


def latest(folder: Path) -> Path:
    return max(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def fit(name: str, args: argparse.Namespace) -> dict:
    """``enf fit`` of ``configs/fit/<name>.yaml`` (one thread), its metrics and best checkpoint."""
    cmd = [sys.executable, "-m", "enf.cli", "fit", "--config", str(REPO / "configs" / "fit" / f"{name}.yaml"),
           "--trainer.max_time", args.fit_max_time, "--seed_everything", str(args.seed),
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(args.out),
           "--trainer.logger.init_args.name", name]  # fmt: skip
    wall = run(cmd, args.out / f"fit_{name}.log", 1)
    version = latest(args.out / name)
    metrics = json.loads((version / "metrics.json").read_text())
    return {
        "config": name,
        "wall_s": wall,
        "checkpoint": str(version / "checkpoints" / "best.ckpt"),
        **metrics,
    }


def classify(arm: str, checkpoint: str, args: argparse.Namespace) -> dict:
    name = f"classify_{arm}_s{args.seed}"
    cmd = [sys.executable, "-m", "enf.cli", "classify", "fit", "--config", str(REPO / "configs" / "classify" / f"{arm}.yaml"),
           "--trainer.max_time", args.max_time, "--seed_everything", str(args.seed),
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(args.out),
           "--trainer.logger.init_args.name", name, "--model.fit_checkpoint", checkpoint]  # fmt: skip
    wall = run(cmd, args.out / f"{name}.log", 1)
    version = latest(args.out / name)
    metrics = json.loads((version / "metrics.json").read_text())
    return {
        "arm": arm,
        "encoder": ARMS[arm],
        "seed": args.seed,
        "wall_s": wall,
        "run": str(version),
        **metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fit", action="store_true", help="fit both encoders first (side by side)")
    parser.add_argument("--fit-max-time", default="00:00:25:00", help="budget of each encoder fit")
    parser.add_argument(
        "--se3-checkpoint", help="configs/fit/primitives_se3.yaml's best.ckpt (without --fit)"
    )
    parser.add_argument("--t3d-checkpoint", help="configs/fit/primitives_translation3d.yaml's best.ckpt")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--max-time", default="00:00:15:00", help="training budget of every classifier arm")
    parser.add_argument("--seed", type=int, default=0, help="seed_everything of every run")
    parser.add_argument("--out", type=Path, default=Path("runs/classify_shapes"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoints = {"primitives_se3": args.se3_checkpoint, "primitives_translation3d": args.t3d_checkpoint}
    fits = []
    if args.fit:
        with ThreadPoolExecutor(2) as pool:
            fits = list(pool.map(lambda name: fit(name, args), checkpoints))
        checkpoints = {f["config"]: f["checkpoint"] for f in fits}
    missing = sorted({ARMS[a] for a in args.arms if not checkpoints[ARMS[a]]})
    if missing:
        parser.error(f"no checkpoint for {missing}: pass --fit or --se3-checkpoint / --t3d-checkpoint")
    with ThreadPoolExecutor(len(args.arms)) as pool:
        results = list(pool.map(lambda arm: classify(arm, checkpoints[ARMS[arm]], args), args.arms))
    summary = {"max_time": args.max_time, "fit_max_time": args.fit_max_time if args.fit else None,
               "checkpoints": checkpoints, "fits": fits, "arms": results}  # fmt: skip
    (args.out / "classify_shapes.json").write_text(json.dumps(summary, indent=1))
    print("| arm | encoder | steps | accuracy_test | accuracy_test_rotated | change (points) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        change = 100 * (r["accuracy_test_rotated"] - r["accuracy_test"])
        print(f"| {r['arm']} | {r['encoder']} | {int(r['global_step'])} | {r['accuracy_test']:.3f} | "
              f"{r['accuracy_test_rotated']:.3f} | {change:+.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
