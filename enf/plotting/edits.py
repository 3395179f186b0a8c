"""Pictures of edits: images with their latent points drawn over them (orientations as ticks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from enf.data.grid import imshow_extent
from enf.geometry import Geometry
from enf.latents import Latents

__all__ = ["draw_latents", "draw_panel", "plot_edit"]


def _show(ax, image: np.ndarray, *, cmap: str = "gray", vmin: float = 0.0, vmax: float = 1.0):
    h, w = image.shape[:2]
    img = image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0.0, 1.0)
    artist = ax.imshow(
        img, cmap=cmap if image.shape[-1] == 1 else None, vmin=vmin, vmax=vmax, extent=imshow_extent(h, w)
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def draw_latents(
    ax, z: Latents, geometry: Geometry, *, selected: torch.Tensor | None = None, batch_index: int = 0
) -> None:
    """Scatter the positions of cloud ``batch_index`` of ``z`` on ``ax`` (selected latents in orange); for
    geometries with orientation vectors (``se2``), a short tick along each latent's orientation."""
    poses = z.poses[batch_index].detach().cpu().double().numpy()
    q = poses[:, :2]
    sel = np.zeros(len(q), dtype=bool) if selected is None else selected.reshape(-1, len(q))[0].cpu().numpy()
    colors = np.where(sel, "tab:orange", "tab:cyan")
    ax.scatter(q[:, 0], q[:, 1], s=18, c=colors, edgecolors="black", linewidths=0.5, zorder=3)
    if geometry.pose_dim >= 4 and geometry.space_dim == 2:
        o = poses[:, 2:4]
        o = o / np.maximum(np.linalg.norm(o, axis=-1, keepdims=True), 1e-12)
        ax.quiver(q[:, 0], q[:, 1], o[:, 0], o[:, 1], color=colors, scale=25, width=0.006, zorder=3)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)


def draw_panel(
    ax,
    title: str,
    image: np.ndarray,
    z: Latents | None = None,
    geometry: Geometry | None = None,
    *,
    selected: torch.Tensor | None = None,
    difference: bool = False,
    fontsize: int = 9,
) -> None:
    """One image ``[H, W, C]`` on ``ax`` with the latents ``z`` drawn over it (if given); ``difference=True``
    draws the channel mean with a diverging colour map symmetric about 0 and its colour bar. ``selected``
    (a mask ``[1, L]``) marks latents in orange when its width matches ``z``'s number of latents."""
    if difference:
        diff = image.mean(-1, keepdims=True)
        lim = max(float(np.abs(diff).max()), 1e-6)
        artist = _show(ax, diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.figure.colorbar(artist, ax=ax, shrink=0.8)
    else:
        _show(ax, image)
    if z is not None:
        if geometry is None:
            raise ValueError("draw_panel needs the geometry to draw latents")
        width = -1 if selected is None else selected.shape[-1]
        draw_latents(ax, z, geometry, selected=selected if z.num_latents == width else None)
    ax.set_title(title, fontsize=fontsize)


def plot_edit(
    panels: Sequence[tuple[str, np.ndarray, Latents | None]],
    geometry: Geometry,
    *,
    selected: torch.Tensor | None = None,
    title: str | None = None,
) -> Figure:
    """One row of panels ``(title, image [H, W, C], latents or None)``; latents are drawn over their image.
    A panel titled ``"difference"`` is drawn with a diverging colour map around 0."""
    fig = Figure(figsize=(2.6 * len(panels), 2.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, image, z) in zip(axes, panels, strict=True):
        draw_panel(ax, name, image, z, geometry, selected=selected, difference=name == "difference")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
