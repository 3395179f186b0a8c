"""Test shapes that are not copies of training shapes: occupancy fingerprints and a deduplicated test split.

Two shapes are duplicates when their occupancies agree at IoU >= ``threshold`` (default
:data:`DUPLICATE_IOU` = 0.9, the reconstruction target: returning the training shape would meet it) on
:data:`NUM_PROBES` fixed probe points, in either of two frames:

* the **given frame**, where meshes are normalised to the unit bounding sphere as they are fitted, with
  probes uniform in ``[-1, 1]^3``;
* a **canonical frame**, so that copies moved by a rotation, translation or scale count too (an
  SE(3)-equivariant field fits a rotated copy of a training shape as easily as the shape itself). It is
  centred at the volume centroid, with axes along the principal axes of inertia (ascending moments,
  right-handed), scaled by the largest distance of a vertex from the centroid. The axes' signs are not
  defined, so a candidate is compared in all four right-handed sign choices.

    prints = fingerprints(meshes)                                   # bool [S, 2, P]: given, canonical frame
    iou, nearest = overlap(fingerprints(candidates, all_signs=True), prints)   # [C], [C]
    test, skipped = unique_shapes(iter_procedural_shapes(seed=1), train, num_shapes=16)

Occupancy is libigl's winding number (:func:`enf.data.shapes.sdf.inside`). A canonical frame is unstable for a
shape whose principal moments nearly coincide without a matching symmetry: rotated copies of such a shape
may be missed (copies in the given frame are still caught).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from enf.data.shapes.meshes import Mesh
from enf.data.shapes.sdf import inside

__all__ = ["DUPLICATE_IOU", "NUM_PROBES", "canonical_frame", "fingerprints", "overlap", "unique_shapes"]

log = logging.getLogger(__name__)

DUPLICATE_IOU = 0.9
NUM_PROBES = 8192
_PROBE_SEED = 0x50524F42  # "PROB": fixed probes, apart from every sample seed
#: the right-handed sign choices of three principal axes
_SIGNS = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)


def _probes(num_probes: int) -> np.ndarray:
    return np.random.default_rng(_PROBE_SEED).uniform(-1.0, 1.0, size=(num_probes, 3))


def canonical_frame(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, float]:
    """``(centroid [3], axes [3, 3], radius)``: the volume centroid, the principal axes of inertia as columns
    (ascending moments, determinant +1) and the largest vertex distance from the centroid; a point ``q`` of
    the canonical frame is ``centroid + radius * axes @ q``."""
    tm = mesh.to_trimesh()
    if not tm.volume > 0:
        raise ValueError(
            f"mesh {mesh.name!r} encloses no volume ({tm.volume}); it needs a closed outward surface"
        )
    centroid = np.asarray(tm.center_mass, dtype=np.float64)
    _, axes = np.linalg.eigh(np.asarray(tm.moment_inertia, dtype=np.float64))
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    radius = float(np.linalg.norm(mesh.vertices - centroid, axis=1).max())
    return centroid, axes, radius


def fingerprints(
    meshes: Sequence[Mesh], *, all_signs: bool = False, num_probes: int = NUM_PROBES
) -> np.ndarray:
    """Occupancies of the probe points, bool ``[S, K, P]``: ``K = 2`` (given frame, canonical frame), or with
    ``all_signs`` ``K = 5`` (given frame, then the canonical frame with each of the four sign choices)."""
    if num_probes < 1 or len(meshes) == 0:
        raise ValueError(f"need at least one mesh and num_probes >= 1, got {len(meshes)}, {num_probes}")
    probes = _probes(num_probes)
    signs = _SIGNS if all_signs else _SIGNS[:1]
    out = np.zeros((len(meshes), 1 + len(signs), num_probes), dtype=bool)
    for s, mesh in enumerate(meshes):
        centroid, axes, radius = canonical_frame(mesh)
        out[s, 0] = inside(probes, mesh)
        for k, sign in enumerate(signs):
            out[s, 1 + k] = inside(centroid + radius * (probes * sign) @ axes.T, mesh)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every row of ``a [A, P]`` with every row of ``b [B, P]`` (bool) -> ``[A, B]``."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def overlap(candidates: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest IoU of each candidate with any reference shape over both frames, and which reference:
    ``candidates [C, 5, P]`` (``all_signs``), ``reference [R, 2, P]`` -> ``([C], [C])``."""
    if candidates.ndim != 3 or candidates.shape[1] != 5 or reference.ndim != 3 or reference.shape[1] < 2:
        raise ValueError(
            f"overlap needs candidates [C, 5, P] (all_signs=True) and reference [R, 2, P], got "
            f"{candidates.shape} and {reference.shape}"
        )
    if candidates.shape[2] != reference.shape[2]:
        raise ValueError(f"different probe counts: {candidates.shape[2]} and {reference.shape[2]}")
    given = _iou(candidates[:, 0], reference[:, 0])  # [C, R]
    canonical = np.stack([_iou(candidates[:, 1 + k], reference[:, 1]) for k in range(4)]).max(0)
    best = np.maximum(given, canonical)
    return best.max(1), best.argmax(1)


def unique_shapes(
    candidates: Iterable[Mesh],
    reference: Sequence[Mesh],
    *,
    num_shapes: int,
    threshold: float = DUPLICATE_IOU,
    max_candidates: int | None = None,
) -> tuple[list[Mesh], list[dict]]:
    """The first ``num_shapes`` of ``candidates`` that duplicate no ``reference`` shape (IoU below
    ``threshold`` in both frames, see the module docstring), and one record per skipped candidate
    (``name``, ``iou``, ``duplicate_of``). ``ValueError`` when ``max_candidates`` (default
    ``20 * num_shapes``) candidates do not give enough."""
    if num_shapes < 1 or not 0 < threshold <= 1 or len(reference) == 0:
        raise ValueError(
            f"need num_shapes >= 1, 0 < threshold <= 1 and reference shapes, got {num_shapes}, {threshold}, "
            f"{len(reference)} reference shapes"
        )
    limit = 20 * num_shapes if max_candidates is None else max_candidates
    prints = fingerprints(reference)
    kept: list[Mesh] = []
    skipped: list[dict] = []
    for count, mesh in enumerate(candidates):
        if count == limit:
            raise ValueError(
                f"only {len(kept)} of {limit} candidate shapes duplicate no reference shape (IoU < {threshold}); "
                f"{num_shapes} are needed"
            )
        iou, nearest = overlap(fingerprints([mesh], all_signs=True), prints)
        if iou[0] < threshold:
            kept.append(mesh)
        else:
            skipped.append(
                {"name": mesh.name, "iou": float(iou[0]), "duplicate_of": reference[nearest[0]].name}
            )
        if len(kept) == num_shapes:
            break
    if len(kept) < num_shapes:
        raise ValueError(f"the candidates ran out after {len(kept)} unique shapes; {num_shapes} are needed")
    if skipped:
        log.info("skipped %d candidate shapes that duplicate reference shapes: %s", len(skipped), skipped)
    return kept, skipped
