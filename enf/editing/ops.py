"""Edits of latent point clouds: pure functions ``Latents -> Latents`` (inputs are never changed).

Poses move through the geometry's own action (:meth:`~enf.geometry.Geometry.act_poses`: every pose block
rotated, the position translated, wrapped on the torus), so orientation parts turn with the positions.
Moving **every** latent by an element ``g`` of the model's group moves the decoded field exactly,
``f(x; g.z) = f(g^-1 x; z)``; :func:`is_symmetry` says whether ``g`` is such an element (a rotation of
a ``translation2d`` model's latents moves the points, but the decoder does not turn with them).
Latents that an edit does not select are returned bit for bit.

Shapes: latents ``[B, L, dim]`` (one state), masks ``[B, L]``; group elements carry ``B`` entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from enf.editing.select import Selection, _check_flat, selection_mask
from enf.geometry import Geometry, GroupElement
from enf.latents import Latents

__all__ = [
    "check_latents",
    "copy_context",
    "delete",
    "duplicate",
    "is_symmetry",
    "paste",
    "planar_motion",
    "rotate",
    "scale",
    "selection_centroid",
    "swap",
    "transform",
    "translate",
]


def check_latents(z: Latents, what: str = "the edited latents") -> Latents:
    """``z`` if its fields are finite and its windows positive, else ``ValueError`` naming the problem."""
    for name in ("poses", "context", "window"):
        value = getattr(z, name)
        if not torch.isfinite(value).all():
            raise ValueError(f"{what} have non-finite {name}; the edit's parameters are out of range")
    if z.num_latents == 0:
        raise ValueError(f"{what} have no latents left; a field needs at least one latent point")
    if not (z.window > 0).all():
        raise ValueError(
            f"{what} have a window <= 0 (min {float(z.window.min()):.3g}); windows are widths s > 0"
        )
    return z


def _where(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(mask.unsqueeze(-1), new, old)


def transform(z: Latents, geometry: Geometry, g: GroupElement, *, select: Selection = None) -> Latents:
    """Act with ``g`` (``B`` elements) on the selected latents' poses; context, windows and the rest unchanged.

    ``select=None`` moves the whole cloud: then ``decoder(x, transform(z, geom, g)) ==
    decoder(geom.act_coords(geom.inverse(g), x), z)`` when :func:`is_symmetry` holds for ``g``.
    """
    _check_flat(z, "transform")
    mask = selection_mask(z, select)
    moved = geometry.act_poses(g, z.poses)
    return check_latents(z.replace(poses=_where(mask, moved, z.poses)))


def is_symmetry(geometry: Geometry, g: GroupElement, *, atol: float = 1e-12) -> bool:
    """Whether ``g`` lies in ``geometry``'s symmetry group, so moving the whole cloud by it moves the field
    exactly (:meth:`enf.geometry.Geometry.is_symmetry`)."""
    return geometry.is_symmetry(g, atol=atol)


def planar_motion(
    *,
    angle: float | Tensor = 0.0,
    translation: Sequence[float] | Tensor = (0.0, 0.0),
    center: Sequence[float] | Tensor = (0.0, 0.0),
    batch_size: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> GroupElement:
    """The rigid motion ``x -> R(angle) (x - center) + center + translation`` of the plane (``angle`` in radians,
    counter-clockwise with y up), as ``batch_size`` group elements (scalars/``[2]`` or per entry ``[B]``/``[B, 2]``)."""
    dtype = dtype or torch.get_default_dtype()
    a = torch.as_tensor(angle, dtype=dtype, device=device).expand(batch_size)
    t = torch.as_tensor(translation, dtype=dtype, device=device).expand(batch_size, 2)
    c = torch.as_tensor(center, dtype=dtype, device=device).expand(batch_size, 2)
    for label, value in (("angle", a), ("translation", t), ("center", c)):
        if not torch.isfinite(value).all():
            raise ValueError(f"planar_motion: {label} must be finite, got {value.tolist()}")
    cos, sin = torch.cos(a), torch.sin(a)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [B, 2, 2]
    shift = c + t - torch.einsum("bij,bj->bi", rot, c)
    return GroupElement(rotation=rot, translation=shift)


def selection_centroid(z: Latents, geometry: Geometry, *, select: Selection = None) -> Tensor:
    """Mean position ``[B, position_dim]`` of the selected latents (the default centre of rotations/scalings)."""
    mask = selection_mask(z, select)
    counts = mask.sum(-1, keepdim=True)
    if (counts == 0).any():
        raise ValueError("the selection is empty in some batch entry; select at least one latent")
    q = z.poses[..., : geometry.position_dim]
    return (q * mask.unsqueeze(-1)).sum(1) / counts


def _planar(geometry: Geometry, what: str) -> None:
    if geometry.space_dim != 2:
        raise ValueError(
            f"{what} is a planar edit; {geometry.name} is {geometry.space_dim}-D (use transform)"
        )


def translate(
    z: Latents, geometry: Geometry, offset: Sequence[float] | Tensor, *, select: Selection = None
) -> Latents:
    """Move the selected latents by ``offset`` (``[space_dim]`` or ``[B, space_dim]``; wraps on the torus)."""
    n = geometry.space_dim
    t = torch.as_tensor(offset, dtype=z.dtype, device=z.device)
    if t.shape not in ((n,), (z.batch_size, n)):
        raise ValueError(f"offset must be [{n}] or [B, {n}], got {tuple(t.shape)}")
    g = GroupElement(rotation=None, translation=t.expand(z.batch_size, n))
    if not geometry.translates:
        raise ValueError(f"{geometry.name} has no translations (positions live on a sphere or in a ball)")
    return transform(z, geometry, g, select=select)


def rotate(
    z: Latents,
    geometry: Geometry,
    angle: float | Tensor,
    *,
    center: Sequence[float] | Tensor | None = None,
    select: Selection = None,
) -> Latents:
    """Rotate the selected latents by ``angle`` (radians, counter-clockwise) about ``center`` (default: their
    centroid): positions and orientation vectors turn together. Planar geometries only."""
    _planar(geometry, "rotate")
    if center is None:
        center = selection_centroid(z, geometry, select=select)
    g = planar_motion(angle=angle, center=center, batch_size=z.batch_size, dtype=z.dtype, device=z.device)
    if not geometry.translates:
        raise ValueError(f"{geometry.name} cannot rotate about a centre (it has no translations)")
    return transform(z, geometry, g, select=select)


def scale(
    z: Latents,
    geometry: Geometry,
    factor: float,
    *,
    center: Sequence[float] | Tensor | None = None,
    select: Selection = None,
) -> Latents:
    """Spread the selected latents by ``factor`` about ``center`` (default: their centroid) and widen their windows
    by the same factor. Not a symmetry of any geometry here: the decoded part grows approximately."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be a finite number > 0, got {factor!r}")
    if not geometry.translates:
        raise ValueError(f"{geometry.name} has no translations; scaling positions would leave the domain")
    mask = selection_mask(z, select)
    dim = geometry.position_dim
    c = (
        selection_centroid(z, geometry, select=mask)
        if center is None
        else torch.as_tensor(center, dtype=z.dtype, device=z.device).expand(z.batch_size, dim)
    )
    q = z.poses[..., :dim]
    q_new = c.unsqueeze(1) + factor * geometry.relative_position(c.unsqueeze(1), q)
    if geometry.periodic:
        q_new = geometry.relative_position(torch.zeros_like(q_new), q_new)  # back into [-1, 1)
    poses = torch.cat([q_new, z.poses[..., dim:]], dim=-1)
    return check_latents(
        z.replace(poses=_where(mask, poses, z.poses), window=_where(mask, z.window * factor, z.window))
    )


def _gather(z: Latents, mask: Tensor, what: str) -> Latents:
    """The latents of ``mask [B, L]`` as a cloud ``[B, K, dim]`` (the same count ``K`` in every entry)."""
    counts = mask.sum(-1)
    if (counts != counts[0]).any():
        raise ValueError(
            f"{what} needs the same number of selected latents in every batch entry, got {counts.tolist()}"
        )
    k = int(counts[0])
    return z.map(lambda t: t[mask].reshape(z.batch_size, k, t.shape[-1]))


def _concat(a: Latents, b: Latents) -> Latents:
    if a.batch_size != b.batch_size:
        raise ValueError(f"the clouds have different batch sizes, {a.batch_size} and {b.batch_size}")
    for name in ("poses", "context"):
        wa, wb = getattr(a, name).shape[-1], getattr(b, name).shape[-1]
        if wa != wb:
            raise ValueError(
                f"the clouds' {name} widths differ ({wa} and {wb}): they come from different models"
            )
    return a.map2(lambda x, y: torch.cat([x, y.to(x)], dim=1), b)


def delete(z: Latents, *, select: Selection) -> Latents:
    """Remove the selected latents (the same number in every batch entry). Deleting all of them is refused."""
    _check_flat(z, "delete")
    if select is None:
        raise ValueError("delete needs an explicit selection (select=None would delete every latent)")
    mask = selection_mask(z, select)
    if mask.all(-1).any():
        raise ValueError(
            "delete would remove every latent of a cloud; a field needs at least one latent point"
        )
    return check_latents(_gather(z, ~mask, "delete"))


def duplicate(z: Latents, geometry: Geometry, *, select: Selection, g: GroupElement | None = None) -> Latents:
    """Append copies of the selected latents, moved by ``g`` if given (e.g. a :func:`planar_motion`)."""
    mask = selection_mask(z, select)
    copies = _gather(z, mask, "duplicate")
    if g is not None:
        copies = copies.transform(geometry, g)
    return check_latents(_concat(z, copies))


def copy_context(z: Latents, *, source: int, select: Selection) -> Latents:
    """Give the selected latents the context vector (and window) of latent ``source``; poses stay."""
    _check_flat(z, "copy_context")
    num = z.num_latents
    if not -num <= source < num:
        raise IndexError(f"source latent {source} out of range for {num} latents")
    mask = selection_mask(z, select)
    ctx = z.context[:, source : source + 1].expand_as(z.context)
    win = z.window[:, source : source + 1].expand_as(z.window)
    return check_latents(z.replace(context=_where(mask, ctx, z.context), window=_where(mask, win, z.window)))


def paste(
    z: Latents, other: Latents, geometry: Geometry, *, select: Selection, g: GroupElement | None = None
) -> Latents:
    """Append the latents of ``other`` selected by ``select`` to ``z`` (moved by ``g`` if given).

    Both clouds must come from the same model (same pose and context widths) and batch size.
    """
    _check_flat(other, "paste")
    part = _gather(other, selection_mask(other, select), "paste")
    if g is not None:
        part = part.transform(geometry, g)
    return check_latents(_concat(z, part))


def swap(a: Latents, b: Latents, *, select_a: Selection, select_b: Selection) -> tuple[Latents, Latents]:
    """Exchange parts of two clouds: ``a`` keeps its unselected latents and receives ``b``'s selected ones, and
    vice versa. Returns ``(a', b')``; their sizes change when the selections differ in size."""
    mask_a, mask_b = selection_mask(a, select_a), selection_mask(b, select_b)
    part_a, part_b = _gather(a, mask_a, "swap"), _gather(b, mask_b, "swap")
    keep_a, keep_b = _gather(a, ~mask_a, "swap"), _gather(b, ~mask_b, "swap")
    return check_latents(_concat(keep_a, part_b)), check_latents(_concat(keep_b, part_a))
