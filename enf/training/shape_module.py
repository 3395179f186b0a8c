"""``ShapeModule``: the Lightning task of the canonicalising shape VAE on landmark shapes.

    enf shape fit --config configs/shape/trilobite.yaml

Batches (``LandmarkDataModule``): ``positions [B, K, d]``, ``index [B]`` (and ``label [B]``). The VAE
(:class:`~enf.shape.ShapeVAE`, built from the config's ``class_path``) decodes ``K`` points in the input's
pose; the loss is the landmark error relative to the shape's size plus ``beta`` times the KL divergence of
the posterior to the uniform prior on the pre-shape sphere.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from matplotlib.figure import Figure
from torch import Tensor

from enf.data import keys
from enf.shape import ShapeVAE
from enf.training.task import TaskModule, move_batch

__all__ = ["ShapeModule", "random_similarity"]


def random_similarity(batch: int, d: int, *, generator: torch.Generator, dtype=torch.float64):
    """``x -> s x R + t`` on row vectors, ``R`` uniform in SO(d), ``s`` in [0.5, 2], ``t`` standard normal."""
    q, r = torch.linalg.qr(torch.randn(batch, d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    flip = torch.linalg.det(q) < 0
    q = torch.cat([torch.where(flip[:, None, None], -q[..., :1], q[..., :1]), q[..., 1:]], dim=-1)
    s = torch.exp(math.log(2.0) * (2 * torch.rand(batch, generator=generator, dtype=torch.float64) - 1))
    t = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    q, s, t = q.to(dtype), s.to(dtype), t.to(dtype)
    return lambda x: s[:, None, None] * x @ q + t[:, None, :]


def relative_error(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target|^2 / |target - centroid|^2`` per shape ``[B]``: the error relative to the size."""
    size = (target - target.mean(-2, keepdim=True)).square().sum((-2, -1))
    return (pred - target).square().sum((-2, -1)) / size.clamp_min(1e-12)


class ShapeModule(TaskModule):
    """Train and evaluate a :class:`~enf.shape.ShapeVAE` on landmark shapes.

    Args:
        vae: the model (``num_out_points`` = the data's K, ``space_dim`` = its d).
        beta: weight of the KL term.
        lr, weight_decay: AdamW.
        num_plot_samples: shapes drawn in each figure.
    """

    run_prefix = "shape_"

    def __init__(
        self,
        *,
        vae: ShapeVAE,
        beta: float = 1e-3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        num_plot_samples: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(vae, ShapeVAE):
            raise TypeError(f"vae must be an enf.shape.ShapeVAE, got {type(vae).__name__}")
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        # Under the CLI the hyperparameters are the config dict of the VAE (so load_from_checkpoint rebuilds it);
        # built in code, the object itself is not stored (pass it again to load).
        self.save_hyperparameters(ignore=[] if _given_hyperparameters.get() is not None else ["vae"])
        self.vae = vae

    # ------------------------------------------------------------------------------------ protocol
    @property
    def monitor(self) -> tuple[str, str]:
        return ("val/rel_mse", "min")

    def unpack(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``positions [B, K, d]`` of a landmark batch, checked against the model."""
        if keys.POSITIONS not in batch:
            raise ValueError(f"the shape task needs batches with {keys.POSITIONS!r} (a LandmarkDataModule)")
        x = batch[keys.POSITIONS]
        v = self.vae
        if x.ndim != 3 or x.shape[1:] != (v.num_out_points, v.space_dim):
            raise ValueError(
                f"positions are {tuple(x.shape)} but the VAE decodes [B, {v.num_out_points}, {v.space_dim}]: set "
                f"model.vae.init_args.num_out_points / space_dim to the data's K and d"
            )
        return x

    def _losses(self, x: Tensor, *, sample: bool) -> dict[str, Tensor]:
        out = self.vae(x, sample=sample)
        rel = relative_error(out.points, x)
        return {"rel_mse": rel, "kl": out.kl, "loss": rel + self.hparams.beta * out.kl}

    @torch.no_grad()
    def evaluate(self, split: str, *, max_samples: int | None = None) -> dict[str, float]:
        """Mean relative landmark error (posterior mean code) and KL on ``split``, and the equivariance error:
        ``max |code(g X) - code(X)|`` over one random similarity per shape, float64."""
        datamodule = self.attached_datamodule(f"evaluate({split!r})")
        vae64 = copy.deepcopy(self.vae).double().eval()
        gen = torch.Generator().manual_seed(0)
        rows: dict[str, list[Tensor]] = {"rel_mse": [], "kl": []}
        eq, seen = 0.0, 0
        for batch in datamodule.eval_dataloader(split, max_samples=max_samples):
            x = self.unpack(move_batch(batch, self.device))
            for name, value in self._losses(x, sample=False).items():
                if name in rows:
                    rows[name].append(value.cpu())
            x64 = x.double()
            g = random_similarity(x.shape[0], x.shape[-1], generator=gen)
            code, moved = (
                vae64(x64, sample=False).code,
                vae64(g(x64.cpu()).to(self.device), sample=False).code,
            )
            eq = max(eq, float((moved - code).abs().max()))
            seen += x.shape[0]
        if seen == 0:
            raise ValueError(f"evaluate({split!r}) got an empty data loader")
        out = {name: float(torch.cat(v).mean()) for name, v in rows.items()}
        out.update(equivariance_error=eq, num_samples=float(seen))
        return out

    @torch.no_grad()
    def figures(self, batch: Mapping[str, Tensor]) -> dict[str, Figure]:
        """``{"shapes": Figure}``: input landmarks and reconstruction (top), canonical symbols (bottom)."""
        x = self.unpack(move_batch(batch, self.device))[: self.hparams.num_plot_samples]
        out = self.vae(x, sample=False)
        n = x.shape[0]
        fig = Figure(figsize=(1.8 * n, 3.8), layout="constrained")
        axes = fig.subplots(2, n, squeeze=False)
        for k in range(n):
            for ax, pts, style in ((axes[0, k], x[k], "k.-"), (axes[0, k], out.points[k], "r.--"),
                                   (axes[1, k], out.encoding.canonical[k], "b.-")):  # fmt: skip
                p = pts.detach().cpu().numpy()
                ax.plot(p[:, 0], p[:, 1], style, lw=0.8, ms=3)
            for ax in axes[:, k]:
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_title("input (black), reconstruction (red)", fontsize=7, loc="left")
        axes[1, 0].set_title("canonical landmarks (the symbol)", fontsize=7, loc="left")
        return {"shapes": fig}

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = {k: v.mean() for k, v in self._losses(self.unpack(batch), sample=True).items()}
        for name, value in losses.items():
            self.log(
                f"train/{name}", value, prog_bar=name == "loss", batch_size=batch[keys.POSITIONS].shape[0]
            )
        return losses["loss"]

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        losses = self._losses(self.unpack(batch), sample=False)
        size = batch[keys.POSITIONS].shape[0]
        for name in ("rel_mse", "kl"):
            self.log(
                f"{stage}/{name}",
                losses[name].mean(),
                sync_dist=True,
                prog_bar=stage == "val",
                batch_size=size,
            )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def artifacts(self) -> dict[str, Any]:
        return {}
