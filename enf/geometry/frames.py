"""Helpers shared by the geometries: safe normalisation, frames, geodesic angles, samplers, shape checks.

Everything here is safe at degenerate inputs (zero vectors, coincident or antipodal points): values stay
finite and so do gradients, because norms are computed as ``sqrt(|v|^2 + eps^2)`` rather than ``|v|``.
All functions broadcast over leading dimensions; vectors are in the last dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry.base import GroupElement, random_rotation, resolve_dtype

__all__ = [
    "EPS",
    "check_pair",
    "default_generator",
    "frame_coordinates",
    "geodesic_angle",
    "gram_schmidt",
    "random_euclidean",
    "rotation_2d",
    "safe_norm",
    "safe_normalise",
    "tangent_frame",
]

EPS = 1e-12


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fresh CPU generator seeded with 0 (deterministic initialisers)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def safe_norm(v: Tensor, eps: float = EPS) -> Tensor:
    """``sqrt(|v|^2 + eps^2)`` over the last dimension, ``[..., n] -> [...]``; finite gradient at 0."""
    return torch.sqrt(v.square().sum(-1) + eps * eps)


def safe_normalise(v: Tensor, eps: float = EPS) -> Tensor:
    """``v / |v|`` over the last dimension (``0`` maps to ``0``), with finite gradients everywhere."""
    return v / safe_norm(v, eps).unsqueeze(-1)


def geodesic_angle(x: Tensor, n: Tensor, eps: float = EPS) -> Tensor:
    """Angle between ``x`` and ``n`` (``[..., 3]``, broadcastable) as ``atan2(|x x n|, x . n)`` -> ``[...]``.

    Independent of the lengths of ``x`` and ``n``; accurate near 0 and pi, with finite gradients at
    coincident and antipodal points (where ``arccos`` of a clipped cosine would not be).
    """
    x, n = torch.broadcast_tensors(x, n)
    cross = torch.linalg.cross(x, n, dim=-1)
    return torch.atan2(safe_norm(cross, eps), (x * n).sum(-1))


def gram_schmidt(u: Tensor, v: Tensor, eps: float = EPS) -> Tensor:
    """Right-handed orthonormal frame ``GS(u, v)`` ``[..., 3, 3]`` with the frame vectors as **columns**.

    ``e1 = u/|u|``, ``e2 = normalise(v - <v, e1> e1)``, ``e3 = e1 x e2``. Equivariant:
    ``GS(R u, R v) = R GS(u, v)`` for ``R`` in SO(3).
    """
    u, v = torch.broadcast_tensors(u, v)
    e1 = safe_normalise(u, eps)
    e2 = safe_normalise(v - (v * e1).sum(-1, keepdim=True) * e1, eps)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def tangent_frame(n: Tensor, t: Tensor, eps: float = EPS) -> Tensor:
    """Sphere frame ``[..., 3, 3]`` (columns ``e1, e2, e3``) from a position ``n`` and an orientation ``t``.

    ``e3 = n/|n|``, ``e1 = normalise(t - <t, e3> e3)`` (tangent part of ``t``), ``e2 = e3 x e1``.
    Equal to ``GS(t, n)`` with its columns reordered.
    """
    n, t = torch.broadcast_tensors(n, t)
    e3 = safe_normalise(n, eps)
    e1 = safe_normalise(t - (t * e3).sum(-1, keepdim=True) * e3, eps)
    e2 = torch.linalg.cross(e3, e1, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def frame_coordinates(frame: Tensor, v: Tensor) -> Tensor:
    """Coordinates of ``v`` in an orthonormal frame, ``F^T v``: ``[..., n, n] x [..., n] -> [..., n]``.

    Computed as one dot product per frame column so that broadcasting ``v [B, N, 1, n]`` against
    ``frame [B, 1, L, n, n]`` never materialises a ``[B, N, L, n, n]`` tensor.
    """
    return torch.stack([(frame[..., :, k] * v).sum(-1) for k in range(frame.shape[-1])], dim=-1)


def rotation_2d(o: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` of the angle of the planar vector ``o [..., 2]``, each ``[...]`` (no ``atan2``)."""
    c = safe_normalise(o, eps)
    return c[..., 0], c[..., 1]


def check_pair(name: str, a: Tensor, a_dim: int, a_what: str, b: Tensor, b_dim: int, b_what: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``a [..., a_dim]`` and ``b [..., b_dim]`` broadcast."""
    for t, dim, what in ((a, a_dim, a_what), (b, b_dim, b_what)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0 or t.shape[-1] != dim:
            raise ValueError(f"{name}: {what} must have last dimension {dim}, got shape {tuple(t.shape)}")
    try:
        torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"{name}: {a_what} of shape {tuple(a.shape)} and {b_what} of shape {tuple(b.shape)} "
            "do not broadcast in their leading dimensions"
        ) from err


def random_euclidean(
    batch_size: int,
    dim: int,
    *,
    translation_scale: float | None = 1.0,
    reflections: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> GroupElement:
    """Random elements of SE(n) (or E(n) with ``reflections=True``): Haar rotation + Gaussian translation.

    ``translation_scale=None`` gives no translation (SO(n) / O(n)). With reflections, each element's first
    column is negated with probability 1/2 (determinant -1). Drawn in float64, returned in ``dtype``
    (``None``: ``torch.get_default_dtype()``).
    """
    dtype = resolve_dtype(dtype)
    rot = random_rotation(batch_size, dim, generator=generator, dtype=torch.float64)
    if reflections:
        flip = torch.randint(0, 2, (batch_size,), generator=generator).to(torch.float64) * 2.0 - 1.0
        rot[:, :, 0] = rot[:, :, 0] * flip.unsqueeze(-1)
    trans = None
    if translation_scale is not None:
        trans = translation_scale * torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
        trans = trans.to(dtype=dtype, device=device)
    return GroupElement(rotation=rot.to(dtype=dtype, device=device), translation=trans)
