"""Throughput and memory of the decoder and of one Meta-SGD outer step (used by ``enf bench``).

Defaults are the JAX reference's CIFAR setting: 32x32 RGB (``N = 1024`` sampled pixels), ``L = 144`` latents,
``k = 9`` nearest, context width 64, 2 heads x 128 per head (``hidden_dim = 256``, the total width), batch 8,
3 inner steps, second-order gradients, Adam. Times are the **minimum** over ``repeats`` (the machine may be
shared; the median is reported too). :func:`run_latent_sweep` times the attention at several latent counts
at fixed ``k``: with gathered k-nearest attention the time should stay roughly flat in ``L``.
"""

from __future__ import annotations

import logging
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from enf import geometry as geometry_registry
from enf.cli.allocator import allocator_setting
from enf.fitting import MetaSGD
from enf.metrics import per_sample_mse
from enf.nn import EquivariantNeuralField

__all__ = ["run_benchmark", "run_latent_sweep"]

log = logging.getLogger(__name__)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(fn: Callable[[], None], repeats: int, device: torch.device) -> tuple[list[float], float]:
    """Wall times of ``repeats`` calls after one warm-up call, and the minor page faults per timed call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    fn()
    faults = _minor_faults()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, (_minor_faults() - faults) / repeats


def _matmul_flops(fn: Callable[[], None]) -> int:
    """Matmul FLOPs of one call of ``fn`` (``torch.utils.flop_counter.FlopCounterMode``: mm, bmm, addmm,
    baddbmm, matmuls inside einsum and linear layers; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def sgemm_rate(device: torch.device, *, size: int = 2048, repeats: int = 3) -> float:
    """The machine's float32 matmul rate in GFLOP/s (``size``-square ``torch.mm``, best of ``repeats``): the
    roof the outer step's matmul rate is compared with."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = min(_timed(lambda: torch.mm(a, b), repeats, device)[0])
    return 2 * size**3 / best / 1e9


def run_benchmark(
    *,
    geometry: str = "translation2d",
    device: str = "cpu",
    batch_size: int = 8,
    image_size: int = 32,
    num_channels: int = 3,
    num_latents: int = 144,
    k_nearest: int | None = 9,
    k_nearest_mode: str = "auto",
    hidden_dim: int = 256,
    num_heads: int = 2,
    context_dim: int = 64,
    value_hidden_dim: int = 0,
    num_coords: int = 1024,
    num_inner_steps: int = 3,
    first_order: bool = False,
    repeats: int = 5,
    num_threads: int | None = None,
    outer_step: bool = True,
    seed: int = 0,
    decoder_options: dict[str, Any] | None = None,
    fitter_options: dict[str, Any] | None = None,
    matmul_precision: str | None = None,
) -> dict[str, Any]:
    """Time attention and decoder forward+backward, and one Meta-SGD outer step.

    The outer step is the inner loop (``num_inner_steps`` steps on ``num_coords`` random pixels, second
    order unless ``first_order``), the outer forward on fresh pixels, backward and an Adam step.
    ``num_threads`` sets ``torch.set_num_threads`` for the run (restored afterwards); ``outer_step=False``
    skips the Meta-SGD timing. ``decoder_options`` / ``fitter_options`` are extra keyword arguments of
    :class:`~enf.EquivariantNeuralField` / :class:`~enf.fitting.MetaSGD` (the recipe options, e.g.
    ``{"head_hidden_dim": 64}``); ``matmul_precision`` runs under ``torch.set_float32_matmul_precision``
    (restored afterwards).

    Returns a flat dict: ``*_s`` times (minimum of ``repeats``; ``*_median_s`` the median), pairs per second
    (coordinate-latent pairs attended: ``B N min(k, L)``), the matmul work of one outer step
    (``outer_step_matmul_gflop``, counted by ``FlopCounterMode``, forward and both backward passes) and the
    rate it runs at (``outer_step_matmul_gflop_per_s``), the minor page faults per outer step
    (``outer_step_page_faults``; see :mod:`enf.cli.allocator`) and the allocator setting, peak memory (CUDA allocator peak on GPU; process
    peak RSS on CPU).
    """
    dev = torch.device(device)
    previous_threads = torch.get_num_threads()
    previous_precision = torch.get_float32_matmul_precision()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    if matmul_precision is not None:
        torch.set_float32_matmul_precision(matmul_precision)
    try:
        torch.manual_seed(seed)
        geom = geometry_registry.get(geometry)
        model = EquivariantNeuralField(
            geometry=geom,
            num_out=num_channels,
            context_dim=context_dim,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            k_nearest=k_nearest,
            k_nearest_mode=k_nearest_mode,
            value_hidden_dim=value_hidden_dim,
            **(decoder_options or {}),
        ).to(dev)
        meta = MetaSGD(
            geometry=geom,
            num_latents=num_latents,
            context_dim=context_dim,
            num_inner_steps=num_inner_steps,
            first_order=first_order,
            **(fitter_options or {}),
        ).to(dev)
        opt = torch.optim.Adam([*model.parameters(), *meta.parameters()], lr=1e-4)
        num_pixels = image_size * image_size
        coords_all = geom.sample_coords(batch_size, num_pixels).to(dev)
        signal_all = torch.rand(batch_size, num_pixels, num_channels, device=dev)
        pairs = batch_size * num_coords * min(k_nearest or num_latents, num_latents)

        def attention_fwd_bwd() -> None:
            z = meta.initial(batch_size)
            idx = torch.randperm(num_pixels, device=dev)[:num_coords]
            model.attention(coords_all[:, idx], z).square().mean().backward()

        def decoder_fwd_bwd() -> None:
            z = meta.initial(batch_size)
            idx = torch.randperm(num_pixels, device=dev)[:num_coords]
            out = model(coords_all[:, idx], z)
            per_sample_mse(out, signal_all[:, idx]).sum().backward()

        def meta_outer_step() -> None:
            opt.zero_grad(set_to_none=True)
            z = meta(model, coords_all, signal_all, subset_size=num_coords)
            idx = torch.randperm(num_pixels, device=dev)[:num_coords]
            loss = per_sample_mse(model(coords_all[:, idx], z), signal_all[:, idx]).mean()
            loss.backward()
            opt.step()

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        att, _ = _timed(attention_fwd_bwd, repeats, dev)
        dec, _ = _timed(decoder_fwd_bwd, repeats, dev)
        # minor page faults per timed outer step: memory the allocator maps afresh
        step, step_faults = _timed(meta_outer_step, repeats, dev) if outer_step else (None, None)
        step_flops = _matmul_flops(meta_outer_step) if outer_step else None
        sgemm = sgemm_rate(dev) if outer_step else None
        threads = torch.get_num_threads()
        num_parameters = sum(p.numel() for p in [*model.parameters(), *meta.parameters()])
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_float32_matmul_precision(previous_precision)
    if dev.type == "cuda":
        peak, mem_kind = torch.cuda.max_memory_allocated(dev) / 2**20, "cuda_max_allocated"
    else:
        peak, mem_kind = _peak_rss_mib(), "process_peak_rss"
    result: dict[str, float | int | str | bool | None] = {
        "geometry": geometry,
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "threads": threads,
        "batch_size": batch_size,
        "num_coords": num_coords,
        "num_latents": num_latents,
        "k_nearest": k_nearest,
        "k_nearest_mode": k_nearest_mode,
        "context_dim": context_dim,
        "hidden_dim": hidden_dim,
        "num_heads": num_heads,
        "value_hidden_dim": value_hidden_dim,
        "num_inner_steps": num_inner_steps,
        "second_order": not first_order,
        "decoder_options": dict(decoder_options or {}),
        "fitter_options": dict(fitter_options or {}),
        "matmul_precision": matmul_precision or previous_precision,
        "allocator": allocator_setting(),
        "num_parameters": num_parameters,
        "repeats": repeats,
        "attention_fwd_bwd_s": min(att),
        "attention_fwd_bwd_median_s": statistics.median(att),
        "decoder_fwd_bwd_s": min(dec),
        "decoder_fwd_bwd_median_s": statistics.median(dec),
        "decoder_pairs_per_s": pairs / min(dec),
        "meta_sgd_outer_step_s": None if step is None else min(step),
        "meta_sgd_outer_step_median_s": None if step is None else statistics.median(step),
        "outer_steps_per_s": None if step is None else 1.0 / min(step),
        "outer_step_page_faults": None if step is None else step_faults,
        "outer_step_matmul_gflop": None if step is None else step_flops / 1e9,
        "outer_step_matmul_gflop_per_s": None if step is None else step_flops / 1e9 / min(step),
        "sgemm_gflop_per_s": sgemm,
        "peak_memory_mib": peak,
        "memory_kind": mem_kind,
    }
    log.info("benchmark %s", result)
    return result


def run_latent_sweep(
    *,
    num_latents: Sequence[int] = (144, 576),
    k_nearest: int = 9,
    outer_step: bool = False,
    **kwargs,
) -> dict[str, float | int | str | bool | None]:
    """:func:`run_benchmark` at each latent count (fixed ``k_nearest``), flattened into one dict.

    Keys ``L{n}_{metric}`` for every count ``n`` and metric of :func:`run_benchmark`, plus
    ``attention_growth`` / ``decoder_growth``: the time at the largest count over the time at the smallest
    (about 1 when the cost is ``O(N k)``; ``L_max / L_min`` for dense attention). Other keyword arguments go
    to :func:`run_benchmark`.
    """
    counts = sorted(num_latents)
    if len(counts) < 2 or counts[0] < 1:
        raise ValueError(f"num_latents must hold at least two positive counts, got {list(num_latents)}")
    out: dict[str, float | int | str | bool | None] = {"sweep_num_latents": ",".join(map(str, counts))}
    runs = {}
    for n in counts:
        runs[n] = run_benchmark(num_latents=n, k_nearest=k_nearest, outer_step=outer_step, **kwargs)
        for key, value in runs[n].items():
            out[f"L{n}_{key}"] = value
    lo, hi = runs[counts[0]], runs[counts[-1]]
    out["attention_growth"] = hi["attention_fwd_bwd_s"] / lo["attention_fwd_bwd_s"]
    out["decoder_growth"] = hi["decoder_fwd_bwd_s"] / lo["decoder_fwd_bwd_s"]
    if outer_step:
        out["outer_step_growth"] = hi["meta_sgd_outer_step_s"] / lo["meta_sgd_outer_step_s"]
    return out
