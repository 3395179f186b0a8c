"""The vector-latent (DINo-like) baseline field: an MLP on the concatenated context vectors, poses fixed."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.latents import Latents

__all__ = ["MLPLatentField"]


class MLPLatentField(nn.Module):
    """``d c / dt = MLP(c_1 ... c_L)``, ``d p / dt = 0``: dynamics of one global latent vector per state.

    With one latent (``num_latents=1``) and the ``absolute2d`` geometry this is the DINo-style baseline: the
    state is a single code vector, the decoder a conditional neural field, the ODE an MLP. It is not
    equivariant (no pose enters).

    Args:
        geometry: the geometry of the latents (for the pose width only).
        context_dim: width of the context vectors.
        num_latents: number of latents ``L`` (their contexts are concatenated, ``L * context_dim``).
        hidden_dim: MLP width.
        num_layers: hidden layers.
        velocity_scale: initial scale of the output layer.
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        context_dim: int,
        num_latents: int = 1,
        hidden_dim: int = 256,
        num_layers: int = 3,
        velocity_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        for label, value in (
            ("context_dim", context_dim),
            ("num_latents", num_latents),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.geometry = get_geometry(geometry)
        self.context_dim = context_dim
        self.num_latents = num_latents
        width = num_latents * context_dim
        layers: list[nn.Module] = []
        for k in range(num_layers):
            layers += [nn.Linear(width if k == 0 else hidden_dim, hidden_dim), nn.SiLU()]
        out = nn.Linear(hidden_dim, width)
        nn.init.normal_(out.weight, std=velocity_scale / math.sqrt(hidden_dim))
        nn.init.zeros_(out.bias)
        self.mlp = nn.Sequential(*layers, out)

    def forward(self, t: Tensor | float, z: Latents) -> Latents:
        if not isinstance(z, Latents) or z.has_time_axis:
            raise TypeError(f"MLPLatentField expects Latents [B, L, dim] without a time axis, got {z!r}")
        if z.num_latents != self.num_latents or z.context_dim != self.context_dim:
            raise ValueError(
                f"latents {z!r} do not fit this field: expected {self.num_latents} latents of context_dim "
                f"{self.context_dim}"
            )
        flat = rearrange(z.context, "b l c -> b (l c)")
        d_context = rearrange(self.mlp(flat), "b (l c) -> b l c", l=self.num_latents)
        return Latents(poses=torch.zeros_like(z.poses), context=d_context, window=torch.zeros_like(z.window))
