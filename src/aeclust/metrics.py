"""Clustering metrics: cluster accuracy (Hungarian), NMI, ARI, purity; silhouette, kNN modularity.

Every external metric (``cluster_accuracy``, ``nmi``, ``ari``, ``purity``) compares a ground-truth
labelling ``y_true`` with a clustering ``y_pred``. Both are 1-D array-likes of equal, non-zero
length whose values may be of any hashable, orderable kind (integers, negative or
non-contiguous, strings, booleans): only the partition they induce matters, so every metric is
invariant to an injective renaming of the clusters. The number of clusters need not equal the
number of classes.

This module knows nothing of methods or the benchmark; it only depends on NumPy, SciPy and
scikit-learn.

References
----------
.. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
   Logistics Quarterly, 2(1-2):83-97, 1955.
.. [2] J. Xie, R. Girshick and A. Farhadi, "Unsupervised deep embedding for clustering
   analysis", Proceedings of the 33rd International Conference on Machine Learning (ICML),
   2016.
.. [3] N. X. Vinh, J. Epps and J. Bailey, "Information theoretic measures for clusterings
   comparison: variants, properties, normalization and correction for chance", Journal of
   Machine Learning Research, 11:2837-2854, 2010.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.utils import check_array

__all__ = [
    "ari",
    "cluster_accuracy",
    "cluster_mapping",
    "evaluate",
    "format_metrics",
    "nmi",
    "purity",
    "silhouette",
]

logger = logging.getLogger(__name__)

AVERAGE_METHODS: tuple[str, ...] = ("arithmetic", "geometric", "min", "max")
"""Valid values of ``average_method`` for :func:`nmi` (scikit-learn's generalised means)."""

METRIC_ORDER: tuple[str, ...] = ("acc", "nmi", "ari", "purity", "silhouette")
"""Canonical order of the keys returned by :func:`evaluate`."""

METRIC_LABELS: dict[str, str] = {
    "acc": "ACC",
    "nmi": "NMI",
    "ari": "ARI",
    "purity": "Purity",
    "silhouette": "Silhouette",
}
"""Display names used by :func:`format_metrics`; other keys are shown upper-cased."""


# --------------------------------------------------------------------------------------------
# Validation and contingency table
# --------------------------------------------------------------------------------------------


def _check_label_vector(labels: ArrayLike, name: str) -> np.ndarray:
    """Return ``labels`` as a 1-D, non-empty NumPy array without NaN/inf, or raise ValueError."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array-like of labels, got an array of shape {arr.shape}; "
            "flatten it first (e.g. np.ravel) if it holds one label per sample."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one labelled sample is required.")
    if arr.dtype.kind in "fc":
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{name} contains NaN or infinite values; every sample needs a finite label "
                "(drop unlabelled samples before scoring)."
            )
    elif arr.dtype.kind == "O" or (arr.dtype.kind in "US" and not isinstance(labels, np.ndarray)):
        # A Python list mixing strings and NaN becomes a string array holding "nan": look at
        # the original objects. ``v != v`` is True exactly for NaN-like numbers.
        objs = arr if arr.dtype.kind == "O" else np.asarray(labels, dtype=object)
        is_nan = np.fromiter(
            (isinstance(v, numbers.Number) and v != v for v in objs),
            dtype=bool,
            count=objs.size,
        )
        if is_nan.any():
            raise ValueError(
                f"{name} contains NaN values; every sample needs a label "
                "(drop unlabelled samples before scoring)."
            )
    return arr


def _factorize(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(uniques, codes)`` with ``uniques[codes] == arr`` and codes in ``0..k-1``."""
    try:
        uniques, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise TypeError(
            f"{name} mixes label types that cannot be ordered ({exc}); use labels of a single "
            "type (all integers or all strings)."
        ) from exc
    return uniques, codes.reshape(-1)


def _check_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (ground truth, clustering) pair and return them as arrays."""
    t = _check_label_vector(y_true, "y_true")
    p = _check_label_vector(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and y_pred lengths differ: {t.shape[0]} != {p.shape[0]}; "
            "pass one label per sample in both."
        )
    return t, p


class _Pair(NamedTuple):
    """A validated (ground truth, clustering) pair, factorised once."""

    classes: np.ndarray  # sorted distinct values of y_true, shape (n_classes,)
    clusters: np.ndarray  # sorted distinct values of y_pred, shape (n_clusters,)
    true_codes: np.ndarray  # y_true as codes in 0..n_classes-1
    pred_codes: np.ndarray  # y_pred as codes in 0..n_clusters-1
    table: np.ndarray  # (n_classes, n_clusters) int64 contingency table


def _prepare(y_true: ArrayLike, y_pred: ArrayLike) -> _Pair:
    """Validate inputs, factorise them and build the dense class-by-cluster contingency table.

    ``table[i, j]`` is the number of samples of class ``classes[i]`` in cluster
    ``clusters[j]``.
    """
    t, p = _check_pair(y_true, y_pred)
    classes, t_codes = _factorize(t, "y_true")
    clusters, p_codes = _factorize(p, "y_pred")
    n_classes, n_clusters = classes.shape[0], clusters.shape[0]
    flat = np.bincount(t_codes * n_clusters + p_codes, minlength=n_classes * n_clusters)
    table = flat.reshape(n_classes, n_clusters).astype(np.int64, copy=False)
    return _Pair(classes, clusters, t_codes, p_codes, table)


def _to_python(value: Any) -> Any:
    """Turn a NumPy scalar into the equivalent Python scalar (``np.int64(3)`` -> ``3``)."""
    return value.item() if isinstance(value, np.generic) else value


def _hungarian(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-weight one-to-one matching of rows (classes) and columns (clusters)."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    return rows, cols


def _check_average_method(average_method: str) -> None:
    if average_method not in AVERAGE_METHODS:
        raise ValueError(
            f"average_method must be one of {', '.join(repr(m) for m in AVERAGE_METHODS)}; "
            f"got {average_method!r}."
        )


def _acc(pair: _Pair) -> float:
    rows, cols = _hungarian(pair.table)
    return float(pair.table[rows, cols].sum() / pair.table.sum())


def _nmi(pair: _Pair, average_method: str) -> float:
    return float(
        normalized_mutual_info_score(
            pair.true_codes, pair.pred_codes, average_method=average_method
        )
    )


def _ari(pair: _Pair) -> float:
    return float(adjusted_rand_score(pair.true_codes, pair.pred_codes))


def _purity(pair: _Pair) -> float:
    return float(pair.table.max(axis=0).sum() / pair.table.sum())


# --------------------------------------------------------------------------------------------
# External metrics
# --------------------------------------------------------------------------------------------


def cluster_mapping(y_true: ArrayLike, y_pred: ArrayLike) -> dict[Any, Any]:
    """Cluster-to-class map that maximises the number of matched samples.

    The map is the optimal one-to-one assignment of clusters to classes on the contingency
    table, found by the Hungarian algorithm [1]_ (:func:`scipy.optimize.linear_sum_assignment`
    with ``maximize=True``). It is the map :func:`cluster_accuracy` scores.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any hashable, orderable values; NaN is rejected).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).

    Returns
    -------
    dict
        ``{cluster_label: class_label}`` for each matched cluster, in sorted cluster order,
        with NumPy scalars turned into Python scalars. When there are more clusters than
        classes, only ``n_classes`` clusters are matched and the others are absent from the
        map (their samples count as errors for :func:`cluster_accuracy`); when there are
        fewer, every cluster is matched and some classes receive no cluster.

    Raises
    ------
    ValueError
        If the inputs are not 1-D, are empty, differ in length or contain NaN.

    See Also
    --------
    cluster_accuracy : Fraction of samples whose cluster maps to their class.

    Notes
    -----
    When several matchings reach the same maximum the one returned is the solver's
    (deterministic for given inputs); the accuracy does not depend on that choice.

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
       Logistics Quarterly, 2(1-2):83-97, 1955.

    Examples
    --------
    >>> cluster_mapping([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2])
    {0: 1, 1: 0, 2: 2}
    """
    pair = _prepare(y_true, y_pred)
    rows, cols = _hungarian(pair.table)
    order = np.argsort(cols)  # list clusters in sorted order
    rows, cols = rows[order], cols[order]
    return {_to_python(pair.clusters[c]): _to_python(pair.classes[r]) for r, c in zip(rows, cols)}


def cluster_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unsupervised clustering accuracy (ACC) under the best one-to-one cluster-to-class map.

    .. math::

        \\mathrm{ACC} = \\max_m \\frac{1}{N} \\sum_{i=1}^{N} \\mathbb{1}\\{y_i = m(c_i)\\}

    where :math:`m` ranges over one-to-one maps from clusters to classes, as used to evaluate
    deep clustering since DEC [2]_. The best map is found by the Hungarian algorithm [1]_ on
    the (possibly rectangular) contingency table.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any hashable, orderable values; NaN is rejected).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).

    Returns
    -------
    float
        Accuracy in ``[0, 1]``. With more clusters than classes, the samples of unmatched
        clusters count as errors, so over-segmenting is penalised (unlike :func:`purity`).

    Raises
    ------
    ValueError
        If the inputs are not 1-D, are empty, differ in length or contain NaN.

    See Also
    --------
    cluster_mapping : The map used.
    purity : Many-to-one counterpart (each cluster takes its majority class).

    Notes
    -----
    The dense contingency table has ``n_classes * n_clusters`` entries and the assignment
    costs roughly cubic time in its size, which is immaterial for the tens or hundreds of
    clusters of deep clustering.

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
       Logistics Quarterly, 2(1-2):83-97, 1955.
    .. [2] J. Xie, R. Girshick and A. Farhadi, "Unsupervised deep embedding for clustering
       analysis", Proceedings of the 33rd International Conference on Machine Learning
       (ICML), 2016.

    Examples
    --------
    >>> round(cluster_accuracy([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]), 4)
    0.8333
    """
    return _acc(_prepare(y_true, y_pred))


def nmi(y_true: ArrayLike, y_pred: ArrayLike, average_method: str = "arithmetic") -> float:
    """Normalised mutual information, a thin wrapper of scikit-learn's.

    .. math::

        \\mathrm{NMI}(U, V) = \\frac{I(U; V)}{\\operatorname{mean}(H(U), H(V))}

    where the mean is chosen by ``average_method`` [1]_. Wraps
    :func:`sklearn.metrics.normalized_mutual_info_score`; labels of any type are accepted
    (they are factorised to integer codes first).

    Which normalisation reproduces each paper aeclust implements:

    ===========================================  =========================================
    Method                                       ``average_method``
    ===========================================  =========================================
    CCAE (Nousi & Tefas)                         ``"geometric"`` (stated in the paper)
    DEC, IDEC, DCN, k-DAE, DKM, CT, VCC, ICAE    the original code's sklearn default
    ===========================================  =========================================

    scikit-learn's default was the geometric mean :math:`\\sqrt{H(U) H(V)}` up to 0.21 (the
    ``average_method`` parameter appeared in 0.20 with ``"geometric"`` as its effective
    default) and is the arithmetic mean since 0.22. Code written against an older
    scikit-learn therefore reported geometric NMI; recent code reports arithmetic NMI. Pass
    the value matching the paper's code when comparing with published numbers. The two agree
    when the number of clusters equals the number of classes and both are balanced, and differ
    most when the clustering has a very different entropy from the classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any hashable, orderable values; NaN is rejected).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).
    average_method : {"arithmetic", "geometric", "min", "max"}, default="arithmetic"
        Generalised mean of the two entropies used as the normaliser.

    Returns
    -------
    float
        NMI in ``[0, 1]``; 1.0 when the two labellings induce the same partition.

    Raises
    ------
    ValueError
        If the inputs are not 1-D, are empty, differ in length or contain NaN, or if
        ``average_method`` is not one of the valid names.

    References
    ----------
    .. [1] N. X. Vinh, J. Epps and J. Bailey, "Information theoretic measures for clusterings
       comparison: variants, properties, normalization and correction for chance", Journal of
       Machine Learning Research, 11:2837-2854, 2010.

    Examples
    --------
    >>> nmi([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    _check_average_method(average_method)
    return _nmi(_prepare(y_true, y_pred), average_method)


def ari(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted Rand index, a thin wrapper of scikit-learn's.

    The Rand index corrected for chance (Hubert & Arabie [1]_): 1.0 for identical partitions,
    about 0.0 for random labellings, possibly negative. Wraps
    :func:`sklearn.metrics.adjusted_rand_score`; labels of any type are accepted.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any hashable, orderable values; NaN is rejected).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).

    Returns
    -------
    float
        ARI in ``[-0.5, 1]``.

    Raises
    ------
    ValueError
        If the inputs are not 1-D, are empty, differ in length or contain NaN.

    References
    ----------
    .. [1] L. Hubert and P. Arabie, "Comparing partitions", Journal of Classification,
       2(1):193-218, 1985.

    Examples
    --------
    >>> ari([0, 0, 1, 1], ["b", "b", "a", "a"])
    1.0
    """
    return _ari(_prepare(y_true, y_pred))


def purity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Cluster purity: each cluster is credited with its majority class.

    .. math::

        \\mathrm{purity} = \\frac{1}{N} \\sum_{k} \\max_{j} |c_k \\cap t_j|

    Several clusters may take the same class (a many-to-one map), so purity is never below
    :func:`cluster_accuracy` and reaches 1.0 when every point is its own cluster; read it
    together with the number of clusters.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any hashable, orderable values; NaN is rejected).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).

    Returns
    -------
    float
        Purity in ``(0, 1]``.

    Raises
    ------
    ValueError
        If the inputs are not 1-D, are empty, differ in length or contain NaN.

    References
    ----------
    .. [1] C. D. Manning, P. Raghavan and H. Schütze, "Introduction to Information
       Retrieval", Cambridge University Press, 2008, section 16.3.

    Examples
    --------
    >>> purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 3])
    1.0
    """
    return _purity(_prepare(y_true, y_pred))


# --------------------------------------------------------------------------------------------
# Internal metric
# --------------------------------------------------------------------------------------------


def _check_points_and_labels(X: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """A finite 2-D ``X`` and a label vector with one label per row (the internal indices)."""
    X_arr = check_array(X, accept_sparse=False, dtype="numeric")
    lab = _check_label_vector(labels, "labels")
    if lab.shape[0] != X_arr.shape[0]:
        raise ValueError(
            f"X and labels lengths differ: X has {X_arr.shape[0]} rows but labels has "
            f"{lab.shape[0]} entries; pass one label per row of X."
        )
    return X_arr, lab


def _subsample_rows(
    n: int, sample_size: int | None, random_state: int | np.random.Generator | None
) -> np.ndarray | None:
    """Sorted indices of ``sample_size`` of ``n`` rows drawn without replacement from a local
    generator (the global NumPy state is not touched); None when every row is used."""
    if sample_size is None or n <= sample_size:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(sample_size), replace=False))


def silhouette(
    X: ArrayLike,
    labels: ArrayLike,
    *,
    sample_size: int | None = 10000,
    random_state: int | np.random.Generator | None = 0,
    metric: str = "euclidean",
) -> float:
    """Mean silhouette coefficient, on a random subsample when the data are large.

    Wraps :func:`sklearn.metrics.silhouette_score` (Rousseeuw [1]_). When ``X`` has more than
    ``sample_size`` rows, the score is computed on ``sample_size`` rows drawn without
    replacement with a local :class:`numpy.random.Generator` seeded by ``random_state``, so
    the same seed gives the same value (the global NumPy state is not touched). Its cost is
    quadratic in the number of rows scored.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or (n_samples, n_samples)
        Feature matrix (e.g. the embedding that was clustered), or pairwise distances when
        ``metric="precomputed"`` (then both rows and columns are subsampled). Must be finite.
    labels : array-like of shape (n_samples,)
        Cluster labels (any hashable, orderable values; NaN is rejected).
    sample_size : int or None, default=10000
        Number of rows to score when ``n_samples`` is larger; ``None`` scores all rows.
    random_state : int, numpy.random.Generator or None, default=0
        Seed (or generator) for the subsample; ``None`` draws fresh entropy.
    metric : str, default="euclidean"
        Any metric accepted by :func:`sklearn.metrics.pairwise_distances`, or
        ``"precomputed"``.

    Returns
    -------
    float
        Silhouette in ``[-1, 1]``, or ``nan`` when it is undefined: when the (subsampled)
        labels form a single cluster or when every (subsampled) point is its own cluster.
        These degenerate cases return ``nan`` rather than raising (scikit-learn raises), so
        that a collapsed clustering can still be reported; a warning is logged.

    Raises
    ------
    ValueError
        If ``X`` is not a finite 2-D array, ``labels`` is not a valid 1-D label vector, their
        lengths differ, or ``sample_size`` is not a positive integer or None.

    References
    ----------
    .. [1] P. J. Rousseeuw, "Silhouettes: a graphical aid to the interpretation and
       validation of cluster analysis", Journal of Computational and Applied Mathematics,
       20:53-65, 1987.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> round(silhouette(X, [0, 0, 1, 1]), 4)
    0.98
    >>> silhouette(X, [0, 0, 0, 0])
    nan
    """
    X_arr, lab = _check_points_and_labels(X, labels)
    n = X_arr.shape[0]
    if sample_size is not None and (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, numbers.Integral)
        or sample_size < 1
    ):
        raise ValueError(f"sample_size must be a positive integer or None, got {sample_size!r}.")
    if metric == "precomputed" and X_arr.shape[0] != X_arr.shape[1]:
        raise ValueError(
            f"with metric='precomputed' X must be a square distance matrix, got shape "
            f"{X_arr.shape}."
        )

    idx = _subsample_rows(n, sample_size, random_state)
    if idx is not None:
        X_arr = X_arr[np.ix_(idx, idx)] if metric == "precomputed" else X_arr[idx]
        lab = lab[idx]
        n = idx.shape[0]

    _, codes = _factorize(lab, "labels")
    n_labels = int(codes.max()) + 1
    if n_labels < 2 or n_labels >= n:
        logger.warning(
            "silhouette is undefined for %d cluster(s) among %d scored samples (it needs "
            "2 <= n_clusters <= n_samples - 1); returning nan.",
            n_labels,
            n,
        )
        return math.nan
    return float(silhouette_score(X_arr, codes, metric=metric))


def knn_modularity(
    X: ArrayLike,
    labels: ArrayLike,
    *,
    n_neighbors: int = 10,
    sample_size: int | None = 5000,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """Newman's modularity of a partition on the k-nearest-neighbour graph of ``X``.

    The graph joins each row to its ``n_neighbors`` nearest rows (Euclidean) and is made
    symmetric (an edge when either row is among the other's neighbours). The modularity [1]_

        Q = sum_c [ e_c / m - (d_c / 2m)^2 ]

    (``e_c`` edges inside cluster c, ``d_c`` the sum of its rows' degrees, ``m`` the number of
    edges) is the fraction of edges that stay inside clusters minus the fraction expected if
    edges were drawn at random with the same degrees. Unlike the silhouette it does not ask a
    cluster to be round or compact, only to cut few neighbourhood edges, so it scores a
    partition that follows a curved manifold (what a graph-based embedding such as UMAP
    finds) as well as a convex one. One cluster gives 0; a cluster holding most rows is
    penalised by the expected-fraction term.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The points the graph is built on (e.g. the input space, shared by every method).
    labels : array-like of shape (n_samples,)
    n_neighbors : int, default=10
    sample_size : int or None, default=5000
        Rows drawn without replacement (seeded by ``random_state``) when ``X`` has more; the
        graph's cost is quadratic in them. ``None`` uses all rows.
    random_state : int, numpy.random.Generator or None, default=0

    Returns
    -------
    float
        Q in [-1/2, 1); ``nan`` when the (subsampled) data have too few rows for the graph.

    References
    ----------
    .. [1] M. E. J. Newman, "Modularity and community structure in networks", Proceedings of
       the National Academy of Sciences, 103(23):8577-8582, 2006.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> round(knn_modularity(X, [0, 0, 0, 1, 1, 1], n_neighbors=2), 3)
    0.5
    >>> knn_modularity(X, [0, 0, 0, 0, 0, 0], n_neighbors=2)
    0.0
    """
    from sklearn.neighbors import kneighbors_graph

    X_arr, lab = _check_points_and_labels(X, labels)
    n = X_arr.shape[0]
    for name, value, allow_none in (
        ("n_neighbors", n_neighbors, False),
        ("sample_size", sample_size, True),
    ):
        if (value is None and not allow_none) or (
            value is not None
            and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1)
        ):
            allowed = "a positive integer" + (" or None" if allow_none else "")
            raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    idx = _subsample_rows(n, sample_size, random_state)
    if idx is not None:
        X_arr, lab, n = X_arr[idx], lab[idx], idx.shape[0]
    if n <= n_neighbors:
        logger.warning(
            "knn_modularity needs more than n_neighbors=%d rows, got %d; returning nan.",
            n_neighbors,
            n,
        )
        return math.nan
    _, codes = _factorize(lab, "labels")
    graph = kneighbors_graph(X_arr, n_neighbors, include_self=False)
    graph = graph.maximum(graph.T).tocoo()
    two_m = float(graph.nnz)  # each undirected edge is stored twice
    inside = float(np.count_nonzero(codes[graph.row] == codes[graph.col]))
    degree_sums = np.bincount(codes[graph.row], minlength=int(codes.max()) + 1)
    return float(inside / two_m - np.sum((degree_sums / two_m) ** 2))


# --------------------------------------------------------------------------------------------
# All at once
# --------------------------------------------------------------------------------------------


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    X: ArrayLike | None = None,
    *,
    average_method: str = "arithmetic",
) -> dict[str, float]:
    """Compute every clustering metric at once.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels.
    X : array-like of shape (n_samples, n_features), optional
        Data (or embedding) the clustering was computed on; when given, the silhouette of
        ``y_pred`` on ``X`` is added with :func:`silhouette`'s defaults (subsampled to 10000
        rows with seed 0).
    average_method : {"arithmetic", "geometric", "min", "max"}, default="arithmetic"
        Normalisation of NMI; see :func:`nmi` for which one each paper used.

    Returns
    -------
    dict of str to float
        Keys ``"acc"``, ``"nmi"``, ``"ari"``, ``"purity"`` and, when ``X`` is given,
        ``"silhouette"`` (possibly ``nan``), in that order.

    Raises
    ------
    ValueError
        On invalid labels or ``X`` (see the individual metrics).

    See Also
    --------
    format_metrics : One-line summary of the result.

    Examples
    --------
    >>> evaluate([0, 0, 1, 1], [1, 1, 0, 0])
    {'acc': 1.0, 'nmi': 1.0, 'ari': 1.0, 'purity': 1.0}
    """
    _check_average_method(average_method)
    pair = _prepare(y_true, y_pred)
    result = {
        "acc": _acc(pair),
        "nmi": _nmi(pair, average_method),
        "ari": _ari(pair),
        "purity": _purity(pair),
    }
    if X is not None:
        result["silhouette"] = silhouette(X, y_pred)
    return result


def format_metrics(d: Mapping[str, float], keys: Iterable[str] | None = None) -> str:
    """Format metrics as one line, e.g. ``ACC 0.9123  NMI 0.8456  ARI 0.8012``.

    Each metric is written as its display name, one space and its value with 4 decimals;
    metrics are separated by two spaces. Display names are ``ACC``, ``NMI``, ``ARI``,
    ``Purity`` and ``Silhouette`` for the keys of :func:`evaluate`, and the upper-cased key
    otherwise. ``nan`` is written as ``nan``.

    Parameters
    ----------
    d : mapping of str to float
        Metric values, e.g. the output of :func:`evaluate`.
    keys : iterable of str, optional
        Keys to show, in that order. By default all keys of ``d``: those of :func:`evaluate`
        first in its order (acc, nmi, ari, purity, silhouette), then any others in ``d``'s
        order.

    Returns
    -------
    str
        The formatted line (empty if there is nothing to show).

    Raises
    ------
    ValueError
        If a requested key is missing from ``d``.

    Examples
    --------
    >>> format_metrics({"acc": 0.91234, "nmi": 0.84561, "ari": 0.80119})
    'ACC 0.9123  NMI 0.8456  ARI 0.8012'
    >>> format_metrics({"acc": 0.5, "purity": 0.75, "nmi": 0.25}, keys=["acc", "nmi"])
    'ACC 0.5000  NMI 0.2500'
    """
    if keys is None:
        shown = [k for k in METRIC_ORDER if k in d] + [k for k in d if k not in METRIC_ORDER]
    else:
        shown = list(keys)
        missing = [k for k in shown if k not in d]
        if missing:
            raise ValueError(
                f"metrics {missing} are not in the given dict; available: {sorted(d)}."
            )
    return "  ".join(f"{METRIC_LABELS.get(k, k.upper())} {float(d[k]):.4f}" for k in shown)
