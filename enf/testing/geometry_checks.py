"""Property checks of a geometry: bi-invariance of its invariants, invariance of its pose invariants, and
that its group acts (identity, composition) on coordinates and poses."""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.testing._core import _check, _max_error, _Pairs, _tiled_inputs, _tolerance


def _bi_pairs(geometry, batch_size, num_coords, num_latents, num_elements, dtype, generator) -> _Pairs:
    x, p, g = _tiled_inputs(geometry, batch_size, num_coords, num_latents, num_elements, dtype, generator)
    xg, pg = geometry.act_coords(g, x), geometry.act_poses(g, p)
    return [
        ("invariant", geometry.invariant(xg, pg), geometry.invariant(x, p)),
        ("distance2", geometry.distance2(xg, pg), geometry.distance2(x, p)),
    ]


def _pose_pairs(geometry, batch_size, num_latents, num_elements, dtype, generator) -> _Pairs:
    _, p, g = _tiled_inputs(geometry, batch_size, 1, num_latents, num_elements, dtype, generator)
    pg = geometry.act_poses(g, p)

    def pairs(q: Tensor) -> Tensor:
        return geometry.pose_invariant(q.unsqueeze(2), q.unsqueeze(1))  # [B, L, L, D]

    return [("pose_invariant", pairs(pg), pairs(p))]


def bi_invariance_error(
    geometry: Geometry | str,
    *,
    batch_size: int = 4,
    num_coords: int = 16,
    num_latents: int = 8,
    num_elements: int = 16,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> float:
    """Max ``|a(g.x, g.p) - a(x, p)|`` over ``invariant`` and ``distance2``.

    Draws ``batch_size`` sets of ``num_coords`` coordinates and ``num_latents`` poses, and applies
    ``num_elements`` independent random group elements to each (``batch_size * num_elements`` in all).
    """
    geometry = get_geometry(geometry)
    return _max_error(
        _bi_pairs(geometry, batch_size, num_coords, num_latents, num_elements, dtype, generator)
    )


def assert_bi_invariant(
    geometry: Geometry | str,
    *,
    batch_size: int = 4,
    num_coords: int = 16,
    num_latents: int = 8,
    num_elements: int = 16,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``invariant`` and ``distance2`` are invariant.

    Inputs as in :func:`bi_invariance_error`.

    Tolerances default to :data:`TOLERANCES` for ``dtype``.
    """
    geometry = get_geometry(geometry)
    atol, rtol = _tolerance(dtype, atol, rtol)
    pairs = _bi_pairs(geometry, batch_size, num_coords, num_latents, num_elements, dtype, generator)
    _check(pairs, atol, rtol, f"{geometry.name} is not bi-invariant")


def pose_invariance_error(
    geometry: Geometry | str,
    *,
    batch_size: int = 4,
    num_latents: int = 8,
    num_elements: int = 16,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> float:
    """Max ``|b(g.p_i, g.p_j) - b(p_i, p_j)|`` of ``pose_invariant`` over all ``[B, L, L]`` pairs."""
    geometry = get_geometry(geometry)
    return _max_error(_pose_pairs(geometry, batch_size, num_latents, num_elements, dtype, generator))


def assert_pose_invariant(
    geometry: Geometry | str,
    *,
    batch_size: int = 4,
    num_latents: int = 8,
    num_elements: int = 16,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``pose_invariant`` is invariant (see :func:`pose_invariance_error`)."""
    geometry = get_geometry(geometry)
    atol, rtol = _tolerance(dtype, atol, rtol)
    pairs = _pose_pairs(geometry, batch_size, num_latents, num_elements, dtype, generator)
    _check(pairs, atol, rtol, f"{geometry.name} pose_invariant is not invariant")


def _action_pairs(geometry, batch_size, num_coords, num_latents, dtype, generator) -> _Pairs:
    x = geometry.sample_coords(batch_size, num_coords, generator=generator, dtype=dtype)
    p = geometry.sample_poses(batch_size, num_latents, generator=generator, dtype=dtype)
    g = geometry.sample_group(batch_size, generator=generator, dtype=dtype)
    h = geometry.sample_group(batch_size, generator=generator, dtype=dtype)
    e = geometry.identity(batch_size, dtype=dtype)
    gh, g_inv = geometry.compose(g, h), geometry.inverse(g)
    pairs: _Pairs = []
    for kind, value, act in (("coords", x, geometry.act_coords), ("poses", p, geometry.act_poses)):
        pairs += [
            (f"identity on {kind}", act(e, value), value),
            (f"g(h {kind}) vs (gh) {kind}", act(g, act(h, value)), act(gh, value)),
            (f"g^-1(g {kind}) vs {kind}", act(g_inv, act(g, value)), value),
        ]
    if geometry.periodic:  # compare positions modulo the period: the seam -1 == 1 is not an error
        n = geometry.space_dim
        wrapped = []
        for name, a, b in pairs:
            diff = a - b
            pos = diff[..., :n] - 2.0 * torch.round(diff[..., :n] / 2.0)
            wrapped.append((name, torch.cat([pos, diff[..., n:]], dim=-1), torch.zeros_like(b)))
        pairs = wrapped
    return pairs


def group_action_error(
    geometry: Geometry | str,
    *,
    batch_size: int = 8,
    num_coords: int = 16,
    num_latents: int = 8,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> float:
    """Max deviation from the action axioms on coordinates and poses.

    Checks ``e.x == x``, ``g.(h.x) == (g h).x`` and ``g^-1.(g.x) == x`` (positions modulo the period on
    periodic geometries) for ``batch_size`` random pairs ``g, h``.
    """
    geometry = get_geometry(geometry)
    return _max_error(_action_pairs(geometry, batch_size, num_coords, num_latents, dtype, generator))


def assert_group_action(
    geometry: Geometry | str,
    *,
    batch_size: int = 8,
    num_coords: int = 16,
    num_latents: int = 8,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``act_*``, ``compose``, ``inverse`` and ``identity`` are an action."""
    geometry = get_geometry(geometry)
    atol, rtol = _tolerance(dtype, atol, rtol)
    pairs = _action_pairs(geometry, batch_size, num_coords, num_latents, dtype, generator)
    _check(pairs, atol, rtol, f"{geometry.name} group action is inconsistent")
