"""The edit page in a real headless browser: the distribution's Chromium driven by Playwright.

The server runs in a thread (uvicorn, a free port) over an untrained 64x64 model with 64 latents. Skipped where
``/usr/bin/chromium`` (Debian/Ubuntu package ``chromium``) or the ``playwright`` package is missing; Playwright's
own browser download is never used. Screenshots go to the test's ``tmp_path`` and, if ``ENF_SCREENSHOT_DIR`` is
set, there too.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
from _editing_utils import make_editor  # noqa: E402

from enf.apps.edit.server import create_app  # noqa: E402

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - depends on the environment
    sync_api = None

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIZE, NUM_LATENTS, DRAG_PIXELS = 64, 64, 10
if sync_api is None:
    MISSING = (
        "the playwright package is not installed (pip install playwright; its browser download is not needed)"
    )
elif CHROMIUM is None:
    MISSING = "no Chromium at /usr/bin/chromium or on PATH (apt-get install chromium)"
else:
    MISSING = None
REQUIRED = os.environ.get("ENF_REQUIRE_BROWSER", "") not in ("", "0")  # CI: a missing browser fails

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=str(MISSING)),
]


@pytest.fixture(scope="module")
def server_url():
    app = create_app(make_editor(size=SIZE, num_latents=NUM_LATENTS, visible=True))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="enf-edit-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the edit server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server_url):
    if MISSING:
        pytest.fail(f"ENF_REQUIRE_BROWSER is set, but {MISSING}")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(server_url)
            # the page's CSP forbids eval, so waits use locators rather than wait_for_function
            sync_api.expect(page.locator("#overlay .point")).to_have_count(NUM_LATENTS)
            page.wait_for_selector('#status[data-kind="open"]')
            yield page
        finally:
            browser.close()
    # the deliberate bad requests are logged by Chromium as failed loads; anything else is a page bug
    errors = [e for e in errors if "the server responded with a status of 4" not in e]
    assert not errors, errors


def save_screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("ENF_SCREENSHOT_DIR"):
        out = Path(os.environ["ENF_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / name), full_page=True)


def edited_pixels(page) -> np.ndarray:
    src = page.evaluate("document.getElementById('edited').getAttribute('src')")
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert image.size == (SIZE, SIZE)
    return np.asarray(image, dtype=np.float64) / 255.0


def point_xy(page, index: int) -> tuple[float, float]:
    """The latent's position (x, y) from its circle's centre in the overlay's pixel units."""
    circle = page.locator(f'#overlay .point[data-index="{index}"]')
    cx, cy = float(circle.get_attribute("cx")), float(circle.get_attribute("cy"))
    return (cx - 0.5) * 2 / (SIZE - 1) - 1, 1 - (cy - 0.5) * 2 / (SIZE - 1)


def status(page) -> dict[str, str]:
    return page.evaluate("({...document.getElementById('status').dataset})")


def distance_map(xy: tuple[float, float]) -> np.ndarray:
    ys, xs = np.meshgrid(np.linspace(1, -1, SIZE), np.linspace(-1, 1, SIZE), indexing="ij")
    return np.hypot(xs - xy[0], ys - xy[1])


def test_drag_a_latent_changes_the_image_only_near_it_and_undo_restores_it(page, tmp_path):
    save_screenshot(page, tmp_path, "edit_page_open.png")
    hint = page.locator("#hint").bounding_box()
    assert hint["y"] + hint["height"] < 720  # the usage hint is above the fold of a 1280 x 720 screen
    before = edited_pixels(page)
    index = 27  # an inner latent of the 8 x 8 grid
    old = point_xy(page, index)
    circle = page.locator(f'#overlay .point[data-index="{index}"]')
    box = circle.bounding_box()
    scale = page.locator("#overlay").bounding_box()["width"] / SIZE  # screen pixels per image pixel
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    # negative control: pressing and releasing a point without moving selects it and changes nothing
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector(f'#overlay .point.selected[data-index="{index}"]')
    page.wait_for_timeout(300)
    assert status(page)["numEdits"] == "0" and np.array_equal(edited_pixels(page), before)

    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):  # decoded while dragging: wait for each preview, to time them one by one
        page.mouse.move(x0 + DRAG_PIXELS * scale * k / 10, y0)
        page.wait_for_selector('#status[data-kind="preview"]')
        page.wait_for_timeout(120)
    preview_ms = float(status(page)["previewMedianMs"])
    page.mouse.up()
    page.wait_for_selector('#status[data-kind="edit"][data-num-edits="1"]')
    commit_ms = float(status(page)["roundtripMs"])
    save_screenshot(page, tmp_path, "edit_page_dragged.png")
    after = edited_pixels(page)
    new = point_xy(page, index)
    assert new[0] - old[0] == pytest.approx(DRAG_PIXELS * 2 / (SIZE - 1), abs=0.02)
    assert new[1] == pytest.approx(old[1], abs=0.02)

    diff = np.abs(after - before)
    d_old, d_new = distance_map(old), distance_map(new)
    near = (d_old < 0.15) | (d_new < 0.15)
    far = (d_old > 0.5) & (d_new > 0.5)
    near_change, far_change = diff[near].mean(), diff[far].mean()
    print(
        f"\nmean |change| near the point {near_change:.4f}, far from it {far_change:.2e} (max {diff[far].max():.4f})"
    )
    assert near_change > 5 / 255, "the image did not change where the point moved"
    assert near_change > 50 * far_change
    assert diff[far].max() <= 1 / 255, "the image changed far from the moved point"

    page.keyboard.press("Control+z")
    page.wait_for_selector('#status[data-kind="undo"][data-num-edits="0"]')
    undo_ms = float(status(page)["roundtripMs"])
    assert np.array_equal(edited_pixels(page), before), "undo did not restore the decoded image"
    assert point_xy(page, index) == pytest.approx(old, abs=1e-6)
    page.locator("#redo").click()
    page.wait_for_selector('#status[data-kind="redo"][data-num-edits="1"]')
    assert np.array_equal(edited_pixels(page), after)
    print(
        f"browser round trips 64x64/64 latents (request -> decoded image loaded): preview (median) {preview_ms:.0f} ms, "
        f"commit {commit_ms:.0f} ms, undo {undo_ms:.0f} ms (target < 100 ms)"
    )
    assert page.locator("#error").is_hidden()


def test_box_select_rotate_duplicate_delete_and_errors(page, tmp_path):
    overlay = page.locator("#overlay").bounding_box()
    scale = overlay["width"] / SIZE
    # a box over the upper-left quarter of the image selects the 4 x 4 latents there
    page.mouse.move(overlay["x"] + 1 * scale, overlay["y"] + 1 * scale)
    page.mouse.down()
    page.mouse.move(overlay["x"] + 31 * scale, overlay["y"] + 31 * scale, steps=6)
    page.mouse.up()
    assert page.locator("#overlay .point.selected").count() == 16
    # turn the selection by dragging its handle (above or below the box) round to the box's right side
    selected = [
        int(i)
        for i in page.locator("#overlay .point.selected").evaluate_all("cs => cs.map(c => c.dataset.index)")
    ]
    start = np.array([point_xy(page, i) for i in selected])
    frame = page.locator("#selection-frame").bounding_box()
    handle = page.locator("#rotate-handle").bounding_box()
    cx, cy = frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2
    hx, hy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(cx + frame["width"] * 0.5, (hy + cy) / 2, steps=4)
    page.mouse.move(cx + frame["width"] * 0.7, cy, steps=4)
    page.mouse.up()
    page.wait_for_selector('#status[data-kind="edit"][data-num-edits="1"]')
    angle = -np.arctan2(-(hy - cy), hx - cx)  # from the handle's direction to +x, counter-clockwise with y up
    assert abs(abs(angle) - np.pi / 2) < 0.05
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = start.mean(0)
    turned = np.array([point_xy(page, i) for i in selected])
    np.testing.assert_allclose(turned - centre, (start - centre) @ rot.T, atol=0.03)
    page.evaluate(
        "(() => { const r = document.getElementById('rotate-angle'); r.value = '45';"
        " r.dispatchEvent(new Event('input')); r.dispatchEvent(new Event('change')); })()"
    )
    page.wait_for_selector('#status[data-kind="edit"][data-num-edits="2"]')
    save_screenshot(page, tmp_path, "edit_page_rotated.png")
    page.locator("#duplicate").click()
    page.wait_for_selector('#status[data-num-edits="3"]')
    assert page.locator("#overlay .point").count() == NUM_LATENTS + 16
    page.locator("#delete").click()  # the copies are selected after duplicating
    page.wait_for_selector('#status[data-num-edits="4"]')
    assert page.locator("#overlay .point").count() == NUM_LATENTS
    page.locator("#source-open").click()
    sync_api.expect(page.locator("#source-overlay .point")).to_have_count(NUM_LATENTS)
    page.locator('#source-overlay .point[data-index="0"]').click()
    page.locator("#paste").click()
    page.wait_for_selector('#status[data-num-edits="5"]')
    assert page.locator("#overlay .point").count() == NUM_LATENTS + 1
    # a server error is shown in the page, and the page keeps working
    page.fill("#index", "999")
    page.locator("#open").click()
    page.wait_for_selector("#error:not([hidden])")
    assert "out of range" in page.locator("#error").inner_text()
    save_screenshot(page, tmp_path, "edit_page_error.png")
    assert status(page)["numEdits"] == "5"
    # opening an uploaded file starts a new session
    png = io.BytesIO()
    Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (80, 1))).save(png, format="PNG")
    page.set_input_files(
        "#upload", files=[{"name": "ramp.png", "mimeType": "image/png", "buffer": png.getvalue()}]
    )
    page.wait_for_selector('#status[data-kind="open"][data-num-edits="0"]')
    assert page.locator("#error").is_hidden() and page.locator("#overlay .point").count() == NUM_LATENTS
