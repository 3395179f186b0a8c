"""The latent point cloud ``z = {(p_i, c_i, s_i)}``: poses, context vectors and window widths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from enf.geometry import Geometry, GroupElement

__all__ = ["Latents", "initial_latents"]


@dataclass
class Latents:
    """A batch of latent point clouds.

    Attributes:
        poses: ``[B, L, pose_dim]`` poses in the geometry's pose vector convention.
        context: ``[B, L, context_dim]`` context vectors (invariant features).
        window: ``[B, L, 1]`` Gaussian window widths ``s`` (positive).
    """

    poses: Tensor
    context: Tensor
    window: Tensor

    def __post_init__(self) -> None:
        for name in ("poses", "context", "window"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"Latents.{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.dim() != 3:
                raise ValueError(f"Latents.{name} must be [B, L, dim], got shape {tuple(value.shape)}")
        b, num, _ = self.poses.shape
        if self.context.shape[:2] != (b, num) or self.window.shape != (b, num, 1):
            raise ValueError(
                "Latents: poses [B, L, pose_dim], context [B, L, context_dim] and window [B, L, 1] must agree, "
                f"got {tuple(self.poses.shape)}, {tuple(self.context.shape)}, {tuple(self.window.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.poses.shape[0]

    @property
    def num_latents(self) -> int:
        return self.poses.shape[1]

    @property
    def context_dim(self) -> int:
        return self.context.shape[-1]

    def transform(self, geometry: Geometry, g: GroupElement) -> Latents:
        """Act with ``g`` on the poses; context and window are invariant."""
        return Latents(poses=geometry.act_poses(g, self.poses), context=self.context, window=self.window)

    def to(self, *args, **kwargs) -> Latents:
        return Latents(
            poses=self.poses.to(*args, **kwargs),
            context=self.context.to(*args, **kwargs),
            window=self.window.to(*args, **kwargs),
        )

    def detach(self) -> Latents:
        return Latents(poses=self.poses.detach(), context=self.context.detach(), window=self.window.detach())

    def __getitem__(self, index) -> Latents:
        """Select batch entries (``index`` is anything a tensor accepts on dim 0; keeps the batch dim)."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(f"latent index {index} out of range for batch size {self.batch_size}")
            index = slice(index % self.batch_size, index % self.batch_size + 1)
        return Latents(poses=self.poses[index], context=self.context[index], window=self.window[index])

    @staticmethod
    def cat(items: list[Latents]) -> Latents:
        return Latents(
            poses=torch.cat([z.poses for z in items]),
            context=torch.cat([z.context for z in items]),
            window=torch.cat([z.window for z in items]),
        )

    def expand(self, batch_size: int) -> Latents:
        """Repeat a batch-1 latent ``batch_size`` times (a real copy, safe to update per sample)."""
        if self.batch_size != 1:
            raise ValueError(f"expand needs a batch of 1, got batch size {self.batch_size}")
        return Latents(
            poses=self.poses.expand(batch_size, -1, -1).clone(),
            context=self.context.expand(batch_size, -1, -1).clone(),
            window=self.window.expand(batch_size, -1, -1).clone(),
        )

    def check_finite(self, what: str = "latents") -> None:
        for name in ("poses", "context", "window"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{what}.{name} contains NaN or inf")


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
