"""Label-free checks of a fitted partition: is it degenerate?

A deep clustering fit can end in a partition that no score on the user's side would show without
labels: one cluster that swallowed most points, clusters left empty, or an embedding that
collapsed to (nearly) one point, so that the assignment is decided by rounding noise. Every
estimator's ``fit`` runs :func:`partition_problems` on its training labels and embedding and warns
with :class:`DegenerateClusteringWarning` when it finds one; nothing here uses labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DegenerateClusteringWarning", "partition_problems"]

#: Above this share of the points in one cluster (with three or more clusters asked for), the
#: partition is called dominated: a majority cluster is what collapse looks like on the way.
DOMINANT_SHARE = 0.5

#: The embedding counts as collapsed when its total variance is below this fraction of its mean
#: squared norm (a relative spread of 1e-4: float32 keeps about 7 digits, so the geometry left
#: is at the level of rounding).
COLLAPSED_RELATIVE_VARIANCE = 1e-8


class DegenerateClusteringWarning(UserWarning):
    """A fit ended in a degenerate partition (see :func:`partition_problems`)."""


def partition_problems(labels: Any, n_clusters: int, embedding: Any | None = None) -> list[str]:
    """What is degenerate about a partition, in words (an empty list when nothing is).

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Cluster index of each training point, in ``0 .. n_clusters - 1``.
    n_clusters : int
        The number of clusters asked for.
    embedding : array-like of shape (n_samples, d), optional
        The space the method clustered in; checked for collapse.

    Returns
    -------
    list of str
        One sentence per problem: empty clusters; one cluster holding more than half of the
        points (only with three or more clusters: with two, a majority is expected); an embedding
        whose spread is at the level of float32 rounding.

    Examples
    --------
    >>> partition_problems([0, 0, 0, 0, 1, 2], 3)
    ['one cluster holds 4 of 6 points (67%)']
    >>> partition_problems([0, 1, 0, 1], 3)
    ['1 of 3 clusters are empty']
    """
    labels = np.asarray(labels).reshape(-1)
    problems = []
    n = labels.size
    if n == 0:
        return problems
    sizes = np.bincount(labels.astype(np.int64), minlength=n_clusters)
    empty = int(np.sum(sizes[:n_clusters] == 0))
    if empty:
        problems.append(f"{empty} of {n_clusters} clusters are empty")
    largest = int(sizes.max())
    if n_clusters >= 3 and largest > DOMINANT_SHARE * n:
        problems.append(f"one cluster holds {largest} of {n} points ({largest / n:.0%})")
    if embedding is not None:
        # float64 sums without a float64 copy: the embedding of KMeans is the input itself
        # (70,000 x 784 on MNIST)
        z = np.asarray(embedding).reshape(n, -1)
        variance = float(z.var(axis=0, dtype=np.float64).sum())
        scale = float(np.einsum("ij,ij->", z, z, dtype=np.float64)) / n
        if n > 1 and variance <= COLLAPSED_RELATIVE_VARIANCE * max(scale, 1e-30):
            problems.append(
                f"the embedding collapsed (total variance {variance:.3g} against a mean squared "
                f"norm of {scale:.3g})"
            )
    return problems
