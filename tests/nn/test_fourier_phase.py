"""The decoder's memory-saving phase path: ``fourier_features`` and the frame fold ``linear_phase``.

``fourier_features`` is an autograd Function that keeps only its output for the backward; geometries whose
invariant is affine in ``x`` for a fixed pose fold the frame into the frequencies,
``invariant(x, p) W == x M(p) + c(p)``. Both must leave the decoder's function and its first and second
derivatives unchanged (checked against the decoder with the fold removed) while saving memory.
"""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _decoder_utils import gen, make_model, random_coords, random_latents

import enf.nn.attention
import enf.nn.embedding
from enf import geometry
from enf.geometry.frames import tangent_frame
from enf.nn.embedding import fourier_features

#: Geometries whose decoder uses the fold; every one needs a broken fold in BROKEN_FOLDS.
FOLDED = [n for n in geometry.names() if hasattr(geometry.get(n), "linear_phase")]
#: Deliberately wrong folds ``(geom, poses, weight) -> (M, c)``: each must change the phase.
BROKEN_FOLDS = {
    # R_o^T instead of R_o (orientation mirrored): the classic transposed-rotation bug
    "se2": lambda g, p, w: g.linear_phase(p * p.new_tensor([1.0, 1.0, 1.0, -1.0]), w),
    "sphere": lambda g, p, w: (tangent_frame(p[..., :3], p[..., 3:]).mT @ w, None),  # F^T for F
    "sphere_axial": lambda g, p, w: (g.linear_phase(p, w)[0], None),  # drops c
    "ball": lambda g, p, w: (g.linear_phase(p, w)[0], None),  # drops c = (F^T q) W[3:]
}
DECODER_GEOMETRIES = ["se2", "sphere", "sphere_axial", "ball"]


def folded_phase(fold, coords, poses, weight):
    """``x_i M_j + c_j`` for ``coords [B, N, c]``, ``poses [B, L, p]`` -> ``[B, N, L, K]``."""
    m, c = fold(poses, weight)  # [B, L, c, K], [B, L, K] or None
    phase = torch.einsum("bnc,blck->bnlk", coords, m)
    return phase if c is None else phase + c.unsqueeze(1)


def remove_fold(mp: pytest.MonkeyPatch, geom) -> None:
    """Delete ``linear_phase`` from every class of ``geom`` that defines it (restored by ``mp``)."""
    for cls in type(geom).__mro__:
        if "linear_phase" in vars(cls):
            mp.delattr(cls, "linear_phase")
    assert not hasattr(geom, "linear_phase")


def value_and_derivatives(model, coords, z, *, seed: int = 5) -> list[torch.Tensor]:
    """Output, first-order grads w.r.t. (context, poses) and second-order grads (of a random projection of
    those) w.r.t. (context, poses, parameters), as the Meta-SGD outer loop differentiates the inner step."""
    context = z.context.clone().requires_grad_(True)
    poses = z.poses.clone().requires_grad_(True)
    z = type(z)(poses=poses, context=context, window=z.window)
    y = model(coords, z)
    r = torch.randn(y.shape, generator=gen(seed), dtype=F64)
    first = torch.autograd.grad((y * r).sum(), [context, poses], create_graph=True)
    s = [torch.randn(g.shape, generator=gen(seed + 1 + i), dtype=F64) for i, g in enumerate(first)]
    inputs = [context, poses, *model.parameters()]
    hvp = sum((g * v).sum() for g, v in zip(first, s, strict=True))
    second = torch.autograd.grad(hvp, inputs, allow_unused=True, materialize_grads=True)
    return [y, *first, *second]


def plain_fourier_features(phase: torch.Tensor) -> torch.Tensor:
    """``[sin, cos]`` by autograd (keeps ``phase`` and the output): the features before the optimisation."""
    return torch.cat([phase.sin(), phase.cos()], dim=-1)


def saved_bytes(fn, *, exclude: torch.nn.Module) -> int:
    """Bytes of the distinct storages autograd saves while ``fn`` runs (``exclude``'s parameters/buffers
    not counted); the output is kept alive until the count is done, so no address is reused."""
    skip = {t.untyped_storage().data_ptr() for t in [*exclude.parameters(), *exclude.buffers()]}
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            sizes[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    assert out.requires_grad
    return sum(sizes.values())


# ------------------------------------------------------------------------------------ fourier_features
def test_fourier_features_is_sin_cos_and_saves_only_its_output():
    phase = (3.0 * torch.randn(3, 4, 5, generator=gen(0), dtype=F64)).requires_grad_(True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fourier_features(phase)
    torch.testing.assert_close(out, torch.cat([phase.sin(), phase.cos()], dim=-1), atol=1e-15, rtol=0)
    assert len(saved) == 1 and saved[0].untyped_storage().data_ptr() == out.untyped_storage().data_ptr()
    # d/dp sum(u * [sin p, cos p]) = u_s cos p - u_c sin p
    u = torch.randn(3, 4, 10, generator=gen(1), dtype=F64)
    (grad,) = torch.autograd.grad((out * u).sum(), phase)
    torch.testing.assert_close(grad, u[..., :5] * phase.cos() - u[..., 5:] * phase.sin(), atol=1e-14, rtol=0)


def test_fourier_features_gradcheck_and_gradgradcheck():
    phase = torch.randn(2, 3, 4, generator=gen(2), dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(fourier_features, (phase,))
    assert torch.autograd.gradgradcheck(fourier_features, (phase,))


# ----------------------------------------------------------------------------------------- linear_phase
def test_fold_is_discovered_for_the_rotating_frames():
    assert set(DECODER_GEOMETRIES) <= set(FOLDED)
    assert set(FOLDED) == set(BROKEN_FOLDS), "add a broken fold (negative control) for every new fold"


@pytest.mark.parametrize("name", FOLDED)
@pytest.mark.parametrize("seed", range(2))
def test_linear_phase_equals_invariant_times_weight(name, seed):
    geom = geometry.get(name)
    coords = random_coords(geom, 2, 7, seed=10 + seed)  # [B, N, c]
    poses = random_latents(geom, 2, 5, seed=20 + seed).poses  # [B, L, p], unnormalised orientations
    weight = 3.0 * torch.randn(geom.invariant_dim, 6, generator=gen(30 + seed), dtype=F64)
    expected = geom.pair_invariant(coords.unsqueeze(2), poses.unsqueeze(1)) @ weight  # [B, N, L, K]
    torch.testing.assert_close(
        folded_phase(geom.linear_phase, coords, poses, weight), expected, atol=1e-12, rtol=0
    )
    # negative control: a wrong fold is visibly wrong
    broken = folded_phase(lambda p, w: BROKEN_FOLDS[name](geom, p, w), coords, poses, weight)
    assert (broken - expected).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------- decoder
@pytest.mark.parametrize("name", DECODER_GEOMETRIES)
@pytest.mark.parametrize("value_hidden_dim", [0, 16])
def test_decoder_fold_matches_unfolded_to_second_order(name, value_hidden_dim, monkeypatch):
    geom = geometry.get(name)
    model = make_model(geom, k_nearest=None, value_hidden_dim=value_hidden_dim)
    z = random_latents(geom, 2, 5, seed=40)
    coords = random_coords(geom, 2, 9, seed=41)
    calls = []
    fold = geom.linear_phase
    monkeypatch.setattr(geom, "linear_phase", lambda *a: calls.append(1) or fold(*a), raising=False)
    folded = value_and_derivatives(model, coords, z)
    assert calls, "the decoder did not use linear_phase"
    monkeypatch.undo()
    with monkeypatch.context() as mp:
        remove_fold(mp, geom)
        reference = value_and_derivatives(model, coords, z)
    assert hasattr(geom, "linear_phase")
    for got, want in zip(folded, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_ball_optimised_decoder_saves_memory_for_backward(monkeypatch):
    """Saved for backward by one decoder forward, with latents that need gradients (the fitting loop).

    The saving comes from ``fourier_features`` (``2F`` instead of ``3F`` numbers kept per pair and
    embedding); the fold removes the transient ``[B, N, L, invariant_dim]`` tensor, which nothing saves,
    so on its own it must only not cost more than a few percent.
    """
    geom = geometry.get("ball")
    model = make_model(geom, value_hidden_dim=0, num_query_frequencies=32, num_value_frequencies=32)
    z = random_latents(geom, 2, 16, seed=50)
    z = type(z)(poses=z.poses.requires_grad_(True), context=z.context.requires_grad_(True), window=z.window)
    coords = random_coords(geom, 2, 64, seed=51)
    optimised = saved_bytes(lambda: model(coords, z), exclude=model)
    with monkeypatch.context() as mp:
        remove_fold(mp, geom)
        unfolded = saved_bytes(lambda: model(coords, z), exclude=model)
        for module in (enf.nn.attention, enf.nn.embedding):  # the pre-optimisation decoder
            mp.setattr(module, "fourier_features", plain_fourier_features)
        plain = saved_bytes(lambda: model(coords, z), exclude=model)
    assert optimised <= 0.85 * plain, f"optimised decoder saves {optimised} bytes, plain {plain}"
    assert optimised <= 1.03 * unfolded, f"fold saves {optimised} bytes, unfolded {unfolded}"
