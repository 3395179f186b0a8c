"""Integrating a latent vector field with ``torchdiffeq`` on the tuple form of :class:`~enf.Latents`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

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
) -> Latents:
    """Solve ``dz/dt = field(t, z)`` from ``z0`` and return the states at ``times``.

    Args:
        field: a module ``field(t, z: Latents) -> Latents`` of velocities (e.g.
            :class:`~enf.dynamics.EquivariantLatentField`).
        z0: initial latents ``[B, L, dim]`` at ``times[0]``.
        times: ``[T]`` strictly increasing output times (any spacing; the first is the time of ``z0``).
        method: a ``torchdiffeq`` solver: ``euler``, ``midpoint``, ``rk4`` (fixed step) or ``dopri5``,
            ``bosh3``, ``adaptive_heun`` (adaptive, with ``rtol``/``atol``).
        step_size: step of the fixed-step solvers (``None``: one step per output interval).
        adjoint: backpropagate with the adjoint method (memory independent of the number of steps).
        options: further ``odeint`` options.

    Returns:
        Latents with a time axis, ``poses [B, T, L, pose_dim]`` (``zs.at_time(0)`` is ``z0``).
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
    opts = dict(options or {})
    if step_size is not None:
        opts["step_size"] = float(step_size)
    if times.numel() == 1:
        return z0.map(lambda t: t.unsqueeze(1))
    func = _TupleField(field)
    kwargs: dict[str, Any] = {"method": method, "options": opts or None}
    if method not in _FIXED:
        kwargs.update(rtol=rtol, atol=atol)
    if adjoint:
        params = tuple(p for p in field.parameters() if p.requires_grad)
        solution = odeint_adjoint(func, z0.to_tuple(), times, adjoint_params=params, **kwargs)
    else:
        solution = odeint(func, z0.to_tuple(), times, **kwargs)
    return Latents.from_odeint(solution)
