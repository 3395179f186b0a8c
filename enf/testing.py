"""Property checks for geometries, steerable fields and equivariant maps (like e3nn's ``assert_equivariant``).

The ``*_error`` functions return the largest absolute deviation (a ``float``) over random inputs and random
group elements; the ``assert_*`` functions raise :class:`AssertionError` naming the quantity, the error and
the tolerance when ``|actual - expected| <= atol + rtol * |expected|`` fails somewhere. Nothing is printed.

Example::

    from enf import geometry, testing
    testing.assert_bi_invariant(geometry.get("se2"))                 # float64, atol 1e-9
    testing.assert_bi_invariant(geometry.get("se2"), dtype=torch.float32)
    testing.assert_steerable(model, geom, coords, latents)           # f(g.x; g.z) == f(x; z)
    testing.assert_equivariant(                                        # F(g.z) == g_* F(z)
        lambda z: field(0.0, z), geom, (z,),
        testing.act_args(testing.act_latents(geom)), testing.act_latent_velocity(geom))

Random draws use ``generator`` when given, else torch's global generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from enf.geometry import Geometry, GroupElement, wrap_difference
from enf.geometry import get as get_geometry
from enf.latents import Latents

__all__ = [
    "TOLERANCES",
    "Action",
    "act_args",
    "act_coords",
    "act_identity",
    "act_latent_velocity",
    "act_latents",
    "assert_bi_invariant",
    "assert_equivariant",
    "assert_group_action",
    "assert_pose_invariant",
    "assert_steerable",
    "bi_invariance_error",
    "equivariance_error",
    "group_action_error",
    "pose_invariance_error",
    "sample_group_like",
    "steerability_error",
]

#: Default tolerances per dtype (``|actual - expected| <= atol + rtol * |expected|``).
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: dict(atol=1e-9, rtol=0.0),
    torch.float32: dict(atol=1e-4, rtol=1e-4),
}

_Pairs = list[tuple[str, Tensor, Tensor]]


def sample_group_like(
    geometry: Geometry | str, batch_size: int, tensor: Tensor, generator: torch.Generator | None = None
) -> GroupElement:
    """``batch_size`` random group elements with the dtype and device of ``tensor``."""
    geometry = get_geometry(geometry)
    return geometry.sample_group(batch_size, generator=generator, dtype=tensor.dtype, device=tensor.device)


def _tolerance(dtype: torch.dtype, atol: float | None, rtol: float | None) -> tuple[float, float]:
    if dtype in TOLERANCES:
        default = TOLERANCES[dtype]
    elif atol is not None:
        default = dict(atol=atol, rtol=0.0)
    else:
        raise ValueError(f"no default tolerance for dtype {dtype}; pass atol (known: {list(TOLERANCES)})")
    return (default["atol"] if atol is None else atol), (default["rtol"] if rtol is None else rtol)


def _max_error(pairs: _Pairs) -> float:
    """Largest absolute difference; ``inf`` if any entry is not finite."""
    worst = 0.0
    for _, actual, expected in pairs:
        if actual.numel() == 0:
            continue
        diff = (actual - expected).abs()
        worst = max(worst, float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf"))
    return worst


def _check(pairs: _Pairs, atol: float, rtol: float, what: str, *, worst: bool = False) -> None:
    """Raise on the first failing pair (``worst``: on the one with the largest error, counting failures)."""
    failing = []
    for name, actual, expected in pairs:
        diff = (actual - expected).abs()
        bad = ~(diff <= atol + rtol * expected.abs())  # NaN counts as a failure
        if bool(bad.any()):
            rank = float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf")
            failing.append((rank, float(diff.max()), name, int(bad.sum()), bad.numel()))
            if not worst:
                break
    if failing:
        _, error, name, num_bad, num = max(failing, key=lambda f: f[0]) if worst else failing[0]
        count = f"; {len(failing)} of {len(pairs)} compared outputs fail" if worst else ""
        raise AssertionError(
            f"{what}: {name} differs by up to {error:.3e} "
            f"(tolerance atol={atol:g}, rtol={rtol:g}; {num_bad} of {num} entries fail{count})"
        )


def _tiled_inputs(
    geometry: Geometry,
    batch_size: int,
    num_coords: int,
    num_latents: int,
    num_elements: int,
    dtype,
    generator,
) -> tuple[Tensor, Tensor, GroupElement]:
    """Random coords/poses for ``batch_size`` entries, each repeated for ``num_elements`` group elements."""
    x = geometry.sample_coords(batch_size, num_coords, generator=generator, dtype=dtype)
    p = geometry.sample_poses(batch_size, num_latents, generator=generator, dtype=dtype)
    total = batch_size * num_elements
    g = geometry.sample_group(total, generator=generator, dtype=dtype)
    return x.repeat(num_elements, 1, 1), p.repeat(num_elements, 1, 1), g


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


# ------------------------------------------------------------------------------ generic equivariance
Action = Callable[[GroupElement, Any], Any]
"""``(g, value) -> g . value``: how a group element moves an input or an output."""


def act_identity(g: GroupElement, value: Any) -> Any:
    """The trivial action (invariant inputs or outputs): returns ``value`` unchanged."""
    return value


def act_coords(geometry: Geometry | str) -> Action:
    """``lambda g, x: geometry.act_coords(g, x)`` for coordinates ``[B, N, coord_dim]``."""
    geometry = get_geometry(geometry)
    return lambda g, x: geometry.act_coords(g, x)


def act_latents(geometry: Geometry | str) -> Action:
    """``lambda g, z: z.transform(geometry, g)`` for :class:`~enf.Latents` (with or without a time axis)."""
    geometry = get_geometry(geometry)
    return lambda g, z: z.transform(geometry, g)


def act_latent_velocity(geometry: Geometry | str) -> Action:
    """``lambda g, dz: dz.transform_velocity(geometry, g)``: latents of velocities move by the linear part."""
    geometry = get_geometry(geometry)
    return lambda g, dz: dz.transform_velocity(geometry, g)


def act_args(*actions: Action) -> Callable[[GroupElement, tuple], tuple]:
    """An ``act_in`` acting on argument ``i`` with ``actions[i]``, e.g. ``act_args(act_coords(geom), act_latents(geom))``."""

    def act(g: GroupElement, inputs: tuple) -> tuple:
        if len(inputs) != len(actions):
            raise ValueError(f"act_args has {len(actions)} actions but got {len(inputs)} inputs")
        return tuple(a(g, value) for a, value in zip(actions, inputs, strict=True))

    return act


def _leaves(value: Any, name: str) -> list[tuple[str, Tensor]]:
    """Named tensors of an output: a Tensor, a Latents (its three fields) or nested tuples/lists of them."""
    if isinstance(value, Tensor):
        return [(name, value)]
    if isinstance(value, Latents):
        return [
            (f"{name}.{field}", t)
            for field, t in zip(("poses", "context", "window"), value.to_tuple(), strict=True)
        ]
    if isinstance(value, (tuple, list)):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{name}[{i}]")]
    raise TypeError(
        f"outputs must be Tensors, Latents or tuples of them, got {type(value).__name__} at {name}"
    )


def _reference(inputs: Any) -> Tensor:
    """The first tensor of the ``inputs`` tuple (searched through tuples, Latents, objects with ``poses``)."""
    if not isinstance(inputs, tuple):
        raise TypeError(
            f"inputs must be a tuple of arguments of fn, got {type(inputs).__name__}; wrap it: (x,)"
        )

    def first(value: Any) -> Tensor | None:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, (tuple, list)):
            return next((t for t in map(first, value) if t is not None), None)
        poses = getattr(value, "poses", None)
        return poses if isinstance(poses, Tensor) else None

    ref = first(inputs)
    if ref is None:
        raise TypeError(
            "inputs hold no tensor to take the dtype, device and batch size of the group elements from"
        )
    return ref


def _equivariance_pairs(
    fn, geometry, inputs, act_in, act_out, num_samples, generator, batch_size, root
) -> _Pairs:
    ref = _reference(inputs)
    num = ref.shape[0] if batch_size is None else batch_size
    reference = fn(*inputs)
    pairs: _Pairs = []
    for k in range(num_samples):
        g = sample_group_like(geometry, num, ref, generator)
        moved = act_in(g, inputs)
        if not isinstance(moved, tuple):
            raise TypeError(f"act_in must return a tuple of arguments of fn, got {type(moved).__name__}")
        actual, expected = _leaves(fn(*moved), root), _leaves(act_out(g, reference), root)
        if [(n, t.shape) for n, t in actual] != [(n, t.shape) for n, t in expected]:
            raise AssertionError(
                f"output structure differs under group element #{k}: fn(g.inputs) gives "
                f"{[(n, tuple(t.shape)) for n, t in actual]}, act_out(g, fn(inputs)) gives "
                f"{[(n, tuple(t.shape)) for n, t in expected]}"
            )
        for (name, a), (_, e) in zip(actual, expected, strict=True):
            a, e = a.detach(), e.detach()
            if geometry.periodic and name.endswith(".poses"):  # positions modulo the period: -1 == 1
                n = geometry.position_dim
                pos = a[..., :n] - wrap_difference(a[..., :n] - e[..., :n])
                e = torch.cat([pos, e[..., n:]], dim=-1)
            pairs.append((f"{name} under group element #{k}", a, e))
    return pairs


def equivariance_error(
    fn: Callable[..., Any],
    geometry: Geometry | str,
    inputs: tuple,
    act_in: Callable[[GroupElement, tuple], tuple],
    act_out: Action,
    *,
    num_samples: int = 8,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> float:
    """Max ``|fn(*act_in(g, inputs)) - act_out(g, fn(*inputs))|`` over ``num_samples`` random ``g``.

    See :func:`assert_equivariant` for the arguments.
    """
    geometry = get_geometry(geometry)
    return _max_error(
        _equivariance_pairs(
            fn, geometry, inputs, act_in, act_out, num_samples, generator, batch_size, "output"
        )
    )


def assert_equivariant(
    fn: Callable[..., Any],
    geometry: Geometry | str,
    inputs: tuple,
    act_in: Callable[[GroupElement, tuple], tuple],
    act_out: Action,
    *,
    num_samples: int = 8,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``fn(*act_in(g, inputs)) == act_out(g, fn(*inputs))``.

    Example (a latent vector field ``F(g.z) == g_* F(z)``)::

        assert_equivariant(lambda z: field(0.0, z), geom, (z,), act_args(act_latents(geom)),
                           act_latent_velocity(geom))

    Args:
        fn: the map; called as ``fn(*inputs)``.
        geometry: the geometry (or its registry name) whose group elements are sampled.
        inputs: tuple of arguments of ``fn``; its first tensor (searched through tuples and ``Latents``)
            gives the dtype, device and (unless ``batch_size``) the number of group elements ``B``.
        act_in: ``(g, inputs) -> moved inputs`` (a tuple), e.g. :func:`act_args`.
        act_out: ``(g, output) -> moved output``, e.g. :func:`act_latents`, :func:`act_identity`.
        num_samples: number of independent batches of ``B`` group elements.
        atol, rtol: tolerances; default to :data:`TOLERANCES` for the dtype of the inputs.
        generator: optional random generator.
        batch_size: number of group elements per sample when the first input tensor is not batch-first.

    Outputs may be Tensors, :class:`~enf.Latents` or (nested) tuples of them, compared leaf by leaf; on
    periodic geometries the positions of ``Latents`` poses are compared modulo the period. The message
    names the worst failing leaf, its group element index ``#k`` and its max error. ``fn`` runs with
    autograd enabled (it may differentiate internally); outputs are detached before the comparison.
    """
    geometry = get_geometry(geometry)
    atol, rtol = _tolerance(_reference(inputs).dtype, atol, rtol)
    pairs = _equivariance_pairs(
        fn, geometry, inputs, act_in, act_out, num_samples, generator, batch_size, "output"
    )
    _check(pairs, atol, rtol, f"fn is not equivariant under {geometry.name}", worst=True)


# ------------------------------------------------------------------------------------ steerability
def _steer_pairs(field, geometry, coords, latents, num_elements, generator) -> _Pairs:
    if coords.dim() != 3 or coords.shape[-1] != geometry.coord_dim:
        raise ValueError(f"coords must be [B, N, {geometry.coord_dim}], got shape {tuple(coords.shape)}")
    act_in = act_args(act_coords(geometry), act_latents(geometry))
    with torch.no_grad():
        return _equivariance_pairs(
            field, geometry, (coords, latents), act_in, act_identity, num_elements, generator, None, "field"
        )


def steerability_error(
    field: Callable[[Tensor, Any], Tensor],
    geometry: Geometry | str,
    coords: Tensor,
    latents: Any,
    *,
    num_elements: int = 8,
    generator: torch.Generator | None = None,
) -> float:
    """Max ``|f(g.x; g.z) - f(x; z)|`` over ``num_elements`` random batches of group elements.

    Args:
        field: callable ``(coords [B, N, coord_dim], latents) -> [B, N, C]`` (e.g. an ENF decoder).
        geometry: the geometry (or its registry name) whose group acts.
        coords: ``[B, N, coord_dim]``; its dtype and device are used for the group elements.
        latents: an object with ``transform(geometry, g)`` returning the moved latents (``enf.Latents``).
        num_elements: number of batches of group elements (one element per batch entry each time).
        generator: optional random generator.
    """
    geometry = get_geometry(geometry)
    return _max_error(_steer_pairs(field, geometry, coords, latents, num_elements, generator))


def assert_steerable(
    field: Callable[[Tensor, Any], Tensor],
    geometry: Geometry | str,
    coords: Tensor,
    latents: Any,
    *,
    num_elements: int = 8,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``f(g.x; g.z) == f(x; z)`` (see :func:`steerability_error`).

    Tolerances default to :data:`TOLERANCES` for ``coords.dtype``.
    """
    geometry = get_geometry(geometry)
    atol, rtol = _tolerance(coords.dtype, atol, rtol)
    pairs = _steer_pairs(field, geometry, coords, latents, num_elements, generator)
    _check(pairs, atol, rtol, f"field is not steerable under {geometry.name}")
