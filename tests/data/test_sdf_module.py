"""SDFDataModule: items are the cached samples, every source works or says how to get it, and `enf fit`
fits signed distances with se3 and translation3d latents (steerable to round-off). Needs the mesh extra."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("trimesh", reason='meshes need the mesh extra: pip install -e ".[mesh]"')

import trimesh  # noqa: E402

from enf.cli import main  # noqa: E402
from enf.data.modules.sdf import SDFDataModule  # noqa: E402
from enf.data.shapes.sdf import signed_distance  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = dict(
    num_train=3, num_test=2, num_near=200, num_uniform=50, num_surface=20, num_heldout=300, batch_size=2
)


def test_items_are_the_cached_samples_of_the_seeded_shapes(tmp_path: Path) -> None:
    from enf.data.shapes.meshes import procedural_shapes

    dm = SDFDataModule(cache_dir=str(tmp_path), **TINY)
    train = dm.dataset("train")
    assert len(train) == 3 and len(dm.dataset("test")) == 2 and (tmp_path / "procedural_train.h5").is_file()
    item = train[1]
    assert item["coords"].shape == (250, 3) and item["signal"].shape == (250, 1) and item["index"] == 1
    mesh = procedural_shapes(3, seed=0)[1]
    np.testing.assert_allclose(
        item["signal"][:, 0].numpy(), signed_distance(item["coords"].numpy(), mesh), atol=1e-5
    )
    assert dm.field_spec.kind == "sdf" and dm.field_spec.coord_dim == 3
    assert not np.array_equal(dm.dataset("test").coords[0].numpy(), item["coords"].numpy())  # other shapes


def test_folder_and_bundled_sources(tmp_path: Path) -> None:
    for k, size in enumerate((1.0, 2.0, 3.0)):
        trimesh.creation.box(extents=(size, 1.0, 1.0)).export(tmp_path / f"box{k}.ply")
    dm = SDFDataModule(dataset="folder", root=str(tmp_path), cache_dir=str(tmp_path / "cache"), test_fraction=0.34,
                       **{k: v for k, v in TINY.items() if k not in ("num_train", "num_test")})  # fmt: skip
    assert len(dm.dataset("train")) == 2 and len(dm.dataset("test")) == 1
    with pytest.raises(FileNotFoundError, match="at least two OBJ/PLY/STL/OFF"):
        SDFDataModule(dataset="folder", root=str(tmp_path / "empty"), cache_dir=str(tmp_path)).dataset(
            "train"
        )
    with pytest.raises(ValueError, match="needs root"):
        SDFDataModule(dataset="folder")
    pytest.importorskip("pymeshlab")
    dm = SDFDataModule(dataset="bundled", names=["cube", "bone"], cache_dir=str(tmp_path / "b"), **TINY)
    assert dm.dataset("train").names == ["cube", "bone"]


@pytest.mark.parametrize("geometry", ["se3", "translation3d"])
def test_enf_fit_fits_signed_distances(geometry: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs" / "fit" / "shapes.yaml"), "--trainer.max_steps", "3",
          "--trainer.enable_progress_bar", "false", "--model.decoder.init_args.geometry", geometry,
          "--model.decoder.init_args.hidden_dim", "16", "--model.decoder.init_args.context_dim", "8",
          "--model.fitter.init_args.num_latents", "8", "--model.num_sampled_coords", "64",
          "--artifacts.num_train_eval", "2",
          *[f"--data.init_args.{k}={v}" for k, v in TINY.items()]])  # fmt: skip
    metrics = json.loads((tmp_path / "runs" / "shapes" / "version_0" / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["equivariance_error"] < 1e-9  # f(g x; g z) = f(x; z) on the fitted SDF latents, float64
    # IoU on held-out points (the headline) and on the fitted uniform samples, each split; the held-out points
    # are cached beside the samples
    for key in ("iou_test", "iou_test_fitpoints", "iou_train", "iou_train_fitpoints", "chamfer_test"):
        assert 0 <= metrics[key] <= 2.2, key
    assert (tmp_path / "data" / "shapes" / "procedural_test_heldout.h5").is_file()
    assert (tmp_path / "runs" / "shapes" / "version_0" / "figures" / "final_reconstruction.png").is_file()


def test_procedural_validation_shapes_are_neither_test_nor_training_shapes(tmp_path: Path) -> None:
    """Model selection (``val_dataloader``) sees shapes of its own: the test stream's next ``num_val`` unique
    shapes, sampled with their own seed; the test shapes stay the first ``num_test``."""
    dm = SDFDataModule(cache_dir=str(tmp_path), num_val=2, **TINY)
    val, test, train = dm.dataset("val"), dm.dataset("test"), dm.dataset("train")
    assert len(val) == 2 and dm.val_dataloader().dataset is val
    names = [set(d.names) for d in (train, val, test)]
    assert not names[1] & names[2] and not names[1] & names[0]
    # the test shapes are those of a module without a validation split request (the first num_test)
    other = SDFDataModule(cache_dir=str(tmp_path / "other"), num_val=1, **TINY)
    assert other.dataset("test").names == test.names
    with pytest.raises(ValueError, match="num_val must be a positive int"):
        SDFDataModule(num_val=0)
    bundled = SDFDataModule(dataset="bundled", cache_dir=str(tmp_path / "b"), **TINY)
    assert not bundled.has_val_split
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]"):
        bundled.dataset("val")


def test_primitives_are_labelled_shapes_of_one_kind_in_their_own_axes(tmp_path: Path) -> None:
    """The class of a ``primitives`` shape is the kind of all its parts, stored as ``label`` (from the shape's
    name) and yielded with every item; parts are axis-aligned; the validation shapes follow the test ones in the
    other seed's stream; unlabelled sources yield no label."""
    from enf.data.shapes import meshes as m

    dm = SDFDataModule(dataset="primitives", cache_dir=str(tmp_path), num_val=2, **TINY)
    train, val, test = (dm.dataset(s) for s in ("train", "val", "test"))
    for data in (train, val, test):
        assert data.labels.tolist() == [m.PRIMITIVES.index(n.rsplit("_", 1)[1]) for n in data.names]
        assert data[0]["label"] == data.labels[0]
    assert [n.split("_")[2] for n in test.names + val.names] == ["0", "1", "2", "3"]
    assert dm.class_names == m.PRIMITIVES and dm.has_val_split
    assert "label" not in SDFDataModule(cache_dir=str(tmp_path / "p"), **TINY).dataset("train")[0]
    rng = np.random.default_rng(0)
    parts = m._random_parts(rng, 3, kind="torus", aligned=True)
    assert all(kind == "torus" and np.array_equal(rot, np.eye(3)) for kind, _, rot, _ in parts)
    free = m._random_parts(np.random.default_rng(0), 3)
    assert not all(np.array_equal(rot, np.eye(3)) for _, _, rot, _ in free)  # control: random rotations
    single = next(s for s in m.iter_primitive_shapes(seed=5, max_parts=1) if s.name.endswith("_box"))

    def on_bounding_box(v: np.ndarray) -> np.ndarray:  # |v - centre| / half-extent, largest axis
        low, high = v.min(0), v.max(0)
        return (np.abs(v - (low + high) / 2) / ((high - low) / 2)).max(1)

    assert on_bounding_box(single.vertices).min() > 0.97  # an aligned box is its own bounding box
    turned = single.vertices @ m._rotation(np.random.default_rng(1)).T
    assert on_bounding_box(turned).min() < 0.5  # control: a turned box is not
    with pytest.raises(ValueError, match="is not a shape of iter_primitive_shapes"):
        m.primitive_label("procedural_0_3")
