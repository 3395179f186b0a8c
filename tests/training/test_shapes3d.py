"""Equivariance you can see on 3-D shapes: moved latents decode to the moved signed-distance field (float64,
round-off) and to the moved mesh (marching cubes, up to the grid); fitting a moved shape from the moved
initial latent gives the moved latents. Negative controls: the unmoved latents, the unmoved initial latent.
Needs the mesh extra (libigl signed distances, scikit-image marching cubes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("igl", reason='signed distances need the mesh extra: pip install -e ".[mesh]"')
pytest.importorskip("skimage", reason='marching cubes need the mesh extra: pip install -e ".[mesh]"')

from _common import F64

from enf import EquivariantNeuralField, Latents, geometry  # noqa: E402
from enf.data.shapes.meshes import Mesh, procedural_shapes  # noqa: E402
from enf.data.shapes.sdf import sample_sdf, sample_surface, signed_distance  # noqa: E402
from enf.fitting import MetaSGD, sample_coordinate_subsets  # noqa: E402
from enf.metrics import per_sample_tanh_l1  # noqa: E402
from enf.testing import assert_steerable  # noqa: E402
from enf.training.shapes3d import decode_grid, grid_coords, reconstruct_meshes, surface_chamfer  # noqa: E402

BOUND = 1.1


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def shape() -> tuple[torch.Tensor, torch.Tensor]:
    """SDF samples ``coords [1, 600, 3]``, ``sdf [1, 600, 1]`` of one procedural shape, float64."""
    mesh = procedural_shapes(1, seed=5, resolution=32)[0]
    x, s = sample_sdf(mesh, num_near=400, num_uniform=200, seed=0)
    return torch.as_tensor(x)[None], torch.as_tensor(s)[None, :, None]


def fitted(name: str, shape, *, k_nearest: int | None = 4):
    """A small float64 decoder (parameters moved off their init) and latents fitted to ``shape``."""
    geom = geometry.get(name)
    torch.manual_seed(0)
    decoder = EquivariantNeuralField(geometry=geom, num_out=1, context_dim=8, hidden_dim=32, num_heads=2,
                                     num_query_frequencies=8, num_value_frequencies=8, k_nearest=k_nearest)  # fmt: skip
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    decoder = decoder.double()
    meta = MetaSGD(geometry=geom, num_latents=8, context_dim=8, lr_context=1.0, lr_position=0.05).double()
    x, s = shape
    subsets = sample_coordinate_subsets(x.shape[1], 256, 3, generator=gen(1))
    z = meta(decoder, x, s, subsets=subsets, loss=per_sample_tanh_l1, create_graph=False).detach()
    return geom, decoder, meta, subsets, z


@pytest.mark.parametrize("name", ["se3", "translation3d"])
def test_moved_latents_give_the_moved_signed_distance_field(name, shape):
    geom, decoder, _, _, z = fitted(name, shape)
    x = torch.rand(1, 300, 3, generator=gen(2), dtype=F64) * 2 * BOUND - BOUND
    # f(g x; g z) = f(x; z) for random rigid motions of the group, float64 round-off
    assert_steerable(decoder, geom, x, z, num_elements=8, generator=gen(3))
    # negative control: moving the points but not the latents changes the field
    g = geom.sample_group(1, generator=gen(4), dtype=F64)
    with torch.no_grad():
        moved_points_only = decoder(geom.act_coords(g, x), z)
        assert (moved_points_only - decoder(x, z)).abs().max() > 1e-2


def _blob_field(decoder):
    """A sphere of radius 0.5 about the latents' centroid, dented by the decoded field: a closed, asymmetric
    level set well inside the cube, and as equivariant as the decoder (the centroid moves with the latents)."""

    def field(x, latents):
        centre = latents.poses[:, None, :, :3].mean(2)  # [B, 1, 3]
        return (x - centre).norm(dim=-1, keepdim=True) - 0.5 + 0.2 * torch.tanh(decoder(x, latents))

    return field


def _moved(mesh: Mesh, rot: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(mesh.vertices) @ rot.T + t


def test_moved_latents_give_the_moved_mesh(shape):
    geom, decoder, _, _, z = fitted("se3", shape)
    field = _blob_field(decoder)
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)  # 90 deg about z
    rot = rot @ torch.linalg.matrix_exp(torch.tensor([[0, 0, 0.3], [0, 0, 0], [-0.3, 0, 0]], dtype=F64))
    t = torch.tensor([0.1, -0.05, 0.08], dtype=F64)
    g = type(geom.sample_group(1, dtype=F64))(rotation=rot[None], translation=t[None])
    resolution = 40
    mesh = reconstruct_meshes(field, z, resolution=resolution, bound=BOUND)[0]
    moved_mesh = reconstruct_meshes(field, z.transform(geom, g), resolution=resolution, bound=BOUND)[0]
    assert mesh is not None and moved_mesh is not None
    spacing = 2 * BOUND / (resolution - 1)
    expected = Mesh(vertices=_moved(mesh, rot, t).numpy(), faces=mesh.faces)  # the mesh moved by g

    def distance_to_expected(m: Mesh) -> float:  # mean distance of points on m to the expected surface
        points = sample_surface(m, 5000, rng=np.random.default_rng(0))
        return float(np.abs(signed_distance(points, expected)).mean())

    # the marching-cubes mesh of the moved latents is the moved mesh, up to the grid (a fraction of a cell)
    assert distance_to_expected(moved_mesh) < 0.1 * spacing
    # negative control: the unmoved mesh is far from the moved one
    assert distance_to_expected(mesh) > 1.0 * spacing


@pytest.mark.parametrize("name", ["se3", "translation3d"])
def test_fitting_a_moved_shape_from_the_moved_initial_latent_gives_the_moved_latents(name, shape):
    geom, decoder, meta, subsets, z = fitted(name, shape)
    x, s = shape
    z0 = meta.initial(1)
    for seed in (6, 7):
        g = geom.sample_group(1, generator=gen(seed), dtype=F64)
        kw = dict(subsets=subsets, loss=per_sample_tanh_l1, create_graph=False)
        moved = meta(decoder, geom.act_coords(g, x), s, init=z0.transform(geom, g), **kw)
        torch.testing.assert_close(moved.poses, geom.act_poses(g, z.poses), atol=1e-9, rtol=0)
        torch.testing.assert_close(moved.context, z.context, atol=1e-9, rtol=0)
        # negative control: the shared (unmoved) initial latent does not follow the shape
        unmoved = meta(decoder, geom.act_coords(g, x), s, init=z0, **kw)
        assert (unmoved.poses - geom.act_poses(g, z.poses)).abs().max() > 1e-2
    assert (z.context - z0.context).abs().max() > 1e-3  # the fit moved the latents


def test_grid_layout_and_surface_chamfer_of_a_known_field():
    x = grid_coords(5, bound=1.0, dtype=F64)
    assert x.shape == (125, 3) and x[0].tolist() == [-1.0, -1.0, -1.0] and x[1].tolist() == [-1.0, -1.0, -0.5]
    z = Latents(poses=torch.zeros(2, 1, 3, dtype=F64), context=torch.zeros(2, 1, 1, dtype=F64),
                window=torch.ones(2, 1, 1, dtype=F64))  # fmt: skip
    radius = torch.tensor([0.5, 0.8], dtype=F64)

    def sphere(coords, latents):  # the SDF of spheres of radius 0.5 and 0.8 about the latent position
        return (coords - latents.poses).norm(dim=-1, keepdim=True) - radius[:, None, None]

    grid = decode_grid(sphere, z, resolution=9, bound=1.0, chunk_size=100)
    torch.testing.assert_close(grid[1, 4, 4, 4], torch.tensor(-0.8, dtype=F64))  # the centre of the grid
    meshes = reconstruct_meshes(sphere, z, resolution=40, bound=1.0)
    truth = torch.nn.functional.normalize(torch.randn(2, 8000, 3, generator=gen(0), dtype=F64), dim=-1)
    truth = truth * radius[:, None, None]
    chamfer = surface_chamfer(meshes, truth, bound=1.0)
    # the meshed spheres lie on the true spheres: what is left is the spacing of 8000 random points (~0.01)
    assert float(chamfer.max()) < 0.02
    swapped = surface_chamfer(meshes[::-1], truth, bound=1.0)
    assert float(swapped.min()) > 0.25  # wrong sphere: about the difference of the radii
    assert float(surface_chamfer([None, meshes[1]], truth, bound=1.0)[0]) == 2.0  # no surface: 2 * bound
