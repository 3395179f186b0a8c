"""The README's editing gallery: edits of MNIST digits and natural crops made by moving latent points.

    python experiments/editing_gallery.py --mnist runs/mnist/version_0/checkpoints/last.ckpt \\
        --mnist-se2 runs/mnist_se2/version_0/checkpoints/last.ckpt \\
        --natural runs/natural64/version_0/checkpoints/last.ckpt --out figures/editing_gallery.png

Rows: moving a stroke (translation2d digits), rotating a part (se2 digits: orientations turn with the
points), swapping the top halves of two digits, interpolating between two digits (latents matched by
optimal assignment), moving a part of a natural crop, and the whole cloud moved by a group element (the
exact case: the decoded image moves with it). Every edit is an ``enf.editing`` call; the edit records
are written next to the figure (``<out>.json``) so ``enf edit --edits`` can replay them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from enf import editing  # noqa: E402
from enf.apps.edit import ImageEditor  # noqa: E402
from enf.plotting.edits import draw_panel  # noqa: E402


def panel(ax, title, image, z=None, geometry=None, selected=None):
    draw_panel(ax, title, image, z, geometry, selected=selected, difference=title == "difference", fontsize=8)


def edit_row(axes, editor, index, edit, label, records):
    """original | reconstruction (selection marked) | edited | difference, for one ``Edit``."""
    geom = editor.geometry
    image = editor.dataset_image(index)
    z = editor.encode(image)
    sel = editing.selection_mask(z, edit.params.get("select"))
    z2 = editing.apply_edit(z, geom, edit)
    before, after = editor.decode(z)[0], editor.decode(z2)[0]
    same = z2.num_latents == z.num_latents
    panel(axes[0], f"{label}\noriginal (test {index})", image)
    panel(axes[1], "reconstruction", before, z, geom, sel)
    panel(axes[2], "edited", after, z2, geom, sel if same else None)
    panel(axes[3], "difference", after - before)
    records.append({"row": label, "image": f"test[{index}]", "edits": [edit.to_dict()]})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mnist", required=True, help="translation2d MNIST checkpoint")
    parser.add_argument("--mnist-se2", required=True, help="se2 MNIST checkpoint")
    parser.add_argument("--natural", required=True, help="natural-crop checkpoint")
    parser.add_argument("--digits", type=int, nargs=4, default=[7, 4, 2, 3], help="test indices used")
    parser.add_argument("--crop", type=int, default=5, help="natural test crop index")
    parser.add_argument("--out", default="figures/editing_gallery.png")
    args = parser.parse_args()
    mnist = ImageEditor.from_checkpoint(args.mnist)
    mnist_se2 = ImageEditor.from_checkpoint(args.mnist_se2)
    natural = ImageEditor.from_checkpoint(args.natural)
    records: list[dict] = []
    fig = Figure(figsize=(11.0, 2.5 * 6), layout="constrained")
    axes = fig.subplots(6, 5, squeeze=False)

    def select(editor, index, **box):
        z = editor.encode(editor.dataset_image(index))
        return editing.selected_indices(editing.select_box(z, editor.geometry, **box))

    a, b, c, d = args.digits
    stroke = select(mnist, a, low=[-1, 0.3], high=[1, 1])
    edit_row(axes[0], mnist, a, editing.Edit("translate", {"offset": [0.0, 0.2], "select": stroke}),
             "raise the top stroke", records)  # fmt: skip
    part = select(mnist_se2, b, low=[-1, -1], high=[1, 0.0])
    edit_row(axes[1], mnist_se2, b, editing.Edit("rotate", {"angle": math.radians(45), "select": part}),
             "rotate the lower part 45 deg (se2)", records)  # fmt: skip
    # swap the top halves of two digits
    za, zb = (mnist.encode(mnist.dataset_image(i)) for i in (c, d))
    top_a = editing.select_box(za, mnist.geometry, low=[-1, 0.0], high=[1, 1])
    top_b = editing.select_box(zb, mnist.geometry, low=[-1, 0.0], high=[1, 1])
    sa, sb = editing.swap(za, zb, select_a=top_a, select_b=top_b)
    panels = [
        (f"test {c}", za),
        (f"test {d}", zb),
        (f"{c} with the top of {d}", sa),
        (f"{d} with the top of {c}", sb),
    ]
    for ax, (title, z) in zip(axes[2], panels, strict=False):
        panel(ax, title, mnist.decode(z)[0], z, mnist.geometry)
    axes[2][0].set_title(f"swap the top halves\ntest {c}", fontsize=8)
    records.append({"row": "swap", "images": [f"test[{c}]", f"test[{d}]"],
                    "edits": [{"op": "swap", "source": f"test[{d}]",
                               "select": editing.selected_indices(top_a), "select_source": editing.selected_indices(top_b)}]})  # fmt: skip
    # interpolation between two digits
    for ax, t in zip(axes[3], np.linspace(0, 1, 5), strict=False):
        z = editing.interpolate(za, zb, mnist.geometry, float(t))
        panel(ax, f"interpolate t={t:.2f}", mnist.decode(z)[0], z, mnist.geometry)
    records.append({"row": "interpolate", "images": [f"test[{c}]", f"test[{d}]"], "edits": [
        {"op": "interpolate", "source": f"test[{d}]", "t": float(t)} for t in np.linspace(0, 1, 5)]})  # fmt: skip
    part = select(natural, args.crop, low=[-0.4, -0.4], high=[0.4, 0.4])
    edit_row(axes[4], natural, args.crop, editing.Edit("translate", {"offset": [0.5, 0.5], "select": part}),
             "move the centre of a crop", records)  # fmt: skip
    whole = editing.Edit("transform", {"rotation": [[0.0, -1.0], [1.0, 0.0]], "translation": [0.2, 0.0]})
    edit_row(axes[5], mnist_se2, a, whole, "whole cloud (se2, exact):\nrotate 90 deg + shift", records)
    for row in axes:
        for ax in row:
            if not ax.has_data() and not ax.images:
                ax.axis("off")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    out.with_suffix(".json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
