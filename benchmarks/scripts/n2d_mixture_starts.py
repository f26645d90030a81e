"""N2D's mixture: one EM start against ten, on fixed autoencoders (benchmarks/notes/24).

Fits N2D once (seed 0, 1000 pretraining epochs; pass the pretraining cache folder of a bench
run to reuse its network), then refits only UMAP (seeds 0-2) on the same codes and, on each
layout, the full-covariance mixture with one EM start (seeds 0-2) and with ten. It prints each
mixture's mean log-likelihood per point (what chooses among starts, without labels) beside
ACC / NMI (labels, used for the printed scores only).

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/n2d_mixture_starts.py \
        usps --cache-dir ~/.cache/aeclust/pretrained
"""

from __future__ import annotations

import argparse

import numpy as np
import umap
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from aeclust import N2D
from aeclust.datasets import load_dataset
from aeclust.metrics import cluster_accuracy


def _report(label: str, mixture: GaussianMixture, layout: np.ndarray, y: np.ndarray) -> None:
    pred = mixture.predict(layout)
    print(
        f"{label}: log-likelihood {mixture.score(layout):.4f}  "
        f"ACC {cluster_accuracy(y, pred):.4f}  NMI {normalized_mutual_info_score(y, pred):.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--cache-dir", default=None, help="pretraining cache folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    k = len(np.unique(data.y))
    model = N2D(k, random_state=0, device=args.device, pretrain_cache=args.cache_dir or False).fit(
        data.x
    )
    for umap_seed in range(3):
        reducer = umap.UMAP(
            n_neighbors=20, n_components=k, min_dist=0.0, random_state=umap_seed, n_jobs=1
        )
        layout = reducer.fit_transform(model.codes_).astype(np.float64)
        for mixture_seed in range(3):
            mixture = GaussianMixture(k, covariance_type="full", random_state=mixture_seed)
            label = f"UMAP {umap_seed}, one start {mixture_seed}"
            _report(label, mixture.fit(layout), layout, data.y)
        mixture = GaussianMixture(k, covariance_type="full", random_state=0, n_init=10)
        _report(f"UMAP {umap_seed}, ten starts", mixture.fit(layout), layout, data.y)


if __name__ == "__main__":
    main()
