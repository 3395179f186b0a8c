"""``SDFDataModule``: signed-distance samples of 3-D shapes for ``enf fit`` (issue 10's fitting input).

Items carry ``coords [P, 3]`` (near-surface points first, then uniform points in ``[-1.1, 1.1]^3``),
``signal [P, 1]`` (the signed distance, negative inside), ``uniform [P]`` (bool, the uniform samples: occupancy
IoU is measured on them), ``surface [Q, 3]`` (points on the true surface: Chamfer distance) and ``index``. The
field spec is of kind ``sdf`` (one channel ``sdf``; ``extra["bound"]`` is the half-width of the sampled
cube). Samples are computed once per split and cached under ``cache_dir`` (:func:`enf.data.sdf.build_sdf_file`).

Shape sources (``dataset``):

- ``procedural``: seeded unions of primitives (:func:`enf.data.meshes.procedural_shapes`), ``num_train`` /
  ``num_test`` shapes from different seeds;
- ``bundled``: the sample meshes of installed wheels (``names``, default all of
  :data:`enf.data.meshes.BUNDLED_MESHES`); train and test are the same shapes with independent samples;
- ``folder``: every OBJ/PLY/STL/OFF file under ``root``, sorted, the last ``test_fraction`` as test;
- ``shapenet``: a local ShapeNet copy at ``root`` (:mod:`enf.data.shapenet`: ShapeNetCore meshes, or DeepSDF's
  precomputed samples, ``num_near + num_uniform`` per shape), ``categories`` (names or synset ids, default
  all), at most ``num_train`` / ``num_test`` models.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from enf.data import keys
from enf.data.field import FieldSpec
from enf.data.field_module import FieldDataModule
from enf.data.hdf5 import read_h5

__all__ = ["SDFDataModule", "SDFDataset"]

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
        if self.uniform.shape[0] != self.coords.shape[1] or not torch.isfinite(self.signal).all():
            raise ValueError(
                f"{path}: inconsistent or non-finite SDF samples; delete the file to sample again"
            )

    def mesh(self, i: int):
        """The true mesh of shape ``i`` (normalised, as sampled)."""
        from enf.data.sdf import unpack_mesh

        if "mesh_vertices" not in self._meshes:
            raise ValueError(f"{self.path} stores no meshes (DeepSDF samples): only sampled distances")
        return unpack_mesh(self._meshes, i, name=self.names[i] if i < len(self.names) else f"shape {i}")

    def __len__(self) -> int:
        return self.coords.shape[0]

    def __getitem__(self, i: int) -> dict[str, object]:
        return {keys.COORDS: self.coords[i], keys.SIGNAL: self.signal[i], keys.INDEX: int(i),
                keys.UNIFORM: self.uniform, keys.SURFACE: self.surface[i]}  # fmt: skip


class SDFDataModule(FieldDataModule):
    """Signed-distance samples of procedural, bundled or user-given meshes.

    Args:
        dataset: ``procedural``, ``bundled``, ``folder`` or ``shapenet`` (see the module docstring).
        num_train, num_test: procedural shapes per split; at most that many ShapeNet models.
        names: bundled meshes to use (default: all).
        root: the folder of mesh files (``folder``) or the ShapeNet copy (``shapenet``).
        categories: ShapeNet categories (names such as ``chair`` or synset ids; default all found).
        test_fraction: share of a folder's files (of each ShapeNet category) in the test split.
        num_near, num_uniform: near-surface and uniform samples per shape.
        num_surface: surface points stored per shape (for the Chamfer distance).
        cache_dir: where the sampled files are kept.
        seed: seed of the shapes and samples (and of the training shuffle).
        batch_size, eval_batch_size, num_workers: as for every field data module.
    """

    def __init__(
        self,
        *,
        dataset: Literal["procedural", "bundled", "folder", "shapenet"] = "procedural",
        num_train: int = 64,
        num_test: int = 16,
        names: list[str] | None = None,
        root: str | None = None,
        categories: list[str] | None = None,
        test_fraction: float = 0.2,
        num_near: int = 20_000,
        num_uniform: int = 5_000,
        num_surface: int = 10_000,
        cache_dir: str = "data/shapes",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed
        )
        if dataset not in ("procedural", "bundled", "folder", "shapenet"):
            raise ValueError(f"dataset must be procedural, bundled, folder or shapenet, got {dataset!r}")
        if dataset == "folder" and not root:
            raise ValueError("dataset='folder' needs root: the folder holding your OBJ/PLY/STL/OFF files")
        if dataset == "shapenet" and not root:
            from enf.data.shapenet import HOW_TO_GET

            raise ValueError(f"dataset='shapenet' needs root. {HOW_TO_GET}")
        if min(num_train, num_test) < 1:
            raise ValueError(f"num_train and num_test must be >= 1, got {num_train}, {num_test}")
        self.save_hyperparameters()
        self.dataset_name = dataset
        self._datasets: dict[str, SDFDataset] = {}

    def _meshes(self, split: str):
        from enf.data import meshes as m

        hp = self.hparams
        if hp.dataset == "procedural":
            count = hp.num_train if split == "train" else hp.num_test
            return m.procedural_shapes(count, seed=hp.seed if split == "train" else hp.seed + 100_003)
        if hp.dataset == "bundled":
            return [m.bundled_mesh(n) for n in (hp.names or sorted(m.BUNDLED_MESHES))]
        if (
            hp.dataset == "shapenet"
        ):  # often not watertight: repaired where possible, else used with a warning
            from enf.data.shapenet import model_name

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

    def _shapenet(self, split: str):
        from enf.data.shapenet import shapenet_models

        hp = self.hparams
        return shapenet_models(hp.root, split=split, categories=hp.categories, test_fraction=hp.test_fraction,
                               limit=hp.num_train if split == "train" else hp.num_test)  # fmt: skip

    def dataset(self, split: str) -> SDFDataset:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self._datasets:
            self._datasets[split] = SDFDataset(self._build(split))
        return self._datasets[split]

    def _build(self, split: str) -> Path:
        """The cached sample file of ``split`` (sampled now if missing or made with other settings)."""
        from enf.data.sdf import build_sdf_file

        hp = self.hparams
        path = Path(hp.cache_dir) / f"{hp.dataset}_{split}.h5"
        seed = hp.seed + (0 if split == "train" else 7919)
        if hp.dataset == "shapenet":
            layout, files = self._shapenet(split)
            if layout == "samples":
                from enf.data.shapenet import build_samples_file

                return build_samples_file(files, path, num_points=hp.num_near + hp.num_uniform,
                                          num_surface=hp.num_surface, seed=seed)  # fmt: skip
        return build_sdf_file(self._meshes(split), path, num_near=hp.num_near, num_uniform=hp.num_uniform,
                              num_surface=hp.num_surface, seed=seed)  # fmt: skip

    @property
    def field_spec(self) -> FieldSpec:
        """Kind ``sdf``: unstructured 3-D points with one channel, the signed distance."""
        return FieldSpec(kind="sdf", coord_dim=3, num_channels=1, channel_names=("sdf",), name=self.dataset_name,
                         extra={"bound": 1.1})  # fmt: skip
