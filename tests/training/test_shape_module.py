"""The shape task end to end: ``enf shape fit`` on the trilobite landmarks writes a complete run (metrics,
figures, checkpoints), the checkpoint reloads to the same metrics, the code is similarity invariant, bad
configs fail with one clear line. Needs ktch (the `shape` extra)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from enf.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ktch") is None, reason='the landmark data needs ktch: pip install -e ".[shape]"'
)
REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "shape" / "trilobite.yaml")
TINY = ["--trainer.max_steps", "8", "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
        "--model.vae.init_args.hidden_dim", "16", "--model.vae.init_args.decoder_hidden_dim", "32"]  # fmt: skip
KEYS = {"rel_mse_train", "kl_train", "num_train_eval", "rel_mse_test", "kl_test", "num_test", "equivariance_error",
        "fit_time_s", "global_step", "epoch", "num_parameters"}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shape_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(["shape", "fit", "--config", CONFIG, *TINY])
    return root / "runs" / "shape_trilobite" / "version_0"


def test_shape_fit_writes_a_complete_run(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["num_test"] == 57 and metrics["num_train_eval"] == 228 and metrics["global_step"] == 8
    assert metrics["equivariance_error"] < 1e-9  # code(g X) == code(X), float64, random similarities
    assert 0 < metrics["rel_mse_test"] and 0 < metrics["kl_test"]
    assert (run / "figures" / "final_shapes.png").stat().st_size > 0
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"last.ckpt", "best.ckpt"}
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["vae"]["class_path"] == "enf.shape.ShapeVAE"


def test_the_checkpoint_reloads_to_the_same_metrics(run: Path, tmp_path: Path, monkeypatch) -> None:
    from enf.training import ShapeModule

    module = ShapeModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True)
    fitted = json.loads((run / "metrics.json").read_text())
    monkeypatch.chdir(tmp_path)
    main(["shape", "test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])  # fmt: skip
    tested = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert tested["rel_mse_test"] == pytest.approx(fitted["rel_mse_test"], rel=1e-5)
    # the reloaded model gives the run's test error on the test shapes
    from enf.data import landmark_dataset
    from enf.training.shape_module import relative_error

    x = landmark_dataset("trilobite", split="test").positions
    with torch.no_grad():
        rel = relative_error(module.eval().vae(x, sample=False).points, x).mean()
    assert float(rel) == pytest.approx(fitted["rel_mse_test"], rel=1e-5)


def test_export_writes_the_codes_the_model_computes(run: Path, tmp_path: Path) -> None:
    from enf.data import landmark_dataset, read_h5
    from enf.shape import kendall_distance
    from enf.training import ShapeModule
    from enf.training.shape_module import random_similarity

    out = tmp_path / "codes.h5"
    main(
        [
            "shape",
            "export",
            "--ckpt",
            str(run / "checkpoints" / "last.ckpt"),
            "--split",
            "test",
            "--out",
            str(out),
        ]
    )
    arrays, attrs = read_h5(out)
    assert arrays["code"].shape == (57, 14) and arrays["rotation"].shape == (57, 2, 2)
    assert attrs["split"] == "test" and attrs["mean_rel_mse"] == pytest.approx(
        float(arrays["rel_mse"].mean())
    )
    np_codes = torch.from_numpy(arrays["code"])
    torch.testing.assert_close(np_codes.norm(dim=-1), torch.ones(57), atol=1e-5, rtol=0)
    module = (
        ShapeModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True).double().eval()
    )
    x = landmark_dataset("trilobite", split="test").positions.double()
    with torch.no_grad():
        ref = module.vae(x, sample=False)
        moved = module.vae(
            random_similarity(57, 2, generator=torch.Generator().manual_seed(1))(x), sample=False
        )
    torch.testing.assert_close(np_codes.double(), ref.code, atol=1e-5, rtol=0)
    assert (moved.code - ref.code).abs().max() < 1e-9  # the symbol does not see the pose
    assert (
        kendall_distance(torch.from_numpy(arrays["canonical"]).double(), ref.encoding.landmarks).max() < 1e-5
    )
    with pytest.raises(SystemExit, match="not a shape checkpoint|does not exist"):
        main(["shape", "export", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "x.h5")])


def test_a_model_that_does_not_fit_the_data_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["shape", "fit", "--config", CONFIG, *TINY, "--model.vae.init_args.num_out_points", "10"])
    err = capsys.readouterr().err
    assert "num_out_points" in err and "[B, 10, 2]" in err


def test_shape_without_a_subcommand_says_how(capsys: pytest.CaptureFixture) -> None:
    for argv, message in (
        (["shape"], "give a subcommand"),
        (["shape", "bogus"], "unknown subcommand 'bogus'"),
    ):
        with pytest.raises(SystemExit, match=rf"{message}(.|\n)*enf shape fit\|validate\|test"):
            main(argv)
    main(["shape", "--help"])  # help is an answer, not an error: exit 0
    assert "enf shape export --ckpt" in capsys.readouterr().out
    main(["--version"])
    assert capsys.readouterr().out.startswith("enf 0.")
