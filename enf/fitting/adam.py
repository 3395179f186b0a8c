"""Test-time latent optimisation with an Adam whose update commutes with the group action.

Plain Adam divides every coordinate of the gradient by the root of its own running second moment. A
rotation mixes the coordinates of a pose block, so per-coordinate moments do not commute with it and the
fit of a rotated signal is not the rotated fit. Here the second moment of a pose is shared per latent and
per pose block (:attr:`enf.geometry.Geometry.pose_blocks`: the position block, each orientation vector):
``v <- beta2 v + (1 - beta2) mean(g_block^2)``, the mean square of the block's gradient entries, which a
rotation of the block leaves unchanged. The first moment is linear in the gradient, so the update
``-lr m_hat / (sqrt(v_hat) + eps)`` rotates with the gradient: fitting ``g.signal`` from ``g.z0`` gives
``g.z`` (translations do not change pose gradients at all). Context and window are invariant and keep
per-entry moments (plain Adam).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from enf.fitting.base import Decoder, Loss, check_count, per_sample_loss
from enf.fitting.observed import (
    check_mask,
    sample_coordinate_subsets,
    sample_observed_subsets,
    select_points,
)
from enf.geometry import Geometry
from enf.latents import Latents
from enf.metrics import per_sample_mse

__all__ = ["LR_SCHEDULES", "BlockAdam", "optimise_latents"]

#: step-size schedules of :func:`optimise_latents`.
LR_SCHEDULES = ("constant", "cosine")


class BlockAdam:
    """Adam on a list of tensors, optionally with second moments shared over blocks of the last axis.

    Args:
        params: leaf tensors updated in place (under ``torch.no_grad``).
        blocks: per tensor, the sizes of the last-axis blocks that share one second moment (summing to the
            last dimension), or ``None`` for per-entry moments (plain Adam).
        lr: step size.
        betas: decay rates of the first and second moments.
        eps: added to the root of the bias-corrected second moment.
    """

    def __init__(
        self,
        params: list[Tensor],
        blocks: list[tuple[int, ...] | None],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if len(blocks) != len(params):
            raise ValueError(f"need one blocks entry per parameter ({len(params)}), got {len(blocks)}")
        for p, sizes in zip(params, blocks, strict=True):
            if sizes is not None and sum(sizes) != p.shape[-1]:
                raise ValueError(f"blocks {sizes} do not sum to the last dimension of shape {tuple(p.shape)}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.params, self.blocks = params, blocks
        self.lr, self.betas, self.eps = lr, betas, eps
        self.num_steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [
            torch.zeros_like(p) if s is None else p.new_zeros((*p.shape[:-1], len(s)))
            for p, s in zip(params, blocks, strict=True)
        ]

    @staticmethod
    def _square(grad: Tensor, sizes: tuple[int, ...] | None) -> Tensor:
        if sizes is None:
            return grad.square()
        return torch.stack([chunk.square().mean(-1) for chunk in grad.split(list(sizes), dim=-1)], dim=-1)

    @staticmethod
    def _expand(value: Tensor, sizes: tuple[int, ...] | None) -> Tensor:
        if sizes is None:
            return value
        repeats = torch.tensor(sizes, device=value.device)
        return value.repeat_interleave(repeats, dim=-1)

    @torch.no_grad()
    def step(self, grads: list[Tensor]) -> None:
        """One Adam step with the gradients ``grads`` (one per parameter, same shapes)."""
        self.num_steps += 1
        b1, b2 = self.betas
        correction1 = 1.0 - b1**self.num_steps
        correction2 = 1.0 - b2**self.num_steps
        for p, g, m, v, sizes in zip(
            self.params, grads, self.exp_avg, self.exp_avg_sq, self.blocks, strict=True
        ):
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).add_(self._square(g, sizes), alpha=1.0 - b2)
            denom = self._expand((v / correction2).sqrt(), sizes) + self.eps
            p.sub_(self.lr * (m / correction1) / denom)


def optimise_latents(
    decoder: Decoder,
    coords: Tensor,
    signal: Tensor,
    init: Latents,
    *,
    num_steps: int = 100,
    lr: float = 1e-2,
    learn_window: bool = False,
    min_window: float = 1e-3,
    loss: Loss = per_sample_mse,
    mask: Tensor | None = None,
    geometry: Geometry | None = None,
    shared_pose_moments: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    lr_schedule: str = "constant",
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Latents:
    """Fit latents to ``signal [B, N, C]`` at ``coords [B, N, coord_dim]``, the decoder frozen.

    Test-time auto-decoding: ``num_steps`` steps of :class:`BlockAdam` on the summed per-sample loss
    (each sample's latents see only their own loss) from ``init [B, L, ...]``, which is not modified.

    Args:
        decoder: ``decoder(coords, latents) -> [B, N, C]``; its parameters get no gradient.
        learn_window: fit the windows too (per-entry Adam moments).
        min_window: fitted windows are clamped from below after each step (> 0).
        loss: per-sample loss ``(pred, target) -> [B]``.
        mask: ``[B, N]`` bool, observed points; only they enter the loss.
        geometry: the geometry whose :attr:`~enf.geometry.Geometry.pose_blocks` share second moments
            (``None``: ``decoder.geometry``).
        shared_pose_moments: one second moment per latent and pose block, so the fit is equivariant
            (default); ``False``: plain per-coordinate Adam on the poses (not equivariant; a control).
        betas, eps: Adam settings.
        lr_schedule: ``"constant"``, or ``"cosine"``: step ``k`` (from 0) uses
            ``lr * (1 + cos(pi k / num_steps)) / 2``, so the last steps settle instead of oscillating.
        subset_size: each step uses this many random (observed) points, drawn afresh with ``generator``
            (``None``: all points every step). The subsets are index sets, the same for every group element,
            so the fit stays equivariant.

    Returns:
        detached latents.
    """
    check_count("num_steps", num_steps, minimum=0)
    check_count("subset_size", subset_size, minimum=1, optional=True)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if not min_window > 0:
        raise ValueError(f"min_window must be > 0, got {min_window}")
    if coords.dim() != 3 or signal.dim() != 3 or coords.shape[:2] != signal.shape[:2]:
        raise ValueError(
            f"coords [B, N, coord_dim] and signal [B, N, C] must agree, got {tuple(coords.shape)} "
            f"and {tuple(signal.shape)}"
        )
    if init.batch_size != coords.shape[0]:
        raise ValueError(f"init has batch size {init.batch_size} but coords have {coords.shape[0]}")
    pose_blocks = None
    if shared_pose_moments:
        geometry = getattr(decoder, "geometry", None) if geometry is None else geometry
        if not isinstance(geometry, Geometry):
            raise ValueError(
                "shared_pose_moments=True needs the pose blocks: pass geometry=... (or a decoder with a "
                "`geometry` attribute)"
            )
        pose_blocks = tuple(geometry.pose_blocks)
    if mask is not None:
        check_mask(mask, coords)
    if mask is None:
        subsets = sample_coordinate_subsets(
            coords.shape[1], subset_size, num_steps, generator=generator, device=coords.device
        )
    else:
        subsets = sample_observed_subsets(mask, subset_size, num_steps, generator=generator)
    poses = init.poses.detach().clone().requires_grad_(True)
    context = init.context.detach().clone().requires_grad_(True)
    window = init.window.detach().clone().requires_grad_(learn_window)
    params = [poses, context] + ([window] if learn_window else [])
    opt = BlockAdam(params, [pose_blocks, None, None][: len(params)], lr=lr, betas=betas, eps=eps)
    with torch.enable_grad():
        for k, sel in enumerate(subsets):
            if lr_schedule == "cosine":
                opt.lr = lr * 0.5 * (1.0 + math.cos(math.pi * k / num_steps))
            x, y, residual_mask = select_points(coords, signal, sel)
            pred = decoder(x, Latents(poses=poses, context=context, window=window))
            value = per_sample_loss(loss, pred, y, residual_mask).sum()
            grads = torch.autograd.grad(value, params, allow_unused=True)
            opt.step([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)])
            if learn_window:
                with torch.no_grad():
                    window.clamp_(min=min_window)
    return Latents(poses=poses.detach(), context=context.detach(), window=window.detach())
