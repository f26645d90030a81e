"""k-DAE's first stage alone: k-means on the initial autoencoder's embedding (issue 29).

k-DAE adds about the paper's +7 ACC points to AE+k-means of its own initial network on MNIST-70k,
so its 7-point gap to the paper is the initial clustering (docs/METHODS.md, k-DAE, "What they
explain"). This script measures that stage for three readings of the initial network, each
pretrained with BCE, Adam (lr 1e-3), batch 256 and early stopping on the training loss
(patience 10), then k-means with 100 restarts on its 10-d embedding:

``paper``
    The k-DAE paper's 784-1024-256-10 with a mirrored decoder, ELU and batch norm: what
    ``kdae-table2`` runs (50 epochs there).
``authors``
    The network of the authors' code (yanivopo/K-DAE, ``src/autoencoder.py``): encoder
    784-500-500-2000-10, decoder 10-500-500-784 (not mirrored: the code builds it from
    ``widths[1::-1]``), Dense -> batch norm -> ELU, Glorot-uniform weights and zero biases,
    Keras' batch-norm momentum 0.99 and epsilon 1e-3 (PyTorch's momentum 0.01), sigmoid output.
``authors-torch-init``
    The same layers with PyTorch's default initialisation and batch-norm settings: separates the
    shape of the network from Keras' defaults.

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/kdae_initial_network.py \
        mnist authors 80 0 [kdae [CHECKPOINT_DIR]]

Arguments: data set, network, pretraining epochs, seed; then optionally ``kdae`` to run the whole
k-DAE on that initial network, every other setting as ``kdae-table2``'s k-DAE row (per-cluster
1024-256-10 autoencoders, 10 cluster-pretraining and 50 joint epochs, patience 10), so that only
the initial network differs; with a checkpoint folder a cut-off run resumes. Prints one JSON
line: ACC / NMI (arithmetic) of k-means on the initial embedding (and of k-DAE), the last
pretraining loss, epochs run, seconds. Labels are used for the printed scores only.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import torch
from torch import nn

from aeclust import KDAE, AEKMeans
from aeclust.callbacks import checkpointing
from aeclust.datasets import load_dataset
from aeclust.metrics import cluster_accuracy, nmi
from aeclust.nn import Autoencoder


def _block(n_in: int, n_out: int, keras: bool) -> list[nn.Module]:
    batch_norm = nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3) if keras else nn.BatchNorm1d(n_out)
    return [nn.Linear(n_in, n_out), batch_norm, nn.ELU()]


class AuthorsInitialAE(Autoencoder):
    """The initial autoencoder of the authors' k-DAE code (see the module docstring)."""

    def __init__(self, n_features: int, keras_defaults: bool = True) -> None:
        super().__init__()
        self.n_features, self.embedding_dim = n_features, 10
        widths = [n_features, 500, 500, 2000]
        encoder: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            encoder += _block(a, b, keras_defaults)
        self.encoder = nn.Sequential(*encoder, nn.Linear(2000, 10))
        self.decoder = nn.Sequential(
            *_block(10, 500, keras_defaults),
            *_block(500, 500, keras_defaults),
            nn.Linear(500, n_features),
            nn.Sigmoid(),
        )
        if keras_defaults:
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def main() -> None:
    dataset, network, epochs, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = load_dataset(dataset)
    torch.manual_seed(seed)  # the user module's initial weights
    if network == "paper":
        autoencoder: object = [1024, 256, 10]
    elif network in ("authors", "authors-torch-init"):
        autoencoder = AuthorsInitialAE(data.x.shape[1], keras_defaults=network == "authors")
    else:
        raise SystemExit(f"network must be paper, authors or authors-torch-init, got {network!r}")
    method = sys.argv[5] if len(sys.argv) > 5 else "ae-kmeans"
    shared = dict(
        n_clusters=data.n_classes,
        autoencoder=autoencoder,
        embedding_dim=10,
        activation="elu",
        batch_norm=True,
        pretrain_epochs=epochs,
        pretrain_lr=1e-3,
        pretrain_loss="bce",
        pretrain_patience=10,
        batch_size=256,
        n_init=100,
        device="cpu",
        random_state=seed,
    )
    if method == "kdae":
        model = KDAE(
            **shared,
            cluster_autoencoder=[1024, 256, 10],
            cluster_pretrain_epochs=10,
            epochs=50,
            patience=10,
        )
    elif method == "ae-kmeans":
        model = AEKMeans(**shared)
    else:
        raise SystemExit(f"method must be ae-kmeans or kdae, got {method!r}")
    start = time.perf_counter()
    if len(sys.argv) > 6:
        with checkpointing(sys.argv[6], interval_s=120):
            model.fit(data.x)
    else:
        model.fit(data.x)
    initial = model.initial_labels_ if method == "kdae" else model.labels_
    history = model.pretrain_history_
    record = {
        "dataset": dataset,
        "network": network,
        "epochs": epochs,
        "seed": seed,
        "method": method,
        "acc": round(float(cluster_accuracy(data.y, initial)), 4),
        "nmi": round(float(nmi(data.y, initial)), 4),
        "epochs_run": len(history),
        "last_loss": round(float(history[-1]["loss"]), 5),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if method == "kdae":
        record["kdae_acc"] = round(float(cluster_accuracy(data.y, model.labels_)), 4)
        record["kdae_nmi"] = round(float(nmi(data.y, model.labels_)), 4)
        record["joint_epochs_run"] = len(model.history_)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
