"""The trajectory file format: resumable atomic generation, validation errors, the lazy dataset."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from enf.data.pde import PDESpec, trajectory_seed
from enf.data.pde.dataset import PDETrajectories, channel_statistics
from enf.data.pde.io import generate_split, open_trajectories, read_ic_params, read_metadata
from enf.plotting.pde import render_trajectory


def _coords(params):
    x = np.linspace(-1, 1, params["n"], dtype=np.float32)
    return np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)


def _times(params):
    return np.arange(params["num_times"], dtype=np.float32) * params["dt"]


def _simulate(params, split, seeds, calls=None):
    """u(t, x, y) = a exp(-decay t) cos(pi k x): an exact 'solver' with a random amplitude per trajectory."""
    if calls is not None:
        calls.append(list(seeds))
    coords, times = _coords(params), _times(params)
    out = []
    for s in seeds:
        a = np.random.default_rng(s).uniform(1, 2) * (1 if split == "train" else -1)
        u = a * np.exp(-params["decay"] * times)[:, None, None] * np.cos(np.pi * coords[..., 0])[None]
        out.append(u[..., None])
    return np.stack(out).astype(np.float32)


def _amplitudes(params, split, seeds):
    """The toy's initial-condition parameter: the amplitude ``a`` of each trajectory ``[n, 1]``."""
    return np.array(
        [[np.random.default_rng(s).uniform(1, 2) * (1 if split == "train" else -1)] for s in seeds]
    )


def make_spec(calls=None, fail_after=None, with_ic: bool = False) -> PDESpec:
    state = {"n": 0}

    def simulate(params, split, seeds):
        state["n"] += 1
        if fail_after is not None and state["n"] > fail_after:
            raise KeyboardInterrupt("simulated interruption")
        return _simulate(params, split, seeds, calls)

    return PDESpec(
        name="toy",
        geometry="translation2d",
        equation="u_t = -decay u",
        channel_names=("u",),
        presets={"small": {"num_train": 5, "num_test": 3, "n": 6, "num_times": 4, "dt": 0.5, "decay": 0.3}},
        coords=_coords,
        times=_times,
        simulate=simulate,
        weights=lambda p: np.ones((p["n"], p["n"])),
        ic_params=_amplitudes if with_ic else None,
        ic_param_names=("amplitude",) if with_ic else (),
    )


def test_round_trip_values_schema_and_attributes(tmp_path):
    spec = make_spec()
    params = spec.params("small")
    path = generate_split(spec, params, split="train", out_dir=tmp_path, seed=3, chunk_size=2, progress=False)
    expected = _simulate(params, "train", [trajectory_seed(3, "train", i) for i in range(5)])
    with open_trajectories(path) as f:
        np.testing.assert_array_equal(f["fields"][:], expected)
        np.testing.assert_array_equal(f["coords"][:], _coords(params))
        np.testing.assert_allclose(f["times"][:], [0, 0.5, 1.0, 1.5])
        assert f["fields"].chunks == (1, 4, 6, 6, 1)
    meta = read_metadata(path)
    assert meta["parameters"]["decay"] == 0.3 and meta["seed"] == 3 and meta["geometry"] == "translation2d"
    assert meta["channel_names"] == ["u"] and meta["created"] != "in progress"
    assert not list(tmp_path.glob("*.partial"))


def test_chunking_does_not_change_results_and_seed_does(tmp_path):
    spec = make_spec()
    params = spec.params("small")
    a = generate_split(
        spec, params, split="train", out_dir=tmp_path / "a", seed=1, chunk_size=1, progress=False
    )
    b = generate_split(
        spec, params, split="train", out_dir=tmp_path / "b", seed=1, chunk_size=4, progress=False
    )
    c = generate_split(
        spec, params, split="train", out_dir=tmp_path / "c", seed=2, chunk_size=4, progress=False
    )
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        np.testing.assert_array_equal(fa["fields"][:], fb["fields"][:])
        assert not np.allclose(fa["fields"][:], fc["fields"][:])


def test_interrupted_generation_resumes_where_it_stopped(tmp_path):
    spec_fail = make_spec(fail_after=1)
    params = spec_fail.params("small")
    with pytest.raises(KeyboardInterrupt):
        generate_split(
            spec_fail, params, split="train", out_dir=tmp_path, seed=0, chunk_size=2, progress=False
        )
    assert not (tmp_path / "train.h5").exists() and (tmp_path / "train.h5.partial").exists()
    with pytest.raises(ValueError, match="did not finish"):
        PDETrajectories(tmp_path / "train.h5")
    calls: list = []
    path = generate_split(
        make_spec(calls), params, split="train", out_dir=tmp_path, seed=0, chunk_size=2, progress=False
    )
    assert [len(c) for c in calls] == [2, 1]  # only trajectories 2..4 were simulated again
    expected = _simulate(params, "train", [trajectory_seed(0, "train", i) for i in range(5)])
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["fields"][:], expected)


def test_finished_file_is_reused_only_when_parameters_match(tmp_path):
    calls: list = []
    spec = make_spec(calls)
    generate_split(spec, spec.params("small"), split="test", out_dir=tmp_path, seed=0, progress=False)
    generate_split(spec, spec.params("small"), split="test", out_dir=tmp_path, seed=0, progress=False)
    assert len(calls) == 1
    generate_split(
        spec, spec.params("small", decay=0.5), split="test", out_dir=tmp_path, seed=0, progress=False
    )
    assert len(calls) == 2 and read_metadata(tmp_path / "test.h5")["parameters"]["decay"] == 0.5


def test_unknown_preset_or_parameter_is_an_error():
    spec = make_spec()
    with pytest.raises(ValueError, match="unknown preset 'big'"):
        spec.params("big")
    with pytest.raises(ValueError, match="unknown parameter"):
        spec.params("small", viscosity=1.0)


def test_corrupt_truncated_and_wrong_schema_files_name_the_file(tmp_path):
    spec = make_spec()
    path = generate_split(spec, spec.params("small"), split="train", out_dir=tmp_path, seed=0, progress=False)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.h5"):
        PDETrajectories(truncated)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        PDETrajectories(tmp_path / "missing.h5")
    for mutate, message in [
        (lambda f: f.__delitem__("times"), "missing dataset 'times'"),
        (lambda f: f.attrs.__delitem__("seed"), r"missing attribute\(s\) \['seed'\]"),
        (
            lambda f: (f.__delitem__("coords"), f.create_dataset("coords", data=np.zeros((5, 6, 2)))),
            "do not match",
        ),
    ]:
        bad = tmp_path / "bad.h5"
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "r+") as f:
            mutate(f)
        with pytest.raises(ValueError, match=message) as info:
            open_trajectories(bad)
        assert "bad.h5" in str(info.value)


@pytest.fixture
def toy_file(tmp_path):
    spec = make_spec()
    return generate_split(spec, spec.params("small"), split="train", out_dir=tmp_path, seed=0, progress=False)


def test_dataset_windows_masks_and_normalisation(toy_file):
    full = PDETrajectories(toy_file)
    item = full[1]
    with h5py.File(toy_file) as f:
        raw = f["fields"][1]
    np.testing.assert_array_equal(item["fields"].numpy(), raw.reshape(4, 36, 1))
    assert torch.equal(item["coords"], torch.from_numpy(_coords({"n": 6}).reshape(36, 2)))

    extrap = PDETrajectories(toy_file, time_window=(2, None))
    np.testing.assert_allclose(extrap.times.numpy(), [1.0, 1.5])
    np.testing.assert_array_equal(extrap[1]["fields"].numpy(), raw[2:].reshape(2, 36, 1))
    with pytest.raises(ValueError, match="selects no frame"):
        PDETrajectories(toy_file, time_window=(4, None))

    sparse = PDETrajectories(toy_file, observed_fraction=0.25, mask_seed=7)
    m1, m2 = sparse[0]["mask"], sparse[0]["mask"]
    assert torch.equal(m1, m2) and int(m1.sum()) == 9
    assert not torch.equal(m1, sparse[1]["mask"])
    assert not torch.equal(m1, PDETrajectories(toy_file, observed_fraction=0.25, mask_seed=8)[0]["mask"])

    mean, std = channel_statistics(toy_file)
    with h5py.File(toy_file) as f:
        allv = f["fields"][:].astype(np.float64)
    np.testing.assert_allclose(mean, [allv.mean()], rtol=1e-5)
    np.testing.assert_allclose(std, [allv.std()], rtol=1e-5)
    normed = PDETrajectories(toy_file, normalize=(mean, std))
    np.testing.assert_allclose(normed[1]["fields"].numpy(), (raw.reshape(4, 36, 1) - mean) / std, rtol=1e-5)


def test_test_split_uses_its_own_distribution(tmp_path):
    spec = make_spec()
    path = generate_split(spec, spec.params("small"), split="test", out_dir=tmp_path, seed=0, progress=False)
    with h5py.File(path) as f:
        amplitude = f["fields"][:, 0, 0, 0, 0] / np.cos(np.pi * -1.0)  # u(0, x=-1) = a cos(-pi)
    assert (amplitude < 0).all()  # the toy generator draws negative amplitudes for the test split


def test_render_png_and_gif(toy_file, tmp_path):
    from PIL import Image

    png = render_trajectory(toy_file, tmp_path / "traj.png", index=2)
    arr = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert arr.std() > 5  # a real picture, not a blank canvas
    gif = render_trajectory(toy_file, tmp_path / "traj.gif", index=2)
    assert Image.open(gif).n_frames == 4
    with pytest.raises(ValueError, match="out of range"):
        render_trajectory(toy_file, tmp_path / "x.png", index=99)


def test_ic_params_round_trip_match_the_fields_and_survive_resume(tmp_path):
    """Stored amplitudes == u(t=0, x=-1) / cos(-pi) of the stored fields, also across an interrupted run."""
    params = make_spec().params("small")
    with pytest.raises(KeyboardInterrupt):
        generate_split(
            make_spec(fail_after=1, with_ic=True),
            params,
            split="test",
            out_dir=tmp_path,
            seed=0,
            chunk_size=2,
            progress=False,
        )
    path = generate_split(
        make_spec(with_ic=True), params, split="test", out_dir=tmp_path, seed=0, chunk_size=2, progress=False
    )
    names, ic = read_ic_params(path)
    assert names == ["amplitude"] and ic.shape == (3, 1) and ic.dtype == np.float32
    with h5py.File(path) as f:
        amplitude = f["fields"][:, 0, 0, 0, 0] / np.cos(np.pi * -1.0)
    np.testing.assert_allclose(ic[:, 0], amplitude, rtol=1e-6)
    assert (ic < 0).all() and len(np.unique(ic)) == 3  # test split: negative, one per trajectory
    data = PDETrajectories(path, num_trajectories=2)
    assert data.ic_param_names == ["amplitude"]
    np.testing.assert_array_equal(data.ic_params, ic[:2])


def test_missing_or_inconsistent_ic_params_are_clear_errors(tmp_path, toy_file):
    assert PDETrajectories(toy_file).ic_params is None
    with pytest.raises(ValueError, match="no 'ic_params'") as info:
        read_ic_params(toy_file)
    assert str(toy_file) in str(info.value)
    path = generate_split(
        make_spec(with_ic=True),
        make_spec().params("small"),
        split="train",
        out_dir=tmp_path / "ic",
        seed=0,
        progress=False,
    )
    for mutate, message in [
        (lambda f: f["ic_params"].attrs.__setitem__("ic_param_names", ["a", "b"]), "ic_param_names"),
        (
            lambda f: (f.__delitem__("ic_params"), f.create_dataset("ic_params", data=np.zeros((4, 1)))),
            "do not match fields",
        ),
    ]:
        bad = tmp_path / "bad.h5"
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "r+") as f:
            mutate(f)
        with pytest.raises(ValueError, match=message) as info:
            read_ic_params(bad)
        assert "bad.h5" in str(info.value)


def test_ic_params_spec_checks(tmp_path):
    with pytest.raises(ValueError, match="go together"):
        replace(make_spec(), ic_param_names=("amplitude",))
    with pytest.raises(ValueError, match="distinct"):
        replace(make_spec(with_ic=True), ic_param_names=("a", "a"))
    wrong = replace(make_spec(with_ic=True), ic_param_names=("a", "b"))  # 1 column drawn
    with pytest.raises(RuntimeError, match="ic_params returned"):
        generate_split(wrong, wrong.params("small"), split="train", out_dir=tmp_path, seed=0, progress=False)


def _flip_byte_in_chunk(path, key: str, chunk: int = 0) -> None:
    """Flip one byte in the middle of stored chunk ``chunk`` of dataset ``key`` (on disk, behind h5py)."""
    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info(chunk)
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset + info.size // 2)
        byte = raw.read(1)
        raw.seek(info.byte_offset + info.size // 2)
        raw.write(bytes([byte[0] ^ 0x5A]))


@pytest.mark.parametrize("key", ["fields", "times", "coords"])
def test_corrupt_chunks_fail_their_checksum_with_the_file_named(tiny_root, tmp_path, key: str) -> None:
    """Every dataset the generators write carries HDF5's Fletcher-32 checksum: a flipped byte in a field
    chunk, a time entry or a coordinate is an error naming the file, not a silently different dataset."""
    import shutil

    from enf.data.pde import channel_statistics
    from enf.data.pde.dataset import PDETrajectories

    path = tmp_path / "train.h5"
    shutil.copy(tiny_root / "diffusion_plane" / "train.h5", path)
    with h5py.File(path, "r") as f:
        assert all(f[k].fletcher32 for k in ("fields", "coords", "times"))
        clean = np.asarray(f["fields"][1])
    _flip_byte_in_chunk(path, key)
    with pytest.raises(ValueError, match=rf"train.h5: dataset '/{key}' could not be read .*corrupt"):
        if key == "fields":
            channel_statistics(path)
        else:
            PDETrajectories(path)
    if key == "fields":  # the other trajectories' chunks still read, and unchanged
        data = PDETrajectories(path)
        np.testing.assert_array_equal(data[1]["fields"].numpy().reshape(clean.shape), clean)
        with pytest.raises(ValueError, match="could not be read"):
            data[0]


def test_a_time_entry_edited_through_h5py_is_refused(tiny_root, tmp_path) -> None:
    """Rewritten through h5py the chunk checksum is valid again; the file's grid_sha256 still catches it."""
    import shutil

    path = tmp_path / "train.h5"
    shutil.copy(tiny_root / "diffusion_plane" / "train.h5", path)
    PDETrajectories(path)
    with h5py.File(path, "r+") as f:
        f["times"][1] = 24.0
    with pytest.raises(
        ValueError, match="train.h5: its coordinates, times or weights changed after it was written"
    ):
        PDETrajectories(path)
