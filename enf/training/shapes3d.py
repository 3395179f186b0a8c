"""Signed-distance fields in the field-fitting task: decoded grids, meshes, occupancy IoU and Chamfer distance.

    grid = decode_grid(decoder, z, resolution=64, bound=1.1)                # [B, R, R, R]
    meshes = reconstruct_meshes(decoder, z, resolution=128, bound=1.1)     # marching cubes, Mesh or None
    chamfer = surface_chamfer(meshes, surface, bound=1.1)                   # [B], against true surface points
    iou = heldout_iou(decoder, z, batch)                                    # [B], on the held-out points
    rows = shape_metrics(decoder, z, batch, rows, resolution=64, bound=1.1)  # what evaluate() reports

Grids follow :func:`enf.data.shapes.meshes.mesh_from_grid`: ``grid[b, i, j, k]`` is the field at
``(x_i, y_j, z_k)``, ``x = linspace(-bound, bound, R)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from enf.data import keys
from enf.data.shapes.meshes import Mesh, mesh_from_grid
from enf.data.shapes.sdf import sample_surface
from enf.latents import Latents
from enf.metrics import chamfer_distance, occupancy_iou

__all__ = [
    "decode_grid",
    "grid_coords",
    "heldout_iou",
    "reconstruct_meshes",
    "shape_figure",
    "shape_metric_key",
    "shape_metrics",
    "surface_chamfer",
]


def grid_coords(resolution: int, *, bound: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``resolution^3`` grid points ``[R^3, 3]`` of the cube ``[-bound, bound]^3``, ``ij`` order."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    axis = torch.linspace(-bound, bound, resolution, dtype=dtype)
    return rearrange(torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1), "i j k d -> (i j k) d")


@torch.no_grad()
def decode_grid(
    decoder, latents: Latents, *, resolution: int, bound: float, chunk_size: int = 32_768
) -> Tensor:
    """The decoded field (first channel) on the ``resolution^3`` grid: ``[B, R, R, R]``, in chunks of
    ``chunk_size`` points (memory ``O(B * chunk_size * k)`` with k-nearest latents)."""
    batch = latents.poses.shape[0]
    x = grid_coords(resolution, bound=bound, dtype=latents.poses.dtype).to(latents.poses.device)
    values = [decoder(chunk.expand(batch, -1, -1), latents)[..., 0] for chunk in x[None].split(chunk_size, 1)]
    return rearrange(torch.cat(values, 1), "b (i j k) -> b i j k", i=resolution, j=resolution)


def reconstruct_meshes(
    decoder, latents: Latents, *, resolution: int, bound: float, names: Sequence[str] | None = None
) -> list[Mesh | None]:
    """Marching-cubes meshes of the decoded fields (``None`` where a field has no zero crossing)."""
    grid = decode_grid(decoder, latents, resolution=resolution, bound=bound).double().cpu().numpy()
    return [
        mesh_from_grid(g, bound=bound, name=names[b] if names else f"shape {b}") for b, g in enumerate(grid)
    ]


def surface_chamfer(meshes: Sequence[Mesh | None], surface: Tensor, *, bound: float, seed: int = 0) -> Tensor:
    """Chamfer-L1 distance ``[B]`` (:func:`enf.metrics.chamfer_distance`) between as many points sampled on each
    reconstructed mesh as ``surface [B, Q, 3]`` holds (the true surface). A missing mesh (no surface decoded)
    scores ``2 * bound``, the width of the sampled cube."""
    if surface.dim() != 3 or surface.shape[0] != len(meshes) or surface.shape[2] != 3:
        raise ValueError(f"surface must be [B={len(meshes)}, Q, 3], got {tuple(surface.shape)}")
    rng = np.random.default_rng(seed)
    out = torch.full((len(meshes),), 2.0 * bound, dtype=torch.float64)
    for b, mesh in enumerate(meshes):
        if mesh is not None:
            points = torch.as_tensor(sample_surface(mesh, surface.shape[1], rng=rng))
            out[b] = chamfer_distance(points[None], surface[b : b + 1].double().cpu())[0]
    return out


@torch.no_grad()
def heldout_iou(decoder, latents: Latents, batch, *, chunk_size: int = 32_768) -> Tensor:
    """Occupancy IoU ``[B]`` of the decoded field on the batch's held-out points (``keys.HELDOUT_COORDS``
    ``[B, E, 3]``, true signed distances ``keys.HELDOUT_SIGNAL`` ``[B, E, 1]``), decoded in chunks."""
    if keys.HELDOUT_COORDS not in batch or keys.HELDOUT_SIGNAL not in batch:
        raise KeyError(
            "the held-out IoU needs the batch keys 'heldout_coords' and 'heldout_signal' "
            "(SDFDataModule.metrics_dataloader)"
        )
    coords, truth = batch[keys.HELDOUT_COORDS], batch[keys.HELDOUT_SIGNAL]
    if coords.dim() != 3 or coords.shape[-1] != 3 or truth.shape != (*coords.shape[:2], 1):
        raise ValueError(
            f"held-out coords must be [B, E, 3] with signal [B, E, 1], got {tuple(coords.shape)} and "
            f"{tuple(truth.shape)}"
        )
    coords = coords.to(latents.poses)
    pred = torch.cat([decoder(chunk, latents) for chunk in coords.split(chunk_size, 1)], 1)
    return occupancy_iou(pred, truth.to(pred)).to(pred.dtype)


def shape_metrics(
    decoder, latents: Latents, batch, rows: dict[str, Tensor], *, resolution: int, bound: float
) -> dict[str, Tensor]:
    """The evaluation metrics ``[B]`` of signed distances from the per-signal ``rows`` of the fitted samples:
    ``iou_fitpoints`` (their uniform samples, which the fit used: ``rows["iou"]``), ``iou`` on the held-out
    points where the batch has them (:func:`heldout_iou`), ``chamfer`` (:func:`surface_chamfer` of the
    marching-cubes meshes at ``resolution`` against ``keys.SURFACE``)."""
    out = {k: v for k, v in rows.items() if k != "iou"}
    out["iou_fitpoints"] = rows["iou"]
    if keys.HELDOUT_COORDS in batch:
        out["iou"] = heldout_iou(decoder, latents, batch).cpu()
    if keys.SURFACE not in batch:
        raise KeyError("the Chamfer distance needs the true surface points (batch key 'surface')")
    meshes = reconstruct_meshes(decoder, latents, resolution=resolution, bound=bound)
    out["chamfer"] = surface_chamfer(meshes, batch[keys.SURFACE], bound=bound).float()
    return out


def shape_metric_key(name: str, split: str, field_spec) -> str:
    """The ``metrics.json`` key of metric ``name`` of ``split``: ``<name>_<split>``, with the qualifier after
    the split (``iou_fitpoints`` -> ``iou_test_fitpoints``), and the test split called ``fit`` where it holds
    the training shapes (``field_spec.extra["test_is_heldout"]`` false, e.g. the bundled meshes)."""
    if split == "test" and field_spec is not None and not field_spec.extra.get("test_is_heldout", True):
        split = "fit"
    if name.endswith("_fitpoints"):
        return f"{name.removesuffix('_fitpoints')}_{split}_fitpoints"
    return f"{name}_{split}"


def shape_figure(
    decoder, latents: Latents, batch, *, iou: Tensor, resolution: int, bound: float, title: str = ""
):
    """:func:`enf.plotting.mesh.plot_shapes` of a batch: its true surface points (``keys.SURFACE``), the
    reconstructed meshes captioned with their IoU (on the held-out points where the batch has them, else
    ``iou [B]``, said to be on the fitted points), and the latents."""
    from enf.plotting.mesh import plot_shapes

    meshes = reconstruct_meshes(decoder, latents, resolution=resolution, bound=bound)
    if keys.HELDOUT_COORDS in batch:
        scores = [f"IoU {float(v):.3f}" for v in heldout_iou(decoder, latents, batch)]
    else:
        scores = [f"IoU {float(v):.3f} (fitted points)" for v in iou]
    return plot_shapes(
        list(batch[keys.SURFACE].cpu()),
        meshes,
        poses=latents.poses.detach().cpu(),
        scores=scores,
        title=title,
    )
