"""``PDEFrames``: every (trajectory, frame) pair as one contract item, read one frame at a time from HDF5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enf.data import FieldSpec, collate, pixel_coords, plane_grid_to_image
from enf.data.pde import PDEFrames, PDETrajectories, channel_statistics
from enf.data.pde.io import open_trajectories
from enf.data.pde.solvers.plane import DIFFUSION_PLANE, diffusion_plane_coords


def _raw_fields(path) -> np.ndarray:
    with open_trajectories(path) as f:
        return np.asarray(f["fields"][:], dtype=np.float32)


@pytest.mark.parametrize("name", ["diffusion_plane", "diffusion_sphere"])
def test_item_k_is_frame_k_mod_t_of_trajectory_k_div_t(tiny_root, name) -> None:
    path = tiny_root / name / "train.h5"
    trajectories = PDETrajectories(path)
    frames = PDEFrames(trajectories)
    raw = _raw_fields(path)  # [3, T, *grid, C]
    num_traj, num_times = raw.shape[:2]
    assert len(frames) == num_traj * num_times == len(trajectories) * frames.num_frames
    for k in range(len(frames)):
        item = frames[k]
        i, t = divmod(k, num_times)
        assert set(item) == {"coords", "signal", "index", "trajectory", "frame", "time"}
        assert (item["index"], item["trajectory"], item["frame"]) == (k, i, t)
        assert item["time"] == float(trajectories.times[t])
        assert item["signal"].dtype == torch.float32 and item["coords"] is trajectories.coords
        np.testing.assert_array_equal(item["signal"].numpy(), raw[i, t].reshape(-1, raw.shape[-1]))
        torch.testing.assert_close(item["signal"], trajectories[i]["fields"][t], rtol=0, atol=0)
    assert torch.equal(frames[-1]["signal"], frames[len(frames) - 1]["signal"])
    with pytest.raises(IndexError, match="out of range"):
        frames[len(frames)]
    if name == "diffusion_sphere":  # unit vectors on the sphere
        torch.testing.assert_close(trajectories.coords.norm(dim=-1), torch.ones(16 * 32))


def test_read_frame_reads_one_frame_only(tiny_root, monkeypatch) -> None:
    trajectories = PDETrajectories(tiny_root / "diffusion_plane" / "train.h5", time_window=(1, 3))
    selections = []
    dataset = trajectories._fields()

    class Recorder:
        def __getitem__(self, key):
            selections.append(key)
            return dataset[key]

    monkeypatch.setattr(trajectories, "_fields", lambda: Recorder())
    frames = PDEFrames(trajectories)
    assert len(frames) == 3 * 2
    item = frames[3]  # trajectory 1, second frame of the window = stored frame 2
    assert selections == [(1, 2)]
    assert (item["trajectory"], item["frame"]) == (1, 1)
    np.testing.assert_array_equal(item["signal"].numpy(), dataset[1, 2].reshape(-1, 1))
    assert item["time"] == pytest.approx(float(DIFFUSION_PLANE.times(DIFFUSION_PLANE.params("small"))[2]))


def test_normalisation_round_trip_and_masks(tiny_root) -> None:
    path = tiny_root / "diffusion_plane" / "train.h5"
    mean, std = channel_statistics(path)
    raw = PDEFrames(PDETrajectories(path))
    frames = PDEFrames(PDETrajectories(path, normalize=(mean, std), observed_fraction=0.25))
    batch = collate([frames[k] for k in range(len(frames))])
    signal = batch["signal"].double()
    assert abs(float(signal.mean())) < 1e-5 and abs(float(signal.std(correction=0)) - 1.0) < 1e-5
    spec = FieldSpec(kind="plane", coord_dim=2, num_channels=1, mean=tuple(mean), std=tuple(std))
    expected = collate([raw[k] for k in range(len(raw))])["signal"]
    torch.testing.assert_close(
        spec.denormalize(batch["signal"]), expected, rtol=1e-5, atol=1e-5 * float(std[0])
    )
    # masks: a quarter of the points, the trajectory's mask for each of its frames, different across trajectories
    assert batch["mask"].shape == (len(frames), 256) and batch["mask"].sum(dim=1).tolist() == [64] * len(
        frames
    )
    for k in range(len(frames)):
        assert torch.equal(batch["mask"][k], frames.trajectories.observation_mask(k // frames.num_frames))
    assert not torch.equal(batch["mask"][0], batch["mask"][frames.num_frames])


def test_num_trajectories_cap_and_errors(tiny_root) -> None:
    path = tiny_root / "diffusion_plane" / "test.h5"
    capped = PDEFrames(PDETrajectories(path, num_trajectories=1))
    assert len(capped) == 4 and capped[3]["trajectory"] == 0
    assert len(PDETrajectories(path, num_trajectories=10)) == 2  # fewer stored: all of them (logged)
    with pytest.raises(ValueError, match="num_trajectories must be a positive int"):
        PDETrajectories(path, num_trajectories=0)
    with pytest.raises(TypeError, match="PDEFrames needs a PDETrajectories"):
        PDEFrames(path)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="frame 4 out of range"):
        PDETrajectories(path).read_frame(0, 4)
    with pytest.raises(ValueError, match="observed_fraction"):
        PDETrajectories(path).observation_mask(0)


def test_planar_pde_grid_and_pixels_share_one_orientation() -> None:
    params = DIFFUSION_PLANE.params("small", resolution=5)
    coords = diffusion_plane_coords(params)  # [nx, ny, 2], coords[i, j] = (x_i, y_j)
    image = torch.from_numpy(plane_grid_to_image(coords).copy())  # [ny, nx, 2] in pixel layout
    scale = float(np.abs(coords).max())
    torch.testing.assert_close(image.reshape(-1, 2) / scale, pixel_coords(5, 5), rtol=0, atol=1e-6)
    # negative control: the stored grid flattened as it is does not follow the pixel convention
    assert not torch.allclose(torch.from_numpy(coords).reshape(-1, 2) / scale, pixel_coords(5, 5))
