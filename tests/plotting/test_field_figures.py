"""Figures of every field kind: layout, orientation of what is drawn, latents, error row."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from enf.data.field import FieldSpec  # noqa: E402
from enf.data.grid import pixel_coords  # noqa: E402
from enf.plotting import plot_fields, plot_latents, plot_reconstructions, save_figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------- grids


def plane_coords(nx: int, ny: int) -> torch.Tensor:
    """``[nx * ny, 2]``, ``coords[i, j] = (x_i, y_j)`` flattened row-major (a non-square, off-centre box)."""
    xs = torch.linspace(-1.0, 1.0, nx, dtype=torch.float64)
    ys = torch.linspace(-0.5, 1.5, ny, dtype=torch.float64)
    xx, yy = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(nx * ny, 2)


def sphere_coords(nlat: int, nlon: int) -> torch.Tensor:
    """Equiangular grid ``[nlat * nlon, 3]``: row 0 the north pole, longitude ``2 pi j / nlon``."""
    colat = torch.arange(nlat, dtype=torch.float64) * math.pi / (nlat - 1)
    lon = torch.arange(nlon, dtype=torch.float64) * 2 * math.pi / nlon
    t, p = torch.meshgrid(colat, lon, indexing="ij")
    xyz = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], dim=-1)
    return xyz.reshape(nlat * nlon, 3)


def ball_coords(nphi: int, nr: int) -> torch.Tensor:
    """``[nphi, ntheta=5, nr]`` grid as Cartesian points, theta from near the south pole (Dedalus order)."""
    phi = torch.arange(nphi, dtype=torch.float64) * 2 * math.pi / nphi
    theta = torch.arccos(torch.linspace(-0.8, 0.8, 5, dtype=torch.float64))  # index 2: the equator
    r = torch.linspace(0.2, 0.8, nr, dtype=torch.float64)
    p, t, rr = torch.meshgrid(phi, theta, r, indexing="ij")
    xyz = torch.stack([rr * t.sin() * p.cos(), rr * t.sin() * p.sin(), rr * t.cos()], dim=-1)
    return xyz.reshape(-1, 3)


def case(kind: str, batch: int = 3, channels: int = 1):
    """``(spec, coords [B, N, d], target [B, N, C], prediction [B, N, C], poses [B, L, pose_dim])``."""
    gen = torch.Generator().manual_seed(1)
    if kind == "image":
        spec = FieldSpec(kind="image", coord_dim=2, num_channels=channels, grid_shape=(4, 6), data_range=1.0)
        coords, pose_dim = pixel_coords(4, 6, dtype=torch.float64), 4
    elif kind in ("plane", "torus"):
        spec = FieldSpec(
            kind=kind, coord_dim=2, num_channels=channels, grid_shape=(5, 3), channel_names=("u",)
        )
        coords, pose_dim = plane_coords(5, 3), 2
    elif kind == "sphere":
        spec = FieldSpec(kind="sphere", coord_dim=3, num_channels=channels, grid_shape=(7, 12))
        coords, pose_dim = sphere_coords(7, 12), 6
    elif kind == "ball":
        spec = FieldSpec(kind="ball", coord_dim=3, num_channels=channels, grid_shape=(8, 5, 3))
        coords, pose_dim = ball_coords(8, 3), 9
    else:
        spec = FieldSpec(kind="points", coord_dim=2, num_channels=channels)
        coords, pose_dim = torch.rand(20, 2, generator=gen, dtype=torch.float64) * 2 - 1, 2
    coords = coords.expand(batch, *coords.shape)
    target = torch.rand(batch, coords.shape[1], channels, generator=gen, dtype=torch.float64)
    prediction = target + 0.1 * torch.randn(target.shape, generator=gen, dtype=torch.float64)
    poses = torch.rand(batch, 5, pose_dim, generator=gen, dtype=torch.float64) * 2 - 1
    return spec, coords, target, prediction, poses


def panels(fig, num_items: int) -> list[list]:
    """The ``3 x num_items`` field axes (colour bars excluded), in row-major order of creation."""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return [axes[r * num_items : (r + 1) * num_items] for r in range(3)]


# ---------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("kind", "channels", "colorbars_per_item"),
    [("image", 1, 3), ("image", 3, 1), ("plane", 1, 3), ("torus", 1, 3), ("sphere", 1, 3), ("ball", 1, 3),
     ("points", 1, 3)],
)  # fmt: skip
def test_every_kind_gives_three_rows_per_sample_with_colour_bars(kind, channels, colorbars_per_item) -> None:
    spec, coords, target, prediction, poses = case(kind, batch=3, channels=channels)
    fig = plot_fields(spec, coords, target, prediction, poses, max_items=2, title="t")
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(fig.axes) == 3 * 2 + colorbars_per_item * 2 and len(colorbars) == colorbars_per_item * 2
    if kind == "sphere":
        assert all(ax.name == "mollweide" for ax in panels(fig, 2)[0])
    fig.canvas.draw()  # renders without error


def test_titles_carry_the_sample_mse_and_rows_the_channel_name() -> None:
    spec, coords, target, prediction, poses = case("plane")
    fig = plot_fields(spec, coords, target, prediction, poses, max_items=3)
    grid = panels(fig, 3)
    for i in range(3):
        mse = float(((prediction[i] - target[i]) ** 2).mean())
        assert grid[0][i].get_title() == f"#{i}  MSE {mse:.3g}"
    assert [grid[r][0].get_ylabel() for r in range(3)] == ["truth: u", "reconstruction: u", "error: u"]


# ----------------------------------------------------------------------------------- orientation


def _pixel_at(ax, x: float, y: float) -> float:
    """The value of the drawn image at data point ``(x, y)``, read through the image's extent."""
    image = ax.get_images()[0]
    array = np.asarray(image.get_array())
    left, right, bottom, top = image.get_extent()
    col = int((x - left) / (right - left) * array.shape[1])
    row = int((top - y) / (top - bottom) * array.shape[0])  # origin="upper": row 0 at the top
    return float(array[row, col])


@pytest.mark.parametrize("kind", ["image", "plane", "torus"])
def test_planar_fields_are_drawn_in_image_orientation(kind: str) -> None:
    spec, coords, _, _, _ = case(kind, batch=1)
    for component, check in ((0, "x"), (1, "y")):
        signal = coords[..., component : component + 1].clone()
        fig = plot_fields(spec, coords, signal, signal, None, max_items=1)
        array = np.asarray(panels(fig, 1)[0][0].get_images()[0].get_array())
        if check == "x":  # increases left -> right, constant down a column
            assert np.all(np.diff(array, axis=1) > 0) and np.allclose(np.diff(array, axis=0), 0)
        else:  # decreases top -> bottom, constant along a row
            assert np.all(np.diff(array, axis=0) < 0) and np.allclose(np.diff(array, axis=1), 0)
        plt.close(fig)


@pytest.mark.parametrize("kind", ["image", "plane"])
def test_every_coordinate_lands_on_the_pixel_holding_its_value(kind: str) -> None:
    spec, coords, _, _, _ = case(kind, batch=1)
    signal = (coords[..., :1] + 3.0 * coords[..., 1:2]).clone()  # distinct along both axes
    fig = plot_fields(spec, coords, signal, signal, None, max_items=1)
    ax = panels(fig, 1)[0][0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < x1 and y0 < y1  # x to the right and y up on screen, not an inverted axis
    for (x, y), value in zip(coords[0].tolist(), signal[0, :, 0].tolist(), strict=True):
        assert _pixel_at(ax, x, y) == pytest.approx(value)


def test_sphere_map_puts_values_at_their_longitude_and_latitude() -> None:
    spec, coords, _, _, _ = case("sphere", batch=1)
    for component in (2, 0, 1):
        signal = coords[..., component : component + 1].clone()
        fig = plot_fields(spec, coords, signal, signal, None, max_items=1)
        mesh = next(c for c in panels(fig, 1)[0][0].collections if isinstance(c, QuadMesh))
        values = np.asarray(mesh.get_array()).reshape(-1)
        vertices = mesh.get_coordinates()  # [rows + 1, cols + 1, 2] of (lon, lat) edges
        lon = 0.5 * (vertices[:-1, :-1, 0] + vertices[:-1, 1:, 0]).reshape(-1)
        lat = 0.5 * (vertices[:-1, :-1, 1] + vertices[1:, :-1, 1]).reshape(-1)
        assert lon.min() >= -math.pi and lon.max() <= math.pi and vertices[0, 0, 1] == -math.pi / 2
        if component == 2:  # z = sin(latitude): increasing with latitude, any longitude
            order = np.argsort(lat, kind="stable")
            assert np.all(np.diff(values[order]) >= -1e-12) and values[order][-1] > values[order][0]
        expected = {0: np.cos(lat) * np.cos(lon), 1: np.cos(lat) * np.sin(lon), 2: np.sin(lat)}[component]
        cell = math.pi / 6  # one latitude cell of the 7 x 12 grid
        assert np.max(np.abs(values - expected)) < cell
        plt.close(fig)


def test_ball_draws_the_equatorial_slice_at_its_xy_position() -> None:
    spec, coords, _, _, _ = case("ball", batch=1)
    signal = (coords[..., :1] + 3.0 * coords[..., 2:3]).clone()  # = x on the equator only
    fig = plot_fields(spec, coords, signal, signal, None, max_items=1)
    mesh = next(c for c in panels(fig, 1)[0][0].collections if isinstance(c, QuadMesh))
    values = np.asarray(mesh.get_array()).reshape(-1)
    corners = mesh.get_coordinates()
    centre = 0.25 * (corners[:-1, :-1] + corners[1:, :-1] + corners[:-1, 1:] + corners[1:, 1:])
    x = centre[..., 0].reshape(-1)
    assert values.size == 8 * 3
    assert np.max(np.abs(values - x)) < 0.2  # cell centres vs nodes, a fraction of a cell
    assert np.corrcoef(values, x)[0, 1] > 0.98


# ------------------------------------------------------------------------------------------ error


@pytest.mark.parametrize("kind", ["plane", "sphere", "ball", "points", "image"])
def test_error_row_is_prediction_minus_target_with_symmetric_limits(kind: str) -> None:
    spec, coords, target, prediction, poses = case(kind, batch=2)
    fig = plot_fields(spec, coords, target, prediction, poses, max_items=2)
    grid = panels(fig, 2)

    def drawn(ax) -> np.ndarray:
        artist = ax.get_images()[0] if ax.get_images() else ax.collections[0]
        return np.asarray(artist.get_array(), dtype=np.float64), artist

    for i in range(2):
        (truth, a_truth), (recon, a_recon), (error, a_error) = (drawn(grid[r][i]) for r in range(3))
        np.testing.assert_allclose(error, recon - truth, atol=1e-12)
        vmin, vmax = a_error.get_clim()
        assert vmin == -vmax and vmax == pytest.approx(np.abs(error).max())
        assert a_truth.get_clim() == a_recon.get_clim()
        assert a_error.get_cmap().name == "RdBu_r"
    if kind == "points":  # the scatter sits at the coordinates, in their order
        np.testing.assert_allclose(grid[0][0].collections[0].get_offsets(), coords[0].numpy())
        np.testing.assert_allclose(drawn(grid[0][0])[0], target[0, :, 0].numpy())


def test_rgb_images_are_drawn_in_colour_with_mean_abs_error() -> None:
    spec, coords, target, prediction, _ = case("image", batch=1, channels=3)
    fig = plot_fields(spec, coords, target, prediction, None, max_items=1)
    grid = panels(fig, 1)
    truth = np.asarray(grid[0][0].get_images()[0].get_array())
    np.testing.assert_allclose(truth, target[0].reshape(4, 6, 3).clamp(0, 1).numpy())
    error = np.asarray(grid[2][0].get_images()[0].get_array())
    np.testing.assert_allclose(error, (prediction - target)[0].abs().mean(-1).reshape(4, 6).numpy())


def test_normalised_signals_are_drawn_on_the_physical_scale() -> None:
    spec, coords, target, prediction, _ = case("plane", batch=1)
    spec = FieldSpec(**{**spec.to_dict(), "mean": (2.0,), "std": (3.0,)})
    fig = plot_fields(spec.to_dict(), coords, target, prediction, None, max_items=1, denormalize=True)
    error = panels(fig, 1)[2][0].get_images()[0].get_array()
    raw = plot_fields(spec, coords, target, prediction, None, max_items=1)  # drawn as given by default
    np.testing.assert_allclose(error, 3.0 * np.asarray(panels(raw, 1)[2][0].get_images()[0].get_array()))


# ---------------------------------------------------------------------------------------- latents


def _scatter_offsets(ax) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def test_latents_are_drawn_on_the_reconstruction_row_only() -> None:
    spec, coords, target, prediction, poses = case("plane", batch=2)
    fig = plot_fields(spec, coords, target, prediction, poses, max_items=2)
    grid = panels(fig, 2)
    for i in range(2):
        np.testing.assert_allclose(_scatter_offsets(grid[1][i]), poses[i, :, :2].numpy())
        assert not grid[0][i].collections and not grid[2][i].collections


def test_torus_latents_are_wrapped_and_se2_orientations_drawn() -> None:
    torus = FieldSpec(kind="torus", coord_dim=2, num_channels=1, grid_shape=(4, 4))
    ax = plot_latents(torus, torch.tensor([[1.5, -1.2], [0.25, 0.5]]))
    np.testing.assert_allclose(_scatter_offsets(ax), [[-0.5, 0.8], [0.25, 0.5]], atol=1e-6)
    image = FieldSpec(kind="image", coord_dim=2, num_channels=1, grid_shape=(4, 4))
    ax = plot_latents(image, torch.tensor([[0.1, 0.2, 0.0, 2.0], [0.3, -0.4, -3.0, 0.0]]))
    arrows = next(c for c in ax.collections if isinstance(c, Quiver))
    direction = np.stack([arrows.U, arrows.V], axis=-1)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    np.testing.assert_allclose(direction, [[0.0, 1.0], [-1.0, 0.0]], atol=1e-6)


def test_sphere_and_ball_latents() -> None:
    sphere = FieldSpec(kind="sphere", coord_dim=3, num_channels=1, grid_shape=(5, 8))
    n = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0, 0.0], [-1.0, -1e-9, 1.0, 0.0, 1.0, 0.0]])
    ax = plot_latents(sphere, n)
    np.testing.assert_allclose(_scatter_offsets(ax), [[math.pi / 2, 0.0], [-math.pi, math.pi / 4]], atol=1e-6)
    ball = FieldSpec(kind="ball", coord_dim=3, num_channels=1, grid_shape=(8, 5, 3))
    q = torch.tensor([[0.3, -0.2, 0.1], [0.5, 0.5, 0.6], [-0.4, 0.1, -0.2]])
    poses = torch.cat([q, torch.eye(3)[:, :2].T.reshape(1, 6).expand(3, 6)], dim=-1)
    ax = plot_latents(ball, poses)
    np.testing.assert_allclose(_scatter_offsets(ax), [[0.3, -0.2], [-0.4, 0.1]])


# ------------------------------------------------------------------------------------ compat, errors


def test_plot_reconstructions_and_save_figure(tmp_path) -> None:
    target = torch.rand(3, 4, 5, 3)
    poses = torch.rand(3, 6, 4) * 2 - 1
    fig = plot_reconstructions(target, target.clamp(0.1, 0.9), poses, max_items=2, title="x")
    assert len(fig.axes) == 3 * 2 + 2  # RGB: colour bars on the error row only
    path = tmp_path / "f.png"
    save_figure(fig, path)
    assert path.stat().st_size > 0 and plt.get_fignums() == []  # never registered with pyplot


def test_bad_inputs_name_the_problem() -> None:
    spec, coords, target, prediction, poses = case("plane", batch=2)
    with pytest.raises(ValueError, match="channel must be"):
        plot_fields(spec, coords, target, prediction, channel=1)
    with pytest.raises(ValueError, match="grid_shape"):
        plot_fields(spec, coords[:, :-1], target[:, :-1], prediction[:, :-1])
    with pytest.raises(ValueError, match="target and prediction"):
        plot_fields(spec, coords, target, prediction[:1])
    with pytest.raises(ValueError, match="poses must have shape"):
        plot_fields(spec, coords, target, prediction, poses[:1])
    with pytest.raises(ValueError, match="max_items"):
        plot_fields(spec, coords, target, prediction, max_items=0)
    with pytest.raises(ValueError, match="coords must have shape"):
        plot_fields(spec, coords[..., :1], target, prediction)


def test_importing_the_library_keeps_the_users_matplotlib_backend() -> None:
    """No module of enf switches the backend at import (a notebook keeps its inline backend): the figures are
    plain ``Figure`` objects. Control: a module that calls ``matplotlib.use`` is seen switching it."""
    import subprocess
    import sys

    modules = ["enf", "enf.plotting", "enf.plotting.rollout", "enf.plotting.mesh", "enf.plotting.pde",
               "enf.plotting.edits", "enf.plotting.shapes", "enf.training", "enf.cli"]  # fmt: skip
    probe = (
        "import matplotlib, importlib, sys; matplotlib.use('svg'); "
        "[importlib.import_module(m) for m in sys.argv[1:]]; print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", probe, *modules], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg", out.stdout + out.stderr
    control = probe.replace("print(", "matplotlib.use('agg'); print(")
    out = subprocess.run([sys.executable, "-c", control, "enf"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "agg"
