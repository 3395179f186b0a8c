"""The ``enf`` command line.

enf fit|validate|test --config configs/fit/<dataset>.yaml [--trainer.max_epochs ...]   (LightningCLI)
enf data list | generate <name> --preset small --out data/<name> | show <file.h5> --out traj.png
enf encode --ckpt runs/<name>/version_0/checkpoints/last.ckpt --split test --out latents.h5
           [--store-signal] [--rotate random|DEG --rotation-seed S]
enf forecast fit|validate|test --config configs/forecast/<dataset>.yaml --model.fit_checkpoint <fit ckpt>
enf forecast --ckpt runs/forecast_<name>/version_0/checkpoints/last.ckpt --data data/<name>/test.h5
             [--observed-fraction 0.05] [--horizon T] [--grid full] --out forecast.h5
enf edit --ckpt runs/mnist/version_0/checkpoints/last.ckpt --index 3 --select radius:0,0,0.4 --rotate 30 --out edit/
enf edit --ckpt runs/mnist/version_0/checkpoints/last.ckpt --serve [--port 8000]    (page at http://127.0.0.1:8000/)
enf shape fit|validate|test --config configs/shape/trilobite.yaml                      (shape VAE, landmarks)
enf shape fit --config configs/shape/mnist.yaml           (shape VAE on ENF latent clouds, loss on the image)
enf shape export --ckpt runs/shape_trilobite/version_0/checkpoints/last.ckpt --split test --out codes.h5
enf classify fit|validate|test --config configs/classify/mnist.yaml      (classifiers on latent point clouds)
enf bench [--geometry se2] [--device cuda]
enf --version
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from enf.cli.allocator import tune_allocator
from enf.cli.text import plain_text, short_error

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")
USAGE = __doc__
SHAPE_USAGE = (
    "usage: enf shape fit|validate|test --config configs/shape/<dataset>.yaml [...]   (the shape VAE)\n"
    "       enf shape export --ckpt <ckpt> --out codes.h5 [...]                (see enf shape export --help)"
)


def _lightning(argv: Sequence[str], *, task: str = "fit") -> None:
    from enf.cli.lightning import run_lightning_cli

    # LightningCLI reads sys.argv itself; passing the same words again only makes it warn. sys.argv[0] stays:
    # Lightning's DDP launcher re-runs it in the other processes.
    saved = sys.argv
    prefix = [] if task == "fit" else [task]
    sys.argv = [saved[0] if saved else "enf", *prefix, *argv]
    try:
        if task == "fit":
            run_lightning_cli(None, task=task)
        else:
            # `enf forecast fit ...`: LightningCLI would read "forecast" from sys.argv, so it gets the words
            # (sys.argv keeps them all for the DDP launcher; LightningCLI's warning about both is moot here)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                run_lightning_cli(list(argv), task=task)
    except SystemExit as exc:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exc, SIGTERMException):  # Lightning's exit on SIGTERM carries no code (0): say 143
            sys.stderr.write(
                f"enf {' '.join(prefix + [argv[0]])}: terminated (SIGTERM); checkpoints/interrupted.ckpt holds "
                "the progress (resume with --ckpt_path)\n"
            )
            raise SystemExit(143) from None
        raise
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        if os.environ.get("ENF_DEBUG"):
            raise
        # A bad value found while building the model/data: one clear line instead of a traceback.
        sys.stderr.write(
            f"enf {' '.join(prefix + [argv[0]])}: error: {short_error(str(exc))}\n(set ENF_DEBUG=1 for the traceback)\n"
        )
        raise SystemExit(2) from None
    finally:
        sys.argv = saved


def _encode(argv: Sequence[str]) -> None:
    from enf.cli.encode import encode_main

    encode_main(list(argv))


def _forecast(argv: Sequence[str]) -> None:
    if argv and argv[0] in LIGHTNING_COMMANDS:
        _lightning(argv, task="forecast")
        return
    from enf.cli.forecast import forecast_main

    forecast_main(list(argv))


def _task(argv: Sequence[str], *, task: str, usage: str, extra: dict | None = None) -> None:
    """``enf <task> fit|validate|test ...`` (LightningCLI) or one of the ``extra`` subcommands (name ->
    function of the remaining words); help prints ``usage``, anything else exits with it."""
    extra = extra or {}
    if argv and argv[0] in LIGHTNING_COMMANDS:
        _lightning(argv, task=task)
    elif argv and argv[0] in ("-h", "--help"):
        print(usage)
    elif argv and argv[0] in extra:
        extra[argv[0]](list(argv[1:]))
    elif not argv:
        raise SystemExit(f"enf {task}: give a subcommand\n{usage}")
    else:
        raise SystemExit(f"enf {task}: unknown subcommand {argv[0]!r}\n{usage}")


def _shape_export(argv: list[str]) -> None:
    from enf.cli.shape_export import shape_main

    shape_main(argv)


CLASSIFY_USAGE = "usage: enf classify fit|validate|test --config configs/classify/<name>.yaml [...]"


def _edit(argv: Sequence[str]) -> None:
    from enf.cli.edit import edit_main

    edit_main(list(argv))


def _data(argv: Sequence[str]) -> None:
    from enf.cli.data import data_main

    data_main(list(argv))


def _key_values(parser: argparse.ArgumentParser, flag: str, items: Sequence[str]) -> dict[str, object]:
    """``["a=1", "b=true"] -> {"a": 1, "b": True}`` (values read as YAML), or a usage error naming the item."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"{flag} expects KEY=VALUE with KEY a Python identifier, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _bench(argv: Sequence[str]) -> None:
    from enf.benchmark import run_benchmark, run_latent_sweep
    from enf.io import write_json_atomic

    parser = argparse.ArgumentParser(
        prog="enf bench",
        description="Decoder and Meta-SGD step throughput at the JAX reference's CIFAR-size widths "
        "(32x32 RGB, context 64, 2 heads x 128, 144 latents, k 9, batch 8, 3 inner steps, second order).",
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--geometry", default="translation2d", help="registry name (enf.geometry.get)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions after a warm-up")
    parser.add_argument("--num-latents", type=int, default=144, help="latents per signal")
    parser.add_argument("--k-nearest", type=int, default=9, help="latents each coordinate attends to")
    parser.add_argument("--k-nearest-mode", default="auto", choices=["auto", "gather", "mask"],
                        help="the decoder's k-nearest implementation (see the architecture docs)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="signals per outer step")
    parser.add_argument("--first-order", action="store_true", help="first-order Meta-SGD outer step")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (None: torch's)")
    parser.add_argument(
        "--sweep", action="store_true", help="attention time at each --sweep-latents (fixed k)"
    )
    parser.add_argument("--sweep-latents", type=int, nargs="+", default=[144, 576],
                        help="latent counts of --sweep")  # fmt: skip
    parser.add_argument("--decoder", action="append", default=[], metavar="KEY=VALUE",
                        help="extra EquivariantNeuralField argument (YAML value), e.g. head_hidden_dim=64; "
                        "repeatable")  # fmt: skip
    parser.add_argument("--fitter", action="append", default=[], metavar="KEY=VALUE",
                        help="extra MetaSGD argument (YAML value), e.g. per_step_lr=true; repeatable")  # fmt: skip
    parser.add_argument("--matmul-precision", default=None, choices=["highest", "high", "medium"],
                        help="torch.set_float32_matmul_precision for the run (None: unchanged)")  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    common = dict(
        geometry=args.geometry,
        device=args.device,
        repeats=args.repeats,
        k_nearest=args.k_nearest,
        k_nearest_mode=args.k_nearest_mode,
        batch_size=args.batch_size,
        first_order=args.first_order,
        num_threads=args.threads,
        decoder_options=_key_values(parser, "--decoder", args.decoder),
        fitter_options=_key_values(parser, "--fitter", args.fitter),
        matmul_precision=args.matmul_precision,
    )
    try:
        if args.sweep:
            result = run_latent_sweep(num_latents=args.sweep_latents, **common)
        else:
            result = run_benchmark(num_latents=args.num_latents, **common)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"enf bench: {exc}") from None
    print(json.dumps(result, indent=2))
    if args.out:
        write_json_atomic(args.out, result)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning prints its own messages through the handler `import lightning` puts on its logger; without
    # this they would also reach the root handler above and print twice
    logging.getLogger("lightning").propagate = False
    if not argv or argv[0] in ("-h", "--help"):
        print(plain_text(USAGE))
        return
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"enf {version('enf')}")
        return
    try:
        tune_allocator()  # large CPU tensors stay on the heap: no page faults per step (enf.cli.allocator)
    except ValueError as exc:
        raise SystemExit(f"enf: {exc}") from None
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        _lightning(argv)
    elif command == "encode":
        _encode(rest)
    elif command == "forecast":
        _forecast(rest)
    elif command == "edit":
        _edit(rest)
    elif command == "shape":
        _task(rest, task="shape", usage=SHAPE_USAGE, extra={"export": _shape_export})
    elif command == "classify":
        _task(rest, task="classify", usage=CLASSIFY_USAGE)
    elif command == "data":
        _data(rest)
    elif command == "bench":
        _bench(rest)
    else:
        print(f"enf: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
