"""Label-free CCAE diagnostics quoted in benchmarks/notes/11: pixels k-means, labels moved.

``pixels``: k-means (scikit-learn, 10 restarts) on the raw pixels of a data set for seeds 0-2,
the paper's "No AE" row (used to tell Yale from Extended Yale B). ``fit``: one CCAE fit with the
given parameters (JSON, on top of the Table 2 network D-512-32, sigmoid, MSE); prints k-means on
the standard AE beside the final CCAE clustering and, per stage, the fraction of labels that
changed (``history_[i]["changed"]``). ``ae``: the standard AE alone (AE+k-means with the Table 2
network D-512-d, sigmoid, linear code and output, MSE, 100 epochs, batch 256) after an input
transformation (``"scaling"``: ``unit`` = the loader's [0, 1], ``centred``, ``zscore`` per pixel,
``l2`` per image) and optionally Glorot-uniform weights (``"init": "glorot"``, Keras' default)
instead of torch's; the other JSON keys go to :class:`aeclust.methods.kmeans.AEKMeans`. Labels
are used for the printed scores only.

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/ccae_check.py pixels yale
    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/ccae_check.py fit yale \
        '{"shift": "centre+rival", "batch_size": 32, "pretrain_epochs": 600, "alpha": 0.3}' 0
    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/ccae_check.py ae \
        mnist_test '{"scaling": "centred", "embedding_dim": 10}' 0
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from sklearn.cluster import KMeans

from aeclust.datasets import load_dataset
from aeclust.methods.ccae import CCAE
from aeclust.methods.kmeans import AEKMeans
from aeclust.metrics import cluster_accuracy, nmi
from aeclust.nn import build_autoencoder


def scale_inputs(x: np.ndarray, scaling: str) -> np.ndarray:
    """Return ``x`` as the AE sees it under ``scaling`` (unit, centred, zscore or l2)."""
    if scaling == "unit":
        return x
    if scaling == "centred":
        return x - x.mean(axis=0)
    if scaling == "zscore":
        return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    if scaling == "l2":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    raise ValueError(f"unknown scaling {scaling!r}; expected unit, centred, zscore or l2")


def fit_standard_ae(data, k: int, params: dict, seed: int) -> None:
    """Print k-means on the codes of the Table 2 standard AE trained on scaled inputs."""
    params = dict(params)
    scaling = params.pop("scaling", "unit")
    x = scale_inputs(data.x.astype(np.float32), scaling)
    init = params.pop("init", "torch")
    embedding_dim = params.pop("embedding_dim", 32)
    settings = {"activation": "sigmoid", "pretrain_loss": "mse", "pretrain_epochs": 100, **params}
    autoencoder: object = [512, embedding_dim]
    if init == "glorot":
        torch.manual_seed(seed)
        autoencoder = build_autoencoder(
            "mlp", x.shape[1], embedding_dim=embedding_dim, activation="sigmoid", hidden_dims=(512,)
        )
        for layer in autoencoder.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
    model = AEKMeans(k, autoencoder=autoencoder, random_state=seed, **settings).fit(x)
    print(
        json.dumps({"scaling": scaling, "init": init, **params}),
        f"seed={seed}",
        f"ACC {cluster_accuracy(data.y, model.labels_):.4f}",
        f"NMI {nmi(data.y, model.labels_, 'geometric'):.4f}",
        f"final MSE {model.pretrain_history_[-1]['loss']:.5f}",
    )


def main(argv: list[str]) -> None:
    """Run the ``pixels``, ``ae`` or ``fit`` check (see the module docstring)."""
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
    if mode == "ae":
        fit_standard_ae(data, k, params, seed)
        return
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
