"""Throughput of the latent-cloud classifier: forward + backward (and forward only) of
``enf.downstream.LatentClassifier`` on random latent clouds, in clouds per second, with the autograd memory.

Default: the MNIST setting of ``configs/classify/mnist.yaml`` (se2, 25 latents, context 32, hidden 128,
3 blocks, batch 64), and the pixel CNN of ``configs/classify/mnist_cnn.yaml`` on 28x28 images beside it.

    python experiments/benchmarks/bench_classifier.py [--threads 2] [--num-latents 25 144] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from enf.downstream import LatentClassifier, PixelCNN
from enf.testing import random_latents


def _timed(fn, repeats: int, device: torch.device) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def _saved_mib(fn) -> float:
    """Total size of the distinct storages autograd saves for the backward of ``fn()`` (a loss)."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--geometry", default="se2")
    parser.add_argument("--num-latents", type=int, nargs="+", default=[25, 144])
    parser.add_argument("--context-dim", type=int, default=32)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--k-nearest", type=int, default=None, help="message passing over the k nearest only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    rows = []
    for num_latents in args.num_latents:
        clf = LatentClassifier(geometry=args.geometry, context_dim=args.context_dim, num_classes=10,
                               hidden_dim=args.hidden_dim, k_nearest=args.k_nearest).to(dev)  # fmt: skip
        z = random_latents(args.geometry, args.batch_size, num_latents, args.context_dim, dtype=torch.float32)
        z = z.to(dev)
        labels = torch.randint(0, 10, (args.batch_size,), device=dev)

        def loss(clf=clf, z=z, labels=labels):
            return torch.nn.functional.cross_entropy(clf(z), labels)

        def step(clf=clf, loss=loss):
            clf.zero_grad(set_to_none=True)
            loss().backward()

        def forward(clf=clf, z=z):
            with torch.no_grad():
                clf(z)

        train, infer = _timed(step, args.repeats, dev), _timed(forward, args.repeats, dev)
        rows.append({"model": f"LatentClassifier({args.geometry})", "num_latents": num_latents,
                     "batch_size": args.batch_size, "train_clouds_per_s": args.batch_size / min(train),
                     "train_median_s": statistics.median(train), "forward_clouds_per_s": args.batch_size / min(infer),
                     "saved_mib": _saved_mib(loss)})  # fmt: skip
    cnn = PixelCNN(num_channels=1, num_classes=10).to(dev)
    images = torch.rand(args.batch_size, 28, 28, 1, device=dev)
    labels = torch.randint(0, 10, (args.batch_size,), device=dev)

    def cnn_loss():
        return torch.nn.functional.cross_entropy(cnn(images), labels)

    def cnn_step():
        cnn.zero_grad(set_to_none=True)
        cnn_loss().backward()

    train = _timed(cnn_step, args.repeats, dev)
    rows.append({"model": "PixelCNN 28x28", "batch_size": args.batch_size, "train_clouds_per_s": args.batch_size / min(train),
                 "train_median_s": statistics.median(train), "saved_mib": _saved_mib(cnn_loss)})  # fmt: skip
    print(json.dumps({"threads": torch.get_num_threads(), "device": str(dev), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
