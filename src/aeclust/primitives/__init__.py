"""Clustering primitives shared by the methods: k-means, soft assignments (and, later, kNN graphs,
MMD, PEDCC)."""

from aeclust.primitives.assignments import (
    inverse_distance_assignment,
    kl_divergence,
    softmax_assignment,
    student_t_assignment,
    target_distribution,
)
from aeclust.primitives.kmeans import (
    KMeansResult,
    assign,
    kmeans,
    kmeans_plusplus,
    squared_distances,
)

__all__ = [
    "KMeansResult",
    "assign",
    "inverse_distance_assignment",
    "kl_divergence",
    "kmeans",
    "kmeans_plusplus",
    "softmax_assignment",
    "squared_distances",
    "student_t_assignment",
    "target_distribution",
]
