"""Maximum mean discrepancy with a multi-bandwidth Gaussian kernel (fp32).

Gretton et al. (2012), "A kernel two-sample test", JMLR 13:723-773; the multi-kernel form with
bandwidths set from the batch (as in deep domain adaptation code, and in ICAE's code, GitHub
zyWang-Power/Clustering ``mmd.py``).
"""

from __future__ import annotations

import torch


def gaussian_kernel_bandwidths(
    joint_sq_dist: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5
) -> torch.Tensor:
    """The ``kernel_num`` bandwidths base * kernel_mul^(i - kernel_num // 2), i = 0..kernel_num-1.

    ``base`` is the mean squared distance between distinct points of the joint set (the diagonal
    excluded), detached: the bandwidths follow the data's scale but are not optimised.
    """
    n = joint_sq_dist.shape[0]
    if n < 2:
        raise ValueError("the MMD needs at least two points in total")
    base = joint_sq_dist.detach().sum() / (n * n - n)
    # Identical points everywhere: any positive bandwidth gives the (zero) answer.
    base = base.clamp_min(torch.finfo(base.dtype).tiny)
    exps = torch.arange(kernel_num, device=base.device, dtype=base.dtype) - kernel_num // 2
    return base * kernel_mul**exps


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
) -> torch.Tensor:
    """Squared MMD between the samples ``x`` (n, d) and ``y`` (m, d), biased (V-statistic).

        MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),
        k(a, b) = sum_i exp(-|a - b|^2 / bw_i)

    with the bandwidths of :func:`gaussian_kernel_bandwidths` (the mean pairwise squared
    distance of the joint set times 2^-2 .. 2^2 by default). Computed in fp32 whatever the
    autocast dtype; ``(n + m)^2`` kernel entries, so meant for minibatches. Zero when the two sets
    are equal (as multisets).

    Parameters
    ----------
    x, y : Tensor
        Two samples with the same number of columns.
    kernel_mul : float
        Ratio between consecutive bandwidths.
    kernel_num : int
        Number of Gaussian kernels summed.

    Returns
    -------
    Tensor ()
        The squared MMD (>= 0 up to rounding; differentiable in ``x`` and ``y``).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be 2-d with the same number of columns, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError("x and y must each hold at least one point")
    if kernel_num < 1 or not kernel_mul > 0:
        raise ValueError(f"need kernel_num >= 1 and kernel_mul > 0, got {kernel_num}, {kernel_mul}")
    with torch.autocast(x.device.type, enabled=False):
        n = x.shape[0]
        total = torch.cat([x.float(), y.float()])
        sq = total.square().sum(dim=1)
        # |a|^2 + |b|^2 - 2 a.b, clamped: the expansion can go slightly negative in fp32.
        d2 = (sq[:, None] + sq[None, :] - 2.0 * total @ total.T).clamp_min(0.0)
        bws = gaussian_kernel_bandwidths(d2, kernel_mul, kernel_num)
        kernel = torch.exp(-d2[None] / bws[:, None, None]).sum(dim=0)
        kxx = kernel[:n, :n].mean()
        kyy = kernel[n:, n:].mean()
        kxy = kernel[:n, n:].mean()
        return kxx + kyy - 2.0 * kxy
