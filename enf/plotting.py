"""Figures: reconstructions next to ground truth, with latent poses drawn over them.

Plots use the pixel convention of :mod:`enf.data.grid`: ``imshow(image, extent=(-1, 1, -1, 1))`` with the
default ``origin='upper'`` puts the coordinate ``(x, y)`` on its pixel, so latent positions are drawn
with ``scatter(x, y)`` directly (``imshow_extent`` places pixel centres exactly on their coordinates).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from enf.data.grid import imshow_extent  # noqa: E402

__all__ = ["plot_reconstructions", "save_figure"]


def _show(ax, image: np.ndarray) -> None:
    image = np.clip(image, 0.0, 1.0)
    extent = imshow_extent(image.shape[0], image.shape[1])
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, extent=extent)
    else:
        ax.imshow(image, extent=extent)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_reconstructions(
    target: Tensor, prediction: Tensor, poses: Tensor | None = None, *, max_items: int = 8, title: str = ""
) -> Figure:
    """Rows: ground truth, reconstruction, reconstruction with latent positions (and orientations).

    Args:
        target: ``[B, H, W, C]`` in ``[0, 1]``.
        prediction: ``[B, H, W, C]``.
        poses: ``[B, L, pose_dim]`` planar poses (position first; a second 2-vector is drawn as an arrow).
    """
    target = target.detach().float().cpu().numpy()
    prediction = prediction.detach().float().cpu().numpy()
    n = min(max_items, target.shape[0])
    rows = 3 if poses is not None else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.6 * rows), squeeze=False)
    for i in range(n):
        _show(axes[0, i], target[i])
        _show(axes[1, i], prediction[i])
        if poses is not None:
            p = poses[i].detach().float().cpu().numpy()
            _show(axes[2, i], prediction[i])
            axes[2, i].scatter(p[:, 0], p[:, 1], s=8, c="tab:red", edgecolors="white", linewidths=0.3)
            if p.shape[-1] >= 4:
                o = p[:, 2:4] / np.maximum(np.linalg.norm(p[:, 2:4], axis=-1, keepdims=True), 1e-9)
                axes[2, i].quiver(p[:, 0], p[:, 1], o[:, 0], o[:, 1], color="tab:red", scale=12, width=0.01)
    for r, label in enumerate(["ground truth", "reconstruction", "latents"][:rows]):
        axes[r, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path) -> None:
    """Save a figure (PNG) and close it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
