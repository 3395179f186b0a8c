"""Benchmark the ENF decoder and a Meta-SGD outer step (issue 2, item 8).

CIFAR-size setting by default: 32x32 RGB, 144 latents, k = 9, hidden 128, 2 heads, batch 8,
1,024 sampled pixels, 3 inner steps, second-order gradients.

    python experiments/benchmarks/bench_decoder.py [--device cuda] [--geometry se2]
"""

from __future__ import annotations

import argparse
import json

from enf.benchmark import run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--geometry", default="translation2d")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--first-order", action="store_true")
    args = parser.parse_args()
    result = run_benchmark(
        geometry=args.geometry, device=args.device, repeats=args.repeats, first_order=args.first_order
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
