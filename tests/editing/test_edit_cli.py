"""``enf edit`` end to end on a tiny se2 MNIST fit: outputs, a whole-cloud shift that moves the decoded image by
exactly whole pixels, replay of the written edit record, image files as input, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli_utils import MNIST, TINY
from PIL import Image

import enf
from enf.apps.edit import ImageEditor
from enf.cli import main
from enf.data import read_h5
from enf.editing import Edit, replay


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edit_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(["fit", "--config", MNIST, *TINY, "--model.decoder.init_args.geometry", "se2"])
    torch.set_num_threads(threads)
    return root / "runs" / "mnist" / "version_0"


def edit(run: Path, out: Path, *flags: str) -> tuple[dict, dict]:
    main(["edit", "--ckpt", str(run / "checkpoints" / "last.ckpt"), *flags, "--out", str(out)])
    arrays, attrs = read_h5(out / "latents.h5")
    return arrays, attrs


def test_edit_writes_figures_latents_and_a_replayable_record(run: Path, tmp_path: Path) -> None:
    arrays, attrs = edit(run, tmp_path / "a", "--index", "2", "--select", "radius:0.5,0.5,0.4", "--rotate", "40",
                         "--translate", "0.1,-0.05", "--duplicate", "0.2,0")  # fmt: skip
    for name in ("before.png", "after.png", "edit.png", "edited.png", "edits.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    record = json.loads((tmp_path / "a" / "edits.json").read_text())
    assert [e["op"] for e in record["edits"]] == ["rotate", "translate", "duplicate"]
    assert record["meta"]["image"] == "test[2]" and attrs["geometry"] == "se2"
    sel = record["edits"][0]["select"]
    assert 0 < len(sel) < 4
    assert arrays["edited_poses"].shape == (4 + len(sel), 4)
    # the record replayed by the library on the written original latents gives the written edit
    original = enf.Latents(
        *(torch.from_numpy(arrays[f"original_{k}"])[None] for k in ("poses", "context", "window"))
    )
    again = replay(original, enf.geometry.get("se2"), [Edit.from_dict(e) for e in record["edits"]])
    np.testing.assert_allclose(again.poses[0].numpy(), arrays["edited_poses"], atol=1e-6, rtol=0)
    # ... and so does `enf edit --edits` (the encoding is deterministic)
    arrays2, _ = edit(run, tmp_path / "b", "--index", "2", "--edits", str(tmp_path / "a" / "edits.json"))
    np.testing.assert_array_equal(arrays2["edited_poses"], arrays["edited_poses"])
    np.testing.assert_array_equal(arrays2["edited_context"], arrays["edited_context"])


def test_a_page_record_replays_with_the_dataset_images_it_names(run: Path, tmp_path: Path) -> None:
    record = {
        "meta": {"image": {"kind": "dataset", "split": "test", "index": 0},
                 "sources": {"s1": {"kind": "dataset", "split": "test", "index": 3}}},
        "edits": [{"op": "paste", "source": "s1", "select": [1, 2], "offset": [0.1, 0.0]},
                  {"op": "delete", "select": [0]}],
    }  # fmt: skip
    (tmp_path / "page.json").write_text(json.dumps(record))
    arrays, _ = edit(run, tmp_path / "p", "--index", "0", "--edits", str(tmp_path / "page.json"))
    editor = ImageEditor.from_checkpoint(run / "checkpoints" / "last.ckpt")
    z, s1 = (editor.encode(editor.dataset_image(i)) for i in (0, 3))
    expected = replay(z, editor.geometry, [Edit.from_dict(e) for e in record["edits"]], sources={"s1": s1})
    np.testing.assert_allclose(arrays["edited_poses"], expected.poses[0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        arrays["edited_context"][-2:], s1.context[0, [1, 2]].numpy(), atol=1e-6, rtol=0
    )
    del record["meta"]["sources"]
    (tmp_path / "upload.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="give it with --source-index"):
        edit(run, tmp_path / "u", "--index", "0", "--edits", str(tmp_path / "upload.json"))
    arrays, _ = edit(run, tmp_path / "u", "--index", "0", "--edits", str(tmp_path / "upload.json"),
                     "--source-index", "3")  # fmt: skip
    np.testing.assert_allclose(arrays["edited_poses"], expected.poses[0].numpy(), atol=1e-6, rtol=0)


def test_shifting_every_latent_by_whole_pixels_shifts_the_decoded_image(run: Path, tmp_path: Path) -> None:
    step = 2.0 / 27.0  # pixel spacing of the 28x28 grid on [-1, 1]
    edit(run, tmp_path / "s", "--index", "0", "--translate", f"{3 * step!r},{-2 * step!r}")
    editor = ImageEditor.from_checkpoint(run / "checkpoints" / "last.ckpt")
    arrays, _ = read_h5(tmp_path / "s" / "latents.h5")
    z, z2 = (enf.Latents(*(torch.from_numpy(arrays[f"{n}_{k}"])[None] for k in ("poses", "context", "window")))
             for n in ("original", "edited"))  # fmt: skip
    before, after = editor.decode(z)[0], editor.decode(z2)[0]
    # x grows with the column, y grows upwards (smaller row): +3 columns, +2 rows
    np.testing.assert_allclose(after[2:, 3:], before[:-2, :-3], atol=2e-5, rtol=0)
    assert (
        np.abs(after - before).max() > 100 * 2e-5
    )  # it did move: far beyond the tolerance of the shift check


def test_an_image_file_is_encoded_like_the_dataset_image(run: Path, tmp_path: Path) -> None:
    editor = ImageEditor.from_checkpoint(run / "checkpoints" / "last.ckpt")
    image = editor.dataset_image(1)
    Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).resize((56, 56)).save(
        tmp_path / "digit.png"
    )
    arrays, _ = edit(run, tmp_path / "f", "--image", str(tmp_path / "digit.png"), "--scale", "1.2")
    ref = editor.encode(editor.image_from_bytes((tmp_path / "digit.png").read_bytes()))
    np.testing.assert_allclose(arrays["original_poses"], ref.poses[0].numpy(), atol=1e-6)
    recon = editor.decode(ref)[0]
    assert np.mean((recon - image) ** 2) < np.mean((0.0 - image) ** 2)  # it is an encoding of that digit


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--index", "0"], "no edit given"),
        (["--index", "0", "--image", "x.png", "--rotate", "3"], "exactly one image"),
        (["--index", "900", "--rotate", "3"], "out of range: test has 8 images"),
        (["--index", "0", "--select", "radius:0,0", "--rotate", "3"], "radius: needs 3"),
        (["--index", "0", "--select", "radius:5,5,0.1", "--rotate", "3"], "selects no latent"),
        (["--index", "0", "--select", "0,1,2,3", "--delete"], "every latent"),
        (["--index", "0", "--paste", "0,0"], "need a second image"),
        (["--index", "0", "--scale", "-2"], "scale factor must be"),
        (["--image", "missing.png", "--rotate", "3"], "missing.png does not exist"),
        (["--serve", "--max-sessions", "0"], "--max-sessions must be >= 1, got 0"),
        (["--serve", "--max-sessions-per-client", "-1"], "--max-sessions-per-client must be >= 1, got -1"),
        (["--serve", "--idle-minutes", "inf"], "--idle-minutes must be a finite number > 0, got inf"),
    ],
)
def test_bad_edits_exit_with_one_clear_line(
    run: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["edit", "--ckpt", str(run / "checkpoints" / "last.ckpt"), *flags, "--out", str(tmp_path / "o")])
    assert message in str(exc.value.code)
    assert not (tmp_path / "o").exists()


def test_a_non_image_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "edit",
                "--ckpt",
                str(tmp_path / "none.ckpt"),
                "--index",
                "0",
                "--rotate",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
    assert "none.ckpt does not exist" in str(exc.value.code)
