"""The forecasting protocol of :class:`~enf.training.ForecastingModule`: rollouts from encoded initial states,
per-frame errors in and beyond the training horizon, sparse initial states, full-resolution decoding, the
equivariance of the decoded rollout, and the flat ``metrics.json`` keys."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enf.data import keys
from enf.dynamics import rollout
from enf.training.forecast_references import REFERENCES, nearest_fill, rollout_errors, training_mean_field
from enf.training.task import move_batch

__all__ = ["ForecastEvaluation"]

log = logging.getLogger(__name__)


def _obs_key(fraction: float) -> str:
    return f"obs{round(100 * fraction):d}"


def _errors(result: dict[str, float]) -> dict[str, float]:
    """The error entries of an :meth:`ForecastEvaluation.evaluate` result (no counts, no equivariance)."""
    return {
        k: v for k, v in result.items() if k not in ("num_samples", "equivariance_error", "manifold_error")
    }


class ForecastEvaluation:
    """Evaluation methods of the forecasting task (mixed into ``ForecastingModule``, which provides
    ``encode_initial``, ``forecast``, ``decode``, ``frame_errors``, ``ode_times``, ``hparams``)."""

    def _datamodule(self):
        dm = self.attached_datamodule("forecast evaluation without loader=...")
        if not hasattr(dm, "trajectory_loader"):
            raise ValueError(
                "evaluation needs a trainer with an enf.data.PDETrajectoryDataModule, or loader=..."
            )
        return dm

    def mean_field(self, resolution: str = "stored") -> Tensor:
        """``[N, C]`` the training mean field (physical scale) of the attached data at ``resolution``: the
        mean over the training trajectories (the ``num_train`` used) and their in-horizon frames."""
        cache = self.__dict__.setdefault("_mean_fields", {})
        if resolution not in cache:
            dm = self._datamodule()
            spec = self.field_spec
            cache[resolution] = training_mean_field(
                dm.trajectory_loader("train", resolution=resolution, observed_fraction=None),
                horizon=self.hparams.horizon,
                denormalize=spec.denormalize if spec is not None else (lambda t: t),
            )
        return cache[resolution]

    @torch.enable_grad()
    def forecast_errors(
        self,
        batch: Mapping[str, Tensor],
        *,
        full: Mapping[str, Tensor] | None = None,
        weights: Tensor | None = None,
        mean_field: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-trajectory per-frame errors ``{name: [B, T]}`` of the rollout of ``batch`` and of the references.

        The model's errors are those of :func:`~enf.training.forecast_references.rollout_errors` (``mse``,
        ``vrmse``, ``wmse`` with ``weights``), on the physical scale. Each reference's come under its prefix
        (``persistence_mse``, ...): persistence holds the initial state the model was given (its observed
        points filled in by nearest neighbour when ``batch`` has a ``mask``; interpolated the same way onto
        ``full``'s grid); ``meanfield`` (with ``mean_field [N, C]``, on the compared grid) predicts the
        training mean field.
        """
        coords, signal = self.unpack(batch)
        mask = batch.get(keys.MASK)
        z0 = self.encode_initial(coords, signal[:, 0], mask=mask)
        spec = self.field_spec
        denorm = spec.denormalize if spec is not None else (lambda t: t)
        initial_coords, initial = coords, denorm(signal[:, 0])
        if full is not None:
            coords, signal = self.unpack(full)
        with torch.no_grad():
            pred = denorm(self.decode(coords, self.forecast(z0, signal.shape[1]), chunk=8192))
            target = denorm(signal)
            out = rollout_errors(pred, target, weights=weights)
            if mask is not None or full is not None:
                initial = nearest_fill(self.geometry, initial_coords, initial, mask=mask, query=coords)
            held = initial.unsqueeze(1).expand_as(target)
            out.update(
                {f"persistence_{k}": v for k, v in rollout_errors(held, target, weights=weights).items()}
            )
            if mean_field is not None:
                mean = mean_field.to(target).expand_as(target)
                out.update(
                    {f"meanfield_{k}": v for k, v in rollout_errors(mean, target, weights=weights).items()}
                )
        return out

    @torch.enable_grad()
    def evaluate(
        self,
        split: str,
        *,
        loader=None,
        max_samples: int | None = None,
        observed_fraction: float | None = None,
        resolution: str | None = None,
        equivariance: bool = True,
        curve: str | None = None,
        references: bool | None = None,
    ) -> dict[str, float]:
        """Forecast the trajectories of ``split`` from their encoded initial states.

        Returns ``mse_in`` (frames before ``horizon``), ``mse_out`` (later frames, when the data has them),
        the same for ``vrmse`` and (grids with quadrature weights) ``wmse``, and with ``references``
        (default: with the attached data module, not with a given ``loader``) the same errors of
        persistence and of the training mean field (``persistence_in``, ``persistence_vrmse_in``,
        ``meanfield_in``, ...); ``equivariance_error`` and
        ``manifold_error`` (see :meth:`rollout_equivariance_error`) and ``num_samples``. With
        ``observed_fraction`` the initial state is encoded from that fraction of the points (the error is
        on the full field); with ``resolution="full"`` the rollout is decoded on the files' full grid.
        The per-frame MSE is kept under ``curve`` (default ``split``) for :meth:`artifacts`.
        """
        full_loader, weights, mean_field = None, None, None
        references = loader is None if references is None else references
        if loader is None:
            dm = self._datamodule()
            loader = dm.trajectory_loader(split, max_samples=max_samples, observed_fraction=observed_fraction)
            if resolution == "full":
                full_loader = dm.trajectory_loader(split, max_samples=max_samples, resolution="full")
            else:
                weights = getattr(dm.trajectories(split), "weights", None)
            if references:
                mean_field = self.mean_field("full" if resolution == "full" else dm.resolution)
        elif references:
            raise ValueError("references=True needs the attached data module (loader=None)")
        rows: dict[str, list[Tensor]] = {}
        seen, eq_error, manifold = 0, None, None
        fulls = iter(full_loader) if full_loader is not None else None
        frame_times = None  # the data's physical frame times, for the curves
        for batch in self.progress(loader, desc=f"forecast {split}"):
            batch = move_batch(batch, self.device)
            if frame_times is None and "times" in batch:
                frame_times = [float(v) for v in batch["times"][0].cpu()]
            full = move_batch(next(fulls), self.device) if fulls is not None else None
            w = None if weights is None else weights.to(self.device)
            errors = self.forecast_errors(batch, full=full, weights=w, mean_field=mean_field)
            if not references:
                errors = {k: v for k, v in errors.items() if not k.startswith(REFERENCES)}
            for k, v in errors.items():
                rows.setdefault(k, []).append(v.cpu())
            if equivariance and eq_error is None:
                eq_error, manifold = self.rollout_equivariance_error(batch, with_manifold=True)
            seen += errors["mse"].shape[0]
            if max_samples is not None and seen >= max_samples:
                break
        if seen == 0:
            raise ValueError(f"evaluate({split!r}) got an empty data loader")
        tables = {k: torch.cat(v)[: max_samples or None] for k, v in rows.items()}
        per_frame = tables["mse"].mean(0)
        self._curves[curve or split] = [float(v) for v in per_frame]
        if references:
            for ref in REFERENCES:
                if f"{ref}_mse" in tables:
                    self._curves[f"{curve or split}_{ref}"] = [float(v) for v in tables[f"{ref}_mse"].mean(0)]
        self._curve_times = frame_times or [float(v) for v in self.ode_times(per_frame.numel()).cpu()]
        horizon = min(self.hparams.horizon, per_frame.numel())
        out: dict[str, float] = {}
        for name, table in tables.items():
            stem = name[: -len("_mse")] if name.endswith("_mse") and name != "mse" else name
            out[f"{stem}_in"] = float(table[:, :horizon].mean())
            if per_frame.numel() > horizon:
                out[f"{stem}_out"] = float(table[:, horizon:].mean())
        if eq_error is not None:
            out["equivariance_error"] = eq_error
            out["manifold_error"] = manifold
        out["num_samples"] = float(tables["mse"].shape[0])
        return out

    @torch.enable_grad()
    def rollout_equivariance_error(
        self, batch: Mapping[str, Tensor], *, num_coords: int = 256, with_manifold: bool = False
    ) -> float | tuple[float, float]:
        """``max |f(g x; rollout(g z0)) - f(x; rollout(z0))|`` over the frames, float64, one random ``g`` per
        trajectory, ``z0`` encoded from ``batch``, random coordinates of the domain. With ``with_manifold``
        also the largest :meth:`~enf.geometry.Geometry.manifold_error` of the poses of both rollouts (0 on
        flat pose spaces)."""
        coords, signal = self.unpack(batch)
        z0 = self.encode_initial(coords, signal[:, 0], mask=batch.get(keys.MASK)).to(torch.float64)
        gen = torch.Generator().manual_seed(0)
        decoder = copy.deepcopy(self.decoder).double()
        dynamics = copy.deepcopy(self.dynamics).double()
        geom = self.geometry
        b = z0.batch_size
        g = geom.sample_group(b, generator=gen, dtype=torch.float64).to(device=self.device)
        x = geom.sample_coords(b, num_coords, generator=gen, dtype=torch.float64).to(self.device)
        times = self.ode_times(signal.shape[1], dtype=torch.float64)
        hp = self.hparams
        with torch.no_grad():
            zs = rollout(dynamics, z0, times, method=hp.method, step_size=hp.step_size)
            zs_g = rollout(dynamics, z0.transform(geom, g), times, method=hp.method, step_size=hp.step_size)
            gx = geom.act_coords(g, x)
            errors = [
                (decoder(gx, zs_g.at_time(t)) - decoder(x, zs.at_time(t))).abs().max()
                for t in range(len(times))
            ]
            error = float(torch.stack(errors).max())
            if not with_manifold:
                return error
            manifold = max(float(geom.manifold_error(z.poses).max()) for z in (zs, zs_g))
        return error, manifold

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        """``metrics.json`` of a forecast run (errors on the physical scale, per point and frame):

        ``mse_train_in``/``mse_train_out`` (up to ``num_train_eval`` training trajectories),
        ``mse_test_in``/``mse_test_out``, ``mse_test_in_obs<P>``/``mse_test_out_obs<P>`` for every
        ``observed_fractions`` entry (P = percent of the initial state's points observed), and where the
        files store a full-resolution grid ``mse_test_in_fullres``/``mse_test_out_fullres``. Beside each:
        ``vrmse_*`` (variance-normalised RMSE), ``wmse_*`` (quadrature-weighted MSE, grids with weights)
        and the same errors of the trivial references, ``persistence_*`` (the initial state held; from
        sparse or coarser initial states, filled in by nearest neighbour) and ``meanfield_*`` (the training
        mean field): e.g. ``persistence_test_in``, ``persistence_vrmse_test_in``, ``meanfield_test_in_obs5``.
        ``equivariance_error`` and ``manifold_error`` (test rollouts), ``num_train_eval``, ``num_test``,
        ``num_train_used`` and ``num_val`` (training and validation trajectories), ``horizon``.
        """
        self._curves = {}
        train = self.evaluate("train", max_samples=num_train_eval, equivariance=False)
        num_train_used, num_val, _ = self._datamodule().split_sizes
        metrics: dict[str, float] = {
            "num_train_eval": train.pop("num_samples"),
            "num_train_used": float(num_train_used),
            "num_val": float(num_val),
            "horizon": float(self.hparams.horizon),
        }
        metrics.update({self.metric_key(k, "train"): v for k, v in train.items()})
        metrics.update(self.test_metrics(num_test_eval=num_test_eval))
        for fraction in self.hparams.observed_fractions:
            tag = _obs_key(fraction)
            res = self.evaluate(
                "test",
                max_samples=num_test_eval,
                observed_fraction=fraction,
                equivariance=False,
                curve=f"test_{tag}",
            )
            metrics.update({f"{self.metric_key(k, 'test')}_{tag}": v for k, v in _errors(res).items()})
        dm = self._datamodule()
        if dm.resolution == "stored" and dm.has_full_resolution():
            res = self.evaluate(
                "test", max_samples=num_test_eval, resolution="full", equivariance=False, curve="test_fullres"
            )
            metrics.update({f"{self.metric_key(k, 'test')}_fullres": v for k, v in _errors(res).items()})
        for key in ("test_in", "test_out"):
            if f"mse_{key}" not in metrics:
                continue
            for ref in REFERENCES:
                if metrics.get(f"{ref}_{key}", float("inf")) <= metrics[f"mse_{key}"]:
                    log.warning(
                        "the forecast does not beat %s on %s: MSE %.4g vs %.4g (the model is not working on "
                        "this data)",
                        ref,
                        key,
                        metrics[f"mse_{key}"],
                        metrics[f"{ref}_{key}"],
                    )
        return metrics

    def metric_key(self, name: str, split: str) -> str:
        """``mse_in`` of ``split`` -> ``mse_<split>_in``, ``persistence_vrmse_in`` ->
        ``persistence_vrmse_<split>_in`` (the documented metrics.json keys)."""
        quantity, _, horizon = name.rpartition("_")
        return f"{quantity}_{split}_{horizon}" if quantity and horizon in ("in", "out") else f"{name}_{split}"

    def artifacts(self) -> dict[str, Any]:
        """``mse_per_frame.json`` (ODE times, horizon, per-frame MSE of every evaluation) and its plot."""
        if not self._curves:
            return {}
        from enf.plotting.rollout import plot_error_curves

        data = {"times": self._curve_times, "horizon": self.hparams.horizon, "curves": dict(self._curves)}
        fig = plot_error_curves(
            {k: np.asarray(v) for k, v in self._curves.items()},
            times=self._curve_times,
            horizon=self.hparams.horizon,
            title=f"{getattr(self.field_spec, 'name', '')} · {self.geometry.name} · MSE per frame",
        )
        return {"mse_per_frame.json": data, "mse_per_frame.png": fig}
