"""Meta-SGD auto-decoding: a few learned-step-size gradient steps from a shared initial latent (DESIGN.md section 6).

Inner step, per sample ``b``::

    z_b <- z_b - eta * grad_{z_b} L_b(z_b; random coordinate subset)

with ``L_b`` a per-sample loss (default the mean squared error, so the batch size never shrinks the step)
and ``eta`` made of learned positive step sizes: one for positions, one for orientation vectors, one per
context channel and one for the window. Scalar step sizes on each pose block commute with the group
action, so the fit is equivariant: fitting the transformed signal from the transformed initial latent gives
the transformed latents.

Step sizes are squashed smoothly into ``lr_bounds = (low, high)`` in log space,
``eta = exp(log low + (log high - log low) sigmoid(raw))``, from unconstrained raw parameters, so their
outer-loop gradient never vanishes (a clamp would zero it for good once a step size left its bounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from enf.fitting.adam import optimise_latents
from enf.fitting.base import Decoder, Fitter, Loss, check_count, check_observations, per_sample_loss
from enf.fitting.moments import check_posable, moment_frame, pose_latents
from enf.fitting.observed import (
    check_mask,
    index_mask,
    sample_coordinate_subsets,
    sample_observed_subsets,
    select_points,
)
from enf.fitting.step_sizes import squash_step_size, unsquash_step_size
from enf.geometry import Geometry
from enf.latents import Latents, initial_latents
from enf.metrics import per_sample_mse

__all__ = ["INIT_FRAMES", "MetaSGD", "sample_coordinate_subsets", "squash_step_size", "unsquash_step_size"]

#: how the initial latent of a fit is placed (see ``MetaSGD(init_frame=...)``).
INIT_FRAMES = ("shared", "moments")


class MetaSGD(Fitter):
    """Shared initial latent and learned inner-loop step sizes.

    Constructed without ``geometry``/``context_dim`` it is bound later with
    ``bind(geometry=..., context_dim=...)`` (``num_signals`` is ignored), which creates the parameters;
    with both given it binds at once.

    Parameters (after binding): ``init_poses [1, L, pose_dim]``, ``init_context [1, L, context_dim]``,
    ``init_window [1, L, 1]`` (the shared initial latent) and the **raw** step-size parameters
    ``lr_position [*lead, 1]``, ``lr_orientation [*lead, 1]``, ``lr_context [*lead, context_dim]``,
    ``lr_window [*lead, 1]`` with ``lead = [K]`` (``per_step_lr``) ``+ [L]`` (``per_latent_lr``), empty by
    default: unconstrained reals, mapped to step sizes by :func:`squash_step_size`; read the step sizes with
    :meth:`step_sizes`, not from these tensors.

    Step sizes are never per pose *coordinate*: one scalar per pose block (per step and per latent if asked)
    is what commutes with rotations; a step size per coordinate would break the equivariance of the fit.

    Args:
        num_latents: number of latent points ``L`` (>= 1).
        geometry: the geometry of the poses (``None``: bind later).
        context_dim: width of the context vectors (``None``: bind later).
        num_inner_steps: inner gradient steps ``K`` in training (>= 0).
        num_eval_steps: inner steps of test-time encoding (``None``: ``num_inner_steps``).
        lr_position: initial step size of the position block of the poses; ``0`` freezes the positions
            in the inner loop (the published shallow-water and ball setups).
        lr_orientation: initial step size of the orientation blocks (ignored for position-only poses);
            ``0`` freezes the orientations.
        lr_context: initial step size of every context channel.
        lr_window: initial step size of the window; ``0`` freezes the window in the inner loop.
        lr_bounds: step sizes stay inside this positive range (``0 < low < high``); initial values are
            clipped into it.
        learn_lr: learn the step sizes in the outer loop.
        learn_init: learn the initial latent (poses, context, window) in the outer loop.
        per_step_lr: one set of step sizes per inner step (Meta-SGD per step); test-time steps beyond
            ``num_inner_steps`` reuse the last step's.
        per_latent_lr: one set of step sizes per latent point (and per context channel, per pose block).
        window: initial window width (``None``: ``geometry.default_window``; otherwise > 0).
        min_window: windows are clamped from below after each step (> 0).
        first_order: drop second-order terms (no graph through the inner gradients).
        init_context: constant initial context.
        init_frame: ``"shared"``: every fit starts from the shared initial latent; ``"moments"``: the shared
            initial latent is first posed by the signal's intensity-moment frame
            (:func:`~enf.fitting.moments.moment_frame`), so that encoding a rotated or translated signal
            gives the rotated or translated latents (rotation-equivariant geometries only: se2,
            isotropic2d, se3).
        num_refine_steps: test-time refinement: after the ``num_eval_steps`` Meta-SGD steps, this many
            steps of :func:`~enf.fitting.adam.optimise_latents` (pose-block-shared Adam moments, so the
            fit stays equivariant; cosine step-size decay) on the same points, poses and context (and the
            window if the inner loop fits it). Only ``encode(train=False, refine=True)`` runs them; the
            outer loop never sees them. ``0``: none.
        refine_lr: initial Adam step size of the refinement.
    """

    def __init__(
        self,
        *,
        num_latents: int,
        geometry: Geometry | str | None = None,
        context_dim: int | None = None,
        num_inner_steps: int = 3,
        num_eval_steps: int | None = None,
        lr_position: float = 0.1,
        lr_orientation: float = 0.1,
        lr_context: float = 5.0,
        lr_window: float = 0.0,
        lr_bounds: tuple[float, float] = (1e-6, 100.0),
        learn_lr: bool = True,
        learn_init: bool = True,
        per_step_lr: bool = False,
        per_latent_lr: bool = False,
        window: float | None = None,
        min_window: float = 1e-3,
        first_order: bool = False,
        init_context: float = 1.0,
        init_frame: str = "shared",
        num_refine_steps: int = 0,
        refine_lr: float = 1e-2,
    ) -> None:
        super().__init__(num_latents=num_latents)
        if init_frame not in INIT_FRAMES:
            raise ValueError(f"init_frame must be one of {INIT_FRAMES}, got {init_frame!r}")
        self.init_frame = init_frame
        lo, hi = lr_bounds
        if not 0 < lo < hi:
            raise ValueError(f"lr_bounds must satisfy 0 < low < high, got {lr_bounds}")
        check_count("num_inner_steps", num_inner_steps, minimum=0)
        check_count("num_eval_steps", num_eval_steps, minimum=0, optional=True)
        if window is not None and not (window > 0 and math.isfinite(window)):
            raise ValueError(
                f"window must be None (geometry default) or a positive finite number, got {window}"
            )
        if not min_window > 0:
            raise ValueError(f"min_window must be > 0, got {min_window}")
        check_count("num_refine_steps", num_refine_steps, minimum=0)
        if not (refine_lr > 0 and math.isfinite(refine_lr)):
            raise ValueError(f"refine_lr must be a positive finite number, got {refine_lr}")
        if num_refine_steps > 0 and (lr_position <= 0 or lr_orientation <= 0):
            raise ValueError(
                f"num_refine_steps={num_refine_steps} refines every pose block, but the inner loop freezes "
                f"some (lr_position={lr_position}, lr_orientation={lr_orientation}); "
                "use num_refine_steps=0 or non-zero pose step sizes"
            )
        if per_step_lr and num_inner_steps < 1:
            raise ValueError("per_step_lr needs num_inner_steps >= 1 (one step size per inner step)")
        self.per_step_lr = bool(per_step_lr)
        self.per_latent_lr = bool(per_latent_lr)
        self.num_refine_steps = num_refine_steps
        self.refine_lr = float(refine_lr)
        self.num_inner_steps = num_inner_steps
        self.num_eval_steps = num_eval_steps
        self.lr_bounds = (float(lo), float(hi))
        self.first_order = first_order
        self.min_window = min_window
        self.freeze_window = lr_window <= 0
        self.freeze_position = lr_position <= 0
        self.freeze_orientation = lr_orientation <= 0
        self._settings = dict(
            lr_position=lr_position,
            lr_orientation=lr_orientation,
            lr_context=lr_context,
            lr_window=lr_window,
            learn_lr=learn_lr,
            learn_init=learn_init,
            window=window,
            init_context=init_context,
        )
        if (geometry is None) != (context_dim is None):
            raise ValueError(
                "pass both geometry and context_dim to bind at construction, or neither "
                f"(got geometry={geometry!r}, context_dim={context_dim!r})"
            )
        if geometry is not None:
            self.bind(geometry=geometry, context_dim=context_dim)

    def _build(self, *, geometry: Geometry, context_dim: int, num_signals: int) -> None:
        cfg = self._settings
        if self.init_frame == "moments":
            check_posable(geometry)
        z0 = initial_latents(
            geometry,
            num_latents=self.num_latents,
            context_dim=context_dim,
            window=cfg["window"],
            context_init=cfg["init_context"],
            dtype=torch.get_default_dtype(),
        )
        learn_init, learn_lr = cfg["learn_init"], cfg["learn_lr"]
        self.init_poses = nn.Parameter(z0.poses, requires_grad=learn_init)
        self.init_context = nn.Parameter(z0.context, requires_grad=learn_init)
        self.init_window = nn.Parameter(z0.window, requires_grad=learn_init)

        lead = ([self.num_inner_steps] if self.per_step_lr else []) + (
            [self.num_latents] if self.per_latent_lr else []
        )

        def lr_param(value: float, size: int) -> nn.Parameter:
            raw = torch.full(
                (*lead, size), unsquash_step_size(float(value), self.lr_bounds), dtype=torch.float64
            )
            return nn.Parameter(raw.to(torch.get_default_dtype()), requires_grad=learn_lr)

        self.lr_position = lr_param(cfg["lr_position"], 1)
        self.lr_orientation = lr_param(cfg["lr_orientation"], 1)
        self.lr_context = lr_param(cfg["lr_context"], context_dim)
        self.lr_window = lr_param(cfg["lr_window"], 1)
        if self.freeze_window:
            self.lr_window.requires_grad_(False)
        if self.freeze_position:
            self.lr_position.requires_grad_(False)
        if self.freeze_orientation:
            self.lr_orientation.requires_grad_(False)
        if geometry.pose_dim == geometry.position_dim:  # no orientation block: the step size is unused
            self.lr_orientation.requires_grad_(False)

    def initial(self, batch_size: int) -> Latents:
        """The shared initial latent repeated ``batch_size`` times (differentiable w.r.t. the init).

        The learned initial window is clamped to ``min_window`` like every inner-loop window: an outer step that
        pushes it to zero or below (a large ``lr``) leaves a narrow but valid window instead of stopping the fit.
        """
        self._require_bound("initial")
        expand = (batch_size, -1, -1)
        return Latents(
            poses=self.init_poses.expand(*expand),
            context=self.init_context.expand(*expand),
            window=self.init_window.clamp_min(self.min_window).expand(*expand),
        )

    def step_sizes(self, step: int | None = None) -> dict[str, Tensor]:
        """Step sizes in ``lr_bounds``: ``poses [*lead, pose_dim]``, ``context [*lead, context_dim]``,
        ``window [*lead, 1]``, broadcastable against latents ``[B, L, dim]``.

        ``lead`` is ``[L]`` with ``per_latent_lr``, else empty. With ``per_step_lr``, ``step`` picks inner
        step ``min(step, num_inner_steps - 1)``; ``step=None`` returns every step (a leading ``[K]`` axis).
        The position step size fills the position block, the orientation step size every orientation
        block (:attr:`~enf.geometry.Geometry.pose_blocks`).
        """
        geom = self._require_bound("step_sizes")
        if step is not None and step < 0:
            raise ValueError(f"step must be None or >= 0, got {step}")
        bounds = self.lr_bounds

        def pick(raw: Tensor) -> Tensor:
            if self.per_step_lr and step is not None:
                raw = raw[min(step, self.num_inner_steps - 1)]
            return squash_step_size(raw, bounds)

        pos, ori = pick(self.lr_position), pick(self.lr_orientation)
        pos = pos.expand(*pos.shape[:-1], geom.position_dim)
        ori = ori.expand(*ori.shape[:-1], geom.pose_dim - geom.position_dim)
        if self.freeze_position:  # frozen blocks take no inner step
            pos = torch.zeros_like(pos)
        if self.freeze_orientation:
            ori = torch.zeros_like(ori)
        return {
            "poses": torch.cat([pos, ori], dim=-1),
            "context": pick(self.lr_context),
            "window": pick(self.lr_window),
        }

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
        """The fitter protocol (:class:`~enf.fitting.base.Fitter`); ``index`` plays no part.

        ``train=True``: :meth:`forward` with ``subset_size`` random (observed) coordinates per step and
        ``num_steps`` (default ``num_inner_steps``), graph kept unless first order. ``train=False``:
        ``num_steps`` (default ``num_eval_steps``, else ``num_inner_steps``) steps on all observed points,
        or on ``subset_size`` random ones per step (from a generator seeded 0: the encoding is
        deterministic), no graph through the inner gradients, detached result; then, with ``refine``, the
        ``num_refine_steps`` Adam steps of the test-time refinement (the same subset rule).
        """
        if train:
            return self(
                decoder, coords, signal, num_steps=num_steps, subset_size=subset_size, loss=loss, mask=mask
            )
        if num_steps is None:
            num_steps = self.num_inner_steps if self.num_eval_steps is None else self.num_eval_steps
        gen = torch.Generator().manual_seed(0)
        fit = self(
            decoder, coords, signal, num_steps=num_steps, subset_size=subset_size, generator=gen, loss=loss,
            mask=mask, create_graph=False,
        )  # fmt: skip
        if refine and self.num_refine_steps > 0:
            return self.refine(
                decoder, coords, signal, fit, loss=loss, mask=mask, subset_size=subset_size, generator=gen
            )
        return fit.detach()

    def refine(
        self,
        decoder: Decoder,
        coords: Tensor,
        signal: Tensor,
        init: Latents,
        *,
        loss: Loss = per_sample_mse,
        mask: Tensor | None = None,
        subset_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Latents:
        """The test-time refinement from ``init``: ``num_refine_steps`` steps of
        :func:`~enf.fitting.adam.optimise_latents` (cosine-decayed ``refine_lr``, pose-block Adam moments;
        the window too where the inner loop fits it). Detached result (a detached copy of ``init`` for 0 steps)."""
        self._require_bound("refine")
        return optimise_latents(
            decoder,
            coords,
            signal,
            init,
            num_steps=self.num_refine_steps,
            lr=self.refine_lr,
            lr_schedule="cosine",
            learn_window=not self.freeze_window,
            min_window=self.min_window,
            loss=loss,
            mask=mask,
            geometry=self.geometry,
            subset_size=subset_size,
            generator=generator,
        )

    def forward(
        self,
        decoder: Decoder,
        coords: Tensor,
        signal: Tensor,
        *,
        num_steps: int | None = None,
        subset_size: int | None = None,
        subsets: Sequence[Tensor | None] | None = None,
        init: Latents | None = None,
        generator: torch.Generator | None = None,
        create_graph: bool | None = None,
        loss: Loss = per_sample_mse,
        mask: Tensor | None = None,
    ) -> Latents:
        """Fit latents to ``signal [B, N, C]`` observed at ``coords [B, N, coord_dim]``.

        Args:
            decoder: ``decoder(coords, latents) -> [B, N, C]``.
            num_steps: inner steps (default ``num_inner_steps``; more at test time is allowed).
            subset_size: number of coordinates per inner step, drawn afresh each step (``None``: all).
                With a ``mask``: that many observed points per sample (fewer where fewer are observed).
            subsets: explicit index tensors shared by the batch, one per step (overrides ``subset_size``);
                with a ``mask`` only their observed points count.
            init: initial latents ``[B, ...]`` (default: the shared initial latent, posed by the signal's
                moment frame with ``init_frame="moments"``).
            create_graph: keep the graph through the inner gradients (default: ``not first_order`` when
                gradients are enabled).
            loss: per-sample loss ``(pred [B, n, C], target [B, n, C]) -> [B]`` of the inner steps.
            mask: ``[B, N]`` bool, observed points: only they enter the inner loss (gathered when every
                sample has as many, else the loss is evaluated per sample on its own points).

        Returns:
            the adapted latents (differentiable w.r.t. the init, step sizes and decoder unless first order).
        """
        self._require_bound("forward")
        check_observations(coords, signal)
        check_count("num_steps", num_steps, minimum=0, optional=True)
        check_count("subset_size", subset_size, minimum=1, optional=True)
        steps = self.num_inner_steps if num_steps is None else num_steps
        if mask is not None:
            check_mask(mask, coords)
        if subsets is None:
            if mask is None:
                subsets = sample_coordinate_subsets(
                    coords.shape[1], subset_size, steps, generator=generator, device=coords.device
                )
            else:
                subsets = sample_observed_subsets(mask, subset_size, steps, generator=generator)
        elif mask is not None:
            subsets = [check_mask(index_mask(idx, mask), coords, what="mask & subset") for idx in subsets]
        if len(subsets) != steps:
            raise ValueError(f"need one coordinate subset per inner step ({steps}), got {len(subsets)}")
        if create_graph is None:
            create_graph = (not self.first_order) and torch.is_grad_enabled()
        z = self.initial(coords.shape[0]) if init is None else init
        if init is None and self.init_frame == "moments":
            z = pose_latents(
                self.geometry, z, moment_frame(coords, signal, mask, proper=not self.geometry.reflections)
            )
        for step, sel in enumerate(subsets):
            x, y, m = select_points(coords, signal, sel)
            lr = self.step_sizes(step)
            z = self._step(decoder, x, y, m, z, lr, loss=loss, create_graph=create_graph)
        return z

    def _step(
        self,
        decoder: Decoder,
        x: Tensor,
        y: Tensor,
        mask: Tensor | None,
        z: Latents,
        lr: dict[str, Tensor],
        *,
        loss: Loss,
        create_graph: bool,
    ) -> Latents:
        with torch.enable_grad():
            leaves = [z.poses, z.context, z.window]
            leaves = [
                t if create_graph and t.requires_grad else t.detach().requires_grad_(True) for t in leaves
            ]
            zz = Latents(poses=leaves[0], context=leaves[1], window=leaves[2])
            pred = decoder(x, zz)
            total = per_sample_loss(loss, pred, y, mask).sum()  # sum over batch: per-sample gradients
            geom = self.geometry
            poses_frozen = self.freeze_position and (
                self.freeze_orientation or geom.pose_dim == geom.position_dim
            )
            wanted = ([] if poses_frozen else [0]) + [1] + ([] if self.freeze_window else [2])
            grads = torch.autograd.grad(
                total, [leaves[i] for i in wanted], create_graph=create_graph, allow_unused=True
            )
            # A latent part the decoder ignores (e.g. the window with use_window=False) gets a zero gradient.
            found = {
                i: (torch.zeros_like(leaves[i]) if gr is None else gr)
                for i, gr in zip(wanted, grads, strict=True)
            }
        g_poses = found.get(0, torch.zeros_like(leaves[0]))
        g_context = found[1]
        if not create_graph:
            # First order: the update is a constant offset; gradients flow to z and the step sizes only.
            g_poses, g_context = g_poses.detach(), g_context.detach()
        poses = z.poses - lr["poses"] * g_poses
        context = z.context - lr["context"] * g_context
        window = z.window
        if not self.freeze_window:
            g_window = found[2] if create_graph else found[2].detach()
            window = (z.window - lr["window"] * g_window).clamp_min(self.min_window)
        return Latents(poses=poses, context=context, window=window)
