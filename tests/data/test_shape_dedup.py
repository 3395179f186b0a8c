"""Procedural test shapes are not copies of training shapes (enf.data.shapes.dedup).

The split is checked independently of the fingerprints it was chosen by: libigl signed distances on other
probe points, in the normalised frame the shapes are fitted in. Negative controls: the same check finds the
duplicates of the previous split (single spheres, which all normalise to the unit sphere), and planted copies
(exact, or rotated, scaled and moved) are skipped. Needs the mesh extra."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("trimesh", reason='meshes need the mesh extra: pip install -e ".[mesh]"')

from scipy.spatial.transform import Rotation  # noqa: E402

from enf.data.modules.sdf import SDFDataModule  # noqa: E402
from enf.data.shapes.dedup import DUPLICATE_IOU, fingerprints, overlap, unique_shapes  # noqa: E402
from enf.data.shapes.meshes import Mesh, iter_procedural_shapes, normalize_mesh, procedural_shapes  # noqa: E402
from enf.data.shapes.sdf import signed_distance  # noqa: E402

NUM_TRAIN, NUM_TEST = 24, 10
TINY = dict(num_near=40, num_uniform=20, num_surface=10, num_heldout=10, batch_size=2)


def occupancy_agreement(a: list[Mesh], b: list[Mesh], *, num_probes: int = 4000) -> np.ndarray:
    """IoU ``[A, B]`` of the occupancies (libigl signed distance < 0) on uniform probes in ``[-1, 1]^3``: the
    independent check, in the frame the shapes are fitted in (normalised to the unit bounding sphere)."""
    probes = np.random.default_rng(2718).uniform(-1.0, 1.0, size=(num_probes, 3))
    occ_a = np.stack([signed_distance(probes, m) < 0 for m in a]).astype(float)
    occ_b = np.stack([signed_distance(probes, m) < 0 for m in b]).astype(float)
    inter = occ_a @ occ_b.T
    return inter / (occ_a.sum(1)[:, None] + occ_b.sum(1)[None] - inter)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[list[Mesh], list[Mesh]]:
    """The train and test meshes of the procedural SDF data module, as stored in its sample files."""
    dm = SDFDataModule(
        num_train=NUM_TRAIN, num_test=NUM_TEST, cache_dir=str(tmp_path_factory.mktemp("c")), **TINY
    )
    train, test = dm.dataset("train"), dm.dataset("test")
    return [train.mesh(i) for i in range(len(train))], [test.mesh(i) for i in range(len(test))]


def test_no_procedural_test_shape_duplicates_a_training_shape(split) -> None:
    train, test = split
    assert len(test) == NUM_TEST
    iou = occupancy_agreement(test, train)
    assert iou.max() < DUPLICATE_IOU, f"test shape {test[iou.max(1).argmax()].name} copies a training shape"
    # the single spheres (and a sphere swallowing a capsule) of the previous split were skipped
    names = {m.name for m in test}
    assert not names & {"procedural_100003_3", "procedural_100003_6", "procedural_100003_9"}
    assert names <= {f"procedural_100003_{i}" for i in range(NUM_TEST + 3)}  # the stream, in order


def test_the_check_finds_the_duplicates_of_the_previous_split(split) -> None:
    """Negative control: the test split as it was (the stream's first shapes, none skipped) holds copies."""
    train, _ = split
    iou = occupancy_agreement(procedural_shapes(NUM_TEST, seed=100_003), train)
    duplicates = np.flatnonzero(iou.max(1) >= DUPLICATE_IOU)
    assert duplicates.tolist() == [3, 6, 9]  # two single spheres, a sphere around a capsule
    assert iou.max(1)[[3, 6]].min() > 0.99


def _moved_copy(mesh: Mesh, seed: int) -> tuple[Mesh, Callable[[np.ndarray], np.ndarray]]:
    """``mesh`` rotated, scaled by 0.7 and moved, then normalised again (as a new shape would be), and the map
    from the copy's points back to the original's."""
    rot, shift = Rotation.random(random_state=seed).as_matrix(), np.array([0.1, -0.2, 0.05])
    moved = 0.7 * mesh.vertices @ rot.T + shift
    copy = normalize_mesh(Mesh(vertices=moved, faces=mesh.faces, name=f"moved_{mesh.name}"))
    centre = 0.5 * (moved.min(0) + moved.max(0))
    scale = np.linalg.norm(moved - centre, axis=1).max()  # normalize_mesh: (x - centre) / scale
    return copy, lambda y: ((y * scale + centre - shift) / 0.7) @ rot


def test_planted_copies_are_skipped_even_rotated(split) -> None:
    train, _ = split
    exact = Mesh(vertices=train[1].vertices, faces=train[1].faces, name="copy")
    moved, back = _moved_copy(train[0], seed=3)
    # the moved copy is a copy: mapped back by its motion it fills the original's volume...
    probes = np.random.default_rng(1).uniform(-1.0, 1.0, size=(4000, 3))
    occ_moved, occ_back = signed_distance(probes, moved) < 0, signed_distance(back(probes), train[0]) < 0
    assert (occ_moved & occ_back).sum() / (occ_moved | occ_back).sum() > 0.98
    # ...but it does not look like one in the fitted frame, so the canonical frame is needed to see it
    assert occupancy_agreement([moved], train).max() < DUPLICATE_IOU
    candidates = itertools.chain([exact, moved], iter_procedural_shapes(seed=100_003))
    kept, skipped = unique_shapes(candidates, train, num_shapes=3)
    assert [s["name"] for s in skipped[:2]] == ["copy", "moved_procedural_0_0"]
    assert skipped[0]["duplicate_of"] == train[1].name and skipped[1]["duplicate_of"] == train[0].name
    assert skipped[1]["iou"] > 0.95 and "copy" not in {m.name for m in kept}


def test_fingerprints_are_invariant_to_rigid_motions_and_scale(split) -> None:
    train, _ = split
    moved, _ = _moved_copy(train[2], seed=5)
    iou, nearest = overlap(fingerprints([moved], all_signs=True), fingerprints(train[2:3]))
    assert nearest[0] == 0 and iou[0] > 0.95


def test_bad_inputs_raise_clear_errors(split) -> None:
    train, _ = split
    with pytest.raises(ValueError, match="num_shapes >= 1"):
        unique_shapes(iter(train), train, num_shapes=0)
    with pytest.raises(ValueError, match="threshold"):
        unique_shapes(iter(train), train, num_shapes=1, threshold=1.5)
    with pytest.raises(ValueError, match=r"only 0 of 3 candidate shapes"):
        unique_shapes(iter(train), train, num_shapes=1, max_candidates=3)  # every candidate is a copy
    with pytest.raises(ValueError, match="ran out"):
        unique_shapes(iter(train[:2]), train[2:3], num_shapes=5, threshold=1.0)
    with pytest.raises(ValueError, match=r"candidates \[C, 5, P\]"):
        overlap(fingerprints(train[:1]), fingerprints(train[:1]))
    with pytest.raises(ValueError, match="at least one mesh"):
        fingerprints([])


@pytest.mark.slow
def test_full_procedural_config_split() -> None:
    """The split of configs/fit/shapes.yaml (256 train, 16 test) through its own code path: 5 candidates
    skipped (the earlier split had 4 copies among its 16: three single spheres and a sphere around a capsule)."""
    pytest.importorskip("skimage")
    train = procedural_shapes(256, seed=0)
    test, skipped = unique_shapes(iter_procedural_shapes(seed=100_003), train, num_shapes=16)
    assert [s["name"].rsplit("_", 1)[1] for s in skipped] == ["3", "6", "9", "13", "18"]
    assert occupancy_agreement(test, train, num_probes=2000).max() < DUPLICATE_IOU
