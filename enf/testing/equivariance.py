"""Generic equivariance of any map ``F(g.inputs) == g.F(inputs)`` and steerability of fields
``f(g.x; g.z) == f(x; z)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from enf.geometry import Geometry, GroupElement, wrap_difference
from enf.geometry import get as get_geometry
from enf.latents import Latents
from enf.testing._core import _check, _max_error, _Pairs, _tolerance, sample_group_like

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
