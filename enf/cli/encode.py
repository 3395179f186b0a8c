"""``enf encode``: fit latents to every signal of a dataset split with a trained model, write HDF5."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from enf import __version__
from enf.data import keys
from enf.data.grid import image_to_signal, rotate_images, signal_to_image
from enf.data.hdf5 import write_h5
from enf.training.checkpoints import load_fit_checkpoint
from enf.training.run_folder import load_datamodule_from_run

__all__ = ["check_writable", "encode_main", "encode_split", "rotation_angles"]

log = logging.getLogger(__name__)


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


def rotation_angles(num_signals: int, rotate: str, *, seed: int = 0) -> np.ndarray:
    """Angles (radians) by which ``enf encode --rotate`` turns the signals ``0..num_signals-1``.

    ``rotate``: ``"random"`` (uniform in ``[0, 2 pi)``, seeded: signal ``i`` always gets the same angle) or
    a number of degrees for every signal.
    """
    if rotate == "random":
        return np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, size=num_signals)
    try:
        degrees = float(rotate)
    except ValueError:
        raise ValueError(f"--rotate must be 'random' or a number of degrees, got {rotate!r}") from None
    if not np.isfinite(degrees):
        raise ValueError(f"--rotate must be finite, got {rotate!r}")
    return np.full(num_signals, np.deg2rad(degrees))


def encode_split(
    module,
    loader,
    *,
    num_steps: int | None = None,
    progress: bool = True,
    store_signal: bool = False,
    angles: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Encode every batch of ``loader``: latents, per-signal metrics (``module.metric_names``) and, where the
    items carry them, ``trajectory``/``frame``/``time`` (PDE frames) and ``label``, as arrays.

    ``angles`` (radians, indexed by the items' ``index``): rotate every image by its angle about the image
    centre before encoding (:func:`enf.data.grid.rotate_images`; image data only); the angles are returned
    as ``rotation``. ``store_signal``: also return the (rotated) signals ``signal [S, N, C]`` and the grid
    ``coords [N, d]``, so that the file alone holds what a model trained on the latents needs.
    """
    names = ("poses", "context", "window", "index", *module.metric_names)
    out: dict[str, list[np.ndarray]] = {k: [] for k in names}
    grid = None
    module.eval()
    for batch in tqdm(loader, desc="encode", disable=not progress):
        batch = {k: (v.to(module.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        coords, signal = module.unpack(batch)
        if angles is not None:
            signal = _rotated(module, batch, coords, signal, angles)
            batch = {**batch, keys.SIGNAL: signal}
            out.setdefault("rotation", []).append(angles[batch[keys.INDEX].cpu().numpy()])
        if store_signal:
            if grid is None:
                grid = coords[0]
            if not bool((coords == grid).all()):
                raise ValueError("--store-signal needs every signal on one grid (image data); these differ")
            out.setdefault(keys.SIGNAL, []).append(signal.cpu().numpy())
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
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    if grid is not None:
        arrays[keys.COORDS] = grid.cpu().numpy()
    return arrays


def _rotated(module, batch, coords: torch.Tensor, signal: torch.Tensor, angles: np.ndarray) -> torch.Tensor:
    spec = module.field_spec
    if spec is None or spec.kind != "image" or len(spec.grid_shape) != 2:
        raise ValueError("--rotate needs image data (a field of kind 'image' on an H x W grid)")
    h, w = spec.grid_shape
    image = signal_to_image(signal, h, w)
    angle = torch.as_tensor(angles[batch[keys.INDEX].cpu().numpy()], dtype=signal.dtype, device=signal.device)
    return image_to_signal(rotate_images(image, angle))


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
    parser.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test"],
        help="val: the validation split, where the data module has one (images)",
    )
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--num-steps", type=int, default=None, help="inner steps (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--root", default=None, help="override the dataset root of the run")
    parser.add_argument(
        "--rotate",
        default=None,
        help="rotate every image about its centre before encoding: 'random' (seeded uniform angles) or degrees",
    )
    parser.add_argument("--rotation-seed", type=int, default=0, help="seed of --rotate random")
    parser.add_argument(
        "--store-signal",
        action="store_true",
        help="also write the (rotated) signals and the grid, e.g. as training data for `enf shape fit`",
    )
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
    angles = None
    try:
        if args.rotate is not None:
            angles = rotation_angles(len(dm.dataset(args.split)), args.rotate, seed=args.rotation_seed)
        t0 = time.perf_counter()
        arrays = encode_split(
            module,
            dm.eval_dataloader(args.split),
            num_steps=args.num_steps,
            store_signal=args.store_signal,
            angles=angles,
        )
    except ValueError as exc:
        raise SystemExit(f"enf encode: {exc}") from None
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
        "init_frame": getattr(module.fitter, "init_frame", "shared"),
        "rotate": "none" if args.rotate is None else args.rotate,
        "rotation_seed": args.rotation_seed,
    }
    if module.field_spec is not None:
        attrs["field"] = module.field_spec.to_dict()
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
