"""Samples per second of data-parallel fits with 1 and 2 processes (issue 30).

    python benchmarks/scripts/data_parallel_speed.py --dataset usps --processes 1,2

For each process count P it starts ``torchrun --nproc-per-node P`` on this script's ``worker``
mode, which fits AE+KM (its pretraining), DEC and DCN on the named data set (every process
holds all rows and trains on its block, :mod:`aeclust.distributed`), and prints one JSON line
per fit: wall seconds and the training samples per second (rows x epochs of every stage over the
fit's wall time, counted by ``aeclust.training.tally_training``), plus ACC. torchrun gives each of
P > 1 processes one thread (``OMP_NUM_THREADS=1``); one process keeps torch's default threads,
so both use the whole CPU. The ratio P=2 / P=1 is the scaling on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FITS = {
    "ae-kmeans (pretraining)": ("ae-kmeans", {"pretrain_epochs": 10}),
    "dec": ("dec", {"pretrain_epochs": 2, "max_iter": 2000, "tol": 0.0}),
    "dcn": ("dcn", {"pretrain_epochs": 2, "epochs": 10}),
}


def worker(dataset: str, seed: int) -> None:
    import torch

    from aeclust import distributed
    from aeclust.datasets import load_dataset
    from aeclust.methods.base import build_estimator
    from aeclust.metrics import cluster_accuracy
    from aeclust.training import tally_training

    distributed.init_from_env("cpu")
    rank, size = distributed.world()
    data = load_dataset(dataset)
    for name, (method, params) in FITS.items():
        model = build_estimator(
            method,
            {"n_clusters": data.n_classes, "random_state": seed, **params},
            device="cpu",
            image_shape=data.image_shape,
        )
        start = time.perf_counter()
        with tally_training() as tally:
            model.fit(data.x)
        seconds = time.perf_counter() - start
        with distributed.sharded_fit():  # every process's rows (each counted its own)
            samples = distributed.total(tally.samples)
        if rank == 0:
            print(
                json.dumps(
                    {
                        "fit": name,
                        "processes": size,
                        "threads": torch.get_num_threads(),
                        "seconds": round(seconds, 2),
                        "samples_per_s": round(samples / seconds),
                        "acc": round(float(cluster_accuracy(data.y, model.labels_)), 4),
                    }
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--dataset", default="usps")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "worker":
        worker(args.dataset, args.seed)
        return
    torchrun = Path(sys.executable).with_name("torchrun")
    for p in (int(v) for v in args.processes.split(",")):
        command = [str(torchrun), "--nproc-per-node", str(p), __file__, "worker"]
        command += ["--dataset", args.dataset, "--seed", str(args.seed)]
        env = dict(os.environ, GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
        subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
