"""Edit records: a small JSON-serialisable description of one edit, replayable and undoable.

An :class:`Edit` is ``{"op": ..., <parameters>}``; selections are lists of latent indices (``null``: every
latent), angles are in radians, positions in the domain's coordinates. A list of edits is saved as JSON
(:func:`save_edits`, atomic) and replayed on the original latents (:func:`replay`); :class:`EditHistory`
keeps the states for undo/redo. Edits that take a second cloud (``paste``, ``swap``, ``interpolate``) name
it by a ``source`` key looked up in the ``sources`` mapping given to :func:`apply_edit`.

=================  ==========================================================================
op                 parameters
=================  ==========================================================================
``transform``      ``rotation`` (``[[..]]`` or null), ``translation`` (``[..]`` or null), ``select``
``translate``      ``offset [dx, dy]``, ``select``
``rotate``         ``angle`` (radians), ``center`` (``[x, y]`` or null: the selection's centroid), ``select``
``scale``          ``factor``, ``center``, ``select``
``delete``         ``select``
``duplicate``      ``select``, ``offset`` (``[dx, dy]`` or null)
``copy_context``   ``source_index`` (a latent of this cloud), ``select``
``paste``          ``source``, ``select`` (indices into the source cloud), ``offset``
``swap``           ``source``, ``select`` (this cloud's part), ``select_source`` (the source's part)
``interpolate``    ``source``, ``t`` in [0, 1], ``match`` (bool)
=================  ==========================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from enf.editing import ops
from enf.editing.interpolate import interpolate
from enf.geometry import Geometry, GroupElement
from enf.io import write_text_atomic
from enf.latents import Latents

__all__ = [
    "OPS",
    "Edit",
    "EditHistory",
    "ROTATION_TOLERANCE",
    "apply_edit",
    "check_edit_for",
    "dumps_edits",
    "load_edit_record",
    "load_edits",
    "replay",
    "save_edits",
]

# op -> {parameter: (kind, required)}; kinds: select, vector, matrix, number, int, bool, key
OPS: dict[str, dict[str, tuple[str, bool]]] = {
    "transform": {
        "rotation": ("matrix", False),
        "translation": ("vector", False),
        "select": ("select", False),
    },
    "translate": {"offset": ("vector", True), "select": ("select", False)},
    "rotate": {"angle": ("number", True), "center": ("vector", False), "select": ("select", False)},
    "scale": {"factor": ("number", True), "center": ("vector", False), "select": ("select", False)},
    "delete": {"select": ("select", True)},
    "duplicate": {"select": ("select", True), "offset": ("vector", False)},
    "copy_context": {"source_index": ("int", True), "select": ("select", True)},
    "paste": {"source": ("key", True), "select": ("select", True), "offset": ("vector", False)},
    "swap": {"source": ("key", True), "select": ("select", True), "select_source": ("select", True)},
    "interpolate": {"source": ("key", True), "t": ("number", True), "match": ("bool", False)},
}


def _check_value(op: str, name: str, kind: str, value: Any) -> Any:
    where = f"edit {op!r}: {name}"

    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where} must hold finite numbers, got {v!r}")
        return float(v)

    if value is None:
        return None
    if kind == "select":
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            raise ValueError(f"{where} must be a list of latent indices or null, got {value!r}")
        return list(value)
    if kind == "vector":
        if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
            raise ValueError(f"{where} must be a list of 2 or 3 numbers, got {value!r}")
        return [number(v) for v in value]
    if kind == "matrix":
        if not isinstance(value, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in value):
            raise ValueError(f"{where} must be a square list of lists, got {value!r}")
        if len(value) not in (2, 3) or any(len(r) != len(value) for r in value):
            raise ValueError(f"{where} must be 2x2 or 3x3, got {value!r}")
        return [[number(v) for v in r] for r in value]
    if kind == "number":
        return number(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str) or not value:  # key
        raise ValueError(f"{where} must be a non-empty string naming a source cloud, got {value!r}")
    return value


@dataclass(frozen=True)
class Edit:
    """One edit: ``op`` (a key of :data:`OPS`) and its checked JSON parameters."""

    op: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown edit op {self.op!r}; choose one of {sorted(OPS)}")
        schema = OPS[self.op]
        unknown = sorted(set(self.params) - set(schema))
        if unknown:
            raise ValueError(
                f"edit {self.op!r} got unknown parameter(s) {unknown}; it takes {sorted(schema)}"
            )
        checked = {}
        for name, (kind, required) in schema.items():
            value = self.params.get(name)
            if required and value is None:
                raise ValueError(f"edit {self.op!r} needs the parameter {name!r}")
            checked[name] = _check_value(self.op, name, kind, value)
        object.__setattr__(self, "params", checked)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: v for k, v in self.params.items() if v is not None}}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Edit:
        if not isinstance(data, Mapping) or "op" not in data:
            raise ValueError(f"an edit must be an object with an 'op' key, got {data!r}")
        return Edit(op=data["op"], params={k: v for k, v in data.items() if k != "op"})


def _source(sources: Mapping[str, Latents] | None, key: str, op: str) -> Latents:
    if not sources or key not in sources:
        have = sorted(sources) if sources else []
        raise ValueError(f"edit {op!r} names the source cloud {key!r}, which is not loaded (have {have})")
    return sources[key]


def _offset_motion(offset: list[float] | None, z: Latents) -> GroupElement | None:
    if offset is None:
        return None
    t = torch.as_tensor(offset, dtype=z.dtype, device=z.device).expand(z.batch_size, len(offset))
    return GroupElement(rotation=None, translation=t)


#: how far ``R R^T`` may be from the identity (max entry) for a ``transform`` rotation to count as proper
ROTATION_TOLERANCE = 1e-6


def check_edit_for(geometry: Geometry, edit: Edit) -> None:
    """Raise ``ValueError`` unless ``edit`` fits ``geometry``: vectors with ``space_dim`` numbers, a
    ``transform`` rotation that is a proper ``space_dim`` rotation (orthonormal and det +1 within
    :data:`ROTATION_TOLERANCE`). Selections are checked by the edits themselves (``IndexError``)."""
    n = geometry.space_dim
    for name, (kind, _) in OPS[edit.op].items():
        value = edit.params.get(name)
        if value is None:
            continue
        where = f"edit {edit.op!r}: {name}"
        if kind == "vector" and len(value) != n:
            raise ValueError(
                f"{where} has {len(value)} numbers but geometry {geometry.name!r} is {n}-D; give {n} numbers"
            )
        if kind == "matrix":
            r = torch.tensor(value, dtype=torch.float64)
            if r.shape != (n, n):
                raise ValueError(
                    f"{where} is {r.shape[0]}x{r.shape[1]} but geometry {geometry.name!r} needs {n}x{n}"
                )
            off = (r @ r.T - torch.eye(n, dtype=torch.float64)).abs().max().item()
            if off > ROTATION_TOLERANCE or torch.linalg.det(r).item() <= 0:
                raise ValueError(
                    f"{where} must be a proper rotation (R R^T = I to {ROTATION_TOLERANCE:g}, det +1); got "
                    f"max |R R^T - I| = {off:.3g}, det {torch.linalg.det(r).item():.3g}. Use the 'rotate' edit "
                    "with an angle for planar rotations"
                )


def apply_edit(
    z: Latents, geometry: Geometry, edit: Edit, *, sources: Mapping[str, Latents] | None = None
) -> Latents:
    """The latents after ``edit`` (``z`` is not changed). ``sources``: the clouds that ``source`` keys name.

    Raises ``ValueError`` (:func:`check_edit_for`) when a parameter does not fit the geometry or the cloud.
    """
    p, op = edit.params, edit.op
    check_edit_for(geometry, edit)
    sel = p.get("select")
    if op == "transform":
        n = geometry.space_dim

        def batched(value, shape):
            return (
                None
                if value is None
                else torch.as_tensor(value, dtype=z.dtype, device=z.device).expand(*shape)
            )

        g = GroupElement(
            rotation=batched(p["rotation"], (z.batch_size, n, n)),
            translation=batched(p["translation"], (z.batch_size, n)),
        )
        return ops.transform(z, geometry, g, select=sel)
    if op == "translate":
        return ops.translate(z, geometry, p["offset"], select=sel)
    if op == "rotate":
        return ops.rotate(z, geometry, p["angle"], center=p["center"], select=sel)
    if op == "scale":
        return ops.scale(z, geometry, p["factor"], center=p["center"], select=sel)
    if op == "delete":
        return ops.delete(z, select=sel)
    if op == "duplicate":
        return ops.duplicate(z, geometry, select=sel, g=_offset_motion(p["offset"], z))
    if op == "copy_context":
        return ops.copy_context(z, source=p["source_index"], select=sel)
    other = _source(sources, p["source"], op)
    if op == "paste":
        return ops.paste(z, other, geometry, select=sel, g=_offset_motion(p["offset"], z))
    if op == "swap":
        return ops.swap(z, other, select_a=sel, select_b=p["select_source"])[0]
    match = True if p["match"] is None else p["match"]
    return interpolate(z, other, geometry, p["t"], match=match)


def replay(
    z: Latents,
    geometry: Geometry,
    edits: Sequence[Edit | Mapping[str, Any]],
    *,
    sources: Mapping[str, Latents] | None = None,
) -> Latents:
    """Apply ``edits`` in order (records or their dicts) to ``z``."""
    for k, edit in enumerate(edits):
        edit = edit if isinstance(edit, Edit) else Edit.from_dict(edit)
        try:
            z = apply_edit(z, geometry, edit, sources=sources)
        except (ValueError, IndexError, TypeError) as exc:
            raise type(exc)(f"edit {k} ({edit.op}): {exc}") from None
    return z


class EditHistory:
    """The edits applied to one cloud, with undo and redo.

    ``push`` applies an edit to the current state; ``undo``/``redo`` step through the states (kept, so
    neither replays). ``edits`` is the list that :func:`replay` turns ``base`` into ``current`` with.
    """

    def __init__(
        self, base: Latents, geometry: Geometry, *, sources: Mapping[str, Latents] | None = None
    ) -> None:
        self.base = ops.check_latents(base, "the initial latents")
        self.geometry = geometry
        self.sources = dict(sources or {})
        self._edits: list[Edit] = []
        self._states: list[Latents] = [base]
        self._position = 0  # number of applied edits

    @property
    def current(self) -> Latents:
        return self._states[self._position]

    @property
    def edits(self) -> list[Edit]:
        return list(self._edits[: self._position])

    @property
    def redoable_edits(self) -> list[Edit]:
        """The undone edits that :meth:`redo` would apply again, in order."""
        return list(self._edits[self._position :])

    @property
    def can_undo(self) -> bool:
        return self._position > 0

    @property
    def can_redo(self) -> bool:
        return self._position < len(self._edits)

    def push(self, edit: Edit | Mapping[str, Any], *, state: Latents | None = None) -> Latents:
        """Apply ``edit`` to :attr:`current` (dropping any undone edits) and return the new state.

        ``state``: the result of ``apply_edit(current, geometry, edit, sources=sources)`` when the caller has
        computed it already (e.g. to validate the edit first); it is then stored as given."""
        edit = edit if isinstance(edit, Edit) else Edit.from_dict(edit)
        if state is None:
            state = apply_edit(self.current, self.geometry, edit, sources=self.sources)
        del self._edits[self._position :], self._states[self._position + 1 :]
        self._edits.append(edit)
        self._states.append(state)
        self._position += 1
        return state

    def undo(self) -> Latents:
        if not self.can_undo:
            raise IndexError("nothing to undo")
        self._position -= 1
        return self.current

    def redo(self) -> Latents:
        if not self.can_redo:
            raise IndexError("nothing to redo")
        self._position += 1
        return self.current


def dumps_edits(edits: Sequence[Edit], *, meta: Mapping[str, Any] | None = None) -> str:
    """The edit-record JSON text ``{"meta": ..., "edits": [...]}`` that :func:`load_edits` reads."""
    return json.dumps({"meta": dict(meta or {}), "edits": [e.to_dict() for e in edits]}, indent=2) + "\n"


def save_edits(path: str | Path, edits: Sequence[Edit], *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`dumps_edits` to ``path`` atomically (temporary file + rename)."""
    return write_text_atomic(path, dumps_edits(edits, meta=meta))


def load_edits(path: str | Path) -> list[Edit]:
    """The edits of a file written by :func:`save_edits` (or a bare JSON list of edits), checked."""
    return load_edit_record(path)[0]


def load_edit_record(path: str | Path) -> tuple[list[Edit], dict[str, Any]]:
    """``(edits, meta)`` of a file written by :func:`save_edits` or the edit page (``meta`` is ``{}`` for a
    bare list). The page's ``meta["sources"]`` says where each ``source`` key's image came from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"edit script {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"edit script {path} is not valid JSON: {exc}") from None
    edits = data.get("edits") if isinstance(data, dict) else data
    if not isinstance(edits, list):
        raise ValueError(f"edit script {path} must hold a list of edits (or {{'edits': [...]}})")
    meta = data.get("meta") if isinstance(data, dict) else None
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"edit script {path}: 'meta' must be an object, got {type(meta).__name__}")
    out = []
    for k, item in enumerate(edits):
        try:
            out.append(Edit.from_dict(item))
        except ValueError as exc:
            raise ValueError(f"edit script {path}, edit {k}: {exc}") from None
    return out, dict(meta or {})
