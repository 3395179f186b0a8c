"""Figures of 3-D shapes: shaded meshes (matplotlib, headless), latent points and their SE(3) frames.

    fig = plot_shapes(truth=[mesh, ...], reconstruction=[mesh or None, ...], poses=z.poses)

One row per shape: the true mesh (or points on the true surface), the reconstruction (marching cubes of the fitted field) and the
reconstruction drawn translucent with the latent positions ``poses[:, :3]`` and, for ``se3`` poses
``(q, u, v)``, the frames ``GS(u, v)`` as red/green/blue axes (:func:`enf.geometry.frames.gram_schmidt`).
Every panel uses the same view and the cube ``[-1, 1]^3`` of normalised meshes. Faces are Lambert-shaded
by one light from the viewer's upper left; opaque meshes lose their back faces, and the rest are drawn by
matplotlib's painter's algorithm (``Agg``, no
display or OpenGL needed); meshes with more than ``max_faces`` faces (120,000) are drawn from an evenly
strided subset of their faces, so very large meshes show gaps rather than take minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from enf.data.shapes.meshes import Mesh
from enf.geometry.frames import gram_schmidt

__all__ = ["draw_latents", "draw_mesh", "draw_points", "plot_shapes"]

ELEV, AZIM = 20.0, -60.0
FRAME_LENGTH = 0.18


def _light(elev: float, azim: float) -> np.ndarray:
    """Unit vector towards a light slightly above and left of the camera."""
    e, a = np.radians(elev + 25.0), np.radians(azim - 30.0)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def draw_mesh(
    ax, mesh: Mesh, *, color: str = "#4c72b0", alpha: float = 1.0, max_faces: int = 120_000
) -> None:
    """Draw ``mesh`` on a 3-D axis, faces shaded by their normal's angle to the light."""
    faces = mesh.faces
    if len(faces) > max_faces:
        faces = faces[:: int(np.ceil(len(faces) / max_faces))]
    tri = mesh.vertices[faces]  # [F, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-12)
    if alpha >= 1.0:  # opaque: cull the faces turned away from the camera (fewer painter's-order errors)
        e, a = np.radians(ax.elev), np.radians(ax.azim)
        front = normal @ np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)]) > 0
        tri, normal = tri[front], normal[front]
    shade = 0.35 + 0.65 * np.clip(normal @ _light(ax.elev, ax.azim), 0.0, 1.0)
    rgb = np.asarray(matplotlib.colors.to_rgb(color))
    colors = np.concatenate([shade[:, None] * rgb, np.full((len(tri), 1), alpha)], axis=1)
    ax.add_collection3d(
        Poly3DCollection(tri, facecolors=colors, edgecolors=colors, linewidths=0.3)
    )  # no seams


def draw_latents(ax, poses: torch.Tensor | np.ndarray) -> None:
    """Latent positions ``poses [L, pose_dim]`` (first three entries) as black dots; ``se3`` poses
    ``(q, u, v)`` (``pose_dim`` 9) also get their frames as red, green and blue segments."""
    p = torch.as_tensor(poses, dtype=torch.float64).detach().cpu()
    if p.dim() != 2 or p.shape[1] < 3:
        raise ValueError(f"poses must be [L, pose_dim >= 3], got {tuple(p.shape)}")
    q = p[:, :3].numpy()
    ax.scatter(*q.T, color="black", s=8, depthshade=False)
    if p.shape[1] == 9:
        frame = gram_schmidt(p[:, 3:6], p[:, 6:9]).numpy()  # [L, 3, 3], axes as columns
        for axis, color in enumerate(("#d62728", "#2ca02c", "#1f77b4")):
            tips = q + FRAME_LENGTH * frame[:, :, axis]
            for a, b in zip(q, tips, strict=True):
                ax.plot(*np.stack([a, b]).T, color=color, linewidth=1.0)


def draw_points(
    ax, points: torch.Tensor | np.ndarray, *, color: str = "#8c8c8c", max_points: int = 4000
) -> None:
    """Points ``[Q, 3]`` on a surface as small dots (every ``Q / max_points``-th), darker further away."""
    x = np.asarray(torch.as_tensor(points).detach().cpu(), dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"points must be [Q, 3], got {x.shape}")
    x = x[:: max(1, int(np.ceil(len(x) / max_points)))]
    ax.scatter(*x.T, s=1.0, color=color, depthshade=True)


def _axis(fig: Figure, rows: int, cols: int, k: int, title: str):
    ax = fig.add_subplot(rows, cols, k, projection="3d")
    ax.view_init(elev=ELEV, azim=AZIM)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), title=title)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()
    return ax


def plot_shapes(
    truth: Sequence[Mesh | torch.Tensor | np.ndarray | None],
    reconstruction: Sequence[Mesh | None],
    *,
    poses: torch.Tensor | np.ndarray | None = None,
    scores: Sequence[str] | None = None,
    truth_titles: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """Truth | reconstruction | latents, one row per shape (``truth``: meshes or surface points ``[Q, 3]``;
    ``poses [B, L, pose_dim]``; ``scores``: a caption per row, e.g. its IoU; ``truth_titles``: titles of
    the first column, default "truth"). A missing mesh (``None``) leaves its panel empty with a note."""
    if len(truth) != len(reconstruction) or len(truth) == 0:
        raise ValueError(
            f"need as many true as reconstructed meshes (>= 1), got {len(truth)} and {len(reconstruction)}"
        )
    rows, cols = len(truth), 2 if poses is None else 3
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows))
    for r in range(rows):
        caption = f" ({scores[r]})" if scores else ""
        first = truth_titles[r] if truth_titles else "truth"
        panels = [(first, truth[r]), ("reconstruction" + caption, reconstruction[r])]
        for c, (name, mesh) in enumerate(panels):
            ax = _axis(fig, rows, cols, r * cols + c + 1, name if mesh is not None else f"{name}: no surface")
            if isinstance(mesh, Mesh):
                draw_mesh(ax, mesh, color="#8c8c8c" if c == 0 else "#4c72b0")
            elif mesh is not None:
                draw_points(ax, mesh)
        if poses is not None:
            ax = _axis(fig, rows, cols, r * cols + 3, "latents")
            if reconstruction[r] is not None:
                draw_mesh(ax, reconstruction[r], alpha=0.15, max_faces=15_000)  # a faint outline is enough
            draw_latents(ax, poses[r])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
