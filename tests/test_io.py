"""Atomic writes give their files the mode a plain ``open`` would (the umask), not ``mkstemp``'s owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from enf.data.hdf5 import write_h5
from enf.editing.record import save_edits
from enf.io import write_json_atomic


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    write_h5(tmp_path / "latents.h5", {"x": np.zeros((2, 3), dtype=np.float32)})
    save_edits(tmp_path / "edits.json", [])
    written = [tmp_path / n for n in ("metrics.json", "latents.h5", "edits.json")]
    try:
        from enf.data.shapes.meshes import Mesh, save_mesh

        mesh = Mesh(
            vertices=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64),
            faces=np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
        )
        save_mesh(mesh, tmp_path / "shape.ply")
        written.append(tmp_path / "shape.ply")
    except ImportError:  # the mesh extra is optional
        pass
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(expected) for p in written}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temp files left
