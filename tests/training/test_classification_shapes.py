"""`enf classify` on 3-D shapes (labelled primitives, se3 latents): a tiny CLI run, and the pipeline's invariance
to rotations of the shape in float64 (moment-posed encoding + se3 classifier), with the translation3d classifier
on the same latents as the control that must change. Needs the mesh extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')

from enf.cli import main  # noqa: E402
from enf.data import SDFDataModule  # noqa: E402
from enf.downstream import LatentClassifier  # noqa: E402
from enf.training import ClassificationModule  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = dict(num_train=8, num_test=8, num_val=4, num_near=400, num_uniform=100, num_surface=100, num_heldout=200,
            batch_size=4)  # fmt: skip
DATA_ARGS = [arg for key, value in DATA.items() for arg in (f"--data.init_args.{key}", str(value))]
FIT_TINY = [
    "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
    "--model.fitter.init_args.num_latents", "6", "--model.decoder.init_args.hidden_dim", "16",
    "--model.decoder.init_args.context_dim", "8", "--model.num_sampled_coords", "256",
    "--model.num_eval_coords", "500", "--model.fitter.init_args.num_eval_steps", "3",
    "--artifacts.num_train_eval", "4", "--artifacts.num_test_eval", "4", *DATA_ARGS,
]  # fmt: skip


@pytest.fixture(scope="module")
def shape_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classify_shapes")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(["fit", "--config", str(REPO / "configs" / "fit" / "primitives_se3.yaml"), *FIT_TINY])
    return root / "runs" / "primitives_se3" / "version_0" / "checkpoints" / "last.ckpt"


def test_shapes_classify_through_the_cli(shape_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["classify", "fit", "--config", str(REPO / "configs" / "classify" / "primitives.yaml"),
          "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
          "--model.classifier.init_args.context_dim", "8", "--model.classifier.init_args.hidden_dim", "16",
          "--model.classifier.init_args.basis_dim", "8", "--artifacts.num_train_eval", "4",
          "--model.fit_checkpoint", str(shape_ckpt), *DATA_ARGS])  # fmt: skip
    run = tmp_path / "runs" / "classify_primitives" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_test"] == 8
    matrix = json.loads((run / "confusion_test_rotated.json").read_text())["rows_true_columns_predicted"]
    assert len(matrix) == 4 and sum(map(sum, matrix)) == 8
    assert sum(matrix[k][k] for k in range(4)) / 8 == pytest.approx(metrics["accuracy_test_rotated"])
    labels = SDFDataModule(dataset="primitives", **DATA).dataset("test").labels
    for k in range(4):  # a per-class rate for every class the test split holds
        assert (f"accuracy_test_class{k}" in metrics) == bool((labels == k).any())
    for name in ("confusion_test.png", "misclassified_test.png", "misclassified_test_rotated.png"):
        assert (run / "figures" / name).is_file(), name


def test_latent_files_are_refused_for_shapes(shape_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["classify", "fit", "--config", str(REPO / "configs" / "classify" / "primitives.yaml"),
              "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1",
              "--model.classifier.init_args.context_dim", "8", "--model.fit_checkpoint", str(shape_ckpt),
              "--model.latent_files", '{"train": "latents_train.h5"}', *DATA_ARGS])  # fmt: skip
    assert "model.latent_files are for images" in capsys.readouterr().err


def test_se3_pipeline_is_invariant_to_rotations_of_the_shape(
    shape_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    """Encoding a rotated shape (the same sample points rotated) from its moment-posed initial latent gives the
    rotated latents, which the se3 classifier cannot tell apart: logits equal to round-off in float64. The
    translation3d classifier reads positions without frames: its logits change (control)."""
    monkeypatch.chdir(tmp_path)
    dm = SDFDataModule(dataset="primitives", **DATA)
    batch = {
        k: v.double() if v.is_floating_point() else v
        for k, v in next(iter(dm.eval_dataloader("test"))).items()
    }
    rotated = None
    for geometry in ("se3", "translation3d"):
        torch.manual_seed(0)
        clf = LatentClassifier(geometry=geometry, context_dim=8, num_classes=4, hidden_dim=16, basis_dim=8)
        module = ClassificationModule(classifier=clf, fit_checkpoint=str(shape_ckpt)).double()
        if rotated is None:
            rotated = module.rotated(batch, generator=torch.Generator().manual_seed(3), kind="sdf")
            assert torch.equal(rotated["signal"], batch["signal"])  # the rotated shape's samples
        torch.manual_seed(1)
        upright, _ = module.logits(batch)
        torch.manual_seed(1)  # the same point subsets in every inner step
        turned, _ = module.logits(rotated)
        error = (upright - turned).abs().max().item()
        if geometry == "se3":
            assert error < 1e-8, error
        else:
            assert error > 1e-3, error
