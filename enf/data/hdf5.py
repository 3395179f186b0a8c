"""HDF5 I/O for generated and converted datasets: atomic writes and validating reads.

Layout (DESIGN section 9): flat root-level datasets (``fields``, ``coords``, ``times``...) and root
attributes. Attributes may be ``str``, ``int``, ``float``, ``bool``, lists of those (e.g. ``channel_names``)
or 1-D numeric numpy arrays (both read back as lists), or dicts: dicts are stored as JSON strings (their
names listed in the reserved attribute ``_json_attrs``) and decoded back by :func:`read_h5`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from enf.io import atomic_write

__all__ = ["MIN_CHUNK_BYTES", "chunk_rows", "read_h5", "write_h5"]

log = logging.getLogger(__name__)

_JSON_ATTRS = "_json_attrs"


def _attr_value(key: str, value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim == 1:
        return value
    raise TypeError(
        f"attribute {key!r} must be str, int, float, bool, a list of those or a dict, "
        f"got {type(value).__name__}"
    )


_DIGEST_ATTR = "_content_sha256"


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of named arrays (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


#: the least bytes of a chunk of small first-axis entries: one HDF5 chunk per mesh vertex (12 bytes) made
#: reading two million of them take 48 s and 8 GB
MIN_CHUNK_BYTES = 1 << 16


def chunk_rows(array: np.ndarray) -> int:
    """First-axis entries per chunk of ``array``: one when an entry holds at least :data:`MIN_CHUNK_BYTES`,
    else as many as fill that many bytes (at most all of them)."""
    row_bytes = max(1, array[0].nbytes) if array.shape[0] else 1
    return int(
        min(array.shape[0], max(1, -(-MIN_CHUNK_BYTES // row_bytes)))
    )  # ceil: at least that many bytes


def write_h5(
    path: str | Path,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    *,
    compression_level: int | None = None,
) -> Path:
    """Write ``arrays`` and ``attrs`` to ``path`` atomically (temporary file + ``os.replace``).

    Arrays of rank >= 2 are chunked along the first axis, one entry per chunk (a trajectory, a shape's samples)
    or as many small entries (images, mesh vertices) as fill :data:`MIN_CHUNK_BYTES` (:func:`chunk_rows`), so
    readers can stream them; ``compression_level`` (0-9) turns on gzip. Every non-empty array carries HDF5's Fletcher-32
    checksum per chunk, and the file a SHA-256 of all its arrays, so :func:`read_h5` refuses a corrupted or
    edited file. The parent directory is created if needed.
    A failure leaves any existing ``path`` untouched and no temporary file behind. Returns the path.
    """
    path = Path(path)
    if compression_level is not None and not 0 <= compression_level <= 9:
        raise ValueError(f"compression_level must be in 0..9 or None, got {compression_level}")
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in arrays.items():
            array = np.asarray(value)
            if array.dtype == object:
                raise TypeError(f"array {key!r} has dtype object; give a numeric numpy array")
            chunked = array.ndim >= 2 and array.shape[0] > 0 and array.size > 0
            chunks = (chunk_rows(array), *array.shape[1:]) if chunked else None
            compress = compression_level is not None and array.ndim >= 1 and array.size > 0
            checksum = array.ndim >= 1 and array.size > 0  # Fletcher-32 per chunk, checked on read
            f.create_dataset(
                key,
                data=array,
                chunks=chunks if chunks else (True if compress or checksum else None),
                compression="gzip" if compress else None,
                compression_opts=compression_level if compress else None,
                fletcher32=checksum,
            )
        f.attrs[_DIGEST_ATTR] = content_digest({k: np.asarray(v) for k, v in arrays.items()})
        json_keys = []
        for key, value in (attrs or {}).items():
            if key in (_JSON_ATTRS, _DIGEST_ATTR):
                raise ValueError(f"attribute name {_JSON_ATTRS!r} is reserved")
            if isinstance(value, Mapping):
                f.attrs[key] = json.dumps(value, sort_keys=True)
                json_keys.append(key)
            else:
                f.attrs[key] = _attr_value(key, value)
        if json_keys:
            f.attrs[_JSON_ATTRS] = json.dumps(json_keys)
    log.debug("wrote %s (%s)", path, ", ".join(f"{k}{np.shape(v)}" for k, v in arrays.items()))
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_h5(
    path: str | Path,
    *,
    required: Mapping[str, int | None] | None = None,
    required_attrs: Iterable[str] = (),
    keys: Iterable[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the root-level datasets and attributes of ``path`` into memory, validating them.

    Args:
        path: the HDF5 file.
        required: dataset name -> expected number of dimensions (``None``: any) that must be present.
        required_attrs: attribute names that must be present.
        keys: read only these datasets (default: all root-level datasets).

    Returns:
        ``(arrays, attrs)``: dicts of numpy arrays and of plain Python attribute values (JSON dicts decoded).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is corrupt/truncated/not HDF5, or a required dataset/attribute is missing or a
            dataset has the wrong number of dimensions (the message names the file and the key).
    """
    path = Path(path)
    required = dict(required or {})
    if not path.exists():
        raise FileNotFoundError(f"HDF5 file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"HDF5 path {path} is not a file")
    try:
        with h5py.File(path, "r") as f:
            for key, ndim in required.items():
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ValueError(
                        f"HDF5 file {path} has no dataset {key!r} (expected ndim {ndim}); "
                        f"it holds {sorted(f.keys())}"
                    )
                if ndim is not None and f[key].ndim != ndim:
                    raise ValueError(
                        f"HDF5 file {path}: dataset {key!r} has shape {f[key].shape} (ndim {f[key].ndim}), "
                        f"expected ndim {ndim}"
                    )
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            wanted = list(keys) if keys is not None else [k for k in f if isinstance(f[k], h5py.Dataset)]
            arrays = {}
            for key in wanted:
                if key not in f:
                    raise ValueError(f"HDF5 file {path} has no dataset {key!r}; it holds {sorted(f.keys())}")
                arrays[key] = f[key][()]
    except OSError as err:
        raise ValueError(
            f"HDF5 file {path} is corrupt (a chunk failed its checksum), truncated or not an HDF5 file ({err})"
        ) from err
    stored = attrs.pop(_DIGEST_ATTR, None)
    if keys is None and stored is not None and content_digest(arrays) != stored:
        raise ValueError(
            f"HDF5 file {path}: its contents do not match the SHA-256 stored when it was written (changed or "
            "corrupted since); delete it and write it again"
        )
    json_keys = json.loads(attrs.pop(_JSON_ATTRS, "[]"))
    for key in json_keys:
        attrs[key] = json.loads(attrs[key])
    missing = [a for a in required_attrs if a not in attrs]
    if missing:
        raise ValueError(f"HDF5 file {path} lacks attribute(s) {missing}; it has {sorted(attrs)}")
    return arrays, attrs
