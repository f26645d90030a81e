"""Clustering primitives shared by the methods: k-means (and, later, kNN graphs, MMD, PEDCC)."""

from aeclust.primitives.kmeans import (
    KMeansResult,
    assign,
    kmeans,
    kmeans_plusplus,
    squared_distances,
)

__all__ = ["KMeansResult", "assign", "kmeans", "kmeans_plusplus", "squared_distances"]
