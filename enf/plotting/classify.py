"""Figures of the classification task: the confusion matrix and misclassified examples with their latents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from enf.data.grid import imshow_extent

__all__ = ["plot_confusion", "plot_misclassified", "plot_misclassified_shapes"]


def plot_confusion(matrix: np.ndarray, *, title: str = "") -> Figure:
    """``matrix [K, K]`` of counts (rows: true class, columns: predicted), shown as row-normalised rates with
    the counts written in the cells."""
    matrix = np.asarray(matrix)
    num_classes = matrix.shape[0]
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(1.0 + 0.45 * num_classes, 0.8 + 0.45 * num_classes))
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(num_classes):
        for j in range(num_classes):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_misclassified(
    images: np.ndarray, positions: np.ndarray | None, true: np.ndarray, pred: np.ndarray, *, title: str = ""
) -> Figure:
    """Images ``[M, H, W, C]`` in ``[0, 1]``, with the latent positions ``[M, L, 2]`` of each drawn over it
    (plane coordinates, ``None`` for a pixel model), captioned ``true -> predicted``."""
    num = max(1, len(images))
    cols = min(num, 8)
    rows = (num + cols - 1) // cols
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows), layout="constrained")  # captions clear of the row above
    for k in range(len(images)):
        ax = fig.add_subplot(rows, cols, k + 1)
        h, w, c = images[k].shape
        extent = imshow_extent(h, w)
        ax.imshow(images[k][..., 0] if c == 1 else images[k], cmap="gray", vmin=0.0, vmax=1.0, extent=extent)
        if positions is not None:  # latents outside the image are not drawn: the panel is the image
            ax.scatter(positions[k][:, 0], positions[k][:, 1], s=6, c="tab:red")
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
        ax.set_title(f"{int(true[k])} -> {int(pred[k])}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if not len(images):
        fig.add_subplot().text(0.5, 0.5, "no misclassified example", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_misclassified_shapes(
    surfaces: np.ndarray,
    poses: np.ndarray | None,
    true: np.ndarray,
    pred: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """3-D shapes as their surface points ``[M, Q, 3]`` (grey) with the latents ``[M, L, pose_dim]`` of each
    (black dots; se3 frames as coloured segments), captioned ``true -> predicted`` (by ``class_names``)."""
    from enf.plotting.mesh import _axis, draw_latents, draw_points

    def name(k) -> str:
        return class_names[int(k)] if class_names is not None else str(int(k))

    num = max(1, len(surfaces))
    cols = min(num, 4)
    rows = (num + cols - 1) // cols
    fig = Figure(figsize=(2.4 * cols, 2.5 * rows), layout="constrained")
    for k in range(len(surfaces)):
        ax = _axis(fig, rows, cols, k + 1, f"{name(true[k])} -> {name(pred[k])}")
        ax.title.set_fontsize(8)
        draw_points(ax, surfaces[k], max_points=1500)
        if poses is not None:
            draw_latents(ax, poses[k])
    if not len(surfaces):
        fig.add_subplot().text(0.5, 0.5, "no misclassified example", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    return fig
