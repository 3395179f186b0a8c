"""Learned inner-loop step sizes of :class:`~enf.fitting.MetaSGD`, squashed into ``lr_bounds`` in log space.

``eta = exp(log low + (log high - log low) sigmoid(raw))`` from an unconstrained raw parameter, so the
outer-loop gradient of a step size never vanishes (a clamp would zero it for good once a step size left its
bounds).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["squash_step_size", "unsquash_step_size"]

#: initial step sizes at (or beyond) a bound start this far inside it, as a fraction of the log range.
_EDGE = 1e-6


def squash_step_size(raw: Tensor, bounds: tuple[float, float]) -> Tensor:
    """``exp(log lo + (log hi - log lo) sigmoid(raw))``, in ``(lo, hi)`` for every finite ``raw``.

    ``sigmoid`` is evaluated as ``1 - sigmoid(-raw)`` for ``raw >= 0`` so that its derivative keeps full
    relative precision in both tails (``torch.sigmoid``'s backward ``y (1 - y)`` rounds to 0 once
    ``y == 1``): the gradient stays positive up to ``|raw| ~ 87`` in float32.
    """
    log_lo, log_hi = math.log(bounds[0]), math.log(bounds[1])
    s = torch.where(raw >= 0, 1.0 - torch.sigmoid(-raw), torch.sigmoid(raw))
    return torch.exp(log_lo + (log_hi - log_lo) * s)


def unsquash_step_size(value: float, bounds: tuple[float, float]) -> float:
    """The raw parameter whose :func:`squash_step_size` is ``value`` (values outside are moved just inside)."""
    log_lo, log_hi = math.log(bounds[0]), math.log(bounds[1])
    frac = (math.log(max(value, bounds[0])) - log_lo) / (log_hi - log_lo)
    frac = min(max(frac, _EDGE), 1.0 - _EDGE)
    return math.log(frac) - math.log1p(-frac)
