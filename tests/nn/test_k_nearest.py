"""k-nearest latent selection: tie consistency on grids (steerability with grid coordinates and grid-initialised
latents), the selection rule itself, agreement (values and gradients) of the gathered path with the per-pair
reference for every geometry, and autograd memory that scales with N * k, not N * L."""

from __future__ import annotations

import math

import pytest
import torch
from _common import F64
from _decoder_utils import CONTEXT_DIM, gen, make_model, random_coords, random_latents, reference_decode

from enf import Latents, geometry, testing
from enf.data import pixel_coords
from enf.nn import nearest_latents, tie_tolerance

PLANAR = [n for n in geometry.names(equivariant=True) if geometry.get(n).coord_dim == 2]
SPATIAL = ["sphere", "sphere_axial", "ball", "se3", "translation3d"]


def natural_grid(geom) -> torch.Tensor:
    """The grid a geometry's data lives on, ``[N, coord_dim]`` float64.

    Plane/torus: the 16 x 16 pixel grid; sphere: an equiangular (colatitude, longitude) grid with both poles
    as nodes; ball/se3/translation3d: the points of a 7 x 7 x 7 grid of ``[-1, 1]^3`` inside the unit ball.
    """
    if geom.coord_dim == 2:
        return pixel_coords(16, 16, dtype=F64)
    if geom.name.startswith("sphere"):
        theta = math.pi * torch.arange(9, dtype=F64) / 8
        phi = 2.0 * math.pi * torch.arange(16, dtype=F64) / 16
        t, p = torch.meshgrid(theta, phi, indexing="ij")
        xyz = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], dim=-1)
        return xyz.reshape(-1, 3)
    axis = torch.linspace(-1.0, 1.0, 7, dtype=F64)
    cube = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return cube[cube.norm(dim=-1) <= 1.0]


def grid_latents(geom, batch_size: int = 2, *, seed: int = 0) -> Latents:
    """``init_poses`` latents (16 in 2D, 27 in 3D, 24 on the sphere) with random context and the default window."""
    num_latents = 16 if geom.coord_dim == 2 else (24 if geom.name.startswith("sphere") else 27)
    poses = geom.init_poses(num_latents, dtype=F64).expand(batch_size, -1, -1).clone()
    context = torch.randn(batch_size, num_latents, CONTEXT_DIM, generator=gen(seed), dtype=F64)
    window = torch.full((batch_size, num_latents, 1), geom.default_window(num_latents), dtype=F64)
    return Latents(poses=poses, context=context, window=window)


def grid_case(name: str, *, batch_size: int = 2):
    geom = geometry.get(name)
    x = natural_grid(geom).expand(batch_size, -1, -1).clone()
    return geom, x, grid_latents(geom, batch_size)


# ------------------------------------------------------------------------------- ties on natural grids
@pytest.mark.parametrize("mode", ["auto", "gather"])
@pytest.mark.parametrize("k", [2, 4, 9])
@pytest.mark.parametrize("name", PLANAR + SPATIAL)
def test_steerable_on_grids_with_ties(name, k, mode):
    """The reported configuration: grid coords + ``init_poses`` latents. Plain top-k changes by O(1).

    ``auto`` runs translation geometries on the masked dense path, ``gather`` on the gathered one."""
    geom, x, z = grid_case(name)
    model = make_model(geom, k_nearest=k, value_hidden_dim=0, k_nearest_mode=mode)
    error = testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(60 + k))
    assert error <= 1e-9, f"{name}, k={k}: max |f(gx; gz) - f(x; z)| = {error:.3e}"
    testing.assert_steerable(model, geom, x, z, num_elements=2, generator=gen(70 + k))
    assert model(x, z).std(dim=1).min() > 1e-4  # not a constant field


@pytest.mark.parametrize("name", ["translation2d", "se2", "torus2d", "translation3d", "se3"])
def test_grids_really_have_ties(name):
    """The grid cases above exercise ties: more than k latents are selected somewhere."""
    geom, x, z = grid_case(name, batch_size=1)
    for k in (2, 4):
        idx, keep = nearest_latents(geom.distance2(x, z.poses), k)
        assert int(keep.sum(-1).max()) > k


@pytest.mark.parametrize("k", [2, 4, 9])
def test_absolute2d_on_grids_is_not_steerable(k):
    """Negative control on the same grids: the non-equivariant geometry fails."""
    geom, x, z = grid_case("absolute2d")
    model = make_model(geom, k_nearest=k, value_hidden_dim=0)
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(80)) > 1e-3
    with pytest.raises(AssertionError, match="not steerable"):
        testing.assert_steerable(model, geom, x, z, num_elements=2, generator=gen(81))


@pytest.mark.parametrize("name", ["translation2d", "se2", "se3"])
def test_steerable_on_grids_float32(name):
    geom, x, z = grid_case(name)
    model = make_model(geom, k_nearest=4).float()
    testing.assert_steerable(model, geom, x.float(), z.to(torch.float32), num_elements=4, generator=gen(82))


# ------------------------------------------------------------------------------------ selection rule
def test_nearest_latents_keeps_every_tie():
    d2 = torch.tensor([[[1.0, 0.0, 1.0, 2.0, 1.0], [0.0, 3.0, 2.0, 1.0, 4.0]]], dtype=F64)
    idx, keep = nearest_latents(d2, 2)
    assert idx.shape == (1, 2, 4)  # K = 4: the first coordinate keeps latent 1 and the three tied at 1.0
    kept = [sorted(idx[0, i][keep[0, i]].tolist()) for i in range(2)]
    assert kept == [[0, 1, 2, 4], [0, 3]]
    # an exact-k selection needs no padding
    idx, keep = nearest_latents(d2[:, 1:], 2)
    assert idx.shape == (1, 1, 2) and keep.all()


def test_nearest_latents_tolerance_is_relative_and_absolute():
    tol = tie_tolerance(F64)
    assert tol == 1e-9 and tie_tolerance(torch.float32) == 1e-5
    for kth in (0.0, 1e-3, 1.0, 100.0):
        margin = tol * (1.0 + kth)
        d2 = torch.tensor([[[0.0, kth, kth + 0.5 * margin, kth + 2.0 * margin, kth + 1.0]]], dtype=F64)
        d2[0, 0, 0] = -1.0  # the nearest
        idx, keep = nearest_latents(d2, 2)
        assert sorted(idx[0, 0][keep[0, 0]].tolist()) == [0, 1, 2], kth


def test_nearest_latents_matches_brute_force():
    """Random d2 with planted ties: the kept set is exactly ``{j : d2_j <= d_(k) + tol (1 + d_(k))}``."""
    g = gen(83)
    d2 = torch.randint(0, 6, (3, 40, 12), generator=g).to(F64) + 1e-12 * torch.rand(3, 40, 12, generator=g)
    for k in (1, 3, 7, 12):
        idx, keep = nearest_latents(d2, k)
        kth = d2.sort(-1).values[..., k - 1 : k]
        expected = d2 <= kth + 1e-9 * (1.0 + kth)
        got = torch.zeros_like(expected).scatter(-1, idx, keep)
        assert torch.equal(got, expected) and (keep.sum(-1) >= k).all()
        assert idx.shape[-1] == int(expected.sum(-1).max())
    with pytest.raises(ValueError, match="k must be in"):
        nearest_latents(d2, 13)


# ---------------------------------------------------------------------- gathered path vs the reference
def _outputs_and_grads(fn, model, x, z):
    leaves = [t.clone().requires_grad_(True) for t in (z.poses, z.context, z.window)]
    y = fn(x, Latents(poses=leaves[0], context=leaves[1], window=leaves[2]))
    weights = torch.randn(y.shape, generator=gen(98), dtype=y.dtype)
    grads = torch.autograd.grad((y * weights).sum(), [*leaves, *model.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize("mode", ["gather", "mask", "auto"])
@pytest.mark.parametrize("value_hidden_dim", [0, 16])
@pytest.mark.parametrize("name", geometry.names())
def test_gathered_path_matches_reference_with_gradients(name, value_hidden_dim, mode):
    """Values (1e-12) and gradients w.r.t. poses/context/window/parameters, random and grid (tied) inputs.

    ``mask`` (the dense GEMM path with the selection as a mask) exists for translation geometries only."""
    geom = geometry.get(name)
    k = 3
    if mode == "mask" and not (getattr(geom, "invariant_is_difference", False) and value_hidden_dim == 0):
        with pytest.raises(ValueError, match="k_nearest_mode='mask' needs a difference invariant"):
            make_model(geom, k_nearest=k, value_hidden_dim=value_hidden_dim, k_nearest_mode=mode)
        return
    model = make_model(geom, k_nearest=k, value_hidden_dim=value_hidden_dim, k_nearest_mode=mode)
    cases = [(random_coords(geom, 2, 20, seed=84), random_latents(geom, 2, 12, seed=85))]
    if name in PLANAR + SPATIAL + ["absolute2d"]:
        _, x_grid, z_grid = grid_case(name)
        cases.append((x_grid[:, ::3], z_grid))
    param_names = ["poses", "context", "window"] + [n for n, _ in model.named_parameters()]
    for x, z in cases:
        y, grads = _outputs_and_grads(model, model, x, z)
        ref_y, ref_grads = _outputs_and_grads(
            lambda xx, zz: reference_decode(model, xx, zz, k_nearest=k), model, x, z
        )
        torch.testing.assert_close(y, ref_y, atol=1e-12, rtol=0)
        for pname, a, b in zip(param_names, grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=lambda m, p=pname: f"grad {p}: {m}")
        assert grads[0].abs().max() > 1e-8  # pose gradients are not trivially zero


@pytest.mark.parametrize("name", ["translation2d", "se2", "sphere"])
def test_gathered_channel_modulation_matches_reference_on_grids(name):
    geom, x, z = grid_case(name)
    model = make_model(geom, k_nearest=4, channel_modulation=True)
    torch.testing.assert_close(model(x, z), reference_decode(model, x, z, k_nearest=4), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------- cost
def _saved_numels(model, x, z) -> list[int]:
    sizes: list[int] = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, z)
    return sizes


@pytest.mark.parametrize("name", ["translation2d", "se2"])
def test_autograd_memory_scales_with_k_not_num_latents(name):
    """With k-nearest no tensor saved for backward is as large as ``B N L`` and the saved total grows with
    ``L`` only through per-latent features (a constant per latent, far below ``N``); dense attention saves
    ``[B, N, L, ...]`` tensors."""
    geom = geometry.get(name)
    b, n, k = 1, 1024, 3
    x = random_coords(geom, b, n, seed=86)
    sparse = make_model(geom, k_nearest=k, value_hidden_dim=0, k_nearest_mode="gather")
    totals = {}
    for num_latents in (16, 1024):
        saved = _saved_numels(sparse, x, random_latents(geom, b, num_latents, seed=87))
        totals[num_latents] = sum(saved)
    assert max(saved) < b * n * 1024 / 4
    per_latent = (totals[1024] - totals[16]) / (1024 - 16)
    assert per_latent < 8 * sparse.attention.hidden_dim < n  # O(L) features, not O(N L) pairs
    dense = make_model(geom, k_nearest=None, value_hidden_dim=0)
    assert max(_saved_numels(dense, x, random_latents(geom, b, 64, seed=87))) >= b * n * 64


def test_auto_mode_masks_small_latent_counts_and_gathers_large_ones() -> None:
    """The cost rule: translation geometries mask below L = 32 K (GEMMs win on CPU), gather above."""
    from enf.nn.attention import MASK_MAX_LATENTS_PER_SELECTED as ratio

    trans = make_model(geometry.get("translation2d"), k_nearest=9, value_hidden_dim=0).attention
    assert trans._masks(ratio * 9 - 1, 9) and not trans._masks(ratio * 9, 9)
    se2 = make_model(geometry.get("se2"), k_nearest=9, value_hidden_dim=0).attention
    assert not se2._masks(16, 9)  # no separable form: always gathered
    with pytest.raises(ValueError, match="k_nearest_mode must be"):
        make_model(geometry.get("translation2d"), k_nearest=9, k_nearest_mode="dense")
