"""Edit records: JSON round trips, replay equals the direct calls, undo/redo restore exact states, interpolation
matches latents by optimal assignment and commutes with the group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_ops import cloud

import enf
from enf.editing import (
    Edit,
    EditHistory,
    interpolate,
    load_edits,
    match_latents,
    replay,
    rotate,
    save_edits,
    scale,
    swap,
    translate,
)

SCRIPT = [
    {"op": "translate", "offset": [0.2, -0.1], "select": [0, 1]},
    {"op": "rotate", "angle": 0.5, "select": [1, 2, 3]},
    {"op": "scale", "factor": 1.3, "center": [0.0, 0.0], "select": [4]},
    {"op": "duplicate", "select": [5], "offset": [0.05, 0.0]},
    {"op": "paste", "source": "b", "select": [2, 3]},
    {"op": "copy_context", "source_index": 0, "select": [6]},
    {"op": "delete", "select": [7]},
]


def test_replay_equals_the_direct_calls_and_survives_json(tmp_path: Path) -> None:
    geom = enf.geometry.get("se2")
    a, b = cloud("se2", batch=1, seed=1), cloud("se2", batch=1, seed=2)
    edits = [Edit.from_dict(e) for e in SCRIPT]
    path = save_edits(tmp_path / "edits.json", edits, meta={"image": "test[3]"})
    loaded = load_edits(path)
    assert [e.to_dict() for e in loaded] == SCRIPT
    assert json.loads(path.read_text())["meta"] == {"image": "test[3]"}
    out = replay(a, geom, loaded, sources={"b": b})
    direct = translate(a, geom, [0.2, -0.1], select=[0, 1])
    direct = rotate(direct, geom, 0.5, select=[1, 2, 3])
    direct = scale(direct, geom, 1.3, center=[0.0, 0.0], select=[4])
    direct = enf.editing.duplicate(direct, geom, select=[5], g=enf.geometry.GroupElement(
        translation=torch.tensor([[0.05, 0.0]], dtype=torch.float64)))  # fmt: skip
    direct = enf.editing.paste(direct, b, geom, select=[2, 3])
    direct = enf.editing.copy_context(direct, source=0, select=[6])
    direct = enf.editing.delete(direct, select=[7])
    for name in ("poses", "context", "window"):
        assert torch.equal(getattr(out, name), getattr(direct, name))


def test_history_undo_and_redo_restore_the_exact_states() -> None:
    geom = enf.geometry.get("translation2d")
    z = cloud("translation2d", batch=1)
    history = EditHistory(z, geom)
    s1 = history.push({"op": "translate", "offset": [0.1, 0.0], "select": [2]})
    s2 = history.push(Edit("delete", {"select": [0]}))
    assert history.undo() is s1 and history.undo() is z and not history.can_undo
    assert history.redo() is s1 and history.can_redo
    s3 = history.push({"op": "scale", "factor": 2.0})  # a new edit drops the undone one
    assert not history.can_redo and [e.op for e in history.edits] == ["translate", "scale"]
    assert s3.num_latents == z.num_latents and s2.num_latents == z.num_latents - 1
    assert torch.equal(replay(z, geom, history.edits).poses, history.current.poses)
    with pytest.raises(IndexError, match="nothing to redo"):
        history.redo()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"op": "explode"}, "unknown edit op 'explode'"),
        (
            {"op": "translate", "offset": [0.1, 0.0], "path": "/etc/passwd"},
            r"unknown parameter\(s\) \['path'\]",
        ),
        ({"op": "translate"}, "needs the parameter 'offset'"),
        ({"op": "rotate", "angle": float("nan")}, "finite numbers"),
        ({"op": "delete", "select": [0, "1"]}, "list of latent indices"),
        ({"op": "interpolate", "source": "", "t": 0.5}, "non-empty string"),
        ({"op": "transform", "rotation": [[1, 0], [0]]}, "2x2 or 3x3"),
    ],
)
def test_bad_records_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Edit.from_dict(bad)


def test_replay_errors_name_the_edit_and_missing_files_are_clear(tmp_path: Path) -> None:
    geom, z = enf.geometry.get("se2"), cloud("se2", batch=1)
    with pytest.raises(IndexError, match=r"edit 1 \(delete\): latent index 40"):
        replay(z, geom, [{"op": "scale", "factor": 1.1}, {"op": "delete", "select": [40]}])
    with pytest.raises(ValueError, match=r"edit 0 \(paste\): .*source cloud 'b', which is not loaded"):
        replay(z, geom, [{"op": "paste", "source": "b", "select": [0]}])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_edits(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_edits(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"edits": [{"op": "translate", "offset": 3}]}')
    with pytest.raises(ValueError, match="edit 0"):
        load_edits(tmp_path / "wrong.json")


# ---------------------------------------------------------------------------------------- interpolation
def test_matching_recovers_a_shuffled_cloud_and_the_ends_are_exact() -> None:
    geom = enf.geometry.get("se2")
    a = cloud("se2", batch=2, num=16)
    perm = torch.stack([torch.randperm(16), torch.randperm(16)])
    b = a.map(lambda t: torch.gather(t, 1, perm.unsqueeze(-1).expand_as(t)))
    found = match_latents(a, b, geom)
    assert torch.equal(torch.gather(perm, 1, found), torch.arange(16).expand(2, 16))
    for t, ref in ((0.0, a), (1.0, a)):
        out = interpolate(a, b, geom, t)
        torch.testing.assert_close(out.poses, ref.poses, atol=1e-14, rtol=0)
        torch.testing.assert_close(out.context, ref.context, atol=1e-14, rtol=0)


def test_interpolated_orientations_turn_the_short_way_and_commute_with_the_group() -> None:
    geom = enf.geometry.get("se2")
    a = enf.Latents(poses=torch.tensor([[[0.0, 0.0, 1.0, 0.0]]], dtype=torch.float64),
                    context=torch.zeros(1, 1, 2, dtype=torch.float64), window=torch.ones(1, 1, 1, dtype=torch.float64))  # fmt: skip
    b = a.replace(poses=torch.tensor([[[1.0, 0.0, math.cos(-2.0), math.sin(-2.0)]]], dtype=torch.float64))
    mid = interpolate(a, b, geom, 0.5)
    expected = torch.tensor([0.5, 0.0, math.cos(-1.0), math.sin(-1.0)], dtype=torch.float64)
    torch.testing.assert_close(mid.poses[0, 0], expected, atol=1e-15, rtol=0)
    za, zb = cloud("se2", batch=3, seed=3), cloud("se2", batch=3, seed=4)
    g = geom.sample_group(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    moved = interpolate(za.transform(geom, g), zb.transform(geom, g), geom, 0.3)
    torch.testing.assert_close(
        moved.poses, interpolate(za, zb, geom, 0.3).transform(geom, g).poses, atol=1e-12, rtol=0
    )


def test_sphere_positions_stay_on_the_sphere() -> None:
    geom = enf.geometry.get("sphere")
    a, b = cloud("sphere", batch=1, seed=5), cloud("sphere", batch=1, seed=6)
    a = a.replace(
        poses=torch.cat(
            [a.poses[..., :3] / a.poses[..., :3].norm(dim=-1, keepdim=True), a.poses[..., 3:]], -1
        )
    )
    b = b.replace(
        poses=torch.cat(
            [b.poses[..., :3] / b.poses[..., :3].norm(dim=-1, keepdim=True), b.poses[..., 3:]], -1
        )
    )
    mid = interpolate(a, b, geom, 0.4)
    torch.testing.assert_close(
        mid.poses[..., :3].norm(dim=-1), torch.ones(1, 9, dtype=torch.float64), atol=1e-12, rtol=0
    )


def test_interpolation_and_swap_refuse_mismatched_clouds() -> None:
    geom = enf.geometry.get("se2")
    with pytest.raises(ValueError, match="differ in shape"):
        interpolate(cloud("se2", num=9), cloud("se2", num=4), geom, 0.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        interpolate(cloud("se2"), cloud("se2"), geom, 1.5)
    with pytest.raises(ValueError, match="batch sizes"):
        swap(cloud("se2", batch=1), cloud("se2", batch=2), select_a=[0], select_b=[0])


WRONG_WIDTH = [
    {"op": "transform", "translation": [0.1, 0.2, 0.3]},
    {"op": "translate", "offset": [0.1, 0.2, 0.3]},
    {"op": "rotate", "angle": 0.3, "center": [0.0, 0.0, 0.0]},
    {"op": "scale", "factor": 1.2, "center": [0.0, 0.0, 0.0]},
    {"op": "duplicate", "select": [0], "offset": [0.1, 0.0, 0.0]},
    {"op": "paste", "source": "b", "select": [0], "offset": [0.1, 0.0, 0.0]},
]


@pytest.mark.parametrize("record", WRONG_WIDTH, ids=lambda r: r["op"])
def test_vectors_of_the_wrong_width_are_refused_by_name(record: dict) -> None:
    z = cloud("se2")
    with pytest.raises(ValueError, match=r"has 3 numbers but geometry 'se2' is 2-D; give 2 numbers"):
        replay(z, enf.geometry.get("se2"), [record], sources={"b": cloud("se2", seed=1)})


@pytest.mark.parametrize(
    "matrix, message",
    [
        ([[0.0, 0.0], [0.0, 0.0]], "proper rotation"),  # collapses every latent onto one point
        ([[1.0, 0.0], [0.0, -1.0]], "det -1"),  # a reflection
        ([[2.0, 0.0], [0.0, 2.0]], "proper rotation"),  # a scaling
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "3x3 but geometry 'se2' needs 2x2"),
    ],
)
def test_transform_takes_only_proper_rotations(matrix: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replay(cloud("se2"), enf.geometry.get("se2"), [{"op": "transform", "rotation": matrix}])


def test_a_proper_rotation_passes() -> None:
    z, geom = cloud("se2"), enf.geometry.get("se2")
    c, s = math.cos(0.4), math.sin(0.4)
    moved = replay(z, geom, [{"op": "transform", "rotation": [[c, -s], [s, c]], "translation": [0.1, 0.0]}])
    assert moved.num_latents == z.num_latents
    torch.testing.assert_close(
        moved.poses[..., :2],
        z.poses[..., :2] @ torch.tensor([[c, s], [-s, c]], dtype=z.dtype)
        + torch.tensor([0.1, 0.0], dtype=z.dtype),
    )
