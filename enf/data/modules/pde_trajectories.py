"""``PDETrajectoryDataModule``: whole trajectories of a generated PDE dataset, for forecasting.

Same files, options and normalisation as :class:`~enf.data.modules.pde_frames.PDEDataModule`; every item is one
trajectory: ``coords [N, coord_dim]``, ``signal [T, N, C]`` (the frames of ``time_window``), ``times [T]``,
``index`` (the trajectory) and, with ``observed_fraction``, ``mask [N]`` (the observed points of its
initial state). Batches add a leading ``B``.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset, Subset

from enf.data import keys
from enf.data.modules.pde_frames import PDEDataModule
from enf.data.pde.dataset import PDETrajectories

__all__ = ["PDETrajectoryDataModule", "TrajectorySignals"]


class TrajectorySignals(Dataset):
    """A :class:`PDETrajectories` with items in the keys of :mod:`enf.data.keys` (``signal [T, N, C]``)."""

    def __init__(self, trajectories: PDETrajectories) -> None:
        if not isinstance(trajectories, PDETrajectories):
            raise TypeError(f"TrajectorySignals needs a PDETrajectories, got {type(trajectories).__name__}")
        self.trajectories = trajectories

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def num_frames(self) -> int:
        return self.trajectories.num_frames

    def __getitem__(self, index: int) -> dict:
        item = self.trajectories[index]
        out = {
            keys.COORDS: item["coords"],
            keys.SIGNAL: item["fields"],
            keys.TIMES: item["times"],
            keys.INDEX: item["index"],
        }
        if "mask" in item:
            out[keys.MASK] = item["mask"]
        return out

    def __repr__(self) -> str:
        t = self.trajectories
        return (
            f"TrajectorySignals(path={str(t.path)!r}, trajectories={len(t)}, frames={t.num_frames}, "
            f"grid={t.grid_shape}, channels={t.num_channels})"
        )


class PDETrajectoryDataModule(PDEDataModule):
    """Trajectories of the PDE dataset ``dataset`` (arguments as :class:`PDEDataModule`).

    ``batch_size`` counts trajectories. :meth:`trajectory_loader` also gives loaders at the files'
    full resolution (super-resolution evaluation) and with sparse initial states, for any split.
    """

    def dataset(self, split: str) -> TrajectorySignals:
        if split not in self._frames:
            self._frames[split] = TrajectorySignals(self.trajectories(split))
        return self._frames[split]

    @property
    def num_frames(self) -> int:
        """Frames per trajectory (within ``time_window``)."""
        return self.trajectories("train").num_frames

    def has_full_resolution(self) -> bool:
        """Whether the files also store full-resolution fields (``fields_full``, e.g. shallow water)."""
        from enf.data.pde.io import open_trajectories

        self._ensure_files()
        with open_trajectories(self.path("test")) as f:
            return "fields_full" in f and "coords_full" in f

    def trajectory_loader(
        self,
        split: str,
        *,
        max_samples: int | None = None,
        resolution: str | None = None,
        observed_fraction: float | None = None,
        mask_seed: int = 0,
    ) -> DataLoader:
        """Unshuffled loader over the trajectories of ``split``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            max_samples: keep the first ``max_samples`` trajectories.
            resolution: ``"stored"`` or ``"full"`` (``None``: this module's ``resolution``).
            observed_fraction: items carry ``mask [N]`` observing this fraction of the points (``None``:
                this module's setting).
            mask_seed: seed of those masks.
        """
        resolution = resolution or self.resolution
        fraction = self.observed_fraction if observed_fraction is None else observed_fraction
        if resolution == self.resolution and fraction == self.observed_fraction and mask_seed == 0:
            dataset: Dataset = self.dataset(split)
        else:
            self._ensure_files()
            dataset = TrajectorySignals(
                PDETrajectories(
                    self.path(split),
                    time_window=self.time_window,
                    observed_fraction=fraction,
                    mask_seed=mask_seed,
                    normalize=self.statistics,
                    resolution=resolution,
                    **self.trajectory_range(split),
                )
            )
        if max_samples is not None and max_samples < len(dataset):
            dataset = Subset(dataset, range(max_samples))
        return self._loader(dataset, batch_size=self.eval_batch_size, shuffle=False)
