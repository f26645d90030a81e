"""Diagnose a VCC setting: ACC/NMI of its own assignment and of k-means on its embedding.

A benchmark cell reports only argmax Q. This script also clusters the learnt embedding E with
k-means (10 restarts) and with a Gaussian mixture of full covariances (scikit-learn, 5
restarts), which separates "the embedding is poor" from "the self-training loses a good
embedding" and from "the clusters are there but not round", and prints the losses of the first,
middle and last epochs. Labels are used for the printed scores only.

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/vcc_check.py usps \
        '{"epochs": 10, "separation_loss": "attraction"}' 0

Arguments: data set name, VCC parameters as JSON (``n_clusters`` defaults to the data set's
number of classes), seed.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from aeclust.datasets import load_dataset
from aeclust.methods.vcc import VCC
from aeclust.metrics import cluster_accuracy, nmi
from aeclust.primitives import kmeans

_LOGGED = ("epoch", "loss", "bps", "contraction", "expansion", "clustering", "nmi_kmeans")


def cluster_layout(embedding: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of k-means and of a full-covariance Gaussian mixture on an embedding.

    One definition for every layout this script and ``umap_layout_check.py`` compare: aeclust's
    k-means (10 restarts, generator seed 0) and scikit-learn's mixture (5 restarts,
    ``random_state=0``), both on the embedding in float64.
    """
    layout = np.asarray(embedding, dtype=np.float64)
    generator = torch.Generator().manual_seed(0)
    km = kmeans(torch.from_numpy(layout), n_clusters, n_init=10, generator=generator).labels
    mixture = GaussianMixture(n_clusters, covariance_type="full", n_init=5, random_state=0)
    return km.numpy(), mixture.fit(layout).predict(layout)


def main(argv: list[str]) -> None:
    """Fit VCC with the given parameters and print the two assignments' scores."""
    name = argv[1] if len(argv) > 1 else "usps"
    params = json.loads(argv[2]) if len(argv) > 2 else {}
    seed = int(argv[3]) if len(argv) > 3 else 0
    data = load_dataset(name)
    params.setdefault("n_clusters", data.n_classes)
    start = time.perf_counter()
    model = VCC(random_state=seed, **params).fit(data.x)
    seconds = time.perf_counter() - start
    km, gm = cluster_layout(model.transform(data.x), model.n_clusters)
    print(
        json.dumps(params),
        f"seed={seed} fit={seconds:.0f}s steps/epoch={model.steps_per_epoch_}",
        f"argmax Q: ACC {cluster_accuracy(data.y, model.labels_):.3f}"
        f" NMI {nmi(data.y, model.labels_):.3f}",
        f"| k-means on E: ACC {cluster_accuracy(data.y, km):.3f} NMI {nmi(data.y, km):.3f}",
        f"| GMM on E: ACC {cluster_accuracy(data.y, gm):.3f} NMI {nmi(data.y, gm):.3f}",
    )
    history = model.history_
    for record in (history[0], history[len(history) // 2], history[-1]):
        print(
            "  ",
            {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in record.items()
                if k in _LOGGED
            },
        )


if __name__ == "__main__":
    main(sys.argv)
