"""Benchmark the ENF decoder and a Meta-SGD outer step: ``enf bench`` with the same flags.

JAX-reference CIFAR setting by default: 32x32 RGB (1,024 sampled pixels), 144 latents, k = 9, context 64,
2 heads x 128 (hidden_dim 256), batch 8, 3 inner steps, second-order gradients, Adam. Times are the minimum
over --repeats. --sweep times the attention at L = 144 and 576 (fixed k): it should stay roughly flat.
Recipe options go in as ``--decoder KEY=VALUE`` / ``--fitter KEY=VALUE``.

    python experiments/benchmarks/bench_decoder.py [--device cuda] [--geometry se2] [--threads 2] [--sweep]
    python experiments/benchmarks/bench_decoder.py --geometry se2 --threads 1 --decoder head_hidden_dim=64
"""

from __future__ import annotations

import sys

from enf.cli.main import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
