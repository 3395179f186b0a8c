"""Render a stored trajectory to PNG (a strip of frames) or GIF.

Plane and torus fields are shown as images; sphere fields as equirectangular (longitude, latitude) maps of
their grid; ball fields (grid ``[phi, theta, r]``) as the equatorial slice plus an outer-shell map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from enf.data.grid import plane_grid_to_image
from enf.data.pde.io import open_trajectories

__all__ = ["color_scale", "render_trajectory"]


def _panels(geometry: str, frame: np.ndarray, channel: int) -> list[tuple[str, np.ndarray]]:
    """2D arrays to draw for one frame ``[*grid, C]``."""
    x = frame[..., channel]
    if geometry == "ball" and x.ndim == 3:  # [phi, theta, r]
        mid = x.shape[1] // 2
        return [("equator (phi, r)", x[:, mid, :].T), ("outer shell (theta, phi)", x[:, :, -1].T)]
    if x.ndim != 2:
        raise ValueError(f"cannot draw a {x.ndim}-D grid for geometry {geometry!r}")
    if geometry in ("sphere", "sphere_axial"):
        return [("lat-lon", x)]
    return [("field", plane_grid_to_image(x[..., None])[..., 0])]  # the one planar-grid -> image conversion


def color_scale(values: np.ndarray) -> tuple[str, float, float]:
    """``(cmap, vmin, vmax)`` for a field: a sequential map over its range when it never goes below 0 (a
    height, a temperature), else a diverging map symmetric about 0 (vorticity, a signed perturbation)."""
    low, high = float(np.min(values)), float(np.max(values))
    if low >= 0.0:
        return "viridis", low, high
    lim = max(abs(low), abs(high), 1e-12)
    return "RdBu_r", -lim, lim


def render_trajectory(
    path: str | Path,
    out: str | Path,
    *,
    index: int = 0,
    channel: int = 0,
    max_frames: int = 8,
) -> Path:
    """Draw trajectory ``index`` of ``path`` to ``out`` (``.png``: a strip of frames; ``.gif``: an animation)."""
    out = Path(out)
    with open_trajectories(path) as f:
        if not 0 <= index < f["fields"].shape[0]:
            raise ValueError(f"{path}: trajectory index {index} out of range [0, {f['fields'].shape[0]})")
        traj = np.asarray(f["fields"][index])
        times = np.asarray(f["times"])
        geometry = str(f.attrs["geometry"])
        names = [str(c) for c in f.attrs["channel_names"]]
    if not 0 <= channel < traj.shape[-1]:
        raise ValueError(f"channel {channel} out of range; channels are {names}")
    cmap, vmin, vmax = color_scale(traj[..., channel])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from matplotlib.animation import FuncAnimation, PillowWriter

        panels = _panels(geometry, traj[0], channel)
        fig = Figure(figsize=(3.2 * len(panels), 3))
        axes = fig.subplots(1, len(panels), squeeze=False)
        images = [
            ax.imshow(p, vmin=vmin, vmax=vmax, cmap=cmap) for ax, (_, p) in zip(axes[0], panels, strict=False)
        ]
        fig.colorbar(images[0], ax=list(axes[0]), shrink=0.8, label=names[channel])

        def update(t: int):
            for img, (_, p) in zip(images, _panels(geometry, traj[t], channel), strict=False):
                img.set_data(p)
            fig.suptitle(f"{names[channel]}  t = {times[t]:.3g}")
            return images

        anim = FuncAnimation(fig, update, frames=len(times))
        anim.save(out, writer=PillowWriter(fps=4))
        return out
    steps = np.linspace(0, len(times) - 1, min(max_frames, len(times))).round().astype(int)
    rows = len(_panels(geometry, traj[0], channel))
    fig = Figure(figsize=(2.2 * len(steps), 2.2 * rows))
    axes = fig.subplots(rows, len(steps), squeeze=False)
    for c, t in enumerate(steps):
        for r, (label, p) in enumerate(_panels(geometry, traj[t], channel)):
            artist = axes[r, c].imshow(p, vmin=vmin, vmax=vmax, cmap=cmap)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if c == 0:
                axes[r, c].set_ylabel(label, fontsize=8)
        axes[0, c].set_title(f"t = {times[t]:.3g}", fontsize=8)
    fig.suptitle(f"{Path(path).parent.name}/{Path(path).name} #{index}: {names[channel]}", fontsize=9)
    fig.tight_layout()
    fig.colorbar(artist, ax=axes.ravel().tolist(), shrink=0.8, label=names[channel])
    fig.savefig(out, dpi=100)
    return out
