"""Label-free choices: the number of clusters (elbow / silhouette sweep) and the method.

The k-DAE paper (Sec. 2) suggests the elbow and silhouette methods for choosing k; both work with
every aeclust estimator: fit once per k, record the silhouette of the labels (in the input space,
comparable across k, or in the method's embedding) and the method's own objective (k-means
inertia, or the final training loss) for the elbow plot. Labels are never needed.

:func:`select_method` ranks methods (or settings of one) on the user's data by criteria that are
comparable across methods: stability over seeds, agreement with the other candidates, the
silhouette in the input space and the modularity of the partition on the input space's
k-nearest-neighbour graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from aeclust.metrics import knn_modularity, silhouette


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


#: The criteria :func:`select_method` ranks by by default; the first choice has the best mean rank.
SELECTION_CRITERIA = ("stability", "consensus", "silhouette")

#: Every criterion :func:`select_method` measures and reports, and may rank by.
ALL_SELECTION_CRITERIA = (*SELECTION_CRITERIA, "modularity")


def select_method(
    candidates: Mapping[str, Any],
    X: Any,
    *,
    seeds: Sequence[int] = (0, 1),
    sample_size: int = 5000,
    y: Any = None,
    criteria: Sequence[str] = SELECTION_CRITERIA,
) -> list[dict[str, Any]]:
    """Rank clustering methods or settings on ``X`` without labels.

    Every candidate is fitted once per seed (a clone with ``random_state`` set), and scored by
    four label-free criteria, each comparable across methods:

    ``stability``
        Mean adjusted Rand index between the labels of every pair of seeds: a method that finds
        structure in the data finds the same partition again from another start.
    ``consensus``
        Mean ARI between the candidate's labels and every other candidate's (same seed): the
        partition the methods agree on (the medoid of the ensemble).
    ``silhouette``
        Silhouette of the labels in the input space (the one space all candidates share).
        It favours partitions that are compact in the input space, k-means' own objective.
    ``modularity``
        Newman's modularity of the labels on the 10-nearest-neighbour graph of the input rows
        (:func:`aeclust.metrics.knn_modularity`): the fraction of neighbourhood edges kept
        inside clusters beyond chance. It does not ask clusters to be round, so it does not
        share the silhouette's bias towards k-means.

    The ranking is by the mean of the ranks of ``criteria`` (ties: stability); every
    criterion is measured and reported either way. A candidate that leaves
    clusters empty ranks last. Labels ``y``, when given, are only reported (``acc``) so that
    the ranking can be checked against them; they never enter it.

    Parameters
    ----------
    candidates : mapping of str to estimator
        Name to configured estimator; ``n_clusters`` should be the same for all.
    X : array-like of shape (n_samples, n_features)
    seeds : sequence of int, default=(0, 1)
        At least two, for the stability criterion.
    sample_size : int, default=5000
        Rows scored by the silhouette and the modularity.
    y : array-like, optional
        True labels, for reporting only.
    criteria : sequence of str, default=SELECTION_CRITERIA
        The criteria whose mean rank orders the candidates, from
        :data:`ALL_SELECTION_CRITERIA`.

    Returns
    -------
    list of dict
        Best first: ``name``, ``stability``, ``consensus``, ``silhouette``, ``modularity``,
        ``n_nonempty``
        (fewest clusters used over the seeds), ``seconds`` (mean fit time), ``rank`` (mean
        criterion rank), ``acc`` (mean over seeds, when ``y`` is given).
    """
    from sklearn.metrics import adjusted_rand_score

    from aeclust.metrics import cluster_accuracy

    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must list at least two different seeds, got {seeds}")
    if len(candidates) < 2:
        raise ValueError("give at least two candidates to rank")
    criteria = tuple(criteria)
    unknown = sorted(set(criteria) - set(ALL_SELECTION_CRITERIA))
    if unknown or not criteria:
        raise ValueError(
            f"criteria must name one or more of {', '.join(ALL_SELECTION_CRITERIA)}; "
            f"got {list(criteria)}"
        )
    X = np.asarray(X, dtype=np.float32)
    labels: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name, estimator in candidates.items():
        start = time.perf_counter()
        labels[name] = [
            np.asarray(clone(estimator).set_params(random_state=s).fit(X).labels_) for s in seeds
        ]
        seconds[name] = (time.perf_counter() - start) / len(seeds)
    rows = []
    for name, runs in labels.items():
        pairs = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :]]
        others = [o for other, o_runs in labels.items() if other != name for o in o_runs]
        consensus = [
            adjusted_rand_score(mine, theirs)
            for i, mine in enumerate(runs)
            for theirs in others[i :: len(runs)]
        ]
        row = {
            "name": name,
            "stability": float(np.mean([adjusted_rand_score(a, b) for a, b in pairs])),
            "consensus": float(np.mean(consensus)),
            "silhouette": float(
                np.mean([silhouette(X, lab, sample_size=sample_size) for lab in runs])
            ),
            "modularity": float(
                np.mean([knn_modularity(X, lab, sample_size=sample_size) for lab in runs])
            ),
            "n_nonempty": int(min(len(np.unique(lab)) for lab in runs)),
            "seconds": seconds[name],
        }
        if y is not None:
            row["acc"] = float(np.mean([cluster_accuracy(y, lab) for lab in runs]))
        rows.append(row)
    return rank_candidates(rows, criteria)


def rank_candidates(
    rows: Sequence[dict[str, Any]], criteria: Sequence[str] = SELECTION_CRITERIA
) -> list[dict[str, Any]]:
    """Order scored candidates by the mean of their ranks on ``criteria`` (higher is better).

    The ranking step of :func:`select_method`, apart so that a stored ranking can be ranked
    again by other criteria without refitting (the report does, to compare criteria).

    Parameters
    ----------
    rows : sequence of dict
        One per candidate, with ``n_nonempty`` and a value for each of ``criteria`` (``nan``
        or ``None`` ranks last on that criterion). Updated in place: ``rank_<criterion>`` for
        each criterion present, and ``rank``.
    criteria : sequence of str, default=SELECTION_CRITERIA

    Returns
    -------
    list of dict
        The rows, best first (ties: the better stability rank). A candidate that used fewer
        clusters than another ranks after every candidate that used all of them.
    """
    k = max(r["n_nonempty"] for r in rows)
    for criterion in ALL_SELECTION_CRITERIA:
        if any(r.get(criterion) is None for r in rows) and criterion not in criteria:
            continue  # not measured (a ranking stored before the criterion existed)

        def score(r: dict[str, Any], c: str = criterion) -> float:
            value = r.get(c)
            return -value if value is not None and np.isfinite(value) else np.inf

        for position, row in enumerate(sorted(rows, key=score)):
            row[f"rank_{criterion}"] = position + 1
    for row in rows:
        row["rank"] = float(np.mean([row[f"rank_{c}"] for c in criteria]))
        if row["n_nonempty"] < k:  # empty clusters: a degenerate partition ranks last
            row["rank"] += len(rows)
    return sorted(rows, key=lambda r: (r["rank"], r.get("rank_stability", 0)))
