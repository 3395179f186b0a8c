"""3-D shapes: the README's table and figures from `enf fit` runs on signed distances.

    python experiments/shapes3d.py --runs runs/shapes/version_0 runs/shapes_bundled/version_0

Numbers come from each run's own ``metrics.json``: the IoU of the occupancy on held-out uniform points that no
fitting step saw (``iou_test``; ``iou_test_fitpoints`` on the fitted uniform samples), the Chamfer-L1 of the
marching-cubes surface against fresh points of the true mesh, test split (``fit`` in place of ``test`` where the
test split holds the training shapes, as for the bundled meshes), next to the same model's IoU without the
fitter's test-time refinement (``iou_test_unrefined``, ``iou_test_unrefined_fitpoints``: measured here). Equivariance is measured here, on the first test shape of the
first ``se3`` run, in float64: the field of the moved latents at ``g x`` vs the field at ``x``; the mesh
of the moved latents vs the moved mesh (mean distance of 20000 surface points, in grid cells); fitting the
moved shape from the moved initial latent vs the moved fit, and the same after the test-time refinement. Figures (``--figures``, default ``figures/``):

- ``<run name>.png`` (``shapes.png``, ``shapes_bundled.png``): true meshes | reconstructions (marching cubes at
  ``--resolution``, captioned with the held-out IoU) | latents;
- ``shapes_equivariance.png``: a shape, its latents moved by a rigid motion and decoded, the moved truth.

Writes ``experiments/results/shapes3d.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

import numpy as np
import torch

from enf.cli.shape_export import rigid_motion
from enf.data import keys
from enf.data.images.base import collate
from enf.data.shapes.meshes import Mesh
from enf.data.shapes.sdf import sample_surface, signed_distance
from enf.fitting import sample_coordinate_subsets
from enf.geometry import GroupElement
from enf.metrics import occupancy_iou
from enf.plotting.mesh import plot_shapes
from enf.training.checkpoints import load_fit_checkpoint
from enf.training.run_folder import load_datamodule_from_run
from enf.training.shapes3d import heldout_iou, reconstruct_meshes

# "{t}": the run's test split, "test" or, where it holds the training shapes, "fit"
ROWS = [("iou_{t}", "IoU, {t}, held-out points"), ("iou_{t}_unrefined", "IoU, {t}, held-out, unrefined"),
        ("iou_{t}_fitpoints", "IoU, {t}, fitted points"), ("iou_{t}_unrefined_fitpoints", "IoU, {t}, fitted, unrefined"),
        ("iou_train", "IoU, train, held-out points"),
        ("iou_{t}_nearest_train", "IoU, {t}, nearest training shape (oracle)"), ("chamfer_{t}", "Chamfer-L1, {t}"),
        ("equivariance_error", "max |f(gx; gz) - f(x; z)|, float64"), ("fit_time_s", "training time (s)"),
        ("global_step", "steps")]  # fmt: skip


def _load(run: Path, *, heldout: int = 0):
    """The run's module (best checkpoint), its test data and, with ``heldout``, the metric loader's items of
    its first ``heldout`` test shapes (with their held-out points)."""
    ckpt = run / "checkpoints" / "best.ckpt"
    module = load_fit_checkpoint(ckpt if ckpt.is_file() else run / "checkpoints" / "last.ckpt").module
    dm = load_datamodule_from_run(run / "config.yaml")
    data = dm.dataset("test")
    items = dm.metrics_dataloader("test", max_samples=heldout).dataset if heldout else data
    return module, data, items


def _encode(module, data, idx: list[int]):
    batch = collate([data[i] for i in idx])
    with torch.enable_grad():
        return batch, module.encode(batch, train=False)


def reconstruction_figure(run: Path, out: Path, *, resolution: int, num_shapes: int) -> None:
    module, data, items = _load(run, heldout=num_shapes)
    idx = list(range(len(items)))
    batch, z = _encode(module, items, idx)
    meshes = reconstruct_meshes(module.decoder, z, resolution=resolution, bound=1.1)
    iou = heldout_iou(module.decoder, z, batch)
    fig = plot_shapes([data.mesh(i) for i in idx], meshes, poses=z.poses,
                      scores=[f"IoU {float(v):.3f}" for v in iou],
                      title=f"{run.parent.name}: test shapes, marching cubes at {resolution}^3")  # fmt: skip
    fig.savefig(out, dpi=110)


def _moved_mesh(mesh: Mesh, g: GroupElement) -> Mesh:
    rot, t = g.rotation[0].double().numpy(), g.translation[0].double().numpy()
    return Mesh(vertices=mesh.vertices @ rot.T + t, faces=mesh.faces, name=mesh.name)


def equivariance(run: Path, out: Path, *, resolution: int) -> dict[str, float]:
    module, data, _ = _load(run)
    geom = module.geometry
    g = rigid_motion(rotate=120.0, axis=(1.0, 2.0, 0.5), translate=(0.05, -0.05, 0.05))
    batch, z = _encode(module, data, [0])
    dec64 = copy.deepcopy(module.decoder).double()
    z64 = z.to(torch.float64)
    x = torch.rand(1, 4096, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.2 - 1.1
    with torch.no_grad():
        field_error = float(
            (dec64(geom.act_coords(g, x), z64.transform(geom, g)) - dec64(x, z64)).abs().max()
        )
    mesh = reconstruct_meshes(module.decoder, z, resolution=resolution, bound=1.1)[0]
    moved = reconstruct_meshes(module.decoder, z.transform(geom, g.to(torch.float32)), resolution=resolution,
                               bound=1.1)[0]  # fmt: skip
    expected = _moved_mesh(mesh, g)
    spacing = 2.2 / (resolution - 1)
    points = sample_surface(moved, 20_000, rng=np.random.default_rng(0))
    mesh_error = float(np.abs(signed_distance(points, expected)).mean()) / spacing
    unmoved = float(np.abs(signed_distance(sample_surface(mesh, 20_000, rng=np.random.default_rng(0)),
                                           expected)).mean()) / spacing  # fmt: skip
    # fitting the moved shape from the moved initial latent (float64, the same coordinate subsets)
    fitter = copy.deepcopy(module.fitter).double()
    coords, signal = batch["coords"].double(), batch["signal"].double()
    subsets = sample_coordinate_subsets(coords.shape[1], 4096, fitter.num_inner_steps,
                                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    kw = dict(subsets=subsets, loss=module.loss_fn, create_graph=False)
    z0 = fitter.initial(1)
    with torch.enable_grad():
        fit = fitter(dec64, coords, signal, init=z0, **kw)
        fit_moved = fitter(dec64, geom.act_coords(g, coords), signal, init=z0.transform(geom, g), **kw)
        fit_shared = fitter(dec64, geom.act_coords(g, coords), signal, init=z0, **kw)
        refined = {}
        if getattr(fitter, "num_refine_steps", 0) > 0:  # the test-time refinement, from both fits
            ref = dict(loss=module.loss_fn, subset_size=4096)
            refined["fit"] = fitter.refine(dec64, coords, signal, fit, generator=_gen(2), **ref)
            refined["moved"] = fitter.refine(dec64, geom.act_coords(g, coords), signal, fit_moved,
                                             generator=_gen(2), **ref)  # fmt: skip
    target = geom.act_poses(g, fit.poses)
    truth = data.mesh(0)
    moved_z = z.transform(geom, g.to(torch.float32))
    fig = plot_shapes(
        [truth, _moved_mesh(truth, g)],
        [mesh, moved],
        poses=torch.cat([z.poses, moved_z.poses]),
        scores=["fitted", "latents moved by g"],
        truth_titles=["truth", "truth moved by g"],
        title="moving the latents moves the shape: g = 120 deg about (1, 2, 0.5), t = (0.05, -0.05, 0.05)",
    )
    fig.savefig(out, dpi=110)
    out = {
        "field_error_moved_latents": field_error,
        "mesh_distance_moved_latents_cells": mesh_error,
        "mesh_distance_unmoved_cells": unmoved,
        "fit_pose_error_moved_init": float((fit_moved.poses - target).detach().abs().max()),
        "fit_pose_error_shared_init": float((fit_shared.poses - target).detach().abs().max()),
    }
    if refined:
        moved_target = geom.act_poses(g, refined["fit"].poses)
        out["refined_fit_pose_error_moved_init"] = float((refined["moved"].poses - moved_target).abs().max())
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unrefined_iou(run: Path) -> dict[str, float]:
    """Test IoU of the final model (``last.ckpt``, what ``metrics.json`` describes) without the fitter's
    test-time refinement, on the held-out and on the fitted points: the side-by-side baseline of the refined
    ``iou_test`` (keys ``iou_<test or fit>_unrefined[_fitpoints]``)."""
    module = load_fit_checkpoint(run / "checkpoints" / "last.ckpt").module
    loader = load_datamodule_from_run(run / "config.yaml").metrics_dataloader("test")
    res = module.evaluate("test", loader=loader, equivariance=False, refine=False)
    split = module.metric_key("iou", "test").removeprefix("iou_")  # "test", or "fit" for a fit set
    return {f"iou_{split}_unrefined": res["iou"], f"iou_{split}_unrefined_fitpoints": res["iou_fitpoints"]}


def nearest_neighbour_iou(run: Path, *, num_select: int = 10_000) -> dict[str, float]:
    """The retrieval reference of the held-out IoU: each test shape answered by the training shape whose
    occupancy agrees best with it (chosen on the first ``num_select`` held-out points, an oracle choice, so an
    upper bound on any nearest-neighbour retrieval from the training set), scored on all its held-out points.
    Keys ``iou_test_nearest_train`` (mean) and ``iou_test_nearest_train_min``."""
    dm = load_datamodule_from_run(run / "config.yaml")
    train = dm.dataset("train")
    items = dm.metrics_dataloader("test").dataset
    scores = []
    for i in range(len(items)):
        item = items[i]
        x = item[keys.HELDOUT_COORDS].double().numpy()
        truth = item[keys.HELDOUT_SIGNAL].double().reshape(1, -1)
        sub = x[:num_select]
        ious = [float(occupancy_iou(torch.from_numpy(signed_distance(sub, train.mesh(j))).reshape(1, -1),
                                    truth[:, :num_select])) for j in range(len(train))]  # fmt: skip
        best = int(np.argmax(ious))
        pred = torch.from_numpy(signed_distance(x, train.mesh(best))).reshape(1, -1)
        scores.append(float(occupancy_iou(pred, truth)))
        logging.info("test shape %d: nearest training shape %d, IoU %.4f", i, best, scores[-1])
    return {
        "iou_test_nearest_train": float(np.mean(scores)),
        "iou_test_nearest_train_min": float(np.min(scores)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="run directories of `enf fit`")
    parser.add_argument("--figures", type=Path, default=Path("figures"))
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--num-shapes", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/shapes3d.json"))
    args = parser.parse_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    names = [run.parent.name for run in args.runs]
    for run in args.runs:
        # runs of one config (seeds) share the config's name: tell them apart by their version folder
        name = run.parent.name if names.count(run.parent.name) == 1 else f"{run.parent.name}_{run.name}"
        metrics = json.loads((run / "metrics.json").read_text())
        split = "fit" if "iou_fit" in metrics else "test"
        results[name] = {key.format(t=split): metrics[key.format(t=split)] for key, _ in ROWS
                         if key.format(t=split) in metrics}  # fmt: skip
        results[name].update(unrefined_iou(run))
        if split == "test":
            results[name].update(nearest_neighbour_iou(run))
        reconstruction_figure(run, args.figures / f"{name}.png", resolution=args.resolution,
                              num_shapes=args.num_shapes)  # fmt: skip
    se3 = next((r for r in args.runs if load_fit_checkpoint(
        (r / "checkpoints" / "last.ckpt")).geometry.name == "se3"), None)  # fmt: skip
    if se3 is not None:
        results["equivariance"] = equivariance(se3, args.figures / "shapes_equivariance.png",
                                               resolution=args.resolution)  # fmt: skip
    print("| run | " + " | ".join(label.format(t="test or fit") for _, label in ROWS) + " |")
    for name, row in results.items():
        if name != "equivariance":
            t = "fit" if "iou_fit" in row else "test"
            cells = [f"{row.get(k.format(t=t), float('nan')):.4g}" for k, _ in ROWS]
            print(f"| {name} | " + " | ".join(cells) + " |")
    for key, value in results.get("equivariance", {}).items():
        print(f"{key}: {value:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
