"""Soft cluster assignments and target distributions, always in fp32.

These are the numerically delicate parts of the methods (exponentials of distances, divisions by
small sums), so they upcast their inputs and never run under low-precision autocast.
"""

from __future__ import annotations

import torch

from aeclust import distributed
from aeclust.primitives.kmeans import squared_distances


def student_t_assignment(
    z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Soft assignment with a Student's t kernel (DEC, Xie et al. 2016, eq. 1).

    q_ij = (1 + |z_i - mu_j|^2 / alpha)^(-(alpha + 1) / 2), normalised over j.

    Parameters
    ----------
    z : Tensor (N, d)
        Embeddings.
    centers : Tensor (k, d)
        Cluster centres.
    alpha : float
        Degrees of freedom (1 in DEC, IDEC and VCC).

    Returns
    -------
    Tensor (N, k), rows summing to 1 (fp32).
    """
    with torch.autocast(z.device.type, enabled=False):
        d2 = squared_distances(z.float(), centers.float())
        q = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
        return q / q.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's auxiliary target (Xie et al. 2016, eq. 3): p_ij = (q_ij^2 / f_j) / sum_j'(...),
    with soft cluster frequencies f_j = sum_i q_ij. Computed on the whole data set: in a
    data-parallel fit ``q`` is this process's rows and f_j is summed over every process."""
    q = q.float()
    frequencies = distributed.all_reduce_sum(q.sum(dim=0, keepdim=True))
    weight = q.pow(2) / frequencies
    return weight / weight.sum(dim=1, keepdim=True)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """KL(P || Q) summed over clusters and averaged over samples (DEC eq. 2, batch mean)."""
    p = p.float()
    q = q.float()
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(dim=1).mean()


def softmax_assignment(z: torch.Tensor, centers: torch.Tensor, alpha: float) -> torch.Tensor:
    """DKM's differentiable assignment G_k(z) = softmax_k(-alpha |z - r_k|^2)
    (Moradi Fard et al. 2020, eq. 6), shifted by the row minimum for stability (as the authors'
    code does: exp(-alpha (d - d_min)))."""
    with torch.autocast(z.device.type, enabled=False):
        d2 = squared_distances(z.float(), centers.float())
        return torch.softmax(-alpha * (d2 - d2.min(dim=1, keepdim=True).values), dim=1)


def inverse_distance_assignment(
    z: torch.Tensor, centers: torch.Tensor, alpha: float, eps: float = 1e-8
) -> torch.Tensor:
    """Power-law assignment G_k(z) = |z - mu_k|^(-alpha) / sum_j |z - mu_j|^(-alpha).

    Computed as softmax(-alpha/2 * log(d^2 + eps)) so that a point on a centre does not divide by
    zero.
    """
    with torch.autocast(z.device.type, enabled=False):
        d2 = squared_distances(z.float(), centers.float())
        return torch.softmax(-0.5 * alpha * torch.log(d2 + eps), dim=1)


def fuzzy_cmeans_membership(
    z: torch.Tensor, centers: torch.Tensor, fuzzifier: float, eps: float = 1e-8
) -> torch.Tensor:
    """Fuzzy c-means membership u_k(z) = 1 / sum_j (|z - mu_k| / |z - mu_j|)^(2 / (m - 1)).

    The membership that minimises Bezdek's objective sum_k u_k^m |z - mu_k|^2 for fixed centres
    (fuzzifier m > 1). Computed as softmax(-log(d^2 + eps) / (m - 1)) so that a point on a centre
    does not divide by zero.
    """
    if fuzzifier <= 1.0:
        raise ValueError(f"the fuzzy c-means fuzzifier must be > 1, got {fuzzifier}")
    with torch.autocast(z.device.type, enabled=False):
        d2 = squared_distances(z.float(), centers.float())
        return torch.softmax(-torch.log(d2 + eps) / (fuzzifier - 1.0), dim=1)
