"""``enf edit --serve``: a local web page for editing an image's latent point cloud.

FastAPI (with pydantic request models, so that types, sizes and ranges are checked before any handler runs,
and with per-route body limits for uploads) on uvicorn; the page is plain HTML and JavaScript served from
this package (``static/``), with no build step and nothing fetched from elsewhere.

Sessions live in memory (uuid keys; each client, by peer address, holds at most ``max_sessions_per_client``
and loses only its own least recently used one; a full server drops only sessions idle for ``idle_timeout_s``
and otherwise refuses new ones with 503). Each holds an
:class:`~enf.editing.EditHistory` of the opened image's latents and, optionally, "source" clouds of second
images to paste points from. No request ever names a file on the server: images come from the dataset by
index or as uploaded bytes, and downloads are built in memory. Every decoded image in a response comes with
``decode_ms`` (also the ``X-Decode-Ms`` header): the server's part of an edit's round trip.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from enf.apps.edit.editor import ImageEditor, image_to_png
from enf.apps.edit.sessions import MAX_LATENTS, EditRequest, EditSessions, OpenRequest, RequestError
from enf.editing.record import OPS, dumps_edits

__all__ = ["check_serve_options", "create_app", "host_name", "serve"]


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header without its port, IPv6 brackets removed: ``"[::1]:8000"`` -> ``"::1"``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def check_serve_options(*, port: int, num_threads: int | None, max_upload_bytes: float) -> None:
    """``ValueError`` naming the value for a port outside 1-65535, fewer than 1 thread or a non-finite or
    non-positive upload limit."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {port!r}")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise ValueError(f"--threads must be >= 1, got {num_threads!r}")
    if not (
        isinstance(max_upload_bytes, (int, float))
        and math.isfinite(max_upload_bytes)
        and max_upload_bytes >= 1
    ):
        raise ValueError(
            f"--max-upload-mb must be a finite size of at least 1 byte, got {max_upload_bytes!r} bytes"
        )


log = logging.getLogger(__name__)

MAX_JSON_BYTES = 256 * 1024
_MULTIPART_SLACK = 16 * 1024  # multipart framing around the file in an upload's body
_PAGE_FILES = {"index.html": "text/html", "edit.js": "text/javascript", "edit.css": "text/css"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _describe_errors(errors: Sequence[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _page_file(name: str) -> bytes:
    return resources.files("enf.apps.edit").joinpath("static", name).read_bytes()


def create_app(
    editor: ImageEditor,
    *,
    max_upload_bytes: int = 2_000_000,
    max_sessions: int = 32,
    max_sessions_per_client: int = 8,
    idle_timeout_s: float = 1800.0,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The edit page's app for ``editor``. ``allowed_hosts``: accepted ``Host`` headers (``None``: any; :func:`serve`
    passes the loopback names so that other sites cannot reach the page through DNS rebinding).
    ``max_sessions`` / ``max_sessions_per_client`` / ``idle_timeout_s``: see :class:`EditSessions`."""
    for label, value in (
        ("max_upload_bytes", max_upload_bytes),
        ("max_sessions", max_sessions),
        ("max_sessions_per_client", max_sessions_per_client),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    if isinstance(idle_timeout_s, bool) or not (
        isinstance(idle_timeout_s, (int, float)) and 0 < idle_timeout_s < math.inf
    ):
        raise ValueError(
            f"idle_timeout_s must be a positive finite number of seconds, got {idle_timeout_s!r}"
        )
    if editor.geometry.position_dim != 2:
        raise ValueError(f"the edit page draws planar latents; {editor.geometry.name} positions are not 2-D")
    ed = EditSessions(
        editor,
        max_sessions=max_sessions,
        max_sessions_per_client=max_sessions_per_client,
        idle_timeout_s=float(idle_timeout_s),
    )
    pages = {name: _page_file(name) for name in _PAGE_FILES}
    app = FastAPI(title="enf edit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.editing = ed
    json_route = {"max_body_size": MAX_JSON_BYTES}  # per route: these answer in JSON
    upload_route = {
        "max_body_size": max_upload_bytes + _MULTIPART_SLACK,
        "form_limits": {"max_fields": 0, "max_files": 1},
    }
    hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}

    @app.middleware("http")
    async def same_site_only(request: Request, call_next):
        """The ``Host`` must be one of ``allowed_hosts`` (DNS rebinding), and a state-changing request that
        names an ``Origin`` (every browser does on a cross-site POST) must come from this page's own origin:
        another site cannot upload, edit or evict sessions through the user's browser."""
        host = request.headers.get("host", "")
        if hosts is not None and host_name(host) not in hosts:
            return JSONResponse({"detail": f"Host {host!r} is not served here"}, status_code=400)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            site = request.headers.get("sec-fetch-site")
            if (origin is not None and origin != f"{request.url.scheme}://{host}") or site == "cross-site":
                return JSONResponse(
                    {"detail": f"cross-origin request from {origin or site!r} refused; use the page itself"},
                    status_code=403,
                )
        return await call_next(request)

    def too_large_message(path: str, limit: int | None = None) -> str:
        if path.endswith("/upload"):
            return f"the upload is larger than the limit of {max_upload_bytes} bytes; choose a smaller image"
        return f"the request body is larger than the limit of {limit or MAX_JSON_BYTES} bytes"

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        # a declared oversize body is refused here, in JSON (Starlette's route limits would answer in plain
        # text); bodies that do not declare their length are cut off by the route limits (too_large below)
        limit = upload_route["max_body_size"] if request.url.path.endswith("/upload") else MAX_JSON_BYTES
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            response = JSONResponse({"detail": too_large_message(request.url.path)}, status_code=413)
        else:
            response = await call_next(request)
        ms = (time.perf_counter() - t0) * 1e3
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        level = logging.DEBUG if request.url.path.endswith("/preview") else logging.INFO
        log.log(level, "%s %s -> %d in %.1f ms", request.method, request.url.path, response.status_code, ms)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": _describe_errors(errors), "errors": errors}, status_code=422)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(413)
    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        detail = getattr(exc, "detail", "")
        if detail in ("Content Too Large", "", None):
            detail = too_large_message(request.url.path, request.scope.get(MAX_BODY_SIZE_SCOPE_KEY))
        return JSONResponse({"detail": detail}, status_code=413)

    def with_timing(out: dict[str, Any]) -> JSONResponse:
        return JSONResponse(out, headers={"X-Decode-Ms": f"{out.get('decode_ms', 0.0):.2f}"})

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, too_large_message("/upload"))
        if not data:
            raise HTTPException(422, "the upload is empty; choose an image file (PNG, JPEG, ...)")
        return data

    def page(name: str) -> Response:
        return Response(pages[name], media_type=_PAGE_FILES[name], headers={"Content-Security-Policy": _CSP})

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return page("index.html")

    @app.get("/edit.js", include_in_schema=False)
    def script() -> Response:
        return page("edit.js")

    @app.get("/edit.css", include_in_schema=False)
    def style() -> Response:
        return page("edit.css")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "geometry": editor.geometry.name,
            "dataset": editor.dataset_name,
            "image_shape": list(editor.image_shape),
            "dataset_size": {split: editor.dataset_size(split) for split in ("train", "test")},
            "num_latents": int(editor.module.fitter.num_latents),
            "max_latents": MAX_LATENTS,
            "max_upload_bytes": max_upload_bytes,
            "ops": {op: sorted(params) for op, params in OPS.items()},
        }

    def client_of(request: Request) -> str:
        return request.client.host if request.client is not None else "unknown"

    @app.post("/api/sessions", **json_route)
    def open_dataset(req: OpenRequest, request: Request) -> JSONResponse:
        return with_timing(ed.open(*ed.dataset_image(req), client=client_of(request)))

    @app.post("/api/sessions/upload", **upload_route)
    async def open_upload(request: Request, file: Annotated[UploadFile, File()]) -> JSONResponse:
        image, origin = await run_in_threadpool(ed.uploaded_image, await read_upload(file))
        return with_timing(await run_in_threadpool(ed.open, image, origin, client=client_of(request)))

    @app.get("/api/sessions/{sid}")
    def get_state(sid: uuid.UUID) -> JSONResponse:
        with ed.lock:
            return with_timing(ed.state(sid, ed.session(sid)))

    @app.post("/api/sessions/{sid}/source", **json_route)
    def source_dataset(sid: uuid.UUID, req: OpenRequest) -> JSONResponse:
        ed.session(sid, touch=False)  # before the image is read
        return with_timing(ed.load_source(sid, *ed.dataset_image(req)))

    @app.post("/api/sessions/{sid}/source/upload", **upload_route)
    async def source_upload(sid: uuid.UUID, file: Annotated[UploadFile, File()]) -> JSONResponse:
        ed.session(sid, touch=False)  # before the upload is read
        image, origin = await run_in_threadpool(ed.uploaded_image, await read_upload(file))
        return with_timing(await run_in_threadpool(ed.load_source, sid, image, origin))

    @app.post("/api/sessions/{sid}/preview", **json_route)
    def preview(sid: uuid.UUID, req: EditRequest) -> JSONResponse:
        return with_timing(ed.preview(sid, req))

    @app.post("/api/sessions/{sid}/edits", **json_route)
    def commit(sid: uuid.UUID, req: EditRequest) -> JSONResponse:
        return with_timing(ed.commit(sid, req))

    @app.post("/api/sessions/{sid}/undo", **json_route)
    def undo(sid: uuid.UUID) -> JSONResponse:
        return with_timing(ed.step(sid, "undo"))

    @app.post("/api/sessions/{sid}/redo", **json_route)
    def redo(sid: uuid.UUID) -> JSONResponse:
        return with_timing(ed.step(sid, "redo"))

    def attachment(data: bytes, media_type: str, name: str) -> Response:
        return Response(
            data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @app.get("/api/sessions/{sid}/image.png")
    def download_png(sid: uuid.UUID, scale: Annotated[int, Query(ge=1, le=16)] = 1) -> Response:
        with ed.lock:
            image = editor.decode(ed.session(sid).history.current)[0]
        return attachment(image_to_png(image, scale=scale), "image/png", "edited.png")

    @app.get("/api/sessions/{sid}/latents")
    def download_latents(sid: uuid.UUID, format: Literal["h5", "npz"] = "h5") -> Response:  # noqa: A002
        media = "application/x-hdf5" if format == "h5" else "application/octet-stream"
        return attachment(ed.latents_file(sid, format), media, f"latents.{format}")

    @app.get("/api/sessions/{sid}/edits.json")
    def download_edits(sid: uuid.UUID) -> Response:
        with ed.lock:
            s = ed.session(sid)
            text = dumps_edits(s.history.edits, meta=ed.meta(s))
        return attachment(text.encode(), "application/json", "edits.json")

    return app


def serve(
    editor: ImageEditor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_threads: int | None = None,
    **kwargs: Any,
) -> None:
    """Run the edit page with uvicorn on ``host:port`` until interrupted (``kwargs`` go to :func:`create_app`).

    ``num_threads``: torch's intra-op threads for this process (``None``: leave torch's default, every core).
    Measured for a 64x64 decode with 64 latents on 2 cores: idle, 35 ms with two threads and 62 ms with one;
    with both cores busy with other work, ~40 ms with one thread and ~430 ms with two (``--threads 1`` then).
    """
    import torch
    import uvicorn

    check_serve_options(
        port=port, num_threads=num_threads, max_upload_bytes=kwargs.get("max_upload_bytes", 1)
    )
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback:
        log.warning(
            "serving the edit page on %s: anyone who can reach this address can use it (no login)", host
        )
    if loopback:
        kwargs.setdefault("allowed_hosts", ["127.0.0.1", "localhost", "::1"])
    app = create_app(editor, **kwargs)
    shown = f"[{host}]" if ":" in host else host
    log.info("enf edit page: http://%s:%d/ (Ctrl+C to stop)", shown, port)
    # idle keep-alive connections close after 5 s; at most 64 connections at once (others get 503)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5, limit_concurrency=64)
