"""Geometric symbols of MNIST end to end, tiny: ``enf fit`` (se2, moment-posed initial latent) -> ``enf encode
--store-signal [--rotate]`` -> ``enf shape fit`` on the latent clouds with the loss on the ENF-decoded image.

Checked against independent computations: a 90-degree rotation is an exact pixel permutation (np.rot90), so
the encoded latents of the turned digits must be the turned latents (moment-posed init; the shared init is
the negative control), and the shape codes of the turned digits must equal the upright ones (the plain VAE
is the negative control); kNN accuracies come from the codes of the run's own checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from enf.cli import main
from enf.data import read_h5

REPO = Path(__file__).resolve().parents[2]
FIT = str(REPO / "configs" / "fit" / "mnist_se2.yaml")
SHAPE = str(REPO / "configs" / "shape" / "mnist.yaml")
PLAIN = str(REPO / "configs" / "shape" / "mnist_plain.yaml")
FIT_TINY = [
    "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1",
    "--data.init_args.num_train", "40", "--data.init_args.num_test", "20", "--data.init_args.batch_size", "10",
    "--model.fitter.init_args.num_latents", "4", "--model.decoder.init_args.hidden_dim", "16",
    "--model.decoder.init_args.context_dim", "8", "--artifacts.num_train_eval", "8",
]  # fmt: skip


def _shape_tiny(root: Path, ckpt: Path) -> list[str]:
    return [
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "6", "--trainer.limit_val_batches", "1",
        "--model.fit_checkpoint", str(ckpt), "--model.num_sampled_coords", "64",
        "--data.init_args.train", str(root / "train.h5"), "--data.init_args.test", str(root / "test.h5"),
        "--data.init_args.extra", json.dumps({"test_rot90": str(root / "rot90.h5"),
                                              "test_rotated": str(root / "rotated.h5")}),
        "--data.init_args.batch_size", "10", "--artifacts.num_train_eval", "8",
    ]  # fmt: skip


SHAPE_TINY = ["--model.vae.init_args.num_landmarks", "4", "--model.vae.init_args.num_out_points", "4",
              "--model.vae.init_args.feature_dim", "8", "--model.vae.init_args.out_feature_dim", "10",
              "--model.vae.init_args.hidden_dim", "16", "--model.vae.init_args.decoder_hidden_dim", "32"]  # fmt: skip
PLAIN_TINY = ["--model.vae.init_args.num_points", "4", "--model.vae.init_args.code_dim", "6",
              "--model.vae.init_args.num_out_points", "4", "--model.vae.init_args.feature_dim", "8",
              "--model.vae.init_args.out_feature_dim", "10", "--model.vae.init_args.hidden_dim", "32",
              "--model.vae.init_args.decoder_hidden_dim", "32"]  # fmt: skip


@pytest.fixture(scope="module")
def symbols(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("symbols")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(["fit", "--config", FIT, *FIT_TINY])
        main(["fit", "--config", FIT, *FIT_TINY, "--model.fitter.init_args.init_frame", "shared",
              "--trainer.logger.init_args.name", "mnist_se2_shared"])  # fmt: skip
        ckpt = root / "runs" / "mnist_se2" / "version_0" / "checkpoints" / "last.ckpt"
        enc = ["encode", "--ckpt", str(ckpt), "--store-signal"]
        main([*enc, "--split", "train", "--out", "train.h5"])
        main([*enc, "--split", "test", "--out", "test.h5"])
        main([*enc, "--split", "test", "--rotate", "90", "--out", "rot90.h5"])
        main([*enc, "--split", "test", "--rotate", "random", "--rotation-seed", "3", "--out", "rotated.h5"])
        shared = root / "runs" / "mnist_se2_shared" / "version_0" / "checkpoints" / "last.ckpt"
        main(["encode", "--ckpt", str(shared), "--split", "test", "--out", "shared.h5"])
        main(
            ["encode", "--ckpt", str(shared), "--split", "test", "--rotate", "90", "--out", "shared_rot90.h5"]
        )
        main(["shape", "fit", "--config", SHAPE, *_shape_tiny(root, ckpt), *SHAPE_TINY])
        main(["shape", "fit", "--config", PLAIN, *_shape_tiny(root, ckpt), *PLAIN_TINY])
    return root


def _turn(poses: np.ndarray) -> np.ndarray:
    """se2 poses (q, o) turned by +90 degrees: (x, y) -> (-y, x) for both blocks."""
    out = np.empty_like(poses)
    out[..., 0::2], out[..., 1::2] = -poses[..., 1::2], poses[..., 0::2]
    return out


def test_encode_stores_the_signals_and_the_turned_images(symbols: Path) -> None:
    test, attrs = read_h5(symbols / "test.h5")
    rot, rot_attrs = read_h5(symbols / "rot90.h5")
    assert test["signal"].shape == (20, 784, 1) and test["coords"].shape == (784, 2)
    assert attrs["init_frame"] == "moments" and rot_attrs["rotate"] == "90"
    turned = np.rot90(test["signal"].reshape(20, 28, 28), axes=(1, 2)).reshape(20, 784, 1)
    assert np.abs(rot["signal"] - turned).max() < 1e-5  # float32 cos(pi/2) is not 0
    np.testing.assert_allclose(rot["rotation"], math.pi / 2)
    rnd, _ = read_h5(symbols / "rotated.h5")
    expected = np.random.default_rng(3).uniform(0, 2 * np.pi, size=20)[rnd["index"]]
    np.testing.assert_allclose(rnd["rotation"], expected)


def test_moment_posed_encodings_of_turned_digits_are_the_turned_latents(symbols: Path) -> None:
    test, _ = read_h5(symbols / "test.h5")
    rot, _ = read_h5(symbols / "rot90.h5")
    assert np.abs(rot["poses"] - _turn(test["poses"])).max() < 1e-4
    assert np.abs(rot["context"] - test["context"]).max() < 1e-3
    # negative control: from the shared initial latent the turned digit gets other latents
    shared, _ = read_h5(symbols / "shared.h5")
    shared_rot, _ = read_h5(symbols / "shared_rot90.h5")
    assert np.abs(shared_rot["poses"] - _turn(shared["poses"])).max() > 1e-2


def test_shape_fit_on_latent_clouds_writes_the_protocol(symbols: Path) -> None:
    metrics = json.loads((symbols / "runs" / "shape_mnist" / "version_0" / "metrics.json").read_text())
    for split in ("test", "test_rot90", "test_rotated"):
        for name in ("mse", "psnr", "kl", "knn_accuracy"):
            assert math.isfinite(metrics[f"{name}_{split}"]), (name, split)
        assert metrics[f"knn_accuracy_merged_{split}"] >= metrics[f"knn_accuracy_{split}"]
    assert metrics["equivariance_error"] < 1e-9 and metrics["equivariance_error_test_rotated"] < 1e-9
    assert 0 <= metrics["pose_pair_accuracy_test"] <= 1
    assert metrics["mse_test_rot90"] == pytest.approx(
        metrics["mse_test"], rel=1e-3
    )  # turned digits, same error
    assert (
        symbols / "runs" / "shape_mnist" / "version_0" / "figures" / "final_shapes.png"
    ).stat().st_size > 0


def _codes(run: Path, split_file: Path) -> torch.Tensor:
    from enf.data.modules.latents import LatentCloudDataset
    from enf.training import ShapeModule

    module = ShapeModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True).eval()
    data = LatentCloudDataset(split_file)
    with torch.no_grad():
        return module.encode_cloud(data.poses[..., :2], data.context).code


def test_turned_digits_get_the_upright_codes_and_the_plain_vae_does_not(symbols: Path) -> None:
    shape_run = symbols / "runs" / "shape_mnist" / "version_0"
    up, turned = _codes(shape_run, symbols / "test.h5"), _codes(shape_run, symbols / "rot90.h5")
    assert (up - turned).abs().max() < 1e-3
    plain_run = symbols / "runs" / "shape_mnist_plain" / "version_0"
    up, turned = _codes(plain_run, symbols / "test.h5"), _codes(plain_run, symbols / "rot90.h5")
    assert (up - turned).abs().max() > 1e-2
    plain = json.loads((plain_run / "metrics.json").read_text())
    assert plain["equivariance_error"] > 1e-3 and "pose_pair_accuracy_test" not in plain


def test_knn_accuracy_in_the_metrics_is_that_of_the_codes(symbols: Path) -> None:
    from enf.data.modules.latents import LatentCloudDataset
    from enf.metrics import knn_accuracy

    run = symbols / "runs" / "shape_mnist" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    ref, query = _codes(run, symbols / "train.h5"), _codes(run, symbols / "rotated.h5")
    labels = LatentCloudDataset(symbols / "train.h5").label, LatentCloudDataset(symbols / "rotated.h5").label
    assert knn_accuracy(ref, labels[0], query, labels[1], k=5) == pytest.approx(
        metrics["knn_accuracy_test_rotated"]
    )


def test_a_vae_that_does_not_fit_the_enf_is_one_clear_line(symbols: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(symbols)
    ckpt = symbols / "runs" / "mnist_se2" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit):
        main(["shape", "fit", "--config", SHAPE, *_shape_tiny(symbols, ckpt), *SHAPE_TINY,
              "--model.vae.init_args.out_feature_dim", "8"])  # fmt: skip
    assert "out_feature_dim=8 (needs 10)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="enf encode: --rotate"):
        main(["encode", "--ckpt", str(ckpt), "--rotate", "sideways", "--out", str(symbols / "x.h5")])


def test_a_missing_latent_file_says_how_to_write_it(tmp_path: Path) -> None:
    from enf.data.modules.latents import LatentCloudDataset

    with pytest.raises(FileNotFoundError, match="enf encode --ckpt"):
        LatentCloudDataset(tmp_path / "missing.h5")
