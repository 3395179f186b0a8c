"""The reference-size outer step with the system's allocator settings and with ``enf``'s (``enf.cli.allocator``),
alternating, each in a fresh process (the setting is per process): ``enf bench`` with ``ENF_ALLOCATOR=system``
and without, ``--pairs`` times. Prints the outer-step times and page faults and writes them to ``--out``.

    python experiments/benchmarks/bench_allocator.py --geometry se2 --pairs 3 [--decoder head_hidden_dim=64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def bench(setting: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "enf.cli", "bench", "--geometry", args.geometry, "--threads", "1",
               "--repeats", str(args.repeats), "--out", str(out)]  # fmt: skip
        for option in args.decoder:
            cmd += ["--decoder", option]
        env = os.environ | {"ENF_ALLOCATOR": setting}
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--geometry", default="se2", help="registry name (default: se2)")
    parser.add_argument("--pairs", type=int, default=3, help="system/tuned pairs (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed outer steps per run (default: 3)")
    parser.add_argument("--decoder", action="append", default=[], metavar="KEY=VALUE",
                        help="extra EquivariantNeuralField argument, as for enf bench")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON file of every run")
    args = parser.parse_args()
    runs = {"system": [], "tuned": []}
    for _ in range(args.pairs):
        for setting in runs:
            runs[setting].append(bench(setting, args))
    print(f"{args.geometry} {' '.join(args.decoder)}: outer step (s), min of {args.repeats} per run")
    for setting, results in runs.items():
        times = [r["meta_sgd_outer_step_s"] for r in results]
        faults = [r["outer_step_page_faults"] for r in results]
        print(f"  {setting:6s} {' '.join(f'{t:.3f}' for t in times)}  mean {statistics.mean(times):.3f}  "
              f"page faults per step {statistics.mean(faults):,.0f}  ({results[0]['allocator']})")  # fmt: skip
    ratio = statistics.mean(r["meta_sgd_outer_step_s"] for r in runs["system"]) / statistics.mean(
        r["meta_sgd_outer_step_s"] for r in runs["tuned"]
    )
    print(f"  speed-up of the tuned allocator: {ratio:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"speed_up": ratio, **runs}, indent=1))


if __name__ == "__main__":
    main()
