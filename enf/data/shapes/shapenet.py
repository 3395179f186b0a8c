"""ShapeNet from a local copy: meshes (ShapeNetCore v1/v2) or DeepSDF's precomputed SDF samples.

ShapeNet cannot be downloaded here (it needs an account at https://shapenet.org); point ``root`` at a copy.
Two layouts are recognised:

* **meshes**: ``root/<synset>/<model>/models/model_normalized.obj`` (ShapeNetCore v2) or
  ``root/<synset>/<model>/model.obj`` (v1). Meshes are normalised like every mesh; ShapeNet meshes are often
  not watertight, so they are repaired where trimesh can and used with a warning otherwise (libigl's
  winding-number signs stay sensible on open meshes).
* **DeepSDF samples**: ``root/**/<synset>/<model>.npz`` with arrays ``pos [N, 4]`` and ``neg [N, 4]`` (x, y, z,
  signed distance; DeepSDF's ``preprocess_data.py`` output, already normalised to the unit sphere).

Models are sorted per synset; the last ``test_fraction`` of each synset is the test split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = [
    "SHAPENET_SYNSETS",
    "build_samples_file",
    "load_deepsdf_samples",
    "model_name",
    "shapenet_models",
    "synset_id",
]

log = logging.getLogger(__name__)

#: the 13 ShapeNetCore categories of most SDF papers: name -> synset id.
SHAPENET_SYNSETS = {
    "airplane": "02691156", "bench": "02828884", "cabinet": "02933112", "car": "02958343",
    "chair": "03001627", "display": "03211117", "lamp": "03636649", "speaker": "03691459", "rifle": "04090263",
    "sofa": "04256520", "table": "04379243", "telephone": "04401088", "watercraft": "04530566",
}  # fmt: skip

HOW_TO_GET = (
    "ShapeNet is not downloadable here: register at https://shapenet.org, download ShapeNetCore (v1 or v2) and "
    "pass its folder as root (root/<synset>/<model>/models/model_normalized.obj), or preprocess it with DeepSDF "
    "and pass the SdfSamples folder (root/.../<synset>/<model>.npz with 'pos' and 'neg' arrays)"
)


def synset_id(category: str) -> str:
    """The synset id of a category name (``"chair"``) or id (``"03001627"``)."""
    if category in SHAPENET_SYNSETS:
        return SHAPENET_SYNSETS[category]
    if category.isdigit() and len(category) == 8:
        return category
    raise ValueError(
        f"unknown ShapeNet category {category!r}; use a synset id or one of {sorted(SHAPENET_SYNSETS)}"
    )


def model_name(path: str | Path) -> str:
    """``<synset>/<model>`` of a ShapeNet mesh file or DeepSDF sample file."""
    path = Path(path)
    if path.suffix == ".npz":
        return f"{path.parent.name}/{path.stem}"
    model = path.parent.parent if path.parent.name == "models" else path.parent
    return f"{model.parent.name}/{model.name}"


def _models(root: Path) -> tuple[str, dict[str, list[Path]]]:
    """``(layout, {synset: sorted files})`` of a ShapeNet copy (``"meshes"`` or ``"samples"``)."""
    found: dict[str, list[Path]] = {}
    for pattern in ("*/*/models/model_normalized.obj", "*/*/model.obj"):
        for path in root.glob(pattern):
            synset = path.relative_to(root).parts[0]
            found.setdefault(synset, []).append(path)
        if found:
            return "meshes", {k: sorted(v) for k, v in found.items()}
    for path in root.rglob("*.npz"):
        found.setdefault(path.parent.name, []).append(path)
    return "samples", {k: sorted(v) for k, v in found.items()}


def shapenet_models(
    root: str | Path,
    *,
    split: str,
    categories: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> tuple[str, list[Path]]:
    """``(layout, files)`` of ``split`` (``"train"``/``"test"``): per synset, sorted models, the last
    ``test_fraction`` as test; at most ``limit`` files in all (taken round-robin over the synsets).

    Raises:
        FileNotFoundError: ``root`` is missing or holds neither layout (the message says how to get ShapeNet).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ShapeNet root {root} does not exist. {HOW_TO_GET}")
    layout, by_synset = _models(root)
    if categories:
        wanted = {synset_id(c) for c in categories}
        by_synset = {k: v for k, v in by_synset.items() if k in wanted}
    if not by_synset:
        raise FileNotFoundError(
            f"no ShapeNet models under {root} (categories {list(categories or [])}). {HOW_TO_GET}"
        )
    chosen = []
    for synset in sorted(by_synset):
        files = by_synset[synset]
        cut = max(1, round(len(files) * (1 - test_fraction)))
        chosen.append(files[:cut] if split == "train" else files[cut:] or files[-1:])
    interleaved = [f for group in _round_robin(chosen) for f in group]
    return layout, interleaved[:limit] if limit else interleaved


def _round_robin(groups: list[list[Path]]):
    for k in range(max(len(g) for g in groups)):
        yield [g[k] for g in groups if k < len(g)]


def load_deepsdf_samples(
    path: str | Path, *, num_points: int, num_surface: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(coords [num_points, 3], sdf [num_points], surface [num_surface, 3])`` of a DeepSDF ``.npz``: half the
    points from ``pos`` and half from ``neg`` (with replacement where a side has fewer), and as the surface
    the ``num_surface`` samples of smallest ``|sdf|`` (an approximation: DeepSDF keeps no surface points)."""
    try:
        with np.load(path) as data:
            pos, neg = np.asarray(data["pos"], np.float64), np.asarray(data["neg"], np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a DeepSDF sample file with 'pos' and 'neg' [N, 4] arrays: {exc}"
        ) from None
    if (
        pos.ndim != 2
        or neg.ndim != 2
        or pos.shape[1] != 4
        or neg.shape[1] != 4
        or not len(pos)
        or not len(neg)
    ):
        raise ValueError(
            f"{path}: 'pos' and 'neg' must be non-empty [N, 4] arrays, got {pos.shape}, {neg.shape}"
        )
    pos, neg = pos[np.isfinite(pos).all(1)], neg[np.isfinite(neg).all(1)]
    half = num_points // 2
    take = [
        side[rng.choice(len(side), size=n, replace=len(side) < n)]
        for side, n in ((pos, num_points - half), (neg, half))
    ]
    samples = np.concatenate(take)
    everything = np.concatenate([pos, neg])
    nearest = everything[np.argsort(np.abs(everything[:, 3]))[:num_surface]]
    if len(nearest) < num_surface:
        nearest = nearest[rng.choice(len(nearest), size=num_surface)]
    return samples[:, :3], samples[:, 3], nearest[:, :3]


def build_samples_file(
    files: Sequence[Path],
    path: str | Path,
    *,
    num_points: int,
    num_surface: int,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """The sample file of :func:`enf.data.shapes.sdf.build_sdf_file` from DeepSDF ``.npz`` files (cached the same
    way): no meshes, and ``uniform`` marks every sample (DeepSDF keeps no uniform subset, so IoU counts all)."""
    from enf.data.hdf5 import write_h5
    from enf.data.shapes.sdf import SDF_FORMAT_VERSION, is_cached

    settings = {"format_version": SDF_FORMAT_VERSION, "source": "deepsdf", "num_points": num_points,
                "num_surface": num_surface, "seed": seed, "names": [model_name(f) for f in files]}  # fmt: skip
    if is_cached(path, settings):
        return Path(path)
    coords, signal, surface = [], [], []
    for i, f in enumerate(tqdm(files, desc="deepsdf samples", disable=not progress)):
        x, s, q = load_deepsdf_samples(f, num_points=num_points, num_surface=num_surface,
                                       rng=np.random.default_rng(seed + i))  # fmt: skip
        coords.append(x.astype(np.float32))
        signal.append(s.astype(np.float32)[:, None])
        surface.append(q.astype(np.float32))
    arrays = {"coords": np.stack(coords), "signal": np.stack(signal), "surface": np.stack(surface),
              "index": np.arange(len(files)), "uniform": np.ones(num_points, dtype=bool)}  # fmt: skip
    return write_h5(path, arrays, {"settings": settings, "sign": "negative inside"})
