"""Meta-SGD auto-decoding: a few learned-step-size gradient steps from a shared initial latent (DESIGN.md section 6).

Inner step, per sample ``b``::

    z_b <- z_b - eta * grad_{z_b} L_b(z_b; random coordinate subset)

with ``L_b`` the per-sample mean squared error (so the batch size never shrinks the step) and ``eta`` made of
learned, clipped, positive step sizes: one for positions, one for orientation vectors, one per context
channel and one for the window. Scalar step sizes on each pose block commute with the group action, so
the fit is equivariant: fitting the transformed signal from the transformed initial latent gives the
transformed latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.latents import Latents, initial_latents
from enf.metrics import per_sample_mse

__all__ = ["MetaSGD", "sample_coordinate_subsets"]

Decoder = Callable[[Tensor, Latents], Tensor]


def sample_coordinate_subsets(
    num_coords: int,
    subset_size: int | None,
    num_subsets: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor | None]:
    """``num_subsets`` independent random index sets of size ``subset_size`` (``None`` entries: all points)."""
    if subset_size is None or subset_size >= num_coords:
        return [None] * num_subsets
    return [
        torch.randperm(num_coords, generator=generator)[:subset_size].to(device) for _ in range(num_subsets)
    ]


class MetaSGD(nn.Module):
    """Shared initial latent and learned inner-loop step sizes.

    Args:
        geometry: the geometry of the poses.
        num_latents: number of latent points ``L``.
        context_dim: width of the context vectors.
        num_inner_steps: inner gradient steps ``K``.
        lr_position: initial step size of the position block of the poses.
        lr_orientation: initial step size of the orientation blocks (ignored for position-only poses).
        lr_context: initial step size of every context channel.
        lr_window: initial step size of the window; ``0`` freezes the window in the inner loop.
        lr_bounds: step sizes are clipped to this positive range.
        learn_lr: learn the step sizes in the outer loop.
        learn_init: learn the initial latent (poses, context, window) in the outer loop.
        window: initial window width (``None``: ``geometry.default_window``).
        min_window: windows are clamped from below after each step.
        first_order: drop second-order terms (no graph through the inner gradients).
        init_context: constant initial context.
    """

    def __init__(
        self,
        *,
        geometry: Geometry,
        num_latents: int,
        context_dim: int,
        num_inner_steps: int = 3,
        lr_position: float = 0.1,
        lr_orientation: float = 0.1,
        lr_context: float = 5.0,
        lr_window: float = 0.0,
        lr_bounds: tuple[float, float] = (1e-6, 100.0),
        learn_lr: bool = True,
        learn_init: bool = True,
        window: float | None = None,
        min_window: float = 1e-3,
        first_order: bool = False,
        init_context: float = 1.0,
    ) -> None:
        super().__init__()
        lo, hi = lr_bounds
        if not 0 < lo < hi:
            raise ValueError(f"lr_bounds must satisfy 0 < low < high, got {lr_bounds}")
        if num_inner_steps < 0:
            raise ValueError(f"num_inner_steps must be >= 0, got {num_inner_steps}")
        self.geometry = geometry
        self.num_inner_steps = num_inner_steps
        self.lr_bounds = (float(lo), float(hi))
        self.first_order = first_order
        self.min_window = min_window
        self.freeze_window = lr_window <= 0

        z0 = initial_latents(
            geometry,
            num_latents=num_latents,
            context_dim=context_dim,
            window=window,
            context_init=init_context,
        )
        self.init_poses = nn.Parameter(z0.poses, requires_grad=learn_init)
        self.init_context = nn.Parameter(z0.context, requires_grad=learn_init)
        self.init_window = nn.Parameter(z0.window, requires_grad=learn_init)

        def lr_param(value: float, size: int) -> nn.Parameter:
            value = min(max(value, lo), hi)
            return nn.Parameter(torch.full((size,), float(value)), requires_grad=learn_lr)

        self.lr_position = lr_param(lr_position, 1)
        self.lr_orientation = lr_param(lr_orientation, 1)
        self.lr_context = lr_param(lr_context, context_dim)
        self.lr_window = lr_param(max(lr_window, lo), 1)
        if self.freeze_window:
            self.lr_window.requires_grad_(False)
        if geometry.pose_dim == geometry.position_dim:  # no orientation block: the step size is unused
            self.lr_orientation.requires_grad_(False)

    def initial(self, batch_size: int) -> Latents:
        """The shared initial latent repeated ``batch_size`` times (differentiable w.r.t. the init)."""
        expand = (batch_size, -1, -1)
        return Latents(
            poses=self.init_poses.expand(*expand),
            context=self.init_context.expand(*expand),
            window=self.init_window.expand(*expand),
        )

    def step_sizes(self) -> dict[str, Tensor]:
        """Clipped step sizes: ``poses [pose_dim]``, ``context [context_dim]``, ``window [1]``."""
        lo, hi = self.lr_bounds
        geom = self.geometry
        pos = self.lr_position.clamp(lo, hi).expand(geom.position_dim)
        ori = self.lr_orientation.clamp(lo, hi).expand(geom.pose_dim - geom.position_dim)
        return {
            "poses": torch.cat([pos, ori]),
            "context": self.lr_context.clamp(lo, hi),
            "window": self.lr_window.clamp(lo, hi),
        }

    def forward(
        self,
        decoder: Decoder,
        coords: Tensor,
        signal: Tensor,
        *,
        num_steps: int | None = None,
        subset_size: int | None = None,
        subsets: Sequence[Tensor | None] | None = None,
        init: Latents | None = None,
        generator: torch.Generator | None = None,
        create_graph: bool | None = None,
    ) -> Latents:
        """Fit latents to ``signal [B, N, C]`` observed at ``coords [B, N, coord_dim]``.

        Args:
            decoder: ``decoder(coords, latents) -> [B, N, C]``.
            num_steps: inner steps (default ``num_inner_steps``; more at test time is allowed).
            subset_size: number of coordinates per inner step, drawn afresh each step (``None``: all).
            subsets: explicit index tensors, one per step (overrides ``subset_size``).
            init: initial latents ``[B, ...]`` (default: the shared initial latent).
            create_graph: keep the graph through the inner gradients (default: ``not first_order`` when
                gradients are enabled).

        Returns:
            the adapted latents (differentiable w.r.t. the init, step sizes and decoder unless first order).
        """
        if coords.dim() != 3 or signal.dim() != 3 or coords.shape[:2] != signal.shape[:2]:
            raise ValueError(
                f"coords [B, N, coord_dim] and signal [B, N, C] must agree, got {tuple(coords.shape)} "
                f"and {tuple(signal.shape)}"
            )
        steps = self.num_inner_steps if num_steps is None else num_steps
        if subsets is None:
            subsets = sample_coordinate_subsets(
                coords.shape[1], subset_size, steps, generator=generator, device=coords.device
            )
        if len(subsets) != steps:
            raise ValueError(f"need one coordinate subset per inner step ({steps}), got {len(subsets)}")
        if create_graph is None:
            create_graph = (not self.first_order) and torch.is_grad_enabled()
        z = self.initial(coords.shape[0]) if init is None else init
        lr = self.step_sizes()
        for idx in subsets:
            x, y = (coords, signal) if idx is None else (coords[:, idx], signal[:, idx])
            z = self._step(decoder, x, y, z, lr, create_graph=create_graph)
        return z

    def _step(
        self, decoder: Decoder, x: Tensor, y: Tensor, z: Latents, lr: dict[str, Tensor], *, create_graph: bool
    ) -> Latents:
        with torch.enable_grad():
            leaves = [z.poses, z.context, z.window]
            leaves = [
                t if create_graph and t.requires_grad else t.detach().requires_grad_(True) for t in leaves
            ]
            zz = Latents(poses=leaves[0], context=leaves[1], window=leaves[2])
            pred = decoder(x, zz)
            loss = per_sample_mse(pred, y).sum()  # sum over batch: per-sample gradients
            wanted = [0, 1] + ([] if self.freeze_window else [2])
            grads = torch.autograd.grad(
                loss, [leaves[i] for i in wanted], create_graph=create_graph, allow_unused=True
            )
            # A latent part the decoder ignores (e.g. the window with use_window=False) gets a zero gradient.
            grads = [
                torch.zeros_like(leaves[i]) if gr is None else gr
                for i, gr in zip(wanted, grads, strict=False)
            ]
        g_poses, g_context = grads[0], grads[1]
        if not create_graph:
            # First order: the update is a constant offset; gradients flow to z and the step sizes only.
            g_poses, g_context = g_poses.detach(), g_context.detach()
        poses = z.poses - lr["poses"] * g_poses
        context = z.context - lr["context"] * g_context
        window = z.window
        if not self.freeze_window:
            g_window = grads[2] if create_graph else grads[2].detach()
            window = (z.window - lr["window"] * g_window).clamp_min(self.min_window)
        return Latents(poses=poses, context=context, window=window)
