"""Benchmark the ENF decoder and a Meta-SGD outer step.

JAX-reference CIFAR setting by default: 32x32 RGB (1,024 sampled pixels), 144 latents, k = 9, context 64,
2 heads x 128 (hidden_dim 256), batch 8, 3 inner steps, second-order gradients, Adam. Times are the minimum
over --repeats. --sweep times the attention at L = 144 and 576 (fixed k): it should stay roughly flat.

    python experiments/benchmarks/bench_decoder.py [--device cuda] [--geometry se2] [--threads 2] [--sweep]
"""

from __future__ import annotations

import argparse
import json

from enf.benchmark import run_benchmark, run_latent_sweep


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--geometry", default="translation2d")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-latents", type=int, default=144)
    parser.add_argument("--k-nearest", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="attention time at L = 144 and 576 (fixed k)")
    parser.add_argument("--sweep-latents", type=int, nargs="+", default=[144, 576])
    args = parser.parse_args()
    common = dict(
        geometry=args.geometry,
        device=args.device,
        repeats=args.repeats,
        batch_size=args.batch_size,
        first_order=args.first_order,
        num_threads=args.threads,
    )
    if args.sweep:
        result = run_latent_sweep(num_latents=args.sweep_latents, k_nearest=args.k_nearest, **common)
    else:
        result = run_benchmark(num_latents=args.num_latents, k_nearest=args.k_nearest, **common)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
