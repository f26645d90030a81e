"""Where do k-DAE's points go? Confusion of the initial k-means and of the final k-DAE clustering.

A benchmark cell reports only the final scores. This script fits one k-DAE and prints, for the
k-means initialisation (AE+KM on the same network) and for the final clustering, ACC / NMI, the
cluster sizes and the class × cluster table, then the mean reconstruction error of every true
class under every cluster's autoencoder, and the per-epoch history (sizes, changed labels).
It separates "k-DAE merges clusters" (one autoencoder wins a family of classes) from "k-DAE
moves points at random". Labels are used for the printed tables only.

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/kdae_collapse_check.py \
        fashion_test '{}' 0

Arguments: data set name, KDAE parameters as JSON overriding the kdae-table2 quick row (1024-256-10
networks, 20 + 3 + 10 epochs, 100 k-means restarts), seed. Set ``"pretrain_cache"`` to reuse a
bench's pretrained network.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from aeclust.datasets import load_dataset
from aeclust.methods.kdae import KDAE
from aeclust.metrics import cluster_accuracy, nmi

QUICK_ROW = dict(
    autoencoder=[1024, 256, 10],
    embedding_dim=10,
    activation="elu",
    batch_norm=True,
    pretrain_epochs=20,
    pretrain_loss="bce",
    pretrain_patience=10,
    batch_size=256,
    cluster_autoencoder=[1024, 256, 10],
    cluster_pretrain_epochs=3,
    epochs=10,
    n_init=100,
)


def show(tag: str, y: np.ndarray, labels: np.ndarray, k: int) -> None:
    """Print scores, sizes and the class × cluster table of one clustering."""
    sizes = np.bincount(labels, minlength=k).tolist()
    print(f"{tag}: ACC {cluster_accuracy(y, labels):.3f} NMI {nmi(y, labels):.3f} sizes {sizes}")
    table = np.zeros((int(y.max()) + 1, k), dtype=int)
    np.add.at(table, (y, labels), 1)
    print("  rows = true class, columns = cluster")
    for row in table:
        print("  " + " ".join(f"{v:5d}" for v in row))


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "fashion_test"
    overrides = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    data = load_dataset(name)
    k = int(data.n_classes)
    params = {**QUICK_ROW, "image_shape": data.image_shape, "n_clusters": k, **overrides}
    model = KDAE(random_state=seed, **params).fit(data.x)
    show("initial k-means (AE+KM)", data.y, model.initial_labels_, k)
    show("final k-DAE", data.y, model.labels_, k)
    errors = model.reconstruction_errors(data.x)
    print("mean reconstruction error: rows = true class, columns = cluster autoencoder")
    for c in range(int(data.y.max()) + 1):
        print("  " + " ".join(f"{v:6.1f}" for v in errors[data.y == c].mean(0)))
    for record in model.history_:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
