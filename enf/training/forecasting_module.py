"""One LightningModule for PDE forecasting in latent space (DESIGN.md section 7).

Stage 1 is field fitting (``enf fit --config configs/fit/<dataset>.yaml``); its checkpoint gives the
decoder and the fitter. This module is stage 2 and, with ``finetune: true``, stage 3:

* encode frame 0 of each trajectory with the fitter's test-time inner loop (ENF frozen in stage 2; the
  encodings of the training trajectories are then cached),
* roll the latents out with ``enf.dynamics.rollout`` over the in-horizon frames,
* decode every state at ``num_sampled_coords`` random coordinates and regress the frames (MSE).

Evaluation (:meth:`evaluate`, :meth:`run_metrics`): per-frame MSE on the physical scale of rollouts from
the encoded initial state, split into the training horizon (``in``) and beyond it (``out``), from sparse
initial states, at the files' full resolution, and the equivariance error of the decoded rollout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from einops import rearrange, repeat
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn

from enf.data import keys
from enf.dynamics import METHODS, rollout
from enf.latents import Latents
from enf.training.checkpoints import load_fit_checkpoint, read_checkpoint
from enf.training.forecast_eval import ForecastEvaluation
from enf.training.task import TaskModule, move_batch

__all__ = ["ForecastingModule", "load_forecast_checkpoint"]

log = logging.getLogger(__name__)


class ForecastingModule(ForecastEvaluation, TaskModule):
    """Train a latent ODE on top of a fitted ENF, evaluate its forecasts.

    Batches (``PDETrajectoryDataModule``): ``coords [B, N, coord_dim]``, ``signal [B, T, N, C]``,
    ``times [B, T]``, ``index [B]`` and optionally ``mask [B, N]`` (observed points of the initial state).

    Args:
        fit_checkpoint: checkpoint of the stage-1 field fit (``runs/<name>/version_<n>/checkpoints/last.ckpt``).
        dynamics: the latent vector field, e.g. ``enf.dynamics.EquivariantLatentField`` (its geometry and
            context width must be the checkpoint's) or ``enf.dynamics.MLPLatentField``.
        horizon: in-horizon frames: the rollout is trained on frames ``[0, horizon)``; later frames of the
            data are extrapolation (``out``) in the metrics.
        frame_dt: ODE time between consecutive frames.
        method: ``torchdiffeq`` solver (``euler``, ``rk4``, ``dopri5``, ...).
        step_size: fixed-step solver step (``None``: one step per frame).
        adjoint: backpropagate through the solver with the adjoint method.
        finetune: stage 3: also train the decoder and fitter (at ``decoder_lr``), encoding differentiably.
        init_checkpoint: a checkpoint of this module (e.g. the stage-2 ``last.ckpt``) whose weights (dynamics,
            decoder, fitter) this run starts from: stage 3 after stage 2.
        decoder_lr: learning rate of the decoder and fitter when ``finetune``.
        num_sampled_coords: coordinates per frame in the training loss (``None``: all).
        lr: AdamW learning rate of the dynamics.
        weight_decay: AdamW weight decay.
        observed_fractions: sparse initial states evaluated in :meth:`run_metrics`
            (``mse_test_in_obs50`` for 0.5, ...).
        num_plot_samples: trajectories drawn in the figures.
    """

    run_prefix = "forecast_"

    def __init__(
        self,
        *,
        fit_checkpoint: str,
        dynamics: nn.Module,
        horizon: int = 10,
        frame_dt: float = 1.0,
        method: str = "euler",
        step_size: float | None = None,
        adjoint: bool = False,
        finetune: bool = False,
        init_checkpoint: str | None = None,
        decoder_lr: float = 1e-5,
        num_sampled_coords: int | None = 1024,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        observed_fractions: tuple[float, ...] = (0.5, 0.1, 0.05),
        num_plot_samples: int = 2,
    ) -> None:
        super().__init__()
        if not isinstance(dynamics, nn.Module):
            raise TypeError(
                f"dynamics must be an nn.Module (e.g. enf.dynamics.EquivariantLatentField), got {dynamics!r}"
            )
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 2:
            raise ValueError(
                f"horizon must be an int >= 2 (frames the rollout is trained on), got {horizon!r}"
            )
        if method not in METHODS:
            raise ValueError(f"unknown ODE method {method!r}; choose one of {list(METHODS)}")
        if not (frame_dt > 0 and math.isfinite(frame_dt)):
            raise ValueError(f"frame_dt must be a positive number, got {frame_dt}")
        if num_sampled_coords is not None and num_sampled_coords < 1:
            raise ValueError(f"num_sampled_coords must be None (all) or >= 1, got {num_sampled_coords}")
        if lr <= 0 or decoder_lr <= 0:
            raise ValueError(f"lr and decoder_lr must be > 0, got {lr}, {decoder_lr}")
        for fraction in observed_fractions:
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"observed_fractions must lie in (0, 1], got {fraction}")
        given = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=[] if given else ["dynamics"])
        try:
            fit = load_fit_checkpoint(fit_checkpoint)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{exc}. Forecasting builds on a stage-1 field fit: run `enf fit --config "
                "configs/fit/<dataset>.yaml` first and pass its checkpoint as --model.fit_checkpoint"
            ) from None
        self.decoder = fit.decoder
        self.fitter = fit.fitter
        self.geometry = fit.geometry
        self.field_spec = fit.field_spec
        self.fit_loss = fit.module.loss_fn
        self.fit_num_sampled_coords = fit.module.num_sampled_coords
        geom_name = getattr(getattr(dynamics, "geometry", None), "name", None)
        if geom_name is not None and geom_name != self.geometry.name:
            raise ValueError(
                f"dynamics geometry {geom_name!r} differs from the fitted decoder's {self.geometry.name!r} "
                f"({fit_checkpoint}); set dynamics.init_args.geometry: {self.geometry.name}"
            )
        ctx = getattr(dynamics, "context_dim", None)
        if ctx is not None and ctx != self.decoder.context_dim:
            raise ValueError(
                f"dynamics context_dim {ctx} differs from the fitted decoder's {self.decoder.context_dim}; "
                f"set dynamics.init_args.context_dim: {self.decoder.context_dim}"
            )
        self.dynamics = dynamics
        if init_checkpoint is not None:
            state = read_checkpoint(init_checkpoint)["state_dict"]
            try:
                self.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(
                    f"init_checkpoint {init_checkpoint} does not fit this model (other dynamics or ENF sizes): "
                    f"{str(exc).splitlines()[0]}"
                ) from None
            log.info("initialised from %s", init_checkpoint)
        if not finetune:
            self.decoder.requires_grad_(False)
            self.fitter.requires_grad_(False)
        self._z0_cache: dict[int, tuple[Tensor, ...]] = {}
        self._eval_rows: dict[str, list[Tensor]] = {}
        self._curves: dict[str, list[float]] = {}
        self._curve_times: list[float] = []

    # ------------------------------------------------------------------------------------ protocol
    @property
    def monitor(self) -> tuple[str, str]:
        return ("val/mse_in", "min")

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(coords [B, N, coord_dim], signal [B, T, N, C])`` of a trajectory batch, validated."""
        missing = [k for k in (keys.COORDS, keys.SIGNAL) if k not in batch]
        if missing:
            raise KeyError(
                f"batch lacks {missing} (has {sorted(batch)}); use enf.data.PDETrajectoryDataModule"
            )
        coords, signal = batch[keys.COORDS], batch[keys.SIGNAL]
        if coords.dim() != 3 or signal.dim() != 4 or coords.shape[:2] != (signal.shape[0], signal.shape[2]):
            raise ValueError(
                f"forecasting needs coords [B, N, coord_dim] and trajectories signal [B, T, N, C], got "
                f"{tuple(coords.shape)} and {tuple(signal.shape)} (frames come from PDEDataModule, "
                "trajectories from PDETrajectoryDataModule)"
            )
        if signal.shape[-1] != self.decoder.num_out:
            raise ValueError(
                f"signal has {signal.shape[-1]} channels but the decoder has {self.decoder.num_out}"
            )
        if not torch.isfinite(signal).all():
            raise ValueError("batch signal contains NaN or inf")
        return coords, signal

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        spec = getattr(dm, "field_spec", None)
        if spec is None or self.field_spec is None:
            return
        fit = self.field_spec
        if (spec.name, spec.num_channels, spec.kind) != (fit.name, fit.num_channels, fit.kind):
            raise ValueError(
                f"the data ({spec.name}: {spec.kind}, {spec.num_channels} channels) is not what the ENF was fitted "
                f"on ({fit.name}: {fit.kind}, {fit.num_channels} channels); use the fit run's dataset"
            )
        data_bg, fit_bg = spec.extra.get("background"), fit.extra.get("background")
        if (data_bg is None) != (fit_bg is None):
            raise ValueError(
                f"the fit run's decoder {'adds' if fit_bg else 'adds no'} a background field but the data module "
                f"has background {'zonal_mean' if data_bg else 'none'}; set data.init_args.background as in the "
                "fit run's config"
            )
        if spec.mean is not None and fit.mean is not None:
            if max(
                abs(a - b) for a, b in zip(spec.mean + spec.std, fit.mean + fit.std, strict=True)
            ) > 1e-4 * (1 + max(abs(v) for v in fit.std)):
                raise ValueError(
                    "the data's normalisation differs from the fit run's (other train file?): "
                    f"mean/std {spec.mean}/{spec.std} vs {fit.mean}/{fit.std}"
                )
        frames = getattr(dm, "num_frames", None)
        if frames is not None and self.hparams.horizon > frames:
            raise ValueError(
                f"horizon {self.hparams.horizon} exceeds the {frames} frames per trajectory of the data; "
                "lower model.horizon or widen data.time_window"
            )

    # ------------------------------------------------------------------------------------ pieces
    def ode_times(self, num_frames: int, *, dtype: torch.dtype | None = None) -> Tensor:
        """``[T]`` ODE times of ``num_frames`` consecutive frames: ``k * frame_dt``."""
        return (
            torch.arange(num_frames, dtype=dtype or torch.float32, device=self.device) * self.hparams.frame_dt
        )

    @torch.enable_grad()
    def encode_initial(
        self, coords: Tensor, state: Tensor, *, index: Tensor | None = None, mask: Tensor | None = None
    ) -> Latents:
        """Latents ``[B, L, dim]`` of initial states ``state [B, N, C]`` (only ``mask``-ed points enter).

        Test-time encoding with the frozen ENF (cached per trajectory ``index`` for full observations),
        or differentiable training-time encoding when fine-tuning.
        """
        train = bool(self.hparams.finetune and self.training)
        use_cache = not self.hparams.finetune and self.training and index is not None and mask is None
        if use_cache and all(int(i) in self._z0_cache for i in index):
            rows = [self._z0_cache[int(i)] for i in index]
            return Latents(*(torch.stack([r[k] for r in rows]).to(self.device) for k in range(3)))
        z = self.fitter.encode(
            self.decoder,
            coords,
            state,
            train=train,
            loss=self.fit_loss,
            subset_size=self.fit_num_sampled_coords if train else None,
            mask=mask,
        )
        if not train:
            z = z.detach()
        if use_cache:
            for k, i in enumerate(index):
                self._z0_cache[int(i)] = tuple(t[k].detach().cpu() for t in z.to_tuple())
        return z

    def forecast(self, z0: Latents, num_frames: int) -> Latents:
        """Rollout ``[B, T, L, dim]`` of ``z0`` over ``num_frames`` frames."""
        hp = self.hparams
        zs = rollout(
            self.dynamics,
            z0,
            self.ode_times(num_frames, dtype=z0.dtype),
            method=hp.method,
            step_size=hp.step_size,
            adjoint=hp.adjoint,
        )
        if not all(bool(torch.isfinite(t).all()) for t in zs.to_tuple()):
            raise FloatingPointError(
                f"the latent rollout diverged (NaN or inf within {num_frames} frames) at step {self.global_step}: "
                "lower model.lr or dynamics.init_args.velocity_scale, or integrate more finely "
                "(model.method rk4, model.step_size 0.25)"
            )
        return zs

    def decode(self, coords: Tensor, zs: Latents, *, chunk: int | None = None) -> Tensor:
        """Decode a rollout ``zs [B, T, L, dim]`` at ``coords [B, N, coord_dim]`` -> ``[B, T, N, C]``."""
        num_times = zs.num_times
        flat = zs.map(lambda t: rearrange(t, "b t l d -> (b t) l d"))
        x = repeat(coords, "b n d -> (b t) n d", t=num_times)
        if chunk is None or x.shape[1] <= chunk:
            out = self.decoder(x, flat)
        else:
            out = torch.cat(
                [self.decoder(x[:, s : s + chunk], flat) for s in range(0, x.shape[1], chunk)], dim=1
            )
        return rearrange(out, "(b t) n c -> b t n c", t=num_times)

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        coords, signal = self.unpack(batch)
        horizon = self.hparams.horizon
        if signal.shape[1] < horizon:
            raise ValueError(f"trajectories have {signal.shape[1]} frames, fewer than horizon {horizon}")
        z0 = self.encode_initial(coords, signal[:, 0], index=batch.get(keys.INDEX), mask=batch.get(keys.MASK))
        zs = self.forecast(z0, horizon)
        k = self.hparams.num_sampled_coords
        target = signal[:, :horizon]
        if k is not None and k < coords.shape[1]:
            idx = torch.randperm(coords.shape[1], device=coords.device)[:k]
            coords, target = coords[:, idx], target[:, :, idx]
        pred = self.decode(coords, zs)
        loss = (pred - target).square().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"forecasting loss is {float(loss.detach())} at step {self.global_step}: lower model.lr or "
                "dynamics.init_args.velocity_scale, or use a smaller frame_dt / step_size"
            )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def frame_errors(
        self, batch: Mapping[str, Tensor], *, full: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Per-trajectory per-frame MSE ``[B, T]`` on the physical scale of the rollout of ``batch``.

        The initial state is encoded from ``batch`` (its ``mask`` if any); with ``full`` (the same
        trajectories at another resolution) the rollout is decoded and compared on ``full``'s grid.
        """
        return self.forecast_errors(batch, full=full)["mse"]

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        self._eval_rows.setdefault(stage, []).append(self.frame_errors(batch).cpu())

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        rows = self._eval_rows.pop(stage, [])
        if not rows:
            return
        errors = torch.cat(rows)
        horizon = min(self.hparams.horizon, errors.shape[1])
        self.log(f"{stage}/mse_in", errors[:, :horizon].mean(), sync_dist=True, prog_bar=stage == "val")
        if errors.shape[1] > horizon:
            self.log(f"{stage}/mse_out", errors[:, horizon:].mean(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        groups = [{"params": list(self.dynamics.parameters()), "lr": self.hparams.lr}]
        if self.hparams.finetune:
            enf_params = [p for m in (self.decoder, self.fitter) for p in m.parameters() if p.requires_grad]
            groups.append({"params": enf_params, "lr": self.hparams.decoder_lr})
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)

    @torch.enable_grad()
    def figures(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        """``{"rollout": Figure}``: truth / prediction / error over time with the latent trajectories."""
        if self.field_spec is None:
            return {}
        from enf.plotting.rollout import plot_rollout

        batch = move_batch(batch, self.device)
        coords, signal = self.unpack(batch)
        was_training = self.training
        self.eval()
        try:
            z0 = self.encode_initial(coords[:1], signal[:1, 0], mask=None)
            with torch.no_grad():
                zs = self.forecast(z0, signal.shape[1])
                pred = self.decode(coords[:1], zs, chunk=8192)
        finally:
            self.train(was_training)
        spec = self.field_spec
        fig = plot_rollout(
            spec,
            coords[0].cpu(),
            spec.denormalize(signal[0]).cpu(),
            spec.denormalize(pred[0]).cpu(),
            times=(batch["times"][0] if "times" in batch else self.ode_times(signal.shape[1])).cpu(),
            poses=zs.poses[0].detach().cpu(),
            horizon=self.hparams.horizon,
            title=f"{spec.name or spec.kind} · {self.geometry.name} · step {self.global_step}",
        )
        return {"rollout": fig}

    @property
    def fit_checkpoint(self) -> Path:
        return Path(self.hparams.fit_checkpoint)


def load_forecast_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> ForecastingModule:
    """Rebuild a :class:`~enf.training.ForecastingModule` (eval mode) from a checkpoint of
    ``enf forecast fit``. Its stage-1 fit checkpoint (``model.fit_checkpoint``) must still exist: the
    decoder and fitter are rebuilt from it, then take the forecast checkpoint's weights."""
    path = Path(path)
    hparams = read_checkpoint(path).get("hyper_parameters") or {}
    if "dynamics" not in hparams or "fit_checkpoint" not in hparams:
        raise ValueError(
            f"{path} is not a forecasting checkpoint (no dynamics/fit_checkpoint; write one with "
            "`enf forecast fit --config configs/forecast/<dataset>.yaml`)"
        )
    fit = Path(str(hparams["fit_checkpoint"]))
    if not fit.is_file():
        raise FileNotFoundError(
            f"{path} builds on the field fit {fit}, which does not exist (any more); the forecasting run needs it"
        )
    module = ForecastingModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    module.eval()
    return module
