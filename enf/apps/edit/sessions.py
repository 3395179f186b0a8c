"""The edit page's state: request models (pydantic) and in-memory editing sessions, without the web layer.

:class:`EditSessions` holds the model and the sessions (uuid keys; a client past ``max_sessions_per_client``
loses its own least recently used session, never another client's, and a full server only drops sessions idle
for ``idle_timeout_s``, else refuses the new one); each session keeps an :class:`~enf.editing.EditHistory` of the opened image's latents and
the "source" clouds of second images that ``paste``/``swap``/``interpolate`` edits name (keys ``s1``, ``s2``...).
Bad requests raise :class:`RequestError` (an HTTP status and a message), which :mod:`enf.apps.edit.server`
turns into JSON errors.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from enf.apps.edit.editor import IMAGE_FORMATS, MAX_IMAGE_PIXELS, ImageEditor, image_to_png
from enf.data.hdf5 import write_h5
from enf.editing.record import OPS, Edit, EditHistory, apply_edit
from enf.latents import Latents

__all__ = ["MAX_EDITS", "MAX_LATENTS", "EditRequest", "EditSessions", "OpenRequest", "RequestError"]

log = logging.getLogger(__name__)

MAX_LATENTS = 1024  # the most latents a cloud may grow to (duplicate/paste), and the longest selection
MAX_EDITS = 500  # edits (and kept states) per session: the history, and so the memory, is bounded
MAX_UPLOAD_PIXELS = MAX_IMAGE_PIXELS  # 6000 x 6000


class RequestError(Exception):
    """A request the page cannot serve: ``status`` (404, 409, 413, 422...) and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------- requests
_Coord = Annotated[float, Field(ge=-10.0, le=10.0, allow_inf_nan=False)]
_Vector = Annotated[list[_Coord], Field(min_length=2, max_length=3)]
_Index = Annotated[int, Field(ge=-MAX_LATENTS, lt=MAX_LATENTS)]
_Indices = Annotated[list[_Index], Field(max_length=MAX_LATENTS)]


class EditRequest(BaseModel):
    """An :class:`~enf.editing.Edit` as JSON (``{"op": "translate", "offset": [dx, dy], "select": [3]}``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    op: Literal[tuple(OPS)]  # type: ignore[valid-type]
    select: _Indices | None = None
    select_source: _Indices | None = None
    offset: _Vector | None = None
    center: _Vector | None = None
    translation: _Vector | None = None
    rotation: Annotated[list[_Vector], Field(min_length=2, max_length=3)] | None = None
    angle: Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False)] | None = None
    factor: Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)] | None = None
    t: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    match: bool | None = None
    source_index: _Index | None = None
    source: Annotated[str, Field(pattern=r"^s[0-9]{1,6}$")] | None = None


class OpenRequest(BaseModel):
    """A dataset image: ``{"split": "test", "index": 3}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    split: Literal["train", "test"] = "test"
    index: Annotated[int, Field(ge=0)]


# ---------------------------------------------------------------------------------------------- sessions
@dataclass
class _Session:
    history: EditHistory
    origin: dict[str, Any]
    original_png: bytes
    reconstruction_png: bytes
    client: str = "local"
    last_used: float = field(default_factory=time.monotonic)
    source_origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_source: int = 1


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _points(z: Latents, dim: int) -> list[list[float]]:
    return [[round(float(v), 6) for v in p] for p in z.poses[0, :, :dim].tolist()]


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


class EditSessions:
    """The model, the sessions and the operations the routes call (one compute lock: 2 cores, one model)."""

    def __init__(
        self,
        editor: ImageEditor,
        *,
        max_sessions: int,
        max_sessions_per_client: int = 8,
        idle_timeout_s: float = 1800.0,
    ) -> None:
        self.editor = editor
        self.dim = editor.geometry.position_dim
        self.max_sessions = max_sessions
        self.max_sessions_per_client = min(max_sessions_per_client, max_sessions)
        self.idle_timeout_s = idle_timeout_s
        self.sessions: OrderedDict[uuid.UUID, _Session] = OrderedDict()
        self.lock = threading.Lock()

    def session(self, sid: uuid.UUID, *, touch: bool = True) -> _Session:
        """The session ``sid`` (marked most recently used unless ``touch=False``: callers without the lock)."""
        s = self.sessions.get(sid)
        if s is None:
            raise RequestError(
                404, f"unknown session {sid}: it expired or never existed; open an image again"
            )
        if touch:
            self.sessions.move_to_end(sid)
            s.last_used = time.monotonic()
        return s

    def _make_room(self, client: str) -> None:
        """Before ``client`` opens a session (under the lock): past its own quota it loses its least recently
        used session; on a full server the least recently used session idle for ``idle_timeout_s`` goes, and
        without one the request is refused. No client can push out another's session in use."""
        own = [sid for sid, s in self.sessions.items() if s.client == client]  # least recently used first
        if len(own) >= self.max_sessions_per_client:
            victim = own[0]
        elif len(self.sessions) >= self.max_sessions:
            now = time.monotonic()
            idle = [sid for sid, s in self.sessions.items() if now - s.last_used >= self.idle_timeout_s]
            if not idle:
                raise RequestError(
                    503,
                    f"the server holds {len(self.sessions)} sessions (max_sessions={self.max_sessions}), "
                    f"each used in the last {self.idle_timeout_s:.0f} s; try again later, or restart the page "
                    "with a larger max_sessions",
                )
            victim = idle[0]
        else:
            return
        del self.sessions[victim]
        log.info("dropped session %s to open one for client %s", victim, client)

    def dataset_image(self, req: OpenRequest) -> tuple[np.ndarray, dict[str, Any]]:
        if self.editor.dataset_size(req.split) == 0:
            raise RequestError(422, f"no dataset images in split {req.split!r}: upload an image instead")
        try:
            image = self.editor.dataset_image(req.index, split=req.split)
        except (IndexError, ValueError) as exc:
            raise RequestError(422, str(exc)) from None
        return image, {"kind": "dataset", "split": req.split, "index": req.index}

    def uploaded_image(self, data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:  # the header only
                w, h = im.size
        except Exception:  # unreadable: image_from_bytes says so below
            w = h = 0
        if w * h > MAX_UPLOAD_PIXELS:
            raise RequestError(
                413, f"the image is {w} x {h} pixels; at most {MAX_UPLOAD_PIXELS} pixels are accepted"
            )
        try:
            image = self.editor.image_from_bytes(data)
        except ValueError:
            raise RequestError(
                422, "the upload is not a readable image file; send a PNG, JPEG, ..."
            ) from None
        return image, {"kind": "upload", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def decode_png(self, z: Latents) -> tuple[bytes, float]:
        t0 = time.perf_counter()
        image = self.editor.decode(z)[0]
        return image_to_png(image), (time.perf_counter() - t0) * 1e3

    def open(self, image: np.ndarray, origin: dict[str, Any], *, client: str = "local") -> dict[str, Any]:
        """A new session for ``image`` opened by ``client`` (the peer address): see :meth:`_make_room`."""
        with self.lock:
            self._make_room(client)
            t0 = time.perf_counter()
            z = self.editor.encode(image)
            encode_ms = (time.perf_counter() - t0) * 1e3
            png, decode_ms = self.decode_png(z)
            history = EditHistory(z, self.editor.geometry)
            s = _Session(history, origin, image_to_png(image), png, client=client)
            sid = uuid.uuid4()
            self.sessions[sid] = s
            log.info("session %s: %s, encoded in %.0f ms", sid, origin, encode_ms)
            out = self.state(sid, s, png, decode_ms)
            out.update(original=_data_url(s.original_png), reconstruction=_data_url(png), encode_ms=encode_ms)
            return out

    def state(self, sid: uuid.UUID, s: _Session, png: bytes | None = None, decode_ms: float = 0.0) -> dict:
        h = s.history
        if png is None:
            png, decode_ms = self.decode_png(h.current)
        return {
            "session": str(sid),
            "origin": s.origin,
            "decoded": _data_url(png),
            "points": _points(h.current, self.dim),
            "num_latents": h.current.num_latents,
            "num_edits": len(h.edits),
            "can_undo": h.can_undo,
            "can_redo": h.can_redo,
            "decode_ms": decode_ms,
        }

    def load_source(self, sid: uuid.UUID, image: np.ndarray, origin: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            s = self.session(sid)
            z = self.editor.encode(image)
            key = f"s{s.next_source}"
            s.next_source += 1
            # keep every source the record refers to, the undone (redoable) edits included
            used = {e.params.get("source") for e in s.history.edits + s.history.redoable_edits}
            for old in [k for k in s.history.sources if k not in used]:
                del s.history.sources[old], s.source_origins[old]
            s.history.sources[key] = z
            s.source_origins[key] = origin
            png, decode_ms = self.decode_png(z)
            return {
                "source": key,
                "origin": origin,
                "original": _data_url(image_to_png(image)),
                "decoded": _data_url(png),
                "points": _points(z, self.dim),
                "num_latents": z.num_latents,
                "decode_ms": decode_ms,
            }

    def _apply(self, s: _Session, req: EditRequest) -> tuple[Edit, Latents]:
        h = s.history
        edit_dict = req.model_dump(exclude_none=True)
        sizes = {"select": h.current.num_latents}
        if req.source is not None and req.source in h.sources:
            sizes["select_source" if req.op == "swap" else "select"] = h.sources[req.source].num_latents
        for name, num in sizes.items():
            sel = edit_dict.get(name)
            if sel is not None and len(sel) > num:
                raise RequestError(
                    422, f"{name} lists {len(sel)} indices, but the cloud has only {num} latents"
                )
        try:
            edit = Edit.from_dict(edit_dict)
            z = apply_edit(h.current, h.geometry, edit, sources=h.sources)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise RequestError(422, f"edit {req.op!r}: {_message(exc)}") from None
        if z.num_latents > MAX_LATENTS:
            raise RequestError(
                422, f"edit {req.op!r} would leave {z.num_latents} latents; at most {MAX_LATENTS}"
            )
        return edit, z

    def preview(self, sid: uuid.UUID, req: EditRequest) -> dict[str, Any]:
        with self.lock:
            _, z = self._apply(self.session(sid), req)
            png, decode_ms = self.decode_png(z)
            return {"decoded": _data_url(png), "points": _points(z, self.dim), "decode_ms": decode_ms}

    def commit(self, sid: uuid.UUID, req: EditRequest) -> dict[str, Any]:
        with self.lock:
            s = self.session(sid)
            if s.history.can_undo and len(s.history.edits) >= MAX_EDITS:
                raise RequestError(
                    422,
                    f"this session holds {MAX_EDITS} edits, the most it keeps; download edits.json and the latents, "
                    "then open the image again to go on",
                )
            edit, z = self._apply(s, req)
            s.history.push(edit, state=z)
            return self.state(sid, s)

    def step(self, sid: uuid.UUID, direction: Literal["undo", "redo"]) -> dict[str, Any]:
        with self.lock:
            s = self.session(sid)
            try:
                s.history.undo() if direction == "undo" else s.history.redo()
            except IndexError as exc:
                raise RequestError(409, str(exc)) from None
            return self.state(sid, s)

    def meta(self, s: _Session) -> dict[str, Any]:
        return {
            "geometry": self.editor.geometry.name,
            "dataset": self.editor.dataset_name,
            "image_shape": list(self.editor.image_shape),
            "image": s.origin,
            "sources": {k: v for k, v in s.source_origins.items()},
        }

    def latents_file(self, sid: uuid.UUID, fmt: str) -> bytes:
        with self.lock:
            s = self.session(sid)
            z = s.history.current
            arrays = {
                name: getattr(z, name).detach().cpu().numpy() for name in ("poses", "context", "window")
            }
            meta = self.meta(s)
            num_edits = len(s.history.edits)
        if fmt == "npz":
            buf = io.BytesIO()
            np.savez(buf, **arrays, meta=np.array(json.dumps(meta)))
            return buf.getvalue()
        attrs = {"pose_dim": int(arrays["poses"].shape[-1]), "num_edits": num_edits, "meta": meta}
        with tempfile.TemporaryDirectory(prefix="enf-edit-") as tmp:
            path = write_h5(Path(tmp) / "latents.h5", arrays, attrs)
            return path.read_bytes()
