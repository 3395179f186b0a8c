"""HDF5 writer/reader: round trips, chunking, atomic writes and clear errors naming the file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from enf.data import read_h5, write_h5


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fields": rng.standard_normal((3, 4, 8, 8, 2)).astype(np.float32),
        "coords": rng.uniform(-1, 1, (8, 8, 2)).astype(np.float32),
        "times": np.linspace(0, 1, 4, dtype=np.float32),
    }


ATTRS = {
    "geometry": "torus2d",
    "equation": "navier_stokes",
    "parameters": {"viscosity": 1e-3, "resolution": [8, 8]},
    "channel_names": ["u", "v"],
    "seed": 7,
    "dt": 0.25,
}


def test_round_trip_values_attrs_and_chunks(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "sub" / "train.h5", _arrays(), ATTRS, compression_level=4)
    arrays, attrs = read_h5(path, required={"fields": 5, "coords": None, "times": 1}, required_attrs=["seed"])
    for key, value in _arrays().items():
        assert arrays[key].dtype == value.dtype and np.array_equal(arrays[key], value)
    assert attrs == ATTRS
    assert isinstance(attrs["seed"], int) and isinstance(attrs["parameters"], dict)
    with h5py.File(path) as f:
        assert f["fields"].chunks == (3, 4, 8, 8, 2) and f["fields"].compression == "gzip"  # 2 KiB entries
        assert f.attrs["parameters"] == '{"resolution": [8, 8], "viscosity": 0.001}'  # dicts stored as JSON
    only, _ = read_h5(path, keys=["times"])
    assert list(only) == ["times"]


def test_atomic_write_leaves_no_temp_files_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    write_h5(path, {"x": np.arange(5.0)}, {"version": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]
    with pytest.raises(TypeError, match="'bad'"):
        write_h5(path, {"x": np.arange(3.0), "bad": np.array([{}, []], dtype=object)}, {"version": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]
    arrays, attrs = read_h5(path)
    assert attrs == {"version": 1} and np.array_equal(arrays["x"], np.arange(5.0))
    write_h5(path, {"x": np.arange(2.0)}, {"version": 3})  # overwrite replaces atomically
    arrays, attrs = read_h5(path)
    assert attrs == {"version": 3} and np.array_equal(arrays["x"], np.arange(2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_h5(missing)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(ValueError, match="garbage.h5 is corrupt"):
        read_h5(garbage)
    good = write_h5(tmp_path / "trunc.h5", _arrays(), ATTRS)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc.h5 is corrupt"):
        read_h5(good, required={"fields": 5})


def test_missing_key_wrong_ndim_and_missing_attr(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "test.h5", _arrays(), ATTRS)
    with pytest.raises(ValueError, match=r"test.h5 has no dataset 'weights' \(expected ndim 2\)"):
        read_h5(path, required={"weights": 2})
    with pytest.raises(
        ValueError, match=r"test.h5: dataset 'fields' has shape \(3, 4, 8, 8, 2\).*expected ndim 4"
    ):
        read_h5(path, required={"fields": 4})
    with pytest.raises(ValueError, match=r"test.h5 lacks attribute\(s\) \['created'\]"):
        read_h5(path, required_attrs=["geometry", "created"])
    with pytest.raises(ValueError, match="reserved"):
        write_h5(tmp_path / "x.h5", {}, {"_json_attrs": "[]"})


def test_a_flipped_byte_is_refused_not_read(tmp_path: Path) -> None:
    """Fletcher-32 on every array: one flipped byte in the stored data is an error naming the file."""
    path = write_h5(tmp_path / "latents.h5", {"poses": np.arange(64, dtype=np.float32).reshape(8, 8)})
    with h5py.File(path, "r") as f:
        info = f["poses"].id.get_chunk_info(0)  # one chunk: the 8 small rows share it
    data = bytearray(path.read_bytes())
    data[info.byte_offset + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"latents.h5 is corrupt \(a chunk failed its checksum\)"):
        read_h5(path)


def test_an_edited_file_is_refused(tmp_path: Path) -> None:
    """Rewritten through h5py (so every chunk checksum is valid again), e.g. signed distances with inside and
    outside swapped: the digest of the arrays stored at write time no longer matches."""
    path = write_h5(
        tmp_path / "samples.h5", {"signal": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    )
    read_h5(path)
    with h5py.File(path, "r+") as f:
        f["signal"][...] = -f["signal"][...]
    with pytest.raises(ValueError, match=r"samples.h5: its contents do not match the SHA-256"):
        read_h5(path)
    assert read_h5(path, keys=["signal"])[0]["signal"][0, 0] == 1.0  # a partial read cannot be verified


def test_chunks_hold_one_large_entry_or_many_small_ones(tmp_path: Path) -> None:
    """An entry of 64 KiB or more is a chunk of its own (a shape's samples); small entries (mesh vertices,
    12 bytes) share chunks of at least 64 KiB: one chunk per vertex made reading two million vertices take 48 s
    and 8 GB."""
    from enf.data.hdf5 import MIN_CHUNK_BYTES, chunk_rows

    arrays = {"samples": np.zeros((5, 25_000, 3), np.float32), "vertices": np.arange(300_000, dtype=np.float32).reshape(-1, 3),
              "few": np.ones((2, 3), np.int64)}  # fmt: skip
    path = write_h5(tmp_path / "mesh.h5", arrays)
    with h5py.File(path) as f:
        assert f["samples"].chunks == (1, 25_000, 3)
        rows = f["vertices"].chunks[0]
        assert rows * 12 >= MIN_CHUNK_BYTES and rows == chunk_rows(arrays["vertices"]) == 5462
        assert f["few"].chunks == (2, 3)  # never more rows than there are
    read, _ = read_h5(path)
    assert all(np.array_equal(read[k], v) for k, v in arrays.items())
