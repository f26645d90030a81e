"""The label-free check of fitted partitions (aeclust.diagnostics) and fit's warning."""

import warnings

import numpy as np
import pytest

from aeclust import KMeans
from aeclust.diagnostics import DegenerateClusteringWarning, partition_problems


def test_a_balanced_partition_has_no_problem():
    labels = np.repeat(np.arange(4), 25)
    embedding = np.random.default_rng(0).normal(size=(100, 3))
    assert partition_problems(labels, 4, embedding) == []


def test_empty_clusters_are_counted():
    assert partition_problems([0, 0, 2, 2], 4) == ["2 of 4 clusters are empty"]


def test_a_majority_cluster_is_named_only_from_three_clusters():
    labels = [0] * 8 + [1, 2]
    assert partition_problems(labels, 3) == ["one cluster holds 8 of 10 points (80%)"]
    # with two clusters a majority is expected; a share of exactly one half is not "most"
    assert partition_problems([0] * 8 + [1] * 2, 2) == []
    assert partition_problems([0] * 5 + [1, 1, 2, 2, 2], 3) == []


def test_a_collapsed_embedding_is_found_relative_to_its_scale():
    labels = np.repeat(np.arange(2), 50)
    rng = np.random.default_rng(0)
    far = 1e3 + 1e-6 * rng.normal(size=(100, 4))  # all at one point, far from the origin
    (problem,) = partition_problems(labels, 2, far)
    assert problem.startswith("the embedding collapsed")
    zeros = np.zeros((100, 4))  # dead units: every code zero
    assert partition_problems(labels, 2, zeros)[0].startswith("the embedding collapsed")
    spread = 1e3 + rng.normal(size=(100, 4))  # same offset, unit spread: healthy
    assert partition_problems(labels, 2, spread) == []


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_warns_on_a_degenerate_partition():
    x = np.ones((30, 5), dtype=np.float32)  # one distinct point: k-means leaves clusters empty
    with pytest.warns(DegenerateClusteringWarning, match="KMeans ended in a degenerate partition"):
        KMeans(n_clusters=3, n_init=1, random_state=0).fit(x)


def test_fit_is_silent_on_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(size=(20, 2)).astype(np.float32) for c in centres])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateClusteringWarning)
        labels = KMeans(n_clusters=3, random_state=0).fit_predict(x)
    assert np.bincount(labels).tolist() == [20, 20, 20]
