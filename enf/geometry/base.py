"""The geometry interface: a group acting on coordinates and latent poses, and its bi-invariants.

Every geometry stores poses as plain real vectors made of ``num_pose_blocks`` blocks of ``space_dim``
numbers: block 0 is a position (or a point on the sphere), the others are orientation vectors. A group
element ``g = (R, t)`` acts on a coordinate by ``x -> R x + t`` and on a pose by rotating every block and
translating block 0 only. Projections onto the manifold (normalising an orientation, Gram-Schmidt of a
frame) happen inside :meth:`Geometry.pair_invariant`, so gradient steps with scalar step sizes commute
with the group action (DESIGN.md section 4).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Geometry", "GroupElement", "fibonacci_sphere", "grid_points", "random_rotation", "resolve_dtype"]


def resolve_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """``dtype``, or ``torch.get_default_dtype()`` when ``None`` (the default of every sampler here)."""
    return torch.get_default_dtype() if dtype is None else dtype


@dataclass(frozen=True)
class GroupElement:
    """A batch of group elements ``x -> R x + t``.

    Attributes:
        rotation: ``[B, n, n]`` orthogonal matrices, or ``None`` for the identity.
        translation: ``[B, n]`` translations, or ``None`` for zero.
    """

    rotation: Tensor | None = None
    translation: Tensor | None = None

    @property
    def batch_size(self) -> int:
        ref = self.rotation if self.rotation is not None else self.translation
        return 0 if ref is None else ref.shape[0]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> GroupElement:
        def conv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(dtype=dtype, device=device)

        return GroupElement(rotation=conv(self.rotation), translation=conv(self.translation))

    @property
    def dtypes(self) -> tuple[torch.dtype, ...]:
        """The distinct dtypes of the stored tensors (empty for the identity without tensors)."""
        out: list[torch.dtype] = []
        for t in (self.rotation, self.translation):
            if t is not None and t.dtype not in out:
                out.append(t.dtype)
        return tuple(out)


def random_rotation(
    batch_size: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Haar-random rotations ``[B, dim, dim]`` with determinant +1 (QR of a Gaussian, sign-fixed).

    Drawn in float64 and cast to ``dtype`` (``None``: ``torch.get_default_dtype()``).
    """
    a = torch.randn(batch_size, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(-1)
    return q.to(resolve_dtype(dtype))


def check_num_points(num_points: object) -> None:
    """``ValueError`` unless ``num_points`` (latents, grid points) is an int >= 1."""
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_latents (the number of points) must be an int >= 1, got {num_points!r}")


def grid_points(
    num_points: int, dim: int, *, low: float = -1.0, high: float = 1.0, periodic: bool = False
) -> Tensor:
    """``num_points`` points on a regular grid in ``[low, high]^dim`` (cell centres), ``[num_points, dim]``.

    Uses ``ceil(num_points ** (1/dim))`` points per axis and keeps the first ``num_points`` in
    row-major order when ``num_points`` is not a perfect power.
    """
    check_num_points(num_points)
    per_axis = math.ceil(round(num_points ** (1.0 / dim), 8))
    step = (high - low) / per_axis
    axis = low + step * (torch.arange(per_axis, dtype=torch.float64) + (0.0 if periodic else 0.5))
    mesh = torch.meshgrid(*([axis] * dim), indexing="ij")
    pts = torch.stack([m.reshape(-1) for m in mesh], dim=-1)
    return pts[:num_points]


def fibonacci_sphere(num_points: int) -> Tensor:
    """Fibonacci lattice of ``num_points`` unit vectors ``[num_points, 3]`` (nearly uniform on S^2)."""
    check_num_points(num_points)
    i = torch.arange(num_points, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / num_points
    phi = math.pi * (1.0 + math.sqrt(5.0)) * i
    r = torch.sqrt(torch.clamp(1.0 - z**2, min=0.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


class Geometry(abc.ABC):
    """A group ``G`` acting on coordinates and latent poses, with its bi-invariants.

    Subclasses set the class attributes and implement :meth:`pair_invariant`, :meth:`pair_distance2`,
    :meth:`pose_invariant`, :meth:`sample_group` and :meth:`init_poses`.

    Attributes:
        name: registry name.
        space_dim: dimension of the ambient space the group acts on (2 or 3).
        coord_dim: width of a coordinate vector (``== space_dim``).
        pose_dim: width of a pose vector (``space_dim * num_pose_blocks``).
        num_pose_blocks: 1 position block + number of orientation vectors.
        pose_blocks: sizes of the pose blocks, position first (each ``space_dim`` wide); the rotation part
            of the group acts on every block alike and preserves each block's norm.
        invariant_dim: width of :meth:`invariant`.
        pose_invariant_dim: width of :meth:`pose_invariant`.
        translates: whether group elements carry a translation.
        periodic: coordinates live on the torus ``[-1, 1)^n`` (translations wrap).
        reflections: the group contains reflections (determinant -1), so chiral constructions (a cross
            product, a rotation by 90 degrees) are not equivariant.
        position_on_sphere: the position block is a direction (a point of the unit sphere), so paths between
            positions follow great circles (interpolation, editing).
        equivariant: the invariants are invariant under the group (``False`` only for the non-equivariant
            controls ``absolute2d`` and ``absolute_sphere``).
    """

    name: str = ""
    space_dim: int = 2
    num_pose_blocks: int = 1
    invariant_dim: int = 0
    pose_invariant_dim: int = 0
    translates: bool = True
    periodic: bool = False
    reflections: bool = False
    position_on_sphere: bool = False
    equivariant: bool = True

    @property
    def coord_dim(self) -> int:
        return self.space_dim

    def is_symmetry(self, g: GroupElement, *, atol: float = 1e-12) -> bool:
        """Whether ``g`` lies in this geometry's symmetry group, so moving a whole latent cloud by it moves the
        decoded field exactly: ``False`` for the non-equivariant controls, for rotations where the group has
        none (translations, the torus), reflections where it has none, and translations where it has none
        (the sphere, the ball)."""
        if not self.equivariant:
            return False
        probe = self.sample_group(1, dtype=torch.float64)
        rot, trans = g.rotation, g.translation
        if rot is not None and probe.rotation is None:
            eye = torch.eye(rot.shape[-1], dtype=rot.dtype, device=rot.device)
            if not torch.allclose(rot, eye.expand_as(rot), atol=atol, rtol=0):
                return False
        if rot is not None and not self.reflections and (torch.linalg.det(rot.double()) < 0).any():
            return False
        return not (trans is not None and not self.translates and trans.abs().max() > atol)

    @property
    def pose_dim(self) -> int:
        return self.space_dim * self.num_pose_blocks

    @property
    def position_dim(self) -> int:
        """Number of leading pose entries that form the position block."""
        return self.space_dim

    @property
    def pose_blocks(self) -> tuple[int, ...]:
        """Sizes of the pose blocks in order: the position block, then each orientation vector.

        Each block is ``space_dim`` wide and is rotated as a whole by :meth:`act_poses` (only the position
        block is translated), so the Euclidean norm of a block of a pose *gradient* is invariant: e.g.
        ``se2`` ``(2, 2)`` (q, o), ``sphere`` ``(3, 3)`` (n, t), ``ball``/``se3`` ``(3, 3, 3)`` (q, u, v),
        position-only geometries ``(space_dim,)``. The sizes sum to :attr:`pose_dim`.
        """
        return (self.space_dim,) * self.num_pose_blocks

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # ------------------------------------------------------------------ group
    @abc.abstractmethod
    def sample_group(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> GroupElement:
        """Random group elements, one per batch entry (``dtype=None``: ``torch.get_default_dtype()``)."""

    def identity(
        self, batch_size: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> GroupElement:
        """The identity, ``batch_size`` times (``dtype=None``: ``torch.get_default_dtype()``)."""
        n = self.space_dim
        dtype = resolve_dtype(dtype)
        rot = torch.eye(n, dtype=dtype, device=device).expand(batch_size, n, n).clone()
        trans = torch.zeros(batch_size, n, dtype=dtype, device=device) if self.translates else None
        return GroupElement(rotation=rot, translation=trans)

    def compose(self, g: GroupElement, h: GroupElement) -> GroupElement:
        """``g * h``: first apply ``h``, then ``g``."""
        rot = _matmul(g.rotation, h.rotation)
        trans = None
        if g.translation is not None or h.translation is not None:
            th = h.translation
            trans = _apply(g.rotation, th) if th is not None else None
            trans = _add(trans, g.translation)
            trans = self._wrap(trans)
        return GroupElement(rotation=rot, translation=trans)

    def inverse(self, g: GroupElement) -> GroupElement:
        rot_t = None if g.rotation is None else g.rotation.transpose(-1, -2)
        trans = None if g.translation is None else self._wrap(-_apply(rot_t, g.translation))
        return GroupElement(rotation=rot_t, translation=trans)

    def act_coords(self, g: GroupElement, x: Tensor) -> Tensor:
        """Act on coordinates ``x [B, N, coord_dim]`` -> same shape.

        ``g`` and ``x`` must share a dtype (``TypeError`` otherwise; nothing is cast silently).
        """
        self._check_last(x, self.coord_dim, "coords")
        self._check_dtypes(g, x, "coords")
        self._check_batch(g, x, "coords")
        y = _apply(g.rotation, x)
        if g.translation is not None:
            y = self._wrap(y + g.translation.unsqueeze(-2))
        return y

    def act_poses(self, g: GroupElement, poses: Tensor) -> Tensor:
        """Act on poses ``[B, L, pose_dim]`` -> same shape: rotate every block, translate the position.

        ``g`` and ``poses`` must share a dtype (``TypeError`` otherwise).
        """
        self._check_last(poses, self.pose_dim, "poses")
        self._check_dtypes(g, poses, "poses")
        self._check_batch(g, poses, "poses")
        blocks = poses.unflatten(-1, (self.num_pose_blocks, self.space_dim))  # [B, L, K, n]
        if g.rotation is not None:
            blocks = torch.einsum("bij,blkj->blki", g.rotation, blocks)
        if g.translation is not None:
            pos = self._wrap(blocks[..., 0, :] + g.translation.unsqueeze(-2))
            blocks = torch.cat([pos.unsqueeze(-2), blocks[..., 1:, :]], dim=-2)
        return blocks.flatten(-2)

    def act_pose_velocity(self, g: GroupElement, velocity: Tensor) -> Tensor:
        """Act on a pose tangent vector ``[B, L, pose_dim]``: rotate every block, never translate.

        ``g`` and ``velocity`` must share a dtype (``TypeError`` otherwise).
        """
        self._check_last(velocity, self.pose_dim, "pose velocity")
        self._check_dtypes(g, velocity, "pose velocity")
        self._check_batch(g, velocity, "pose velocity")
        blocks = velocity.unflatten(-1, (self.num_pose_blocks, self.space_dim))
        if g.rotation is not None:
            blocks = torch.einsum("bij,blkj->blki", g.rotation, blocks)
        return blocks.flatten(-2)

    def relative_position(self, positions_i: Tensor, positions_j: Tensor) -> Tensor:
        """``q_j - q_i`` of broadcastable position blocks ``[..., space_dim]`` (the shortest representative on
        periodic domains): an equivariant vector, moved by :meth:`act_pose_velocity`'s linear part."""
        delta = positions_j - positions_i
        return delta - 2.0 * torch.round(delta / 2.0) if self.periodic else delta

    def tangent_velocity(self, poses: Tensor, velocity: Tensor) -> Tensor:
        """Project a pose velocity ``[..., pose_dim]`` onto the tangent space of the pose manifold at ``poses``.

        Identity here (flat pose spaces); the sphere geometries remove the radial part of the position
        velocity (``sphere`` also keeps its orientation unit and tangent), the ball keeps its frame
        orthonormal. Equivariant: ``tangent_velocity(g.p, g_* v) == g_* tangent_velocity(p, v)``.
        """
        return velocity

    def retract(self, poses: Tensor) -> Tensor:
        """Map poses ``[..., pose_dim]`` onto the pose manifold without changing what the decoder sees.

        Identity here (flat pose spaces). The sphere geometries make positions unit vectors and (``sphere``)
        orientations unit tangent vectors; the ball keeps positions inside the unit ball and makes the frame
        vectors orthonormal. Every invariant normalises these blocks anyway, so a retracted latent decodes to
        the same field (for ball positions: whenever they were inside). Equivariant:
        ``retract(g.p) == g.retract(p)``. :func:`enf.dynamics.rollout` applies it after every solver step.
        """
        return poses

    def manifold_error(self, poses: Tensor) -> Tensor:
        """``[...]`` how far each pose ``[..., pose_dim]`` is from the pose manifold (max violation of its
        constraints: unit norms, tangency, orthogonality, radius <= 1); zeros for flat pose spaces."""
        return poses.new_zeros(poses.shape[:-1])

    @property
    def curved(self) -> bool:
        """Whether poses are constrained to a manifold (:meth:`retract` is not the identity)."""
        return type(self).retract is not Geometry.retract

    # ------------------------------------------------------------ invariants
    @abc.abstractmethod
    def pair_invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        """Bi-invariant of broadcastable ``x [..., coord_dim]``, ``poses [..., pose_dim]``.

        Returns ``[..., invariant_dim]``.
        """

    @abc.abstractmethod
    def pair_distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        """Invariant squared distance of broadcastable ``x [..., coord_dim]``, ``poses [..., pose_dim]``.

        Returns ``[...]``.
        """

    @abc.abstractmethod
    def pose_invariant(self, poses_i: Tensor, poses_j: Tensor) -> Tensor:
        """Invariant of the pose of ``i`` relative to ``j``.

        ``[..., pose_dim] x [..., pose_dim] -> [..., pose_invariant_dim]`` (broadcastable inputs).
        """

    def invariant(self, x: Tensor, poses: Tensor) -> Tensor:
        """All pairs: ``x [B, N, coord_dim]``, ``poses [B, L, pose_dim]`` -> ``[B, N, L, invariant_dim]``."""
        self._check_pair_shapes(x, poses)
        return self.pair_invariant(x.unsqueeze(2), poses.unsqueeze(1))

    def distance2(self, x: Tensor, poses: Tensor) -> Tensor:
        """All pairs: ``x [B, N, coord_dim]``, ``poses [B, L, pose_dim]`` -> ``[B, N, L]``."""
        self._check_pair_shapes(x, poses)
        return self.pair_distance2(x.unsqueeze(2), poses.unsqueeze(1))

    # ----------------------------------------------------------- initialisers
    @abc.abstractmethod
    def init_poses(
        self,
        num_latents: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Initial poses ``[num_latents, pose_dim]`` spread over the domain.

        Deterministic for a given generator (``None``: a generator seeded with 0);
        ``dtype=None``: ``torch.get_default_dtype()``.
        """

    def default_window(self, num_latents: int) -> float:
        """A window width that lets neighbouring initial latents overlap: domain size / latents per axis."""
        return 2.0 / num_latents ** (1.0 / self.space_dim)

    @abc.abstractmethod
    def sample_coords(
        self,
        batch_size: int,
        num_coords: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Random coordinates in the domain, ``[B, N, coord_dim]`` (for tests and benchmarks).

        Drawn in float64 and cast to ``dtype`` (``None``: ``torch.get_default_dtype()``).
        """

    def sample_poses(
        self,
        batch_size: int,
        num_latents: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Random poses ``[B, L, pose_dim]``: positions from :meth:`sample_coords`, Gaussian orientations.

        ``dtype=None``: ``torch.get_default_dtype()``.
        """
        dtype = resolve_dtype(dtype)
        pos = self.sample_coords(batch_size, num_latents, generator=generator, dtype=dtype)
        extra = self.pose_dim - self.space_dim
        if extra == 0:
            return pos
        ori = torch.randn(batch_size, num_latents, extra, generator=generator, dtype=torch.float64).to(dtype)
        return torch.cat([pos, ori], dim=-1)

    # ---------------------------------------------------------------- helpers
    def _wrap(self, x: Tensor | None) -> Tensor | None:
        if x is None or not self.periodic:
            return x
        return torch.remainder(x + 1.0, 2.0) - 1.0

    def _check_last(self, t: Tensor, expected: int, what: str) -> None:
        if not isinstance(t, Tensor):
            raise TypeError(f"{self.name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape[-1] != expected:
            raise ValueError(
                f"{self.name}: {what} must have last dimension {expected}, got shape {tuple(t.shape)}"
            )

    def _check_batch(self, g: GroupElement, t: Tensor, what: str) -> None:
        """``ValueError`` unless ``t`` is ``[B, M, dim]`` with one group element per batch entry."""
        if t.dim() != 3:
            raise ValueError(
                f"{self.name}: {what} must be batch-first [B, {'N' if what == 'coords' else 'L'}, {t.shape[-1]}], "
                f"got shape {tuple(t.shape)} "
                "(add a batch axis with .unsqueeze(0))"
            )
        if (g.rotation is not None or g.translation is not None) and g.batch_size != t.shape[0]:
            raise ValueError(
                f"{self.name}: {g.batch_size} group element(s) for a batch of {t.shape[0]} {what}; "
                f"sample one per batch entry (sample_group({t.shape[0]}))"
            )

    def _check_dtypes(self, g: GroupElement, t: Tensor, what: str) -> None:
        """``TypeError`` unless every tensor of ``g`` has the dtype of ``t`` (no silent casts)."""
        for name, part in (("rotation", g.rotation), ("translation", g.translation)):
            if part is not None and part.dtype != t.dtype:
                raise TypeError(
                    f"{self.name}: group element {name} has dtype {part.dtype} but {what} have dtype "
                    f"{t.dtype}; sample the group element in the same dtype "
                    f"(sample_group(..., dtype={t.dtype})) or convert it with g.to(dtype={t.dtype})"
                )

    def _check_pair_shapes(self, x: Tensor, poses: Tensor) -> None:
        self._check_last(x, self.coord_dim, "coords")
        self._check_last(poses, self.pose_dim, "poses")
        if x.dim() != 3 or poses.dim() != 3 or x.shape[0] != poses.shape[0]:
            raise ValueError(
                f"{self.name}: expected coords [B, N, {self.coord_dim}] and poses [B, L, {self.pose_dim}] "
                f"with the same B, got {tuple(x.shape)} and {tuple(poses.shape)}"
            )


def _matmul(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a @ b


def _apply(rotation: Tensor | None, x: Tensor) -> Tensor:
    """Apply ``[B, n, n]`` to ``x [B, ..., n]``."""
    if rotation is None:
        return x
    shape = x.shape
    flat = x.reshape(shape[0], -1, shape[-1])
    return torch.einsum("bij,bnj->bni", rotation, flat).reshape(shape)


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b
