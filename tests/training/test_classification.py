"""`enf classify`: tiny runs of every mode through the CLI (metrics.json keys, figures, resuming the test),
the end-to-end mode's gradients reaching the decoder and the Meta-SGD step sizes, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _common import write_fake_cifar

from enf.cli import main
from enf.data import ImageDataModule
from enf.downstream import LatentClassifier, PixelCNN
from enf.training import ClassificationModule

REPO = Path(__file__).resolve().parents[2]
FIT = str(REPO / "configs" / "fit" / "mnist_se2.yaml")
FIT_TINY = [
    "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
    "--data.init_args.num_train", "40", "--data.init_args.num_test", "20", "--data.init_args.batch_size", "10",
    "--model.fitter.init_args.num_latents", "4", "--model.decoder.init_args.hidden_dim", "16",
    "--model.decoder.init_args.context_dim", "8", "--artifacts.num_train_eval", "8",
]  # fmt: skip
CLASSIFY_TINY = [
    "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1",
    "--data.init_args.num_train", "40", "--data.init_args.num_test", "20", "--data.init_args.batch_size", "10",
    "--artifacts.num_train_eval", "8", "--model.num_rotated_test", "10",
]  # fmt: skip
LATENT_TINY = ["--model.classifier.init_args.context_dim", "8", "--model.classifier.init_args.hidden_dim", "16",
               "--model.classifier.init_args.basis_dim", "8"]  # fmt: skip


@pytest.fixture(scope="module")
def enf_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classify")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(["fit", "--config", FIT, *FIT_TINY])
    return root / "runs" / "mnist_se2" / "version_0" / "checkpoints" / "last.ckpt"


def _check_run(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy_test", "accuracy_test_rotated", "accuracy_train", "accuracy_test_class0"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["num_test"] == 20
    for name in ("confusion_test.png", "confusion_test_rotated.png"):
        assert (run / "figures" / name).is_file()
    matrix = json.loads((run / "confusion_test.json").read_text())["rows_true_columns_predicted"]
    assert sum(map(sum, matrix)) == 20
    correct = sum(matrix[k][k] for k in range(10))
    assert correct / 20 == pytest.approx(metrics["accuracy_test"])
    return metrics


@pytest.mark.parametrize("config", ["mnist", "mnist_absolute", "mnist_e2e"])
def test_latent_modes_run_through_the_cli(
    config: str, enf_ckpt: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.chdir(tmp_path)
    path = str(REPO / "configs" / "classify" / f"{config}.yaml")
    main(
        [
            "classify",
            "fit",
            "--config",
            path,
            *CLASSIFY_TINY,
            *LATENT_TINY,
            "--model.fit_checkpoint",
            str(enf_ckpt),
        ]
    )
    run = tmp_path / "runs" / f"classify_{config}" / "version_0"
    _check_run(run)
    if config == "mnist":  # the test again from the run folder and its last checkpoint (found by "last")
        fitted = json.loads((run / "metrics.json").read_text())["accuracy_test"]
        with caplog.at_level("INFO", logger="enf.cli.lightning"):
            main(["classify", "test", "--config", str(run / "config.yaml"), "--ckpt_path", "last"])
        assert (
            f"--ckpt_path last: loading {Path('runs/classify_mnist/version_0/checkpoints/last.ckpt')}"
            in caplog.text
        )
        again = json.loads((run / "metrics.json").read_text())
        assert again["num_test"] == 20 and again["accuracy_test"] == pytest.approx(fitted, abs=0.051)


def test_pixel_cnn_runs_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["classify", "fit", "--config", str(REPO / "configs" / "classify" / "mnist_cnn.yaml"), *CLASSIFY_TINY,
          "--model.classifier.init_args.width", "4"])  # fmt: skip
    _check_run(tmp_path / "runs" / "classify_mnist_cnn" / "version_0")


def test_end_to_end_gradients_reach_the_decoder_and_the_step_sizes(enf_ckpt: Path) -> None:
    clf = LatentClassifier(geometry="se2", context_dim=8, num_classes=10, hidden_dim=16, basis_dim=8)
    module = ClassificationModule(classifier=clf, mode="end_to_end", fit_checkpoint=str(enf_ckpt))
    dm = ImageDataModule(dataset="mnist", num_train=8, num_test=4, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    module.train()
    module.training_step(batch, 0).backward()
    fitter, decoder = module.fit.fitter, module.fit.decoder
    for name in ("lr_position", "lr_context"):
        grad = getattr(fitter, name).grad
        assert grad is not None and grad.abs().max() > 0, name
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in decoder.head.parameters())
    assert all(p.grad is not None for p in clf.parameters())


def test_two_stage_keeps_the_enf_frozen(enf_ckpt: Path) -> None:
    clf = LatentClassifier(geometry="se2", context_dim=8, num_classes=10, hidden_dim=16, basis_dim=8)
    module = ClassificationModule(classifier=clf, mode="two_stage", fit_checkpoint=str(enf_ckpt))
    assert not any(p.requires_grad for p in module.fit.parameters())
    groups = module.configure_optimizers().param_groups
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(clf.parameters()))


def test_bad_configurations_are_refused(enf_ckpt: Path) -> None:
    clf = LatentClassifier(geometry="se2", context_dim=8, num_classes=10)
    with pytest.raises(ValueError, match="needs model.fit_checkpoint"):
        ClassificationModule(classifier=clf, mode="two_stage")
    with pytest.raises(ValueError, match="mode must be one of"):
        ClassificationModule(classifier=clf, mode="joint", fit_checkpoint=str(enf_ckpt))
    with pytest.raises(TypeError, match="needs an enf.downstream.PixelCNN"):
        ClassificationModule(classifier=clf, mode="pixels")
    with pytest.raises(ValueError, match="context_dim=16"):
        ClassificationModule(classifier=LatentClassifier(geometry="se2", context_dim=16, num_classes=10),
                             fit_checkpoint=str(enf_ckpt))  # fmt: skip
    with pytest.raises(ValueError, match="cannot read the se2 latents"):
        ClassificationModule(classifier=LatentClassifier(geometry="se3", context_dim=8, num_classes=10),
                             fit_checkpoint=str(enf_ckpt))  # fmt: skip
    with pytest.raises(ValueError, match="remove model.fit_checkpoint"):
        ClassificationModule(classifier=PixelCNN(num_channels=1, num_classes=10), mode="pixels",
                             fit_checkpoint=str(enf_ckpt))  # fmt: skip
    with pytest.raises(FileNotFoundError):
        ClassificationModule(classifier=clf, fit_checkpoint="runs/nope/last.ckpt")


@pytest.mark.slow
def test_two_stage_under_ddp_with_two_cpu_processes(enf_ckpt: Path, tmp_path: Path) -> None:
    """``enf classify fit ... --trainer.strategy ddp --trainer.devices 2`` on CPU (gloo): one run folder, written
    by rank 0, with the classification metrics."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "enf.cli", "classify", "fit", "--config", str(REPO / "configs" / "classify" / "mnist.yaml"),
           *CLASSIFY_TINY, *LATENT_TINY, "--model.fit_checkpoint", str(enf_ckpt),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted((tmp_path / "runs" / "classify_mnist").iterdir())
    assert [p.name for p in runs] == ["version_0"], runs
    _check_run(runs[0])


def test_cifar10_config_runs_on_a_local_root(tmp_path: Path, monkeypatch, capsys) -> None:
    """configs/classify/cifar10.yaml end to end on a fake local CIFAR-10 root: a tiny translation2d ENF from
    configs/fit/cifar10.yaml, then the classifier; without the root, the error says where to get the data."""
    monkeypatch.chdir(tmp_path)
    write_fake_cifar(tmp_path / "cifar")
    root = ["--data.init_args.root", str(tmp_path / "cifar"), "--data.init_args.num_workers", "0"]
    tiny = ["--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--data.init_args.batch_size", "4", "--artifacts.num_train_eval", "4"]  # fmt: skip
    main(["fit", "--config", str(REPO / "configs" / "fit" / "cifar10.yaml"), *tiny, *root,
          "--model.fitter.init_args.num_latents", "9", "--model.decoder.init_args.hidden_dim", "16",
          "--model.decoder.init_args.context_dim", "8", "--model.num_sampled_coords", "64"])  # fmt: skip
    ckpt = tmp_path / "runs" / "cifar10" / "version_0" / "checkpoints" / "last.ckpt"
    config = str(REPO / "configs" / "classify" / "cifar10.yaml")
    main(
        [
            "classify",
            "fit",
            "--config",
            config,
            *tiny,
            *root,
            *LATENT_TINY,
            "--model.fit_checkpoint",
            str(ckpt),
        ]
    )
    run = tmp_path / "runs" / "classify_cifar10" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_test"] == 2 and "accuracy_test_rotated" not in metrics  # num_rotated_test: 0
    matrix = json.loads((run / "confusion_test.json").read_text())["rows_true_columns_predicted"]
    assert sum(map(sum, matrix)) == 2 and sum(matrix[k][k] for k in range(10)) / 2 == metrics["accuracy_test"]
    capsys.readouterr()
    with pytest.raises((FileNotFoundError, SystemExit)) as exc:
        main(["classify", "fit", "--config", config, *tiny, *LATENT_TINY, "--data.init_args.root",
              str(tmp_path / "nowhere"), "--model.fit_checkpoint", str(ckpt)])  # fmt: skip
    message = str(exc.value) + capsys.readouterr().err
    assert "nowhere" in message and "cifar-10-python.tar.gz" in message


def test_two_stage_reads_enf_encode_files(enf_ckpt: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """``model.latent_files``: the training and validation clouds from ``enf encode --split train|val`` are the
    clouds the run would encode itself; files of another split, other labels or another ENF are refused."""
    import numpy as np

    from enf.data.hdf5 import read_h5, write_h5
    from enf.training.encoded_latents import load_encoded_split

    monkeypatch.chdir(tmp_path)
    for split in ("train", "val"):
        main(["encode", "--ckpt", str(enf_ckpt), "--split", split, "--out", f"{split}.h5"])
    config = str(REPO / "configs" / "classify" / "mnist.yaml")
    with caplog.at_level("INFO", logger="enf.training.classification_module"):
        main(["classify", "fit", "--config", config, *CLASSIFY_TINY, *LATENT_TINY, "--model.fit_checkpoint",
              str(enf_ckpt), "--model.latent_files", '{"train": "train.h5", "val": "val.h5"}'])  # fmt: skip
    assert "read the train split from train.h5: 40 latent clouds" in caplog.text
    assert "read the val split from val.h5: 20 latent clouds" in caplog.text
    _check_run(tmp_path / "runs" / "classify_mnist" / "version_0")

    # the file's rows are the clouds the ENF encodes from the same signals (all of them, not only the first batch)
    clf = LatentClassifier(geometry="se2", context_dim=8, num_classes=10, hidden_dim=16, basis_dim=8)
    module = ClassificationModule(classifier=clf, fit_checkpoint=str(enf_ckpt))
    dm = ImageDataModule(dataset="mnist", num_train=40, num_test=20, batch_size=10)
    load = dict(geometry_name="se2", loader=dm.eval_dataloader("train"), encode=module.encode)
    z, labels = load_encoded_split("train.h5", split="train", **load)
    for batch in dm.eval_dataloader("train"):
        now, rows = module.encode(batch), batch["index"]
        for name in ("poses", "context", "window"):
            torch.testing.assert_close(getattr(z, name)[rows], getattr(now, name), atol=1e-5, rtol=1e-5)
        assert torch.equal(labels[rows], batch["label"].long())

    # refusals: the wrong split, other labels, latents of another ENF, no file
    with pytest.raises(ValueError, match="holds the 'val' split, not 'train'"):
        load_encoded_split("val.h5", split="train", **load)
    arrays, attrs = read_h5("train.h5")
    write_h5("relabelled.h5", {**arrays, "label": np.roll(arrays["label"], 1)}, attrs)
    with pytest.raises(ValueError, match="labels differ"):
        load_encoded_split("relabelled.h5", split="train", **load)
    write_h5("other.h5", {**arrays, "context": arrays["context"] + 0.1}, attrs)
    with pytest.raises(ValueError, match="context differ from what model.fit_checkpoint encodes"):
        load_encoded_split("other.h5", split="train", **load)
    context = arrays["context"].copy()
    context[3, 0, 0] = float("nan")
    write_h5("nan.h5", {**arrays, "context": context}, attrs)
    with pytest.raises(ValueError, match="'context' holds NaN"):
        load_encoded_split("nan.h5", split="train", **load)
    with pytest.raises(FileNotFoundError, match="enf encode --ckpt"):
        load_encoded_split("missing.h5", split="train", **load)
    with pytest.raises(ValueError, match="latent_files keys must be among"):
        ClassificationModule(classifier=clf, fit_checkpoint=str(enf_ckpt), latent_files={"test": "x.h5"})
