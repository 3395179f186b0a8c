"""`enf fit` on signed distances writes IoU and Chamfer metrics and mesh figures; `enf shape export` writes the
marching-cubes mesh of a fitted shape: its vertices lie on the model's zero level set, and with --rotate /
--translate on the moved field's (the latents moved, checked against the unmoved field at g^-1 v), and
--truth writes the true mesh moved alike. Needs the mesh extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("skimage", reason='marching cubes need the mesh extra: pip install -e ".[mesh]"')

from scipy.spatial.transform import Rotation  # noqa: E402

from enf.cli import main  # noqa: E402
from enf.data.images.base import collate  # noqa: E402
from enf.data.modules.sdf import SDFDataModule  # noqa: E402
from enf.data.shapes.meshes import load_mesh  # noqa: E402
from enf.training.checkpoints import load_fit_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = dict(
    num_train=2, num_test=1, num_near=300, num_uniform=100, num_surface=50, num_heldout=5000, batch_size=2
)
BOUND, RESOLUTION = 1.1, 32


def _fit(tmp: Path, geometry: str) -> Path:
    """A tiny SDF model trained for 40 steps (10 s; constant learning rate, no cosine decay over so few
    steps): enough for a surface inside the cube."""
    main(["fit", "--config", str(REPO / "configs" / "fit" / "shapes.yaml"), "--trainer.max_steps", "40",
          "--trainer.enable_progress_bar", "false", "--trainer.check_val_every_n_epoch", "20",
          "--model.decoder.init_args.geometry", geometry, "--model.decoder.init_args.hidden_dim", "16",
          "--model.decoder.init_args.context_dim", "8", "--model.fitter.init_args.num_latents", "8",
          "--model.num_sampled_coords", "128", "--model.lr", "0.01", "--model.mesh_resolution", "24",
          "--model.lr_schedule", "constant",
          "--artifacts.num_train_eval", "2", *[f"--data.init_args.{k}={v}" for k, v in DATA.items()],
          "--data.init_args.cache_dir", str(tmp / "cache"), "--trainer.logger.init_args.save_dir",
          str(tmp / "runs")])  # fmt: skip
    return tmp / "runs" / "shapes" / "version_0"


@pytest.fixture(scope="module")
def se3_run(tmp_path_factory) -> Path:
    return _fit(tmp_path_factory.mktemp("se3"), "se3")


def _field_at(run: Path, points: np.ndarray, *, index: int = 0) -> np.ndarray:
    """The fitted field of train shape ``index`` at ``points [P, 3]``, computed here from the checkpoint."""
    module = load_fit_checkpoint(run / "checkpoints" / "last.ckpt").module
    dm = SDFDataModule(**DATA, cache_dir=str(run.parents[2] / "cache"))
    batch = collate([dm.dataset("train")[index]])
    with torch.enable_grad():
        z = module.encode(batch, train=False)
    with torch.no_grad():
        return module.decoder(torch.as_tensor(points, dtype=torch.float32)[None], z)[0, :, 0].numpy()


def test_fit_writes_shape_metrics_and_mesh_figures(se3_run: Path) -> None:
    metrics = json.loads((se3_run / "metrics.json").read_text())
    for key in ("iou_test", "iou_train", "chamfer_test", "chamfer_train", "mse_test", "equivariance_error"):
        assert key in metrics, key
    assert metrics["iou_train"] > 0.3  # 40 steps on two shapes: it learned an occupancy, not nothing
    assert 0 < metrics["chamfer_train"] < 2 * BOUND  # a decoded surface exists (no surface scores 2 * bound)
    assert metrics["equivariance_error"] < 1e-9
    assert (se3_run / "figures" / "final_reconstruction.png").is_file()


def _interior(v: np.ndarray, margin: float) -> np.ndarray:
    return np.abs(v).max(1) < BOUND - margin


def test_export_writes_the_zero_level_set_and_the_moved_mesh(se3_run: Path, tmp_path: Path) -> None:
    ckpt = str(se3_run / "checkpoints" / "last.ckpt")
    common = [
        "shape",
        "export",
        "--ckpt",
        ckpt,
        "--split",
        "train",
        "--index",
        "0",
        "--resolution",
        str(RESOLUTION),
    ]
    main([*common, "--out", str(tmp_path / "a.ply"), "--truth", str(tmp_path / "truth.obj")])
    mesh = load_mesh(tmp_path / "a.ply")
    spacing = 2 * BOUND / (RESOLUTION - 1)
    inside = _interior(mesh.vertices, spacing)  # the padding closes surfaces at the border: skip those
    assert inside.sum() > 100
    level = np.abs(_field_at(se3_run, mesh.vertices[inside])).mean()  # marching cubes' own error
    scale = np.abs(_field_at(se3_run, np.random.default_rng(0).uniform(-1, 1, (2000, 3)))).mean()
    assert level < 0.1 * scale  # vertices on the zero level set, up to the grid

    rot = Rotation.from_rotvec(np.radians(70) * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)).as_matrix()
    t = np.array([0.1, -0.05, 0.0])
    main([*common, "--out", str(tmp_path / "b.obj"), "--truth", str(tmp_path / "truth_b.ply"),
          "--rotate", "70", "--axis", "1,1,0", "--translate", "0.1,-0.05,0"])  # fmt: skip
    moved = load_mesh(tmp_path / "b.obj")
    back = (moved.vertices - t) @ rot  # g^-1 v
    keep = _interior(moved.vertices, spacing) & _interior(back, spacing)
    assert keep.sum() > 100
    # the moved mesh is the zero set of the moved field: f(g^-1 v; z) = 0 as closely as for the unmoved mesh
    assert np.abs(_field_at(se3_run, back[keep])).mean() < 2 * level
    # negative control: the moved vertices do not lie on the unmoved field's zero set
    assert np.abs(_field_at(se3_run, moved.vertices[keep])).mean() > 5 * level
    truth, truth_b = load_mesh(tmp_path / "truth.obj"), load_mesh(tmp_path / "truth_b.ply")
    np.testing.assert_allclose(truth_b.vertices, truth.vertices @ rot.T + t, atol=1e-5)


def test_export_errors_name_the_problem(se3_run: Path, tmp_path: Path) -> None:
    ckpt = str(se3_run / "checkpoints" / "last.ckpt")
    base = ["shape", "export", "--ckpt", ckpt, "--split", "train"]
    for extra, message in [
        (["--out", str(tmp_path / "m.vtk")], "must end in one of"),
        (["--index", "7", "--out", str(tmp_path / "m.ply")], "outside the train split"),
        (["--axis", "0,0,0", "--rotate", "10", "--out", str(tmp_path / "m.ply")], "--axis must be"),
    ]:
        with pytest.raises(SystemExit, match=message):
            main([*base, *extra])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_translation3d_latents_translate_but_refuse_rotations(tmp_path: Path) -> None:
    run = _fit(tmp_path, "translation3d")
    base = ["shape", "export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--split", "train",
            "--resolution", "24"]  # fmt: skip
    with pytest.raises(SystemExit, match="translation3d latents only translate"):
        main([*base, "--rotate", "30", "--out", str(tmp_path / "r.ply")])
    main([*base, "--out", str(tmp_path / "a.ply")])
    main([*base, "--translate", "0.3,0,0", "--out", str(tmp_path / "t.ply")])
    spacing = 2 * BOUND / 23
    mesh = load_mesh(tmp_path / "a.ply")
    level = np.abs(_field_at(run, mesh.vertices[_interior(mesh.vertices, spacing)])).mean()
    moved = load_mesh(tmp_path / "t.ply")
    back = moved.vertices - np.array([0.3, 0.0, 0.0])
    keep = _interior(moved.vertices, spacing) & _interior(back, spacing)
    assert keep.sum() > 100
    assert np.abs(_field_at(run, back[keep])).mean() < 2 * level  # f(v - t; z) = 0 on the moved mesh
    assert np.abs(_field_at(run, moved.vertices[keep])).mean() > 5 * level  # control: the unmoved field
