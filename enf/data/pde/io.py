"""The PDE trajectory file format (DESIGN.md section 9): resumable, atomic generation and validating reads.

One file per split, ``<out>/<split>.h5``:

- ``fields`` float32 ``[num_traj, num_times, *grid, channels]``, chunked per trajectory;
- ``coords`` float32 ``[*grid, coord_dim]`` in the geometry's convention; ``times`` float32 ``[num_times]``;
- optional ``weights`` ``[*grid]`` (quadrature) and extra arrays of the generator, per file (e.g.
  ``coords_full``) or per trajectory (e.g. ``fields_full [num_traj, num_times, *grid_full, channels]`` when
  ``simulate`` returns a dict with ``fields`` and more keys);
- optional ``ic_params`` float32 ``[num_traj, num_params]`` with the attribute ``ic_param_names`` (list of
  str): the random parameters of each trajectory's initial condition (e.g. a source's position and mass),
  for generators whose spec defines ``ic_params``; read them with :func:`read_ic_params`;
- attributes ``geometry``, ``equation``, ``parameters`` (JSON), ``channel_names``, ``seed``, ``split``,
  ``generator``, ``generator_version``, ``created``, ``enf_version``.

Generation writes ``<split>.h5.partial`` chunk by chunk (attribute ``num_done``) and renames it to
``<split>.h5`` when complete, so a finished file is never half-written and an interrupted run resumes
where it stopped (when seed, parameters and version match).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from enf.data.hdf5 import content_digest
from enf.data.pde.base import PDESpec, trajectory_seed

__all__ = [
    "REQUIRED_ATTRS",
    "generate_split",
    "generation_mismatch",
    "open_trajectories",
    "read_ic_params",
    "read_metadata",
]

log = logging.getLogger(__name__)

REQUIRED_ATTRS = (
    "geometry",
    "equation",
    "parameters",
    "channel_names",
    "seed",
    "generator_version",
    "created",
)


def _fingerprint(spec: PDESpec, params: Mapping[str, Any], seed: int, split: str) -> str:
    content = {"name": spec.name, "version": spec.version, "params": params, "seed": seed, "split": split}
    if spec.ic_param_names:  # only then, so that files of generators without ic_params stay valid
        content["ic_param_names"] = list(spec.ic_param_names)
    return json.dumps(content, sort_keys=True, default=str)


def generation_mismatch(
    path: str | Path, spec: PDESpec, params: Mapping[str, Any], *, seed: int, split: str
) -> str | None:
    """``None`` when the finished file ``path`` holds what :func:`generate_split` would write for these
    arguments, else what differs (``"num_train: stored 16, requested 128"``, ``"seed: ..."``, ...). The
    other split's trajectory count does not matter to this file."""
    other = "num_test" if split == "train" else "num_train"
    with h5py.File(path, "r") as f:
        stored = json.loads(str(f.attrs.get("parameters", "{}")))
        params = {**params, other: stored.get(other, params.get(other))}
        if f.attrs.get("fingerprint") == _fingerprint(spec, params, seed, split):
            return None
        stored_seed = f.attrs.get("seed")
        generator = (f.attrs.get("generator"), f.attrs.get("generator_version"))
    requested = json.loads(json.dumps(dict(params), default=str))
    diffs = [
        f"{key}: stored {stored.get(key, '(none)')}, requested {requested.get(key, '(none)')}"
        for key in sorted(set(stored) | set(requested))
        if stored.get(key) != requested.get(key)
    ]
    if stored_seed is None or int(stored_seed) != seed:
        diffs.append(f"seed: stored {stored_seed}, requested {seed}")
    if generator != (spec.name, spec.version):
        diffs.append(f"generator: stored {generator[0]} {generator[1]}, requested {spec.name} {spec.version}")
    return "; ".join(diffs) or "the generator's fingerprint"


def generate_split(
    spec: PDESpec,
    params: Mapping[str, Any],
    *,
    split: str,
    out_dir: str | Path,
    seed: int,
    chunk_size: int = 8,
    progress: bool = True,
) -> Path:
    """Generate ``params['num_<split>']`` trajectories into ``out_dir/<split>.h5`` (resumable, atomic).

    Returns the path of the finished file. An existing finished file is left alone when its parameters and
    seed match (and replaced otherwise).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    num = int(params[f"num_{split}"])
    if num < 1:
        raise ValueError(f"{spec.name}: num_{split} must be >= 1, got {num}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, partial = out_dir / f"{split}.h5", out_dir / f"{split}.h5.partial"
    fingerprint = _fingerprint(spec, params, seed, split)
    if final.exists():
        try:
            with h5py.File(final, "r") as f:
                if f.attrs.get("fingerprint") == fingerprint:
                    log.info("%s is complete and matches; nothing to do", final)
                    return final
        except OSError:
            log.warning("%s is unreadable; regenerating it", final)

    coords = np.asarray(spec.coords(params), dtype=np.float32)
    times = np.asarray(spec.times(params), dtype=np.float32)
    start = 0
    if partial.exists():
        try:
            with h5py.File(partial, "r") as f:
                if f.attrs.get("fingerprint") == fingerprint:
                    start = int(f.attrs["num_done"])
        except OSError:
            start = 0
        if start == 0:
            partial.unlink()
        else:
            log.info("resuming %s at trajectory %d/%d", partial, start, num)

    if start == 0:
        _create_partial(
            partial,
            spec,
            params,
            split=split,
            seed=seed,
            num=num,
            coords=coords,
            times=times,
            fingerprint=fingerprint,
        )
    bar = tqdm(total=num, initial=start, desc=f"{spec.name}/{split}", unit="traj", disable=not progress)
    for lo in range(start, num, chunk_size):
        hi = min(num, lo + chunk_size)
        seeds = [trajectory_seed(seed, split, i) for i in range(lo, hi)]
        result = spec.simulate(params, split, seeds)
        per_traj = dict(result) if isinstance(result, Mapping) else {"fields": result}
        fields = np.asarray(per_traj.pop("fields"), dtype=np.float32)
        expected = (hi - lo, len(times), *coords.shape[:-1], len(spec.channel_names))
        if fields.shape != expected:
            raise RuntimeError(f"{spec.name}.simulate returned {fields.shape}, expected {expected}")
        if not np.isfinite(fields).all():
            raise RuntimeError(
                f"{spec.name}: non-finite values in trajectories {lo}..{hi - 1} (solver unstable?)"
            )
        ic_params = None
        if spec.ic_params is not None:
            ic_params = np.asarray(spec.ic_params(params, split, seeds), dtype=np.float32)
            if ic_params.shape != (hi - lo, len(spec.ic_param_names)):
                raise RuntimeError(
                    f"{spec.name}.ic_params returned {ic_params.shape}, expected "
                    f"{(hi - lo, len(spec.ic_param_names))} (one row per trajectory, columns {spec.ic_param_names})"
                )
        with h5py.File(partial, "r+") as f:
            f["fields"][lo:hi] = fields
            if ic_params is not None:
                f["ic_params"][lo:hi] = ic_params
            for key, value in per_traj.items():  # extra per-trajectory arrays, e.g. fields_full
                value = np.asarray(value, dtype=np.float32)
                if key not in f:
                    f.create_dataset(
                        key,
                        shape=(num, *value.shape[1:]),
                        dtype="float32",
                        chunks=(1, *value.shape[1:]),
                        **CHECKSUM,
                    )
                f[key][lo:hi] = value
            f.attrs["num_done"] = hi
            f.flush()
        bar.update(hi - lo)
    bar.close()
    with h5py.File(partial, "r+") as f:
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    os.replace(partial, final)
    return final


def _create_partial(
    path: Path, spec: PDESpec, params, *, split, seed, num, coords, times, fingerprint
) -> None:
    from enf import __version__

    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        shape = (num, len(times), *coords.shape[:-1], len(spec.channel_names))
        # every dataset is chunked with HDF5's Fletcher-32 checksum: a corrupt chunk fails to read
        f.create_dataset("fields", shape=shape, dtype="float32", chunks=(1, *shape[1:]), **CHECKSUM)
        f.create_dataset("coords", data=coords, chunks=True, **CHECKSUM)
        f.create_dataset("times", data=times, chunks=True, **CHECKSUM)
        if spec.weights is not None:
            weights = np.asarray(spec.weights(params), dtype=np.float32)
            f.create_dataset("weights", data=weights, chunks=True, **CHECKSUM)
        if spec.extra_arrays is not None:
            for key, value in spec.extra_arrays(params).items():
                f.create_dataset(key, data=np.asarray(value), chunks=True, **CHECKSUM)
        if spec.ic_params is not None:
            ic = f.create_dataset(
                "ic_params", shape=(num, len(spec.ic_param_names)), dtype="float32", chunks=True, **CHECKSUM
            )
            ic.attrs["ic_param_names"] = np.array(spec.ic_param_names, dtype=h5py.string_dtype())
        small = {k: np.asarray(f[k]) for k in GRID_KEYS if k in f}
        f.attrs["grid_sha256"] = content_digest(small)  # checked on read: an edit through h5py is caught too
        f.attrs.update(
            geometry=spec.geometry,
            equation=spec.equation,
            parameters=json.dumps(dict(params), default=str),
            channel_names=np.array(spec.channel_names, dtype=h5py.string_dtype()),
            seed=int(seed),
            split=split,
            generator=spec.name,
            generator_version=spec.version,
            created="in progress",
            enf_version=__version__,
            fingerprint=fingerprint,
            num_done=0,
        )
    os.replace(tmp, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Validated attributes and shapes of a trajectory file (raises a clear error naming the file)."""
    with open_trajectories(path) as f:
        meta = {k: f.attrs[k] for k in f.attrs}
        meta["parameters"] = json.loads(meta["parameters"])
        meta["channel_names"] = [str(c) for c in meta["channel_names"]]
        meta["fields_shape"] = tuple(f["fields"].shape)
        return meta


def read_ic_params(path: str | Path) -> tuple[list[str], np.ndarray]:
    """The per-trajectory initial-condition parameters of a trajectory file.

    Returns:
        ``(names, values)``: the column names and float32 ``values [num_traj, num_params]`` (row ``i``
        belongs to trajectory ``i`` of ``fields``).

    Raises:
        ValueError: naming the file, when it stores none (a generator without ``ic_params``, or a file
            written by an older ``generator_version``).
    """
    with open_trajectories(path) as f:
        if "ic_params" not in f:
            raise ValueError(
                f"{path}: no 'ic_params' dataset (generator {f.attrs.get('generator', '?')!r}, version "
                f"{f.attrs['generator_version']!r}); this generator stores no initial-condition parameters, "
                "or the file predates them: regenerate it with `enf data generate`"
            )
        ic = f["ic_params"]
        return [str(n) for n in ic.attrs["ic_param_names"]], np.asarray(ic, dtype=np.float32)


#: h5py options of every dataset the generators write: HDF5's Fletcher-32 checksum per chunk
CHECKSUM = {"fletcher32": True}
#: the small datasets whose joint SHA-256 the file stores (``grid_sha256``) and readers verify
GRID_KEYS = ("coords", "times", "weights", "coords_full", "weights_full")


def verify_grid(f: h5py.File, path: str | Path) -> None:
    """Raise ``ValueError`` when the grid datasets (:data:`GRID_KEYS`) no longer match the file's
    ``grid_sha256`` (files without one, from an older enf, are not checked)."""
    stored = f.attrs.get("grid_sha256")
    if stored is None:
        return
    small = {k: read_array(f[k], path=path) for k in GRID_KEYS if k in f}
    if content_digest(small) != str(stored):
        raise ValueError(
            f"{path}: its coordinates, times or weights changed after it was written (they no longer match "
            "the file's grid_sha256); delete it and generate it again with `enf data generate ...`"
        )


_UNCHECKED_WARNED: set[str] = set()


def read_array(dataset: h5py.Dataset, selection: Any = (), *, path: str | Path) -> np.ndarray:
    """``dataset[selection]`` as an array; a chunk that fails its checksum (or cannot be read) raises
    ``ValueError`` naming the file and the dataset instead of h5py's ``OSError``."""
    try:
        return np.asarray(dataset[selection])
    except OSError as err:
        raise ValueError(
            f"{path}: dataset {dataset.name!r} could not be read ({err}); the file is corrupt (a chunk failed "
            "its checksum or is truncated): delete it and generate it again with `enf data generate ...`"
        ) from None


def open_trajectories(path: str | Path) -> h5py.File:
    """Open a trajectory file read-only after validating the schema of DESIGN.md section 9."""
    path = Path(path)
    if path.suffix == ".partial" or path.with_name(path.name + ".partial").exists() and not path.exists():
        raise ValueError(f"{path}: generation did not finish; run `enf data generate` again to resume it")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such trajectory file; create it with `enf data generate <name> --out ...`"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from err
    try:
        for key in ("fields", "coords", "times"):
            if key not in f:
                raise ValueError(f"{path}: missing dataset {key!r} (expected fields, coords, times)")
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            raise ValueError(f"{path}: missing attribute(s) {missing}")
        fields, coords, times = f["fields"], f["coords"], f["times"]
        grid = coords.shape[:-1]
        if fields.ndim != 3 + len(grid) or tuple(fields.shape[2:-1]) != tuple(grid):
            raise ValueError(
                f"{path}: fields {fields.shape} do not match coords {coords.shape} "
                "(expected [num_traj, num_times, *grid, channels])"
            )
        if fields.shape[1] != times.shape[0]:
            raise ValueError(f"{path}: fields have {fields.shape[1]} times but 'times' has {times.shape[0]}")
        if fields.shape[-1] != len(f.attrs["channel_names"]):
            raise ValueError(
                f"{path}: {fields.shape[-1]} channels but channel_names {list(f.attrs['channel_names'])}"
            )
        if "weights" in f and tuple(f["weights"].shape) != tuple(grid):
            raise ValueError(f"{path}: weights {f['weights'].shape} do not match the grid {grid}")
        if "ic_params" in f:
            ic = f["ic_params"]
            names = ic.attrs.get("ic_param_names")
            if ic.ndim != 2 or ic.shape[0] != fields.shape[0]:
                raise ValueError(
                    f"{path}: ic_params {ic.shape} do not match fields {fields.shape} "
                    "(expected [num_traj, num_params])"
                )
            if names is None or len(names) != ic.shape[1]:
                raise ValueError(
                    f"{path}: ic_params has {ic.shape[1]} columns but its attribute ic_param_names is "
                    f"{None if names is None else list(names)}"
                )
        verify_grid(f, path)
        if not fields.fletcher32 and str(path) not in _UNCHECKED_WARNED:
            _UNCHECKED_WARNED.add(str(path))
            log.warning(
                "%s was written without checksums (an older enf): corruption in it cannot be detected; "
                "regenerate it with `enf data generate ...`",
                path,
            )
    except Exception:
        f.close()
        raise
    return f
