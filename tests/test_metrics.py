"""Tests for aeclust.metrics."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from aeclust import metrics
from aeclust.metrics import (
    ari,
    cluster_accuracy,
    cluster_mapping,
    evaluate,
    format_metrics,
    knn_modularity,
    nmi,
    purity,
    silhouette,
)

AVERAGE_METHODS = ["arithmetic", "geometric", "min", "max"]
FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------------------------
# Helpers and strategies
# --------------------------------------------------------------------------------------------


def brute_force_accuracy(y_true, y_pred) -> float:
    """Best one-to-one matching by trying every injective map (tiny inputs only)."""
    classes = sorted(set(y_true))
    clusters = sorted(set(y_pred))
    table = np.zeros((len(classes), len(clusters)), dtype=int)
    for t, p in zip(y_true, y_pred):
        table[classes.index(t), clusters.index(p)] += 1
    best = 0
    if len(clusters) <= len(classes):
        for perm in itertools.permutations(range(len(classes)), len(clusters)):
            best = max(best, sum(table[perm[j], j] for j in range(len(clusters))))
    else:
        for perm in itertools.permutations(range(len(clusters)), len(classes)):
            best = max(best, sum(table[i, perm[i]] for i in range(len(classes))))
    return best / len(y_true)


@st.composite
def label_pairs(draw, max_n=30, max_true=5, max_pred=5):
    """Equal-length (y_true, y_pred) lists of small integer labels."""
    n = draw(st.integers(1, max_n))
    y_true = draw(st.lists(st.integers(0, max_true - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, max_pred - 1), min_size=n, max_size=n))
    return y_true, y_pred


@st.composite
def injective_renaming(draw, labels):
    """A map sending each distinct label to a distinct new label (ints or strings)."""
    uniques = sorted(set(labels))
    kind = draw(st.sampled_from(["int", "str"]))
    if kind == "int":
        new = draw(
            st.lists(
                st.integers(-1000, 1000),
                min_size=len(uniques),
                max_size=len(uniques),
                unique=True,
            )
        )
    else:
        new = draw(
            st.lists(
                st.text("abcxyz", min_size=1, max_size=4),
                min_size=len(uniques),
                max_size=len(uniques),
                unique=True,
            )
        )
    return dict(zip(uniques, new))


# --------------------------------------------------------------------------------------------
# Hand-worked cases
# --------------------------------------------------------------------------------------------


def test_hand_worked_square():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [1, 1, 0, 0, 0, 2]
    # Contingency (rows classes, columns clusters): [[0,2,0],[2,0,0],[1,0,1]].
    # Best matching 1->0, 0->1, 2->2: 2 + 2 + 1 = 5 correct.
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert cluster_mapping(y_true, y_pred) == {0: 1, 1: 0, 2: 2}
    # Majorities: cluster 0 -> 2 (class 1), cluster 1 -> 2, cluster 2 -> 1.
    assert purity(y_true, y_pred) == pytest.approx(5 / 6)


def test_more_clusters_than_classes():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 3]
    # Only two clusters can be matched: 0->0 (2) and 2->1 (2); clusters 1 and 3 are errors.
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert cluster_mapping(y_true, y_pred) == {0: 0, 2: 1}
    # Every cluster is pure.
    assert purity(y_true, y_pred) == pytest.approx(1.0)


def test_fewer_clusters_than_classes():
    y_true = [0, 0, 1, 0, 0, 2]
    y_pred = [0, 0, 0, 1, 1, 1]
    # Contingency [[2,2],[1,0],[0,1]]: one cluster takes class 0 (2), the other class 1 or 2 (1).
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(3 / 6)
    mapping = cluster_mapping(y_true, y_pred)
    assert len(mapping) == 2
    assert sorted(mapping) == [0, 1]
    assert len(set(mapping.values())) == 2
    # Both clusters have majority class 0 with count 2: purity 4/6 > accuracy.
    assert purity(y_true, y_pred) == pytest.approx(4 / 6)


def test_single_cluster():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [7, 7, 7, 7, 7, 7]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(3 / 6)
    assert purity(y_true, y_pred) == pytest.approx(3 / 6)
    assert cluster_mapping(y_true, y_pred) == {7: 0}
    assert nmi(y_true, y_pred) == pytest.approx(0.0)
    assert ari(y_true, y_pred) == pytest.approx(0.0)


def test_string_labels():
    y_true = ["cat", "cat", "dog", "dog", "dog"]
    y_pred = ["x", "x", "y", "y", "z"]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 5)
    mapping = cluster_mapping(y_true, y_pred)
    assert mapping == {"x": "cat", "y": "dog"}
    assert all(type(k) is str and type(v) is str for k, v in mapping.items())
    assert purity(y_true, y_pred) == pytest.approx(1.0)
    as_ints = ([0, 0, 1, 1, 1], [0, 0, 1, 1, 2])
    assert nmi(y_true, y_pred) == pytest.approx(normalized_mutual_info_score(*as_ints))
    assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(*as_ints))


def test_negative_and_noncontiguous_labels():
    y_true = np.array([10, 10, 20, 20, 20])
    y_pred = np.array([-1, -1, 100, 100, 7])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 5)
    mapping = cluster_mapping(y_true, y_pred)
    assert mapping == {-1: 10, 100: 20}
    assert all(type(k) is int and type(v) is int for k, v in mapping.items())


def test_mixed_label_kinds_between_true_and_pred():
    # y_true as strings, y_pred as floats (integral values): only the partitions matter.
    y_true = np.array(["a", "a", "b", "b"])
    y_pred = np.array([2.0, 2.0, -3.5, -3.5])
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert cluster_mapping(y_true, y_pred) == {-3.5: "b", 2.0: "a"}


def test_returns_python_floats():
    y_true, y_pred = [0, 0, 1, 1], [0, 1, 1, 1]
    for value in (
        cluster_accuracy(y_true, y_pred),
        nmi(y_true, y_pred),
        ari(y_true, y_pred),
        purity(y_true, y_pred),
    ):
        assert type(value) is float


# --------------------------------------------------------------------------------------------
# Agreement with references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("average_method", AVERAGE_METHODS)
@pytest.mark.parametrize("seed", range(5))
def test_nmi_matches_sklearn(average_method, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=200)
    y_pred = rng.integers(0, 6, size=200)
    expected = normalized_mutual_info_score(y_true, y_pred, average_method=average_method)
    assert nmi(y_true, y_pred, average_method=average_method) == pytest.approx(expected)


def test_nmi_default_is_arithmetic():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 100), rng.integers(0, 8, 100)
    assert nmi(y_true, y_pred) == pytest.approx(
        normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic")
    )
    # The normalisations really differ here, so the choice matters.
    assert nmi(y_true, y_pred, "geometric") != pytest.approx(nmi(y_true, y_pred, "arithmetic"))


@pytest.mark.parametrize("seed", range(5))
def test_ari_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 5, size=200))
    assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred))


@FAST
@given(label_pairs())
def test_accuracy_matches_brute_force(pair):
    y_true, y_pred = pair
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))


@FAST
@given(label_pairs())
def test_mapping_is_injective_and_achieves_accuracy(pair):
    y_true, y_pred = pair
    mapping = cluster_mapping(y_true, y_pred)
    assert set(mapping) <= set(y_pred)
    assert set(mapping.values()) <= set(y_true)
    assert len(set(mapping.values())) == len(mapping)
    assert len(mapping) == min(len(set(y_true)), len(set(y_pred)))
    hits = sum(mapping.get(p) == t for t, p in zip(y_true, y_pred))
    assert hits / len(y_true) == pytest.approx(cluster_accuracy(y_true, y_pred))


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_invariant_to_relabelling_of_clusters(data):
    y_true, y_pred = data.draw(label_pairs())
    renaming = data.draw(injective_renaming(y_pred))
    renamed = [renaming[p] for p in y_pred]
    X = np.arange(len(y_true), dtype=float)[:, None] ** 1.5
    before = evaluate(y_true, y_pred, X)
    after = evaluate(y_true, renamed, X)
    assert before.keys() == after.keys()
    for key in before:
        if math.isnan(before[key]):
            assert math.isnan(after[key])
        else:
            assert after[key] == pytest.approx(before[key], abs=1e-12), key


@FAST
@given(st.data())
def test_invariant_to_relabelling_of_classes(data):
    y_true, y_pred = data.draw(label_pairs())
    renaming = data.draw(injective_renaming(y_true))
    renamed = [renaming[t] for t in y_true]
    before = evaluate(y_true, y_pred)
    after = evaluate(renamed, y_pred)
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-12), key


@FAST
@given(st.data())
def test_perfect_clustering_scores_one(data):
    y_true, _ = data.draw(label_pairs())
    renaming = data.draw(injective_renaming(y_true))
    y_pred = [renaming[t] for t in y_true]
    result = evaluate(y_true, y_pred)
    for key in ("acc", "nmi", "ari", "purity"):
        assert result[key] == pytest.approx(1.0), key
    assert cluster_mapping(y_true, y_pred) == {v: k for k, v in renaming.items()}


@FAST
@given(label_pairs(max_true=6, max_pred=8))
def test_bounds(pair):
    y_true, y_pred = pair
    acc = cluster_accuracy(y_true, y_pred)
    pur = purity(y_true, y_pred)
    assert 0.0 < acc <= 1.0
    assert 0.0 < pur <= 1.0
    # Purity lets several clusters share a class, so it is never below accuracy.
    assert pur >= acc - 1e-12
    for method in AVERAGE_METHODS:
        assert -1e-12 <= nmi(y_true, y_pred, method) <= 1.0 + 1e-12
    assert ari(y_true, y_pred) <= 1.0 + 1e-12


@FAST
@given(label_pairs())
def test_accuracy_symmetric(pair):
    # The matching is one-to-one, so swapping the roles of classes and clusters changes nothing.
    y_true, y_pred = pair
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(cluster_accuracy(y_pred, y_true))


# --------------------------------------------------------------------------------------------
# Silhouette
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=3000, centers=4, cluster_std=1.5, random_state=0)
    return X, y


def test_silhouette_full_matches_sklearn(blobs):
    X, y = blobs
    X, y = X[:800], y[:800]
    assert silhouette(X, y, sample_size=None) == pytest.approx(silhouette_score(X, y))
    # sample_size >= n_samples: no subsampling.
    assert silhouette(X, y, sample_size=800) == pytest.approx(silhouette_score(X, y))


def test_silhouette_sampled_close_to_full(blobs):
    X, y = blobs
    full = silhouette(X, y, sample_size=None)
    sampled = silhouette(X, y, sample_size=1000, random_state=0)
    assert sampled == pytest.approx(full, abs=0.03)
    assert sampled != full  # really subsampled


def test_silhouette_deterministic_for_seed(blobs):
    X, y = blobs
    a = silhouette(X, y, sample_size=500, random_state=3)
    b = silhouette(X, y, sample_size=500, random_state=3)
    c = silhouette(X, y, sample_size=500, random_state=4)
    assert a == b
    assert a != c
    gen = silhouette(X, y, sample_size=500, random_state=np.random.default_rng(3))
    assert gen == a


def test_silhouette_does_not_touch_global_rng(blobs):
    X, y = blobs
    # The legacy global state is exactly what must stay untouched.
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    silhouette(X, y, sample_size=500, random_state=None)
    assert np.random.random() == expected  # noqa: NPY002


def test_silhouette_precomputed_subsamples_rows_and_columns(blobs):
    X, y = blobs
    X, y = X[:600], y[:600]
    D = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)
    a = silhouette(D, y, sample_size=200, random_state=1, metric="precomputed")
    b = silhouette(X, y, sample_size=200, random_state=1)
    assert a == pytest.approx(b)


def test_silhouette_string_labels(blobs):
    X, y = blobs
    X, y = X[:300], y[:300]
    names = np.array(["north", "south", "east", "west"])[y]
    assert silhouette(X, names, sample_size=None) == pytest.approx(silhouette_score(X, y))


def test_silhouette_nan_for_one_cluster(blobs):
    X, _ = blobs
    assert math.isnan(silhouette(X[:100], np.zeros(100, dtype=int)))


def test_silhouette_nan_when_every_point_is_its_own_cluster():
    X = np.random.default_rng(0).normal(size=(20, 3))
    assert math.isnan(silhouette(X, np.arange(20)))


def test_silhouette_nan_when_subsample_has_one_cluster():
    X = np.random.default_rng(0).normal(size=(1000, 2))
    labels = np.zeros(1000, dtype=int)
    labels[0] = 1  # a single outlier cluster, almost surely not drawn
    assert math.isnan(silhouette(X, labels, sample_size=5, random_state=0))


# --------------------------------------------------------------------------------------------
# evaluate and format_metrics
# --------------------------------------------------------------------------------------------


def test_evaluate_keys_and_values():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [1, 1, 0, 0, 0, 2]
    result = evaluate(y_true, y_pred)
    assert list(result) == ["acc", "nmi", "ari", "purity"]
    assert result["acc"] == pytest.approx(cluster_accuracy(y_true, y_pred))
    assert result["nmi"] == pytest.approx(nmi(y_true, y_pred))
    assert result["ari"] == pytest.approx(ari(y_true, y_pred))
    assert result["purity"] == pytest.approx(purity(y_true, y_pred))
    geo = evaluate(y_true, y_pred, average_method="geometric")
    assert geo["nmi"] == pytest.approx(nmi(y_true, y_pred, average_method="geometric"))


def test_evaluate_with_X(blobs):
    X, y = blobs
    result = evaluate(y, y, X)
    assert list(result) == ["acc", "nmi", "ari", "purity", "silhouette"]
    assert result["silhouette"] == pytest.approx(silhouette(X, y))


def test_format_metrics_exact():
    d = {"acc": 0.91234, "nmi": 0.84561, "ari": 0.80119}
    assert format_metrics(d) == "ACC 0.9123  NMI 0.8456  ARI 0.8012"


def test_format_metrics_order_and_keys():
    d = {"silhouette": 0.25, "purity": 1.0, "ari": 0.5, "acc": 0.75, "nmi": 0.125, "time": 3.0}
    assert format_metrics(d) == (
        "ACC 0.7500  NMI 0.1250  ARI 0.5000  Purity 1.0000  Silhouette 0.2500  TIME 3.0000"
    )
    assert format_metrics(d, keys=["acc", "nmi", "ari"]) == "ACC 0.7500  NMI 0.1250  ARI 0.5000"
    assert format_metrics({"acc": float("nan")}) == "ACC nan"
    assert format_metrics({}) == ""
    with pytest.raises(ValueError, match="not in the given dict"):
        format_metrics(d, keys=["acc", "f1"])


def test_format_metrics_of_evaluate():
    line = format_metrics(evaluate([0, 0, 1, 1], [1, 1, 0, 0]))
    assert line == "ACC 1.0000  NMI 1.0000  ARI 1.0000  Purity 1.0000"


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

LABEL_METRICS = [cluster_accuracy, cluster_mapping, nmi, ari, purity, evaluate]


@pytest.mark.parametrize("fn", LABEL_METRICS)
def test_lengths_differ(fn):
    with pytest.raises(ValueError, match=r"lengths differ: 3 != 2"):
        fn([0, 1, 1], [0, 1])


@pytest.mark.parametrize("fn", LABEL_METRICS)
def test_not_1d(fn):
    with pytest.raises(ValueError, match=r"y_pred must be a 1-D .* shape \(2, 2\)"):
        fn([0, 1, 1, 0], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"y_true must be a 1-D .* shape \(\)"):
        fn(3, [0])


@pytest.mark.parametrize("fn", LABEL_METRICS)
def test_empty(fn):
    with pytest.raises(ValueError, match="y_true is empty"):
        fn([], [])


@pytest.mark.parametrize("fn", LABEL_METRICS)
@pytest.mark.parametrize(
    "bad",
    [
        [0.0, float("nan"), 1.0],
        np.array([0, np.nan, 1], dtype=object),
        ["a", float("nan"), "b"],
        [0.0, np.inf, 1.0],
    ],
    ids=["float-nan", "object-nan", "str-and-nan", "inf"],
)
def test_nan_labels(fn, bad):
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        fn([0, 1, 1], bad)


def test_unorderable_mixed_labels():
    with pytest.raises(TypeError, match="single type"):
        cluster_accuracy([0, 1, 1], np.array([0, "a", "a"], dtype=object))


@pytest.mark.parametrize("fn", [nmi, lambda t, p, m: evaluate(t, p, average_method=m)])
def test_bad_average_method(fn):
    with pytest.raises(ValueError, match="average_method must be one of 'arithmetic'"):
        fn([0, 1], [0, 1], "harmonic")


def test_silhouette_validation():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="X and labels lengths differ"):
        silhouette(X, [0, 1, 1])
    with pytest.raises(ValueError, match="labels contains NaN"):
        silhouette(X, [0, 1, np.nan, 1])
    with pytest.raises(ValueError, match="0 sample"):
        silhouette(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match="sample_size must be a positive integer"):
        silhouette(X, [0, 0, 1, 1], sample_size=0)
    with pytest.raises(ValueError, match="sample_size must be a positive integer"):
        silhouette(X, [0, 0, 1, 1], sample_size=2.5)
    with pytest.raises(ValueError, match="square distance matrix"):
        silhouette(np.zeros((4, 3)), [0, 0, 1, 1], metric="precomputed")
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        silhouette(np.array([[0.0], [np.nan], [1.0], [2.0]]), [0, 0, 1, 1])


def test_evaluate_validates_X_length():
    with pytest.raises(ValueError, match="X and labels lengths differ"):
        evaluate([0, 0, 1, 1], [0, 0, 1, 1], np.zeros((3, 2)))


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_knn_modularity_of_two_triangles_by_hand():
    # 2 neighbours each: the symmetrised graph is two triangles, m = 6 edges, all inside,
    # each cluster holds half of the degree: Q = 6/6 - 2 * (1/2)^2 = 0.5
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    assert knn_modularity(x, [0, 0, 0, 1, 1, 1], n_neighbors=2) == pytest.approx(0.5)
    assert knn_modularity(x, ["b", "b", "b", "a", "a", "a"], n_neighbors=2) == pytest.approx(0.5)
    assert knn_modularity(x, [0] * 6, n_neighbors=2) == pytest.approx(0.0)
    # a cut through both triangles: 2 of 6 edges inside, each cluster again half the degree
    assert knn_modularity(x, [0, 1, 1, 0, 0, 1], n_neighbors=2) == pytest.approx(2 / 6 - 0.5)


def test_knn_modularity_prefers_the_manifold_to_the_convex_cut():
    # two concentric rings: k-means cuts them into halves, the rings are the neighbourhoods
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 400)
    radius = np.repeat([1.0, 3.0], 200)
    x = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    rings = np.repeat([0, 1], 200)
    halves = (x[:, 0] > 0).astype(int)
    # the halves cut each ring at only two places, so the margin is small (0.50 against 0.47)
    assert knn_modularity(x, rings) > knn_modularity(x, halves) + 0.02
    assert silhouette(x, rings) < silhouette(x, halves)  # the silhouette prefers the cut


def test_knn_modularity_subsamples_deterministically_and_checks_its_input(blobs):
    x, y = blobs
    full = knn_modularity(x, y, sample_size=None)
    assert knn_modularity(x, y, sample_size=60) == knn_modularity(x, y, sample_size=60)
    assert knn_modularity(x, y, sample_size=60, random_state=1) != pytest.approx(full, abs=1e-9)
    assert 0.0 < full < 1.0
    with pytest.raises(ValueError, match="n_neighbors must be a positive integer"):
        knn_modularity(x, y, n_neighbors=0)
    with pytest.raises(ValueError, match="sample_size must be a positive integer or None"):
        knn_modularity(x, y, sample_size=True)
    with pytest.raises(ValueError, match="lengths differ"):
        knn_modularity(x, y[:-1])
    assert np.isnan(knn_modularity(x[:5], y[:5], n_neighbors=10))
