"""Meshes and signed distances (issue 10, data layer): checked against closed forms and trimesh.

Needs the `mesh` extra (trimesh, libigl); the bundled-mesh test also needs the pymeshlab wheel."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trimesh", reason='meshes need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')

import trimesh  # noqa: E402

from enf.data import read_h5  # noqa: E402
from enf.data.shapes.meshes import (  # noqa: E402
    Mesh,
    bundled_mesh,
    check_watertight,
    load_mesh,
    mesh_from_grid,
    normalize_mesh,
    procedural_shapes,
    save_mesh,
)
from enf.data.shapes.sdf import build_sdf_file, sample_sdf, sample_surface, signed_distance  # noqa: E402


def _mesh(tm: trimesh.Trimesh, name: str = "m") -> Mesh:
    return Mesh(vertices=tm.vertices, faces=tm.faces, name=name)


def _box_sdf(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)


def test_signed_distance_of_a_box_is_the_closed_form_negative_inside():
    half = np.array([0.3, 0.5, 0.7])
    box = _mesh(trimesh.creation.box(extents=2 * half))
    p = np.random.default_rng(0).uniform(-1.2, 1.2, size=(2000, 3))
    sdf = signed_distance(p, box)
    np.testing.assert_allclose(sdf, _box_sdf(p, half), atol=1e-12)
    inside = np.all(np.abs(p) < half, axis=1)
    assert inside.any() and (sdf[inside] < 0).all() and (sdf[~inside] > 0).all()


def test_signed_distance_agrees_with_trimesh_and_an_inside_out_mesh_is_turned_right():
    sphere = _mesh(trimesh.creation.icosphere(subdivisions=3))
    p = np.random.default_rng(1).uniform(-1.3, 1.3, size=(300, 3))
    ours = signed_distance(p, sphere)
    theirs = trimesh.proximity.signed_distance(sphere.to_trimesh(), p)  # trimesh: positive inside
    np.testing.assert_allclose(ours, -theirs, atol=1e-10)
    assert np.abs(ours - (np.linalg.norm(p, axis=1) - 1)).max() < 0.02  # the faceted unit sphere
    flipped = Mesh(vertices=sphere.vertices, faces=sphere.faces[:, ::-1])
    inside = np.linalg.norm(p, axis=1) < 0.9
    assert (
        signed_distance(p, flipped)[inside] > 0
    ).all()  # negative control: inside out, the inside is positive
    fixed = check_watertight(flipped)
    np.testing.assert_allclose(signed_distance(p, fixed), ours, atol=1e-12)


def test_procedural_shapes_are_seeded_closed_outward_and_normalised():
    a, b = procedural_shapes(4, seed=3), procedural_shapes(4, seed=3)
    other = procedural_shapes(4, seed=4)
    for m, n in zip(a, b, strict=True):
        np.testing.assert_array_equal(m.vertices, n.vertices)
        tm = m.to_trimesh()
        assert tm.is_watertight and tm.volume > 0
        assert np.linalg.norm(m.vertices, axis=1).max() == pytest.approx(1.0)
    assert any(len(m.faces) != len(n.faces) for m, n in zip(a, other, strict=True))


def test_surface_samples_lie_on_the_surface_and_sdf_samples_straddle_it():
    mesh = procedural_shapes(1, seed=0)[0]
    rng = np.random.default_rng(0)
    surf = sample_surface(mesh, 500, rng=rng)
    assert np.abs(signed_distance(surf, mesh)).max() < 1e-9
    coords, sdf = sample_sdf(mesh, num_near=1000, num_uniform=500, seed=0)
    assert coords.shape == (1500, 3) and sdf.shape == (1500,)
    near = np.abs(sdf[:500])
    assert np.median(near) < 0.02 and (sdf[:1000] < 0).mean() > 0.3  # near samples on both sides
    assert np.abs(coords[1000:]).max() <= 1.1


def test_build_sdf_file_writes_and_reuses_its_cache(tmp_path: Path):
    meshes = procedural_shapes(2, seed=0)
    path = build_sdf_file(meshes, tmp_path / "shapes.h5", num_near=300, num_uniform=100, num_surface=50,
                          progress=False)  # fmt: skip
    arrays, attrs = read_h5(path)
    assert arrays["coords"].shape == (2, 400, 3) and arrays["signal"].shape == (2, 400, 1)
    assert arrays["surface"].shape == (2, 50, 3) and attrs["sign"] == "negative inside"
    np.testing.assert_allclose(
        arrays["signal"][1, :, 0], signed_distance(arrays["coords"][1], meshes[1]), atol=1e-5
    )
    stamp = os.stat(path).st_mtime_ns
    build_sdf_file(meshes, path, num_near=300, num_uniform=100, num_surface=50, progress=False)
    assert os.stat(path).st_mtime_ns == stamp  # same settings: reused
    build_sdf_file(meshes, path, num_near=200, num_uniform=100, num_surface=50, progress=False)
    assert read_h5(path)[0]["coords"].shape == (2, 300, 3)  # other settings: sampled again


def test_sdf_file_keeps_the_meshes_and_marks_the_uniform_samples(tmp_path: Path):
    from enf.data.shapes.sdf import unpack_mesh

    meshes = procedural_shapes(2, seed=3)
    path = build_sdf_file(
        meshes, tmp_path / "s.h5", num_near=30, num_uniform=10, num_surface=5, progress=False
    )
    arrays, _ = read_h5(path)
    assert arrays["uniform"].tolist() == [False] * 30 + [True] * 10
    for i, mesh in enumerate(meshes):
        back = unpack_mesh(arrays, i)
        np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)  # stored as float32
        np.testing.assert_array_equal(back.faces, mesh.faces)


def _sphere_grid(radius: float, resolution: int = 48, bound: float = 1.1) -> np.ndarray:
    axis = np.linspace(-bound, bound, resolution)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    return np.linalg.norm(grid - np.array([0.2, -0.1, 0.05]), axis=-1) - radius


def test_mesh_from_grid_recovers_a_sphere_closed_and_outward(tmp_path: Path):
    mesh = mesh_from_grid(_sphere_grid(0.6), bound=1.1)
    tm = mesh.to_trimesh()
    assert tm.is_watertight and tm.volume > 0  # outward: positive volume
    assert tm.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.01)
    r = np.linalg.norm(mesh.vertices - np.array([0.2, -0.1, 0.05]), axis=1)
    assert np.abs(r - 0.6).max() < 0.01  # vertices on the sphere (linear interpolation of an exact SDF)
    # a field still negative at the border gives a closed surface within one grid step outside the cube
    big = mesh_from_grid(_sphere_grid(2.0), bound=1.1).to_trimesh()
    assert big.is_watertight and 2.2**3 < big.volume < (2.2 + 2 * 2.2 / 47) ** 3
    assert mesh_from_grid(_sphere_grid(-1.0), bound=1.1) is None  # no zero crossing
    with pytest.raises(ValueError, match="cubic grid"):
        mesh_from_grid(np.zeros((4, 4, 5)), bound=1.0)
    for suffix in (".ply", ".obj"):
        path = save_mesh(mesh, tmp_path / f"sphere{suffix}")
        back = trimesh.load(path, force="mesh", process=False)
        np.testing.assert_allclose(np.asarray(back.vertices), mesh.vertices, atol=1e-5)
        assert len(back.faces) == len(mesh.faces)
    with pytest.raises(ValueError, match="suffix"):
        save_mesh(mesh, tmp_path / "sphere.vtk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sphere.obj", "sphere.ply"]  # no temporary left


def test_files_load_normalise_and_bad_files_fail_clearly(tmp_path: Path):
    box = trimesh.creation.box(extents=(2.0, 4.0, 6.0))
    box.apply_translation([5.0, 0.0, 0.0])
    for suffix in (".obj", ".ply", ".stl", ".off"):
        box.export(tmp_path / f"box{suffix}")
        mesh = normalize_mesh(load_mesh(tmp_path / f"box{suffix}"))
        assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0)
        np.testing.assert_allclose(0.5 * (mesh.vertices.min(0) + mesh.vertices.max(0)), 0.0, atol=1e-12)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mesh(tmp_path / "none.obj")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(ValueError, match="not a readable mesh|holds no triangles"):
        load_mesh(tmp_path / "bad.ply")
    (tmp_path / "box.glb").touch()
    with pytest.raises(ValueError, match="unsupported mesh format"):
        load_mesh(tmp_path / "box.glb")
    sphere = trimesh.creation.icosphere(2)
    keep = sphere.vertices[sphere.faces].mean(1)[:, 2] > 0
    with pytest.raises(ValueError, match="not watertight"):
        check_watertight(Mesh(vertices=sphere.vertices, faces=sphere.faces[keep], name="hemisphere"))
    with pytest.raises(ValueError, match="face indices"):
        Mesh(vertices=np.zeros((4, 3)), faces=np.full((4, 3), 9))


def test_a_bundled_mesh_is_read_from_its_wheel_or_says_how_to_get_it():
    if importlib.util.find_spec("pymeshlab") is None:
        with pytest.raises(FileNotFoundError, match="pip install pymeshlab"):
            bundled_mesh("bunny")
        return
    bunny = bundled_mesh("bunny")
    assert bunny.to_trimesh().is_watertight and len(bunny.faces) > 50_000
    assert np.linalg.norm(bunny.vertices, axis=1).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown bundled mesh"):
        bundled_mesh("teapot")
