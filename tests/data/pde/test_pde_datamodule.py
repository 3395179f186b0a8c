"""``PDEDataModule``: missing-file message, generate-if-missing, normalisation, field_spec, contract batches."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest
import torch

from enf.data import FieldDataModule, FieldSpec, PDEDataModule
from enf.data.pde import channel_statistics, get_spec
from enf.data.pde.dataset import PDETrajectories
from enf.data.pde.io import open_trajectories, read_metadata


def test_missing_file_says_the_exact_generate_command(tmp_path) -> None:
    dm = PDEDataModule(dataset="diffusion_plane", root=str(tmp_path / "data"))
    expected = (
        f"enf data generate diffusion_plane --preset small --out {tmp_path / 'data' / 'diffusion_plane'}"
    )
    with pytest.raises(FileNotFoundError, match="train.h5 does not exist") as info:
        dm.setup("fit")
    assert f"`{expected}`" in str(info.value)
    with pytest.raises(FileNotFoundError, match="--seed 3"):
        _ = PDEDataModule(dataset="diffusion_plane", root=str(tmp_path), seed=3).num_train_signals
    with pytest.raises(ValueError, match="unknown PDE dataset 'heat'.*diffusion_plane"):
        PDEDataModule(dataset="heat")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        PDEDataModule(dataset="diffusion_plane", generate="huge")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['viscosity'\]"):
        PDEDataModule(dataset="diffusion_plane", generate="small", generate_options={"viscosity": 1})
    with pytest.raises(ValueError, match="observed_fraction"):
        PDEDataModule(dataset="diffusion_plane", observed_fraction=0.0)


def test_generates_missing_files_and_describes_them(tmp_path, caplog, tiny_options) -> None:
    options = tiny_options["diffusion_plane"]
    dm = PDEDataModule(
        dataset="diffusion_plane",
        root=str(tmp_path),
        generate="small",
        generate_options=options,
        seed=2,
        num_train=2,
        batch_size=3,
        eval_batch_size=5,
    )
    assert isinstance(dm, FieldDataModule)
    with caplog.at_level(logging.INFO, logger="enf.data.modules.pde_frames"):
        dm.prepare_data()
    assert (
        "generating diffusion_plane/train" in caplog.text and "generating diffusion_plane/test" in caplog.text
    )
    folder = tmp_path / "diffusion_plane"
    meta = read_metadata(folder / "train.h5")
    assert meta["seed"] == 2 and meta["fields_shape"] == (3, 4, 16, 16, 1)  # the file keeps all 3
    created = (folder / "test.h5").stat().st_mtime_ns
    dm.setup("fit")
    assert (folder / "test.h5").stat().st_mtime_ns == created  # present files are not regenerated
    # normalised with the statistics of the 2 trajectories trained on, not the file's 3
    mean, std = channel_statistics(folder / "train.h5", num_trajectories=2)
    all_mean, _ = channel_statistics(folder / "train.h5")
    assert abs(float(all_mean[0]) - float(mean[0])) > 1e-5
    # validation: the train file's last trajectory (held out of training), not the test file
    assert dm.split_sizes == (2, 1, 2)
    val = dm.trajectories("val")
    assert len(val) == 1 and len(dm.trajectories("train")) == 2
    raw = PDETrajectories(folder / "train.h5", normalize=(mean, std))
    torch.testing.assert_close(val[0]["fields"], raw[2]["fields"])
    assert len(dm.val_dataloader().dataset) == 1 * 4  # its 4 frames
    spec = dm.field_spec
    assert spec == FieldSpec(
        kind="plane",
        coord_dim=2,
        num_channels=1,
        grid_shape=(16, 16),
        channel_names=("u",),
        data_range=None,
        mean=(float(mean[0]),),
        std=(float(std[0]),),
        name="diffusion_plane",
        extra=spec.extra,
    )
    assert spec.extra["geometry"] == dm.geometry_name == "se2" and len(spec.extra["times"]) == 4
    assert FieldSpec.from_dict(dm.field_spec_dict) == spec
    assert dm.num_train_signals == 2 * 4 and len(dm.dataset("test")) == 2 * 4
    # a test batch, normalised with the TRAIN statistics, un-normalises to the stored test frames
    batch = next(iter(dm.eval_dataloader("test")))
    assert set(batch) == {"coords", "signal", "index", "trajectory", "frame", "time"}
    assert batch["index"].tolist() == [0, 1, 2, 3, 4] and batch["trajectory"].tolist() == [0, 0, 0, 0, 1]
    with open_trajectories(folder / "test.h5") as f:
        stored = torch.from_numpy(np.asarray(f["fields"][:2])).reshape(8, 256, 1)
    torch.testing.assert_close(
        spec.denormalize(batch["signal"]), stored[:5], rtol=1e-5, atol=1e-5 * float(std[0])
    )
    train = list(dm.train_dataloader())
    assert [len(b["index"]) for b in train] == [3, 3]  # 8 frames, batch 3, drop_last
    assert set(torch.cat([b["trajectory"] for b in train]).tolist()) <= {0, 1}  # num_train=2


def test_sphere_time_window_unnormalised_and_workers(tiny_root) -> None:
    dm = PDEDataModule(
        dataset="diffusion_sphere",
        root=str(tiny_root),
        time_window=(1, None),
        normalize=False,
        observed_fraction=0.5,
        batch_size=2,
        num_workers=1,
    )
    spec = dm.field_spec
    assert (spec.kind, spec.coord_dim, spec.grid_shape, spec.normalized) == ("sphere", 3, (16, 32), False)
    assert dm.geometry_name == "sphere" and len(spec.extra["times"]) == 2
    first = dm.dataset("train")[0]["signal"]  # opens the file in this process before the worker forks
    batches = list(dm.eval_dataloader("train", max_samples=4))  # through a worker process (own handle)
    assert torch.equal(batches[0]["signal"][0], first)
    batch = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    assert batch["frame"].tolist() == [0, 1, 0, 1] and batch["trajectory"].tolist() == [0, 0, 1, 1]
    with open_trajectories(tiny_root / "diffusion_sphere" / "train.h5") as f:
        stored = torch.from_numpy(np.asarray(f["fields"][:2, 1:])).reshape(4, 16 * 32, 1)
        times = torch.from_numpy(np.asarray(f["times"][1:]))
    torch.testing.assert_close(batch["signal"], stored, rtol=0, atol=0)
    torch.testing.assert_close(batch["time"], times.repeat(2), rtol=0, atol=0)
    assert batch["mask"].shape == (4, 512) and batch["mask"].sum(dim=1).tolist() == [256] * 4
    assert torch.equal(batch["mask"][0], batch["mask"][1]) and not torch.equal(
        batch["mask"][0], batch["mask"][2]
    )


def test_unknown_geometry_has_no_field_kind(tiny_root, tmp_path) -> None:
    shutil.copytree(tiny_root / "diffusion_plane", tmp_path / "diffusion_plane")
    with h5py.File(tmp_path / "diffusion_plane" / "train.h5", "r+") as f:
        f.attrs["geometry"] = "hyperbolic"
    dm = PDEDataModule(dataset="diffusion_plane", root=str(tmp_path), normalize=False)
    with pytest.raises(ValueError, match="geometry 'hyperbolic' has no field kind"):
        _ = dm.field_spec


def test_signature_is_a_valid_cli_schema() -> None:
    import jsonargparse  # a dependency of enf (the CLI's config parser)

    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(PDEDataModule, "data")
    cfg = parser.parse_args(
        ["--data.dataset=diffusion_plane", "--data.time_window=[0, 10]", "--data.generate=small"]
    )
    assert cfg.data.dataset == "diffusion_plane" and tuple(cfg.data.time_window) == (0, 10)
    assert cfg.data.normalize is True and cfg.data.root == "data" and cfg.data.resolution == "stored"


def test_other_ranks_wait_for_rank_zero_instead_of_generating(tmp_path, monkeypatch, tiny_options) -> None:
    from enf.data.modules import pde_frames as module

    monkeypatch.setattr(module.rank_zero_only, "rank", 1)
    monkeypatch.setattr(module, "_WAIT_FOR_FILES_S", 0.1)
    dm = PDEDataModule(
        dataset="diffusion_plane",
        root=str(tmp_path),
        generate="small",
        generate_options=tiny_options["diffusion_plane"],
    )
    with pytest.raises(FileNotFoundError, match="did not appear within"):
        dm.setup("fit")
    assert not (tmp_path / "diffusion_plane" / "train.h5").exists()  # rank 1 generated nothing
    dm.prepare_data()  # what Lightning runs on each node's local rank 0
    dm.setup("fit")
    assert dm.num_train_signals == (3 - 1) * 4  # one of the 3 trajectories is held out for validation


def test_present_files_of_other_parameters_are_refused_unless_allowed(tmp_path, caplog, tiny_options) -> None:
    """``generate`` only fills in missing files: a present file made with other parameters is refused, naming
    the file and what differs (with ``allow_other_generation``: kept with a warning); a matching file passes."""
    options = tiny_options["diffusion_plane"]
    kwargs = dict(dataset="diffusion_plane", root=str(tmp_path), generate="small", seed=1)
    PDEDataModule(**kwargs, generate_options=options).prepare_data()
    folder = tmp_path / "diffusion_plane"
    created = {s: (folder / f"{s}.h5").stat().st_mtime_ns for s in ("train", "test")}

    with caplog.at_level(logging.WARNING, logger="enf.data.modules.pde_frames"):
        PDEDataModule(**kwargs, generate_options=options).setup("fit")
    assert "differ" not in caplog.text

    more = {**options, "num_train": options["num_train"] + 2}
    n = options["num_train"]
    with pytest.raises(
        ValueError,
        match=rf"train.h5 differs .*num_train: stored {n}, requested {n + 2}.*allow_other_generation",
    ):
        PDEDataModule(**kwargs, generate_options=more).setup("fit")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="enf.data.modules.pde_frames"):
        dm = PDEDataModule(**kwargs, generate_options=more, allow_other_generation=True)
        dm.setup("fit")
        dm.setup("test")  # said once per module
    warnings = [r.getMessage() for r in caplog.records if "differs" in r.getMessage()]
    assert len(warnings) == 1 and str(folder / "train.h5") in warnings[0]
    assert {s: (folder / f"{s}.h5").stat().st_mtime_ns for s in ("train", "test")} == created  # kept
    with pytest.raises(ValueError, match="seed: stored 1, requested 4"):
        PDEDataModule(**{**kwargs, "seed": 4}, generate_options=options).setup("fit")


def test_train_and_test_generated_with_other_pde_parameters_are_refused(tmp_path, tiny_options) -> None:
    """A test file made with another diffusivity would score the model on another equation: refused even
    without ``generate`` (nothing to compare the config with), unless allowed."""
    from enf.data.pde.io import generate_split

    options = tiny_options["diffusion_plane"]
    spec = get_spec("diffusion_plane")
    folder = tmp_path / "diffusion_plane"
    key = next(
        k
        for k, v in spec.params("small").items()
        if k not in ("num_train", "num_test") and isinstance(v, float)
    )
    generate_split(
        spec, spec.params("small", **options), split="train", out_dir=folder, seed=0, progress=False
    )
    other = spec.params("small", **{**options, key: spec.params("small")[key] * 2})
    generate_split(spec, other, split="test", out_dir=folder, seed=0, progress=False)
    with pytest.raises(ValueError, match=rf"generated differently \({key}: train .*, test .*\)"):
        PDEDataModule(dataset="diffusion_plane", root=str(tmp_path)).setup("fit")
    PDEDataModule(dataset="diffusion_plane", root=str(tmp_path), allow_other_generation=True).setup("fit")


def test_validation_split_must_fit_in_the_train_file(tmp_path, tiny_options) -> None:
    dm = PDEDataModule(
        dataset="diffusion_plane",
        root=str(tmp_path),
        generate="small",
        generate_options=tiny_options["diffusion_plane"],
        num_train=3,
    )
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"holds 3 trajectories: num_train 3 \+ num_val 1.*num_train: 4"):
        _ = dm.split_sizes
    with pytest.raises(ValueError, match="num_val must be a positive int"):
        PDEDataModule(dataset="diffusion_plane", num_val=0)
    # the default keeps one eighth (at least one) for validation and trains on the rest
    default = PDEDataModule(dataset="diffusion_plane", root=str(tmp_path))
    assert default.split_sizes == (2, 1, 2)


def test_zonal_background_matches_an_independent_zonal_mean(tiny_root) -> None:
    """``background="zonal_mean"``: the profile is the training trajectories' row means, the normalised
    signals minus the profile have zero row means and unit spread, and the decoder of a fit gets it."""
    from enf.data.pde.dataset import zonal_statistics
    from enf.nn import ZonalProfile

    path = tiny_root / "diffusion_sphere" / "train.h5"
    with open_trajectories(path) as f:
        fields = np.asarray(f["fields"][:2], dtype=np.float64)  # [2, T, 16, 32, 1]
        coords = np.asarray(f["coords"], dtype=np.float64)
    zonal = fields.mean(axis=(0, 1, 3))  # [16, 1]
    spread = np.sqrt(((fields - zonal[None, None, :, None]) ** 2).mean(axis=(0, 1, 2, 3)))
    mean, std, latitudes, profile = zonal_statistics(path, num_trajectories=2)
    order = np.argsort(coords[:, 0, 2])
    np.testing.assert_allclose(profile, zonal[order], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, spread, rtol=1e-6)
    np.testing.assert_allclose(mean, fields.mean(axis=(0, 1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.sin(latitudes), coords[order, 0, 2], atol=1e-12)

    dm = PDEDataModule(dataset="diffusion_sphere", root=str(tiny_root), num_train=2, background="zonal_mean")
    spec = dm.field_spec
    bg = ZonalProfile.from_dict(spec.extra["background"])
    batch = next(iter(dm.eval_dataloader("train", max_samples=6)))  # 2 trajectories x 3 frames
    residual = (batch["signal"] - bg(batch["coords"])).double().reshape(6, 16, 32, 1)
    assert residual.mean(dim=(0, 2)).abs().max() < 1e-5  # zero zonal mean on every row
    torch.testing.assert_close(residual.pow(2).mean().sqrt().item(), 1.0, rtol=1e-4, atol=0)
    torch.testing.assert_close(
        spec.denormalize(batch["signal"]).double().reshape(2, 3, 16, 32, 1),
        torch.from_numpy(fields),
        rtol=1e-5,
        atol=1e-5,
    )

    with pytest.raises(ValueError, match="needs normalize=True"):
        PDEDataModule(
            dataset="diffusion_sphere", root=str(tiny_root), background="zonal_mean", normalize=False
        )
    with pytest.raises(ValueError, match="background must be"):
        PDEDataModule(dataset="diffusion_sphere", root=str(tiny_root), background="mean_field")
    plane = PDEDataModule(dataset="diffusion_plane", root=str(tiny_root), background="zonal_mean")
    with pytest.raises(ValueError, match="latitude-longitude grid"):
        _ = plane.field_spec
