"""Interpolation between two latent clouds of one model, with latents matched by optimal assignment."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from enf.editing.ops import check_latents
from enf.editing.select import _check_flat
from enf.geometry import Geometry
from enf.latents import Latents

__all__ = ["interpolate", "match_latents"]


def _check_pair(a: Latents, b: Latents, what: str) -> None:
    _check_flat(a, what)
    _check_flat(b, what)
    for name in ("poses", "context", "window"):
        sa, sb = tuple(getattr(a, name).shape), tuple(getattr(b, name).shape)
        if sa != sb:
            raise ValueError(
                f"{what}: the clouds' {name} differ in shape, {sa} and {sb} (same model and L needed)"
            )


def match_latents(a: Latents, b: Latents, geometry: Geometry) -> Tensor:
    """Permutation ``perm [B, L]`` such that latent ``perm[:, i]`` of ``b`` is matched to latent ``i`` of ``a``.

    Minimises the total squared distance between matched positions (shortest way round on periodic
    domains), per batch entry, with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``).
    """
    _check_pair(a, b, "match_latents")
    dim = geometry.position_dim
    delta = geometry.relative_position(a.poses[:, :, None, :dim], b.poses[:, None, :, :dim])
    cost = delta.square().sum(-1).detach().cpu().double().numpy()  # [B, L, L]
    perms = [linear_sum_assignment(c)[1] for c in cost]  # rows are sorted 0..L-1
    return torch.as_tensor(np.stack(perms), dtype=torch.long, device=a.device)


def _slerp_blocks(u: Tensor, v: Tensor, t: float) -> Tensor:
    """Interpolate vectors ``[..., n]`` by turning the direction along the great circle and blending the length."""
    nu, nv = u.norm(dim=-1, keepdim=True), v.norm(dim=-1, keepdim=True)
    eu, ev = u / nu.clamp_min(1e-30), v / nv.clamp_min(1e-30)
    cos = (eu * ev).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    if u.shape[-1] == 2:  # planar: the signed angle, turning the short way (either way at exactly pi)
        sin_signed = eu[..., :1] * ev[..., 1:] - eu[..., 1:] * ev[..., :1]
        angle = torch.atan2(sin_signed, cos) * t
        c, s = torch.cos(angle), torch.sin(angle)
        direction = torch.cat([c * eu[..., :1] - s * eu[..., 1:], s * eu[..., :1] + c * eu[..., 1:]], dim=-1)
    else:
        omega = torch.arccos(cos)
        small = omega < 1e-6
        sin_omega = torch.sin(omega).clamp_min(1e-12)
        wa = torch.where(small, 1.0 - t, torch.sin((1.0 - t) * omega) / sin_omega)
        wb = torch.where(small, torch.full_like(omega, t), torch.sin(t * omega) / sin_omega)
        direction = wa * eu + wb * ev
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return direction * ((1.0 - t) * nu + t * nv)


def interpolate(a: Latents, b: Latents, geometry: Geometry, t: float, *, match: bool = True) -> Latents:
    """The cloud a fraction ``t`` of the way from ``a`` (``t = 0``) to ``b`` (``t = 1``).

    With ``match=True`` the latents of ``b`` are first reordered by :func:`match_latents` (otherwise latent
    ``i`` goes to latent ``i``). Positions move on straight lines (the short way round on the torus; along
    great circles on the sphere), orientation vectors turn along great circles, context vectors and
    windows are blended linearly. Both clouds must have the same shapes.
    """
    _check_pair(a, b, "interpolate")
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t!r}")
    t = float(t)
    if match:
        perm = match_latents(a, b, geometry)
        b = b.map(lambda x: torch.gather(x, 1, perm.unsqueeze(-1).expand_as(x)))
    dim = geometry.position_dim
    qa, qb = a.poses[..., :dim], b.poses[..., :dim]
    if geometry.position_on_sphere:
        q = _slerp_blocks(qa, qb, t)
    else:
        q = qa + t * geometry.relative_position(qa, qb)
        if geometry.periodic:
            q = geometry.relative_position(torch.zeros_like(q), q)
    blocks = [q]
    n = geometry.space_dim
    for k in range(dim, geometry.pose_dim, n):
        blocks.append(_slerp_blocks(a.poses[..., k : k + n], b.poses[..., k : k + n], t))
    z = Latents(
        poses=torch.cat(blocks, dim=-1),
        context=torch.lerp(a.context, b.context, t),
        window=torch.lerp(a.window, b.window, t),
    )
    return check_latents(z, "the interpolated latents")
