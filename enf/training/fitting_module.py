"""One LightningModule for field fitting (images now; any coordinate/signal batch): Meta-SGD or auto-decoding."""

from __future__ import annotations

import logging
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from enf import geometry as geometry_registry
from enf.data.grid import image_to_signal, pixel_coords, signal_to_image
from enf.fitting import AutoDecoderTable, MetaSGD, optimise_latents
from enf.latents import Latents
from enf.metrics import equivariance_error, per_sample_mse, psnr
from enf.nn import EquivariantNeuralField

__all__ = ["FieldFittingModule"]

log = logging.getLogger(__name__)


class FieldFittingModule(L.LightningModule):
    """Fit an equivariant neural field and per-sample latents.

    Batches are dicts with ``image [B, H, W, C]`` (pixel coordinates from :func:`enf.data.pixel_coords`) or
    ``coords [B, N, coord_dim]`` + ``signal [B, N, C]``, and ``index [B]`` (position in the split).

    Args:
        geometry: registry name of the geometry (``enf.geometry.names()``).
        num_out: signal channels (linked from the datamodule by the CLI).
        num_latents: latent points per signal.
        context_dim, hidden_dim, num_heads, num_query_frequencies, num_value_frequencies, query_freq_scale,
        value_freq_scale, value_hidden_dim, k_nearest, use_window, channel_modulation, num_output_layers:
            decoder settings, see :class:`enf.EquivariantNeuralField`.
        fitting: ``meta_sgd`` (shared init + learned inner steps) or ``autodecoder`` (a latent table).
        num_inner_steps: Meta-SGD inner steps in training.
        num_eval_inner_steps: inner steps when encoding validation/test signals (default: as training).
        lr_position, lr_orientation, lr_context, lr_window: initial Meta-SGD step sizes (window 0: frozen).
        first_order: first-order Meta-SGD (no second derivatives).
        learn_init: learn the shared initial latent.
        window: initial window width (``None``: geometry default).
        num_sampled_coords: coordinates drawn afresh for every inner step and for the outer loss (``None``: all).
        num_train_signals: rows of the auto-decoder table (linked from the datamodule by the CLI).
        autodecoder_test_steps, autodecoder_test_lr: Adam steps / rate to encode unseen signals (autodecoder).
        lr: Adam learning rate of decoder, initial latent and step sizes.
        weight_decay: AdamW weight decay.
        lr_warmup_steps: linear warm-up of the learning rate.
        num_plot_samples: reconstructions drawn per validation epoch.
    """

    def __init__(
        self,
        *,
        geometry: str = "translation2d",
        num_out: int = 1,
        num_latents: int = 25,
        context_dim: int = 32,
        hidden_dim: int = 128,
        num_heads: int = 2,
        num_query_frequencies: int = 32,
        num_value_frequencies: int = 32,
        query_freq_scale: float = 1.0,
        value_freq_scale: float = 1.0,
        value_hidden_dim: int = 0,
        k_nearest: int | None = None,
        use_window: bool = True,
        channel_modulation: bool = False,
        num_output_layers: int = 2,
        fitting: Literal["meta_sgd", "autodecoder"] = "meta_sgd",
        num_inner_steps: int = 3,
        num_eval_inner_steps: int | None = None,
        lr_position: float = 0.1,
        lr_orientation: float = 0.1,
        lr_context: float = 5.0,
        lr_window: float = 0.0,
        first_order: bool = False,
        learn_init: bool = True,
        window: float | None = None,
        num_sampled_coords: int | None = None,
        num_train_signals: int = 0,
        autodecoder_test_steps: int = 200,
        autodecoder_test_lr: float = 1e-2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 0,
        num_plot_samples: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.geometry = geometry_registry.get(geometry)
        self.decoder = EquivariantNeuralField(
            geometry=self.geometry,
            num_out=num_out,
            context_dim=context_dim,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_query_frequencies=num_query_frequencies,
            num_value_frequencies=num_value_frequencies,
            query_freq_scale=query_freq_scale,
            value_freq_scale=value_freq_scale,
            value_hidden_dim=value_hidden_dim,
            k_nearest=k_nearest,
            use_window=use_window,
            channel_modulation=channel_modulation,
            num_output_layers=num_output_layers,
        )
        self.meta: MetaSGD | None = None
        self.table: AutoDecoderTable | None = None
        if fitting == "meta_sgd":
            self.meta = MetaSGD(
                geometry=self.geometry,
                num_latents=num_latents,
                context_dim=context_dim,
                num_inner_steps=num_inner_steps,
                lr_position=lr_position,
                lr_orientation=lr_orientation,
                lr_context=lr_context,
                lr_window=lr_window,
                first_order=first_order,
                learn_init=learn_init,
                window=window,
            )
        elif fitting == "autodecoder":
            if num_train_signals < 1:
                raise ValueError(
                    "fitting='autodecoder' needs num_train_signals >= 1 (the CLI links it from the datamodule)"
                )
            self.table = AutoDecoderTable(
                geometry=self.geometry,
                num_signals=num_train_signals,
                num_latents=num_latents,
                context_dim=context_dim,
                window=window,
            )
        else:
            raise ValueError(f"fitting must be 'meta_sgd' or 'autodecoder', got {fitting!r}")
        self._eval_outputs: dict[str, list[Tensor]] = {}
        self._plot_batch: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------ data
    def unpack(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(coords [B, N, coord_dim], signal [B, N, C])`` from a batch dict, with validation."""
        if "image" in batch:
            image = batch["image"]
            if image.dim() != 4:
                raise ValueError(f"batch['image'] must be [B, H, W, C], got {tuple(image.shape)}")
            if self.geometry.coord_dim != 2:
                raise ValueError(
                    f"images are planar but geometry {self.geometry.name!r} has coord_dim {self.geometry.coord_dim}; "
                    "choose a 2D geometry (translation2d, se2, isotropic2d, absolute2d, torus2d)"
                )
            b, h, w, _ = image.shape
            coords = pixel_coords(h, w, dtype=image.dtype, device=image.device).expand(b, -1, -1)
            signal = image_to_signal(image)
        else:
            coords, signal = batch["coords"], batch["signal"]
        if signal.shape[-1] != self.hparams.num_out:
            raise ValueError(
                f"signal has {signal.shape[-1]} channels but the model was built with num_out={self.hparams.num_out}"
            )
        if not torch.isfinite(signal).all():
            raise ValueError("batch signal contains NaN or inf")
        return coords, signal

    def _sample(self, num: int) -> Tensor | None:
        k = self.hparams.num_sampled_coords
        if k is None or k >= num:
            return None
        return torch.randperm(num, device=self.device)[:k]

    # --------------------------------------------------------------- fitting
    def fit_latents(self, batch: dict[str, Tensor], *, train: bool) -> Latents:
        """Latents of a batch: Meta-SGD inner loop (or the auto-decoder table / test-time optimisation)."""
        coords, signal = self.unpack(batch)
        if self.meta is not None:
            if train:
                return self.meta(self.decoder, coords, signal, subset_size=self.hparams.num_sampled_coords)
            steps = self.hparams.num_eval_inner_steps
            return self.meta(self.decoder, coords, signal, num_steps=steps, create_graph=False).detach()
        if train:
            return self.table(batch["index"])
        init = self.table.mean().expand(coords.shape[0])
        return optimise_latents(
            self.decoder,
            coords,
            signal,
            init,
            num_steps=self.hparams.autodecoder_test_steps,
            lr=self.hparams.autodecoder_test_lr,
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        coords, signal = self.unpack(batch)
        z = self.fit_latents(batch, train=True)
        idx = self._sample(coords.shape[1])
        if idx is not None:
            coords, signal = coords[:, idx], signal[:, idx]
        pred = self.decoder(coords, z)
        mse = per_sample_mse(pred, signal)
        loss = mse.mean()
        self.log("train/mse", loss, prog_bar=True)
        self.log("train/psnr", psnr(pred.detach(), signal).mean(), prog_bar=True)
        return loss

    @torch.enable_grad()
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "encoding test signals runs gradient steps, which inference mode forbids: "
                "set `trainer.inference_mode: false` (the enf CLI default)"
            )
        coords, signal = self.unpack(batch)
        z = self.fit_latents(batch, train=False)
        with torch.no_grad():
            pred = self.decoder(coords, z)
        out = {"mse": per_sample_mse(pred, signal), "psnr": psnr(pred, signal)}
        self._eval_outputs.setdefault(stage, []).append(torch.stack([out["mse"], out["psnr"]], dim=-1))
        if self._plot_batch is None and "image" in batch:
            b, h, w, _ = batch["image"].shape
            n = min(self.hparams.num_plot_samples, b)
            self._plot_batch = {
                "target": batch["image"][:n].detach().cpu(),
                "prediction": signal_to_image(pred[:n], h, w).detach().cpu(),
                "poses": self.geometry_wrap(z.poses[:n]).detach().cpu(),
            }
        return out

    def geometry_wrap(self, poses: Tensor) -> Tensor:
        """Poses with positions wrapped into the domain (periodic geometries), for plotting."""
        if not self.geometry.periodic:
            return poses
        pos = self.geometry._wrap(poses[..., : self.geometry.position_dim])
        return torch.cat([pos, poses[..., self.geometry.position_dim :]], dim=-1)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        rows = self._eval_outputs.pop(stage, [])
        if rows:
            values = torch.cat(rows).mean(0)
            self.log(f"{stage}/mse", values[0], sync_dist=True)
            self.log(f"{stage}/psnr", values[1], sync_dist=True, prog_bar=stage == "val")
        self._plot_batch_to_loggers(stage)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _plot_batch_to_loggers(self, stage: str) -> None:
        batch, self._plot_batch = self._plot_batch, None
        if batch is None or self.trainer is None or not self.trainer.is_global_zero:
            return
        from enf.plotting import plot_reconstructions

        poses = batch["poses"] if self.geometry.coord_dim == 2 else None
        fig = plot_reconstructions(
            batch["target"],
            batch["prediction"],
            poses,
            title=f"{self.geometry.name} {stage} epoch {self.current_epoch}",
        )
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):
                experiment.add_figure(
                    f"{stage}/reconstructions", fig, global_step=self.global_step, close=False
                )
        self.latest_figure = fig

    # ------------------------------------------------------------ evaluation
    @torch.enable_grad()
    def evaluate(self, loader, *, max_samples: int | None = None) -> dict[str, float]:
        """Encode and decode up to ``max_samples`` signals: mean MSE and PSNR, and the equivariance error.

        The equivariance error is ``max |f(g x; g z) - f(x; z)|`` for the fitted latents, one random group
        element per signal, at random coordinates of the domain, in float64.
        """
        mses, psnrs, eq_errors, seen = [], [], [], 0
        gen = torch.Generator().manual_seed(0)
        for batch in loader:
            batch = {k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
            coords, signal = self.unpack(batch)
            z = self.fit_latents(batch, train=False)
            with torch.no_grad():
                pred = self.decoder(coords, z)
                mses.append(per_sample_mse(pred, signal).cpu())
                psnrs.append(psnr(pred, signal).cpu())
                dec64 = self.decoder.double()
                try:
                    x = self.geometry.sample_coords(coords.shape[0], 256, generator=gen, dtype=torch.float64)
                    eq_errors.append(
                        equivariance_error(
                            dec64, self.geometry, x.to(self.device), z.to(torch.float64), generator=gen
                        )
                    )
                finally:
                    self.decoder.float()
            seen += coords.shape[0]
            if max_samples is not None and seen >= max_samples:
                break
        if not mses:
            raise ValueError("evaluate() got an empty data loader")
        return {
            "mse": float(torch.cat(mses).mean()),
            "psnr": float(torch.cat(psnrs).mean()),
            "equivariance_error": max(eq_errors),
            "num_samples": seen,
        }

    # ------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
        )
        warmup = self.hparams.lr_warmup_steps
        if warmup <= 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
