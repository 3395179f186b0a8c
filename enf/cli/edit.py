"""``enf edit``: edit an image through its latent points, from the command line or a local web page.

    enf edit --ckpt runs/mnist/version_0/checkpoints/last.ckpt --index 3 --select radius:0,0.3,0.35 \\
        --translate 0.3,0 --out edits/moved
    enf edit --ckpt ... --image photo.png --edits script.json --out edits/scripted
    enf edit --ckpt ... --serve [--port 8000]          # then open http://127.0.0.1:8000/

Flags apply in this order to the latents selected by ``--select`` on the encoded image: ``--copy-context``,
``--scale``, ``--rotate``, ``--translate``, ``--duplicate``, ``--paste``/``--swap``/``--interpolate``
(with a second image, ``--source-index``/``--source-image``), ``--delete``. ``--out`` receives
``before.png``/``after.png``/``edit.png`` (latent points drawn), ``latents.h5`` (``original_*`` and
``edited_*`` poses/context/window) and ``edits.json`` (the edit record, replayable with ``--edits``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from enf import __version__
from enf.apps.edit.editor import ImageEditor, image_to_png
from enf.cli.text import plain_text
from enf.editing.record import Edit, load_edit_record, replay, save_edits
from enf.editing.select import select_box, select_radius, selected_indices, selection_mask
from enf.latents import Latents

__all__ = ["edit_main", "parse_selection"]

log = logging.getLogger(__name__)


def _floats(text: str, count: int, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{flag} needs {count} comma-separated finite numbers, got {text!r}")
    return values


def parse_selection(spec: str, z: Latents, geometry) -> torch.Tensor:
    """``all``, ``3,5,7`` (indices), ``radius:x,y,r`` or ``box:x0,y0,x1,y1`` -> mask ``[B, L]``."""
    spec = spec.strip()
    if spec == "all":
        return selection_mask(z, None)
    if spec.startswith("radius:"):
        x, y, r = _floats(spec[7:], 3, "--select radius:")
        return select_radius(z, geometry, center=[x, y], radius=r)
    if spec.startswith("box:"):
        x0, y0, x1, y1 = _floats(spec[4:], 4, "--select box:")
        return select_box(z, geometry, low=[min(x0, x1), min(y0, y1)], high=[max(x0, x1), max(y0, y1)])
    try:
        indices = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(
            f"--select {spec!r}: use all, indices like 3,5,7, radius:x,y,r or box:x0,y0,x1,y1"
        ) from None
    return selection_mask(z, indices)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="enf edit", description=plain_text(__doc__), allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--ckpt", required=True, help="checkpoint of an `enf fit` image run")
    p.add_argument("--config", default=None, help="the run's config.yaml (default: next to checkpoints/)")
    p.add_argument("--root", default=None, help="override the dataset root of the run")
    p.add_argument(
        "--num-steps", type=int, default=None, help="inner steps of the encoding (default: as trained)"
    )
    src = p.add_argument_group("image (one of)")
    src.add_argument("--index", type=int, default=None, help="image of the run's dataset")
    src.add_argument("--split", default="test", choices=["train", "test"])
    src.add_argument("--image", default=None, help="any image file (centre-cropped and resized to the model)")
    ed = p.add_argument_group("edits (an --edits script, or flags)")
    ed.add_argument("--edits", default=None, help="JSON edit script (as written to edits.json)")
    ed.add_argument("--select", default="all", help="all | 3,5,7 | radius:x,y,r | box:x0,y0,x1,y1")
    ed.add_argument("--translate", default=None, metavar="DX,DY")
    ed.add_argument("--rotate", type=float, default=None, metavar="DEG", help="counter-clockwise degrees")
    ed.add_argument(
        "--center", default=None, metavar="X,Y", help="centre of --rotate/--scale (default: centroid)"
    )
    ed.add_argument("--scale", type=float, default=None)
    ed.add_argument("--duplicate", default=None, metavar="DX,DY", help="append moved copies of the selection")
    ed.add_argument("--copy-context", type=int, default=None, metavar="SRC", help="context of latent SRC")
    ed.add_argument("--delete", action="store_true", help="delete the selection (applied last)")
    ed.add_argument("--source-index", type=int, default=None, help="second image (dataset index)")
    ed.add_argument("--source-image", default=None, help="second image (file)")
    ed.add_argument("--source-select", default="all", help="selection on the second image")
    ed.add_argument("--paste", default=None, metavar="DX,DY", help="paste the source selection, moved")
    ed.add_argument("--swap", action="store_true", help="swap --select with the source's --source-select")
    ed.add_argument("--interpolate", type=float, default=None, metavar="T", help="towards the source")
    p.add_argument("--out", default=None, help="output folder (required unless --serve)")
    srv = p.add_argument_group("web page")
    srv.add_argument("--serve", action="store_true", help="serve the edit page instead")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--max-upload-mb", type=float, default=2.0)
    srv.add_argument("--max-sessions", type=int, default=32, help="sessions held in memory at once")
    srv.add_argument("--max-sessions-per-client", type=int, default=8,
                     help="sessions of one peer address; its oldest goes first, never another client's")  # fmt: skip
    srv.add_argument("--idle-minutes", type=float, default=30.0,
                     help="a full server drops only sessions unused this long (else it refuses new ones)")  # fmt: skip
    srv.add_argument("--threads", type=int, default=None,
                     help="torch threads of the server (default: all cores; 1 on a busy machine)")  # fmt: skip
    return p


def _flag_edits(args, z: Latents, geometry, source: Latents | None) -> list[Edit]:
    sel = selected_indices(parse_selection(args.select, z, geometry))
    if not sel:
        raise ValueError(f"--select {args.select!r} selects no latent")
    center = _floats(args.center, 2, "--center") if args.center else None
    edits: list[Edit] = []
    if args.copy_context is not None:
        edits.append(Edit("copy_context", {"source_index": args.copy_context, "select": sel}))
    if args.scale is not None:
        edits.append(Edit("scale", {"factor": args.scale, "center": center, "select": sel}))
    if args.rotate is not None:
        edits.append(Edit("rotate", {"angle": math.radians(args.rotate), "center": center, "select": sel}))
    if args.translate is not None:
        edits.append(Edit("translate", {"offset": _floats(args.translate, 2, "--translate"), "select": sel}))
    if args.duplicate is not None:
        edits.append(Edit("duplicate", {"select": sel, "offset": _floats(args.duplicate, 2, "--duplicate")}))
    wants_source = args.paste is not None or args.swap or args.interpolate is not None
    if wants_source and source is None:
        raise ValueError("--paste/--swap/--interpolate need a second image: --source-index or --source-image")
    if source is not None:
        src_sel = selected_indices(parse_selection(args.source_select, source, geometry))
        if args.paste is not None:
            offset = _floats(args.paste, 2, "--paste")
            edits.append(Edit("paste", {"source": "source", "select": src_sel, "offset": offset}))
        if args.swap:
            edits.append(Edit("swap", {"source": "source", "select": sel, "select_source": src_sel}))
        if args.interpolate is not None:
            edits.append(Edit("interpolate", {"source": "source", "t": args.interpolate}))
    if args.delete:
        edits.append(Edit("delete", {"select": sel}))
    if not edits:
        raise ValueError(
            "no edit given: pass --edits FILE or at least one of --translate, --rotate, --scale, ..."
        )
    return edits


def _record_sources(editor: ImageEditor, edits: list[Edit], meta: dict, given: dict) -> dict[str, Latents]:
    """Encode the second images that a replayed record's ``source`` keys name (the edit page writes where each
    came from to ``meta["sources"]``: a dataset split and index); an upload cannot be found again."""
    out = {}
    origins = meta.get("sources") or {}
    for key in sorted({e.params["source"] for e in edits if e.params.get("source")} - set(given)):
        origin = origins.get(key) if isinstance(origins, dict) else None
        if (not isinstance(origin, dict) or origin.get("kind") != "dataset") and "source" in given:
            out[key] = given["source"]  # --source-index / --source-image stand in for it
            continue
        if not isinstance(origin, dict) or origin.get("kind") != "dataset":
            raise ValueError(
                f"the edit script uses the second image {key!r}, which it does not name as a dataset image "
                "(an upload?); give it with --source-index N or --source-image FILE"
            )
        out[key] = editor.encode(editor.dataset_image(origin.get("index"), split=origin.get("split", "test")))
    return out


def _load_image(
    editor: ImageEditor, index: int | None, path: str | None, split: str, what: str
) -> np.ndarray:
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{what} file {file} does not exist")
        return editor.image_from_bytes(file.read_bytes())
    return editor.dataset_image(index, split=split)


def first_selection(edits: list[Edit], z: Latents) -> torch.Tensor | None:
    """The latents of the original cloud ``z`` that the first edit selects, as a mask ``[1, L]``
    (:func:`~enf.editing.selection_mask`); ``None`` when it selects every latent or indexes another cloud
    (``paste`` selects in the source)."""
    if not edits or edits[0].op == "paste" or edits[0].params.get("select") is None:
        return None
    return selection_mask(z, edits[0].params["select"])


def _write_outputs(out: Path, editor: ImageEditor, images: dict, latents: dict, edits, meta) -> None:
    from enf.data.hdf5 import write_h5
    from enf.plotting import save_figure
    from enf.plotting.edits import plot_edit

    geom = editor.geometry
    out.mkdir(parents=True, exist_ok=True)
    # the first edit's selection in orange, on every panel whose cloud still has the original's latents
    sel = first_selection(edits, latents["original"])
    save_figure(plot_edit([("original", images["original"], None), ("reconstruction", images["before"],
                latents["original"])], geom, selected=sel), out / "before.png")  # fmt: skip
    save_figure(
        plot_edit([("edited", images["after"], latents["edited"])], geom, selected=sel), out / "after.png"
    )
    panels = [("original", images["original"], None), ("reconstruction", images["before"], latents["original"]),
              ("edited", images["after"], latents["edited"]), ("difference", images["after"] - images["before"], None)]  # fmt: skip
    save_figure(plot_edit(panels, geom, selected=sel,
                          title=f"{editor.dataset_name}: {', '.join(e.op for e in edits)}"), out / "edit.png")  # fmt: skip
    (out / "edited.png").write_bytes(image_to_png(images["after"]))
    arrays = {f"{name}_{field}": getattr(z, field)[0].detach().cpu().numpy()
              for name, z in latents.items() for field in ("poses", "context", "window")}  # fmt: skip
    write_h5(out / "latents.h5", arrays, {"geometry": geom.name, "enf_version": __version__, **meta})
    save_edits(out / "edits.json", edits, meta=meta)


def edit_main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.num_steps is not None and args.num_steps < 0:
            raise ValueError(f"--num-steps must be >= 0, got {args.num_steps}")
        if not args.serve:
            if args.out is None:
                raise ValueError("--out FOLDER is required (or --serve for the web page)")
            if (args.index is None) == (args.image is None):
                raise ValueError("give exactly one image: --index N (dataset) or --image FILE")
            if args.edits is not None and any(
                v is not None for v in (args.translate, args.rotate, args.scale, args.duplicate, args.paste)
            ):
                raise ValueError("--edits FILE replaces the edit flags; give one or the other")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
            raise ValueError(f"--max-upload-mb must be a finite number > 0, got {args.max_upload_mb}")
        if not 1 <= args.port <= 65535:
            raise ValueError(f"--port must be in 1..65535, got {args.port}")
        for flag, value in (("--max-sessions", args.max_sessions), ("--max-sessions-per-client",
                                                                    args.max_sessions_per_client)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if not (math.isfinite(args.idle_minutes) and args.idle_minutes > 0):
            raise ValueError(f"--idle-minutes must be a finite number > 0, got {args.idle_minutes}")
        editor = ImageEditor.from_checkpoint(
            args.ckpt, config=args.config, root=args.root, num_steps=args.num_steps
        )
        if args.serve:
            try:
                from enf.apps.edit.server import serve
            except ModuleNotFoundError as exc:
                raise ValueError(f"the edit page needs the 'edit' extra ({exc.name} is missing): "
                                 'pip install -e ".[edit]"') from None  # fmt: skip

            serve(editor, host=args.host, port=args.port, max_upload_bytes=int(args.max_upload_mb * 1e6),
                  num_threads=args.threads, max_sessions=args.max_sessions,
                  max_sessions_per_client=args.max_sessions_per_client,
                  idle_timeout_s=60.0 * args.idle_minutes)  # fmt: skip
            return
        t0 = time.perf_counter()
        original = _load_image(editor, args.index, args.image, args.split, "--image")
        z = editor.encode(original)
        sources: dict[str, Latents] = {}
        if args.source_index is not None or args.source_image is not None:
            sources["source"] = editor.encode(
                _load_image(editor, args.source_index, args.source_image, args.split, "--source-image")
            )
        if args.edits:
            edits, record_meta = load_edit_record(args.edits)
            sources.update(_record_sources(editor, edits, record_meta, sources))
        else:
            edits = _flag_edits(args, z, editor.geometry, sources.get("source"))
        edited = replay(z, editor.geometry, edits, sources=sources)
    except (FileNotFoundError, ValueError, IndexError, TypeError) as exc:
        raise SystemExit(f"enf edit: {exc}") from None
    before, after = editor.decode(z)[0], editor.decode(edited)[0]
    mse = float(np.mean((before - original) ** 2))
    meta = {"checkpoint": str(args.ckpt), "image": args.image or f"{args.split}[{args.index}]",
            "num_steps": -1 if args.num_steps is None else args.num_steps, "reconstruction_mse": mse}  # fmt: skip
    out = Path(args.out)
    _write_outputs(out, editor, {"original": original, "before": before, "after": after},
                   {"original": z, "edited": edited}, edits, meta)  # fmt: skip
    log.info(
        "%d edit(s) on %s (reconstruction MSE %.3g, %d -> %d latents) in %.2f s -> %s",
        len(edits), meta["image"], mse, z.num_latents, edited.num_latents, time.perf_counter() - t0, out,
    )  # fmt: skip
