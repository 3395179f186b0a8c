"""The forecasting protocol of :class:`~enf.training.ForecastingModule`: rollouts from encoded initial states,
per-frame errors in and beyond the training horizon, sparse initial states, full-resolution decoding, the
equivariance of the decoded rollout, and the flat ``metrics.json`` keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enf.data import keys
from enf.dynamics import rollout
from enf.training.task import move_batch

__all__ = ["ForecastEvaluation"]


def _obs_key(fraction: float) -> str:
    return f"obs{round(100 * fraction):d}"


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
    ) -> dict[str, float]:
        """Forecast the trajectories of ``split`` from their encoded initial states.

        Returns ``mse_in`` (frames before ``horizon``), ``mse_out`` (later frames, when the data has
        them), ``equivariance_error`` (see :meth:`rollout_equivariance_error`) and ``num_samples``. With
        ``observed_fraction`` the initial state is encoded from that fraction of the points (the error is
        on the full field); with ``resolution="full"`` the rollout is decoded on the files' full grid.
        The per-frame MSE is kept under ``curve`` (default ``split``) for :meth:`artifacts`.
        """
        full_loader = None
        if loader is None:
            dm = self._datamodule()
            loader = dm.trajectory_loader(split, max_samples=max_samples, observed_fraction=observed_fraction)
            if resolution == "full":
                full_loader = dm.trajectory_loader(split, max_samples=max_samples, resolution="full")
        rows, seen, eq_error = [], 0, None
        fulls = iter(full_loader) if full_loader is not None else None
        for batch in loader:
            batch = move_batch(batch, self.device)
            full = move_batch(next(fulls), self.device) if fulls is not None else None
            rows.append(self.frame_errors(batch, full=full).cpu())
            if equivariance and eq_error is None:
                eq_error = self.rollout_equivariance_error(batch)
            seen += rows[-1].shape[0]
            if max_samples is not None and seen >= max_samples:
                break
        if seen == 0:
            raise ValueError(f"evaluate({split!r}) got an empty data loader")
        errors = torch.cat(rows)[: max_samples or None]
        per_frame = errors.mean(0)
        self._curves[curve or split] = [float(v) for v in per_frame]
        self._curve_times = [float(v) for v in self.ode_times(per_frame.numel()).cpu()]
        horizon = min(self.hparams.horizon, per_frame.numel())
        out = {"mse_in": float(errors[:, :horizon].mean())}
        if per_frame.numel() > horizon:
            out["mse_out"] = float(errors[:, horizon:].mean())
        if eq_error is not None:
            out["equivariance_error"] = eq_error
        out["num_samples"] = float(errors.shape[0])
        return out

    @torch.enable_grad()
    def rollout_equivariance_error(self, batch: Mapping[str, Tensor], *, num_coords: int = 256) -> float:
        """``max |f(g x; rollout(g z0)) - f(x; rollout(z0))|`` over the frames, float64, one random ``g`` per
        trajectory, ``z0`` encoded from ``batch``, random coordinates of the domain."""
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
        return float(torch.stack(errors).max())

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        """``metrics.json`` of a forecast run (all MSE on the physical scale, per point and frame):

        ``mse_train_in``/``mse_train_out`` (up to ``num_train_eval`` training trajectories),
        ``mse_test_in``/``mse_test_out``, ``mse_test_in_obs<P>``/``mse_test_out_obs<P>`` for every
        ``observed_fractions`` entry (P = percent of the initial state's points observed), and where the
        files store a full-resolution grid ``mse_test_in_fullres``/``mse_test_out_fullres``;
        ``equivariance_error`` (test rollouts), ``num_train_eval``, ``num_test``, ``horizon``.
        """
        self._curves = {}
        train = self.evaluate("train", max_samples=num_train_eval, equivariance=False)
        metrics: dict[str, float] = {
            "num_train_eval": train.pop("num_samples"),
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
            metrics.update(
                {f"{self.metric_key(k, 'test')}_{tag}": v for k, v in res.items() if k.startswith("mse_")}
            )
        dm = self._datamodule()
        if dm.resolution == "stored" and dm.has_full_resolution():
            res = self.evaluate(
                "test", max_samples=num_test_eval, resolution="full", equivariance=False, curve="test_fullres"
            )
            metrics.update(
                {f"{self.metric_key(k, 'test')}_fullres": v for k, v in res.items() if k.startswith("mse_")}
            )
        return metrics

    def metric_key(self, name: str, split: str) -> str:
        """``mse_in`` of ``split`` -> ``mse_<split>_in`` (the keys of DESIGN.md section 3)."""
        quantity, _, horizon = name.partition("_")
        return f"{quantity}_{split}_{horizon}" if horizon else f"{name}_{split}"

    def artifacts(self) -> dict[str, Any]:
        """``mse_per_frame.json`` (ODE times, horizon, per-frame MSE of every evaluation) and its plot."""
        if not self._curves:
            return {}
        from enf.plotting_rollout import plot_error_curves

        data = {"times": self._curve_times, "horizon": self.hparams.horizon, "curves": dict(self._curves)}
        fig = plot_error_curves(
            {k: np.asarray(v) for k, v in self._curves.items()},
            times=self._curve_times,
            horizon=self.hparams.horizon,
            title=f"{getattr(self.field_spec, 'name', '')} · {self.geometry.name} · MSE per frame",
        )
        return {"mse_per_frame.json": data, "mse_per_frame.png": fig}
