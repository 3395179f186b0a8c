"""Edit round trip of the edit page: one dragged point -> edit applied -> image decoded -> PNG -> HTTP response.

    python experiments/benchmarks/edit_roundtrip.py --ckpt runs/natural64/version_0/checkpoints/last.ckpt
    python experiments/benchmarks/edit_roundtrip.py            # an untrained model of the same size

Times (median and 90th percentile over ``--repeats`` requests, after warm-up), at the issue's size by
default (64x64 RGB, 64 latents; without ``--ckpt`` the decoder has the natural-crop config's widths:
context 32, hidden 128, 2 heads, k-nearest 9):

* ``apply_ms``: ``enf.editing.apply_edit`` of a ``translate`` of one latent;
* ``decode_ms``: ``ImageEditor.decode`` of the edited cloud on the 64x64 grid;
* ``png_ms``: ``image_to_png`` of the decoded image (enlarged as the page shows it);
* ``http_ms``: a ``POST /api/sessions/<id>/preview`` to a real uvicorn server on 127.0.0.1, request sent to
  JSON (with the base64 PNG) received, measured in the client.

Also the peak resident memory of the process. One run per ``--threads`` value (``torch.set_num_threads``;
the server's request threads use the same intra-op pool). Writes JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import threading
import time
import urllib.request

import numpy as np
import torch


def synthetic_editor(size: int, num_latents: int):
    import enf
    from enf.apps.edit import ImageEditor
    from enf.data.field import FieldSpec
    from enf.fitting import MetaSGD
    from enf.training import FieldFittingModule

    torch.manual_seed(0)
    decoder = enf.EquivariantNeuralField(
        geometry="translation2d", num_out=3, context_dim=32, hidden_dim=128, num_heads=2, k_nearest=9
    )
    fitter = MetaSGD(num_latents=num_latents, num_inner_steps=3)
    spec = FieldSpec(kind="image", coord_dim=2, num_channels=3, grid_shape=(size, size), data_range=1.0)

    class Data:  # random images, only for opening a session
        def dataset(self, split):
            from enf.data.images.base import ArrayImageDataset

            images = np.random.default_rng(0).random((4, size, size, 3), dtype=np.float32)
            return ArrayImageDataset(images, name="random", split=split)

    module = FieldFittingModule(decoder=decoder, fitter=fitter, field=spec.to_dict())
    return ImageEditor(module, datamodule=Data())


def timed(fn, repeats: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt", default=None, help="an image fit checkpoint (default: untrained, same size)"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-latents", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, one run each")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = [run(args, threads) for threads in args.threads]
    print(json.dumps(results, indent=2))
    if args.out:
        from enf.io import write_json_atomic

        write_json_atomic(args.out, results)


def run(args, threads: int) -> dict:
    torch.set_num_threads(threads)
    import uvicorn

    from enf import editing
    from enf.apps.edit.server import create_app

    if args.ckpt:
        editor = editing.ImageEditor.from_checkpoint(args.ckpt)
    else:
        editor = synthetic_editor(args.size, args.num_latents)
    z = editor.encode(editor.dataset_image(0))
    edit = editing.Edit("translate", {"offset": [0.05, 0.0], "select": [z.num_latents // 2]})
    result = {
        "image_shape": list(editor.image_shape),
        "num_latents": z.num_latents,
        "threads": threads,
        "checkpoint": args.ckpt,
    }
    edited = editing.apply_edit(z, editor.geometry, edit)
    decoded = editor.decode(edited)[0]
    result["apply_ms"], _ = timed(lambda: editing.apply_edit(z, editor.geometry, edit), args.repeats)
    result["decode_ms"], result["decode_p90_ms"] = timed(lambda: editor.decode(edited), args.repeats)
    result["png_ms"], _ = timed(lambda: editing.image_to_png(decoded, scale=4), args.repeats)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(editor), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/api"
    session = post(f"{base}/sessions", {"split": "test", "index": 0})
    sid = session.get("session") or session.get("sid") or session.get("id")
    body = edit.to_dict()
    result["http_ms"], result["http_p90_ms"] = timed(
        lambda: post(f"{base}/sessions/{sid}/preview", body), args.repeats
    )
    server.should_exit = True
    thread.join(timeout=10)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    main()
