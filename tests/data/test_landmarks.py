"""Landmark data sets read from installed wheels (ktch, geomstats), checked against independent reads."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from enf.data import landmarks
from enf.data.images.base import collate
from enf.data.landmarks import LANDMARK_DATASETS, POSITIONS, landmark_dataset, normalize_positions


def _needs(package: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(missing, reason=f"{package} is not installed: pip install 'enf[shape]'")


needs_ktch, needs_geomstats = _needs("ktch"), _needs("geomstats")

# name -> (K, d, complete specimens, train, test) with the default split (seed 0, test_fraction 0.2)
EXPECTED = {
    "trilobite": (16, 2, 285, 228, 57),
    "mosquito": (18, 2, 127, 102, 25),
    "hands": (22, 3, 53, 42, 11),
}
PARAMS = [
    pytest.param("trilobite", marks=needs_ktch),
    pytest.param("mosquito", marks=needs_ktch),
    pytest.param("hands", marks=needs_geomstats),
]


def _file(name: str, role: str) -> Path:
    return landmarks._data_paths(name)[role]


def _raw_hands() -> tuple[np.ndarray, np.ndarray]:
    coords = np.loadtxt(_file("hands", "coords")).reshape(-1, 22, 3)
    return coords, np.loadtxt(_file("hands", "labels")).astype(np.int64)


def _raw_mosquito() -> np.ndarray:
    table = np.loadtxt(_file("mosquito", "coords"), delimiter=",", skiprows=1)
    return table[:, 2:].reshape(127, 18, 2)


def test_registry_names_every_dataset():
    assert set(LANDMARK_DATASETS) == set(EXPECTED) == set(landmarks._SPECS)


@pytest.mark.parametrize("name", PARAMS)
def test_counts_split_disjoint_and_deterministic(name):
    k, d, n, n_train, n_test = EXPECTED[name]
    train, test = landmark_dataset(name, split="train"), landmark_dataset(name, split="test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert (train.num_landmarks, train.dim) == (k, d) and train.array.shape == (n_train, k, d)
    assert np.intersect1d(train.source_indices, test.source_indices).size == 0
    assert np.unique(np.concatenate([train.source_indices, test.source_indices])).size == n
    assert np.all(np.diff(train.source_indices) > 0)  # file order kept
    again = landmark_dataset(name, split="test")
    np.testing.assert_array_equal(again.source_indices, test.source_indices)
    np.testing.assert_array_equal(again.array, test.array)
    other = landmark_dataset(name, split="test", seed=1)  # negative control: the seed changes the split
    assert not np.array_equal(other.source_indices, test.source_indices)
    half = landmark_dataset(name, split="test", test_fraction=0.5)
    assert len(half) == round(0.5 * n)


@needs_ktch
def test_mosquito_matches_the_csv_and_ktch():
    from ktch.datasets import load_landmark_mosquito_wings

    raw = _raw_mosquito()
    bunch = load_landmark_mosquito_wings()
    np.testing.assert_allclose(raw, bunch.coords, rtol=0, atol=1e-12)  # two independent readers agree
    for split in ("train", "test"):
        ds = landmark_dataset("mosquito", split=split, normalize="none")
        np.testing.assert_allclose(ds.array, raw[ds.source_indices], rtol=0, atol=1e-12)
        genus = [bunch.meta["genus"][int(i)] for i in ds.source_indices]
        assert [ds.label_names[c] for c in ds.labels] == genus
    assert len(ds.label_names) == 11


@needs_ktch
def test_trilobite_matches_ktch_reader_and_drops_incomplete():
    from ktch.datasets import load_landmark_trilobite_cephala

    raw = np.asarray(load_landmark_trilobite_cephala().landmarks, dtype=np.float64)  # [300, 16, 2]
    complete = np.flatnonzero(~np.isnan(raw).any(axis=(1, 2)))
    assert complete.size == 285
    train = landmark_dataset("trilobite", split="train", normalize="none")
    test = landmark_dataset("trilobite", split="test", normalize="none")
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train.source_indices, test.source_indices])), complete
    )
    np.testing.assert_allclose(test.array, raw[test.source_indices], rtol=0, atol=1e-12)
    ids = re.findall(r"^ID=(.*)$", _file("trilobite", "tps").read_text(), flags=re.M)
    assert list(test.specimen_ids) == [ids[i].strip() for i in test.source_indices]
    assert test.labels is None and "label" not in test[0]


@needs_geomstats
def test_hands_match_the_text_files():
    coords, labels = _raw_hands()
    assert coords.shape == (53, 22, 3) and np.bincount(labels).tolist() == [26, 27]
    ds = landmark_dataset("hands", split="train", normalize="none")
    np.testing.assert_allclose(ds.array, coords[ds.source_indices], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds.labels, labels[ds.source_indices])
    assert ds.label_names == ("grab", "expand")


@needs_geomstats
def test_normalisations_against_direct_formula():
    coords, _ = _raw_hands()
    ds = landmark_dataset("hands", split="test", normalize="rms")
    raw = coords[ds.source_indices]
    centred = raw - raw.mean(axis=1, keepdims=True)
    rms = np.array([np.linalg.norm(c) / np.sqrt(22) for c in centred])  # Frobenius norm / sqrt(K)
    np.testing.assert_allclose(ds.array, centred / rms[:, None, None], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ds.array.mean(axis=1), 0.0, atol=1e-13)
    np.testing.assert_allclose(np.sqrt((ds.array**2).sum(axis=2).mean(axis=1)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        landmark_dataset("hands", split="test", normalize="center").array, centred, atol=1e-14
    )
    with pytest.raises(ValueError, match="degenerate"):
        normalize_positions(np.ones((2, 4, 2)), normalize="rms")


@needs_geomstats
def test_items_collate_to_batches():
    ds = landmark_dataset("hands", split="train")
    item = ds[3]
    assert set(item) == {POSITIONS, "index", "label"} and item["index"] == 3
    torch.testing.assert_close(item[POSITIONS], torch.from_numpy(ds.array[3]).float(), rtol=0, atol=0)
    batch = collate([ds[i] for i in (0, 5, 7)])
    assert batch[POSITIONS].shape == (3, 22, 3) and batch[POSITIONS].dtype == torch.float32
    torch.testing.assert_close(
        batch[POSITIONS].double(), torch.from_numpy(ds.array[[0, 5, 7]]), atol=1e-6, rtol=1e-6
    )
    assert batch["index"].tolist() == [0, 5, 7]
    assert batch["label"].tolist() == ds.labels[[0, 5, 7]].tolist()
    assert ds[-1]["index"] == len(ds) - 1
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown landmark dataset"):
        landmark_dataset("faces")
    with pytest.raises(ValueError, match="unknown split"):
        landmark_dataset("hands", split="val")
    with pytest.raises(ValueError, match="test_fraction"):
        landmark_dataset("hands", test_fraction=1.0)
    with pytest.raises(ValueError, match="normalize"):
        landmark_dataset("hands", normalize="procrustes")


def test_missing_package_names_the_pip_install(monkeypatch):
    spec = dataclasses.replace(landmarks._SPECS["mosquito"], package="enf_no_such_package_xyz")
    monkeypatch.setitem(landmarks._SPECS, "mosquito", spec)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "enf\[shape\]"'):
        landmark_dataset("mosquito")


# ------------------------------------------------------------------------------- corrupted files
def _patched(monkeypatch, tmp_path: Path, name: str, role: str, text: str) -> None:
    paths = dict(landmarks._data_paths(name))
    paths[role] = tmp_path / paths[role].name
    paths[role].write_text(text)
    monkeypatch.setattr(landmarks, "_data_paths", lambda n: paths)


@needs_ktch
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-18], "expected 2286 rows"),
        (lambda lines: [*lines[:5], "0,4,nan,0.1", *lines[6:]], "NaN coordinates in specimens"),
        (lambda lines: [*lines[:5], "0,4,garbage,0.1", *lines[6:]], "not a table of numbers"),
        (lambda lines: [*lines[:5], "0,9,0.2,0.1", *lines[6:]], "coord_id 0..17 in order"),
    ],
)
def test_corrupted_mosquito_csv(monkeypatch, tmp_path, edit, message):
    lines = _file("mosquito", "coords").read_text().splitlines()
    _patched(monkeypatch, tmp_path, "mosquito", "coords", "\n".join(edit(lines)) + "\n")
    with pytest.raises(ValueError, match=message):
        landmark_dataset("mosquito")


@needs_ktch
def test_corrupted_tps(monkeypatch, tmp_path):
    text = _file("trilobite", "tps").read_text()
    _patched(monkeypatch, tmp_path, "trilobite", "tps", text.replace("LM=16", "LM=15", 1))
    with pytest.raises(ValueError, match="unexpected line|16 landmarks"):
        landmark_dataset("trilobite")
    _patched(monkeypatch, tmp_path, "trilobite", "tps", text[: len(text) // 2])
    with pytest.raises(ValueError, match="file ends first|expected 300 specimens"):
        landmark_dataset("trilobite")
    _patched(monkeypatch, tmp_path, "trilobite", "tps", "random words\n" + text)
    with pytest.raises(ValueError, match="unexpected line 'random words'"):
        landmark_dataset("trilobite")


@needs_geomstats
def test_corrupted_hands(monkeypatch, tmp_path):
    lines = _file("hands", "coords").read_text().splitlines()
    _patched(monkeypatch, tmp_path, "hands", "coords", "\n".join(line + " 1.0" for line in lines) + "\n")
    with pytest.raises(ValueError, match="expected 53 rows of 66 numbers"):
        landmark_dataset("hands")
    monkeypatch.undo()
    _patched(monkeypatch, tmp_path, "hands", "labels", "2\n" * 53)
    with pytest.raises(ValueError, match=r"expected 53 labels in \{0, 1\}"):
        landmark_dataset("hands")
