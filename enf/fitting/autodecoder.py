"""Plain auto-decoding: one latent per training signal in a table, and test-time optimisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.latents import Latents, initial_latents
from enf.metrics import per_sample_mse

__all__ = ["AutoDecoderTable", "optimise_latents"]


class AutoDecoderTable(nn.Module):
    """A learnable latent per training signal, initialised from the geometry's initial latent.

    Args:
        geometry: geometry of the poses.
        num_signals: number of training signals (table rows).
        num_latents: latent points per signal.
        context_dim: context width.
        window: initial window (``None``: geometry default).
        learn_window: train the windows too.
    """

    def __init__(
        self,
        *,
        geometry: Geometry,
        num_signals: int,
        num_latents: int,
        context_dim: int,
        window: float | None = None,
        learn_window: bool = False,
    ) -> None:
        super().__init__()
        if num_signals < 1:
            raise ValueError(f"num_signals must be >= 1, got {num_signals}")
        z0 = initial_latents(geometry, num_latents=num_latents, context_dim=context_dim, window=window)
        z = z0.expand(num_signals)
        self.num_signals = num_signals
        self.poses = nn.Parameter(z.poses)
        self.context = nn.Parameter(z.context + 0.01 * torch.randn_like(z.context))
        self.window = nn.Parameter(z.window, requires_grad=learn_window)

    def forward(self, index: Tensor) -> Latents:
        """Latents of the signals ``index [B]`` (integer positions in the training split)."""
        if index.min() < 0 or index.max() >= self.num_signals:
            raise ValueError(f"index out of range [0, {self.num_signals}): {index.tolist()}")
        return Latents(poses=self.poses[index], context=self.context[index], window=self.window[index])

    def mean(self) -> Latents:
        """The table's mean latent, a batch of 1 (start point for test-time optimisation)."""
        return Latents(
            poses=self.poses.mean(0, keepdim=True),
            context=self.context.mean(0, keepdim=True),
            window=self.window.mean(0, keepdim=True),
        )


def optimise_latents(
    decoder,
    coords: Tensor,
    signal: Tensor,
    init: Latents,
    *,
    num_steps: int = 100,
    lr: float = 1e-2,
    learn_window: bool = False,
) -> Latents:
    """Fit latents to ``signal [B, N, C]`` with Adam, the decoder frozen (test-time auto-decoding)."""
    poses = init.poses.detach().clone().requires_grad_(True)
    context = init.context.detach().clone().requires_grad_(True)
    window = init.window.detach().clone().requires_grad_(learn_window)
    params = [poses, context] + ([window] if learn_window else [])
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(num_steps):
            opt.zero_grad()
            loss = per_sample_mse(decoder(coords, Latents(poses, context, window)), signal).sum()
            loss.backward(inputs=params)
            opt.step()
    return Latents(poses=poses.detach(), context=context.detach(), window=window.detach())
