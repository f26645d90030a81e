"""A fit on a generated memory-mapped file larger than a process should hold (issue 30, item 3).

    python benchmarks/scripts/out_of_core.py make /tmp/big.npy --rows 1000000
    python benchmarks/scripts/out_of_core.py fit /tmp/big.npy --method ae-kmeans \
        --param pretrain_epochs=1

``make`` writes a float32 ``.npy`` of ``rows`` x ``features`` in chunks (never the whole array in
memory): ``clusters`` random sparse patterns in [0, 1], each row one of them plus Gaussian noise,
clipped to [0, 1]; the pattern of each row goes to ``PATH.labels.npy``. ``fit`` opens the file
with ``np.load(mmap_mode="r")`` and fits an aeclust estimator on it (``aeclust.rows`` reads it
batch by batch), then prints one JSON line: wall seconds, the process's peak resident memory
(``ru_maxrss``), the file's size and ACC against the generated patterns.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def make(path: Path, rows: int, features: int, clusters: int, seed: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    patterns = (rng.random((clusters, features)) < 0.2) * rng.random((clusters, features))
    patterns = patterns.astype(np.float32)
    labels = rng.integers(0, clusters, size=rows).astype(np.int16)
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, features)}
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, header)
        for start in range(0, rows, chunk):
            part = labels[start : start + chunk]
            noise = rng.normal(0.0, 0.15, size=(len(part), features)).astype(np.float32)
            fh.write(np.clip(patterns[part] + noise, 0.0, 1.0).astype(np.float32).tobytes())
    tmp.replace(path)
    np.save(path.with_suffix(".labels.npy"), labels)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB, {rows} x {features})")


def fit(path: Path, method: str, params: dict, seed: int) -> None:
    from aeclust.methods.base import build_estimator
    from aeclust.metrics import cluster_accuracy

    x = np.load(path, mmap_mode="r")
    labels = np.load(path.with_suffix(".labels.npy"))
    n_clusters = int(labels.max()) + 1
    model = build_estimator(
        method, {"n_clusters": n_clusters, "random_state": seed, **params}, device="cpu"
    )
    start = time.perf_counter()
    model.fit(x)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "method": method,
                "params": params,
                "rows": int(x.shape[0]),
                "features": int(x.shape[1]),
                "file_gib": round(path.stat().st_size / 2**30, 3),
                "fit_seconds": round(seconds, 1),
                "peak_rss_gib": round(peak_kib / 2**20, 3),
                "acc": round(float(cluster_accuracy(labels, model.labels_)), 4),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("path", type=Path)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=20_000)
    p = sub.add_parser("fit")
    p.add_argument("path", type=Path)
    p.add_argument("--method", default="ae-kmeans")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "make":
        make(args.path, args.rows, args.features, args.clusters, args.seed, args.chunk)
    else:
        from aeclust.cli import _parse_param  # the CLI's own NAME=VALUE reading

        fit(args.path, args.method, dict(_parse_param(p) for p in args.param), args.seed)


if __name__ == "__main__":
    main()
