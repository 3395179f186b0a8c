"""``enf data``: list, generate and show PDE datasets."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

__all__ = ["data_main"]

log = logging.getLogger(__name__)


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"enf data generate: --set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def data_main(argv: list[str]) -> None:
    from enf.data.pde import get_spec, spec_names

    parser = argparse.ArgumentParser(prog="enf data", description="PDE datasets: list, generate, show.")
    fmt = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered generators and their presets")
    gen = sub.add_parser("generate", help="generate train.h5 and test.h5 (resumable)", **fmt)
    gen.add_argument("name", choices=spec_names(), help="the PDE dataset (enf data list describes them)")
    gen.add_argument("--preset", default="small", help="parameter preset of the dataset (enf data list)")
    gen.add_argument("--out", type=Path, default=None, help="output folder (None: data/<name>)")
    gen.add_argument("--seed", type=int, default=0, help="base seed; trajectory i uses its own stream")
    gen.add_argument("--num-train", type=int, default=None, help="training trajectories (None: the preset's)")
    gen.add_argument("--num-test", type=int, default=None, help="test trajectories (None: the preset's)")
    gen.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override preset parameters")
    gen.add_argument("--chunk-size", type=int, default=8, help="trajectories simulated per batch")
    gen.add_argument("--threads", type=int, default=None, help="torch intra-op threads (None: torch's)")
    show = sub.add_parser("show", help="render a trajectory to PNG or GIF", **fmt)
    show.add_argument("file", type=Path, help="a train.h5 or test.h5 written by enf data generate")
    show.add_argument("--index", type=int, default=0, help="trajectory to render")
    show.add_argument("--channel", type=int, default=0, help="field channel to render")
    show.add_argument("--out", type=Path, required=True, help="output .png or .gif")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in spec_names():
            try:
                spec = get_spec(name)
            except ImportError as err:
                print(f"{name}: unavailable ({err})")
                continue
            print(
                f"{name}: geometry={spec.geometry} channels={list(spec.channel_names)} presets={sorted(spec.presets)}"
            )
            print(f"    {spec.equation}")
        return
    if args.command == "show":
        from enf.plotting.pde import render_trajectory

        try:
            out = render_trajectory(args.file, args.out, index=args.index, channel=args.channel)
        except (FileNotFoundError, ValueError, OSError) as err:
            raise SystemExit(f"enf data show: {err}") from err
        log.info("wrote %s", out)
        return

    from enf.data.pde.io import generate_split

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    spec = get_spec(args.name)
    overrides = _parse_set(args.set)
    for key in ("num_train", "num_test"):  # --num-train wins over --set num_train=...; unset leaves it
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    try:
        params = spec.params(args.preset, **overrides)
    except ValueError as err:
        raise SystemExit(f"enf data generate: {err}") from err
    out = args.out or Path("data") / spec.name
    t0 = time.perf_counter()
    for split in ("train", "test"):
        try:
            path = generate_split(
                spec, params, split=split, out_dir=out, seed=args.seed, chunk_size=args.chunk_size
            )
        except ImportError as err:  # an optional solver (Dedalus, torch-harmonics) is missing
            hint = "" if "install" in str(err) else ' (pip install -e ".[pde]" for the sphere generators)'
            raise SystemExit(f"enf data generate {spec.name}: {err}{hint}") from err
        except ValueError as err:  # e.g. --num-train 0
            raise SystemExit(f"enf data generate {spec.name}: {err}") from err
        log.info("wrote %s", path)
    log.info("%s (%s preset): %.1f s", spec.name, args.preset, time.perf_counter() - t0)
