"""``SDFDataModule``: signed-distance samples of 3-D shapes for ``enf fit`` (issue 10's fitting input).

Items carry ``coords [P, 3]`` (near-surface points first, then uniform points in ``[-1.1, 1.1]^3``),
``signal [P, 1]`` (the signed distance, negative inside), ``uniform [P]`` (bool, the uniform samples: occupancy
IoU on the fitted samples is measured on them), ``surface [Q, 3]`` (points sampled on the true mesh with a seed of
their own and never fitted: Chamfer distance), ``index`` and, for the labelled ``primitives`` source, ``label``. The field spec is of kind ``sdf`` (one channel
``sdf``; ``extra["bound"]`` is the half-width of the sampled cube, ``extra["test_is_heldout"]`` whether the test
shapes are other shapes than the training ones). Samples are computed once per split and cached under
``cache_dir`` (:func:`enf.data.shapes.sdf.build_sdf_file`).

The loaders of the final metrics (:meth:`SDFDataModule.metrics_dataloader`) add ``num_heldout`` held-out points
per shape (``keys.HELDOUT_COORDS`` / ``keys.HELDOUT_SIGNAL``): uniform in the same cube, with their own seed
stream (:func:`enf.data.shapes.sdf.heldout_rng`), never given to the fitter, signed distances from the mesh, cached in
``<cache_dir>/<dataset>_<split>_heldout.h5`` and computed for the shapes evaluated only.

Shape sources (``dataset``):

- ``procedural``: seeded unions of primitives (:func:`enf.data.shapes.meshes.procedural_shapes`), ``num_train``
  shapes, and as test the first ``num_test`` shapes of another seed's stream that duplicate no training shape
  (:func:`enf.data.shapes.dedup.unique_shapes`; the skipped ones are missing from the test names);
- ``primitives``: labelled shapes for classification (:func:`enf.data.shapes.meshes.iter_primitive_shapes`): each
  the union of 1..3 axis-aligned primitives of one kind, the class (``label``: sphere, box, torus, capsule);
  ``num_train`` shapes of the seed's stream, and as test and validation the first ``num_test`` and next
  ``num_val`` shapes of another seed's stream (an independent draw; not deduplicated: a single normalised
  sphere is the same shape in every split);
- ``bundled``: the sample meshes of installed wheels (``names``, default all of
  :data:`enf.data.shapes.meshes.BUNDLED_MESHES`); without ``test_names`` train and test are the same shapes with
  independent samples (a **fit set**: the metrics say ``fit`` instead of ``test``), with ``test_names`` those
  meshes are held out as the test split;
- ``folder``: every OBJ/PLY/STL/OFF file under ``root``, sorted, the last ``test_fraction`` as test;
- ``shapenet``: a local ShapeNet copy at ``root`` (:mod:`enf.data.shapes.shapenet`: ShapeNetCore meshes, or DeepSDF's
  precomputed samples, ``num_near + num_uniform`` per shape), ``categories`` (names or synset ids, default
  all), at most ``num_train`` / ``num_test`` models.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from enf.data import keys
from enf.data.field import FieldSpec
from enf.data.hdf5 import read_h5
from enf.data.modules.field import FieldDataModule

__all__ = ["DATASETS", "HeldoutDataset", "SDFDataModule", "SDFDataset"]

DATASETS = ("procedural", "primitives", "bundled", "folder", "shapenet")

log = logging.getLogger(__name__)


class SDFDataset(Dataset):
    """The samples of one cached SDF file in memory."""

    def __init__(self, path: str | Path) -> None:
        required = {"coords": 3, "signal": 3, "index": 1, "uniform": 1, "surface": 3}
        arrays, attrs = read_h5(path, required=required)
        self.path, self.attrs = Path(path), attrs
        self.coords = torch.as_tensor(arrays["coords"], dtype=torch.float32)
        self.signal = torch.as_tensor(arrays["signal"], dtype=torch.float32)
        self.uniform = torch.as_tensor(arrays["uniform"], dtype=torch.bool)
        self.surface = torch.as_tensor(arrays["surface"], dtype=torch.float32)
        self._meshes = {k: v for k, v in arrays.items() if k.startswith("mesh_")}
        self.names = list((attrs.get("settings") or {}).get("names", []))
        self.labels = torch.as_tensor(arrays["label"], dtype=torch.long) if "label" in arrays else None
        if self.labels is not None and self.labels.shape != (self.coords.shape[0],):
            raise ValueError(
                f"{path}: {tuple(self.labels.shape)} labels for {self.coords.shape[0]} shapes; delete the file"
            )
        if self.uniform.shape[0] != self.coords.shape[1] or not torch.isfinite(self.signal).all():
            raise ValueError(
                f"{path}: inconsistent or non-finite SDF samples; delete the file to sample again"
            )

    @property
    def has_meshes(self) -> bool:
        """Whether the file stores the true meshes (not so for DeepSDF samples)."""
        return "mesh_vertices" in self._meshes

    def mesh(self, i: int):
        """The true mesh of shape ``i`` (normalised, as sampled)."""
        from enf.data.shapes.sdf import unpack_mesh

        if "mesh_vertices" not in self._meshes:
            raise ValueError(f"{self.path} stores no meshes (DeepSDF samples): only sampled distances")
        return unpack_mesh(self._meshes, i, name=self.names[i] if i < len(self.names) else f"shape {i}")

    def __len__(self) -> int:
        return self.coords.shape[0]

    def __getitem__(self, i: int) -> dict[str, object]:
        item = {keys.COORDS: self.coords[i], keys.SIGNAL: self.signal[i], keys.INDEX: int(i),
                keys.UNIFORM: self.uniform, keys.SURFACE: self.surface[i]}  # fmt: skip
        if self.labels is not None:
            item[keys.LABEL] = self.labels[i]
        return item


class SDFDataModule(FieldDataModule):
    """Signed-distance samples of procedural, bundled or user-given meshes.

    Args:
        dataset: ``procedural``, ``primitives``, ``bundled``, ``folder`` or ``shapenet`` (module docstring).
        num_train, num_test: procedural shapes per split; at most that many ShapeNet models.
        num_val: procedural (and primitives) validation shapes (model selection, ``best.ckpt``): the next ``num_val`` shapes of
            the test stream after the test ones, also duplicating no training shape (``None``: ``min(8,
            num_test)``). The other sources validate on their test split.
        names: bundled meshes to use (default: all).
        test_names: bundled meshes held out as the test split (the rest of ``names`` train); ``None``: the
            test split is the training meshes with new samples, a fit set.
        root: the folder of mesh files (``folder``) or the ShapeNet copy (``shapenet``).
        categories: ShapeNet categories (names such as ``chair`` or synset ids; default all found).
        test_fraction: share of a folder's files (of each ShapeNet category) in the test split.
        num_near, num_uniform: near-surface and uniform samples per shape.
        num_surface: surface points stored per shape (for the Chamfer distance).
        num_heldout: held-out uniform points per evaluated shape, for the occupancy IoU of the final metrics.
        cache_dir: where the sampled files are kept.
        seed: seed of the shapes and samples (and of the training shuffle).
        batch_size, eval_batch_size, num_workers: as for every field data module.
    """

    def __init__(
        self,
        *,
        dataset: Literal["procedural", "primitives", "bundled", "folder", "shapenet"] = "procedural",
        num_train: int = 64,
        num_test: int = 16,
        num_val: int | None = None,
        names: list[str] | None = None,
        test_names: list[str] | None = None,
        root: str | None = None,
        categories: list[str] | None = None,
        test_fraction: float = 0.2,
        num_near: int = 20_000,
        num_uniform: int = 5_000,
        num_surface: int = 10_000,
        num_heldout: int = 100_000,
        cache_dir: str = "data/shapes",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        if dataset == "folder" and not root:
            raise ValueError("dataset='folder' needs root: the folder holding your OBJ/PLY/STL/OFF files")
        if dataset == "shapenet" and not root:
            from enf.data.shapes.shapenet import HOW_TO_GET

            raise ValueError(f"dataset='shapenet' needs root. {HOW_TO_GET}")
        if min(num_train, num_test, num_heldout) < 1:
            raise ValueError(
                f"num_train, num_test and num_heldout must be >= 1, got {num_train}, {num_test}, {num_heldout}"
            )
        if num_val is not None and (isinstance(num_val, bool) or not isinstance(num_val, int) or num_val < 1):
            raise ValueError(f"num_val must be a positive int or None, got {num_val!r}")
        if test_names is not None and dataset != "bundled":
            raise ValueError(f"test_names picks held-out bundled meshes; dataset is {dataset!r}")
        self.save_hyperparameters()
        self.dataset_name = dataset
        self._datasets: dict[str, SDFDataset] = {}
        self._procedural_train: list | None = None
        self._procedural_held: list | None = None

    @property
    def num_val(self) -> int:
        """Validation shapes of the procedural source."""
        return self.hparams.num_val if self.hparams.num_val is not None else min(8, self.hparams.num_test)

    @property
    def has_val_split(self) -> bool:
        """Whether model selection has shapes of its own (procedural), else it uses the test split."""
        return self.hparams.dataset in ("procedural", "primitives")

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class of each ``label`` (``primitives``), ``None`` for unlabelled sources."""
        from enf.data.shapes.meshes import PRIMITIVES

        return PRIMITIVES if self.hparams.dataset == "primitives" else None

    def _meshes(self, split: str):
        from enf.data.shapes import meshes as m

        hp = self.hparams
        if hp.dataset == "primitives":
            import itertools

            start, count = {"train": (0, hp.num_train), "test": (0, hp.num_test),
                            "val": (hp.num_test, self.num_val)}[split]  # fmt: skip
            stream = m.iter_primitive_shapes(seed=hp.seed + (0 if split == "train" else 100_003))
            return list(itertools.islice(stream, start, start + count))
        if hp.dataset == "procedural":
            if self._procedural_train is None:
                self._procedural_train = m.procedural_shapes(hp.num_train, seed=hp.seed)
            if split == "train":
                return self._procedural_train
            from enf.data.shapes.dedup import unique_shapes

            if self._procedural_held is None:
                candidates = m.iter_procedural_shapes(seed=hp.seed + 100_003)
                held = unique_shapes(
                    candidates, self._procedural_train, num_shapes=hp.num_test + self.num_val
                )
                self._procedural_held = held[0]
            held = self._procedural_held
            return held[: hp.num_test] if split == "test" else held[hp.num_test :]
        if hp.dataset == "bundled":
            return [m.bundled_mesh(n) for n in self._bundled_names(split)]
        if (
            hp.dataset == "shapenet"
        ):  # often not watertight: repaired where possible, else used with a warning
            from enf.data.shapes.shapenet import model_name

            files = self._shapenet(split)[1]
            loaded = [replace(m.load_mesh(f), name=model_name(f)) for f in files]
            return [m.normalize_mesh(m.check_watertight(mesh, allow_open=True)) for mesh in loaded]
        root = Path(hp.root)
        files = (
            sorted(p for p in root.rglob("*") if p.suffix.lower() in m.MESH_SUFFIXES) if root.is_dir() else []
        )
        if len(files) < 2:
            raise FileNotFoundError(
                f"found {len(files)} mesh files under {root}; put at least two OBJ/PLY/STL/OFF files there "
                "(ShapeNet: use dataset='shapenet' with root at your ShapeNet copy)"
            )
        cut = max(1, round(len(files) * (1 - hp.test_fraction)))
        chosen = files[:cut] if split == "train" else files[cut:] or files[-1:]
        return [m.normalize_mesh(m.check_watertight(m.load_mesh(f))) for f in chosen]

    def _bundled_names(self, split: str) -> list[str]:
        from enf.data.shapes.meshes import BUNDLED_MESHES

        names, held = self.hparams.names or sorted(BUNDLED_MESHES), self.hparams.test_names
        if held is None:
            return list(names)
        unknown = sorted(set(held) - set(names))
        if unknown or not set(names) - set(held):
            raise ValueError(
                f"test_names {held} must be some of the bundled meshes {names} (found no {unknown}), "
                "leaving at least one to train on"
            )
        return [n for n in names if (n in held) == (split == "test")]

    def _shapenet(self, split: str):
        from enf.data.shapes.shapenet import shapenet_models

        hp = self.hparams
        return shapenet_models(hp.root, split=split, categories=hp.categories, test_fraction=hp.test_fraction,
                               limit=hp.num_train if split == "train" else hp.num_test)  # fmt: skip

    def dataset(self, split: str) -> SDFDataset:
        splits = ("train", "val", "test") if self.has_val_split else ("train", "test")
        if split not in splits:
            raise ValueError(
                f"split must be one of {list(splits)} for dataset {self.dataset_name!r}, got {split!r}"
            )
        if split not in self._datasets:
            self._datasets[split] = SDFDataset(self._build(split))
        return self._datasets[split]

    def _build(self, split: str) -> Path:
        """The cached sample file of ``split`` (sampled now if missing or made with other settings)."""
        from enf.data.shapes.sdf import build_sdf_file

        hp = self.hparams
        path = Path(hp.cache_dir) / f"{hp.dataset}_{split}.h5"
        seed = self._seed(split)
        if hp.dataset == "shapenet":
            layout, files = self._shapenet(split)
            if layout == "samples":
                from enf.data.shapes.shapenet import build_samples_file

                return build_samples_file(files, path, num_points=hp.num_near + hp.num_uniform,
                                          num_surface=hp.num_surface, seed=seed)  # fmt: skip
        meshes = self._meshes(split)
        labels = None
        if hp.dataset == "primitives":
            from enf.data.shapes.meshes import primitive_label

            labels = [primitive_label(mesh.name) for mesh in meshes]
        return build_sdf_file(meshes, path, num_near=hp.num_near, num_uniform=hp.num_uniform,
                              num_surface=hp.num_surface, seed=seed, labels=labels)  # fmt: skip

    def metrics_dataloader(self, split: str, *, max_samples: int | None = None) -> DataLoader:
        """:meth:`eval_dataloader` with ``num_heldout`` held-out points per shape (``keys.HELDOUT_COORDS``,
        ``keys.HELDOUT_SIGNAL``), sampled for the shapes it loads (cached); without meshes (DeepSDF samples)
        the plain loader, whose IoU is then only that of the fitted samples."""
        from enf.data.shapes.sdf import build_heldout_file

        loader = self.eval_dataloader(split, max_samples=max_samples)
        data = self.dataset(split)
        if not data.has_meshes:
            log.warning("%s stores no meshes: no held-out samples, IoU only on the fitted samples", data.path)
            return loader
        hp = self.hparams
        arrays = build_heldout_file(data.mesh, len(loader.dataset), data.path.with_name(f"{data.path.stem}_heldout.h5"),
                                    source=data.attrs["settings"], num_points=hp.num_heldout,
                                    bound=self.field_spec.extra["bound"], seed=self._seed(split))  # fmt: skip
        return self._loader(
            HeldoutDataset(loader.dataset, arrays), batch_size=self.eval_batch_size, shuffle=False
        )

    def val_dataloader(self) -> DataLoader:
        """Procedural shapes: the validation shapes (never the test ones); other sources: the test split."""
        split = "val" if self.has_val_split else "test"
        return self._loader(self.dataset(split), batch_size=self.eval_batch_size, shuffle=False)

    def _seed(self, split: str) -> int:
        return self.hparams.seed + {"train": 0, "test": 7919, "val": 15_485_863}[split]

    @property
    def field_spec(self) -> FieldSpec:
        """Kind ``sdf``: unstructured 3-D points with one channel, the signed distance."""
        heldout = self.dataset_name != "bundled" or self.hparams.test_names is not None
        return FieldSpec(kind="sdf", coord_dim=3, num_channels=1, channel_names=("sdf",), name=self.dataset_name,
                         extra={"bound": 1.1, "test_is_heldout": heldout})  # fmt: skip


class HeldoutDataset(Dataset):
    """The items of ``base`` (an :class:`SDFDataset` or a prefix of it) with their held-out points:
    ``arrays["coords"] [S, E, 3]`` and ``arrays["signal"] [S, E, 1]``, row ``i`` for item ``i``."""

    def __init__(self, base: Dataset, arrays: dict) -> None:
        if len(arrays["coords"]) < len(base):
            raise ValueError(
                f"held-out samples for {len(arrays['coords'])} shapes, but {len(base)} to evaluate"
            )
        self.base = base
        self.coords = torch.as_tensor(arrays["coords"], dtype=torch.float32)
        self.signal = torch.as_tensor(arrays["signal"], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {**self.base[i], keys.HELDOUT_COORDS: self.coords[i], keys.HELDOUT_SIGNAL: self.signal[i]}
