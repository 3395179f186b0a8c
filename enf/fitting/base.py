"""The fitter protocol shared by Meta-SGD and auto-decoding, argument checks, and per-sample losses.

A fitter is built from its own settings only (e.g. through a jsonargparse ``class_path`` config) and is
bound later to the decoder's geometry and context width with :meth:`Fitter.bind`, which creates its
parameters. See :mod:`enf.fitting` for the protocol.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.geometry import get as get_geometry
from enf.latents import Latents
from enf.metrics import per_sample_mse

__all__ = ["Decoder", "Fitter", "Loss", "check_count", "per_sample_loss"]

#: ``decoder(coords [B, N, coord_dim], latents) -> [B, N, C]``.
Decoder = Callable[[Tensor, Latents], Tensor]
#: A per-sample loss ``loss(pred [B, N, C], target [B, N, C]) -> [B]``.
Loss = Callable[[Tensor, Tensor], Tensor]


def check_count(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    """``TypeError`` unless ``value`` is an ``int`` (or ``None`` when ``optional``); ``ValueError`` below
    ``minimum``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_observations(coords: object, signal: object) -> None:
    """``TypeError``/``ValueError`` unless ``coords [B, N, d]`` and ``signal [B, N, C]`` are finite tensors."""
    for name, value in (("coords", coords), ("signal", signal)):
        if not isinstance(value, Tensor):
            hint = f" (torch.from_numpy({name}))" if type(value).__module__ == "numpy" else ""
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")
    if coords.dim() != 3 or signal.dim() != 3 or coords.shape[:2] != signal.shape[:2]:
        raise ValueError(
            f"coords [B, N, coord_dim] and signal [B, N, C] must agree, got {tuple(coords.shape)} "
            f"and {tuple(signal.shape)}"
        )
    if not torch.isfinite(signal).all():
        raise ValueError("signal contains NaN or inf: fit finite observations (mask out missing points)")


def per_sample_loss(loss: Loss, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``loss(pred, target)`` checked to be one value per sample, ``[B]``.

    With ``mask [B, N]`` (bool, observed points) the loss of sample ``b`` is ``loss`` on its observed points
    only, ``loss(pred[b:b+1, mask[b]], target[b:b+1, mask[b]])`` - exact for any per-sample loss, and the
    unobserved points get no gradient.
    """
    b = pred.shape[0]
    if mask is None:
        value = loss(pred, target)
    else:
        value = torch.cat([loss(pred[i : i + 1, mask[i]], target[i : i + 1, mask[i]]) for i in range(b)])
    if not isinstance(value, Tensor) or value.shape != (b,):
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        name = getattr(loss, "__name__", repr(loss))
        raise ValueError(
            f"loss {name} must return one value per sample, shape ({b},), got {shape}; use a per-sample "
            "loss such as enf.metrics.per_sample_mse (reduce over points and channels, not the batch)"
        )
    return value


def _geometry_key(geometry: Geometry) -> tuple:
    return (type(geometry), geometry.name, sorted(vars(geometry).items()))


class Fitter(nn.Module, abc.ABC):
    """Base class of the fitters: how the latents of a batch of signals are obtained.

    Subclasses implement :meth:`_build` (create the parameters once the geometry and context width are
    known) and :meth:`encode`. ``num_signals`` enters the binding only when :attr:`uses_num_signals`.

    Args:
        num_latents: latent points per signal ``L`` (>= 1).
    """

    #: whether :meth:`bind` needs and records ``num_signals`` (an auto-decoder table does).
    uses_num_signals: bool = False

    def __init__(self, *, num_latents: int) -> None:
        super().__init__()
        check_count("num_latents", num_latents, minimum=1)
        self.num_latents = num_latents
        self.geometry: Geometry | None = None
        self.context_dim: int | None = None
        self._binding: tuple | None = None

    @property
    def is_bound(self) -> bool:
        """Whether :meth:`bind` has created the parameters."""
        return self._binding is not None

    def bind(self, *, geometry: Geometry | str, context_dim: int, num_signals: int = 0) -> Fitter:
        """Create the parameters for ``geometry`` and ``context_dim`` (and ``num_signals`` if used); ``self``.

        Binding again with the same values is a no-op; with different values it raises ``ValueError``.
        """
        geometry = get_geometry(geometry)
        check_count("context_dim", context_dim, minimum=1)
        check_count("num_signals", num_signals, minimum=0)
        key = (_geometry_key(geometry), context_dim, num_signals if self.uses_num_signals else None)
        if self._binding is not None:
            if key != self._binding:
                bound = f"geometry={self.geometry.name!r}, context_dim={self.context_dim}"
                asked = f"geometry={geometry.name!r}, context_dim={context_dim}"
                if self.uses_num_signals:
                    bound += f", num_signals={self._binding[2]}"
                    asked += f", num_signals={num_signals}"
                raise ValueError(
                    f"{type(self).__name__} is already bound to {bound}; cannot bind it to {asked} "
                    "(build a new fitter instead)"
                )
            return self
        self._build(geometry=geometry, context_dim=context_dim, num_signals=num_signals)
        self.geometry = geometry
        self.context_dim = context_dim
        self._binding = key
        return self

    def _require_bound(self, what: str) -> Geometry:
        if self._binding is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what} needs a bound fitter: call "
                "fitter.bind(geometry=..., context_dim=..., num_signals=...) first (the training module does "
                "this with its decoder's settings), or pass geometry and context_dim to the constructor"
            )
        return self.geometry

    @abc.abstractmethod
    def _build(self, *, geometry: Geometry, context_dim: int, num_signals: int) -> None:
        """Create the parameters (called once, by :meth:`bind`)."""

    @abc.abstractmethod
    def encode(
        self,
        decoder: Decoder,
        coords: Tensor,
        signal: Tensor,
        *,
        index: Tensor | None = None,
        train: bool,
        loss: Loss = per_sample_mse,
        subset_size: int | None = None,
        num_steps: int | None = None,
        mask: Tensor | None = None,
        refine: bool = True,
    ) -> Latents:
        """Latents ``[B, L, ...]`` of ``signal [B, N, C]`` observed at ``coords [B, N, coord_dim]``.

        Args:
            decoder: ``decoder(coords, latents) -> [B, N, C]``.
            index: ``[B]`` positions of the signals in the training split (auto-decoding, ``train=True``).
            train: ``True``: the differentiable training-time latents; ``False``: test-time encoding of
                unseen signals (detached result).
            loss: per-sample loss ``(pred, target) -> [B]`` of the fit.
            subset_size: random coordinates per inner step (training only; ``None``: all).
            num_steps: fitting steps (``None``: the fitter's setting).
            mask: ``[B, N]`` bool, observed points; only they enter the fit.
            refine: run the fitter's test-time refinement, if it has one (``MetaSGD(num_refine_steps=...)``);
                ``False`` gives the cheaper unrefined encoding (e.g. for validation during training).
        """
