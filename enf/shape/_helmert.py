"""The Helmert sub-matrix and the input checks shared by the Kendall shape-space code.

Convention (Dryden & Mardia, *Statistical Shape Analysis*, 2nd ed., section 2.5): for ``K`` landmarks the
Helmert sub-matrix ``H`` is ``[K-1, K]``; its row ``j`` (``j = 1 .. K-1``) is

    ``(-h_j, ..., -h_j, j h_j, 0, ..., 0)``  with ``h_j = 1 / sqrt(j (j + 1))``,

``-h_j`` repeated ``j`` times. The rows are orthonormal and orthogonal to the ones vector, so
``H 1 = 0``, ``H H^T = I_{K-1}`` and ``H^T H = I_K - 1 1^T / K`` (the centring matrix). It is the negative
of ``scipy.linalg.helmert(K)`` (which puts the positive entries first).

The checks run on detached values, so they never enter the autograd graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_configuration", "check_preshape", "helmert", "unit_tolerance"]

_DIMS = (2, 3)


def helmert(
    num_points: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Helmert sub-matrix ``[K-1, K]`` for ``K = num_points >= 2`` (convention in the module docstring).

    Built in float64 and cast to ``dtype`` (default: torch's default dtype) on ``device``.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int):
        raise TypeError(f"num_points must be an int, got {type(num_points).__name__}")
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2 (a shape needs at least two landmarks), got {num_points}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    j = torch.arange(1, num_points, dtype=torch.float64).unsqueeze(-1)  # [K-1, 1]
    cols = torch.arange(num_points, dtype=torch.float64).unsqueeze(0)  # [1, K]
    h = 1.0 / torch.sqrt(j * (j + 1.0))
    mat = torch.where(cols < j, -h, torch.zeros((), dtype=torch.float64))
    mat = mat + torch.where(cols == j, j * h, torch.zeros((), dtype=torch.float64))
    return mat.to(dtype=dtype, device=device)


def unit_tolerance(dtype: torch.dtype) -> float:
    """Tolerance on ``| |z| - 1 |`` accepted for a pre-shape: ``10 sqrt(eps)`` (1.5e-7 f64, 3.5e-3 f32)."""
    return 10.0 * float(torch.finfo(dtype).eps) ** 0.5


def _check_tensor(name: str, x: object, *, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float32/float64), got dtype {x.dtype}; cast it with .double()"
        )
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape {what}, got shape {tuple(x.shape)}")
    if x.shape[-1] not in _DIMS:
        raise ValueError(
            f"{name} must have d in {_DIMS} in its last dimension ({what}), got shape {tuple(x.shape)}"
        )
    with torch.no_grad():
        bad = ~torch.isfinite(x.detach())
        if bool(bad.any()):
            raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf entries; remove or impute them first")
    return x


def check_configuration(name: str, points: object) -> Tensor:
    """Validate a landmark configuration ``[..., K, d]`` (``K >= 2``, ``d`` in 2, 3, finite, not degenerate).

    Degenerate means the centred size is zero (all landmarks equal) relative to the coordinates' magnitude:
    ``|H x| <= 1000 eps max|x|``. Raises ValueError/TypeError naming ``name``.
    """
    x = _check_tensor(name, points, what="[..., K, d] (K landmarks in d = 2 or 3 dimensions)")
    if x.shape[-2] < 2:
        raise ValueError(f"{name} needs K >= 2 landmarks in dimension -2, got shape {tuple(x.shape)}")
    with torch.no_grad():
        xd = x.detach()
        centred = xd - xd.mean(dim=-2, keepdim=True)
        size = torch.linalg.vector_norm(centred, dim=(-2, -1))
        scale = xd.abs().amax(dim=(-2, -1))
        degenerate = size <= 1000.0 * float(torch.finfo(x.dtype).eps) * scale
        if bool(degenerate.any()):
            raise ValueError(
                f"{name} has {int(degenerate.sum())} degenerate configuration(s) of zero size (all landmarks "
                "equal): a shape needs at least two distinct landmarks"
            )
    return x


def check_preshape(name: str, z: object) -> Tensor:
    """Validate a pre-shape matrix ``[..., K-1, d]``: finite, ``d`` in 2, 3, unit Frobenius norm."""
    z = _check_tensor(name, z, what="[..., K-1, d] (a pre-shape matrix)")
    with torch.no_grad():
        norm = torch.linalg.vector_norm(z.detach(), dim=(-2, -1))
        off = (norm - 1.0).abs() > unit_tolerance(z.dtype)
        if bool(off.any()):
            raise ValueError(
                f"{name} must be pre-shapes of unit Frobenius norm, but {int(off.sum())} have norm(s) "
                f"{norm[off].flatten()[:4].tolist()}; map configurations with enf.shape.preshape_matrix first"
            )
    return z
