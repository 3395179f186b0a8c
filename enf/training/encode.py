"""``enf encode``: fit latents to every signal of a dataset split with a trained model, write HDF5."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from enf import __version__
from enf.data import keys
from enf.data.hdf5 import write_h5
from enf.training.checkpoints import load_fit_checkpoint

__all__ = ["check_writable", "encode_main", "encode_split", "load_datamodule_from_run"]

log = logging.getLogger(__name__)


def load_datamodule_from_run(config_path: Path, *, overrides: dict | None = None):
    """Instantiate the ``data`` section of a run's resolved ``config.yaml``."""
    if not config_path.is_file():
        raise FileNotFoundError(
            f"no run config at {config_path}; pass --config pointing at the run's config.yaml"
        )
    cfg = yaml.safe_load(config_path.read_text()) or {}
    data = cfg.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{config_path}: expected a 'data' section with class_path/init_args")
    module_name, _, cls_name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    kwargs = dict(data.get("init_args") or {})
    kwargs.update(overrides or {})
    return cls(**kwargs)


def check_writable(path: str | Path) -> Path:
    """Fail now, not after the work, if ``path`` cannot be written (creates its folder)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name such as {path / 'latents.h5'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}; choose a writable --out") from None
    return path


def encode_split(
    module, loader, *, num_steps: int | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """Encode every batch of ``loader``: latents, per-signal metrics (``module.metric_names``) and, where the
    items carry them, ``trajectory``/``frame``/``time`` (PDE frames) and ``label``, as arrays."""
    names = ("poses", "context", "window", "index", *module.metric_names)
    out: dict[str, list[np.ndarray]] = {k: [] for k in names}
    module.eval()
    for batch in tqdm(loader, desc="encode", disable=not progress):
        batch = {k: (v.to(module.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        coords, signal = module.unpack(batch)
        z = module.encode(batch, train=False, num_steps=num_steps)
        with torch.no_grad():
            metrics = module.sample_metrics(module.decoder(coords, z), signal)
        out["poses"].append(z.poses.cpu().numpy())
        out["context"].append(z.context.cpu().numpy())
        out["window"].append(z.window.cpu().numpy())
        out["index"].append(batch[keys.INDEX].cpu().numpy())
        for name, value in metrics.items():
            out[name].append(value.cpu().numpy())
        for key in (keys.TRAJECTORY, keys.FRAME, keys.TIME, keys.LABEL):  # PDE frames / labelled images
            if key in batch:
                out.setdefault(key, []).append(torch.as_tensor(batch[key]).cpu().numpy())
    if not out["poses"]:
        raise ValueError("nothing to encode: the data loader is empty")
    return {k: np.concatenate(v) for k, v in out.items()}


def encode_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="enf encode",
        description="Fit latents to a dataset split with a trained model and write them to HDF5.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--ckpt", required=True, help="checkpoint of an `enf fit` run (e.g. .../checkpoints/last.ckpt)"
    )
    parser.add_argument(
        "--config", default=None, help="the run's config.yaml (default: next to checkpoints/)"
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--num-steps", type=int, default=None, help="inner steps (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--root", default=None, help="override the dataset root of the run")
    args = parser.parse_args(argv)
    if args.num_steps is not None and args.num_steps < 0:
        parser.error(f"--num-steps must be >= 0, got {args.num_steps}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")

    try:
        out = check_writable(args.out)
        fit = load_fit_checkpoint(args.ckpt)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"enf encode: {exc}") from None
    ckpt = Path(args.ckpt)
    config = Path(args.config) if args.config else ckpt.parent.parent / "config.yaml"
    overrides = {k: v for k, v in (("root", args.root), ("batch_size", args.batch_size)) if v is not None}
    dm = load_datamodule_from_run(config, overrides=overrides)
    module = fit.module
    t0 = time.perf_counter()
    arrays = encode_split(module, dm.eval_dataloader(args.split), num_steps=args.num_steps)
    elapsed = time.perf_counter() - t0
    attrs = {
        "geometry": module.geometry.name,
        "pose_dim": module.geometry.pose_dim,
        "split": args.split,
        "checkpoint": str(ckpt),
        "fitter": type(module.fitter).__name__,
        "enf_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "mean_mse": float(arrays["mse"].mean()),
    }
    if "psnr" in arrays:
        attrs["mean_psnr"] = float(arrays["psnr"].mean())
    write_h5(out, arrays, attrs)
    log.info(
        "encoded %d signals in %.1f s: mean MSE %.4g -> %s",
        len(arrays["index"]),
        elapsed,
        attrs["mean_mse"],
        out,
    )
