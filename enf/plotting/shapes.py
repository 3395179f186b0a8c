"""Figures of the shape VAE: inputs, reconstructions and canonical symbols (matplotlib, no pyplot state)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from enf.shape.vae import ShapeVAEOutput

__all__ = ["draw_image", "draw_symbol", "shape_figure"]


def _clean(ax: Axes) -> None:
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_symbol(
    ax: Axes, points: Tensor | np.ndarray, *, style: str = "b.-", closed: bool = True, **kw
) -> None:
    """Landmarks ``[K, 2]`` joined in their order (a closed polygon by default): the drawn symbol."""
    p = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    if closed:
        p = np.concatenate([p, p[:1]])
    ax.plot(p[:, 0], p[:, 1], style, lw=kw.pop("lw", 1.0), ms=kw.pop("ms", 3), **kw)
    _clean(ax)


def draw_image(ax: Axes, signal: Tensor, grid_shape: tuple[int, int], **kw) -> None:
    """A signal ``[H * W, C]`` on the pixel grid of :mod:`enf.data.grid` (grey for one channel)."""
    from enf.data.grid import imshow_extent, signal_to_image

    h, w = grid_shape
    img = signal_to_image(signal[None].detach().cpu().float(), h, w)[0].numpy()
    img = img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0.0, 1.0)
    ax.imshow(img, cmap=kw.pop("cmap", "gray"), extent=imshow_extent(h, w), **kw)
    _clean(ax)


def shape_figure(
    positions: Tensor,
    out: ShapeVAEOutput,
    *,
    field: tuple[Tensor, Tensor, object] | None = None,
) -> Figure:
    """Input and reconstruction over the canonical symbols, one column per shape.

    Args:
        positions: ``[B, N, 2]`` the input points (landmarks, or ENF latent positions).
        out: the VAE's output for them (``sample=False``).
        field: for latent clouds, ``(decoded [B, N', C], signal [B, N', C], field_spec)``: the rows become
            the input image with its latent points and the VAE's landmarks, the decoded reconstruction, and
            the symbol.
    """
    n = positions.shape[0]
    rows = 2 if field is None else 3
    fig = Figure(figsize=(1.7 * n, 1.8 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, n, squeeze=False)
    lm = out.encoding.landmarks if out.encoding is not None else None
    for k in range(n):
        if field is None:
            draw_symbol(axes[0, k], positions[k], style="k.-", closed=False)
            draw_symbol(axes[0, k], out.points[k], style="r.--", closed=False)
        else:
            decoded, signal, spec = field
            draw_image(axes[0, k], signal[k], spec.grid_shape)
            p = positions[k].detach().cpu().numpy()
            axes[0, k].scatter(p[:, 0], p[:, 1], s=4, c="tab:cyan")
            if lm is not None:
                draw_symbol(axes[0, k], lm[k], style="r.-", lw=0.8)
            draw_image(axes[1, k], decoded[k], spec.grid_shape)
        if out.encoding is not None:
            draw_symbol(axes[-1, k], out.encoding.canonical[k], style="b.-")
        else:
            axes[-1, k].axis("off")
    if field is None:
        axes[0, 0].set_title("input (black), reconstruction (red)", fontsize=7, loc="left")
    else:
        axes[0, 0].set_title("input, latents (cyan), landmarks (red)", fontsize=7, loc="left")
        axes[1, 0].set_title("VAE reconstruction (ENF-decoded)", fontsize=7, loc="left")
    axes[-1, 0].set_title("canonical landmarks (the symbol)", fontsize=7, loc="left")
    return fig
