"""``enf forecast --ckpt ... --data ...``: forecast the trajectories of a file from their initial states.

Encodes frame 0 of every trajectory (all points or a seeded random subset), rolls the latents out for
``--horizon`` frames, decodes on the file's grid (or its full-resolution grid), writes the predictions to an
HDF5 file (atomic) and figures (truth / prediction / error over time as PNG and GIF, MSE per frame).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from enf import __version__
from enf.cli.encode import check_writable
from enf.data.hdf5 import write_h5
from enf.training.forecasting_module import load_forecast_checkpoint

__all__ = ["forecast_file", "forecast_main"]

log = logging.getLogger(__name__)


def _run_time_window(ckpt: Path) -> tuple[int, int | None] | None:
    """``data.init_args.time_window`` of the run that wrote ``ckpt`` (its ``config.yaml``), if any."""
    config = ckpt.resolve().parent.parent / "config.yaml"
    if not config.is_file():
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    window = (data.get("init_args") or {}).get("time_window")
    return None if window is None else (int(window[0]), None if window[1] is None else int(window[1]))


def forecast_file(
    module,
    data: str | Path,
    *,
    horizon: int | None = None,
    observed_fraction: float | None = None,
    grid: str = "stored",
    time_window: tuple[int, int | None] | None = None,
    seed: int = 0,
    max_trajectories: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Forecast every trajectory of the file ``data`` with a :class:`~enf.training.ForecastingModule`.

    Returns ``fields [S, T, *grid, C]`` (physical scale), ``coords [*grid, coord_dim]``, ``times [T]`` (the
    file's physical frame times, continued at its frame spacing beyond its last frame), ``ode_times [T]``
    (the model's integration times), ``poses``/``context``/``window`` ``[S, T, L, dim]``,
    ``mse_per_frame [S, T']`` against the ``T' = min(T, frames in the file)`` frames with ground truth, and
    ``observed [S, N]`` (points of the initial state used). ``horizon`` defaults to the number of frames in
    the file; a longer one forecasts past the data (logged), where there is no error to measure.
    """
    from enf.data.pde.dataset import PDETrajectories

    spec = module.field_spec
    normalize = None if spec is None or spec.mean is None else (np.asarray(spec.mean), np.asarray(spec.std))
    common = dict(time_window=time_window, normalize=normalize, num_trajectories=max_trajectories)
    stored = PDETrajectories(data, observed_fraction=observed_fraction, mask_seed=seed, **common)
    target = stored if grid == "stored" else PDETrajectories(data, resolution="full", **common)
    num_frames = target.num_frames
    horizon = num_frames if horizon is None else horizon
    if horizon < 1:
        raise ValueError(f"--horizon must be >= 1, got {horizon}")
    if horizon > num_frames:
        log.info(
            "--horizon %d goes past the %d frames of %s: frames %d-%d are forecast without ground truth "
            "(mse_per_frame covers the first %d; times continue at the file's frame spacing)",
            horizon, num_frames, data, num_frames, horizon - 1, num_frames,
        )  # fmt: skip
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("fields", "poses", "context", "window", "mse", "observed")
    }
    device = module.device
    for start in tqdm(range(0, len(stored), batch_size), desc="forecast", disable=not progress):
        ids = range(start, min(start + batch_size, len(stored)))
        items = [stored[i] for i in ids]
        coords = torch.stack([it["coords"] for it in items]).to(device)
        state = torch.stack([it["fields"][0] for it in items]).to(device)
        mask = torch.stack([it["mask"] for it in items]).to(device) if observed_fraction is not None else None
        z0 = module.encode_initial(coords, state, mask=mask)
        with torch.no_grad():
            zs = module.forecast(z0, horizon)
            full = [target[i] for i in ids]
            x = torch.stack([it["coords"] for it in full]).to(device)
            pred = module.decode(x, zs, chunk=8192)
            truth = torch.stack([it["fields"] for it in full]).to(device)
            if spec is not None:
                pred, truth = spec.denormalize(pred), spec.denormalize(truth)
            t_common = min(horizon, truth.shape[1])
            out["mse"].append(
                (pred[:, :t_common] - truth[:, :t_common]).square().mean(dim=(2, 3)).cpu().numpy()
            )
        out["fields"].append(pred.cpu().numpy())
        for name, value in zip(("poses", "context", "window"), zs.to_tuple(), strict=True):
            out[name].append(value.cpu().numpy())
        obs = mask if mask is not None else torch.ones(state.shape[:2], dtype=torch.bool, device=device)
        out["observed"].append(obs.cpu().numpy())
    grid_shape = target.grid_shape
    fields = np.concatenate(out["fields"])
    result = {k: np.concatenate(v) for k, v in out.items() if k not in ("fields", "mse")}
    result["fields"] = fields.reshape(fields.shape[0], fields.shape[1], *grid_shape, fields.shape[-1])
    result["mse_per_frame"] = np.concatenate(out["mse"])
    result["coords"] = target.coords.numpy().reshape(*grid_shape, -1)
    result["times"] = physical_times(target.times.numpy(), horizon)
    result["ode_times"] = module.ode_times(horizon).cpu().numpy()
    return result


def physical_times(times: np.ndarray, num_frames: int) -> np.ndarray:
    """The first ``num_frames`` of the frame times ``times [T]``, continued at the last frame spacing."""
    times = np.asarray(times, dtype=np.float64)
    if num_frames <= len(times):
        return times[:num_frames]
    step = times[-1] - times[-2] if len(times) > 1 else 1.0
    return np.concatenate([times, times[-1] + step * np.arange(1, num_frames - len(times) + 1)])


def forecast_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="enf forecast",
        description="Forecast PDE trajectories with a trained forecasting run "
        "(train one with `enf forecast fit --config configs/forecast/<dataset>.yaml`).",
        allow_abbrev=False,
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of an `enf forecast fit` run")
    parser.add_argument("--data", required=True, help="a trajectory file, e.g. data/diffusion_plane/test.h5")
    parser.add_argument("--out", default="forecast.h5", help="HDF5 file to write (default: forecast.h5)")
    parser.add_argument(
        "--observed-fraction", type=float, default=None, help="encode from this fraction of points"
    )
    parser.add_argument("--horizon", type=int, default=None, help="frames to forecast (default: the file's)")
    parser.add_argument("--grid", choices=["stored", "full"], default="stored", help="decode on this grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the observed subsets")
    parser.add_argument("--max-trajectories", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--figures", default=None, help="figure folder (default: <out stem>_figures/)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.observed_fraction is not None and not 0.0 < args.observed_fraction <= 1.0:
            raise ValueError(f"--observed-fraction must be in (0, 1], got {args.observed_fraction}")
        out = check_writable(args.out)
        ckpt = Path(args.ckpt)
        module = load_forecast_checkpoint(ckpt, map_location=args.device)
        t0 = time.perf_counter()
        result = forecast_file(
            module,
            args.data,
            horizon=args.horizon,
            observed_fraction=args.observed_fraction,
            grid=args.grid,
            time_window=_run_time_window(ckpt),
            seed=args.seed,
            max_trajectories=args.max_trajectories,
            batch_size=args.batch_size,
        )
    except (ValueError, FileNotFoundError, IndexError) as exc:
        raise SystemExit(f"enf forecast: error: {exc}") from None
    elapsed = time.perf_counter() - t0
    horizon = module.hparams.horizon
    mse = result["mse_per_frame"]
    summary = {
        "num_trajectories": int(mse.shape[0]),
        "mse_in": float(mse[:, :horizon].mean()),
        "forecast_time_s": elapsed,
    }
    if mse.shape[1] > horizon:
        summary["mse_out"] = float(mse[:, horizon:].mean())
    attrs = {
        "checkpoint": str(ckpt),
        "data": str(args.data),
        "grid": args.grid,
        "observed_fraction": -1.0 if args.observed_fraction is None else args.observed_fraction,
        "horizon_trained": horizon,
        "geometry": module.geometry.name,
        "channel_names": list(module.field_spec.channel_names) if module.field_spec else [],
        "enf_version": __version__,
        "summary": json.dumps(summary),
    }
    write_h5(out, result, attrs)
    figures = Path(args.figures) if args.figures else out.with_name(out.stem + "_figures")
    _figures(module, result, args.data, figures, grid=args.grid, time_window=_run_time_window(ckpt))
    summary["out"] = str(out)
    summary["figures"] = str(figures)
    print(json.dumps(summary, indent=2))


def _figures(module, result, data, folder: Path, *, grid: str, time_window) -> None:
    """Rollout PNG + GIF of the first trajectory and the MSE per frame of all of them."""
    from enf.data.pde.dataset import PDETrajectories
    from enf.plotting import save_figure
    from enf.plotting.rollout import plot_error_curves, plot_rollout, save_rollout_gif

    spec = module.field_spec
    if spec is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    truth_ds = PDETrajectories(data, time_window=time_window, resolution=grid, num_trajectories=1)
    if tuple(truth_ds.grid_shape) != tuple(spec.grid_shape or ()):
        spec = dataclasses.replace(spec, grid_shape=tuple(truth_ds.grid_shape))
    truth = truth_ds[0]["fields"]  # physical scale (not normalised)
    pred = torch.from_numpy(result["fields"][0]).flatten(1, -2)
    t = min(truth.shape[0], pred.shape[0])
    coords = truth_ds.coords
    times = torch.from_numpy(result["times"][:t])
    poses = torch.from_numpy(result["poses"][0, :t])
    horizon = module.hparams.horizon
    fig = plot_rollout(spec, coords, truth[:t], pred[:t], times=times, poses=poses, horizon=horizon)
    save_figure(fig, folder / "rollout.png")
    save_rollout_gif(
        folder / "rollout.gif", spec, coords, truth[:t], pred[:t], times=times, poses=poses, horizon=horizon
    )
    mse = result["mse_per_frame"]
    fig = plot_error_curves({"forecast": mse.mean(0)}, times=result["times"][: mse.shape[1]], horizon=horizon)
    save_figure(fig, folder / "mse_per_frame.png")
