"""Run VCC under several readings of Sec. 3 and score each with and without labels (issue 28).

For each setting (a JSON object of VCC parameters, plus ``"standardize": true`` to z-score each
input feature instead of the loader's [0, 1] scaling) the script fits VCC once and writes one
JSON line with

* label-free measures, computed from the model alone: the last epoch's four losses (the paper's
  Fig. 3 shows all of them between 0.075 and 0.25 on MNIST-test), the compactness of the
  clusters on E (mean distance of a point to its own centre C_a(i) divided by the mean distance
  between centres: small for the "very compact clusters" of Fig. 2), the agreement
  NMI(argmax Q, k-means on E), and the silhouette of argmax Q on E (3,000 points);
* ACC / NMI of argmax Q (the paper's labels), of k-means on E and of a full-covariance Gaussian
  mixture on E (labels used for these scores only).

Usage (from the repository root)::

    AECLUST_DATA=../shared/datasets .venv/bin/python benchmarks/scripts/vcc_factorial.py \
        usps 0 OUT.jsonl '{"epochs": 10}' '{"epochs": 10, "separation_loss": "parametric_umap"}'

Arguments: data set, seed, output file (appended to), then one JSON object per setting.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import silhouette_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vcc_check import cluster_layout

from aeclust.datasets import load_dataset
from aeclust.methods.vcc import VCC
from aeclust.metrics import cluster_accuracy, nmi

_LOSSES = ("bps", "contraction", "expansion", "clustering")


def label_free_measures(embedding: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> dict:
    """Compactness on E (own-centre distance / between-centre distance) and silhouette."""
    own = np.linalg.norm(embedding - centers[labels], axis=1).mean()
    between = np.linalg.norm(centers[:, None] - centers[None], axis=2)
    mean_between = between[np.triu_indices(len(centers), 1)].mean()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(embedding), size=min(3000, len(embedding)), replace=False)
    sil = silhouette_score(embedding[pick], labels[pick]) if len(set(labels[pick])) > 1 else -1.0
    return {"compactness": float(own / mean_between), "silhouette": float(sil)}


def run(name: str, seed: int, setting: dict) -> dict:
    """Fit one setting and return its scores as a flat dict."""
    params = dict(setting)
    standardize = bool(params.pop("standardize", False))
    data = load_dataset(name)
    x = data.x.astype(np.float32)
    if standardize:
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    params.setdefault("n_clusters", data.n_classes)
    start = time.perf_counter()
    model = VCC(random_state=seed, device="cpu", **params).fit(x)
    seconds = time.perf_counter() - start
    embedding = model.transform(x)
    km, gm = cluster_layout(embedding, model.n_clusters)
    last = model.history_[-1]
    out = {
        "data": name,
        "seed": seed,
        "setting": setting,
        "fit_s": round(seconds, 1),
        "steps_per_epoch": model.steps_per_epoch_,
        **{f"loss_{k}": round(float(last[k]), 4) for k in _LOSSES if k in last},
        **label_free_measures(embedding, model.labels_, model.cluster_centers_),
        "nmi_q_kmeans": round(nmi(model.labels_, km), 4),
    }
    for tag, labels in (("q", model.labels_), ("km", km), ("gmm", gm)):
        out[f"acc_{tag}"] = round(cluster_accuracy(data.y, labels), 4)
        out[f"nmi_{tag}"] = round(nmi(data.y, labels), 4)
    return out


def main(argv: list[str]) -> None:
    """Run every setting given on the command line, appending one line each to the output."""
    name, seed, path = argv[1], int(argv[2]), Path(argv[3])
    for text in argv[4:]:
        try:
            result = run(name, seed, json.loads(text))
        except FloatingPointError as exc:  # a diverging reading is a result too
            result = {"data": name, "seed": seed, "setting": json.loads(text), "error": str(exc)}
        line = json.dumps(result)
        print(line, flush=True)
        with path.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv)
