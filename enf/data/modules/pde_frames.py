"""``PDEDataModule``: the frames of a generated PDE dataset as a :class:`~enf.data.modules.field.FieldDataModule`.

Files live at ``<root>/<dataset>/{train,test}.h5`` (written by ``enf data generate``). Every
``(trajectory, frame)`` pair is one signal (:class:`~enf.data.pde.dataset.PDEFrames`); batches hold
``coords [B, N, coord_dim]``, ``signal [B, N, C]``, ``index [B]``, ``trajectory [B]``, ``frame [B]``,
``time [B]`` and, with ``observed_fraction``, ``mask [B, N]``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.fabric.utilities.rank_zero import rank_zero_only

from enf.data.field import FieldKind, FieldSpec
from enf.data.modules.field import FieldDataModule
from enf.data.pde import get_spec, spec_names
from enf.data.pde.dataset import PDEFrames, PDETrajectories, channel_statistics, zonal_statistics

__all__ = ["GEOMETRY_KINDS", "PDEDataModule"]

log = logging.getLogger(__name__)

#: file ``geometry`` attribute -> ``FieldSpec.kind``
GEOMETRY_KINDS: dict[str, FieldKind] = {
    "translation2d": "plane",
    "absolute2d": "plane",
    "isotropic2d": "plane",
    "se2": "plane",
    "torus2d": "torus",
    "sphere": "sphere",
    "sphere_axial": "sphere",
    "absolute_sphere": "sphere",
    "ball": "ball",
}
SPLITS = ("train", "test")
_WAIT_FOR_FILES_S = 3600.0  # how long other ranks wait for rank 0 to generate missing files


class PDEDataModule(FieldDataModule):
    """Frames of the PDE dataset ``dataset`` for field fitting.

    Args:
        dataset: a PDE dataset name (:func:`enf.data.pde.spec_names`), e.g. ``"diffusion_plane"``.
        root: data root; the files are ``<root>/<dataset>/{train,test}.h5``.
        generate: a preset name (e.g. ``"small"``): generate the files that are missing with it (in
            ``prepare_data``, on rank 0). ``None``: a missing file is an error that says how to generate it.
        generate_options: preset parameter overrides for the generation (like ``enf data generate --set``).
        seed: generation seed, also the seed of the training-set shuffle.
        time_window: ``(start, stop)`` frame indices to keep (python slice semantics; ``None``: all).
        normalize: standardise every channel with the mean/std of the training trajectories actually used
            (the first ``num_train`` of the train file, all their times), for every split; recorded in
            ``field_spec.mean``/``std`` so metrics can undo it.
        background: ``"none"``, or ``"zonal_mean"`` (latitude-longitude sphere data): the decoder adds the
            training trajectories' zonal mean (:class:`enf.nn.ZonalProfile`, recorded in
            ``field_spec.extra["background"]``) and its latents encode the deviations from it; ``normalize``
            then divides by the spread around the zonal mean instead of the channel's standard deviation.
            Needs ``normalize`` and a geometry under which the profile is invariant (``sphere_axial``).
        num_train: train on the first ``num_train`` trajectories of the train file (``None``: all but the
            validation ones).
        num_val: validation trajectories (model selection, ``best.ckpt``): the **last** ``num_val`` of the
            train file, never trained on and distinct from the test file (``None``: one eighth of the train
            file, at least 1). ``num_train + num_val`` may not exceed the train file.
        num_test: keep only the first ``num_test`` test trajectories.
        resolution: ``"stored"`` or ``"full"`` (the full-resolution fields of generators that store both).
        observed_fraction: if set, items carry ``mask [N]``, a seeded random subset of observed points.
        batch_size: frames per training batch.
        eval_batch_size: frames per validation/test/evaluation batch (default: ``batch_size``).
        num_workers: DataLoader worker processes (0: load in the main process).
        allow_other_generation: use present files although they were generated with other parameters than
            ``generate`` asks for, or train and test with different PDE parameters (a warning); by default
            that is an error.
    """

    def __init__(
        self,
        *,
        dataset: str,
        root: str = "data",
        generate: str | None = None,
        generate_options: dict[str, Any] | None = None,
        seed: int = 0,
        time_window: tuple[int, int | None] | None = None,
        normalize: bool = True,
        background: Literal["none", "zonal_mean"] = "none",
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        resolution: Literal["stored", "full"] = "stored",
        observed_fraction: float | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        allow_other_generation: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        if dataset not in spec_names():
            raise ValueError(f"unknown PDE dataset {dataset!r}; choose one of {spec_names()}")
        if generate is None and generate_options:
            raise ValueError("generate_options needs generate=<preset>, e.g. generate='small'")
        if generate is not None:
            get_spec(dataset).params(generate, **(generate_options or {}))  # unknown preset/keys: ValueError
        if resolution not in ("stored", "full"):
            raise ValueError(f"resolution must be 'stored' or 'full', got {resolution!r}")
        if observed_fraction is not None and not 0.0 < observed_fraction <= 1.0:
            raise ValueError(f"observed_fraction must be in (0, 1], got {observed_fraction}")
        if background not in ("none", "zonal_mean"):
            raise ValueError(f"background must be 'none' or 'zonal_mean', got {background!r}")
        if background != "none" and not normalize:
            raise ValueError(
                f"background {background!r} needs normalize=True (the profile is stored normalised)"
            )
        for label, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{label} must be a positive int or None, got {value!r}")
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.root = Path(root)
        self.generate = generate
        self.generate_options = dict(generate_options or {})
        self._checked_present = False
        self.allow_other_generation = allow_other_generation
        self.time_window = None if time_window is None else tuple(time_window)
        self.normalize = normalize
        self.background = background
        self._zonal: tuple[np.ndarray, np.ndarray] | None = None
        self.num_train = num_train
        self.num_val = num_val
        self.num_test = num_test
        self._split_sizes: tuple[int, int, int] | None = None
        self.resolution = resolution
        self.observed_fraction = observed_fraction
        self._statistics: tuple[np.ndarray, np.ndarray] | None = None
        self._trajectories: dict[str, PDETrajectories] = {}
        self._frames: dict[str, PDEFrames] = {}

    # ------------------------------------------------------------------------------------------ files
    def path(self, split: str) -> Path:
        """``<root>/<dataset>/<split>.h5`` (the validation split lives at the end of ``train.h5``)."""
        if split == "val":
            split = "train"
        if split not in SPLITS:
            raise ValueError(
                f"unknown split {split!r} of {self.dataset_name}; choose one of {[*SPLITS, 'val']}"
            )
        return self.root / self.dataset_name / f"{split}.h5"

    @property
    def split_sizes(self) -> tuple[int, int, int]:
        """``(num_train, num_val, first_val)``: training trajectories used (the file's first ones), validation
        trajectories and the file index of the first of them (the train file's last ``num_val``)."""
        if self._split_sizes is None:
            from enf.data.pde.io import open_trajectories

            self._ensure_files()
            with open_trajectories(self.path("train")) as f:
                total = int(f["fields"].shape[0])
            num_val = self.num_val if self.num_val is not None else max(1, total // 8)
            num_train = self.num_train if self.num_train is not None else total - num_val
            if num_train < 1 or num_train + num_val > total:
                raise ValueError(
                    f"{self.path('train')} holds {total} trajectories: num_train {num_train} + num_val "
                    f"{num_val} validation trajectories (taken from its end) do not fit; generate more (e.g. "
                    f"generate_options: {{num_train: {max(num_train, 1) + num_val}}} into an empty root) or "
                    "lower num_train / num_val"
                )
            self._split_sizes = (num_train, num_val, total - num_val)
        return self._split_sizes

    def _generate_command(self) -> str:
        seed = f" --seed {self.seed}" if self.seed != 0 else ""
        out = self.root / self.dataset_name
        return f"enf data generate {self.dataset_name} --preset {self.generate or 'small'} --out {out}{seed}"

    def _generate_missing(self) -> None:
        from enf.data.pde.io import generate_split

        spec = get_spec(self.dataset_name)
        params = spec.params(self.generate, **self.generate_options)
        for split in SPLITS:
            if self.path(split).is_file():
                continue
            log.info(
                "%s is missing: generating %s/%s (preset %r, seed %d%s)",
                self.path(split),
                self.dataset_name,
                split,
                self.generate,
                self.seed,
                f", overrides {self.generate_options}" if self.generate_options else "",
            )
            try:
                generate_split(spec, params, split=split, out_dir=self.path(split).parent, seed=self.seed)
            except ImportError as err:  # an optional solver (torch-harmonics, Dedalus) is missing
                hint = "" if "install" in str(err) else ' (pip install -e ".[pde]" for the sphere generators)'
                raise ImportError(f"generating {self.dataset_name}: {err}{hint}") from err
            log.info("wrote %s", self.path(split))

    def _missing(self) -> list[Path]:
        return [self.path(s) for s in SPLITS if not self.path(s).is_file()]

    def _check_present_files(self) -> None:
        """Once per module: refuse present files that are not what the config asks for (with ``generate``:
        other generation parameters or seed) or that disagree with each other (train and test generated with
        other PDE parameters); with ``allow_other_generation`` only warn."""
        if self._checked_present:
            return
        from enf.data.pde.io import generation_mismatch, read_metadata

        present = [s for s in SPLITS if self.path(s).is_file()]
        diffs: list[str] = []
        try:
            if self.generate is not None:
                spec = get_spec(self.dataset_name)
                params = spec.params(self.generate, **self.generate_options)
                for split in present:
                    diff = generation_mismatch(self.path(split), spec, params, seed=self.seed, split=split)
                    if diff is not None:
                        diffs.append(
                            f"{self.path(split)} differs from what generate={self.generate!r} would write ({diff})"
                        )
            if len(present) == len(SPLITS):
                meta = {s: read_metadata(self.path(s)) for s in SPLITS}
                counts = ("num_train", "num_test")
                a, b = ({k: v for k, v in meta[s]["parameters"].items() if k not in counts} for s in SPLITS)
                differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                for key in ("generator", "generator_version"):
                    if str(meta["train"].get(key)) != str(meta["test"].get(key)):
                        differ.append(key)
                if differ:
                    detail = ", ".join(
                        f"{k}: train {a.get(k, meta['train'].get(k))}, test {b.get(k, meta['test'].get(k))}"
                        for k in differ
                    )
                    diffs.append(
                        f"{self.path('train')} and {self.path('test')} were generated differently ({detail})"
                    )
        except (OSError, ValueError):
            self._checked_present = True
            return  # unreadable: reading it later fails with its own message
        self._checked_present = True
        if not diffs:
            return
        if self.allow_other_generation:
            for diff in diffs:
                log.warning("%s; used as it is (allow_other_generation)", diff)
            return
        raise ValueError(
            "; ".join(diffs)
            + ". Delete the file(s) or choose another root to generate the requested data, or "
            "set data.init_args.allow_other_generation true to use them as they are"
        )

    def _ensure_files(self, *, may_generate: bool | None = None) -> None:
        """Generate missing files (with ``generate``; by default on rank 0), wait for them, or raise."""
        self._check_present_files()
        if not self._missing():
            return
        if self.generate is None:
            raise FileNotFoundError(
                f"PDE dataset file {self._missing()[0]} does not exist; generate it with "
                f"`{self._generate_command()}` (or pass generate='small' to generate missing files)"
            )
        if may_generate is None:
            may_generate = rank_zero_only.rank == 0
        if may_generate:
            self._generate_missing()
            return
        log.info("rank %d: waiting for rank 0 to generate %s", rank_zero_only.rank, self._missing())
        deadline = time.monotonic() + _WAIT_FOR_FILES_S
        while self._missing() and time.monotonic() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        if self._missing():
            raise FileNotFoundError(
                f"{self._missing()[0]} did not appear within {_WAIT_FOR_FILES_S:.0f} s; "
                f"generate it first with `{self._generate_command()}`"
            )

    def prepare_data(self) -> None:
        """Generate missing files (Lightning calls this once per node, on its local rank 0)."""
        self._ensure_files(may_generate=True)

    def setup(self, stage: str | None = None) -> None:
        self._ensure_files()
        if stage in (None, "fit"):
            self.dataset("train")
            self.dataset("val")
        self.dataset("test")

    def val_dataloader(self):
        """The validation trajectories (the end of the train file; see ``num_val``), not the test file."""
        return self._loader(self.dataset("val"), batch_size=self.eval_batch_size, shuffle=False)

    # ------------------------------------------------------------------------------------------- data
    @property
    def statistics(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel ``(mean [C], std [C])`` of the training trajectories when ``normalize``, else ``None``
        (with ``background="zonal_mean"``, ``std`` is the spread around the zonal mean)."""
        if not self.normalize:
            return None
        if self._statistics is None:
            self._ensure_files()
            if self.background == "zonal_mean":
                mean, std, latitudes, zonal = zonal_statistics(
                    self.path("train"), num_trajectories=self.split_sizes[0]
                )
                self._statistics = (mean, std)
                self._zonal = (latitudes, (zonal - mean) / std)
            else:
                self._statistics = channel_statistics(
                    self.path("train"), num_trajectories=self.split_sizes[0]
                )
            log.info("%s normalisation: mean %s, std %s", self.dataset_name, *self._statistics)
        return self._statistics

    def trajectories(self, split: str) -> PDETrajectories:
        """The (cached) trajectories of ``split`` (caps, time window, normalisation, masks applied)."""
        if split not in self._trajectories:
            path = self.path(split)
            self._ensure_files()
            self._trajectories[split] = PDETrajectories(
                path,
                time_window=self.time_window,
                observed_fraction=self.observed_fraction,
                normalize=self.statistics,
                resolution=self.resolution,
                **self.trajectory_range(split),
            )
        return self._trajectories[split]

    def trajectory_range(self, split: str) -> dict[str, int | None]:
        """``PDETrajectories`` keyword arguments selecting the trajectories of ``split``."""
        if split == "test":
            return {"num_trajectories": self.num_test}
        num_train, num_val, first_val = self.split_sizes
        if split == "val":
            return {"num_trajectories": num_val, "first_trajectory": first_val}
        return {"num_trajectories": num_train}

    def dataset(self, split: str) -> PDEFrames:
        """The (cached) frames of ``split``: one signal per ``(trajectory, frame)``."""
        if split not in self._frames:
            self._frames[split] = PDEFrames(self.trajectories(split))
            log.info("%s/%s: %s", self.dataset_name, split, self._frames[split])
        return self._frames[split]

    @property
    def geometry_name(self) -> str:
        """The ``geometry`` attribute of the files (an ``enf.geometry`` registry name)."""
        return self.trajectories("train").geometry

    @property
    def field_spec(self) -> FieldSpec:
        """Kind from the file's geometry, the grid of ``resolution``, the file's channel names, no data range."""
        train = self.trajectories("train")
        if train.geometry not in GEOMETRY_KINDS:
            raise ValueError(
                f"{train.path}: geometry {train.geometry!r} has no field kind; known: {sorted(GEOMETRY_KINDS)}"
            )
        stats = self.statistics
        return FieldSpec(
            kind=GEOMETRY_KINDS[train.geometry],
            coord_dim=int(train.coords.shape[-1]),
            num_channels=int(train.num_channels),
            grid_shape=train.grid_shape,
            channel_names=tuple(train.channel_names),
            data_range=None,
            mean=None if stats is None else tuple(float(v) for v in stats[0]),
            std=None if stats is None else tuple(float(v) for v in stats[1]),
            name=self.dataset_name,
            extra={
                "geometry": train.geometry,
                "times": [float(t) for t in train.times],
                **self._background_extra(),
            },
        )

    def _background_extra(self) -> dict[str, Any]:
        """``{"background": ZonalProfile.to_dict()}`` (normalised units) with ``background="zonal_mean"``."""
        if self.background == "none":
            return {}
        from enf.nn.background import ZonalProfile

        _ = self.statistics  # computes the zonal profile
        latitudes, values = self._zonal
        return {"background": ZonalProfile(latitudes=latitudes, values=values).to_dict()}
