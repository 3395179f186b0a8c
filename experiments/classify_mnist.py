"""MNIST classification from latent clouds, side by side: the ENF encodes the training and validation digits once
(``enf encode``, with all ``--workers`` threads), then every arm trains at the same wall-clock budget, ``--workers`` at a time with one torch
thread each, and reads the same latent files (``model.latent_files``); the test digits, upright and rotated, are
encoded by each run. Writes ``<out>/classify_mnist.json`` (every arm's ``metrics.json``) and prints a table.

    enf fit --config configs/fit/mnist_se2.yaml
    python experiments/classify_mnist.py --fit-checkpoint runs/mnist_se2/version_0/checkpoints/best.ckpt \\
        --arms mnist mnist_absolute --max-time 00:00:20:00
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: arm -> configs/classify/<arm>.yaml; the latent arms read the encoded files
LATENT_ARMS = ("mnist", "mnist_absolute")
OTHER_ARMS = ("mnist_cnn", "mnist_e2e")


def run(cmd: list[str], log: Path, threads: int) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=True)
    return time.perf_counter() - t0


def encode(ckpt: str, out: Path, threads: int) -> dict[str, float]:
    """``enf encode --split train|val`` of the checkpoint, one split after the other; seconds per split."""
    times = {}
    for split in ("train", "val"):
        cmd = [sys.executable, "-m", "enf.cli", "encode", "--ckpt", ckpt, "--split", split,
               "--out", str(out / f"latents_{split}.h5")]  # fmt: skip
        times[split] = run(cmd, out / f"encode_{split}.log", threads)
    return times


def classify(arm: str, args: argparse.Namespace) -> dict:
    name = f"classify_{arm}_s{args.seed}"
    cmd = [sys.executable, "-m", "enf.cli", "classify", "fit", "--config", str(REPO / "configs" / "classify" / f"{arm}.yaml"),
           "--trainer.max_time", args.max_time, "--seed_everything", str(args.seed),
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(args.out),
           "--trainer.logger.init_args.name", name]  # fmt: skip
    if arm != "mnist_cnn":
        cmd += ["--model.fit_checkpoint", args.fit_checkpoint]
    if arm in LATENT_ARMS:
        files = {s: str(args.out / f"latents_{s}.h5") for s in ("train", "val")}
        cmd += ["--model.latent_files", json.dumps(files)]
    wall = run(cmd, args.out / f"{name}.log", 1)
    version = max((args.out / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    metrics = json.loads((version / "metrics.json").read_text())
    return {"arm": arm, "seed": args.seed, "wall_s": wall, "run": str(version), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fit-checkpoint", required=True, help="the ENF (enf fit on configs/fit/mnist_se2.yaml)"
    )
    parser.add_argument("--arms", nargs="+", default=list(LATENT_ARMS), choices=[*LATENT_ARMS, *OTHER_ARMS])
    parser.add_argument(
        "--max-time", default="00:00:20:00", help="training budget of every arm (DD:HH:MM:SS)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed_everything of every arm")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one torch thread each")
    parser.add_argument("--out", type=Path, default=Path("runs/classify_mnist"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encode_s = {}
    if any(a in LATENT_ARMS for a in args.arms) and not (args.out / "latents_val.h5").is_file():
        encode_s = encode(args.fit_checkpoint, args.out, args.workers)  # threads
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda arm: classify(arm, args), args.arms))
    summary = {"fit_checkpoint": args.fit_checkpoint, "max_time": args.max_time, "encode_s": encode_s,
               "arms": results}  # fmt: skip
    (args.out / "classify_mnist.json").write_text(json.dumps(summary, indent=1))
    print("| arm | steps | accuracy_test | accuracy_test_rotated | change (points) |")
    print("|---|---|---|---|---|")
    for r in results:
        rotated = r.get("accuracy_test_rotated")
        change = "–" if rotated is None else f"{100 * (rotated - r['accuracy_test']):+.1f}"
        print(f"| {r['arm']} | {int(r['global_step'])} | {r['accuracy_test']:.3f} | "
              f"{'–' if rotated is None else f'{rotated:.3f}'} | {change} |")  # fmt: skip


if __name__ == "__main__":
    main()
