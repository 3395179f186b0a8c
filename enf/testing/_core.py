"""What the property checks share: tolerances, random group elements, error tables and the failure message."""

from __future__ import annotations

import torch
from torch import Tensor

from enf.geometry import Geometry, GroupElement
from enf.geometry import get as get_geometry

#: Default tolerances per dtype (``|actual - expected| <= atol + rtol * |expected|``).
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: dict(atol=1e-9, rtol=0.0),
    torch.float32: dict(atol=1e-4, rtol=1e-4),
}

_Pairs = list[tuple[str, Tensor, Tensor]]


def sample_group_like(
    geometry: Geometry | str, batch_size: int, tensor: Tensor, generator: torch.Generator | None = None
) -> GroupElement:
    """``batch_size`` random group elements with the dtype and device of ``tensor``."""
    geometry = get_geometry(geometry)
    return geometry.sample_group(batch_size, generator=generator, dtype=tensor.dtype, device=tensor.device)


def _tolerance(dtype: torch.dtype, atol: float | None, rtol: float | None) -> tuple[float, float]:
    if dtype in TOLERANCES:
        default = TOLERANCES[dtype]
    elif atol is not None:
        default = dict(atol=atol, rtol=0.0)
    else:
        raise ValueError(f"no default tolerance for dtype {dtype}; pass atol (known: {list(TOLERANCES)})")
    return (default["atol"] if atol is None else atol), (default["rtol"] if rtol is None else rtol)


def _max_error(pairs: _Pairs) -> float:
    """Largest absolute difference; ``inf`` if any entry is not finite."""
    worst = 0.0
    for _, actual, expected in pairs:
        if actual.numel() == 0:
            continue
        diff = (actual - expected).abs()
        worst = max(worst, float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf"))
    return worst


def _check(pairs: _Pairs, atol: float, rtol: float, what: str, *, worst: bool = False) -> None:
    """Raise on the first failing pair (``worst``: on the one with the largest error, counting failures)."""
    failing = []
    for name, actual, expected in pairs:
        diff = (actual - expected).abs()
        bad = ~(diff <= atol + rtol * expected.abs())  # NaN counts as a failure
        if bool(bad.any()):
            rank = float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf")
            failing.append((rank, float(diff.max()), name, int(bad.sum()), bad.numel()))
            if not worst:
                break
    if failing:
        _, error, name, num_bad, num = max(failing, key=lambda f: f[0]) if worst else failing[0]
        count = f"; {len(failing)} of {len(pairs)} compared outputs fail" if worst else ""
        raise AssertionError(
            f"{what}: {name} differs by up to {error:.3e} "
            f"(tolerance atol={atol:g}, rtol={rtol:g}; {num_bad} of {num} entries fail{count})"
        )


def _tiled_inputs(
    geometry: Geometry,
    batch_size: int,
    num_coords: int,
    num_latents: int,
    num_elements: int,
    dtype,
    generator,
) -> tuple[Tensor, Tensor, GroupElement]:
    """Random coords/poses for ``batch_size`` entries, each repeated for ``num_elements`` group elements."""
    x = geometry.sample_coords(batch_size, num_coords, generator=generator, dtype=dtype)
    p = geometry.sample_poses(batch_size, num_latents, generator=generator, dtype=dtype)
    total = batch_size * num_elements
    g = geometry.sample_group(total, generator=generator, dtype=dtype)
    return x.repeat(num_elements, 1, 1), p.repeat(num_elements, 1, 1), g
