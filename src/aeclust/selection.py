"""Choosing the number of clusters: an elbow / silhouette sweep over k for any method.

The k-DAE paper (Sec. 2) suggests the elbow and silhouette methods for choosing k; both work with
every aeclust estimator: fit once per k, record the silhouette of the labels (in the input space,
comparable across k, or in the method's embedding) and the method's own objective (k-means
inertia, or the final training loss) for the elbow plot. Labels are never needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.base import clone

from aeclust.metrics import silhouette


def select_k(
    estimator: Any,
    X: Any,
    ks: Iterable[int],
    *,
    space: str = "input",
    sample_size: int = 10000,
) -> list[dict[str, float]]:
    """Fit a clone of ``estimator`` for every k in ``ks`` and score each clustering.

    Parameters
    ----------
    estimator : BaseDeepClusterer
        Any aeclust estimator (its ``n_clusters`` is overwritten).
    X : array-like (n_samples, n_features)
    ks : iterable of int
        Candidate numbers of clusters (each >= 2).
    space : {"input", "embedding"}
        Where the silhouette is measured: the input space (comparable across k for every
        method) or the method's ``transform`` output.
    sample_size : int
        Silhouette sample size.

    Returns
    -------
    list of dict
        One per k: ``k``, ``silhouette``, ``objective`` (``inertia_`` when the method has one,
        else the last epoch's training loss, else nan), ``n_nonempty`` (clusters used).
    """
    if space not in ("input", "embedding"):
        raise ValueError(f"space must be 'input' or 'embedding', got {space!r}")
    X = np.asarray(X, dtype=np.float32)
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 2:
        raise ValueError("ks must list numbers of clusters >= 2")
    rows = []
    for k in ks:
        model = clone(estimator).set_params(n_clusters=k).fit(X)
        labels = model.labels_
        points = X if space == "input" else model.embed(X)
        if hasattr(model, "inertia_"):
            objective = float(model.inertia_)
        elif getattr(model, "history_", None):
            objective = float(model.history_[-1]["loss"])
        else:
            objective = float("nan")
        rows.append(
            {
                "k": k,
                "silhouette": silhouette(points, labels, sample_size=sample_size),
                "objective": objective,
                "n_nonempty": len(np.unique(labels)),
            }
        )
    return rows


def best_k(rows: list[dict[str, float]]) -> int:
    """The k with the highest silhouette (nan scores are ignored)."""
    scored = [r for r in rows if np.isfinite(r["silhouette"])]
    if not scored:
        raise ValueError("no k gave a finite silhouette")
    return int(max(scored, key=lambda r: r["silhouette"])["k"])
