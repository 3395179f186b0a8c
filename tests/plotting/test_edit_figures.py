"""Edit figures: the selected latents are marked, the difference panel has its colour bar."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgba

from enf.cli.edit import first_selection
from enf.editing.record import Edit
from enf.geometry import get
from enf.latents import Latents
from enf.plotting.edits import plot_edit


def cloud(num_latents: int) -> Latents:
    poses = torch.rand(1, num_latents, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return Latents(poses=poses, context=torch.zeros(1, num_latents, 4), window=torch.ones(1, num_latents, 1))


def test_the_first_edits_selection_is_drawn_in_orange_and_the_difference_has_a_colour_bar() -> None:
    geom, z = get("translation2d"), cloud(5)
    edits = [Edit("translate", {"offset": [0.1, 0.0], "select": [1, 3]}), Edit("delete", {"select": [0]})]
    sel = first_selection(edits, z)
    assert sel.tolist() == [[False, True, False, True, False]]
    image = np.random.default_rng(0).random((8, 8, 1))
    fig = plot_edit([("edited", image, z), ("difference", image - 0.5, None)], geom, selected=sel)
    colors = fig.axes[0].collections[0].get_facecolors()
    orange = np.array(to_rgba("tab:orange"))
    assert [bool(np.allclose(c, orange)) for c in colors] == sel[0].tolist()
    assert len(fig.axes) == 3  # two panels and the difference panel's colour bar
    unmarked = plot_edit([("edited", image, z)], geom, selected=None)
    assert not any(np.allclose(c, orange) for c in unmarked.axes[0].collections[0].get_facecolors())


def test_no_selection_to_mark_when_every_latent_or_another_cloud_is_selected() -> None:
    z = cloud(5)
    assert first_selection([Edit("translate", {"offset": [0.1, 0.0], "select": None})], z) is None
    assert first_selection([Edit("paste", {"source": "s1", "select": [0], "offset": None})], z) is None
    assert first_selection([], z) is None
