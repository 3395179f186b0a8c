"""The SDF sample cache is keyed by the meshes' content and verified before reuse."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("trimesh")

from enf.data.shapes.meshes import Mesh  # noqa: E402
from enf.data.shapes.sdf import build_sdf_file  # noqa: E402

TETRA = dict(
    vertices=np.array([[0, 0, 0], [0.8, 0, 0], [0, 0.8, 0], [0, 0, 0.8]], dtype=np.float64) - 0.2,
    faces=np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
)
SIZES = dict(num_near=64, num_uniform=64, num_surface=16, progress=False)


def signal(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return np.asarray(f["signal"])


def test_the_cache_is_keyed_by_mesh_content_and_verified(tmp_path: Path, caplog) -> None:
    path = tmp_path / "procedural_train.h5"
    build_sdf_file([Mesh(**TETRA, name="t")], path, **SIZES)
    good = signal(path)
    stamp = path.stat().st_mtime_ns
    build_sdf_file([Mesh(**TETRA, name="t")], path, **SIZES)
    assert path.stat().st_mtime_ns == stamp  # the same meshes and settings: reused

    with h5py.File(path, "r+") as f:  # inside and outside swapped, with valid chunk checksums
        f["signal"][...] = -f["signal"][...]
    with caplog.at_level("WARNING"):
        build_sdf_file([Mesh(**TETRA, name="t")], path, **SIZES)
    assert "cannot be reused" in caplog.text and "do not match the SHA-256" in caplog.text
    np.testing.assert_array_equal(signal(path), good)  # sampled again, not reused

    moved = Mesh(vertices=TETRA["vertices"] * 1.1, faces=TETRA["faces"], name="t")  # same name and face count
    build_sdf_file([moved], path, **SIZES)
    assert not np.array_equal(signal(path), good)
