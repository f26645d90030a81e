"""VCC's graph losses alone (no clustering loss), with switches: which L_bps helps the embedding?

Trains VCC's MLP (d-128-500-256-64-2, SGD 0.01 / 0.9 / 5e-4, batch 1000, 164 steps per epoch as
on USPS) on L_bps + L_c + L_e only, from the same primitives and loss helpers as
:class:`aeclust.methods.vcc.VCC` (kNN graph, eqs. 3-4, samplers of eqs. 7, 9, 11, eqs. 5-6),
and prints the ACC/NMI of k-means on the embedding halfway and at the end. Labels are used
for the printed scores only.

Options (JSON, all optional): ``bps`` weight of L_bps (0 drops it); ``target`` of L_bps on the
sampled A⁻ edges: ``"max"`` (eq. 6 with A_h = Ã/Ã_max), ``"raw"`` (Ã clipped to 1), ``"mean"``
(Ã/Ã_mean clipped to 1) or a number (a constant target; 1 = pure attraction, 0.5 = eq. 8 as
printed); ``kernel`` ``"exp"`` (eq. 5) or ``"umap"`` (1 / (1 + a d^2b), a = 1.577, b = 0.895);
``negatives`` non-edges per edge; ``optimizer`` ``"sgd"`` or ``"adam"``, ``lr``; ``epochs``;
``sign`` of eq. 3 (+1 literal, -1 exp(-D)); ``seed``.

Usage::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/vcc_layout_ablation.py \
        usps '{"bps": 0}'
"""

from __future__ import annotations

import json
import sys
import time

import torch

from aeclust.datasets import load_dataset
from aeclust.methods.vcc import _latent_distance, _log_one_minus_similarity, _separation_loss
from aeclust.metrics import cluster_accuracy, nmi
from aeclust.nn import MLPClassifier
from aeclust.primitives import kmeans
from aeclust.primitives.knn import (
    EdgeSampler,
    contraction_rates,
    graph_edges,
    knn,
    sample_non_edges,
    separation_rates,
    softmax_knn_graph,
    symmetrize_graph,
)

DEFAULTS = {
    "bps": 1.0,
    "target": "max",
    "kernel": "exp",
    "negatives": 1,
    "optimizer": "sgd",
    "lr": 0.01,
    "epochs": 10,
    "steps": 164,
    "sign": 1.0,
    "seed": 0,
}
_UMAP_A, _UMAP_B = 1.577, 0.895  # UMAP's curve for min_dist = 0.1


def _edge_losses(
    a: torch.Tensor, b: torch.Tensor, kernel: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-edge -log A_l and -log(1 - A_l) between embeddings ``a`` and ``b``.

    ``"exp"`` is VCC's own eq. 5 (the estimator's helpers); ``"umap"`` is the experiment.
    """
    if kernel == "exp":
        d = _latent_distance(a, b)
        return d, -_log_one_minus_similarity(d)
    q = 1.0 / (1.0 + _UMAP_A * (a - b).pow(2).sum(1).clamp_min(1e-8) ** _UMAP_B)
    return -torch.log(q.clamp_min(1e-12)), -torch.log((1 - q).clamp_min(1e-4))


def _targets(values: torch.Tensor, target: str | float) -> torch.Tensor:
    if target == "max":
        return (values / values.max()).float()
    if target == "raw":
        return values.clamp(max=1.0).float()
    if target == "mean":
        return (values / values.mean()).clamp(max=1.0).float()
    return torch.full_like(values, float(target)).float()


def main(argv: list[str]) -> None:
    """Train on the graph losses with the options of ``argv[2]`` and print k-means scores."""
    options = {**DEFAULTS, **(json.loads(argv[2]) if len(argv) > 2 else {})}
    torch.manual_seed(options["seed"])
    data = load_dataset(argv[1] if len(argv) > 1 else "usps")
    x = torch.from_numpy(data.x)
    dist, idx = knn(x, 10)
    graph = symmetrize_graph(softmax_knn_graph(dist, idx, sign=options["sign"]))
    rows, cols, values = graph_edges(graph)
    weak, strong = EdgeSampler(separation_rates(values)), EdgeSampler(contraction_rates(values))
    targets = _targets(values, options["target"])
    encoder = MLPClassifier([x.shape[1], 128, 500, 256, 64, 2], activation="relu", batch_norm=False)
    if options["optimizer"] == "sgd":
        opt = torch.optim.SGD(encoder.parameters(), options["lr"], momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.Adam(encoder.parameters(), options["lr"])
    generator = torch.Generator().manual_seed(options["seed"] + 1)
    batch, neg, kernel = 1000, int(options["negatives"]), options["kernel"]
    start = time.perf_counter()
    for epoch in range(options["epochs"]):
        for _ in range(options["steps"]):
            e_weak, e_strong = weak.sample(batch, generator), strong.sample(batch, generator)
            neg_rows, neg_cols = sample_non_edges(graph, batch * neg, generator)
            ids = [rows[e_weak], cols[e_weak], rows[e_strong], cols[e_strong], neg_rows, neg_cols]
            emb = encoder(x[torch.cat(ids)]).split([t.numel() for t in ids])
            if kernel == "exp":  # eq. 6 with these targets, as the estimator computes it
                d = _latent_distance(emb[0], emb[1])
                bps = _separation_loss(d, targets[e_weak], "cross_entropy")
            else:
                pull, push = _edge_losses(emb[0], emb[1], kernel)
                t = targets[e_weak]
                bps = (t * pull + (1 - t) * push).mean()
            loss = options["bps"] * bps
            loss = loss + _edge_losses(emb[2], emb[3], kernel)[0].mean()
            loss = loss + _edge_losses(emb[4], emb[5], kernel)[1].mean() * neg
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch + 1 in (options["epochs"] // 2, options["epochs"]):
            with torch.no_grad():
                embedding = encoder(x)
            gen = torch.Generator().manual_seed(0)
            labels = kmeans(embedding, data.n_classes, n_init=10, generator=gen).labels.numpy()
            print(
                json.dumps({k: v for k, v in options.items() if DEFAULTS.get(k) != v}),
                f"epoch {epoch + 1} ({time.perf_counter() - start:.0f} s):",
                f"k-means on E ACC {cluster_accuracy(data.y, labels):.3f}",
                f"NMI {nmi(data.y, labels):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv)
