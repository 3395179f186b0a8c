"""Latent dynamics: equivariant vector fields on latent point clouds and their ODE rollouts (DESIGN.md §7).

::

    field = enf.dynamics.EquivariantLatentField(geometry="se2", context_dim=16)
    zs = enf.dynamics.rollout(field, z0, times, method="rk4")   # poses [B, T, L, pose_dim]
"""

from enf.dynamics.field import EquivariantLatentField
from enf.dynamics.rollout import METHODS, rollout
from enf.dynamics.vector import MLPLatentField

__all__ = ["METHODS", "EquivariantLatentField", "MLPLatentField", "rollout"]
