"""ShapeNet from a local root (fake copies in both layouts here): the splits per category, the samples and
surfaces read back, and a clear error saying how to obtain ShapeNet when the root is missing or empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trimesh", reason='meshes need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')

import trimesh  # noqa: E402

from enf.data.modules.sdf import SDFDataModule  # noqa: E402
from enf.data.shapes.sdf import signed_distance  # noqa: E402
from enf.data.shapes.shapenet import load_deepsdf_samples, shapenet_models, synset_id  # noqa: E402

SIZES = dict(num_near=60, num_uniform=20, num_surface=10, batch_size=2)


def _core_v2(root: Path) -> None:
    """Two categories (chairs: 4 boxes, cars: 2 boxes) in ShapeNetCore v2's layout, with an open mesh."""
    for synset, count in (("03001627", 4), ("02958343", 2)):
        for k in range(count):
            folder = root / synset / f"model{k}" / "models"
            folder.mkdir(parents=True)
            box = trimesh.creation.box(extents=(1.0 + k, 1.0, 0.5))
            if synset == "02958343" and k == 1:
                box = trimesh.Trimesh(box.vertices, box.faces[:-1])  # one triangle missing: not watertight
            box.export(folder / "model_normalized.obj")


def test_shapenet_meshes_split_per_category_and_sample_true_distances(tmp_path: Path) -> None:
    _core_v2(tmp_path / "ShapeNetCore.v2")
    layout, train = shapenet_models(tmp_path / "ShapeNetCore.v2", split="train", test_fraction=0.5)
    _, test = shapenet_models(tmp_path / "ShapeNetCore.v2", split="test", test_fraction=0.5)
    assert layout == "meshes" and len(train) == 3 and len(test) == 3
    assert not set(train) & set(test)
    _, chairs = shapenet_models(
        tmp_path / "ShapeNetCore.v2", split="train", categories=["chair"], test_fraction=0.5
    )
    assert [p.parts[-3] for p in chairs] == ["model0", "model1"]
    dm = SDFDataModule(dataset="shapenet", root=str(tmp_path / "ShapeNetCore.v2"), categories=["03001627"],
                       test_fraction=0.5, cache_dir=str(tmp_path / "cache"), **SIZES)  # fmt: skip
    data = dm.dataset("train")
    assert len(data) == 2 and data.names == ["03001627/model0", "03001627/model1"]
    mesh = data.mesh(1)  # normalised: farthest vertex on the unit sphere
    assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(
        data.signal[1, :, 0].numpy(), signed_distance(data.coords[1].numpy(), mesh), atol=1e-5
    )
    # the open car mesh is used (with a warning), not refused
    cars = SDFDataModule(dataset="shapenet", root=str(tmp_path / "ShapeNetCore.v2"), categories=["car"],
                         test_fraction=0.5, cache_dir=str(tmp_path / "cars"), **SIZES)  # fmt: skip
    assert cars.dataset("test").names == ["02958343/model1"]


def test_deepsdf_samples_are_read_with_their_signs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "SdfSamples" / "ShapeNetV2" / "03001627"
    folder.mkdir(parents=True)
    for k in range(3):  # samples of a sphere of radius 0.5: sdf = |x| - 0.5
        x = rng.uniform(-1, 1, (400, 3))
        sdf = np.linalg.norm(x, axis=1) - 0.5
        rows = np.concatenate([x, sdf[:, None]], 1)
        np.savez(folder / f"m{k}.npz", pos=rows[sdf >= 0], neg=rows[sdf < 0])
    coords, sdf, surface = load_deepsdf_samples(folder / "m0.npz", num_points=100, num_surface=8, rng=rng)
    np.testing.assert_allclose(sdf, np.linalg.norm(coords, axis=1) - 0.5, atol=1e-12)
    assert (sdf < 0).sum() == 50  # half inside, half outside
    assert np.abs(np.linalg.norm(surface, axis=1) - 0.5).max() < 0.05  # the samples nearest the surface
    dm = SDFDataModule(dataset="shapenet", root=str(tmp_path / "SdfSamples"), test_fraction=0.34,
                       cache_dir=str(tmp_path / "cache"), **SIZES)  # fmt: skip
    train, test = dm.dataset("train"), dm.dataset("test")
    assert len(train) == 2 and len(test) == 1 and test.names == ["03001627/m2"]
    assert bool(train.uniform.all())  # IoU counts every DeepSDF sample
    with pytest.raises(ValueError, match="stores no meshes"):
        train.mesh(0)
    np.savez(folder / "bad.npz", pos=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'pos' and 'neg'"):
        load_deepsdf_samples(folder / "bad.npz", num_points=10, num_surface=2, rng=rng)


def test_missing_shapenet_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shapenet.org"):
        SDFDataModule(dataset="shapenet")
    for root in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(FileNotFoundError, match="register at https://shapenet.org"):
            SDFDataModule(dataset="shapenet", root=str(root), cache_dir=str(tmp_path / "c")).dataset("train")
    assert synset_id("chair") == "03001627" and synset_id("04379243") == "04379243"
    with pytest.raises(ValueError, match="unknown ShapeNet category"):
        synset_id("dragon")
