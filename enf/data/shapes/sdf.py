"""Signed distances of meshes, sampled once and cached in HDF5.

Sign convention: **negative inside, positive outside** (libigl's ``signed_distance`` with winding-number
signs, on the outward-oriented, watertight meshes of :mod:`enf.data.shapes.meshes`).

    sdf = signed_distance(points, mesh)                        # [P] float64
    coords, sdf = sample_sdf(mesh, num_near=200_000, num_uniform=50_000, seed=0)
    path = build_sdf_file(meshes, "data/shapes/train.h5", num_near=..., num_uniform=...)   # cached

Samples: ``num_near`` points on the surface (area-weighted) moved by Gaussian noise of standard deviation
``near_std`` (half of them) and ``10 * near_std`` (the other half), and ``num_uniform`` points uniform in the
cube ``[-bound, bound]^3`` around the unit sphere. The files also hold ``surface [S, Q, 3]`` points on each
surface (for the Chamfer distance; the uniform samples give occupancy IoU) and the meshes themselves
(concatenated: ``mesh_vertices [V, 3]``, ``mesh_faces [F, 3]`` with per-mesh offsets), for figures.

Held-out evaluation samples (:func:`build_heldout_file`): ``num_points`` further points uniform in the same cube
per shape with their signed distances, from a seed stream of their own (:func:`heldout_rng`), cached in a
second file and never part of the fitted samples: the occupancy IoU of ``metrics.json`` is measured on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from enf.data.hdf5 import content_digest, read_h5, write_h5
from enf.data.shapes.meshes import Mesh

__all__ = [
    "HELDOUT_ENTROPY",
    "SDF_FORMAT_VERSION",
    "build_heldout_file",
    "build_sdf_file",
    "heldout_rng",
    "inside",
    "is_cached",
    "pack_meshes",
    "sample_sdf",
    "sample_surface",
    "signed_distance",
    "unpack_mesh",
]

log = logging.getLogger(__name__)

SDF_FORMAT_VERSION = 3  # 3: the packed meshes in chunks of 64 KiB (2: one chunk per vertex, slow to read)
#: first word of the held-out samples' seed sequence ("HELD"): fitting samples are seeded by single integers
HELDOUT_ENTROPY = 0x48454C44


def _igl():
    try:
        import igl
    except ImportError:
        raise ImportError('signed distances need libigl: pip install -e ".[mesh]"') from None
    return igl


def signed_distance(points: np.ndarray, mesh: Mesh) -> np.ndarray:
    """Signed distances ``[P]`` (float64, negative inside) from ``points [P, 3]`` to ``mesh``."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {points.shape}")
    igl = _igl()
    sdf = igl.signed_distance(points, mesh.vertices, mesh.faces)[0]
    return np.asarray(sdf, dtype=np.float64)


def inside(points: np.ndarray, mesh: Mesh) -> np.ndarray:
    """Occupancy ``[P]`` (bool) of ``points [P, 3]``: generalised winding number above 1/2 (libigl's fast
    winding number; the sign rule of :func:`signed_distance`, without the distances)."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {points.shape}")
    return np.asarray(_igl().fast_winding_number(mesh.vertices, mesh.faces, points)) > 0.5


def sample_surface(mesh: Mesh, num_points: int, *, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` points uniformly distributed over the surface (area-weighted faces, uniform barycentric)."""
    tri = mesh.vertices[mesh.faces]  # [F, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(area), size=num_points, p=area / area.sum())
    u, v = rng.random(num_points), rng.random(num_points)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def sample_sdf(
    mesh: Mesh,
    *,
    num_near: int,
    num_uniform: int,
    near_std: float = 0.01,
    bound: float = 1.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Near-surface and uniform samples of the signed distance: ``coords [P, 3]``, ``sdf [P]`` (near first)."""
    if num_near < 0 or num_uniform < 0 or num_near + num_uniform == 0:
        raise ValueError(f"need num_near, num_uniform >= 0 and not both 0, got {num_near}, {num_uniform}")
    rng = np.random.default_rng(seed)
    surface = sample_surface(mesh, num_near, rng=rng)
    std = np.where(np.arange(num_near) < num_near // 2, near_std, 10 * near_std)[:, None]
    near = surface + std * rng.normal(size=surface.shape)
    uniform = rng.uniform(-bound, bound, size=(num_uniform, 3))
    coords = np.concatenate([near, uniform])
    return coords, signed_distance(coords, mesh)


def pack_meshes(meshes: Sequence[Mesh]) -> dict[str, np.ndarray]:
    """Meshes as four arrays: ``mesh_vertices [V, 3]``, ``mesh_faces [F, 3]`` (indices local to each mesh),
    ``mesh_vertex_offsets [S + 1]`` and ``mesh_face_offsets [S + 1]``."""
    vertex_offsets = np.cumsum([0] + [len(m.vertices) for m in meshes])
    face_offsets = np.cumsum([0] + [len(m.faces) for m in meshes])
    return {
        "mesh_vertices": np.concatenate([m.vertices for m in meshes]).astype(np.float32),
        "mesh_faces": np.concatenate([m.faces for m in meshes]).astype(np.int32),
        "mesh_vertex_offsets": vertex_offsets.astype(np.int64),
        "mesh_face_offsets": face_offsets.astype(np.int64),
    }


def unpack_mesh(arrays: dict[str, np.ndarray], i: int, *, name: str = "") -> Mesh:
    """Mesh ``i`` of :func:`pack_meshes`' arrays."""
    v0, v1 = arrays["mesh_vertex_offsets"][i : i + 2]
    f0, f1 = arrays["mesh_face_offsets"][i : i + 2]
    return Mesh(
        vertices=np.asarray(arrays["mesh_vertices"][v0:v1], dtype=np.float64),
        faces=np.asarray(arrays["mesh_faces"][f0:f1], dtype=np.int64),
        name=name,
    )


def is_cached(path: str | Path, settings: dict) -> bool:
    """Whether ``path`` is a readable sample file written with exactly ``settings`` (else: sample again)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        _, attrs = read_h5(path)  # every array: verified against the digest stored when it was written
    except ValueError as err:
        log.warning("%s cannot be reused (%s); sampling again", path, err)
        return False
    if attrs.get("settings") == settings:
        log.info("reusing the cached SDF samples in %s", path)
        return True
    log.info("%s was sampled with other settings or meshes; sampling again", path)
    return False


def build_sdf_file(
    meshes: Sequence[Mesh],
    path: str | Path,
    *,
    num_near: int = 200_000,
    num_uniform: int = 50_000,
    num_surface: int = 30_000,
    near_std: float = 0.01,
    bound: float = 1.1,
    seed: int = 0,
    labels: Sequence[int] | None = None,
    progress: bool = True,
) -> Path:
    """Sample every mesh once and write ``coords [S, P, 3]``, ``signal [S, P, 1]`` (signed distance),
    ``surface [S, Q, 3]``, ``uniform [P]`` (bool: the uniform volume samples; the first ``num_near`` of each
    row are near-surface), the meshes (:func:`pack_meshes`), their names and, when given, their class ``labels``
    (``label [S]``) to ``path`` (atomic). A file
    already there with the same settings and meshes (keyed by their content's SHA-256) is reused after its
    arrays are verified against the digest stored with them."""
    path = Path(path)
    settings = {"format_version": SDF_FORMAT_VERSION, "num_near": num_near, "num_uniform": num_uniform,
                "num_surface": num_surface, "near_std": near_std, "bound": bound, "seed": seed,
                "names": [m.name for m in meshes],
                "num_faces": [int(len(m.faces)) for m in meshes],
                "mesh_sha256": content_digest(pack_meshes(meshes))}  # fmt: skip
    if labels is not None:
        if len(labels) != len(meshes):
            raise ValueError(f"got {len(labels)} labels for {len(meshes)} meshes")
        settings["labels"] = [int(k) for k in labels]
    if is_cached(path, settings):
        return path
    coords, signal, surface = [], [], []
    for i, mesh in enumerate(tqdm(meshes, desc="sdf samples", disable=not progress)):
        x, s = sample_sdf(mesh, num_near=num_near, num_uniform=num_uniform, near_std=near_std, bound=bound,
                          seed=seed + i)  # fmt: skip
        coords.append(x.astype(np.float32))
        signal.append(s.astype(np.float32)[:, None])
        surface.append(sample_surface(mesh, num_surface, rng=np.random.default_rng(10_000 + seed + i)))
    arrays = {"coords": np.stack(coords), "signal": np.stack(signal),
              "surface": np.stack(surface).astype(np.float32), "index": np.arange(len(meshes)),
              "uniform": np.arange(num_near + num_uniform) >= num_near, **pack_meshes(meshes)}  # fmt: skip
    if labels is not None:
        arrays["label"] = np.asarray(labels, dtype=np.int64)
    return write_h5(path, arrays, {"settings": settings, "sign": "negative inside"})


def heldout_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of shape ``index``'s held-out samples, seeded by ``[HELDOUT_ENTROPY, seed, index]``: a seed
    sequence of three words, which no fitting sample uses (:func:`build_sdf_file` seeds by one integer)."""
    if seed < 0 or index < 0:
        raise ValueError(f"held-out samples need seed >= 0 and index >= 0, got {seed}, {index}")
    return np.random.default_rng([HELDOUT_ENTROPY, seed, index])


def build_heldout_file(
    mesh: Callable[[int], Mesh],
    num_shapes: int,
    path: str | Path,
    *,
    source: dict,
    num_points: int = 100_000,
    bound: float = 1.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Held-out samples of shapes ``0 .. num_shapes - 1`` (``mesh(i)`` gives shape ``i``): ``coords [S, E, 3]``
    uniform in ``[-bound, bound]^3`` and their signed distances ``signal [S, E, 1]`` (float32), cached in
    ``path`` (atomic). ``source`` identifies the meshes (the settings of their SDF file). A cached file with the
    same settings is reused, and extended when it holds fewer shapes (shape ``i``'s samples depend only on
    ``seed`` and ``i``, :func:`heldout_rng`, so a longer file begins with the shorter one)."""
    if num_shapes < 1 or num_points < 1 or not bound > 0:
        raise ValueError(
            f"need num_shapes >= 1, num_points >= 1 and bound > 0, got {num_shapes}, {num_points}, {bound}"
        )
    path = Path(path)
    settings = {"format_version": 1, "num_points": num_points, "bound": bound, "seed": seed, "source": source}
    coords, signal = np.zeros((0, num_points, 3), np.float32), np.zeros((0, num_points, 1), np.float32)
    if is_cached(path, settings):
        arrays, _ = read_h5(path, required={"coords": 3, "signal": 3})
        coords, signal = arrays["coords"], arrays["signal"]
        if len(coords) >= num_shapes:
            return {"coords": coords[:num_shapes], "signal": signal[:num_shapes]}
    new_coords, new_signal = [coords], [signal]
    for i in tqdm(range(len(coords), num_shapes), desc="held-out samples", disable=not progress):
        x = heldout_rng(seed, i).uniform(-bound, bound, size=(num_points, 3)).astype(np.float32)
        new_coords.append(x[None])  # the distances below are those of the stored (float32) points
        new_signal.append(signed_distance(x, mesh(i)).astype(np.float32)[None, :, None])
    arrays = {"coords": np.concatenate(new_coords), "signal": np.concatenate(new_signal)}
    write_h5(path, arrays, {"settings": settings, "sign": "negative inside"})
    return arrays
