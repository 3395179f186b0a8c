"""Figures of PDE forecasts: rollout frames with latent trajectories, rollout GIFs, error-vs-time curves.

One trajectory is ``coords [N, coord_dim]`` (the full grid of ``spec``, flattened row-major) with
``truth`` and ``prediction`` ``[T, N, C]`` at ``times [T]`` and optional latent ``poses [T, L, pose_dim]``.
The fields are drawn as :func:`enf.plotting.plot_fields` draws them (same helpers: planes and the torus in
the pixel convention, the sphere on a Mollweide map, the ball as its equatorial slice). Latent positions
``positions [T, L, 2]`` are taken in the same panel coordinates:

* planar kinds: ``poses[..., :2]``; on the torus wrapped into ``[-1, 1)``;
* ``sphere``: longitude ``atan2(y, x)`` in ``[-pi, pi)`` and latitude ``asin(z)`` of ``poses[..., :3]``
  normalised;
* ``ball``: ``(q_x, q_y)`` of ``q = poses[..., :3]``, every latent projected onto the slice plane ``z = 0``.
  Latents in the slab ``|q_z| < BALL_SLICE_HALF_WIDTH`` get a filled dot (as in ``plot_fields``), the
  others a hollow one.

A path is broken (a NaN row in the line data) where it crosses a seam: a jump of more than half the
period, ``1`` in a torus coordinate, ``pi`` in longitude.

The end of the training horizon: ``horizon`` is the number of frames inside it, so frame ``k`` (0-based)
is an extrapolation when ``k >= horizon`` and the horizon line of :func:`plot_error_curves` sits at
``times[horizon - 1]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from enf.data.field import FieldSpec
from enf.io import atomic_write
from enf.plotting.fields import (
    _PLANAR,
    BALL_SLICE_HALF_WIDTH,
    _check_inputs,
    _draw_grid,
    _figure_size,
    _numpy,
    _wrap_angle,
    plot_latents,
)

__all__ = ["plot_error_curves", "plot_rollout", "save_rollout_gif"]

_log = logging.getLogger(__name__)

_FIELD_CMAP, _ERROR_CMAP = "viridis", "magma"
_PATH_STYLE = {"color": "tab:red", "linewidth": 0.8, "alpha": 0.7, "zorder": 2.5, "gid": "latent-path"}
_OFF_SLICE_STYLE = {"s": 10, "facecolors": "none", "edgecolors": "tab:red", "linewidths": 0.6, "zorder": 3}

Array = Tensor | np.ndarray


# -------------------------------------------------------------------------------------------- inputs


def _rollout_inputs(
    spec: FieldSpec,
    coords: Array,
    truth: Array,
    prediction: Array,
    *,
    times: Array,
    poses: Array | None,
    horizon: int | None,
    channel: int,
    denormalize: bool,
) -> tuple[np.ndarray, ...]:
    """Validated float64 ``coords [N, d]``, ``truth, prediction [T, N, C]``, ``times [T]``, ``poses``."""
    coords, truth, prediction, times = (_numpy(a) for a in (coords, truth, prediction, times))
    if truth.ndim != 3 or truth.shape != prediction.shape:
        raise ValueError(
            f"truth and prediction must both have shape [T, N, C], got {truth.shape} and {prediction.shape}"
        )
    num_times, num_coords = truth.shape[:2]
    if coords.ndim != 2 or coords.shape[0] != num_coords:
        raise ValueError(
            f"coords must have shape [N={num_coords}, coord_dim] (one trajectory, no time axis), "
            f"got shape {coords.shape}"
        )
    if times.shape != (num_times,):
        raise ValueError(f"times must have shape [T={num_times}], got shape {times.shape}")
    # kind, grid, channel and coordinate-width checks are those of plot_fields, frames as the batch
    _check_inputs(spec, np.broadcast_to(coords, (num_times, *coords.shape)), truth, prediction, channel)
    _check_horizon(horizon, num_times)
    pose_arr = None
    if poses is not None:
        pose_arr = _numpy(poses)
        need = 2 if spec.kind in _PLANAR else 3
        if pose_arr.ndim != 3 or pose_arr.shape[0] != num_times or pose_arr.shape[-1] < need:
            raise ValueError(
                f"poses for kind {spec.kind!r} must have shape [T={num_times}, L, pose_dim >= {need}], "
                f"got shape {pose_arr.shape}"
            )
    if denormalize and spec.normalized:
        truth = _numpy(spec.denormalize(torch.from_numpy(truth)))
        prediction = _numpy(spec.denormalize(torch.from_numpy(prediction)))
    return coords, truth, prediction, times, pose_arr


def _check_horizon(horizon: int | None, num_times: int) -> None:
    if horizon is not None and (
        isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= num_times
    ):
        raise ValueError(
            f"horizon (the number of in-horizon frames) must be an int in [1, T={num_times}] or None, "
            f"got {horizon!r}"
        )


def _frame_indices(num_times: int, num_frames: int) -> np.ndarray:
    """``min(num_frames, T)`` evenly spaced frame indices, the first and the last included."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames must be an int >= 2 (the first and the last frame), got {num_frames!r}")
    # spacing (T - 1) / (n - 1) >= 1, so the rounded indices are distinct
    return np.rint(np.linspace(0, num_times - 1, min(num_frames, num_times))).astype(int)


def _norms(truth: np.ndarray, prediction: np.ndarray, error: np.ndarray) -> tuple[Normalize, Normalize]:
    """One colour scale for truth and prediction (joint min/max), one for ``|error|`` (``[0, max]``)."""
    lo, hi = float(min(truth.min(), prediction.min())), float(max(truth.max(), prediction.max()))
    return Normalize(lo, hi if hi > lo else lo + 1e-12), Normalize(0.0, max(float(error.max()), 1e-12))


# ------------------------------------------------------------------------------------------- latents


def _panel_positions(spec: FieldSpec, poses: np.ndarray) -> np.ndarray:
    """Latent positions ``[..., 2]`` of ``poses [..., pose_dim]`` in the panel coordinates (module doc)."""
    if spec.kind == "sphere":
        n = poses[..., :3] / np.maximum(np.linalg.norm(poses[..., :3], axis=-1, keepdims=True), 1e-12)
        lon = _wrap_angle(np.arctan2(n[..., 1], n[..., 0]))
        return np.stack([lon, np.arcsin(np.clip(n[..., 2], -1.0, 1.0))], axis=-1)
    if spec.kind == "torus":
        return np.mod(poses[..., :2] + 1.0, 2.0) - 1.0
    return poses[..., :2].copy()


def _break_at_seams(spec: FieldSpec, path: np.ndarray) -> np.ndarray:
    """``path [K, 2]`` with a NaN row inserted wherever it jumps across a periodic seam."""
    if spec.kind == "torus":
        jumps = np.any(np.abs(np.diff(path, axis=0)) > 1.0, axis=-1)
    elif spec.kind == "sphere":
        jumps = np.abs(np.diff(path[:, 0])) > np.pi
    else:
        return path
    cuts = np.flatnonzero(jumps) + 1
    return np.insert(path, cuts, np.nan, axis=0)


def _draw_tracks(spec: FieldSpec, ax: Axes, positions: np.ndarray, poses: np.ndarray) -> None:
    """Paths ``positions [K, L, 2]`` (frames up to the current one) and the current ``poses [L, P]``."""
    limits = None if spec.kind == "sphere" else (ax.get_xlim(), ax.get_ylim())
    for latent in range(positions.shape[1]):
        path = _break_at_seams(spec, positions[:, latent])
        ax.plot(path[:, 0], path[:, 1], **_PATH_STYLE)
    plot_latents(spec, poses, ax=ax)  # the current dots (and se2 arrows), as plot_fields draws them
    if spec.kind == "ball":
        off = np.abs(poses[:, 2]) >= BALL_SLICE_HALF_WIDTH
        ax.scatter(positions[-1, off, 0], positions[-1, off, 1], **_OFF_SLICE_STYLE)
    if limits is not None:
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])


# -------------------------------------------------------------------------------------------- panels


def _style_panel(spec: FieldSpec, ax: Axes) -> None:
    if spec.kind == "sphere":
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.grid(True, alpha=0.3)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def _draw_frame(
    spec: FieldSpec,
    axes: list[Axes],
    coords: np.ndarray,
    values: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    norms: tuple[Normalize, Normalize],
    positions: np.ndarray | None,
    poses: np.ndarray | None,
    frame: int,
) -> list:
    """Truth, prediction and ``|error|`` ``[N]`` of one frame on three ``axes``; with ``poses [T, L, P]``
    (``positions [T, L, 2]``) the latent tracks up to ``frame`` on the prediction."""
    styles = ((_FIELD_CMAP, norms[0]), (_FIELD_CMAP, norms[0]), (_ERROR_CMAP, norms[1]))
    drawn = []
    for ax, panel, (cmap, norm) in zip(axes, values, styles, strict=True):
        drawn.append(_draw_grid(spec, ax, coords, panel, cmap=cmap, norm=norm))
        _style_panel(spec, ax)
    if poses is not None:
        _draw_tracks(spec, axes[1], positions[: frame + 1], poses[frame])
    return drawn


def _colorbars(fig: Figure, field_axes: list[Axes], error_axes: list[Axes], norms, name: str) -> None:
    fig.colorbar(ScalarMappable(norm=norms[0], cmap=_FIELD_CMAP), ax=field_axes, shrink=0.8, label=name)
    fig.colorbar(ScalarMappable(norm=norms[1], cmap=_ERROR_CMAP), ax=error_axes, shrink=0.8, label="|error|")


# ------------------------------------------------------------------------------------------- figures


def plot_rollout(
    spec: FieldSpec | Mapping[str, Any],
    coords: Array,
    truth: Array,
    prediction: Array,
    *,
    times: Array,
    poses: Array | None = None,
    horizon: int | None = None,
    num_frames: int = 6,
    channel: int = 0,
    title: str | None = None,
    denormalize: bool = False,
) -> Figure:
    """Frames of one forecast: rows truth, prediction (with latent trajectories) and ``|error|``.

    Columns are ``min(num_frames, T)`` evenly spaced frames, the first and the last always included,
    titled ``t = ...`` and, from frame index ``horizon`` on, ``(extrapolation)`` in red. The error panel
    is ``|prediction - truth|`` of ``channel`` (its title: the frame's MSE over all channels). Truth and
    prediction share one colour scale over all shown frames (the min and max of their values), with one
    colour bar; ``|error|`` has its own scale ``[0, max]`` and bar. On each prediction panel the path of
    every latent up to that frame is a line, its current position a dot (coordinates: module docstring).

    Args:
        spec: the dataset's :class:`FieldSpec` (or its ``to_dict()``); a grid kind or ``points``.
        coords: ``[N, coord_dim]``, the full grid flattened row-major.
        truth: ``[T, N, C]`` ground-truth trajectory.
        prediction: ``[T, N, C]`` forecast.
        times: ``[T]`` time of each frame.
        poses: ``[T, L, pose_dim]`` latent poses along the rollout, or ``None``.
        horizon: the number of frames inside the training horizon, or ``None`` (nothing marked).
        num_frames: the number of columns (at most ``T``), at least 2.
        channel: the channel drawn.
        title: figure title (default: ``spec.name``).
        denormalize: draw ``spec.denormalize`` of the signals.

    Returns:
        The figure: ``3 * F`` panels (row-major) and 2 colour bars.
    """
    spec = FieldSpec.from_dict(spec)
    coords, truth, prediction, times, poses = _rollout_inputs(
        spec, coords, truth, prediction, times=times, poses=poses, horizon=horizon, channel=channel,
        denormalize=denormalize,
    )  # fmt: skip
    frames = _frame_indices(truth.shape[0], num_frames)
    shown_truth, shown_pred = truth[frames, :, channel], prediction[frames, :, channel]  # [F, N]
    error = np.abs(shown_pred - shown_truth)
    norms = _norms(shown_truth, shown_pred, error)
    positions = None if poses is None else _panel_positions(spec, poses)  # [T, L, 2]

    num_cols = len(frames)
    width, height = _figure_size(spec, coords, num_cols)
    # _figure_size leaves room for a colour bar beside every panel; here there are two in all
    fig = Figure(figsize=(width - 0.7 * num_cols + 1.0, height), layout="constrained")
    projection = "mollweide" if spec.kind == "sphere" else None
    axes = [
        [fig.add_subplot(3, num_cols, r * num_cols + c + 1, projection=projection) for c in range(num_cols)]
        for r in range(3)
    ]
    for c, k in enumerate(frames):
        column = [axes[r][c] for r in range(3)]
        values = (shown_truth[c], shown_pred[c], error[c])
        _draw_frame(spec, column, coords, values, norms=norms, positions=positions, poses=poses, frame=k)
        late = horizon is not None and k >= horizon
        label = f"t = {times[k]:.3g}" + ("\n(extrapolation)" if late else "")
        axes[0][c].set_title(label, fontsize=8, color="tab:red" if late else "black")
        mse = float(np.mean((prediction[k] - truth[k]) ** 2))
        axes[2][c].set_title(f"MSE {mse:.3g}", fontsize=7)
    name = spec.channel_names[channel]
    _colorbars(fig, axes[0] + axes[1], axes[2], norms, name)
    for r, label in enumerate(("truth", "prediction", "|error|")):
        axes[r][0].set_ylabel(f"{label}: {name}", fontsize=8)
    if title or spec.name:
        fig.suptitle(title or spec.name, fontsize=9)
    return fig


def save_rollout_gif(
    path: str | os.PathLike,
    spec: FieldSpec | Mapping[str, Any],
    coords: Array,
    truth: Array,
    prediction: Array,
    *,
    times: Array,
    poses: Array | None = None,
    horizon: int | None = None,
    fps: float = 4,
    channel: int = 0,
    title: str | None = None,
    dpi: int = 80,
    denormalize: bool = False,
) -> Path:
    """Write an animated GIF of truth / prediction (with latent trajectories) / ``|error|``, one frame per time.

    Panels, colour scales (fixed over all ``T`` frames) and latent tracks as in :func:`plot_rollout`; the
    figure title carries ``t = ...`` and ``(extrapolation)`` from frame index ``horizon`` on. The GIF is
    rendered into a temporary file next to ``path`` and moved onto ``path`` with ``os.replace``, so
    ``path`` is never left half written. Arguments as in :func:`plot_rollout`, plus ``fps`` (frames per
    second) and ``dpi``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    spec = FieldSpec.from_dict(spec)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {str(path)!r}")
    coords, truth, prediction, times, poses = _rollout_inputs(
        spec, coords, truth, prediction, times=times, poses=poses, horizon=horizon, channel=channel,
        denormalize=denormalize,
    )  # fmt: skip
    truth, prediction = truth[..., channel], prediction[..., channel]  # [T, N]
    error = np.abs(prediction - truth)
    norms = _norms(truth, prediction, error)
    positions = None if poses is None else _panel_positions(spec, poses)

    width, height = _figure_size(spec, coords, 3)
    fig = Figure(figsize=(width, height / 3 + 0.4), layout="constrained")
    projection = "mollweide" if spec.kind == "sphere" else None
    axes = [fig.add_subplot(1, 3, c + 1, projection=projection) for c in range(3)]
    name = spec.channel_names[channel]
    _colorbars(fig, axes[:2], axes[2:], norms, name)
    heading = fig.suptitle("", fontsize=9)

    def draw(k: int) -> list:
        for ax in axes:
            ax.cla()
        values = (truth[k], prediction[k], error[k])
        drawn = _draw_frame(
            spec, axes, coords, values, norms=norms, positions=positions, poses=poses, frame=k
        )
        for ax, label in zip(axes, ("truth", "prediction", "|error|"), strict=True):
            ax.set_title(f"{label}: {name}", fontsize=8)
        late = horizon is not None and k >= horizon
        prefix = f"{title or spec.name}  " if (title or spec.name) else ""
        heading.set_text(f"{prefix}t = {times[k]:.3g}" + ("  (extrapolation)" if late else ""))
        heading.set_color("tab:red" if late else "black")
        return drawn

    animation = FuncAnimation(fig, draw, frames=truth.shape[0], init_func=lambda: draw(0), blit=False)
    # its .gif suffix tells Pillow the format
    with atomic_write(path, suffix=".gif") as tmp:
        animation.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
    _log.debug("wrote %d-frame rollout GIF to %s", truth.shape[0], path)
    return path


def plot_error_curves(
    curves: Mapping[str, Array | tuple[Array, Array]],
    *,
    times: Array,
    horizon: int | None = None,
    title: str | None = None,
    ylabel: str = "MSE",
) -> Figure:
    """Error per frame of several models against time, on a log scale.

    Each entry of ``curves`` is one line; an entry ``(mean, std)`` adds a shaded band
    ``[mean - std, mean + std]`` (where ``mean - std <= 0`` the lower edge is ``mean**2 / (mean + std)``,
    the upper edge mirrored in log space). With ``horizon``, a dashed vertical line labelled
    ``end of training horizon`` marks ``times[horizon - 1]``, the last in-horizon frame.

    Args:
        curves: model name -> ``[T]`` error per frame, or name -> ``(mean [T], std [T])``.
        times: ``[T]`` time of each frame.
        horizon: the number of frames inside the training horizon, or ``None``.
        title: axis title.
        ylabel: y-axis label.

    Returns:
        The figure (one axis, legend included).

    Example:
        >>> fig = plot_error_curves({"enf": np.array([1e-3, 2e-3, 8e-3])}, times=np.arange(3.0), horizon=2)
        >>> fig.axes[0].get_yscale()
        'log'
    """
    times = _numpy(times)
    if times.ndim != 1:
        raise ValueError(f"times must have shape [T], got shape {times.shape}")
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty dict name -> [T] values, got {curves!r}")
    num_times = times.shape[0]
    _check_horizon(horizon, num_times)
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, curve in curves.items():
        mean, std = (curve, None) if not isinstance(curve, tuple | list) else curve
        mean = _numpy(mean)
        if mean.shape != (num_times,):
            raise ValueError(f"curve {name!r} must have shape [T={num_times}] like times, got {mean.shape}")
        (line,) = ax.plot(times, mean, label=str(name), linewidth=1.2)
        if std is not None:
            std = _numpy(std)
            if std.shape != mean.shape or np.any(std < 0):
                raise ValueError(
                    f"std of curve {name!r} must be non-negative with shape {mean.shape}, got shape {std.shape}"
                )
            lower = np.where(mean - std > 0, mean - std, mean**2 / np.maximum(mean + std, 1e-300))
            ax.fill_between(times, lower, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if horizon is not None:
        ax.axvline(
            times[horizon - 1], color="0.3", linestyle="--", linewidth=1.0, label="end of training horizon"
        )
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
