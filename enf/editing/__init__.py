"""Editing fields by editing their latent point clouds.

Pure functions on :class:`~enf.Latents` (batch-first, inputs never changed): selections
(:func:`select_indices`, :func:`select_radius`, :func:`select_box`, boolean masks), group actions on a
selection (:func:`transform`, :func:`translate`, :func:`rotate`; :func:`scale` approximately), structural
edits (:func:`delete`, :func:`duplicate`, :func:`copy_context`, :func:`paste`, :func:`swap`) and
:func:`interpolate` between two clouds (latents matched by optimal assignment). Moving every latent by a
group element of the model's geometry moves the decoded field exactly (:func:`is_symmetry`).

Edits are recorded as JSON-serialisable :class:`Edit` records (:func:`replay`, :class:`EditHistory` with
undo/redo, :func:`save_edits`/:func:`load_edits`). :class:`ImageEditor` wraps a fitted image model
(encode an image, decode latents); ``enf edit`` is the command line and ``enf edit --serve`` the web page.
"""

from enf.editing.interpolate import interpolate, match_latents
from enf.editing.model import ImageEditor, image_from_bytes, image_to_png
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
    "ImageEditor",
    "Selection",
    "apply_edit",
    "check_latents",
    "copy_context",
    "delete",
    "dumps_edits",
    "duplicate",
    "image_from_bytes",
    "image_to_png",
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
