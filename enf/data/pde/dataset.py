"""PDE datasets read lazily from HDF5: whole trajectories (``PDETrajectories``) or single frames (``PDEFrames``).

``PDETrajectories`` yields one trajectory per item (time windows, sparse masks, normalisation);
``PDEFrames`` is a view over it in which every ``(trajectory, frame)`` pair is one signal of the field
contract (:mod:`enf.data.keys`), read one frame at a time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from enf.data.keys import COORDS, FRAME, INDEX, MASK, SIGNAL, TIME, TRAJECTORY
from enf.data.pde.io import open_trajectories, read_array

__all__ = ["PDEFrames", "PDETrajectories", "channel_statistics", "zonal_statistics"]

log = logging.getLogger(__name__)


def channel_statistics(
    path: str | Path, *, num_trajectories: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``[C]`` over the first ``num_trajectories`` trajectories (all:
    ``None``), all their times and grid points.

    Streams one trajectory at a time (quadrature weights are not applied: plain grid averages).
    """
    with open_trajectories(path) as f:
        fields = f["fields"]
        count, total, total_sq = 0, 0.0, 0.0
        stop = fields.shape[0] if num_trajectories is None else min(num_trajectories, fields.shape[0])
        for i in range(stop):
            x = read_array(fields, i, path=path).astype(np.float64).reshape(-1, fields.shape[-1])
            if not np.isfinite(x).all():
                raise ValueError(
                    f"{path}: trajectory {i} contains NaN or inf; regenerate the file (enf data generate ...)"
                )
            count += x.shape[0]
            total = total + x.sum(0)
            total_sq = total_sq + np.square(x).sum(0)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32)


def zonal_statistics(
    path: str | Path, *, num_trajectories: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The zonal mean of a latitude-longitude sphere file and the spread around it.

    Over the first ``num_trajectories`` trajectories (all: ``None``), all their times and longitudes:
    ``(mean [C], std [C], latitudes [R], zonal [R, C])`` with ``mean`` the channel mean, ``zonal`` the mean of
    every grid row (latitude ``latitudes``, radians, increasing) and ``std`` the root-mean-square deviation
    of the fields from their row's zonal mean (plain grid averages, as :func:`channel_statistics`).

    Raises ``ValueError`` when the stored grid is not ``[R, L, 3]`` unit vectors with one latitude per row.
    """
    with open_trajectories(path) as f:
        coords = read_array(f["coords"], path=path).astype(np.float64)
        fields = f["fields"]
        if coords.ndim != 3 or coords.shape[-1] != 3:
            raise ValueError(
                f"{path}: a zonal mean needs a latitude-longitude grid of unit vectors [R, L, 3], got coords "
                f"of shape {coords.shape}"
            )
        z = coords[..., 2]
        if np.abs(z - z[:, :1]).max() > 1e-5:
            raise ValueError(f"{path}: the grid rows are not circles of latitude; no zonal mean")
        stop = fields.shape[0] if num_trajectories is None else min(num_trajectories, fields.shape[0])
        count, row_total = 0, 0.0
        for i in range(stop):
            x = read_array(fields, i, path=path).astype(np.float64)  # [T, R, L, C]
            if not np.isfinite(x).all():
                raise ValueError(
                    f"{path}: trajectory {i} contains NaN or inf; regenerate the file (enf data generate ...)"
                )
            count += x.shape[0] * x.shape[2]
            row_total = row_total + x.sum(axis=(0, 2))  # [R, C]
        zonal = row_total / count
        total_sq = 0.0
        for i in range(stop):
            x = read_array(fields, i, path=path).astype(np.float64)
            total_sq = total_sq + np.square(x - zonal[None, :, None]).sum(axis=(0, 1, 2))
    mean = zonal.mean(axis=0)
    std = np.sqrt(total_sq / (count * coords.shape[0]))
    latitudes = np.arcsin(np.clip(z[:, 0], -1.0, 1.0))
    order = np.argsort(latitudes)
    return (
        mean.astype(np.float32),
        np.maximum(std, 1e-8).astype(np.float32),
        latitudes[order],
        zonal[order],
    )


class PDETrajectories(Dataset):
    """Trajectories of one split file, read lazily (one trajectory per item, HDF5 handle per worker).

    Args:
        path: a ``<split>.h5`` file written by ``enf data generate``.
        time_window: ``(start, stop)`` frame indices to return (python slice semantics; ``None``: all).
            E.g. ``(0, 10)`` for the training horizon and ``(10, None)`` for extrapolation.
        observed_fraction: if set, also return ``mask [N]`` marking a seeded random subset of grid points
            (sparse observations of the initial state), the same for a given item and ``mask_seed``.
        mask_seed: seed of the observation masks.
        normalize: ``(mean [C], std [C])`` to standardise fields with (e.g. from :func:`channel_statistics`
            of the training split), or ``None``.
        resolution: ``"stored"`` (``fields``/``coords``) or ``"full"`` (``fields_full``/``coords_full``,
            for super-resolution evaluation of generators that store both).
        num_trajectories: keep only the first ``num_trajectories`` trajectories (all if the file has fewer).
        first_trajectory: skip the file's first ``first_trajectory`` trajectories (item ``i`` is the file's
            trajectory ``first_trajectory + i``; e.g. a validation split at the end of the training file).

    Items: ``coords [N, coord_dim]`` (grid flattened row-major), ``fields [T, N, C]``, ``times [T]``,
    ``index`` and optionally ``mask [N]`` (bool). :meth:`read_frame` reads a single frame.

    Attributes:
        weights: float32 ``[N]``, the grid's quadrature (area or volume) weights where the file stores them
            (``weights``, or ``weights_full`` at full resolution: the sphere and ball generators), else
            ``None``.
        ic_params: float32 ``[num_trajectories, P]``, the file's per-trajectory initial-condition
            parameters (row ``i`` for item ``i``; e.g. a planar source's position and mass), or ``None``
            when the file stores none (see :func:`enf.data.pde.io.read_ic_params` for a raising reader).
        ic_param_names: the ``P`` column names of ``ic_params``, or ``None``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        time_window: tuple[int, int | None] | None = None,
        observed_fraction: float | None = None,
        mask_seed: int = 0,
        normalize: tuple[np.ndarray, np.ndarray] | None = None,
        resolution: str = "stored",
        num_trajectories: int | None = None,
        first_trajectory: int = 0,
    ) -> None:
        self.path = Path(path)
        if resolution not in ("stored", "full"):
            raise ValueError(f"resolution must be 'stored' or 'full', got {resolution!r}")
        suffix = "" if resolution == "stored" else "_full"
        self.fields_key, coords_key = "fields" + suffix, "coords" + suffix
        with open_trajectories(self.path) as f:
            if self.fields_key not in f or coords_key not in f:
                raise ValueError(
                    f"{self.path}: no {self.fields_key!r}/{coords_key!r} (this generator stores one resolution)"
                )
            self.num_trajectories, self.num_times = f[self.fields_key].shape[:2]
            self.grid_shape = tuple(f[coords_key].shape[:-1])
            self.num_channels = f[self.fields_key].shape[-1]
            self.geometry = str(f.attrs["geometry"])
            self.channel_names = [str(c) for c in f.attrs["channel_names"]]
            coords = read_array(f[coords_key], path=self.path).astype(np.float32)
            times = read_array(f["times"], path=self.path).astype(np.float32)
            weights_key = "weights" + suffix
            weights = (
                read_array(f[weights_key], path=self.path).astype(np.float32).reshape(-1)
                if weights_key in f
                else None
            )
            ic_params, ic_param_names = None, None
            if "ic_params" in f:
                ic_params = read_array(f["ic_params"], path=self.path).astype(np.float32)
                ic_param_names = [str(n) for n in f["ic_params"].attrs["ic_param_names"]]
        if isinstance(first_trajectory, bool) or not isinstance(first_trajectory, int):
            raise ValueError(f"first_trajectory must be an int, got {first_trajectory!r}")
        if not 0 <= first_trajectory < self.num_trajectories:
            raise ValueError(
                f"{self.path}: first_trajectory {first_trajectory} is outside its {self.num_trajectories} "
                "trajectories"
            )
        self.first_trajectory = first_trajectory
        self.num_trajectories -= first_trajectory
        if ic_params is not None:
            ic_params = ic_params[first_trajectory:]
        start, stop = (0, None) if time_window is None else time_window
        frames = range(self.num_times)[slice(start, stop)]
        if len(frames) == 0:
            raise ValueError(f"{self.path}: time_window {time_window} selects no frame of {self.num_times}")
        self.frame_slice = slice(frames.start, frames.stop)
        self.num_frames = len(frames)
        if num_trajectories is not None:
            if (
                isinstance(num_trajectories, bool)
                or not isinstance(num_trajectories, int)
                or num_trajectories < 1
            ):
                raise ValueError(f"num_trajectories must be a positive int or None, got {num_trajectories!r}")
            if num_trajectories > self.num_trajectories:
                log.warning(
                    "%s holds %d trajectories; num_trajectories=%d keeps all of them",
                    self.path,
                    self.num_trajectories,
                    num_trajectories,
                )
            self.num_trajectories = min(self.num_trajectories, num_trajectories)
        self.ic_params = None if ic_params is None else ic_params[: self.num_trajectories]
        self.ic_param_names = ic_param_names
        if observed_fraction is not None and not 0.0 < observed_fraction <= 1.0:
            raise ValueError(f"observed_fraction must be in (0, 1], got {observed_fraction}")
        self.observed_fraction = observed_fraction
        self.mask_seed = mask_seed
        if normalize is not None:
            mean, std = (np.asarray(a, dtype=np.float32).reshape(-1) for a in normalize)
            if mean.shape != (self.num_channels,) or std.shape != (self.num_channels,) or (std <= 0).any():
                raise ValueError(f"normalize needs mean and positive std of shape [{self.num_channels}]")
            normalize = (torch.from_numpy(mean), torch.from_numpy(std))
        self.normalize = normalize
        self.coords = torch.from_numpy(coords.reshape(-1, coords.shape[-1]))
        self.weights = None if weights is None else torch.from_numpy(weights)
        self.times = torch.from_numpy(times[self.frame_slice])
        self._file: h5py.File | None = None
        self._file_pid: int | None = None

    def __len__(self) -> int:
        return self.num_trajectories

    def _fields(self) -> h5py.Dataset:
        if self._file is None or self._file_pid != os.getpid():  # lazily, once per (forked) worker process
            self._file = open_trajectories(self.path)
            self._file_pid = os.getpid()
        return self._file[self.fields_key]

    def _trajectory_index(self, index: int) -> int:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"trajectory {index} out of range for {len(self)} in {self.path}")
        return index % len(self)

    def _check_finite(self, raw: np.ndarray, row: int) -> None:
        if not np.isfinite(raw).all():
            raise ValueError(
                f"{self.path}: trajectory {row} contains NaN or inf; regenerate the file (enf data generate ...)"
            )

    def _normalized(self, fields: Tensor) -> Tensor:
        if self.normalize is None:
            return fields
        return (fields - self.normalize[0]) / self.normalize[1]

    def observation_mask(self, index: int) -> Tensor:
        """bool ``[N]``: the seeded observed points of trajectory ``index`` (needs ``observed_fraction``)."""
        if self.observed_fraction is None:
            raise ValueError(f"{self.path}: observation masks need observed_fraction=..., got None")
        index = self._trajectory_index(index)
        num = self.coords.shape[0]
        gen = torch.Generator().manual_seed(self.mask_seed * 1_000_003 + self.first_trajectory + index)
        keep = torch.randperm(num, generator=gen)[: max(1, round(self.observed_fraction * num))]
        return torch.zeros(num, dtype=torch.bool).index_fill_(0, keep, True)

    def read_frame(self, index: int, frame: int) -> Tensor:
        """float32 ``[N, C]``: frame ``frame`` (counted within ``time_window``) of trajectory ``index``.

        Reads only that frame from the file (normalised if ``normalize`` was given).
        """
        index = self._trajectory_index(index)
        frame = int(frame)
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} out of range for the {self.num_frames} frames of {self.path}")
        row = self.first_trajectory + index
        raw = read_array(self._fields(), (row, self.frame_slice.start + frame), path=self.path).astype(
            np.float32
        )
        self._check_finite(raw, row)
        return self._normalized(torch.from_numpy(raw.reshape(-1, self.num_channels)))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        index = self._trajectory_index(index)
        row = self.first_trajectory + index
        raw = read_array(self._fields(), (row, self.frame_slice), path=self.path).astype(np.float32)
        self._check_finite(raw, row)
        fields = self._normalized(torch.from_numpy(raw.reshape(raw.shape[0], -1, self.num_channels)))
        item = {"coords": self.coords, "fields": fields, "times": self.times, "index": index}
        if self.observed_fraction is not None:
            item["mask"] = self.observation_mask(index)
        return item

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_file_pid"] = None  # h5py handles do not pickle; each worker reopens
        return state

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            except Exception:
                pass


class PDEFrames(Dataset):
    """Every ``(trajectory, frame)`` pair of a :class:`PDETrajectories` as one signal.

    ``len = num_trajectories * num_frames`` (frames within the trajectories' ``time_window``); item ``k``
    is frame ``k % num_frames`` of trajectory ``k // num_frames``, read alone from the file (one HDF5 handle
    per worker, as in :class:`PDETrajectories`).

    Args:
        trajectories: the trajectories (their time window, normalisation, resolution and masks apply).

    Items (:mod:`enf.data.keys`): ``coords`` float32 ``[N, coord_dim]`` (shared by all items), ``signal``
    float32 ``[N, C]``, ``index`` ``k``, ``trajectory``, ``frame`` (within the window), ``time`` (float, the
    frame's physical time) and, when ``observed_fraction`` is set, ``mask`` bool ``[N]`` (the trajectory's
    observation mask: the same points for every frame of a trajectory).
    """

    def __init__(self, trajectories: PDETrajectories) -> None:
        if not isinstance(trajectories, PDETrajectories):
            raise TypeError(f"PDEFrames needs a PDETrajectories, got {type(trajectories).__name__}")
        self.trajectories = trajectories

    @property
    def num_frames(self) -> int:
        return self.trajectories.num_frames

    @property
    def coords(self) -> Tensor:
        return self.trajectories.coords

    def __len__(self) -> int:
        return len(self.trajectories) * self.num_frames

    def locate(self, index: int) -> tuple[int, int]:
        """``(trajectory, frame)`` of item ``index``."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame item {index} out of range for {len(self)} in {self.trajectories.path}")
        return divmod(index % len(self), self.num_frames)

    def __getitem__(self, index: int) -> dict[str, Tensor | int | float]:
        trajectory, frame = self.locate(index)
        item: dict[str, Tensor | int | float] = {
            COORDS: self.trajectories.coords,
            SIGNAL: self.trajectories.read_frame(trajectory, frame),
            INDEX: trajectory * self.num_frames + frame,
            TRAJECTORY: trajectory,
            FRAME: frame,
            TIME: float(self.trajectories.times[frame]),
        }
        if self.trajectories.observed_fraction is not None:
            item[MASK] = self.trajectories.observation_mask(trajectory)
        return item

    def __repr__(self) -> str:
        t = self.trajectories
        return (
            f"PDEFrames(path={str(t.path)!r}, trajectories={len(t)}, frames={self.num_frames}, "
            f"grid={t.grid_shape}, channels={t.num_channels})"
        )
