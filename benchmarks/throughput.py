"""Training throughput of aeclust's loop against a bare hand-written torch loop, in one run.

Both train the same d-500-500-2000-10 MLP autoencoder (MSE, Adam, lr 1e-3) on the same random
data at the same batch size, after a warm-up; the figure is samples per second over the timed
epochs. Run:  .venv/bin/python benchmarks/throughput.py [--batch-size 256] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.nn import functional as F

from aeclust._utils import autocast, resolve_device, resolve_precision
from aeclust.nn import MLPAutoencoder
from aeclust.pretrain import PretrainConfig, pretrain_autoencoder


def bare_loop(ae, x, epochs, batch_size, dtype, device):
    """The reference: the shortest correct torch training loop."""
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, device=device)
        for i in range(0, n, batch_size):
            xb = x[perm[i : i + batch_size]]
            with autocast(device, dtype):
                loss = F.mse_loss(ae(xb)[1].float(), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def aeclust_loop(ae, x, epochs, batch_size, dtype, device, precision):
    cfg = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3)
    pretrain_autoencoder(ae, x, cfg, autocast_dtype=dtype, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--n-features", type=int, default=784)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    x = torch.rand(args.n_samples, args.n_features, device=device)
    dims = [args.n_features, 500, 500, 2000, 10]
    results: dict[str, list[float]] = {"bare": [], "aeclust": []}
    # Warm-up (allocator, kernels), then alternate the two to spread machine noise evenly.
    bare_loop(MLPAutoencoder(dims).to(device), x, 1, args.batch_size, dtype, device)
    for _ in range(args.repeats):
        for name in ("bare", "aeclust"):
            ae = MLPAutoencoder(dims).to(device)
            start = time.perf_counter()
            if name == "bare":
                bare_loop(ae, x, args.epochs, args.batch_size, dtype, device)
            else:
                aeclust_loop(ae, x, args.epochs, args.batch_size, dtype, device, args.precision)
            results[name].append(args.n_samples * args.epochs / (time.perf_counter() - start))
    best = {k: max(v) for k, v in results.items()}
    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "architecture": dims,
        "samples_per_s_bare": round(best["bare"]),
        "samples_per_s_aeclust": round(best["aeclust"]),
        "ratio": round(best["aeclust"] / best["bare"], 3),
        "all_runs": {k: [round(v) for v in vs] for k, vs in results.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
