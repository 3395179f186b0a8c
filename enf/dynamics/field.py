"""The equivariant latent vector field ``dz/dt = F(z)``: message passing over the latent point cloud.

Edges carry ``pose_invariant(p_j, p_i)`` (the pose of ``j`` seen from ``i``), embedded with random Fourier
features and an MLP. Node features start from the context vectors and are updated by residual blocks
(LayerNorm, mean aggregation over the latents). The outputs are

* ``d context / dt``: invariant, read off the node features;
* ``d pose / dt``: for every pose block (position, orientation vectors) a sum of equivariant vectors with
  invariant weights: relative positions ``q_j - q_i`` (wrapped on the torus), the orientation vectors of
  ``i`` and ``j``, the position ``q_i`` itself where the group has no translations (sphere, ball), and, for
  groups without reflections, their chiral partners (a 90 degree rotation in 2-D, cross products with the
  node's own vectors in 3-D). The result is projected onto the pose manifold's tangent space
  (``Geometry.tangent_velocity``: every pose block of the sphere and the ball; :func:`~enf.dynamics.rollout`
  retracts the poses onto the manifold after every solver step);
* ``d window / dt = 0``.

Every ingredient is invariant or moves by the rotation part of the group, so ``F(g.z) = g_* F(z)`` for
every geometry of the registry whose ``pose_invariant`` is invariant (``absolute2d`` gives the
non-equivariant baseline with the same code).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from enf.geometry import Geometry, safe_normalise
from enf.geometry import get as get_geometry
from enf.latents import Latents
from enf.nn.message_passing import MessagePassingBlock, edge_embedding

__all__ = ["EquivariantLatentField"]


def _rot90(v: Tensor) -> Tensor:
    """``J v`` for 2-D vectors ``[..., 2]`` (rotation by +90 degrees; commutes with SO(2))."""
    return torch.stack([-v[..., 1], v[..., 0]], dim=-1)


class EquivariantLatentField(nn.Module):
    """Autonomous vector field on latent point clouds, ``F(g.z) = g_* F(z)``.

    Args:
        geometry: the geometry of the latents (registry name or instance).
        context_dim: width of the context vectors.
        hidden_dim: width of the node features.
        basis_dim: width of the embedded edge invariants.
        num_layers: residual message-passing blocks.
        widening: hidden width factor of the block MLPs.
        num_frequencies: random Fourier frequencies of the edge invariants.
        freq_scale: standard deviation of those frequencies.
        velocity_scale: initial scale of the output layers (small: the rollout starts near the identity).

    Shapes: ``forward(t, z)`` with poses ``[B, L, pose_dim]``, context ``[B, L, context_dim]`` returns
    ``Latents`` of velocities of the same shapes (window velocities are zero).
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        context_dim: int,
        hidden_dim: int = 64,
        basis_dim: int = 64,
        num_layers: int = 3,
        widening: int = 2,
        num_frequencies: int = 32,
        freq_scale: float = 1.0,
        velocity_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        for label, value in (
            ("context_dim", context_dim),
            ("hidden_dim", hidden_dim),
            ("basis_dim", basis_dim),
            ("num_layers", num_layers),
            ("widening", widening),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if not velocity_scale >= 0:
            raise ValueError(f"velocity_scale must be >= 0, got {velocity_scale}")
        self.geometry = get_geometry(geometry)
        self.context_dim = context_dim
        geom = self.geometry
        n, num_blocks = geom.space_dim, geom.num_pose_blocks
        self.num_orientations = num_blocks - 1
        # equivariant vectors of a node (its orientations, its position when nothing translates)
        self.num_node_vectors = self.num_orientations + (0 if geom.translates else 1)
        self.chiral = not geom.reflections
        num_pair = 1 + self.num_orientations  # q_j - q_i and the orientations of j
        if self.chiral:
            num_pair *= 2 if n == 2 else 1 + self.num_node_vectors
        num_node = self.num_node_vectors
        if self.chiral and num_node:
            num_node += num_node if n == 2 else num_node * (num_node - 1) // 2
        self.num_pair_vectors, self.num_node_vector_terms = num_pair, num_node

        self.edge_embedding = edge_embedding(
            geometry=geom, num_frequencies=num_frequencies, freq_scale=freq_scale, basis_dim=basis_dim
        )
        self.node_in = nn.Linear(context_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            MessagePassingBlock(hidden_dim=hidden_dim, basis_dim=basis_dim, widening=widening)
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.context_out = nn.Linear(hidden_dim, context_dim)
        self.pair_source = nn.Linear(hidden_dim, hidden_dim)
        self.pair_target = nn.Linear(hidden_dim, hidden_dim)
        self.pair_kernel = nn.Linear(basis_dim, hidden_dim)
        self.pair_weights = nn.Linear(hidden_dim, num_pair * num_blocks)
        self.node_weights = nn.Linear(hidden_dim, num_node * num_blocks) if num_node else None
        for layer in (self.context_out, self.pair_weights, self.node_weights):
            if layer is not None:
                nn.init.normal_(layer.weight, std=velocity_scale / math.sqrt(hidden_dim))
                nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------------------- vectors
    def _blocks(self, poses: Tensor) -> Tensor:
        """``[B, L, K, n]`` pose blocks with the orientation vectors normalised: they are directions (every
        invariant normalises them), and unit vectors keep the velocity terms built from them bounded, so an
        explicit step cannot feed a growing norm back into itself. Normalising commutes with rotations."""
        blocks = rearrange(poses, "b l (k n) -> b l k n", n=self.geometry.space_dim)
        if blocks.shape[2] == 1:
            return blocks
        return torch.cat([blocks[:, :, :1], safe_normalise(blocks[:, :, 1:])], dim=2)

    def _node_vectors(self, poses: Tensor) -> Tensor:
        """``[B, L, V, n]``: equivariant vectors of each node."""
        geom = self.geometry
        blocks = self._blocks(poses)
        vectors = [blocks[:, :, k] for k in range(1, geom.num_pose_blocks)]
        if not geom.translates:
            vectors.append(blocks[:, :, 0])
        return torch.stack(vectors, dim=2) if vectors else blocks[:, :, :0]

    def _pair_vectors(self, poses: Tensor, node: Tensor) -> Tensor:
        """``[B, L(i), L(j), P, n]``: equivariant vectors of each pair (for the velocity of ``i``)."""
        geom = self.geometry
        n = geom.space_dim
        blocks = self._blocks(poses)
        q = blocks[:, :, 0]
        delta = geom.relative_position(q.unsqueeze(2), q.unsqueeze(1))  # [B, i, j, n]: q_j - q_i
        num_l = poses.shape[1]
        vectors = [delta.unsqueeze(3)]
        if self.num_orientations:
            orient_j = blocks[:, :, 1:].unsqueeze(1).expand(-1, num_l, -1, -1, -1)  # [B, i, j, K-1, n]
            vectors.append(orient_j)
        base = torch.cat(vectors, dim=3)  # [B, i, j, 1 + K - 1, n]
        if not self.chiral:
            return base
        if n == 2:
            return torch.cat([base, _rot90(base)], dim=3)
        crosses = [base]
        for v in range(node.shape[2]):
            a = node[:, :, v].unsqueeze(2).unsqueeze(3)  # [B, i, 1, 1, n]
            crosses.append(torch.linalg.cross(base, a.expand_as(base), dim=-1))
        return torch.cat(crosses, dim=3)

    def _node_terms(self, node: Tensor) -> Tensor:
        """``[B, L, V', n]``: node vectors and (without reflections) their chiral partners."""
        if not self.chiral or node.shape[2] == 0:
            return node
        if self.geometry.space_dim == 2:
            return torch.cat([node, _rot90(node)], dim=2)
        extra = [
            torch.linalg.cross(node[:, :, a], node[:, :, b], dim=-1)
            for a in range(node.shape[2])
            for b in range(a + 1, node.shape[2])
        ]
        return torch.cat([node, *[e.unsqueeze(2) for e in extra]], dim=2) if extra else node

    # ------------------------------------------------------------------------------- forward
    def forward(self, t: Tensor | float, z: Latents) -> Latents:
        """Velocities of the latents ``z`` (the field is autonomous: ``t`` is ignored)."""
        if not isinstance(z, Latents):
            raise TypeError(f"EquivariantLatentField expects Latents, got {type(z).__name__}")
        if z.has_time_axis:
            raise ValueError(f"the field acts on states [B, L, dim], got latents with a time axis: {z!r}")
        geom = self.geometry
        if z.poses.shape[-1] != geom.pose_dim or z.context_dim != self.context_dim:
            raise ValueError(
                f"latents {z!r} do not fit this field: expected pose_dim {geom.pose_dim} ({geom.name}) and "
                f"context_dim {self.context_dim}"
            )
        poses = z.poses
        num_blocks, n = geom.num_pose_blocks, geom.space_dim
        # edges: the pose of j seen from i, [B, i, j, pose_invariant_dim]
        invariant = geom.pose_invariant(poses.unsqueeze(1), poses.unsqueeze(2))
        basis = self.edge_embedding(invariant)
        h = self.node_in(z.context)
        for block in self.blocks:
            h = block(h, basis)
        h = self.out_norm(h)
        d_context = self.context_out(h)

        node = self._node_vectors(poses)
        pair_vectors = self._pair_vectors(poses, node)  # [B, i, j, P, n]
        edge = self.pair_kernel(basis) * (self.pair_source(h).unsqueeze(2) + self.pair_target(h).unsqueeze(1))
        w = rearrange(self.pair_weights(nn.functional.gelu(edge)), "b i j (k p) -> b i j k p", k=num_blocks)
        velocity = torch.einsum("bijkp,bijpn->bikn", w, pair_vectors) / poses.shape[1]
        if self.node_weights is not None:
            terms = self._node_terms(node)  # [B, L, V', n]
            u = rearrange(self.node_weights(h), "b l (k v) -> b l k v", k=num_blocks)
            velocity = velocity + torch.einsum("blkv,blvn->blkn", u, terms)
        d_poses = geom.tangent_velocity(poses, rearrange(velocity, "b l k n -> b l (k n)", n=n))
        return Latents(poses=d_poses, context=d_context, window=torch.zeros_like(z.window))

    def extra_repr(self) -> str:
        return (
            f"geometry={self.geometry.name}, context_dim={self.context_dim}, "
            f"pair_vectors={self.num_pair_vectors}, node_vectors={self.num_node_vector_terms}"
        )
