"""Integrating a latent vector field with ``torchdiffeq`` on the tuple form of :class:`~enf.Latents`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.latents import Latents

__all__ = ["METHODS", "rollout"]

METHODS = ("euler", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun")
_FIXED = ("euler", "midpoint", "rk4")


class _TupleField(nn.Module):
    """``(t, (poses, context, window)) -> velocities`` as ``odeint`` wants it (a module, for the adjoint)."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return self.field(t, Latents.from_tuple(state)).to_tuple()


def _solve(func: nn.Module, state: tuple[Tensor, ...], times: Tensor, adjoint: bool, params, kwargs):
    if adjoint:
        return odeint_adjoint(func, state, times, adjoint_params=params, **kwargs)
    return odeint(func, state, times, **kwargs)


def rollout(
    field: nn.Module,
    z0: Latents,
    times: Tensor,
    *,
    method: str = "rk4",
    step_size: float | None = None,
    adjoint: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    options: dict[str, Any] | None = None,
    geometry: Geometry | str | None = None,
) -> Latents:
    """Solve ``dz/dt = field(t, z)`` from ``z0`` and return the states at ``times``.

    On a curved pose space (``geometry.curved``: the sphere geometries, the ball) the poses stay on their
    manifold: ``z0`` is retracted onto it (:meth:`~enf.geometry.Geometry.retract`, which changes no decoded
    value) and so is the state after **every solver step** (fixed-step methods: every step of size
    ``step_size``; adaptive methods: at every output time). With the field's velocities tangent
    (:meth:`~enf.geometry.Geometry.tangent_velocity`), a step leaves the manifold only by its truncation
    error, which the retraction removes; both are equivariant, so the rollout stays equivariant.

    Args:
        field: a module ``field(t, z: Latents) -> Latents`` of velocities (e.g.
            :class:`~enf.dynamics.EquivariantLatentField`).
        z0: initial latents ``[B, L, dim]`` at ``times[0]``.
        times: ``[T]`` strictly increasing output times (any spacing; the first is the time of ``z0``).
        method: a ``torchdiffeq`` solver: ``euler``, ``midpoint``, ``rk4`` (fixed step) or ``dopri5``,
            ``bosh3``, ``adaptive_heun`` (adaptive, with ``rtol``/``atol``).
        step_size: step of the fixed-step solvers (``None``: one step per output interval; otherwise each
            interval is split into ``ceil(interval / step_size)`` equal steps).
        adjoint: backpropagate with the adjoint method (memory independent of the number of steps).
        options: further ``odeint`` options.
        geometry: the pose space to stay on (default: ``field.geometry`` when the field has one; ``None``
            and a field without one: no retraction).

    Returns:
        Latents with a time axis, ``poses [B, T, L, pose_dim]`` (``zs.at_time(0)`` is ``z0``, retracted).
    """
    if not isinstance(z0, Latents) or z0.has_time_axis:
        raise TypeError(f"rollout needs initial Latents [B, L, dim] without a time axis, got {z0!r}")
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {list(METHODS)}")
    times = torch.as_tensor(times, dtype=z0.dtype, device=z0.device)
    if times.dim() != 1 or times.numel() < 1:
        raise ValueError(f"times must be a 1-D tensor [T] with T >= 1, got shape {tuple(times.shape)}")
    if times.numel() > 1 and not bool((times[1:] > times[:-1]).all()):
        raise ValueError(f"times must be strictly increasing, got {times.tolist()}")
    if step_size is not None:
        if method not in _FIXED:
            raise ValueError(f"step_size applies to the fixed-step methods {list(_FIXED)}, not {method!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
    geom = get_geometry(geometry) if geometry is not None else getattr(field, "geometry", None)
    curved = isinstance(geom, Geometry) and geom.curved
    if curved:
        z0 = z0.replace(poses=geom.retract(z0.poses))
    if times.numel() == 1:
        return z0.map(lambda t: t.unsqueeze(1))
    func = _TupleField(field)
    kwargs: dict[str, Any] = {"method": method, "options": options or None}
    if method not in _FIXED:
        kwargs.update(rtol=rtol, atol=atol)
    params = tuple(p for p in field.parameters() if p.requires_grad) if adjoint else ()
    if not curved:
        if step_size is not None:
            kwargs["options"] = {**(options or {}), "step_size": float(step_size)}
        return Latents.from_odeint(_solve(func, z0.to_tuple(), times, adjoint, params, kwargs))
    # one solver step at a time (fixed-step methods) or one output interval at a time (adaptive), retracting
    state, states = z0.to_tuple(), [z0.to_tuple()]
    for k in range(times.numel() - 1):
        t0, t1 = times[k], times[k + 1]
        num_steps = 1
        if step_size is not None:
            num_steps = max(1, math.ceil(float(t1 - t0) / step_size - 1e-9))
        grid = torch.linspace(float(t0), float(t1), num_steps + 1, dtype=times.dtype, device=times.device)
        grid[0], grid[-1] = t0, t1
        for s in range(num_steps):
            solution = _solve(func, state, grid[s : s + 2], adjoint, params, kwargs)
            poses, *rest = (part[-1] for part in solution)
            state = (geom.retract(poses), *rest)
        states.append(state)
    return Latents(*(torch.stack([st[i] for st in states], dim=1) for i in range(3)))
