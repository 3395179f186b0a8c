"""The ``enf`` command line.

enf fit|validate|test --config configs/<task>.yaml [--trainer.max_epochs ...]   (LightningCLI)
enf data list | generate <name> --preset small --out data/<name> | show <file.h5> --out traj.png
enf encode --ckpt runs/<name>/version_0/checkpoints/last.ckpt --split test --out latents.h5
enf bench [--geometry se2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")
USAGE = __doc__


def _lightning(argv: Sequence[str]) -> None:
    from enf.training.cli import run_lightning_cli

    run_lightning_cli(list(argv))


def _encode(argv: Sequence[str]) -> None:
    from enf.training.encode import encode_main

    encode_main(list(argv))


def _data(argv: Sequence[str]) -> None:
    from enf.data.pde.cli import data_main

    data_main(list(argv))


def _bench(argv: Sequence[str]) -> None:
    from enf.benchmark import run_benchmark
    from enf.io import write_json_atomic

    parser = argparse.ArgumentParser(prog="enf bench", description="Decoder and Meta-SGD step throughput.")
    parser.add_argument("--geometry", default="translation2d")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-latents", type=int, default=144)
    parser.add_argument("--k-nearest", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--out", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    result = run_benchmark(
        geometry=args.geometry,
        device=args.device,
        repeats=args.repeats,
        num_latents=args.num_latents,
        k_nearest=args.k_nearest,
        batch_size=args.batch_size,
        first_order=args.first_order,
    )
    print(json.dumps(result, indent=2))
    if args.out:
        write_json_atomic(args.out, result)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        _lightning(argv)
    elif command == "encode":
        _encode(rest)
    elif command == "data":
        _data(rest)
    elif command == "bench":
        _bench(rest)
    else:
        print(f"enf: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
