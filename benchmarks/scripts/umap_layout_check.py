"""Reference layout for VCC: UMAP of the same kNN graph, clustered by k-means and by a GMM.

VCC lays out the M-nearest-neighbour graph of the inputs in 2-D with attraction / repulsion
losses, as UMAP does. This script runs UMAP (``umap-learn``, not an aeclust dependency:
``pip install umap-learn``) with ``n_neighbors = M`` and ``n_components = 2`` on a data set, then
clusters the layout with ``vcc_check.cluster_layout``, as VCC's embedding is (aeclust's k-means, 10
restarts, generator seed 0; a Gaussian mixture of full covariances, 5 restarts, random_state 0),
so that the two can be set side by side. Labels are used for the printed scores only.

Usage (from the repository root)::

    pip install umap-learn   # into any environment that also has aeclust
    AECLUST_DATA=../shared/datasets python benchmarks/scripts/umap_layout_check.py usps 10 0,1,2 \
        '{"min_dist": 0.0}'

Arguments: data set name, M, comma-separated seeds, optional UMAP keyword arguments as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from vcc_check import cluster_layout  # this folder: the same clustering as VCC's embedding

from aeclust.datasets import load_dataset
from aeclust.metrics import cluster_accuracy, nmi


def main(argv: list[str]) -> None:
    """Lay the data set out with UMAP for each seed and print k-means and GMM scores."""
    try:
        import umap
    except ImportError:
        sys.exit("umap_layout_check.py needs umap-learn: pip install umap-learn")
    name = argv[1] if len(argv) > 1 else "usps"
    n_neighbors = int(argv[2]) if len(argv) > 2 else 10
    seeds = [int(s) for s in (argv[3] if len(argv) > 3 else "0").split(",")]
    options = json.loads(argv[4]) if len(argv) > 4 else {}
    data = load_dataset(name)
    x = data.x.reshape(len(data.x), -1).astype(np.float32)
    k = data.n_classes
    for seed in seeds:
        start = time.perf_counter()
        reducer = umap.UMAP(n_neighbors=n_neighbors, n_components=2, random_state=seed, **options)
        layout = reducer.fit_transform(x).astype(np.float64)
        km, gm = cluster_layout(layout, k)
        print(
            f"{name} M={n_neighbors} seed={seed} {json.dumps(options)}",
            f"k-means: ACC {cluster_accuracy(data.y, km):.4f} NMI {nmi(data.y, km):.4f}",
            f"| GMM: ACC {cluster_accuracy(data.y, gm):.4f} NMI {nmi(data.y, gm):.4f}",
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv)
