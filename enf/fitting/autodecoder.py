"""Plain auto-decoding: one latent per training signal in a table, and test-time optimisation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from enf.fitting.adam import optimise_latents
from enf.fitting.base import Decoder, Fitter, Loss, check_count, check_observations
from enf.geometry import Geometry
from enf.latents import Latents, initial_latents
from enf.metrics import per_sample_mse

__all__ = ["AutoDecoder", "AutoDecoderTable", "optimise_latents"]


def _check_window(window: float | None) -> None:
    if window is not None and not (isinstance(window, int | float) and window > 0 and math.isfinite(window)):
        raise ValueError(
            f"window must be None (geometry default) or a positive finite number, got {window!r}"
        )


class AutoDecoderTable(nn.Module):
    """A learnable latent per training signal, initialised from the geometry's initial latent.

    Args:
        geometry: geometry of the poses.
        num_signals: number of training signals (table rows, >= 1).
        num_latents: latent points per signal (>= 1).
        context_dim: context width (>= 1).
        window: initial window (``None``: geometry default; otherwise > 0).
        learn_window: train the windows too.
    """

    def __init__(
        self,
        *,
        geometry: Geometry,
        num_signals: int,
        num_latents: int,
        context_dim: int,
        window: float | None = None,
        learn_window: bool = False,
    ) -> None:
        super().__init__()
        check_count("num_signals", num_signals, minimum=1)
        check_count("num_latents", num_latents, minimum=1)
        check_count("context_dim", context_dim, minimum=1)
        _check_window(window)
        z0 = initial_latents(
            geometry,
            num_latents=num_latents,
            context_dim=context_dim,
            window=window,
            dtype=torch.get_default_dtype(),
        )
        z = z0.expand(num_signals)
        self.num_signals = num_signals
        self.poses = nn.Parameter(z.poses)
        self.context = nn.Parameter(z.context + 0.01 * torch.randn_like(z.context))
        self.window = nn.Parameter(z.window, requires_grad=learn_window)

    def forward(self, index: Tensor) -> Latents:
        """Latents of the signals ``index [B]`` (integer positions in the training split)."""
        if not isinstance(index, torch.Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
            what = index.dtype if isinstance(index, torch.Tensor) else type(index).__name__
            raise TypeError(f"AutoDecoder index must be an integer tensor [B] of table rows, got {what}")
        if index.min() < 0 or index.max() >= self.num_signals:
            raise ValueError(f"index out of range [0, {self.num_signals}): {index.tolist()}")
        return Latents(poses=self.poses[index], context=self.context[index], window=self.window[index])

    def mean(self) -> Latents:
        """The table's mean latent, a batch of 1 (start point for test-time optimisation)."""
        return Latents(
            poses=self.poses.mean(0, keepdim=True),
            context=self.context.mean(0, keepdim=True),
            window=self.window.mean(0, keepdim=True),
        )


class AutoDecoder(Fitter):
    """Auto-decoding fitter: a latent table for the training signals, equivariant Adam for unseen ones.

    Training (``encode(..., train=True)``) returns the table rows ``index``; test-time encoding
    (``train=False``) runs :func:`~enf.fitting.adam.optimise_latents` (pose-block-shared Adam moments, so
    equivariant) from the table's mean latent. Constructed without a geometry it is bound later with
    ``bind(geometry=..., context_dim=..., num_signals=...)`` (``num_signals >= 1``, the table rows).

    Args:
        num_latents: latent points per signal (>= 1).
        window: initial window (``None``: geometry default).
        learn_window: train the windows (and fit them at test time).
        test_steps: Adam steps of test-time encoding (>= 0).
        test_lr: Adam step size of test-time encoding (> 0).
        geometry, context_dim, num_signals: bind immediately when all three are given.
    """

    uses_num_signals = True

    def __init__(
        self,
        *,
        num_latents: int,
        window: float | None = None,
        learn_window: bool = False,
        test_steps: int = 200,
        test_lr: float = 1e-2,
        geometry: Geometry | str | None = None,
        context_dim: int | None = None,
        num_signals: int | None = None,
    ) -> None:
        super().__init__(num_latents=num_latents)
        _check_window(window)
        check_count("test_steps", test_steps, minimum=0)
        if not (isinstance(test_lr, int | float) and test_lr > 0):
            raise ValueError(f"test_lr must be > 0, got {test_lr!r}")
        self.window = window
        self.learn_window = learn_window
        self.test_steps = test_steps
        self.test_lr = float(test_lr)
        self.table: AutoDecoderTable | None = None
        given = [v is not None for v in (geometry, context_dim, num_signals)]
        if all(given):
            self.bind(geometry=geometry, context_dim=context_dim, num_signals=num_signals)
        elif any(given):
            raise ValueError(
                "pass all of geometry, context_dim and num_signals to bind at construction, or none of them "
                f"(got geometry={geometry!r}, context_dim={context_dim!r}, num_signals={num_signals!r})"
            )

    def _build(self, *, geometry: Geometry, context_dim: int, num_signals: int) -> None:
        if num_signals < 1:
            raise ValueError(
                f"AutoDecoder needs num_signals >= 1 (one table row per training signal), got {num_signals}; "
                "bind it with the size of the training split (the CLI links it from the data module)"
            )
        self.table = AutoDecoderTable(
            geometry=geometry,
            num_signals=num_signals,
            num_latents=self.num_latents,
            context_dim=context_dim,
            window=self.window,
            learn_window=self.learn_window,
        )

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
        """Table rows ``index`` (``train=True``; ``loss``, ``subset_size``, ``num_steps`` and ``mask`` play no
        part), or test-time encoding of ``signal [B, N, C]`` from the table mean with ``num_steps``
        (default ``test_steps``) Adam steps on the (``mask``-ed) points, or on ``subset_size`` random ones per
        step (seeded: deterministic) (``train=False``; detached). ``refine`` plays no part: the test-time
        encoding is an optimisation already."""
        geometry = self._require_bound("encode")
        check_observations(coords, signal)
        if train:
            if index is None:
                raise ValueError("AutoDecoder.encode(train=True) needs index [B]: the signals' table rows")
            if index.shape != coords.shape[:1]:
                raise ValueError(f"index must be [B] = ({coords.shape[0]},), got {tuple(index.shape)}")
            return self.table(index)
        check_count("num_steps", num_steps, minimum=0, optional=True)
        init = self.table.mean().detach().expand(coords.shape[0])
        return optimise_latents(
            decoder,
            coords,
            signal,
            init.to(dtype=coords.dtype, device=coords.device),
            num_steps=self.test_steps if num_steps is None else num_steps,
            lr=self.test_lr,
            learn_window=self.learn_window,
            loss=loss,
            mask=mask,
            geometry=geometry,
            subset_size=subset_size,
            generator=torch.Generator().manual_seed(0),
        )
