"""3-D shape sources: triangle meshes (files, bundled samples, a procedural set; :mod:`~enf.data.shapes.meshes`),
their signed distances sampled once and cached (:mod:`~enf.data.shapes.sdf`), ShapeNet from a local copy
(:mod:`~enf.data.shapes.shapenet`) and a test split deduplicated against training
(:mod:`~enf.data.shapes.dedup`)."""

from __future__ import annotations

from enf.data.shapes.dedup import unique_shapes
from enf.data.shapes.meshes import Mesh, bundled_mesh, load_mesh, procedural_shapes, save_mesh
from enf.data.shapes.sdf import (
    build_heldout_file,
    build_sdf_file,
    sample_sdf,
    sample_surface,
    signed_distance,
)

__all__ = [
    "Mesh",
    "build_heldout_file",
    "build_sdf_file",
    "bundled_mesh",
    "load_mesh",
    "procedural_shapes",
    "sample_sdf",
    "sample_surface",
    "save_mesh",
    "signed_distance",
    "unique_shapes",
]
