"""What the dynamics tests share: random latents and a small field with order-one outputs."""

from __future__ import annotations

import torch
from _common import F64

from enf.dynamics import EquivariantLatentField
from enf.latents import Latents


def random_latents(geom, batch_size=3, num_latents=6, context_dim=5, *, seed=0, dtype=F64) -> Latents:
    gen = torch.Generator().manual_seed(seed)
    poses = geom.sample_poses(batch_size, num_latents, generator=gen, dtype=dtype)
    context = torch.randn(batch_size, num_latents, context_dim, generator=gen, dtype=dtype)
    window = 0.1 + torch.rand(batch_size, num_latents, 1, generator=gen, dtype=dtype)
    return Latents(poses=poses, context=context, window=window)


def make_field(geom, *, dtype=F64, seed=0) -> EquivariantLatentField:
    torch.manual_seed(seed)
    # velocity_scale 1: outputs of order one, so an equivariance error cannot hide in tiny velocities
    return EquivariantLatentField(
        geometry=geom, context_dim=5, hidden_dim=16, basis_dim=16, velocity_scale=1.0
    ).to(dtype)
