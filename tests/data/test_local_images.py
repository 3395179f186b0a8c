"""Local-root datasets on synthetic fixtures: folder, CIFAR-10 pickles, STL-10 binaries, CelebA jpgs."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from enf.data import image_dataset


def _image(dataset, index: int) -> torch.Tensor:
    """Item ``index`` of an image dataset as ``[H, W, C]`` (its signal unflattened row-major)."""
    return dataset[index]["signal"].reshape(dataset.image_shape)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------- folder
def _write_pngs(folder: Path, images: list[np.ndarray], names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names, strict=True):
        Image.fromarray(img).save(folder / name)


def test_folder_round_trip_and_split(tmp_path: Path) -> None:
    images = [_rng(i).integers(0, 256, (6, 4, 3), dtype=np.uint8) for i in range(12)]
    names = [f"img_{i:02d}.png" for i in range(12)]
    _write_pngs(tmp_path, images, names)
    (tmp_path / "notes.txt").write_text("not an image")
    everything = image_dataset("folder", split="all", root=str(tmp_path))
    assert len(everything) == 12 and everything.image_shape == (6, 4, 3)
    for i in (0, 7, 11):
        assert np.array_equal(np.round(_image(everything, i).numpy() * 255).astype(np.uint8), images[i])
    train = image_dataset("folder", split="train", root=str(tmp_path), test_fraction=0.25)
    test = image_dataset("folder", split="test", root=str(tmp_path), test_fraction=0.25)
    assert (len(train), len(test)) == (9, 3)
    train_names, test_names = {p.name for p in train.paths}, {p.name for p in test.paths}
    assert not train_names & test_names and train_names | test_names == set(names)
    again = image_dataset("folder", split="test", root=str(tmp_path), test_fraction=0.25)
    assert [p.name for p in again.paths] == [p.name for p in test.paths] == sorted(test_names)
    k = names.index(test.paths[1].name)
    assert np.array_equal(np.round(_image(test, 1).numpy() * 255).astype(np.uint8), images[k])
    assert test[1]["index"] == 1


def test_folder_grayscale_and_resize(tmp_path: Path) -> None:
    gray = [_rng(i).integers(0, 256, (5, 5), dtype=np.uint8) for i in range(3)]
    _write_pngs(tmp_path / "g", gray, ["a.png", "b.png", "c.png"])
    ds = image_dataset("folder", split="all", root=str(tmp_path / "g"), grayscale=True)
    assert ds.image_shape == (5, 5, 1)
    assert np.array_equal(np.round(_image(ds, 2)[..., 0].numpy() * 255).astype(np.uint8), gray[2])
    # mixed sizes + resize: constant colours survive the centre crop and resize
    colours = [(10, 200, 30), (250, 0, 128)]
    mixed = [np.full((8, 12, 3), colours[0], np.uint8), np.full((20, 10, 3), colours[1], np.uint8)]
    _write_pngs(tmp_path / "m", mixed, ["x.png", "y.jpeg"])
    ds = image_dataset("folder", split="all", root=str(tmp_path / "m"), image_size=4)
    assert ds.image_shape == (4, 4, 3)
    np.testing.assert_allclose(_image(ds, 0).numpy() * 255, np.broadcast_to(colours[0], (4, 4, 3)), atol=1.0)
    np.testing.assert_allclose(_image(ds, 1).numpy() * 255, np.broadcast_to(colours[1], (4, 4, 3)), atol=3.0)


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty}.*no PNG/JPEG"):
        image_dataset("folder", split="train", root=str(empty))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_dataset("folder", split="train", root=str(tmp_path / "nowhere"))
    mixed = [np.zeros((8, 12, 3), np.uint8), np.zeros((8, 12, 3), np.uint8), np.zeros((20, 10, 3), np.uint8)]
    _write_pngs(tmp_path / "m", mixed, ["a.png", "b.png", "c.png"])
    with pytest.raises(ValueError, match=r"a\.png is 12x8.*c\.png is 10x20.*image_size"):
        image_dataset("folder", split="all", root=str(tmp_path / "m"))


@pytest.mark.parametrize("image_size", [None, 4])
def test_folder_checks_every_file_up_front(tmp_path: Path, image_size: int | None) -> None:
    images = [_rng(i).integers(0, 256, (6, 6, 3), dtype=np.uint8) for i in range(4)]
    _write_pngs(tmp_path, images, [f"img_{i}.png" for i in range(4)])
    ds = image_dataset("folder", split="all", root=str(tmp_path), image_size=image_size)
    assert len(ds) == 4  # the intact folder loads
    good = (tmp_path / "img_2.png").read_bytes()
    corrupt = bytearray(good)
    corrupt[good.index(b"IDAT") + 10] ^= 0xFF  # one flipped byte in the pixel data: its CRC fails
    (tmp_path / "img_2.png").write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=r"img_2\.png is corrupt or truncated"):
        image_dataset("folder", split="all", root=str(tmp_path), image_size=image_size)
    (tmp_path / "img_2.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"img_2\.png is corrupt or truncated"):
        image_dataset("folder", split="train", root=str(tmp_path), image_size=image_size)
    (tmp_path / "img_2.png").write_bytes(good)
    (tmp_path / "notes.png").write_text("this is text, not a PNG")
    with pytest.raises(ValueError, match=r"notes\.png is not an image PIL can read"):
        image_dataset("folder", split="test", root=str(tmp_path), image_size=image_size)


def test_file_dataset_names_a_file_that_breaks_after_the_check(tmp_path: Path) -> None:
    _write_pngs(tmp_path, [np.zeros((4, 4, 3), np.uint8)] * 2, ["a.png", "b.png"])
    ds = image_dataset("folder", split="all", root=str(tmp_path))
    (tmp_path / "b.png").write_bytes(b"garbage")  # replaced after the dataset was built
    assert ds[0]["signal"].shape == (16, 3)
    with pytest.raises(ValueError, match=r"cannot decode .*b\.png"):
        ds[1]


# ------------------------------------------------------------------------------------------------ CIFAR-10
def _cifar_images(n: int, seed: int) -> np.ndarray:
    return _rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _py2_str(x: bytes) -> bytes:
    return (b"U" + bytes([len(x)]) + x) if len(x) < 256 else (b"T" + struct.pack("<i", len(x)) + x)


def _py2_cifar_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the real files were (Python 2 cPickle: py2 str keys and buffer)."""
    s, n = _py2_str, rows.shape[0]
    dtype = (
        b"cnumpy\ndtype\n"
        + s(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + s(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + s(b"b")
        + b"\x87R"
        + b"(K\x01J"
        + struct.pack("<i", n)
        + b"M\x00\x0c\x86"
        + dtype
        + b"\x89"
        + s(rows.tobytes())
        + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + s(b"batch_label") + s(b"b") + b"u."
    )


def _write_cifar(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = _cifar_images(3, i)
        rows = np.stack([np.concatenate([img[..., c].reshape(-1) for c in range(3)]) for img in images])
        labels = [i, (i + 1) % 10, 9]
        if name == "test_batch":  # Python 2 format, as in the real archive
            (folder / name).write_bytes(_py2_cifar_pickle(rows, labels))
        else:  # the same content re-pickled by Python 3
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": name.encode(), b"data": rows, b"labels": labels}, f, protocol=2)
        written[name] = images
    return written


def test_cifar10_reader_round_trip(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path)
    train = image_dataset("cifar10", split="train", root=str(tmp_path))
    test = image_dataset("cifar10", split="test", root=str(tmp_path))
    assert (len(train), len(test)) == (15, 3) and train.image_shape == (32, 32, 3)
    assert np.array_equal(train.images[3:6], written["data_batch_2"])
    assert np.array_equal(test.images, written["test_batch"])
    np.testing.assert_allclose(_image(train, 4).numpy(), written["data_batch_2"][1] / 255.0, atol=1e-7)
    assert train[4]["label"] == 2 and test[2]["label"] == 9
    assert train.labels.tolist()[:6] == [0, 1, 9, 1, 2, 9]


def test_cifar10_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*cifar-10-python.tar.gz.*tar -xzf"):
        image_dataset("cifar10", split="train", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pass root"):
        image_dataset("cifar10", split="train")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Path("/etc")}, f)  # a pickle that is not made of numpy arrays
    with pytest.raises(ValueError, match="corrupt or not a CIFAR pickle"):
        image_dataset("cifar10", split="test", root=str(tmp_path))


# -------------------------------------------------------------------------------------------------- STL-10
def test_stl10_reader_column_major_layout(tmp_path: Path) -> None:
    n = 3
    images = _rng(5).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    # on disk: per image, channel planes; inside a plane the ROW index varies fastest (column-major)
    raw = np.empty(n * 3 * 96 * 96, dtype=np.uint8)
    i, row, col, ch = np.indices(images.shape)
    raw[i * 27648 + ch * 9216 + col * 96 + row] = images
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw.tofile(folder / "test_X.bin")
    np.array([1, 10, 4], dtype=np.uint8).tofile(folder / "test_y.bin")
    ds = image_dataset("stl10", split="test", root=str(tmp_path))
    assert len(ds) == 3 and ds.image_shape == (96, 96, 3)
    np.testing.assert_allclose(_image(ds, 1).numpy(), images[1] / 255.0, atol=1e-7)
    assert [ds[k]["label"] for k in range(3)] == [0, 9, 3]
    assert np.array_equal(ds.head(2).images, images[:2])
    with pytest.raises(FileNotFoundError, match=f"{folder / 'train_X.bin'}.*stl10_binary.tar.gz"):
        image_dataset("stl10", split="train", root=str(tmp_path))
    (folder / "train_X.bin").write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="not a multiple"):
        image_dataset("stl10", split="train", root=str(tmp_path))


# -------------------------------------------------------------------------------------------------- CelebA
def test_celeba_reader_partition_and_center_crop(tmp_path: Path) -> None:
    image_dir = tmp_path / "celeba" / "img_align_celeba"
    image_dir.mkdir(parents=True)
    lines = []
    for k in range(6):
        img = np.zeros((218, 178, 3), dtype=np.uint8)
        img[:, :] = (0, 40 * k, 0)  # centre: one green level per image
        img[:16] = (255, 0, 0)  # top and bottom bands lie outside the 178x178 centre crop
        img[-16:] = (0, 0, 255)
        name = f"{k + 1:06d}.jpg"
        Image.fromarray(img).save(image_dir / name, quality=100)
        lines.append(f"{name} {[0, 0, 0, 1, 2, 2][k]}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    train = image_dataset("celeba", split="train", root=str(tmp_path), image_size=8)
    test = image_dataset("celeba", split="test", root=str(tmp_path), image_size=8)
    val = image_dataset("celeba", split="val", root=str(tmp_path), image_size=8)
    assert (len(train), len(val), len(test)) == (3, 1, 2) and train.image_shape == (8, 8, 3)
    assert [p.name for p in test.paths] == ["000005.jpg", "000006.jpg"]
    for ds, ks in ((train, [0, 1, 2]), (test, [4, 5])):
        for i, k in enumerate(ks):
            expected = np.broadcast_to(np.array([0, 40 * k, 0]) / 255.0, (8, 8, 3))
            np.testing.assert_allclose(_image(ds, i).numpy(), expected, atol=6 / 255)
    assert image_dataset("celeba", split="test", root=str(tmp_path)).image_shape == (64, 64, 3)


def test_celeba_missing_root_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*list_eval_partition.*img_align_celeba.zip"):
        image_dataset("celeba", split="train", root=str(tmp_path))
