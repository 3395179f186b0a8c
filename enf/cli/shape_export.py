"""``enf shape export``: a fitted 3-D shape as a mesh, or the shape codes of a data split as HDF5.

    enf shape export --ckpt runs/shapes/version_0/checkpoints/best.ckpt --index 3 --resolution 128 --out shape.ply
    enf shape export --ckpt runs/shape_trilobite/version_0/checkpoints/last.ckpt --split test --out codes.h5

**Signed-distance checkpoints** (``enf fit`` on :class:`~enf.data.SDFDataModule`): shape ``--index`` of
``--split`` is encoded (the model's test-time fitting), its field decoded on a ``--resolution^3`` grid and
meshed by marching cubes; ``--out`` ends in ``.ply``, ``.obj``, ``.stl`` or ``.off``. ``--rotate DEG --axis
X,Y,Z`` and ``--translate X,Y,Z`` first move the fitted latents by that rigid motion (``x -> R x + t``; the
mesh is then the moved shape, exactly for ``se3`` latents; ``translation3d`` latents can only translate).
``--truth PATH`` also writes the true mesh (moved the same way) for comparison.

**Shape-VAE checkpoints** (``enf shape fit``): writes, for every shape of the split: ``code [S, (K-1) d]`` (the posterior's mean direction on the pre-shape
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
from enf.cli.encode import check_writable
from enf.cli.text import plain_text
from enf.data import keys
from enf.data.hdf5 import write_h5
from enf.training.run_folder import load_datamodule_from_run
from enf.training.shape_module import ShapeModule
from enf.training.task import move_batch

__all__ = ["export_codes", "export_mesh", "rigid_motion", "shape_main"]

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


def rigid_motion(
    *, rotate: float = 0.0, axis: tuple[float, float, float] = (0.0, 0.0, 1.0), translate=(0.0, 0.0, 0.0)
):
    """The group element ``x -> R x + t`` (``R``: ``rotate`` degrees about ``axis``, right-handed) of the
    3-D geometries, batch of one."""
    from scipy.spatial.transform import Rotation

    from enf.geometry import GroupElement

    axis = np.asarray(axis, dtype=np.float64)
    if axis.shape != (3,) or not np.isfinite(axis).all() or np.linalg.norm(axis) == 0:
        raise ValueError(f"--axis must be three finite numbers, not all zero, got {axis.tolist()}")
    t = np.asarray(translate, dtype=np.float64)
    if t.shape != (3,) or not np.isfinite(t).all() or not np.isfinite(rotate):
        raise ValueError(
            f"--translate must be three finite numbers and --rotate finite, got {t.tolist()}, {rotate}"
        )
    rot = Rotation.from_rotvec(np.radians(rotate) * axis / np.linalg.norm(axis)).as_matrix()
    return GroupElement(
        rotation=None if rotate == 0 else torch.as_tensor(rot)[None], translation=torch.as_tensor(t)[None]
    )


def export_mesh(module, item: dict, *, resolution: int, num_steps: int | None = None, motion=None):
    """The marching-cubes mesh of one encoded signed-distance item (``None``: no surface), after moving its
    latents by the group element ``motion`` (checked to be a symmetry of the model's geometry)."""
    from enf.data.images.base import collate
    from enf.training.shapes3d import reconstruct_meshes

    if not module.is_sdf:
        raise ValueError("this checkpoint was not fitted to signed distances; mesh export needs an SDF run")
    batch = move_batch(collate([item]), module.device)
    with torch.enable_grad():
        z = module.encode(batch, train=False, num_steps=num_steps)
    if motion is not None:
        if not module.geometry.is_symmetry(motion):
            raise ValueError(
                f"geometry {module.geometry.name!r} cannot move its latents by this motion exactly "
                "(translation3d latents only translate; fit with se3 to rotate)"
            )
        z = z.transform(module.geometry, motion.to(dtype=z.poses.dtype, device=z.poses.device))
    bound = float(module.field_spec.extra.get("bound", 1.1))
    return reconstruct_meshes(module.decoder, z, resolution=resolution, bound=bound)[0]


def _mesh_main(args) -> None:
    from enf.data.shapes.meshes import MESH_SUFFIXES, Mesh, save_mesh
    from enf.training.checkpoints import load_fit_checkpoint

    for path in filter(None, (args.out, args.truth)):
        if Path(path).suffix.lower() not in MESH_SUFFIXES:
            raise ValueError(f"{path}: a mesh file must end in one of {MESH_SUFFIXES}")
        check_writable(path)
    module = load_fit_checkpoint(args.ckpt).module
    config = Path(args.config) if args.config else Path(args.ckpt).parent.parent / "config.yaml"
    dataset = load_datamodule_from_run(config).dataset(args.split)
    if not 0 <= args.index < len(dataset):
        raise ValueError(f"--index {args.index} is outside the {args.split} split (0..{len(dataset) - 1})")
    axis = tuple(float(v) for v in args.axis.split(","))
    translate = tuple(float(v) for v in args.translate.split(","))
    moved = args.rotate != 0 or any(translate)
    motion = rigid_motion(rotate=args.rotate, axis=axis, translate=translate) if moved else None
    mesh = export_mesh(module, dataset[args.index], resolution=args.resolution, num_steps=args.num_steps,
                       motion=motion)  # fmt: skip
    if mesh is None:
        raise ValueError(f"the fitted field of shape {args.index} has no zero level set: nothing to mesh")
    save_mesh(mesh, args.out)
    log.info("shape %d of %s -> %s (%d faces)", args.index, args.split, args.out, len(mesh.faces))
    if args.truth:
        truth = dataset.mesh(args.index)
        if motion is not None:
            rot = np.eye(3) if motion.rotation is None else motion.rotation[0].numpy()
            truth = Mesh(vertices=truth.vertices @ rot.T + motion.translation[0].numpy(), faces=truth.faces,
                         name=truth.name)  # fmt: skip
        save_mesh(truth, args.truth)
        log.info("true mesh -> %s", args.truth)


def shape_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="enf shape export", description=plain_text(__doc__), allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--ckpt", required=True, help="checkpoint of an `enf shape fit` or SDF `enf fit` run")
    parser.add_argument(
        "--config", default=None, help="the run's config.yaml (default: next to checkpoints/)"
    )
    parser.add_argument("--split", default="test", help="train, test or an extra split of the data module")
    parser.add_argument("--out", required=True, help="output: HDF5 file (codes) or PLY/OBJ/STL/OFF (a mesh)")
    mesh = parser.add_argument_group("meshes (signed-distance checkpoints)")
    mesh.add_argument("--index", type=int, default=0, help="shape of the split to mesh (default 0)")
    mesh.add_argument("--resolution", type=int, default=128, help="marching-cubes grid size per axis")
    mesh.add_argument("--num-steps", type=int, default=None, help="inner fitting steps (default: as trained)")
    mesh.add_argument("--rotate", type=float, default=0.0, help="rotate the fitted latents by DEG degrees")
    mesh.add_argument("--axis", default="0,0,1", help="rotation axis X,Y,Z (default 0,0,1)")
    mesh.add_argument("--translate", default="0,0,0", help="then translate the latents by X,Y,Z")
    mesh.add_argument("--truth", default=None, help="also write the true mesh (moved alike) to this file")
    args = parser.parse_args(argv)
    if args.resolution < 8 or args.resolution > 512:
        parser.error(f"--resolution must be in 8..512, got {args.resolution}")
    if args.num_steps is not None and args.num_steps < 0:
        parser.error(f"--num-steps must be >= 0, got {args.num_steps}")
    from enf.training.checkpoints import read_checkpoint

    try:
        hparams = read_checkpoint(args.ckpt).get("hyper_parameters") or {}
        if "decoder" in hparams and "fitter" in hparams:
            return _mesh_main(args)
        out = check_writable(args.out)
        if "vae" not in hparams:
            raise ValueError(
                f"{args.ckpt} is neither a shape-VAE checkpoint (`enf shape fit`) nor a signed-distance "
                "`enf fit` checkpoint"
            )
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
