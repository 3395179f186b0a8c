"""Throughput and memory of the decoder and of one Meta-SGD outer step (used by ``enf bench``)."""

from __future__ import annotations

import logging
import resource
import time

import torch

from enf import geometry as geometry_registry
from enf.fitting import MetaSGD
from enf.metrics import per_sample_mse
from enf.nn import EquivariantNeuralField

__all__ = ["run_benchmark"]

log = logging.getLogger(__name__)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_benchmark(
    *,
    geometry: str = "translation2d",
    device: str = "cpu",
    batch_size: int = 8,
    image_size: int = 32,
    num_channels: int = 3,
    num_latents: int = 144,
    k_nearest: int = 9,
    hidden_dim: int = 128,
    num_heads: int = 2,
    context_dim: int = 32,
    value_hidden_dim: int = 0,
    num_coords: int = 1024,
    num_inner_steps: int = 3,
    first_order: bool = False,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float | int | str | bool]:
    """Time decoder forward+backward and one Meta-SGD outer step (forward, inner loop, backward, Adam).

    Returns a flat dict: pairs per second (coordinate-latent pairs actually attended), seconds per outer
    step (median of ``repeats``), peak memory (CUDA allocator peak on GPU; process peak RSS on CPU).
    """
    dev = torch.device(device)
    torch.manual_seed(seed)
    geom = geometry_registry.get(geometry)
    model = EquivariantNeuralField(
        geometry=geom,
        num_out=num_channels,
        context_dim=context_dim,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        k_nearest=k_nearest,
        value_hidden_dim=value_hidden_dim,
    ).to(dev)
    meta = MetaSGD(
        geometry=geom,
        num_latents=num_latents,
        context_dim=context_dim,
        num_inner_steps=num_inner_steps,
        first_order=first_order,
    ).to(dev)
    opt = torch.optim.Adam([*model.parameters(), *meta.parameters()], lr=1e-4)
    side = image_size
    coords_all = geom.sample_coords(batch_size, side * side).to(dev)
    signal_all = torch.rand(batch_size, side * side, num_channels, device=dev)
    pairs = batch_size * num_coords * min(k_nearest or num_latents, num_latents)

    def decoder_fwd_bwd() -> None:
        z = meta.initial(batch_size)
        idx = torch.randperm(side * side, device=dev)[:num_coords]
        out = model(coords_all[:, idx], z)
        per_sample_mse(out, signal_all[:, idx]).sum().backward()

    def outer_step() -> None:
        opt.zero_grad(set_to_none=True)
        z = meta(model, coords_all, signal_all, subset_size=num_coords)
        idx = torch.randperm(side * side, device=dev)[:num_coords]
        loss = per_sample_mse(model(coords_all[:, idx], z), signal_all[:, idx]).mean()
        loss.backward()
        opt.step()

    def timed(fn, n: int) -> list[float]:
        fn()  # warm-up
        out = []
        for _ in range(n):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            out.append(time.perf_counter() - t0)
        return out

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    dec_times = sorted(timed(decoder_fwd_bwd, repeats))
    step_times = sorted(timed(outer_step, repeats))
    dec = dec_times[len(dec_times) // 2]
    step = step_times[len(step_times) // 2]
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
        mem_kind = "cuda_max_allocated"
    else:
        peak = _peak_rss_mib()
        mem_kind = "process_peak_rss"
    return {
        "geometry": geometry,
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "num_coords": num_coords,
        "num_latents": num_latents,
        "k_nearest": k_nearest,
        "hidden_dim": hidden_dim,
        "num_heads": num_heads,
        "value_hidden_dim": value_hidden_dim,
        "num_inner_steps": num_inner_steps,
        "second_order": not first_order,
        "decoder_fwd_bwd_s": dec,
        "decoder_pairs_per_s": pairs / dec,
        "meta_sgd_outer_step_s": step,
        "outer_steps_per_s": 1.0 / step,
        "peak_memory_mib": peak,
        "memory_kind": mem_kind,
    }
