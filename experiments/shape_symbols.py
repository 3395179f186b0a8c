"""Geometric symbols of MNIST: the README's table and figures from two `enf shape fit` runs.

    python experiments/shape_symbols.py \\
        --shape runs/shape_mnist/version_0/checkpoints/last.ckpt \\
        --plain runs/shape_mnist_plain/version_0/checkpoints/last.ckpt

Numbers come from each run's own ``metrics.json`` (kNN on the codes, k = 5, train codes as reference; upright
test digits vs the same digits rotated by seeded random angles). Figures (``--figures``, default ``figures/``):

- ``shape_mnist_symbols.png``: per class, digits with their 16 landmarks and the canonical symbol;
- ``shape_mnist_rotation.png``: digits turned by 0..300 degrees, re-encoded by the ENF, and their symbols;
- ``shape_mnist_six_nine.png``: upright sixes and nines share symbols; the frame angle tells them apart;
- ``shape_mnist_morphs.png``: geodesics on the pre-shape sphere between two digits' codes, decoded to images;
- ``shape_mnist_prior.png``: codes drawn from the uniform prior, decoded in the poses of test digits.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from enf.data.grid import image_to_signal, rotate_images, signal_to_image
from enf.data.modules.latents import LatentCloudDataset
from enf.plotting.shapes import draw_image, draw_symbol
from enf.shape import preshape_geodesic
from enf.training import ShapeModule
from enf.training.checkpoints import load_fit_checkpoint

ROWS = [
    ("knn_accuracy_test", "kNN accuracy, upright test digits"),
    ("knn_accuracy_test_rotated", "kNN accuracy, rotated test digits"),
    ("knn_accuracy_merged_test", "kNN accuracy, upright, 6 = 9"),
    ("knn_accuracy_merged_test_rotated", "kNN accuracy, rotated, 6 = 9"),
    ("pose_pair_accuracy_test", "6 vs 9 from the pose alone (upright)"),
    ("mse_test", "reconstruction MSE, upright (ENF-decoded)"),
    ("mse_test_rotated", "reconstruction MSE, rotated"),
    ("equivariance_error", "max |code(gX) - code(X)|, float64"),
    ("fit_time_s", "training time (s)"),
]


def _run_metrics(ckpt: Path) -> dict:
    return json.loads((ckpt.parent.parent / "metrics.json").read_text())


def _forward(module: ShapeModule, data: LatentCloudDataset, idx) -> tuple:
    with torch.no_grad():
        return module.encode_cloud(data.poses[idx, :, :2], data.context[idx])


def _encode_rotated(fit, data: LatentCloudDataset, idx: list[int], angles: list[float]):
    """Turn digits ``idx`` by each angle (resampled on the pixel grid) and encode them with the ENF."""
    h = w = int(math.isqrt(data.signal.shape[1]))
    img = signal_to_image(data.signal[idx], h, w)
    rows = []
    for a in angles:
        sig = image_to_signal(rotate_images(img, torch.full((len(idx),), math.radians(a))))
        batch = {"coords": data.coords.expand(len(idx), -1, -1), "signal": sig, "index": torch.tensor(idx)}
        z = fit.module.encode(batch, train=False)
        rows.append((sig, z))
    return rows


def symbols_figure(module, data, per_class: int = 3) -> Figure:
    labels = data.label.numpy()
    fig = Figure(figsize=(13, 2.6 * per_class), layout="constrained")
    axes = fig.subplots(2 * per_class, 10, squeeze=False)
    for c in range(10):
        idx = [int(i) for i in np.flatnonzero(labels == c)[:per_class]]
        out = _forward(module, data, idx)
        for r, i in enumerate(idx):
            draw_image(axes[2 * r, c], data.signal[i], (28, 28))
            draw_symbol(axes[2 * r, c], out.encoding.landmarks[r], style="r.-", lw=0.8, ms=2)
            draw_symbol(axes[2 * r + 1, c], out.encoding.canonical[r], style="b.-")
        axes[0, c].set_title(str(c))
    fig.suptitle("digits with their 16 landmarks (red) and canonical symbols (blue)", fontsize=9)
    return fig


def rotation_figure(module, fit, data, idx: list[int]) -> tuple[Figure, float]:
    angles = [0, 60, 120, 180, 240, 300]
    rows = _encode_rotated(fit, data, idx, angles)
    fig = Figure(figsize=(1.7 * len(angles), 1.7 * 2 * len(idx)), layout="constrained")
    axes = fig.subplots(2 * len(idx), len(angles), squeeze=False)
    codes = []
    for j, (sig, z) in enumerate(rows):
        with torch.no_grad():
            out = module.encode_cloud(z.poses[..., :2], z.context)
        codes.append(out.code)
        for r in range(len(idx)):
            draw_image(axes[2 * r, j], sig[r], (28, 28))
            draw_symbol(axes[2 * r, j], out.encoding.landmarks[r], style="r.-", lw=0.8, ms=2)
            draw_symbol(axes[2 * r + 1, j], out.encoding.canonical[r], style="b.-")
        axes[0, j].set_title(f"{angles[j]} deg", fontsize=8)
    spread = float(max((c - codes[0]).norm(dim=-1).max() for c in codes))
    fig.suptitle(f"turned, resampled and re-encoded digits: the symbol stays (max code distance {spread:.3f})",
                 fontsize=9)  # fmt: skip
    return fig, spread


def six_nine_figure(module, train, test) -> Figure:
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, 7)
    for row, digit in enumerate((6, 9)):
        idx = [int(i) for i in np.flatnonzero(test.label.numpy() == digit)[:3]]
        out = _forward(module, test, idx)
        for k, i in enumerate(idx):
            ax = fig.add_subplot(grid[row, 2 * k])
            draw_image(ax, test.signal[i], (28, 28))
            draw_symbol(ax, out.encoding.landmarks[k], style="r.-", lw=0.8, ms=2)
            draw_symbol(fig.add_subplot(grid[row, 2 * k + 1]), out.encoding.canonical[k], style="b.-")
    ax = fig.add_subplot(grid[:, 6], projection="polar")
    for digit, color in ((6, "tab:orange"), (9, "tab:purple")):
        idx = [int(i) for i in np.flatnonzero(train.label.numpy() == digit)]
        rot = _forward(module, train, idx).encoding.rotation
        angle = torch.atan2(rot[:, 1, 0], rot[:, 0, 0]).numpy()
        ax.hist(angle, bins=36, range=(-math.pi, math.pi), alpha=0.6, color=color, label=f"{digit}s (train)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("frame angle", fontsize=8)
    fig.suptitle("upright sixes and nines: one symbol (blue), told apart by the pose", fontsize=9)
    return fig


def morph_figure(module, data, pairs: list[tuple[int, int]], steps: int = 7) -> Figure:
    fig = Figure(figsize=(1.6 * steps, 1.7 * len(pairs)), layout="constrained")
    axes = fig.subplots(len(pairs), steps, squeeze=False)
    t = torch.linspace(0, 1, steps)
    for r, (a, b) in enumerate(pairs):
        out = _forward(module, data, [a, b])
        enc = out.encoding
        k1 = module.vae.num_landmarks - 1
        za, zb = out.code[0].reshape(k1, 2), out.code[1].reshape(k1, 2)
        path = preshape_geodesic(za, zb, t).reshape(steps, -1)
        pose = type(enc)(  # the pose of digit a throughout
            landmarks=enc.landmarks[:1].expand(steps, -1, -1), centroid=enc.centroid[:1].expand(steps, -1),
            scale=enc.scale[:1].expand(steps), rotation=enc.rotation[:1].expand(steps, -1, -1),
            preshape=enc.preshape[:1].expand(steps, -1, -1), concentration=enc.concentration[:1].expand(steps),
        )  # fmt: skip
        window = data.window[[a]].expand(steps, -1, -1)
        images = module.render(path, pose, window, data.coords.expand(steps, -1, -1))
        for j in range(steps):
            draw_image(axes[r, j], images[j], (28, 28))
        axes[r, 0].set_ylabel(f"{int(data.label[a])} -> {int(data.label[b])}", fontsize=8)
    fig.suptitle(
        "geodesics between two digits' codes on the pre-shape sphere, decoded by the ENF", fontsize=9
    )
    return fig


def prior_figure(module, data, num: int = 10) -> Figure:
    gen = torch.Generator().manual_seed(0)
    code, _, _ = module.vae.sample_prior(num, generator=gen)
    idx = list(range(num))
    enc = _forward(module, data, idx).encoding
    images = module.render(code, enc, data.window[idx], data.coords.expand(num, -1, -1))
    fig = Figure(figsize=(1.6 * num, 1.9), layout="constrained")
    axes = fig.subplots(1, num, squeeze=False)
    for j in range(num):
        draw_image(axes[0, j], images[j], (28, 28))
    fig.suptitle("codes from the uniform prior on S^29, decoded in the poses of test digits", fontsize=9)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shape", required=True, help="checkpoint of `enf shape fit --config configs/shape/mnist.yaml`"
    )
    parser.add_argument(
        "--plain", required=True, help="checkpoint of the plain-VAE control (mnist_plain.yaml)"
    )
    parser.add_argument("--train", default="data/symbols/mnist_train.h5")
    parser.add_argument("--test", default="data/symbols/mnist_test.h5")
    parser.add_argument("--figures", default="figures")
    parser.add_argument("--results", default="experiments/results/shape_mnist.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    shape, plain = Path(args.shape), Path(args.plain)
    results = {"shape_vae": _run_metrics(shape), "plain_vae": _run_metrics(plain)}
    print(f"{'metric':44s} {'shape VAE':>12s} {'plain VAE':>12s}")
    for key, label in ROWS:
        a, b = (results[m].get(key, float("nan")) for m in ("shape_vae", "plain_vae"))
        print(f"{label:44s} {a:12.4g} {b:12.4g}")
    for m in ("shape_vae", "plain_vae"):
        r = results[m]
        r["rotation_loss_points"] = 100 * (r["knn_accuracy_test"] - r["knn_accuracy_test_rotated"])
    print(f"{'accuracy lost under rotation (points)':44s} {results['shape_vae']['rotation_loss_points']:12.2f} "
          f"{results['plain_vae']['rotation_loss_points']:12.2f}")  # fmt: skip

    module = ShapeModule.load_from_checkpoint(shape, map_location="cpu", weights_only=True).eval()
    fit = load_fit_checkpoint(module.hparams.fit_checkpoint)
    train, test = LatentCloudDataset(args.train), LatentCloudDataset(args.test)
    out = Path(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    labels = test.label.numpy()
    first = {c: int(np.flatnonzero(labels == c)[0]) for c in range(10)}
    rot_fig, spread = rotation_figure(module, fit, test, [first[2], first[4], first[7]])
    results["shape_vae"]["rotation_figure_max_code_distance"] = spread
    figures = {
        "shape_mnist_symbols.png": symbols_figure(module, test),
        "shape_mnist_rotation.png": rot_fig,
        "shape_mnist_six_nine.png": six_nine_figure(module, train, test),
        "shape_mnist_morphs.png": morph_figure(
            module, test, [(first[1], first[7]), (first[3], first[8]), (first[0], first[6])]
        ),  # fmt: skip
        "shape_mnist_prior.png": prior_figure(module, test),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        print(f"wrote {out / name}")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
