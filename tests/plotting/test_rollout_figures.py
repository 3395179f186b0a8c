"""Rollout figures: frame layout, the error panel, latent trajectories, the GIF, error curves, bad input."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh  # noqa: E402
from PIL import Image  # noqa: E402

from enf.data.field import FieldSpec  # noqa: E402
from enf.plotting.rollout import plot_error_curves, plot_rollout, save_rollout_gif  # noqa: E402

NX, NY = 5, 3  # plane / torus grid
NLAT, NLON = 7, 12  # sphere grid
NPHI, NTHETA, NR = 8, 5, 3  # ball grid, theta index 2 on the equator


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def grid_coords(kind: str) -> np.ndarray:
    """``[N, coord_dim]`` full grid of ``kind``, flattened row-major."""
    if kind in ("plane", "torus"):
        x, y = np.meshgrid(np.linspace(-1.0, 0.6, NX), np.linspace(-0.8, 0.8, NY), indexing="ij")
        return np.stack([x, y], axis=-1).reshape(-1, 2)
    if kind == "sphere":
        colat = np.arange(NLAT) * math.pi / (NLAT - 1)
        lon = np.arange(NLON) * 2 * math.pi / NLON
        t, p = np.meshgrid(colat, lon, indexing="ij")
        return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    phi = np.arange(NPHI) * 2 * math.pi / NPHI
    theta = np.arccos(np.linspace(-0.8, 0.8, NTHETA))
    p, t, r = np.meshgrid(phi, theta, np.linspace(0.2, 0.8, NR), indexing="ij")
    xyz = np.stack([r * np.sin(t) * np.cos(p), r * np.sin(t) * np.sin(p), r * np.cos(t)], axis=-1)
    return xyz.reshape(-1, 3)


GRIDS = {"plane": (NX, NY), "torus": (NX, NY), "sphere": (NLAT, NLON), "ball": (NPHI, NTHETA, NR)}
POSE_DIM = {"plane": 2, "torus": 4, "sphere": 6, "ball": 9}


def case(kind: str, num_times: int = 7, num_latents: int = 3, channels: int = 2):
    """``(spec, coords [N, d], truth [T, N, C], prediction [T, N, C], times [T], poses [T, L, P])``."""
    gen = torch.Generator().manual_seed(3)
    spec = FieldSpec(
        kind=kind, coord_dim=2 if kind in ("plane", "torus") else 3, num_channels=channels,
        grid_shape=GRIDS[kind], channel_names=("u", "v")[:channels], name=f"{kind} demo",
    )  # fmt: skip
    coords = grid_coords(kind)
    truth = torch.rand(num_times, coords.shape[0], channels, generator=gen, dtype=torch.float64)
    prediction = truth + 0.2 * torch.randn(truth.shape, generator=gen, dtype=torch.float64)
    times = 0.1 * torch.arange(num_times, dtype=torch.float64)
    poses = 0.6 * (
        torch.rand(num_times, num_latents, POSE_DIM[kind], generator=gen, dtype=torch.float64) - 0.5
    )
    return spec, coords, truth, prediction, times, poses


def panels(fig) -> list[list]:
    """The ``3 x F`` field axes in row-major order of creation (colour bars excluded)."""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    cols = len(axes) // 3
    return [axes[r * cols : (r + 1) * cols] for r in range(3)]


def drawn_values(ax) -> tuple[np.ndarray, object]:
    """The array of the panel's field artist (an image or a QuadMesh) and the artist."""
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    artist = ax.get_images()[0] if ax.get_images() else meshes[0]
    return np.asarray(artist.get_array(), dtype=np.float64), artist


def paths(ax) -> list[np.ndarray]:
    return [line.get_xydata() for line in ax.get_lines() if line.get_gid() == "latent-path"]


def dots(ax, *, filled: bool = True) -> np.ndarray:
    found = [
        c.get_offsets()
        for c in ax.collections
        if isinstance(c, PathCollection) and (len(c.get_facecolor()) > 0) == filled
    ]
    return np.concatenate(found) if found else np.zeros((0, 2))


# ---------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("kind", ["plane", "torus", "sphere", "ball"])
def test_frames_are_evenly_spaced_with_ends_and_extrapolation_marked(kind: str) -> None:
    spec, coords, truth, prediction, times, poses = case(kind, num_times=7)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, horizon=4, num_frames=4)
    grid = panels(fig)
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(fig.axes) == 3 * 4 + 2 and len(colorbars) == 2
    # frames 0, 2, 4, 6 of T = 7; 4 and 6 lie beyond the 4 in-horizon frames 0..3
    expected = ["t = 0", "t = 0.2", "t = 0.4\n(extrapolation)", "t = 0.6\n(extrapolation)"]
    assert [ax.get_title() for ax in grid[0]] == expected
    for c, k in enumerate((0, 2, 4, 6)):
        mse = float(((prediction[k] - truth[k]) ** 2).mean())
        assert grid[2][c].get_title() == f"MSE {mse:.3g}"
    assert [grid[r][0].get_ylabel() for r in range(3)] == ["truth: u", "prediction: u", "|error|: u"]
    if kind == "sphere":
        assert all(ax.name == "mollweide" for row in grid for ax in row)
    fig.canvas.draw()


def test_more_frames_than_times_shows_every_time_and_no_horizon_marks_nothing() -> None:
    spec, coords, truth, prediction, times, _ = case("plane", num_times=3)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, num_frames=6)
    assert [ax.get_title() for ax in panels(fig)[0]] == ["t = 0", "t = 0.1", "t = 0.2"]
    assert not any(paths(ax) for row in panels(fig) for ax in row)  # no poses, no tracks


# ------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize("kind", ["plane", "torus"])
def test_planar_panels_hold_the_frame_in_pixel_layout_and_error_is_absolute(kind: str) -> None:
    spec, coords, truth, prediction, times, poses = case(kind, num_times=5)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=3, channel=1)
    grid = panels(fig)

    def as_image(values: torch.Tensor) -> np.ndarray:  # [nx * ny] with (x_i, y_j) -> rows y descending
        return values.numpy().reshape(NX, NY).T[::-1]

    frames = (0, 2, 4)
    for c, k in enumerate(frames):
        (t_img, t_art), (p_img, _), (e_img, e_art) = (drawn_values(grid[r][c]) for r in range(3))
        np.testing.assert_allclose(t_img, as_image(truth[k, :, 1]), atol=1e-12)
        np.testing.assert_allclose(p_img, as_image(prediction[k, :, 1]), atol=1e-12)
        np.testing.assert_allclose(e_img, as_image((prediction[k, :, 1] - truth[k, :, 1]).abs()), atol=1e-12)
        assert e_art.get_cmap().name == "magma"
    # one scale for truth and prediction over the shown frames, another for the error
    shown_t, shown_p = truth[list(frames), :, 1], prediction[list(frames), :, 1]
    lo, hi = float(torch.minimum(shown_t, shown_p).min()), float(torch.maximum(shown_t, shown_p).max())
    for c in range(3):
        assert drawn_values(grid[0][c])[1].get_clim() == pytest.approx((lo, hi))
        assert drawn_values(grid[1][c])[1].get_clim() == pytest.approx((lo, hi))
        top = float((shown_p - shown_t).abs().max())
        assert drawn_values(grid[2][c])[1].get_clim() == pytest.approx((0.0, top))


@pytest.mark.parametrize("kind", ["sphere", "ball"])
def test_curved_error_panels_hold_the_absolute_error_of_the_frame(kind: str) -> None:
    spec, coords, truth, prediction, times, poses = case(kind, num_times=4, channels=1)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=2)
    grid = panels(fig)
    for c, k in enumerate((0, 3)):
        error = (prediction[k, :, 0] - truth[k, :, 0]).abs().numpy()
        if kind == "ball":  # the equatorial slice, theta index 2
            error = error.reshape(NPHI, NTHETA, NR)[:, 2]
        drawn = np.unique(drawn_values(grid[2][c])[0])
        # random values: equal sets mean each node's error is drawn (the sphere repeats its seam column)
        np.testing.assert_allclose(drawn, np.unique(error), atol=1e-12)
        other = (prediction[3 - k, :, 0] - truth[3 - k, :, 0]).abs().numpy()
        assert not np.allclose(drawn, np.unique(other)[: drawn.size])  # another frame differs


# ---------------------------------------------------------------------------------------- latents


def test_plane_paths_run_from_the_first_frame_to_the_current_one() -> None:
    spec, coords, truth, prediction, times, poses = case("plane", num_times=5, num_latents=3)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=3)
    grid = panels(fig)
    for c, k in enumerate((0, 2, 4)):
        drawn = paths(grid[1][c])
        assert len(drawn) == 3
        for latent in range(3):
            np.testing.assert_allclose(drawn[latent], poses[: k + 1, latent, :2].numpy())
        np.testing.assert_allclose(dots(grid[1][c]), poses[k, :, :2].numpy())
        assert not paths(grid[0][c]) and not paths(grid[2][c])  # tracks on the prediction row only


def test_torus_paths_are_wrapped_and_broken_at_the_seam() -> None:
    spec, coords, truth, prediction, times, _ = case("torus", num_times=4)
    x = torch.tensor([0.6, 0.8, 1.0, 1.2], dtype=torch.float64)
    poses = torch.stack([x, torch.full_like(x, 0.1), torch.ones_like(x), torch.zeros_like(x)], -1)[:, None]
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=4)
    (path,) = paths(panels(fig)[1][3])
    expected = [[0.6, 0.1], [0.8, 0.1], [np.nan, np.nan], [-1.0, 0.1], [-0.8, 0.1]]
    np.testing.assert_allclose(path, expected, atol=1e-12)
    np.testing.assert_allclose(dots(panels(fig)[1][3]), [[-0.8, 0.1]], atol=1e-12)


def test_sphere_paths_are_longitude_latitude_and_broken_at_the_date_line() -> None:
    spec, coords, truth, prediction, times, _ = case("sphere", num_times=3)
    lon, lat = np.array([2.9, 3.1, 3.3]), np.array([0.2, 0.4, 0.6])
    xyz = 2.0 * np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)  # not unit
    poses = np.concatenate([xyz, np.tile([1.0, 0.0, 0.0], (3, 1))], -1)[:, None]  # [T, L=1, 6]
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=3)
    (path,) = paths(panels(fig)[1][2])
    expected = [[2.9, 0.2], [3.1, 0.4], [np.nan, np.nan], [3.3 - 2 * math.pi, 0.6]]
    np.testing.assert_allclose(path, expected, atol=1e-12)
    np.testing.assert_allclose(dots(panels(fig)[1][2]), [[3.3 - 2 * math.pi, 0.6]], atol=1e-12)


def test_ball_paths_are_projected_on_the_slice_with_off_slice_dots_hollow() -> None:
    spec, coords, truth, prediction, times, _ = case("ball", num_times=2)
    q = np.array([[[0.3, -0.2, 0.1], [0.1, 0.5, 0.6]], [[0.35, -0.1, 0.05], [0.0, 0.4, 0.7]]])  # [T, L, 3]
    poses = np.concatenate([q, np.broadcast_to(np.eye(3)[:2].reshape(6), (2, 2, 6))], -1)
    fig = plot_rollout(spec, coords, truth, prediction, times=times, poses=poses, num_frames=2)
    ax = panels(fig)[1][1]
    drawn = paths(ax)
    np.testing.assert_allclose(drawn[0], q[:, 0, :2])
    np.testing.assert_allclose(drawn[1], q[:, 1, :2])
    np.testing.assert_allclose(dots(ax, filled=True), q[1, :1, :2])  # |z| < 0.25: on the slice
    np.testing.assert_allclose(dots(ax, filled=False), q[1, 1:, :2])


# -------------------------------------------------------------------------------------------- GIF


def test_gif_has_one_frame_per_time_and_replaces_the_file_atomically(tmp_path, monkeypatch) -> None:
    spec, coords, truth, prediction, times, poses = case("plane", num_times=4)
    level = torch.arange(4, dtype=torch.float64)[:, None, None] / 3  # frame k: the constant k / 3
    truth = level.expand_as(truth).clone()
    path = tmp_path / "rollout.gif"
    path.write_bytes(b"old")
    moves, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (moves.append((src, dst)), replace(src, dst))[1])
    out = save_rollout_gif(path, spec, coords, truth, truth.clone(), times=times, horizon=2, fps=5)
    assert out == path and os.listdir(tmp_path) == ["rollout.gif"]  # the temporary file is gone
    ((src, dst),) = moves  # written elsewhere in the same folder, then moved onto path
    assert os.path.dirname(src) == str(tmp_path) and src != str(path) and dst == path
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.info["duration"] == pytest.approx(200, abs=1)
        for k in range(4):
            gif.seek(k)
            rgb = np.asarray(gif.convert("RGB"), dtype=np.float64)
            height, width, _ = rgb.shape
            colour = 255 * np.asarray(matplotlib.colormaps["viridis"](k / 3)[:3])  # scale [0, 1] all frames
            for x in (width // 6, width // 2):  # the middle of the truth and the prediction panels
                np.testing.assert_allclose(rgb[height // 2, x], colour, atol=3)


def test_gif_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch) -> None:
    spec, coords, truth, prediction, times, poses = case("sphere", num_times=2, channels=1)
    path = tmp_path / "r.gif"
    path.write_bytes(b"old")
    finish = PillowWriter.finish

    def fail_after_writing(self):
        finish(self)
        raise RuntimeError("disk full")

    monkeypatch.setattr(PillowWriter, "finish", fail_after_writing)
    with pytest.raises(RuntimeError, match="disk full"):
        save_rollout_gif(path, spec, coords, truth, prediction, times=times, poses=poses)
    assert os.listdir(tmp_path) == ["r.gif"] and path.read_bytes() == b"old"


# ------------------------------------------------------------------------------------- error curves


def test_error_curves_hold_the_values_bands_and_the_horizon_line() -> None:
    times = np.linspace(0.0, 2.0, 5)
    mean = np.array([1e-4, 5e-4, 1e-3, 4e-3, 1e-2])
    std = np.array([5e-5, 1e-4, 2e-3, 1e-3, 2e-3])  # frame 2: mean - std < 0
    other = torch.logspace(-3, -1, 5, dtype=torch.float64)
    fig = plot_error_curves({"enf": (mean, std), "fno": other}, times=times, horizon=3, title="x")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["enf"].get_xydata(), np.stack([times, mean], -1))
    np.testing.assert_allclose(lines["fno"].get_ydata(), other.numpy())
    horizon = lines["end of training horizon"]
    assert horizon.get_linestyle() == "--" and list(horizon.get_xdata()) == [times[2], times[2]]
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    lower = np.where(mean > std, mean - std, mean**2 / (mean + std))
    for value in np.concatenate([lower, mean + std]):
        assert np.min(np.abs(ys - value)) < 1e-12 * value
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["enf", "fno", "end of training horizon"]


# ------------------------------------------------------------------------------------------ errors


def test_bad_inputs_name_the_shapes() -> None:
    spec, coords, truth, prediction, times, poses = case("plane", num_times=5)
    with pytest.raises(ValueError, match=r"\(5, 15, 2\) and \(4, 15, 2\)"):
        plot_rollout(spec, coords, truth, prediction[:4], times=times)
    with pytest.raises(ValueError, match=r"times must have shape \[T=5\], got shape \(4,\)"):
        plot_rollout(spec, coords, truth, prediction, times=times[:4])
    with pytest.raises(ValueError, match=r"coords must have shape \[N=15, coord_dim\]"):
        plot_rollout(spec, coords[None], truth, prediction, times=times)
    with pytest.raises(ValueError, match=r"poses for kind 'plane' must have shape \[T=5, L, pose_dim >= 2\]"):
        plot_rollout(spec, coords, truth, prediction, times=times, poses=poses[:3])
    with pytest.raises(ValueError, match="grid_shape"):
        plot_rollout(spec, coords[:12], truth[:, :12], prediction[:, :12], times=times)
    with pytest.raises(ValueError, match=r"horizon .* \[1, T=5\]"):
        plot_rollout(spec, coords, truth, prediction, times=times, horizon=6)
    with pytest.raises(ValueError, match="num_frames must be an int >= 2"):
        plot_rollout(spec, coords, truth, prediction, times=times, num_frames=1)
    with pytest.raises(ValueError, match="channel must be"):
        plot_rollout(spec, coords, truth, prediction, times=times, channel=2)
    with pytest.raises(ValueError, match="must end in .gif"):
        save_rollout_gif("x.png", spec, coords, truth, prediction, times=times)
    with pytest.raises(ValueError, match=r"curve 'fno' must have shape \[T=5\] like times, got \(4,\)"):
        plot_error_curves({"fno": np.ones(4)}, times=np.arange(5.0))
    with pytest.raises(ValueError, match=r"std of curve 'enf' must be non-negative with shape \(5,\)"):
        plot_error_curves({"enf": (np.ones(5), -np.ones(5))}, times=np.arange(5.0))
