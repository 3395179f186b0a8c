"""``enf shape export``: the shape codes (geometric symbols) and poses of a data split, written to HDF5.

    enf shape export --ckpt runs/shape_trilobite/version_0/checkpoints/last.ckpt --split test --out codes.h5

Writes, for every shape of the split: ``code [S, (K-1) d]`` (the posterior's mean direction on the pre-shape
sphere), ``canonical [S, K, d]`` (the symbol's landmarks in the canonical frame), ``landmarks [S, K, d]``,
``centroid [S, d]``, ``scale [S]``, ``rotation [S, d, d]`` (the pose), ``concentration [S]``,
``rel_mse [S]`` (landmarks: reconstruction error relative to the size) or ``mse [S]`` and ``psnr [S]`` (latent
clouds: error of the ENF-decoded reconstruction), ``index`` and, where the data has one,
``label`` (atomic write).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from enf import __version__
from enf.data import keys
from enf.data.hdf5 import write_h5
from enf.training.encode import check_writable, load_datamodule_from_run
from enf.training.shape_module import ShapeModule
from enf.training.task import move_batch

__all__ = ["export_codes", "shape_main"]

log = logging.getLogger(__name__)


@torch.no_grad()
def export_codes(module: ShapeModule, loader) -> dict[str, np.ndarray]:
    """Codes, symbols, poses and errors of every shape of ``loader`` (see the module docstring)."""
    module.eval()
    out: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        batch = move_batch(batch, module.device)
        inputs = module.unpack(batch)
        res = module.vae(inputs["positions"], inputs.get("features"), sample=False)
        enc = res.encoding
        if enc is None:
            raise ValueError("this checkpoint's VAE has no pose (PlainVAE); export needs a ShapeVAE")
        error = module._losses(inputs, sample=False)
        rows = {
            "code": res.code, "canonical": enc.canonical, "landmarks": enc.landmarks, "centroid": enc.centroid,
            "scale": enc.scale, "rotation": enc.rotation, "concentration": enc.concentration,
            keys.INDEX: batch[keys.INDEX],
        }  # fmt: skip
        rows.update({k: v for k, v in error.items() if k in ("rel_mse", "mse", "psnr")})
        if keys.LABEL in batch:
            rows[keys.LABEL] = batch[keys.LABEL]
        for name, value in rows.items():
            out.setdefault(name, []).append(value.detach().cpu().numpy())
    if not out:
        raise ValueError("nothing to export: the data loader is empty")
    return {k: np.concatenate(v) for k, v in out.items()}


def shape_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="enf shape export", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--ckpt", required=True, help="checkpoint of an `enf shape fit` run")
    parser.add_argument(
        "--config", default=None, help="the run's config.yaml (default: next to checkpoints/)"
    )
    parser.add_argument("--split", default="test", help="train, test or an extra split of the data module")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    args = parser.parse_args(argv)
    from enf.training.checkpoints import read_checkpoint

    try:
        out = check_writable(args.out)
        hparams = read_checkpoint(args.ckpt).get("hyper_parameters") or {}
        if "vae" not in hparams:
            raise ValueError(f"{args.ckpt} is not a shape checkpoint (write one with `enf shape fit`)")
        module = ShapeModule.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True)
        config = Path(args.config) if args.config else Path(args.ckpt).parent.parent / "config.yaml"
        datamodule = load_datamodule_from_run(config)
        arrays = export_codes(module, datamodule.eval_dataloader(args.split))
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"enf shape export: {exc}") from None
    attrs = {"checkpoint": str(args.ckpt), "split": args.split, "enf_version": __version__,
             **{f"mean_{k}": float(arrays[k].mean()) for k in ("rel_mse", "mse") if k in arrays}}  # fmt: skip
    write_h5(out, arrays, attrs)
    log.info("exported %d shape codes -> %s", len(arrays["code"]), out)
