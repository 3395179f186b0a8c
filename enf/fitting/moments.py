"""Intensity-moment frames: an initial latent that moves with the signal, so that encoding is equivariant.

Meta-SGD fits every signal from one shared initial latent ``z0``. The fit is equivariant only in the
sense "fitting ``g.signal`` from ``g.z0`` gives ``g.z``": a rotated digit encoded from the *same* ``z0``
gives latents that are not the rotated latents of the upright digit. Posing ``z0`` by a frame computed
from the signal itself closes the gap. With weights ``w_n = s_n - min_m s_m`` (the channel mean ``s`` of
each point, so a constant background weighs nothing):

- the origin is the weighted centroid ``c = sum_n w_n x_n / sum_n w_n``;
- the axes are the eigenvectors of the weighted covariance ``sum_n w_n (x_n - c)(x_n - c)^T``, largest
  first; the sign of each axis makes the third moment ``sum_n w_n ((x_n - c) . e_k)^3`` positive, except
  for a proper frame (``proper=True``, for geometries without reflections) whose last axis completes
  ``det = +1``.

For any rotation ``R`` (any orthogonal ``R`` when ``proper=False``) and translation ``t``, the frame of the
signal moved to ``R x + t`` is ``(R E, R c + t)``, so the posed initial latent is ``g . z0_posed`` and the whole fit is equivariant. Ill-conditioned
cases are inherent: a nearly isotropic signal (close eigenvalues) or a nearly symmetric one (third moment
close to 0) has a frame that small perturbations turn by a lot; the fit is then still a fit, from a
differently posed start. A signal with no contrast (all weights 0) gets the identity frame at the mean
point.
"""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry import Geometry, GroupElement, names
from enf.latents import Latents

__all__ = ["check_posable", "moment_frame", "pose_latents"]


def moment_frame(
    coords: Tensor, signal: Tensor, mask: Tensor | None = None, *, proper: bool = True
) -> GroupElement:
    """The intensity-moment frame of each signal (see the module docstring), detached.

    Args:
        coords: ``[B, N, d]`` point coordinates.
        signal: ``[B, N, C]`` values; the weights are ``mean_C(signal) - min`` over the observed points.
        mask: ``[B, N]`` bool, observed points (``None``: all).
        proper: the last axis completes ``det = +1`` (equivariant to rotations); ``False``: its sign too is
            set by the third moment (equivariant to reflections as well).

    Returns:
        ``GroupElement`` with ``rotation [B, d, d]`` (columns: the frame axes) and
        ``translation [B, d]`` (the weighted centroid).
    """
    if coords.dim() != 3 or signal.dim() != 3 or coords.shape[:2] != signal.shape[:2]:
        raise ValueError(
            f"moment_frame needs coords [B, N, d] and signal [B, N, C] with the same B and N, "
            f"got {tuple(coords.shape)} and {tuple(signal.shape)}"
        )
    with torch.no_grad():
        x = coords.detach()
        s = signal.detach().to(x.dtype).mean(-1)  # [B, N]
        observed = torch.ones_like(s, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        low = torch.where(observed, s, torch.full_like(s, torch.inf)).amin(-1, keepdim=True)
        w = torch.where(observed, s - low, torch.zeros_like(s))  # [B, N], >= 0
        total = w.sum(-1, keepdim=True)  # [B, 1]
        blank = total.squeeze(-1) <= 0
        # A signal without contrast: uniform weights over its observed points.
        w = torch.where(blank.unsqueeze(-1), observed.to(x.dtype), w)
        w = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        centroid = torch.einsum("bn,bnd->bd", w, x)
        d = x - centroid.unsqueeze(1)
        cov = torch.einsum("bn,bni,bnj->bij", w, d, d)
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        axes = vecs.flip(-1)  # [B, d, d], columns largest first
        u = torch.einsum("bnd,bdk->bnk", d, axes)  # coordinates in the frame
        third = torch.einsum("bn,bnk->bk", w, u.pow(3))
        sign = torch.where(third < 0, -1.0, 1.0).to(x.dtype)
        axes = axes * sign.unsqueeze(1)
        if proper:
            det = torch.linalg.det(axes)
            last = torch.where(det < 0, -1.0, 1.0).to(x.dtype)
            axes = torch.cat([axes[..., :-1], axes[..., -1:] * last[:, None, None]], dim=-1)
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand_as(axes)
        axes = torch.where(blank[:, None, None], eye, axes)
    return GroupElement(rotation=axes, translation=centroid)


def check_posable(geometry: Geometry) -> None:
    """Refuse geometries whose decoder is not rotation- and translation-equivariant in the signal's space."""
    ok = (
        geometry.name not in names(equivariant=False)
        and geometry.translates
        and not geometry.periodic
        and not geometry.position_on_sphere
        and geometry.coord_dim == geometry.space_dim
        and geometry.sample_group(1, dtype=torch.float64).rotation is not None
    )
    if not ok:
        raise ValueError(
            f"init_frame='moments' needs a geometry equivariant to rotations and translations of the "
            f"coordinates (se2, isotropic2d, se3), got {geometry.name!r}; use init_frame='shared'"
        )


def pose_latents(geometry: Geometry, z: Latents, g: GroupElement) -> Latents:
    """``g . z``: poses moved by ``g`` (cast to the poses' dtype), context and window unchanged."""
    g = g.to(dtype=z.poses.dtype, device=z.poses.device)
    return Latents(poses=geometry.act_poses(g, z.poses), context=z.context, window=z.window)
