"""Tiny generated PDE files shared by the loader tests (a 16x16 plane and a 16x32 sphere, a few frames)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enf.data.pde import get_spec
from enf.data.pde.io import generate_split

TINY_OPTIONS = {
    "diffusion_plane": {"num_train": 3, "num_test": 2, "resolution": 16, "num_frames": 4},
    "diffusion_sphere": {
        "num_train": 3,
        "num_test": 2,
        "nlat": 16,
        "nlon": 32,
        "lmax": 12,
        "sigma": 0.6,
        "num_frames": 3,
    },
}


def make_tiny(name: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Generate ``out_dir/{train,test}.h5`` of ``name`` with :data:`TINY_OPTIONS`; returns ``out_dir``."""
    spec = get_spec(name)
    params = spec.params("small", **TINY_OPTIONS[name])
    for split in ("train", "test"):
        generate_split(spec, params, split=split, out_dir=out_dir, seed=seed, progress=False)
    return out_dir


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with ``<root>/<name>/{train,test}.h5`` for both tiny datasets (read-only for tests)."""
    root = tmp_path_factory.mktemp("pde_root")
    for name in TINY_OPTIONS:
        make_tiny(name, root / name)
    return root


@pytest.fixture
def tiny_options() -> dict:
    """:data:`TINY_OPTIONS` (preset overrides of the tiny files), for tests that generate their own."""
    return {name: dict(options) for name, options in TINY_OPTIONS.items()}
