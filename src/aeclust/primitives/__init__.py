"""Primitives shared by the methods: k-means, soft assignments, reconstruction losses, MMD,
PEDCC (kNN graphs and mixtures in their submodules)."""

from aeclust.primitives.assignments import (
    fuzzy_cmeans_membership,
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
from aeclust.primitives.losses import PRETRAIN_LOSSES, REC_LOSSES, reconstruction_loss
from aeclust.primitives.mmd import gaussian_kernel_bandwidths, mmd
from aeclust.primitives.pedcc import PEDCCResult, min_pairwise_angle, pedcc, simplex_angle

__all__ = [
    "PRETRAIN_LOSSES",
    "REC_LOSSES",
    "KMeansResult",
    "PEDCCResult",
    "assign",
    "fuzzy_cmeans_membership",
    "gaussian_kernel_bandwidths",
    "inverse_distance_assignment",
    "kl_divergence",
    "kmeans",
    "kmeans_plusplus",
    "min_pairwise_angle",
    "mmd",
    "pedcc",
    "reconstruction_loss",
    "simplex_angle",
    "softmax_assignment",
    "squared_distances",
    "student_t_assignment",
    "target_distribution",
]

from aeclust.primitives.knn import (
    EdgeSampler,
    contraction_rates,
    graph_edges,
    grouped_knn,
    knn,
    sample_non_edges,
    separation_rates,
    softmax_knn_graph,
    symmetrize_graph,
)

__all__ += [
    "EdgeSampler",
    "contraction_rates",
    "graph_edges",
    "grouped_knn",
    "knn",
    "sample_non_edges",
    "separation_rates",
    "softmax_knn_graph",
    "symmetrize_graph",
]
