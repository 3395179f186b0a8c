"""Figures: fields of every kind (images, planar PDE frames, torus, sphere, ball, points) with latents on them.

:func:`plot_fields` draws a batch of signals described by a :class:`~enf.data.field.FieldSpec`: one column
per sample, rows ground truth / reconstruction / error (``prediction - target``). :func:`plot_latents` draws
latent poses on an axis in the same coordinates as the field. How each kind is drawn:

* ``image`` (grid ``(H, W)``, :mod:`enf.data.grid`): ``imshow(image, extent=imshow_extent(H, W))`` with the
  default ``origin="upper"``, so the latent at ``(x, y)`` drawn with ``scatter(x, y)`` lands on its pixel.
* ``plane`` / ``torus`` (grid ``(nx, ny)``, ``coords[i, j] = (x_i, y_j)``): the grid goes through
  :func:`~enf.data.grid.plane_grid_to_image` (the one conversion to the image layout) and is drawn with the
  extent of its coordinates (pixel centres on ``(x_i, y_j)``); torus latents are wrapped into ``[-1, 1)``.
* ``sphere`` (grid ``(nlat, nlon)`` of unit vectors): a Mollweide map, longitude ``atan2(y, x)`` in
  ``[-pi, pi)``, latitude ``asin(z)``, one ``pcolormesh`` cell per grid node; latents at the longitude and
  latitude of their (normalised) first three pose components.
* ``ball`` (grid ``(nphi, ntheta, nr)`` of Cartesian points): the equatorial slice (the ``theta`` index whose
  points have the smallest ``|z|``) as a polar ``pcolormesh`` on the ``(x, y)`` disc; latents with
  ``|q_z| < 0.25`` drawn at ``(q_x, q_y)``.
* ``points``: a scatter of the first two coordinate components coloured by value.

Orientation arrows are drawn for planar poses of width 4 (``se2``: position, orientation).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from enf.data.field import FieldSpec
from enf.data.grid import image_to_signal, imshow_extent, pixel_coords, plane_grid_to_image

__all__ = ["BALL_SLICE_HALF_WIDTH", "plot_fields", "plot_latents", "plot_reconstructions", "save_figure"]

BALL_SLICE_HALF_WIDTH = 0.25
"""Ball latents with ``|q_z|`` below this are drawn on the equatorial slice."""

_GRID_RANK = {"image": 2, "plane": 2, "torus": 2, "sphere": 2, "ball": 3}
_PLANAR = ("image", "plane", "torus", "points")
_LATENT_STYLE = {"s": 10, "c": "tab:red", "edgecolors": "white", "linewidths": 0.4, "zorder": 3}


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles in ``[-pi, pi)``."""
    return np.mod(angle + math.pi, 2.0 * math.pi) - math.pi


def _mid_edges(centres: np.ndarray, *, first: float | None = None, last: float | None = None) -> np.ndarray:
    """Cell edges ``[n + 1]`` between ascending ``centres [n]`` (ends extrapolated unless given)."""
    if centres.size == 1:
        edges = np.array([centres[0] - 1.0, centres[0] + 1.0])
    else:
        mids = 0.5 * (centres[1:] + centres[:-1])
        edges = np.concatenate([[2 * centres[0] - mids[0]], mids, [2 * centres[-1] - mids[-1]]])
    if first is not None:
        edges[0] = first
    if last is not None:
        edges[-1] = last
    return edges


def _periodic_edges(angles: np.ndarray) -> np.ndarray:
    """Edges ``[n + 1]`` (span exactly ``2 pi``) of cells around ascending periodic ``angles [n]``."""
    ext = np.concatenate([[angles[-1] - 2 * math.pi], angles, [angles[0] + 2 * math.pi]])
    return 0.5 * (ext[1:] + ext[:-1])


# ------------------------------------------------------------------------------------------- latents


def plot_latents(
    spec: FieldSpec | Mapping[str, Any], poses: Tensor | np.ndarray, *, ax: Axes | None = None
) -> Axes:
    """Draw latent poses ``[L, pose_dim]`` on ``ax`` in the coordinates :func:`plot_fields` uses for ``spec``.

    Planar kinds: positions ``poses[:, :2]`` (wrapped into ``[-1, 1)`` on the torus), plus orientation arrows
    ``poses[:, 2:4]`` when ``pose_dim == 4`` (se2). Sphere: ``(lon, lat)`` of ``poses[:, :3] / |poses[:, :3]|``.
    Ball: ``(q_x, q_y)`` of the positions ``q = poses[:, :3]`` with ``|q_z| < BALL_SLICE_HALF_WIDTH``.
    The axis limits are kept. ``ax=None`` makes a new figure (a Mollweide axis for the sphere).
    """
    spec = FieldSpec.from_dict(spec)
    p = _numpy(poses)
    need = 2 if spec.kind in _PLANAR else 3
    if p.ndim != 2 or p.shape[-1] < need:
        raise ValueError(
            f"poses for kind {spec.kind!r} must have shape [L, pose_dim >= {need}], got shape {p.shape}"
        )
    if ax is None:
        fig = Figure(figsize=(4.0, 2.4 if spec.kind == "sphere" else 3.2))
        ax = fig.add_subplot(projection="mollweide" if spec.kind == "sphere" else None)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    if spec.kind == "sphere":
        n = p[:, :3] / np.maximum(np.linalg.norm(p[:, :3], axis=-1, keepdims=True), 1e-12)
        ax.scatter(
            _wrap_angle(np.arctan2(n[:, 1], n[:, 0])), np.arcsin(np.clip(n[:, 2], -1, 1)), **_LATENT_STYLE
        )
        return ax
    if spec.kind == "ball":
        q = p[:, :3][np.abs(p[:, 2]) < BALL_SLICE_HALF_WIDTH]
        ax.scatter(q[:, 0], q[:, 1], **_LATENT_STYLE)
    else:
        pos = p[:, :2]
        if spec.kind == "torus":
            pos = np.mod(pos + 1.0, 2.0) - 1.0
        ax.scatter(pos[:, 0], pos[:, 1], **_LATENT_STYLE)
        if p.shape[-1] == 4:
            o = p[:, 2:4] / np.maximum(np.linalg.norm(p[:, 2:4], axis=-1, keepdims=True), 1e-12)
            length = 0.08 * max(abs(xlim[1] - xlim[0]), abs(ylim[1] - ylim[0]))
            ax.quiver(
                pos[:, 0],
                pos[:, 1],
                length * o[:, 0],
                length * o[:, 1],
                angles="xy",
                scale_units="xy",
                scale=1.0,
                color="tab:red",
                width=0.008,
                zorder=3,
            )
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    return ax


# -------------------------------------------------------------------------------------------- fields


def _draw_grid(spec: FieldSpec, ax: Axes, coords: np.ndarray, values: np.ndarray, **style: Any):
    """Draw one sample's ``values [N]`` (or ``[N, 3]`` RGB for images) at ``coords [N, coord_dim]``."""
    kind, shape = spec.kind, spec.grid_shape
    if kind == "image":
        height, width = shape
        image = values.reshape(height, width, -1)  # row-major, the order of pixel_coords
        image = np.clip(image, 0.0, 1.0) if image.shape[-1] == 3 else image[..., 0]
        return ax.imshow(image, extent=imshow_extent(height, width), interpolation="nearest", **style)
    if kind in ("plane", "torus"):
        nx, ny = shape
        image = plane_grid_to_image(values.reshape(nx, ny, 1))[..., 0]  # [ny, nx]
        xy = plane_grid_to_image(coords[:, :2].reshape(nx, ny, 2))  # (x, y) of each pixel
        xs, ys = xy[0, :, 0], xy[::-1, 0, 1]  # ascending
        xe, ye = _mid_edges(xs), _mid_edges(ys)
        return ax.imshow(image, extent=(xe[0], xe[-1], ye[0], ye[-1]), interpolation="nearest", **style)
    if kind == "sphere":
        nlat, nlon = shape
        grid, xyz = values.reshape(nlat, nlon), coords[:, :3].reshape(nlat, nlon, 3)
        lat = np.arcsin(np.clip(xyz[..., 2].mean(axis=1), -1.0, 1.0))
        equator = int(np.argmax(np.linalg.norm(xyz[..., :2], axis=-1).mean(axis=1)))
        lon = _wrap_angle(np.arctan2(xyz[equator, :, 1], xyz[equator, :, 0]))
        rows, cols = np.argsort(lat), np.argsort(lon)
        lat, lon, grid = lat[rows], lon[cols], grid[rows][:, cols]
        lon_edges = _periodic_edges(lon)
        if lon_edges[0] < -math.pi:  # the first cell straddles the seam: its other part is drawn at +pi
            lon_edges, grid = (
                np.concatenate([[-math.pi], lon_edges[1:], [math.pi]]),
                grid[:, np.r_[0:nlon, 0]],
            )
        elif lon_edges[0] > -math.pi:  # the last cell straddles the seam
            lon_edges, grid = (
                np.concatenate([[-math.pi], lon_edges[:-1], [math.pi]]),
                grid[:, np.r_[-1, 0:nlon]],
            )
        lat_edges = _mid_edges(lat, first=-0.5 * math.pi, last=0.5 * math.pi)
        return ax.pcolormesh(lon_edges, lat_edges, grid, shading="flat", **style)
    if kind == "ball":
        nphi, ntheta, nr = shape
        xyz = coords[:, :3].reshape(nphi, ntheta, nr, 3)
        k = int(np.argmin(np.abs(xyz[..., 2]).mean(axis=(0, 2))))
        grid, xy = values.reshape(nphi, ntheta, nr)[:, k], xyz[:, k, :, :2]  # [nphi, nr], [nphi, nr, 2]
        rho = np.linalg.norm(xy, axis=-1).mean(axis=0)
        outer = xy[:, int(np.argmax(rho))]  # phi of each row, read where it is best defined
        phi = np.mod(np.arctan2(outer[:, 1], outer[:, 0]), 2.0 * math.pi)
        rows, cols = np.argsort(phi), np.argsort(rho)
        phi_e, rho_e = _periodic_edges(phi[rows]), _mid_edges(rho[cols], first=0.0)
        x_e, y_e = np.outer(np.cos(phi_e), rho_e), np.outer(np.sin(phi_e), rho_e)
        ax.set_aspect("equal")
        return ax.pcolormesh(x_e, y_e, grid[rows][:, cols], shading="flat", **style)
    ax.set_aspect("equal")
    return ax.scatter(coords[:, 0], coords[:, 1], c=values, s=12, **style)


def _figure_size(spec: FieldSpec, coords: np.ndarray, num_items: int) -> tuple[float, float]:
    """Inches for ``3 x num_items`` panels of the field's aspect ratio, colour bars and labels included."""
    if spec.kind == "sphere":
        aspect = 0.5
    elif spec.kind in ("ball", "points"):
        aspect = 1.0
    else:
        span = np.ptp(coords[:, :2], axis=0) if spec.kind != "image" else spec.grid_shape[::-1]
        aspect = float(min(max(span[1] / max(span[0], 1e-12), 0.4), 2.5))
    panel_width = 3.0 if spec.kind == "sphere" else 2.0
    return (panel_width + 0.9) * num_items + 0.4, 3 * (panel_width * aspect + 0.45) + 0.3


def _check_inputs(
    spec: FieldSpec, coords: np.ndarray, target: np.ndarray, prediction: np.ndarray, channel: int
):
    if target.ndim != 3 or target.shape != prediction.shape:
        raise ValueError(
            f"target and prediction must both have shape [B, N, C], got {target.shape} and {prediction.shape}"
        )
    if target.shape[-1] != spec.num_channels:
        raise ValueError(
            f"signals have {target.shape[-1]} channels but spec.num_channels={spec.num_channels}"
        )
    min_dim = 3 if spec.kind in ("sphere", "ball") else 2
    if coords.ndim != 3 or coords.shape[:2] != target.shape[:2] or coords.shape[-1] < min_dim:
        raise ValueError(
            f"coords must have shape [B, N, coord_dim >= {min_dim}] matching target {target.shape[:2]}, "
            f"got shape {coords.shape}"
        )
    rank = _GRID_RANK.get(spec.kind)
    if rank is not None:
        if len(spec.grid_shape) != rank or math.prod(spec.grid_shape) != target.shape[1]:
            raise ValueError(
                f"kind {spec.kind!r} needs spec.grid_shape of {rank} sizes whose product is N={target.shape[1]} "
                f"(the full grid), got grid_shape={spec.grid_shape}; draw subsets with kind='points'"
            )
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < spec.num_channels:
        raise ValueError(f"channel must be an int in [0, {spec.num_channels}), got {channel!r}")


def plot_fields(
    spec: FieldSpec | Mapping[str, Any],
    coords: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    prediction: Tensor | np.ndarray,
    poses: Tensor | np.ndarray | None = None,
    *,
    channel: int = 0,
    max_items: int = 4,
    title: str = "",
    denormalize: bool = False,
) -> Figure:
    """Ground truth, reconstruction and error of up to ``max_items`` samples, latents on the reconstruction.

    Columns are samples (titled with the sample's MSE over all channels of the drawn values); rows are
    ground truth, reconstruction (with the latents, see :func:`plot_latents`) and error
    ``prediction - target`` (diverging colormap, limits symmetric about 0), each panel with a colour bar.
    Truth and reconstruction share colour limits per sample (their joint min and max). RGB images
    (``kind="image"`` with 3 channels) are drawn in colour without colour bars, their error as the mean
    absolute error over the channels; other images in gray on ``[0, data_range or 1]``. Other signals draw
    ``channel``. How each ``spec.kind`` is laid out: see the module docstring.

    Args:
        spec: the dataset's :class:`FieldSpec` (or its ``to_dict()``).
        coords: ``[B, N, coord_dim]`` coordinates; for grid kinds the full grid, flattened row-major.
        target: ``[B, N, C]`` ground truth.
        prediction: ``[B, N, C]`` reconstruction.
        poses: ``[B, L, pose_dim]`` latent poses, or ``None``.
        channel: the channel drawn (ignored for RGB images).
        max_items: at most this many samples (columns).
        title: figure title (default: ``spec.name``).
        denormalize: draw ``spec.denormalize`` of the signals (for normalised signals; leave ``False``
            when the caller passes physical values already).
    """
    spec = FieldSpec.from_dict(spec)
    coords, target, prediction = _numpy(coords), _numpy(target), _numpy(prediction)
    _check_inputs(spec, coords, target, prediction, channel)
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ValueError(f"max_items must be a positive int, got {max_items!r}")
    if denormalize and spec.normalized:
        target = _numpy(spec.denormalize(torch.from_numpy(target)))
        prediction = _numpy(spec.denormalize(torch.from_numpy(prediction)))
    pose_arr = None if poses is None else _numpy(poses)
    if pose_arr is not None and (pose_arr.ndim != 3 or pose_arr.shape[0] != target.shape[0]):
        raise ValueError(
            f"poses must have shape [B={target.shape[0]}, L, pose_dim], got shape {pose_arr.shape}"
        )
    num_items = min(max_items, target.shape[0])
    rgb = spec.kind == "image" and spec.num_channels == 3
    name = "RGB" if rgb else spec.channel_names[channel]
    fig = Figure(figsize=_figure_size(spec, coords[0], num_items), layout="constrained")
    projection = "mollweide" if spec.kind == "sphere" else None
    axes = [
        [
            fig.add_subplot(3, num_items, r * num_items + i + 1, projection=projection)
            for i in range(num_items)
        ]
        for r in range(3)
    ]
    for i in range(num_items):
        truth, recon = target[i], prediction[i]
        mse = float(np.mean((recon - truth) ** 2))
        if rgb:
            rows = [(truth, None), (recon, None), (np.abs(recon - truth).mean(axis=-1), "magma")]
        else:
            error = recon[:, channel] - truth[:, channel]
            cmap = "gray" if spec.kind == "image" else "viridis"
            rows = [(truth[:, channel], cmap), (recon[:, channel], cmap), (error, "RdBu_r")]
        drawn = [
            _draw_grid(spec, axes[r][i], coords[i], values, cmap=cmap)
            for r, (values, cmap) in enumerate(rows)
        ]
        # colour limits from what is drawn (the ball draws one slice of the field)
        arrays = [np.asarray(m.get_array(), dtype=np.float64) for m in drawn]
        if rgb:
            drawn[2].set_clim(0.0, max(float(arrays[2].max()), 1e-12))
        else:
            if spec.kind == "image":
                lo, hi = 0.0, spec.data_range or 1.0
            else:
                lo, hi = (
                    float(min(arrays[0].min(), arrays[1].min())),
                    float(max(arrays[0].max(), arrays[1].max())),
                )
            for m in drawn[:2]:
                m.set_clim(lo, hi if hi > lo else lo + 1e-12)
            bound = max(float(np.abs(arrays[2]).max()), 1e-12)
            drawn[2].set_clim(-bound, bound)
        for row, mappable in enumerate(drawn):
            ax = axes[row][i]
            if not (rgb and row < 2):
                fig.colorbar(mappable, ax=ax, shrink=0.8)
            if spec.kind == "sphere":
                ax.set_xticklabels([])
                ax.set_yticklabels([])
                ax.grid(True, alpha=0.3)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        if pose_arr is not None:
            plot_latents(spec, pose_arr[i], ax=axes[1][i])
        axes[0][i].set_title(f"#{i}  MSE {mse:.3g}", fontsize=8)
    for row, label in enumerate(("truth", "reconstruction", "error")):
        axes[row][0].set_ylabel(f"{label}: {name}", fontsize=8)
    if title or spec.name:
        fig.suptitle(title or spec.name, fontsize=9)
    return fig


def plot_reconstructions(
    target: Tensor, prediction: Tensor, poses: Tensor | None = None, *, max_items: int = 8, title: str = ""
) -> Figure:
    """Images through :func:`plot_fields`: rows ground truth, reconstruction with latents, error.

    Args:
        target: ``[B, H, W, C]`` in ``[0, 1]``.
        prediction: ``[B, H, W, C]``.
        poses: ``[B, L, pose_dim]`` planar poses (position first; ``pose_dim == 4`` adds orientation arrows).
    """
    if target.ndim != 4:
        raise ValueError(f"target must have shape [B, H, W, C], got shape {tuple(target.shape)}")
    b, h, w, c = target.shape
    spec = FieldSpec(kind="image", coord_dim=2, num_channels=c, grid_shape=(h, w), data_range=1.0)
    coords = pixel_coords(h, w, dtype=torch.float64).expand(b, h * w, 2)
    signal = image_to_signal(target.detach().cpu().double())
    pred = image_to_signal(prediction.detach().cpu().double())
    return plot_fields(spec, coords, signal, pred, poses, max_items=max_items, title=title)


def save_figure(fig: Figure, path) -> None:
    """Save a figure (PNG); one that pyplot manages (``plt.figure()``) is closed. The library's own figures
    are plain ``Figure`` objects, outside pyplot's state, and need no closing."""
    fig.savefig(path, dpi=110)
    pyplot = sys.modules.get("matplotlib.pyplot")  # without pyplot imported there are no pyplot figures
    if pyplot is not None:
        pyplot.close(fig)
