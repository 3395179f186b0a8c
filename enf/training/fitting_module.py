"""One LightningModule for field fitting: images, PDE frames, any ``coords``/``signal`` batch.

The module is assembled from built objects (DESIGN.md section 10): a decoder (``EquivariantNeuralField``;
``GlobalLatentField`` for the vector baseline), a fitter (``enf.fitting.MetaSGD`` or ``AutoDecoder``), a
per-sample loss, and the ``FieldSpec`` of the data (linked from the data module by the CLI), which decides the
metrics: MSE and relative L2 always, on the physical scale (the data module's normalisation undone), PSNR only
where the data range is known (images), occupancy IoU and Chamfer distance for signed distances (kind ``sdf``,
:mod:`enf.training.shapes3d`). The checkpoint monitor is declared here (:attr:`monitor`).

Callbacks use only the public protocol :meth:`evaluate` and :meth:`figures`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from matplotlib.figure import Figure
from torch import Tensor, nn

from enf.data import keys
from enf.data.field import FieldSpec
from enf.fitting import Fitter
from enf.latents import Latents
from enf.metrics import (
    equivariance_error,
    occupancy_iou,
    per_sample_clamped_l1,
    per_sample_l1,
    per_sample_mse,
    per_sample_sdf_l1,
    per_sample_tanh_l1,
    psnr,
    relative_l2,
)
from enf.nn import EquivariantNeuralField, GlobalLatentField
from enf.nn.background import ZonalProfile, check_background
from enf.training.shapes3d import shape_metric_key, shape_metrics
from enf.training.task import TaskModule, lr_factor, move_batch

__all__ = ["LOSSES", "FieldFittingModule", "resolve_loss"]

log = logging.getLogger(__name__)

Loss = Callable[[Tensor, Tensor], Tensor]
LOSSES: dict[str, Loss] = {
    "mse": per_sample_mse,
    "l1": per_sample_l1,
    "clamped_l1": per_sample_clamped_l1,
    "tanh_l1": per_sample_tanh_l1,
    "sdf_l1": per_sample_sdf_l1,
}


def resolve_loss(loss: str | Loss) -> Loss:
    """A per-sample loss ``loss(pred [B, N, C], target [B, N, C]) -> [B]`` from its name or itself."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} (or pass a callable)")
    return LOSSES[loss]


class FieldFittingModule(TaskModule):
    """Fit an equivariant neural field and per-signal latents to ``coords``/``signal`` batches.

    Batches follow :mod:`enf.data.keys`: ``coords [B, N, coord_dim]``, ``signal [B, N, C]``, ``index [B]``
    (position in the split) and optionally ``mask [B, N]`` (observed points; only they enter the fit).

    Args:
        decoder: the field ``f(x; z)``; its geometry and context width define the latents.
        fitter: how latents are obtained (``MetaSGD``: shared init + learned inner steps, or
            ``AutoDecoder``: a latent table); bound here to the decoder's geometry and context width.
        loss: per-sample training loss, ``"mse"``, ``"l1"``, or for signed distances ``"clamped_l1"``,
            ``"tanh_l1"`` or ``"sdf_l1"`` (:mod:`enf.metrics`), or a callable ``(pred, target) -> [B]``.
        field: the data's :class:`~enf.data.field.FieldSpec` as a dict (linked from the data module).
            ``None``: metrics on the signal as given, no PSNR, no figures.
        num_sampled_coords: coordinates drawn afresh for every inner step and for the outer loss
            (``None``: all).
        num_eval_coords: test-time fitting steps of evaluation signals each use this many random coordinates
            of the signal (drawn afresh per step from a generator seeded 0, so encoding is deterministic;
            ``None``: all). Metrics are still measured on every coordinate.
        num_train_signals: training signals (rows of an auto-decoder table; linked from the data module).
        lr: AdamW learning rate of decoder, fitter parameters (initial latent, step sizes).
        weight_decay: AdamW weight decay.
        lr_warmup_steps: linear warm-up of the learning rate.
        lr_schedule: ``constant`` after the warm-up, or ``cosine`` decay to 0 at ``trainer.max_steps``.
        num_plot_samples: signals drawn in each figure.
        mesh_resolution: marching-cubes grid of the Chamfer metric and of the mesh figures (kind ``sdf``).
    """

    def __init__(
        self,
        *,
        decoder: EquivariantNeuralField | GlobalLatentField,
        fitter: Fitter,
        loss: str = "mse",
        field: dict[str, Any] | None = None,
        num_sampled_coords: int | None = None,
        num_eval_coords: int | None = None,
        num_train_signals: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        num_plot_samples: int = 4,
        mesh_resolution: int = 64,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(
                f"decoder must be an nn.Module (e.g. enf.EquivariantNeuralField), got {decoder!r}"
            )
        if num_sampled_coords is not None and num_sampled_coords < 1:
            raise ValueError(
                f"num_sampled_coords must be None (all coordinates) or >= 1, got {num_sampled_coords}"
            )
        if num_eval_coords is not None and num_eval_coords < 1:
            raise ValueError(f"num_eval_coords must be None (all coordinates) or >= 1, got {num_eval_coords}")
        if mesh_resolution < 8:
            raise ValueError(f"mesh_resolution must be >= 8, got {mesh_resolution}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        # Under the CLI the hyperparameters are the config dicts of decoder/fitter (so load_from_checkpoint
        # rebuilds them); built in code, the objects themselves are not stored (pass them again to load).
        given = _given_hyperparameters.get() is not None
        objects = [] if given else ["decoder", "fitter"]
        self.save_hyperparameters(ignore=objects + (["loss"] if callable(loss) else []))
        self.decoder = decoder
        self.geometry = decoder.geometry
        self.fitter = fitter.bind(
            geometry=decoder.geometry, context_dim=decoder.context_dim, num_signals=num_train_signals
        )
        self.loss_fn = resolve_loss(loss)
        self.field_spec = None if field is None else FieldSpec.from_dict(field)
        if self.field_spec is not None:
            if self.field_spec.num_channels != decoder.num_out:
                raise ValueError(
                    f"the data has {self.field_spec.num_channels} channels but the decoder has "
                    f"num_out={decoder.num_out}"
                )
            if self.field_spec.coord_dim != self.geometry.coord_dim:
                raise ValueError(
                    f"the data has {self.field_spec.coord_dim}-D coordinates but geometry "
                    f"{self.geometry.name!r} has coord_dim {self.geometry.coord_dim}; choose a geometry for "
                    f"{self.field_spec.kind} data"
                )
            background = self.field_spec.extra.get("background")
            if background is not None:
                profile = ZonalProfile.from_dict(background)
                check_background(profile, geometry_name=self.geometry.name, num_out=decoder.num_out)
                decoder.background = profile  # the latents encode deviations from the data's zonal mean
        self.num_sampled_coords = num_sampled_coords
        self.num_eval_coords = num_eval_coords
        self._eval_rows: dict[str, list[dict[str, Tensor]]] = {}

    # ------------------------------------------------------------------------------------ protocol
    @property
    def is_sdf(self) -> bool:
        """Whether the signals are signed distances of 3-D shapes (field kind ``sdf``)."""
        return self.field_spec is not None and self.field_spec.kind == "sdf"

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Per-signal metrics of this task: MSE and relative L2 (physical scale), PSNR with a data range,
        occupancy IoU for signed distances (on the batch's uniform volume samples where it marks them)."""
        names = ("mse", "rel_l2")
        if self.field_spec is not None and self.field_spec.data_range is not None:
            names += ("psnr",)
        if self.is_sdf:
            names += ("iou",)
        return names

    @property
    def monitor(self) -> tuple[str, str]:
        """``(metric, mode)`` that selects the best checkpoint: PSNR where defined, IoU for signed distances,
        else MSE."""
        if "psnr" in self.metric_names:
            return ("val/psnr", "max")
        return ("val/iou", "max") if self.is_sdf else ("val/mse", "min")

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(coords [B, N, coord_dim], signal [B, N, C])`` of a batch, validated."""
        missing = [k for k in (keys.COORDS, keys.SIGNAL) if k not in batch]
        if missing:
            raise KeyError(
                f"batch lacks {missing} (has {sorted(batch)}); datasets must yield the keys of enf.data.keys"
            )
        coords, signal = batch[keys.COORDS], batch[keys.SIGNAL]
        if coords.dim() != 3 or signal.dim() != 3 or coords.shape[:2] != signal.shape[:2]:
            raise ValueError(
                f"coords [B, N, coord_dim] and signal [B, N, C] must agree, got {tuple(coords.shape)} and "
                f"{tuple(signal.shape)}"
            )
        if signal.shape[-1] != self.decoder.num_out:
            raise ValueError(
                f"signal has {signal.shape[-1]} channels but the decoder has num_out={self.decoder.num_out}"
            )
        if not torch.isfinite(signal).all():
            raise ValueError("batch signal contains NaN or inf")
        return coords, signal

    def encode(
        self, batch: Mapping[str, Tensor], *, train: bool, num_steps: int | None = None, refine: bool = True
    ) -> Latents:
        """Latents of a batch: training-time (differentiable) or test-time encoding (``num_eval_coords``
        random coordinates per step; ``refine``: with the fitter's test-time refinement, if any)."""
        coords, signal = self.unpack(batch)
        mask = batch.get(keys.MASK)
        return self.fitter.encode(
            self.decoder,
            coords,
            signal,
            index=batch.get(keys.INDEX),
            train=train,
            loss=self.loss_fn,
            subset_size=self.num_sampled_coords if train else self.num_eval_coords,
            num_steps=num_steps,
            mask=mask,
            refine=refine,
        )

    def sample_metrics(
        self, pred: Tensor, signal: Tensor, batch: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Per-signal metrics ``[B]`` of :attr:`metric_names`, on the physical scale (``batch``: where IoU
        finds the uniform-sample mask, ``keys.UNIFORM``; without it IoU counts every point)."""
        spec = self.field_spec
        if spec is not None:
            pred, signal = spec.denormalize(pred), spec.denormalize(signal)
        out = {"mse": per_sample_mse(pred, signal), "rel_l2": relative_l2(pred, signal)}
        if "psnr" in self.metric_names:
            out["psnr"] = psnr(pred, signal, data_range=spec.data_range)
        if self.is_sdf:
            uniform = None if batch is None else batch.get(keys.UNIFORM)
            out["iou"] = occupancy_iou(pred, signal, mask=uniform).to(pred.dtype)
        return out

    def metric_key(self, name: str, split: str) -> str:
        """``<name>_<split>``; signed distances: :func:`enf.training.shapes3d.shape_metric_key`."""
        if self.is_sdf:
            return shape_metric_key(name, split, self.field_spec)
        return super().metric_key(name, split)

    @torch.enable_grad()
    def evaluate(
        self,
        split: str,
        *,
        loader=None,
        max_samples: int | None = None,
        num_steps: int | None = None,
        equivariance: bool = True,
        refine: bool = True,
    ) -> dict[str, float]:
        """Encode and decode the signals of ``split``: mean metrics and the equivariance error.

        ``loader`` defaults to ``trainer.datamodule.metrics_dataloader(split, max_samples=...)``. The
        equivariance error is ``max |f(g x; g z) - f(x; z)|`` over the fitted latents, one random group
        element per signal, 256 random coordinates of the domain, float64. Signed distances report ``iou`` on
        held-out points, ``iou_fitpoints`` and ``chamfer`` (:func:`enf.training.shapes3d.shape_metrics`).
        ``refine=False``: without the fitter's test-time refinement.
        """
        if loader is None:
            datamodule = self.attached_datamodule(f"evaluate({split!r}) without loader=...")
            loader = datamodule.metrics_dataloader(split, max_samples=max_samples)
        sums: dict[str, list[Tensor]] = {}
        eq_errors, seen = [], 0
        gen = torch.Generator().manual_seed(0)
        dec64 = copy.deepcopy(self.decoder).double() if equivariance else None
        for batch in self.progress(loader, desc=f"evaluate {split}"):
            batch = move_batch(batch, self.device)
            coords, signal = self.unpack(batch)
            z = self.encode(batch, train=False, num_steps=num_steps, refine=refine)
            with torch.no_grad():
                rows = self.sample_metrics(self.decoder(coords, z), signal, batch)
                if self.is_sdf:
                    bound, res = float(self.field_spec.extra.get("bound", 1.1)), self.hparams.mesh_resolution
                    rows = shape_metrics(self.decoder, z, batch, rows, resolution=res, bound=bound)
                for name, value in rows.items():
                    sums.setdefault(name, []).append(value.cpu())
                if dec64 is not None:
                    x = self.geometry.sample_coords(coords.shape[0], 256, generator=gen, dtype=torch.float64)
                    eq_errors.append(
                        equivariance_error(
                            dec64, self.geometry, x.to(self.device), z.to(torch.float64), generator=gen
                        )
                    )
            seen += coords.shape[0]
            if max_samples is not None and seen >= max_samples:
                break
        if seen == 0:
            raise ValueError(f"evaluate({split!r}) got an empty data loader")
        out = {name: float(torch.cat(values).mean()) for name, values in sums.items()}
        if eq_errors:
            out["equivariance_error"] = max(eq_errors)
        out["num_samples"] = float(seen)
        return out

    @torch.enable_grad()
    def figures(self, batch: Mapping[str, Tensor]) -> dict[str, Figure]:
        """``{"reconstruction": Figure}``: truth / reconstruction / error with the fitted latents drawn
        (signed distances: true surface points / marching-cubes mesh / latent frames, with each IoU).
        Figures drawn during validation skip the fitter's test-time refinement, as validation does."""
        if self.field_spec is None:
            return {}
        from enf.plotting import plot_fields

        batch = move_batch(batch, self.device)
        coords, signal = self.unpack(batch)
        n = min(self.hparams.num_plot_samples, coords.shape[0])
        batch = {k: (v[:n] if isinstance(v, Tensor) else v) for k, v in batch.items()}
        was_training = self.training
        # figures during fitting (each validation) skip the test-time refinement, as validation does
        refine = self._trainer is None or not self.trainer.validating
        self.eval()
        try:
            z = self.encode(batch, train=False, refine=refine)
            with torch.no_grad():
                pred = self.decoder(coords[:n], z)
        finally:
            self.train(was_training)
        spec = self.field_spec
        title = f"{spec.name or spec.kind} · {self.geometry.name} · step {self.global_step}"
        if self.is_sdf:
            from enf.training.shapes3d import shape_figure

            bound, resolution = float(spec.extra.get("bound", 1.1)), self.hparams.mesh_resolution
            iou = self.sample_metrics(pred, signal[:n], batch)["iou"]
            return {"reconstruction": shape_figure(self.decoder, z, batch, iou=iou, resolution=resolution,
                                                   bound=bound, title=title)}  # fmt: skip
        fig = plot_fields(
            spec,
            coords[:n].cpu(),
            spec.denormalize(signal[:n]).cpu(),
            spec.denormalize(pred).cpu(),
            z.poses.detach().cpu(),
            title=title,
        )
        return {"reconstruction": fig}

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        coords, signal = self.unpack(batch)
        z = self.encode(batch, train=True)
        k = self.num_sampled_coords
        uniform = batch.get(keys.UNIFORM)
        if k is not None and k < coords.shape[1]:
            idx = torch.randperm(coords.shape[1], device=coords.device)[:k]
            coords, signal = coords[:, idx], signal[:, idx]
            uniform = None if uniform is None else uniform[:, idx]
        pred = self.decoder(coords, z)
        loss = self.loss_fn(pred, signal).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} at step {self.global_step}: lower model.lr or the fitter's "
                "step sizes, or check the data"
            )
        self.log("train/loss", loss, prog_bar=True)
        with torch.no_grad():
            seen = None if uniform is None else {keys.UNIFORM: uniform}
            for name, value in self.sample_metrics(pred.detach(), signal, seen).items():
                self.log(f"train/{name}", value.mean(), prog_bar=name in ("psnr", "mse"))
        return loss

    @torch.enable_grad()
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "encoding test signals runs gradient steps, which inference mode forbids: "
                "set `trainer.inference_mode: false` (the enf CLI default)"
            )
        coords, signal = self.unpack(batch)
        z = self.encode(batch, train=False, refine=stage != "val")  # validation: the cheap, unrefined fit
        with torch.no_grad():
            rows = self.sample_metrics(self.decoder(coords, z), signal, batch)
        self._eval_rows.setdefault(stage, []).append(rows)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        rows = self._eval_rows.pop(stage, [])
        for name in self.metric_names:
            if rows:
                value = torch.cat([r[name] for r in rows]).mean()
                self.log(f"{stage}/{name}", value, sync_dist=True, prog_bar=stage == "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # ----------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
        )
        warmup, schedule = self.hparams.lr_warmup_steps, self.hparams.lr_schedule
        if warmup <= 0 and schedule == "constant":
            return opt
        total = None
        if schedule == "cosine":
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise ValueError("lr_schedule='cosine' needs a finite trainer.max_steps (or max_epochs)")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, warmup=warmup, total=total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
