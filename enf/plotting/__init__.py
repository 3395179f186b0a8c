"""Every figure of the library, as plain ``matplotlib.figure.Figure`` objects (no pyplot state, no backend
switch at import): fields and reconstructions (:mod:`~enf.plotting.fields`), forecast rollouts and error
curves (:mod:`~enf.plotting.rollout`), 3-D meshes (:mod:`~enf.plotting.mesh`), image edits
(:mod:`~enf.plotting.edits`), shape-VAE symbols (:mod:`~enf.plotting.shapes`), classification (:mod:`~enf.plotting.classify`) and PDE trajectories
(:mod:`~enf.plotting.pde`).
"""

from enf.plotting.classify import plot_confusion, plot_misclassified, plot_misclassified_shapes
from enf.plotting.edits import draw_panel, plot_edit
from enf.plotting.fields import (
    BALL_SLICE_HALF_WIDTH,
    plot_fields,
    plot_latents,
    plot_reconstructions,
    save_figure,
)
from enf.plotting.mesh import draw_mesh, draw_points, plot_shapes
from enf.plotting.pde import color_scale, render_trajectory
from enf.plotting.rollout import plot_error_curves, plot_rollout, save_rollout_gif
from enf.plotting.shapes import draw_image, draw_symbol, shape_figure

__all__ = [
    "BALL_SLICE_HALF_WIDTH",
    "color_scale",
    "draw_image",
    "draw_mesh",
    "draw_panel",
    "draw_points",
    "draw_symbol",
    "plot_confusion",
    "plot_edit",
    "plot_misclassified",
    "plot_misclassified_shapes",
    "plot_error_curves",
    "plot_fields",
    "plot_latents",
    "plot_reconstructions",
    "plot_rollout",
    "plot_shapes",
    "render_trajectory",
    "save_figure",
    "save_rollout_gif",
    "shape_figure",
]
