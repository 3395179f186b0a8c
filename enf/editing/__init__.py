"""Editing fields by editing their latent point clouds.

Pure functions on :class:`~enf.Latents` (batch-first, inputs never changed): selections
(:func:`select_indices`, :func:`select_radius`, :func:`select_box`, boolean masks), group actions on a
selection (:func:`transform`, :func:`translate`, :func:`rotate`; :func:`scale` approximately), structural
edits (:func:`delete`, :func:`duplicate`, :func:`copy_context`, :func:`paste`, :func:`swap`) and
:func:`interpolate` between two clouds (latents matched by optimal assignment). Moving every latent by a
group element of the model's geometry moves the decoded field exactly (:func:`is_symmetry`).

Edits are recorded as JSON-serialisable :class:`Edit` records (:func:`replay`, :class:`EditHistory` with
undo/redo, :func:`save_edits`/:func:`load_edits`).

This package is the algebra only (no web, no Lightning). The edit application lives in :mod:`enf.apps.edit`:
:class:`~enf.apps.edit.ImageEditor` wraps a fitted image model (encode an image, decode latents), with the
sessions and the web server of the page; ``enf edit`` is the command line and ``enf edit --serve`` the page.
``enf.editing.ImageEditor``, ``image_from_bytes`` and ``image_to_png`` still resolve there (lazily).
"""

import importlib
from typing import Any

from enf.editing.interpolate import interpolate, match_latents
from enf.editing.ops import (
    check_latents,
    copy_context,
    delete,
    duplicate,
    is_symmetry,
    paste,
    planar_motion,
    rotate,
    scale,
    selection_centroid,
    swap,
    transform,
    translate,
)
from enf.editing.record import (
    OPS,
    Edit,
    EditHistory,
    apply_edit,
    dumps_edits,
    load_edit_record,
    load_edits,
    replay,
    save_edits,
)
from enf.editing.select import (
    Selection,
    select_box,
    select_indices,
    select_radius,
    selected_indices,
    selection_mask,
)

__all__ = [
    "OPS",
    "Edit",
    "EditHistory",
    "Selection",
    "apply_edit",
    "check_latents",
    "copy_context",
    "delete",
    "dumps_edits",
    "duplicate",
    "interpolate",
    "is_symmetry",
    "load_edit_record",
    "load_edits",
    "match_latents",
    "paste",
    "planar_motion",
    "replay",
    "rotate",
    "save_edits",
    "scale",
    "select_box",
    "select_indices",
    "select_radius",
    "selected_indices",
    "selection_centroid",
    "selection_mask",
    "swap",
    "transform",
    "translate",
]


_APP = {"ImageEditor", "image_from_bytes", "image_to_png"}  # the application's names, kept reachable here


def __getattr__(name: str) -> Any:
    if name in _APP:
        return getattr(importlib.import_module("enf.apps.edit.editor"), name)
    raise AttributeError(f"module 'enf.editing' has no attribute {name!r}")
