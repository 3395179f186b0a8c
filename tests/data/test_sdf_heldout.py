"""Held-out evaluation of signed distances: the IoU of ``metrics.json`` is measured on fresh uniform points that
no fitting or refinement step sees, against the mesh's own signs, and agrees with closed-form volumes.

Needs the mesh extra (libigl signed distances, trimesh, scikit-image marching cubes)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("trimesh", reason='meshes need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("skimage", reason='marching cubes need the mesh extra: pip install -e ".[mesh]"')

import trimesh  # noqa: E402

from enf import EquivariantNeuralField, Latents, geometry  # noqa: E402
from enf.data import keys  # noqa: E402
from enf.data.field import FieldSpec  # noqa: E402
from enf.data.modules.sdf import HeldoutDataset, SDFDataModule  # noqa: E402
from enf.data.shapes.meshes import Mesh  # noqa: E402
from enf.data.shapes.sdf import build_heldout_file, heldout_rng  # noqa: E402
from enf.fitting import MetaSGD  # noqa: E402
from enf.training.fitting_module import FieldFittingModule  # noqa: E402
from enf.training.shapes3d import heldout_iou, shape_metric_key  # noqa: E402

TINY = dict(
    num_train=2, num_test=2, num_near=200, num_uniform=50, num_surface=20, num_heldout=300, batch_size=2
)
RADIUS = 0.8


def _sphere(radius: float = RADIUS) -> Mesh:
    tm = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    return Mesh(vertices=tm.vertices, faces=tm.faces, name="sphere")


def _rows(points: torch.Tensor) -> set[tuple[float, float, float]]:
    return set(map(tuple, points.reshape(-1, 3).double().tolist()))


def test_heldout_points_are_never_seen_by_the_fitter(tmp_path: Path, monkeypatch) -> None:
    dm = SDFDataModule(cache_dir=str(tmp_path), **TINY)
    geom = geometry.get("se3")
    decoder = EquivariantNeuralField(
        geometry=geom, num_out=1, context_dim=8, hidden_dim=16, num_heads=2, k_nearest=4
    )
    fitter = MetaSGD(num_latents=8, num_inner_steps=1, num_eval_steps=2, first_order=True, num_refine_steps=2)
    module = FieldFittingModule(decoder=decoder, fitter=fitter, loss="sdf_l1", field=dm.field_spec_dict,
                                num_eval_coords=64, mesh_resolution=16)  # fmt: skip
    seen: list[torch.Tensor] = []
    encode = module.encode

    def recording_encode(batch, **kwargs):  # every point the decoder is asked about while fitting/refining
        handle = decoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
        try:
            return encode(batch, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(module, "encode", recording_encode)
    loader = dm.metrics_dataloader("test")
    metrics = module.evaluate("test", loader=loader, equivariance=False)
    assert {"iou", "iou_fitpoints", "chamfer", "mse"} <= set(metrics) and len(seen) > 2
    fitted = _rows(dm.dataset("test").coords)
    looked_at = set().union(*map(_rows, seen))
    heldout = _rows(torch.stack([item[keys.HELDOUT_COORDS] for item in loader.dataset]))
    assert looked_at <= fitted  # the fit and its refinement query only the fitted samples...
    assert len(heldout) == 2 * 300 and not heldout & fitted  # ...which no held-out point is one of
    assert not heldout & _rows(dm.dataset("train").coords) and not heldout & _rows(dm.dataset("test").surface)
    # the held-out IoU is the IoU of the fitted field on those points (the encoding is seeded)
    batch = next(iter(loader))
    with torch.enable_grad():
        z = encode(batch, train=False)
    assert metrics["iou"] == pytest.approx(float(heldout_iou(decoder, z, batch).mean()), abs=1e-6)
    # negative control: the recorder sees held-out points when they are (wrongly) given to the fitter
    seen.clear()
    leaked = {**batch, keys.COORDS: batch[keys.HELDOUT_COORDS], keys.SIGNAL: batch[keys.HELDOUT_SIGNAL]}
    with torch.enable_grad():
        module.encode(leaked, train=False)
    assert set().union(*map(_rows, seen)) & heldout
    # a loader without held-out points (DeepSDF samples) reports only the IoU on the fitted points
    plain = module.evaluate("test", loader=dm.eval_dataloader("test"), equivariance=False)
    assert "iou" not in plain and plain["iou_fitpoints"] == pytest.approx(metrics["iou_fitpoints"])


def test_heldout_seed_stream_is_not_a_fitting_seed() -> None:
    draw = heldout_rng(7919, 3).uniform(size=4)
    for seed in (7919 + 3, 10_000 + 7919 + 3, 0, 3):  # the seeds of the fitted and surface samples
        assert not np.isin(draw, np.random.default_rng(seed).uniform(size=1000)).any()
    np.testing.assert_array_equal(draw, heldout_rng(7919, 3).uniform(size=4))  # reproducible


def _sphere_field(radius: float, centre: tuple[float, float, float]):
    def field(coords: torch.Tensor, latents: Latents) -> torch.Tensor:
        return (coords - torch.tensor(centre, dtype=coords.dtype)).norm(dim=-1, keepdim=True) - radius

    return field


def test_heldout_iou_agrees_with_closed_form_volumes(tmp_path: Path) -> None:
    arrays = build_heldout_file(lambda i: _sphere(), 1, tmp_path / "h.h5", source={"sphere": RADIUS},
                                num_points=100_000, bound=1.1, seed=0, progress=False)  # fmt: skip
    batch = {
        keys.HELDOUT_COORDS: torch.as_tensor(arrays["coords"]),
        keys.HELDOUT_SIGNAL: torch.as_tensor(arrays["signal"]),
    }
    x = batch[keys.HELDOUT_COORDS][0].double()
    assert x.abs().max() <= 1.1 and x.shape == (100_000, 3)
    # the stored signs are the sphere's (the mesh is a fine icosphere)
    assert (batch[keys.HELDOUT_SIGNAL][0, :, 0].double() - (x.norm(dim=-1) - RADIUS)).abs().max() < 2e-3
    z = Latents(poses=torch.zeros(1, 1, 3), context=torch.zeros(1, 1, 1), window=torch.ones(1, 1, 1))
    r, d = 0.7, 0.25
    lens = math.pi * (4 * RADIUS + d) * (2 * RADIUS - d) ** 2 / 12  # two spheres of radius R, centres d apart
    cases = [
        ((r, (0.0, 0.0, 0.0)), (r / RADIUS) ** 3),  # a smaller concentric sphere
        ((RADIUS, (d, 0.0, 0.0)), lens / (2 * 4 / 3 * math.pi * RADIUS**3 - lens)),  # the sphere moved by d
    ]
    for (radius, centre), exact in cases:
        iou = float(heldout_iou(_sphere_field(radius, centre), z, batch, chunk_size=30_000)[0])
        pred, true = (x - torch.tensor(centre).double()).norm(dim=-1) < radius, x.norm(dim=-1) < RADIUS
        direct = float((pred & true).sum() / (pred | true).sum())  # the same points, the exact spheres
        assert iou == pytest.approx(direct, abs=2e-3)
        assert iou == pytest.approx(exact, abs=0.01)  # Monte Carlo over 100k points: std about 0.003
    assert float(heldout_iou(_sphere_field(RADIUS, (0.0, 0.0, 0.0)), z, batch)[0]) > 0.998  # the truth itself


def test_heldout_cache_is_reused_and_extended(tmp_path: Path) -> None:
    box = trimesh.creation.box(extents=(1.0, 0.8, 0.6))
    meshes = [_sphere(), Mesh(vertices=box.vertices, faces=box.faces, name="box")]
    kw = dict(source={"meshes": ["sphere", "box"]}, num_points=500, seed=4, progress=False)
    one = build_heldout_file(meshes.__getitem__, 1, tmp_path / "h.h5", **kw)
    stamp = (tmp_path / "h.h5").stat().st_mtime_ns
    assert build_heldout_file(meshes.__getitem__, 1, tmp_path / "h.h5", **kw)["coords"].shape == (1, 500, 3)
    assert (tmp_path / "h.h5").stat().st_mtime_ns == stamp  # reused, not sampled again
    two = build_heldout_file(meshes.__getitem__, 2, tmp_path / "h.h5", **kw)  # extended by shape 1
    fresh = build_heldout_file(meshes.__getitem__, 2, tmp_path / "fresh.h5", **kw)
    np.testing.assert_array_equal(two["coords"][:1], one["coords"])
    np.testing.assert_array_equal(two["coords"], fresh["coords"])
    np.testing.assert_array_equal(two["signal"], fresh["signal"])
    inside_box = (np.abs(two["coords"][1]) < [0.5, 0.4, 0.3]).all(1)
    assert (two["signal"][1, :, 0] < 0).tolist() == inside_box.tolist()
    other = build_heldout_file(meshes.__getitem__, 2, tmp_path / "h.h5", **{**kw, "seed": 5})  # new settings
    assert not _rows(torch.as_tensor(other["coords"])) & _rows(torch.as_tensor(two["coords"]))


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    build = lambda n, **kw: build_heldout_file(lambda i: _sphere(), n, tmp_path / "h.h5", source={}, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="num_shapes >= 1"):
        build(0)
    with pytest.raises(ValueError, match="num_points >= 1"):
        build(1, num_points=0)
    with pytest.raises(ValueError, match="bound > 0"):
        build(1, bound=0.0)
    with pytest.raises(ValueError, match="seed >= 0"):
        heldout_rng(-1, 0)
    z = Latents(poses=torch.zeros(1, 1, 3), context=torch.zeros(1, 1, 1), window=torch.ones(1, 1, 1))
    field = _sphere_field(0.5, (0.0, 0.0, 0.0))
    with pytest.raises(KeyError, match="heldout_coords"):
        heldout_iou(field, z, {keys.COORDS: torch.zeros(1, 4, 3)})
    with pytest.raises(ValueError, match=r"\[B, E, 3\]"):
        heldout_iou(
            field, z, {keys.HELDOUT_COORDS: torch.zeros(1, 4, 3), keys.HELDOUT_SIGNAL: torch.zeros(1, 4)}
        )
    with pytest.raises(ValueError, match="held-out samples for 1 shapes, but 2"):
        HeldoutDataset([{}, {}], {"coords": np.zeros((1, 3, 3)), "signal": np.zeros((1, 3, 1))})
    with pytest.raises(ValueError, match="num_heldout must be >= 1"):
        SDFDataModule(num_heldout=0)
    with pytest.raises(ValueError, match="test_names picks held-out bundled meshes"):
        SDFDataModule(test_names=["bunny"])


def test_bundled_meshes_are_a_fit_set_unless_some_are_held_out(tmp_path: Path) -> None:
    pytest.importorskip("pymeshlab")
    tiny = {k: v for k, v in TINY.items() if k not in ("num_train", "num_test")}
    fit_set = SDFDataModule(dataset="bundled", names=["cube", "bone", "cow"], cache_dir=str(tmp_path), **tiny)
    spec = fit_set.field_spec
    assert spec.extra["test_is_heldout"] is False and fit_set.dataset("test").names == ["cube", "bone", "cow"]
    assert [shape_metric_key(n, "test", spec) for n in ("iou", "iou_fitpoints", "chamfer")] == [
        "iou_fit", "iou_fit_fitpoints", "chamfer_fit"]  # fmt: skip
    assert shape_metric_key("iou_fitpoints", "train", spec) == "iou_train_fitpoints"
    held = SDFDataModule(dataset="bundled", names=["cube", "bone", "cow"], test_names=["bone"],
                         cache_dir=str(tmp_path / "held"), **tiny)  # fmt: skip
    assert held.dataset("train").names == ["cube", "cow"] and held.dataset("test").names == ["bone"]
    assert shape_metric_key("iou", "test", held.field_spec) == "iou_test"
    assert shape_metric_key("iou", "test", FieldSpec.from_dict({**spec.to_dict(), "extra": {}})) == "iou_test"
    for bad in (["bunny"], ["cube", "bone", "cow"]):  # not among names; nothing left to train on
        with pytest.raises(ValueError, match="leaving at least one to train on"):
            SDFDataModule(dataset="bundled", names=["cube", "bone", "cow"], test_names=bad,
                          cache_dir=str(tmp_path / "bad"), **tiny).dataset("train")  # fmt: skip
