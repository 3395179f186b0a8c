"""Forecasting speed per PDE dataset: latent ODE rollouts, one stage-2 training step, full-grid decoding.

Synthetic inputs only (random latents, coordinates and targets; no data files, no checkpoints). Sizes come
from ``configs/fit/<dataset>.yaml`` (decoder, number of latents, window) and
``configs/forecast/<dataset>.yaml`` (ODE, solver, frame spacing, batch size); the grid is the dataset's
``small`` preset (``enf.data.pde.get_spec(name).coords``).

1. **rollout**: latent states per second, ``B T / time`` of ``enf.dynamics.rollout(field, z0, times)`` for
   ``B = 8``, ``T = 20`` frames (one solver step per frame), ``euler`` and ``rk4``, under ``no_grad`` and
   with gradients (forward and backward of the sum of all states).
2. **stage-2 step**: rollout over ``--step-frames`` frames (default 10; the config's solver and batch size),
   decode every state at ``--step-coords`` random grid points (default 1024, all points of smaller grids;
   batch and time flattened, as ``ForecastingModule.decode``), MSE against random targets, backward, AdamW
   step on the ODE only (decoder frozen). The configs' own ``horizon``/``num_sampled_coords`` are recorded
   in the JSON (``config_*``) but not used, so that runs stay comparable when the configs change.
3. **decode**: one state (``B = 1``) decoded on the full grid under ``no_grad``: the cost of one forecast
   frame.

Times are the mean and std over ``--repeats`` after one warm-up (CUDA synchronised around each call).
Memory, ``saved``: the total size of the distinct tensor storages autograd saves for the backward (counted
with ``torch.autograd.graph.saved_tensors_hooks``, parameters and buffers excluded), and the largest one:
the activations a step keeps alive, the same on every device. It is a lower bound of the peak (temporaries
freed inside the forward and the backward's own buffers are not in it). For the decode, it is counted in a
grad-enabled forward with gradients to the latents only (decoder frozen, as in stage 2). On CUDA the
allocator peak above the memory in use before the call (``torch.cuda.max_memory_allocated``) is reported
too.

    python experiments/benchmarks/forecast_speed.py [--datasets diffusion_plane ...] [--device cuda] \\
        [--threads 1] [--repeats 5] [--out forecast_speed.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from einops import rearrange, repeat
from torch import Tensor, nn

import enf
from enf.data.pde import get_spec
from enf.dynamics import EquivariantLatentField, rollout
from enf.latents import Latents

DATASETS = (
    "diffusion_plane",
    "navier_stokes_torus",
    "diffusion_sphere",
    "shallow_water_sphere",
    "heated_convection_ball",
)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ROLLOUT_BATCH, ROLLOUT_FRAMES = 8, 20
ROLLOUT_METHODS = ("euler", "rk4")
MIB = 2.0**20


@dataclass(frozen=True)
class Setup:
    """Sizes of one dataset's forecasting run, read from its fit and forecast configs."""

    dataset: str
    decoder_args: dict[str, Any]
    num_latents: int
    window: float | None
    dynamics_args: dict[str, Any]
    horizon: int
    method: str
    step_size: float | None
    frame_dt: float
    num_sampled_coords: int | None
    batch_size: int
    num_channels: int
    grid: Tensor  # [N, coord_dim]


def load_setup(dataset: str, *, configs: Path) -> Setup:
    fit = yaml.safe_load((configs / "fit" / f"{dataset}.yaml").read_text())
    forecast = yaml.safe_load((configs / "forecast" / f"{dataset}.yaml").read_text())
    decoder = fit["model"]["decoder"]
    dynamics = forecast["model"]["dynamics"]
    expected = {"decoder": "enf.EquivariantNeuralField", "dynamics": "enf.dynamics.EquivariantLatentField"}
    for what, block in (("decoder", decoder), ("dynamics", dynamics)):
        if block["class_path"] != expected[what]:
            raise ValueError(
                f"{dataset}: the {what} class_path is {block['class_path']!r}; this benchmark builds "
                f"{expected[what]}"
            )
    fitter = fit["model"]["fitter"]["init_args"]
    model = forecast["model"]
    spec = get_spec(dataset)
    coords = np.asarray(spec.coords(spec.params("small")), dtype=np.float32)
    return Setup(
        dataset=dataset,
        decoder_args=dict(decoder["init_args"]),
        num_latents=int(fitter["num_latents"]),
        window=fitter.get("window"),
        dynamics_args=dict(dynamics["init_args"]),
        horizon=int(model.get("horizon", 10)),
        method=model.get("method", "euler"),
        step_size=model.get("step_size"),
        frame_dt=float(model.get("frame_dt", 1.0)),
        num_sampled_coords=model.get("num_sampled_coords", 1024),
        batch_size=int(forecast["data"]["init_args"]["batch_size"]),
        num_channels=len(spec.channel_names),
        grid=torch.from_numpy(coords.reshape(-1, coords.shape[-1])),
    )


# ------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], *, repeats: int, device: torch.device) -> tuple[float, float]:
    """Mean and std (seconds) of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.mean(times), statistics.stdev(times) if repeats > 1 else 0.0


def saved_bytes(fn: Callable[[], Tensor], *, exclude: nn.Module) -> tuple[float, float, Tensor]:
    """``(total MiB, largest MiB, output)`` of the distinct storages autograd saves while ``fn`` runs.

    Storages of ``exclude``'s parameters and buffers are not counted (they exist without the step). The
    saved tensors stay alive until the backward, so no storage address is reused while counting.
    """
    skip = {t.untyped_storage().data_ptr() for t in [*exclude.parameters(), *exclude.buffers()]}
    sizes: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            sizes[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(sizes.values()) / MIB, max(sizes.values(), default=0) / MIB, out


def cuda_peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Allocator peak above the memory already in use, in MiB, while ``fn`` runs (``None`` off CUDA)."""
    if device.type != "cuda":
        return None
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MIB


# ------------------------------------------------------------------------------------ benchmark
def random_latents(
    geom: enf.geometry.Geometry, *, batch_size: int, setup: Setup, context_dim: int
) -> Latents:
    """``[B, L, dim]`` latents: ``sample_poses``, Gaussian context, the fit config's window."""
    num = setup.num_latents
    window = setup.window if setup.window is not None else geom.default_window(num)
    return Latents(
        poses=geom.sample_poses(batch_size, num),
        context=torch.randn(batch_size, num, context_dim),
        window=torch.full((batch_size, num, 1), float(window)),
    )


def bench_dataset(
    setup: Setup, *, step_frames: int, step_coords: int, device: torch.device, repeats: int, seed: int
) -> dict[str, Any]:
    torch.manual_seed(seed)
    geom = enf.geometry.get(setup.decoder_args["geometry"])
    decoder = enf.EquivariantNeuralField(num_out=setup.num_channels, **setup.decoder_args).to(device)
    field = EquivariantLatentField(**setup.dynamics_args).to(device)
    ctx = decoder.context_dim
    if field.geometry.name != geom.name or field.context_dim != ctx:
        raise ValueError(
            f"{setup.dataset}: the forecast config's dynamics ({field.geometry.name}, context {field.context_dim}) "
            f"do not fit the fit config's decoder ({geom.name}, context {ctx})"
        )
    row: dict[str, Any] = {
        "dataset": setup.dataset,
        "geometry": geom.name,
        "num_latents": setup.num_latents,
        "config_horizon": setup.horizon,
        "config_num_sampled_coords": setup.num_sampled_coords,
    }

    # 1. rollout throughput, B = 8, T = 20, one step per frame
    z0 = random_latents(geom, batch_size=ROLLOUT_BATCH, setup=setup, context_dim=ctx).to(device)
    times = torch.arange(ROLLOUT_FRAMES, dtype=torch.float32, device=device) * setup.frame_dt
    states = ROLLOUT_BATCH * ROLLOUT_FRAMES
    for method in ROLLOUT_METHODS:

        def no_grad_rollout(method: str = method) -> None:
            with torch.no_grad():
                rollout(field, z0, times, method=method)

        def grad_rollout(method: str = method) -> None:
            zs = rollout(field, z0, times, method=method)
            sum(t.sum() for t in zs.to_tuple()).backward()
            field.zero_grad(set_to_none=True)

        for tag, fn in (("nograd", no_grad_rollout), ("grad", grad_rollout)):
            mean, std = timed(fn, repeats=repeats, device=device)
            row[f"rollout_{method}_{tag}_s"], row[f"rollout_{method}_{tag}_std_s"] = mean, std
            row[f"rollout_{method}_{tag}_states_per_s"] = states / mean

    # 2. one stage-2 training step (decoder frozen, AdamW on the ODE)
    decoder.requires_grad_(False)
    opt = torch.optim.AdamW(field.parameters(), lr=1e-3)
    b, horizon = setup.batch_size, step_frames
    num_grid = setup.grid.shape[0]
    k = min(step_coords, num_grid)
    grid = setup.grid.to(device)
    z0 = random_latents(geom, batch_size=b, setup=setup, context_dim=ctx).to(device)
    step_times = torch.arange(horizon, dtype=torch.float32, device=device) * setup.frame_dt
    target = torch.randn(b, horizon, k, setup.num_channels, device=device)

    def step_loss() -> Tensor:
        zs = rollout(field, z0, step_times, method=setup.method, step_size=setup.step_size)
        coords = repeat(grid[torch.randperm(num_grid, device=device)[:k]], "n d -> b n d", b=b)
        flat = zs.map(lambda t: rearrange(t, "b t l d -> (b t) l d"))
        x = repeat(coords, "b n d -> (b t) n d", t=horizon)
        pred = rearrange(decoder(x, flat), "(b t) n c -> b t n c", t=horizon)  # [B, T, k, C]
        return (pred - target).square().mean()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        step_loss().backward()
        opt.step()

    mean, std = timed(train_step, repeats=repeats, device=device)
    total, largest, loss = saved_bytes(step_loss, exclude=nn.ModuleList([decoder, field]))
    loss.backward()
    opt.zero_grad(set_to_none=True)
    row.update(
        step_batch_size=b,
        step_frames=horizon,
        step_method=setup.method,
        step_num_coords=k,
        step_s=mean,
        step_std_s=std,
        step_saved_mib=total,
        step_saved_largest_mib=largest,
        step_cuda_peak_mib=cuda_peak_mib(train_step, device),
    )

    # 3. decoding one state on the full grid
    z1 = random_latents(geom, batch_size=1, setup=setup, context_dim=ctx).to(device)
    full = grid.unsqueeze(0)  # [1, N, coord_dim]

    def decode() -> None:
        with torch.no_grad():
            decoder(full, z1)

    mean, std = timed(decode, repeats=repeats, device=device)
    z1_grad = z1.map(lambda t: t.detach().requires_grad_(True))
    total, largest, _ = saved_bytes(lambda: decoder(full, z1_grad), exclude=decoder)
    row.update(
        grid_num_points=num_grid,
        decode_s=mean,
        decode_std_s=std,
        decode_saved_mib=total,
        decode_saved_largest_mib=largest,
        decode_cuda_peak_mib=cuda_peak_mib(decode, device),
    )
    return row


# ------------------------------------------------------------------------------------ report
def markdown_table(rows: list[dict[str, Any]]) -> str:
    def rate(row: dict[str, Any], method: str) -> str:
        return f"{row[f'rollout_{method}_nograd_states_per_s']:,.0f} / {row[f'rollout_{method}_grad_states_per_s']:,.0f}"

    def ms(row: dict[str, Any], key: str) -> str:
        return f"{1e3 * row[key + '_s']:.1f} ± {1e3 * row[key + '_std_s']:.1f}"

    def mem(row: dict[str, Any], key: str) -> str:
        text = f"{row[key + '_saved_mib']:.1f} ({row[key + '_saved_largest_mib']:.1f})"
        peak = row[key + "_cuda_peak_mib"]
        return text if peak is None else f"{text}; peak {peak:.1f}"

    lines = [
        "| dataset | geometry | L | euler states/s (no grad / grad) | rk4 states/s (no grad / grad) "
        "| step B×T×k | step ms | step saved MiB (largest) | grid N | decode ms | decode saved MiB (largest) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['geometry']} | {r['num_latents']} | {rate(r, 'euler')} | {rate(r, 'rk4')} "
            f"| {r['step_batch_size']}×{r['step_frames']}×{r['step_num_coords']} | {ms(r, 'step')} "
            f"| {mem(r, 'step')} | {r['grid_num_points']} | {ms(r, 'decode')} | {mem(r, 'decode')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after one warm-up")
    parser.add_argument("--step-frames", type=int, default=10, help="rollout frames of the stage-2 step")
    parser.add_argument("--step-coords", type=int, default=1024, help="decoded points per frame in the step")
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="folder holding fit/ and forecast/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.step_frames < 2 or args.step_coords < 1:
        parser.error(
            f"need --step-frames >= 2 and --step-coords >= 1, got {args.step_frames}, {args.step_coords}"
        )
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; use --device cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows = []
    for i, dataset in enumerate(args.datasets):
        setup = load_setup(dataset, configs=args.configs)
        rows.append(
            bench_dataset(
                setup,
                step_frames=args.step_frames,
                step_coords=args.step_coords,
                device=device,
                repeats=args.repeats,
                seed=args.seed + i,
            )
        )
        print(f"{dataset}: done", file=sys.stderr, flush=True)
    table = markdown_table(rows)
    print(table)
    if args.out is not None:
        meta = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "torch": torch.__version__,
            "rollout_batch_size": ROLLOUT_BATCH,
            "rollout_frames": ROLLOUT_FRAMES,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "results": rows, "table": table}, indent=2))


if __name__ == "__main__":
    main()
