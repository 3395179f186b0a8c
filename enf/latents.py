"""The latent point cloud ``z = {(p_i, c_i, s_i)}``: poses, context vectors and window widths."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from enf.geometry import Geometry, GroupElement

__all__ = ["Latents", "initial_latents"]

_FIELDS = ("poses", "context", "window")


@dataclass(frozen=True, eq=False)
class Latents:
    """A batch of latent point clouds, or a batch of trajectories of them (immutable).

    Attributes:
        poses: ``[B, L, pose_dim]`` poses in the geometry's pose vector convention.
        context: ``[B, L, context_dim]`` context vectors (invariant features).
        window: ``[B, L, 1]`` Gaussian window widths ``s`` (positive).

    With a **time axis** (a rollout) every field carries it batch-first as ``[B, T, L, dim]``
    (:attr:`has_time_axis`, :attr:`num_times`); :meth:`at_time` picks one ``[B, L, dim]`` state and
    :meth:`stack_time` builds a trajectory from states. All three fields have the same rank.

    The fields cannot be reassigned (``dataclasses.FrozenInstanceError``); derive new latents with
    :meth:`replace`, :meth:`map` (``z.map(lambda t: 2 * t)``) or :meth:`map2`
    (``z.map2(lambda a, b: a + dt * b, dz)``). A ``Latents`` of velocities (``d poses``, ``d context``,
    ``d window``) uses the same container; it moves with :meth:`transform_velocity`.

    Tuple bridge for ``torchdiffeq`` (which integrates tuples of tensors and returns them with a leading
    time axis ``[T, B, L, dim]``)::

        sol = odeint(lambda t, y: field(t, Latents.from_tuple(y)).to_tuple(), z0.to_tuple(), times)
        zs = Latents.from_odeint(sol)   # poses [B, T, L, pose_dim]
        z_last = zs.at_time(-1)         # poses [B, L, pose_dim]
    """

    poses: Tensor
    context: Tensor
    window: Tensor

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"Latents.{name} must be a torch.Tensor, got {type(value).__name__}")
        rank = self.poses.dim() if self.poses.dim() in (3, 4) else 3
        for name in _FIELDS:
            value = getattr(self, name)
            if value.dim() != rank:
                layout = "[B, T, L, dim] like the poses" if rank == 4 else "[B, L, dim]"
                extra = "" if rank == 4 else " (or [B, T, L, dim] for all fields, with a time axis)"
                raise ValueError(f"Latents.{name} must be {layout}{extra}, got shape {tuple(value.shape)}")
        lead = tuple(self.poses.shape[:-1])
        if tuple(self.context.shape[:-1]) != lead or tuple(self.window.shape) != (*lead, 1):
            axes = "B, T, L" if len(lead) == 3 else "B, L"
            raise ValueError(
                f"Latents: poses [{axes}, pose_dim], context [{axes}, context_dim] and window [{axes}, 1] "
                f"must agree, got {tuple(self.poses.shape)}, {tuple(self.context.shape)}, "
                f"{tuple(self.window.shape)}"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def batch_size(self) -> int:
        return self.poses.shape[0]

    @property
    def num_latents(self) -> int:
        return self.poses.shape[-2]

    @property
    def context_dim(self) -> int:
        return self.context.shape[-1]

    @property
    def has_time_axis(self) -> bool:
        """Whether the fields are trajectories ``[B, T, L, dim]``."""
        return self.poses.dim() == 4

    @property
    def num_times(self) -> int:
        """Length ``T`` of the time axis (``ValueError`` without one)."""
        if not self.has_time_axis:
            raise ValueError(f"these latents have no time axis (poses {tuple(self.poses.shape)})")
        return self.poses.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the poses."""
        return self.poses.dtype

    @property
    def device(self) -> torch.device:
        """The device of the poses."""
        return self.poses.device

    # ---------------------------------------------------------- functional ops
    def map(self, fn: Callable[[Tensor], Tensor]) -> Latents:
        """``Latents(fn(poses), fn(context), fn(window))``."""
        return Latents(poses=fn(self.poses), context=fn(self.context), window=fn(self.window))

    def map2(self, fn: Callable[[Tensor, Tensor], Tensor], other: Latents) -> Latents:
        """Field by field ``fn(self.field, other.field)``, e.g. ``z.map2(lambda a, b: a + dt * b, dz)``."""
        if not isinstance(other, Latents):
            raise TypeError(f"map2 needs another Latents, got {type(other).__name__}")
        return Latents(*(fn(getattr(self, name), getattr(other, name)) for name in _FIELDS))

    def replace(self, **fields: Tensor) -> Latents:
        """A copy with some fields replaced, like ``dataclasses.replace`` (validated again)."""
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise TypeError(f"Latents.replace got unknown field(s) {unknown}; the fields are {list(_FIELDS)}")
        return dataclasses.replace(self, **fields)

    def clone(self) -> Latents:
        """Copies of the tensors (differentiable like ``Tensor.clone``; ``requires_grad`` is not touched)."""
        return self.map(torch.clone)

    def to(self, *args, **kwargs) -> Latents:
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Latents:
        return self.map(torch.Tensor.detach)

    # ------------------------------------------------------------ group action
    def transform(self, geometry: Geometry, g: GroupElement) -> Latents:
        """Act with ``g`` (one element per batch entry) on the poses; context and window are invariant."""
        return self.replace(poses=self._per_point(geometry.act_poses, g, self.poses))

    def transform_velocity(self, geometry: Geometry, g: GroupElement) -> Latents:
        """Act on latents of velocities: pose velocities by the linear part of ``g``, the rest invariant."""
        return self.replace(poses=self._per_point(geometry.act_pose_velocity, g, self.poses))

    def _per_point(
        self, act: Callable[[GroupElement, Tensor], Tensor], g: GroupElement, poses: Tensor
    ) -> Tensor:
        if not self.has_time_axis:
            return act(g, poses)
        flat = act(g, rearrange(poses, "b t l d -> b (t l) d"))
        return rearrange(flat, "b (t l) d -> b t l d", t=poses.shape[1])

    # ---------------------------------------------------------- tuple bridge
    def to_tuple(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(poses, context, window)``: the state form ``torchdiffeq.odeint`` integrates."""
        return (self.poses, self.context, self.window)

    @staticmethod
    def from_tuple(fields: Sequence[Tensor]) -> Latents:
        """Inverse of :meth:`to_tuple` (batch-first tensors; for ``odeint``'s output use :meth:`from_odeint`)."""
        if not isinstance(fields, (tuple, list)) or len(fields) != 3:
            what = f"length {len(fields)}" if isinstance(fields, (tuple, list)) else type(fields).__name__
            raise TypeError(f"Latents.from_tuple expects a (poses, context, window) tuple, got {what}")
        return Latents(poses=fields[0], context=fields[1], window=fields[2])

    @staticmethod
    def from_odeint(solution: Sequence[Tensor]) -> Latents:
        """Trajectories from ``odeint``'s time-first ``(poses, context, window)``, each ``[T, B, L, dim]``.

        Returns latents with a batch-first time axis ``[B, T, L, dim]``.
        """
        if not isinstance(solution, (tuple, list)) or len(solution) != 3:
            raise TypeError(
                f"Latents.from_odeint expects odeint's (poses, context, window) tuple, got {type(solution).__name__}"
            )
        for name, value in zip(_FIELDS, solution, strict=True):
            if not isinstance(value, Tensor) or value.dim() != 4:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"Latents.from_odeint: {name} must be odeint's [T, B, L, dim], got {shape}; "
                    "use Latents.from_tuple for a single state"
                )
        return Latents(*(rearrange(value, "t b l d -> b t l d") for value in solution))

    # ------------------------------------------------------------- time axis
    def at_time(self, index: int) -> Latents:
        """The state ``[B, L, dim]`` at time step ``index`` (negative counts from the end)."""
        num_times = self.num_times
        if not -num_times <= index < num_times:
            raise IndexError(f"time index {index} out of range for {num_times} time steps")
        return self.map(lambda t: t[:, index])

    @staticmethod
    def stack_time(states: Sequence[Latents]) -> Latents:
        """Trajectories ``[B, T, L, dim]`` from ``T`` states ``[B, L, dim]``."""
        if len(states) == 0:
            raise ValueError("stack_time needs at least one state")
        for k, z in enumerate(states):
            if not isinstance(z, Latents) or z.has_time_axis:
                raise ValueError(f"stack_time needs Latents without a time axis, got {z!r} at position {k}")
        return Latents(*(torch.stack([getattr(z, name) for z in states], dim=1) for name in _FIELDS))

    # --------------------------------------------------------------- batching
    def __getitem__(self, index) -> Latents:
        """Select batch entries (``index`` is anything a tensor accepts on dim 0; keeps the batch dim)."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(f"latent index {index} out of range for batch size {self.batch_size}")
            index = slice(index % self.batch_size, index % self.batch_size + 1)
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(items: Sequence[Latents]) -> Latents:
        """Concatenate along the batch axis."""
        return Latents(*(torch.cat([getattr(z, name) for z in items]) for name in _FIELDS))

    def expand(self, batch_size: int) -> Latents:
        """Repeat a batch-1 latent ``batch_size`` times (a real copy, safe to update per sample)."""
        if self.batch_size != 1:
            raise ValueError(f"expand needs a batch of 1, got batch size {self.batch_size}")
        return self.map(lambda t: t.expand(batch_size, *t.shape[1:]).clone())

    def check_finite(self, what: str = "latents") -> None:
        for name in _FIELDS:
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{what}.{name} contains NaN or inf")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={tuple(getattr(self, name).shape)}" for name in _FIELDS)
        return f"Latents({shapes}, dtype={self.dtype})"


def initial_latents(
    geometry: Geometry,
    *,
    num_latents: int,
    context_dim: int,
    window: float | None = None,
    context_init: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Latents:
    """A batch-1 latent: ``init_poses`` of the geometry, constant context, constant window.

    Args:
        geometry: the geometry whose ``init_poses`` spread the latents.
        num_latents: number of latent points ``L``.
        context_dim: width of the context vectors.
        window: window width ``s``; ``None`` uses ``geometry.default_window(num_latents)``.
        context_init: constant initial context value.
    """
    if num_latents < 1 or context_dim < 1:
        raise ValueError(f"num_latents and context_dim must be >= 1, got {num_latents}, {context_dim}")
    poses = geometry.init_poses(num_latents, generator=generator, dtype=dtype).unsqueeze(0)
    s = geometry.default_window(num_latents) if window is None else float(window)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"window must be a positive number, got {window}")
    context = torch.full((1, num_latents, context_dim), float(context_init), dtype=dtype)
    return Latents(poses=poses, context=context, window=torch.full((1, num_latents, 1), s, dtype=dtype))
