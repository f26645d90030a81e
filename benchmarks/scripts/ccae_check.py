"""Label-free CCAE diagnostics quoted in benchmarks/notes/11: pixels k-means, labels moved.

``pixels``: k-means (scikit-learn, 10 restarts) on the raw pixels of a data set for seeds 0-2,
the paper's "No AE" row (used to tell Yale from Extended Yale B). ``fit``: one CCAE fit with the
given parameters (JSON, on top of the Table 2 network D-512-32, sigmoid, MSE); prints k-means on
the standard AE beside the final CCAE clustering and, per stage, the fraction of labels that
changed (``history_[i]["changed"]``). Labels are used for the printed scores only.

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/ccae_check.py pixels yale
    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/ccae_check.py fit yale \
        '{"shift": "centre+rival", "batch_size": 32, "pretrain_epochs": 600, "alpha": 0.3}' 0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from sklearn.cluster import KMeans

from aeclust.datasets import load_dataset
from aeclust.methods.ccae import CCAE
from aeclust.metrics import cluster_accuracy, nmi


def main(argv: list[str]) -> None:
    """Run the ``pixels`` or ``fit`` check (see the module docstring)."""
    mode, name = argv[1], argv[2]
    data = load_dataset(name)
    k = int(data.n_classes or len(np.unique(data.y)))
    if mode == "pixels":
        for seed in range(3):
            labels = KMeans(k, n_init=10, random_state=seed).fit_predict(data.x)
            print(
                name,
                seed,
                f"ACC {cluster_accuracy(data.y, labels):.3f}",
                f"NMI {nmi(data.y, labels):.3f}",
            )
        return
    params = json.loads(argv[3]) if len(argv) > 3 else {}
    seed = int(argv[4]) if len(argv) > 4 else 0
    settings = {"hidden_dims": (512,), "embedding_dim": 32, "activation": "sigmoid", **params}
    model = CCAE(n_clusters=k, random_state=seed, **settings).fit(data.x)
    scores = {
        stage: (cluster_accuracy(data.y, labels), nmi(data.y, labels, "geometric"))
        for stage, labels in (("AE", model.initial_labels_), ("CCAE", model.labels_))
    }
    print(
        json.dumps(params),
        f"seed={seed}",
        " | ".join(f"{s}: ACC {a:.4f} NMI {n:.4f}" for s, (a, n) in scores.items()),
        "| changed per stage:",
        [round(h["changed"], 4) for h in model.history_],
    )


if __name__ == "__main__":
    main(sys.argv)
