"""A screenshot of the edit page on a trained model, for the README: open an image, drag one latent point.

    python experiments/editing_screenshot.py --ckpt runs/natural64/version_0/checkpoints/last.ckpt \\
        --index 5 --out figures/edit_page.png

Serves ``enf edit --serve``'s app on a free loopback port, drives the distribution's Chromium
(``/usr/bin/chromium``) with playwright, drags the latent nearest the image centre by ``--drag`` page
pixels and saves the page. Prints the page's measured round trips.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--drag", type=float, nargs=2, default=[60.0, -30.0], metavar=("DX", "DY"))
    parser.add_argument("--out", default="figures/edit_page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = parser.parse_args()
    import torch
    import uvicorn
    from playwright.sync_api import sync_playwright

    from enf.apps.edit import ImageEditor
    from enf.apps.edit.server import create_app

    torch.set_num_threads(args.threads)
    editor = ImageEditor.from_checkpoint(args.ckpt)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(editor), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#overlay circle[data-index]")  # the page opens test image 0 by itself
        page.fill("#index", str(args.index))
        with page.expect_response(lambda r: r.url.endswith("/api/sessions") and r.request.method == "POST"):
            page.click("#open")
        page.wait_for_timeout(500)  # the new image and its points are drawn
        circles = page.locator("#overlay circle[data-index]")
        boxes = [circles.nth(k).bounding_box() for k in range(circles.count())]
        svg = page.locator("#overlay").bounding_box()
        cx, cy = svg["x"] + svg["width"] / 2, svg["y"] + svg["height"] / 2
        box = min(
            boxes, key=lambda b: (b["x"] + b["width"] / 2 - cx) ** 2 + (b["y"] + b["height"] / 2 - cy) ** 2
        )
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(x + args.drag[0] * k / 10, y + args.drag[1] * k / 10)
            time.sleep(0.05)
        page.mouse.up()
        page.wait_for_selector("#status[data-num-edits='1']")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=False)
        status = page.locator("#status")
        print(status.text_content())
        for kind in ("open", "preview", "edit"):
            print(
                f"{kind} round trip, median in the page: {status.get_attribute(f'data-{kind}-median-ms')} ms"
            )
        browser.close()
    server.should_exit = True
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
