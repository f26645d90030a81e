"""Predefined evenly-distributed class centroids (PEDCC) on the unit hypersphere.

Zhu and Zhang (2019), "A classification supervised auto-encoder based on predefined
evenly-distributed class centroids", arXiv:1902.00220, and its use for clustering in ICAE
(Zhu and Wang, "An Image Clustering Auto-Encoder Based on Predefined Evenly-Distributed Class
Centroids and MMD Distance"). The k points are found by a physical simulation: unit charges on the
sphere repel each other with a Coulomb-like force 1/r^2; only the force's tangential component
moves them, and they are projected back onto the sphere after every step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class PEDCCResult(NamedTuple):
    """Output of :func:`pedcc`.

    Attributes
    ----------
    centers : Tensor (k, d)
        Unit vectors (float32).
    min_angle : float
        Smallest pairwise angle between the centres, in degrees.
    """

    centers: torch.Tensor
    min_angle: float


def min_pairwise_angle(centers: torch.Tensor) -> float:
    """Smallest angle, in degrees, between two distinct rows of ``centers`` (any norms).

    Returns 180 for a single row.
    """
    if centers.ndim != 2:
        raise ValueError(f"centers must be a 2-d tensor, got shape {tuple(centers.shape)}")
    k = centers.shape[0]
    if k < 2:
        return 180.0
    u = torch.nn.functional.normalize(centers.double(), dim=1)
    cos = u @ u.T
    cos.fill_diagonal_(-1.0)
    return math.degrees(math.acos(float(cos.max().clamp(-1.0, 1.0))))


def simplex_angle(k: int) -> float:
    """Angle between the vertices of the regular simplex with k vertices, arccos(-1/(k-1)), in
    degrees: the largest possible minimum pairwise angle of k <= d + 1 unit vectors."""
    if k < 2:
        return 180.0
    return math.degrees(math.acos(-1.0 / (k - 1)))


def pedcc(
    n_centers: int,
    dim: int,
    *,
    n_iter: int = 200,
    step: float = 0.01,
    min_distance: float = 1e-2,
    random_state: int | torch.Generator | None = 0,
) -> PEDCCResult:
    """Spread ``n_centers`` unit vectors in ``dim`` dimensions evenly on the sphere.

    Start from Gaussian points normalised to unit length; then, ``n_iter`` times,

        F_i = sum_j (r_i - r_j) / max(|r_i - r_j|, min_distance)^3     (Coulomb-like, 1/r^2)
        F_i^t = F_i - (F_i . r_i) r_i                                   (tangential part)
        r_i <- normalise(r_i + v_i),   v_i <- v_i + step * F_i^t

    exactly the update of the authors' PEDCC code (velocity with no damping, the position moved
    by the velocity of the previous step). For ``n_centers <= dim + 1`` the minimum angle
    approaches the regular simplex's arccos(-1/(k-1)) for the papers' sizes (96.33 degrees after
    200 steps for k = 10, d = 60; simplex 96.38); as the velocity is never damped, very small
    cases do not settle in 200 steps (k = 2: 166-180 degrees; k = 3 in 2-D: 92-120).

    Parameters
    ----------
    n_centers : int
        Number of centres k (>= 1).
    dim : int
        Dimension d (>= 2; the latent size).
    n_iter : int
        Simulation steps (200 in the authors' code).
    step : float
        Velocity increment per unit force (0.01 in the authors' code).
    min_distance : float
        Distances are floored at this value so that coincident points do not blow up.
    random_state : int, torch.Generator or None
        Seeds the starting points (CPU, float64); same seed -> same centres.

    Returns
    -------
    PEDCCResult
        ``centers`` (k, d) float32 unit vectors on the CPU and their minimum pairwise angle.
    """
    if int(n_centers) != n_centers or n_centers < 1:
        raise ValueError(f"n_centers must be a positive int, got {n_centers!r}")
    if int(dim) != dim or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    if int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    if not step > 0 or not min_distance > 0:
        raise ValueError(f"step and min_distance must be > 0, got {step}, {min_distance}")
    if isinstance(random_state, torch.Generator):
        gen = random_state
    else:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(0 if random_state is None else int(random_state))
    k, d = int(n_centers), int(dim)
    # float64 on the CPU: k x k x d is tiny, and the result must not depend on the device.
    r = torch.randn((k, d), generator=gen, dtype=torch.float64)
    r = r / r.norm(dim=1, keepdim=True)
    v = torch.zeros_like(r)
    for _ in range(int(n_iter)):
        diff = r[:, None, :] - r[None, :, :]  # (k, k, d): r_i - r_j
        dist = diff.norm(dim=2).clamp_min(min_distance)
        force = (diff / dist[..., None] ** 3).sum(dim=1)  # the i = j term is 0
        tangential = force - (force * r).sum(dim=1, keepdim=True) * r
        r_new = r + v
        r = r_new / r_new.norm(dim=1, keepdim=True)
        v = v + step * tangential
    centers = r.float()
    return PEDCCResult(centers, min_pairwise_angle(centers))
