"""k-means in torch: batched k-means++ seeding and Lloyd iterations for all restarts at once.

Every restart runs in parallel as one batched tensor program, so ``n_init`` restarts cost about
as much as a few single runs, on the CPU or a GPU. Distances are computed in row chunks: nothing is
O(N^2) in memory.

References
----------
Arthur, D. and Vassilvitskii, S. (2007). k-means++: the advantages of careful seeding. SODA.
Lloyd, S. (1982). Least squares quantization in PCM. IEEE Trans. Inf. Theory 28(2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aeclust import distributed

_CHUNK = 1 << 16
#: Rows a data-parallel k-means seeds from (gathered from every process); all rows when fewer.
SEED_SAMPLE = 1 << 16
#: Most candidate distances (restarts x rows x candidates) k-means++ holds at once: 128 MB in
#: fp32. Every stored benchmark seeds in one block below it (the largest, k-DAE's 100 restarts x
#: 4 candidates x 70,000 rows, is 28M), so their seeding is what it was before the blocks.
SEEDING_BLOCK = 1 << 25
#: Above this many (restart, point) pairs a Lloyd step moves the changed points' sums one restart
#: at a time (same sums, bounded memory).
MOVES_BLOCK = 1 << 24


@dataclass
class KMeansResult:
    """Result of :func:`kmeans`: the best of the restarts by inertia."""

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int


def squared_distances(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows of ``x`` (N, d) and ``centers`` (..., k, d).

    Uses ``|x|^2 - 2 x.c + |c|^2`` (clamped at 0) in fp32; ``centers`` may carry leading batch
    dimensions, giving ``(..., N, k)``.
    """
    x = x.float()
    centers = centers.float()
    x2 = (x * x).sum(-1, keepdim=True)
    c2 = (centers * centers).sum(-1).unsqueeze(-2)
    # in place on the product: one (..., N, k) tensor instead of four, and the same bits as
    # x2 - 2 x.c + c2 (scaling by -2 is exact and addition commutes)
    d = torch.matmul(x, centers.transpose(-1, -2)).mul_(-2.0).add_(x2).add_(c2)
    return d.clamp_min_(0.0)


def assign(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every row of ``x``, computed in chunks.

    Returns
    -------
    labels : LongTensor (N,)
    min_sq_dist : Tensor (N,)
    """
    labels, mins = _batched_assign(x, centers.unsqueeze(0))
    return labels[0], mins[0]


def _batched_assign(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # centers: (R, k, d) -> labels (R, N), min distances (R, N)
    labels, mins = [], []
    for start in range(0, x.shape[0], _CHUNK):
        d = squared_distances(x[start : start + _CHUNK], centers)
        m, lab = d.min(dim=-1)
        labels.append(lab)
        mins.append(m)
    return torch.cat(labels, dim=1), torch.cat(mins, dim=1)


def _batched_labels(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nearest-centre labels (R, N) for R sets of centres (R, k, d), without the distances.

    A Lloyd step needs only the argmin, and ``|x|^2`` does not change it: one matrix product of a
    row block with all R*k centres plus ``|c|^2``, in blocks small enough to stay in cache (about
    2x faster than the full distances on the CPU for 70k x 10 points and 20 restarts).
    """
    n_runs, k, d = centers.shape
    flat = centers.reshape(n_runs * k, d)
    c2 = (flat * flat).sum(dim=1)
    ct = flat.T.contiguous()
    out = torch.empty(n_runs, x.shape[0], dtype=torch.long, device=x.device)
    block = max(256, (1 << 20) // max(1, n_runs * k))
    for start in range(0, x.shape[0], block):
        scores = torch.addmm(c2, x[start : start + block], ct, alpha=-2.0)
        out[:, start : start + block] = scores.view(-1, n_runs, k).argmin(dim=-1).T
    return out


def cluster_sums(
    x: torch.Tensor, labels: torch.Tensor, n_clusters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums and counts of ``x`` (N, d) for labels (R, N) of R runs at once.

    Computed in float64 when ``x`` is float64 (the k-means loop's incremental sums), else fp32.
    On CUDA a chunked one-hot matrix product rather than ``scatter_add``: scatter uses atomics
    there, whose float sums depend on thread order, and the same seed must give the same labels.

    Returns
    -------
    sums : Tensor (R, k, d)
    counts : Tensor (R, k)
    """
    n_runs, n = labels.shape
    if x.dtype != torch.float64:
        x = x.float()
    if x.device.type == "cpu":
        # On the CPU index_add_ runs sequentially (deterministic) and, one run at a time, beats
        # the one-hot product ~1.5x without copying x per run.
        sums = torch.zeros(n_runs, n_clusters, x.shape[1], dtype=x.dtype, device=x.device)
        for run in range(n_runs):
            sums[run].index_add_(0, labels[run], x)
        offsets = torch.arange(n_runs, device=x.device).unsqueeze(1) * n_clusters
        counts = torch.bincount((labels + offsets).reshape(-1), minlength=n_runs * n_clusters)
        return sums, counts.to(x.dtype).view(n_runs, n_clusters)
    sums = torch.zeros(n_runs, n_clusters, x.shape[1], dtype=x.dtype, device=x.device)
    counts = torch.zeros(n_runs, n_clusters, dtype=x.dtype, device=x.device)
    chunk = max(1024, (1 << 24) // max(1, n_runs * n_clusters))
    for start in range(0, n, chunk):
        onehot = torch.nn.functional.one_hot(labels[:, start : start + chunk], n_clusters)
        onehot = onehot.to(x.dtype)
        sums += onehot.transpose(1, 2) @ x[start : start + chunk]
        counts += onehot.sum(dim=1)
    return sums, counts


def _update_cluster_sums(
    x: torch.Tensor,
    old_labels: torch.Tensor,
    new_labels: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
) -> None:
    """Move the points whose label changed between the sums and counts of R runs (in place).

    ``x`` (N, d), labels (R, N), ``sums`` (R, k, d) and ``counts`` (R, k) as from
    :func:`cluster_sums`. Each run's updates are applied in point order, so a run gives the same
    sums whichever other runs share the batch.
    """
    n_runs, n_clusters = counts.shape
    if n_runs > 1 and n_runs * old_labels.shape[1] > MOVES_BLOCK:
        # one run at a time: the moved points of all runs at once would be (runs x N) rows of x
        # (gigabytes for millions of points in the first iterations); each destination row
        # receives the same additions in the same order, so the sums are the same bits
        for r in range(n_runs):
            _update_cluster_sums(
                x, old_labels[r : r + 1], new_labels[r : r + 1], sums[r : r + 1], counts[r : r + 1]
            )
        return
    run, point = (old_labels != new_labels).nonzero(as_tuple=True)
    if run.numel() == 0:
        return
    moved = x[point]
    gained = run * n_clusters + new_labels[run, point]
    lost = run * n_clusters + old_labels[run, point]
    flat_sums = sums.view(n_runs * n_clusters, -1)
    flat_sums.index_add_(0, gained, moved)
    flat_sums.index_add_(0, lost, moved, alpha=-1)
    flat_counts = counts.view(-1)
    ones = torch.ones_like(gained, dtype=counts.dtype)
    flat_counts.index_add_(0, gained, ones)
    flat_counts.index_add_(0, lost, ones, alpha=-1)


def _relocate_empty(
    x: torch.Tensor,
    centers: torch.Tensor,
    labels: torch.Tensor,
    new_centers: torch.Tensor,
    empty: torch.Tensor,
) -> None:
    """Move each empty cluster's centre onto a point far from its own centre (in place).

    As scikit-learn does: the points with the largest distance to the centre they are assigned
    to become the new centres, one distinct point per empty cluster. Without it, a warm start
    from centres of an earlier embedding (CT's and CCAE's per-epoch k-means) can leave clusters
    empty for good, far from every point, and the partition with fewer than k clusters.
    """
    for run in empty.any(dim=1).nonzero().flatten().tolist():
        slots = empty[run].nonzero().flatten()
        own = ((x - centers[run][labels[run]]) ** 2).sum(dim=1)
        far = own.topk(min(len(slots), x.shape[0]))
        points = x[far.indices]
        if distributed.sharded():
            # each process offers its farthest points; the farthest of all of them are taken,
            # the same in every process
            distances = distributed.gather_rows(far.values)
            points = distributed.gather_rows(points)
            points = points[distances.topk(min(len(slots), distances.shape[0])).indices]
        new_centers[run, slots[: len(points)]] = points


def _initial_centers(
    points: torch.Tensor,
    n_clusters: int,
    n_init: int,
    init: torch.Tensor | str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The starting centres (restarts, k, d) of :func:`kmeans`, drawn from ``points`` (fp32): a
    given tensor (one warm start), k-means++, or k distinct random points per restart."""
    n, d = points.shape
    if isinstance(init, torch.Tensor):
        if init.shape != (n_clusters, d):
            raise ValueError(f"init centres must have shape {(n_clusters, d)}, got {init.shape}")
        return init.to(points.device, torch.float32).unsqueeze(0).clone()
    if init == "k-means++":
        return kmeans_plusplus(points, n_clusters, n_init, generator)
    if init == "random":
        gdev = generator_device(generator)
        idx = torch.stack(
            [
                torch.randperm(n, generator=generator, device=gdev)[:n_clusters]
                for _ in range(n_init)
            ]
        ).to(points.device)
        return points[idx]
    raise ValueError(f"init must be 'k-means++', 'random' or a tensor, got {init!r}")


def _lloyd_centers(
    x: torch.Tensor,
    centers: torch.Tensor,
    labels: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    relocate: Callable[..., None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd update of R runs' centres (R, k, d) from their cluster sums and counts: the
    means, an empty cluster's centre moved by ``relocate``; and each run's squared shift (R,)."""
    new_centers = torch.where(
        counts.unsqueeze(-1) > 0,
        (sums / counts.clamp_min(1).unsqueeze(-1)).float(),
        centers,
    )
    empty = counts == 0
    if bool(empty.any()):
        relocate(x, centers, labels, new_centers, empty)
    return new_centers, ((new_centers - centers) ** 2).sum(dim=(1, 2))


def kmeans_plusplus(
    x: torch.Tensor, n_clusters: int, n_init: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding for ``n_init`` independent restarts at once.

    As in scikit-learn, each new centre is the best (lowest potential) of ``2 + log(k)``
    candidates drawn with probability proportional to the squared distance to the nearest centre.
    The candidates' distances are held for at most :data:`SEEDING_BLOCK` values at a time
    (restarts x rows x candidates), so memory stays bounded for millions of rows.

    Returns
    -------
    Tensor (n_init, n_clusters, d)
    """
    n, _ = x.shape
    x = x.float()
    n_trials = 2 + int(math.log(n_clusters))
    rows_per_block = max(1, SEEDING_BLOCK // (n_init * n_trials))
    first = torch.randint(0, n, (n_init,), generator=generator, device=generator_device(generator))
    centers = [x[first.to(x.device)]]  # list of (R, d)
    closest = _min_squared_distances(x, centers[0].unsqueeze(1), rows_per_block)  # (R, N)
    runs = torch.arange(n_init, device=x.device)
    for _ in range(1, n_clusters):
        weights = closest.clamp_min(0)
        total = weights.sum(dim=1, keepdim=True)
        # A degenerate data set (all points equal) has zero potential: fall back to uniform.
        weights = torch.where(total > 0, weights, torch.ones_like(weights))
        cand = torch.multinomial(
            weights.to(generator_device(generator)), n_trials, replacement=True, generator=generator
        ).to(x.device)  # (R, T)
        cand_pts = x[cand]  # (R, T, d)
        if n <= rows_per_block:
            new_closest = torch.minimum(squared_distances(x, cand_pts), closest.unsqueeze(-1))
            best = new_closest.sum(dim=1).argmin(dim=1)  # (R,)
            closest = new_closest[runs, :, best]
        else:
            # Block by block: each candidate's potential, then the winners' distances again
            # (recomputing one candidate costs 1/T of the search; keeping all T would not be
            # bounded).
            potential = torch.zeros(n_init, n_trials, dtype=torch.float64, device=x.device)
            for start in range(0, n, rows_per_block):
                block = slice(start, start + rows_per_block)
                d = squared_distances(x[block], cand_pts)  # (R, B, T)
                potential += torch.minimum(d, closest[:, block].unsqueeze(-1)).sum(dim=1)
            best = potential.argmin(dim=1)
            winners = cand_pts[runs, best].unsqueeze(1)  # (R, 1, d)
            closest = torch.minimum(closest, _min_squared_distances(x, winners, rows_per_block))
        centers.append(cand_pts[runs, best])
    return torch.stack(centers, dim=1)


def _min_squared_distances(x: torch.Tensor, centers: torch.Tensor, rows: int) -> torch.Tensor:
    """Squared distance (R, N) of every row of ``x`` to the nearest of its run's ``centers``
    (R, c, d), ``rows`` rows at a time."""
    return torch.cat(
        [
            squared_distances(x[start : start + rows], centers).min(dim=-1).values
            for start in range(0, x.shape[0], rows)
        ],
        dim=1,
    )


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device a generator draws on (CPU when there is none)."""
    return generator.device if generator is not None else torch.device("cpu")


def kmeans(
    x: torch.Tensor,
    n_clusters: int,
    *,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    init: torch.Tensor | str = "k-means++",
    generator: torch.Generator | None = None,
) -> KMeansResult:
    """Lloyd's k-means with all restarts batched.

    Parameters
    ----------
    x : Tensor (N, d)
        Points (any float dtype; computed in fp32).
    n_clusters : int
        Number of clusters k.
    n_init : int
        Number of restarts; the one with the lowest inertia is returned. Ignored when ``init`` is
        a tensor of centres (warm start).
    max_iter : int
        Maximum Lloyd iterations.
    tol : float
        Stop when every restart's centres move less than ``tol`` times the mean variance of the
        data (squared shift), as scikit-learn does.
    init : "k-means++", "random" or Tensor (k, d)
        Seeding; a tensor warm-starts from those centres.
    generator : torch.Generator, optional
        Random source for seeding (its device must match ``x``'s for CUDA tensors).

    Returns
    -------
    KMeansResult

    Notes
    -----
    Inside a data-parallel fit (:func:`aeclust.distributed.sharded_fit`) ``x`` is this process's
    shard and the result is the k-means of all processes' rows (:func:`_sharded_kmeans`):
    ``labels`` are the shard's, ``centers`` and ``inertia`` global and the same everywhere.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (N, d), got shape {tuple(x.shape)}")
    if distributed.sharded():
        return _sharded_kmeans(
            x, n_clusters, n_init=n_init, max_iter=max_iter, tol=tol, init=init, generator=generator
        )
    n = x.shape[0]
    if n < n_clusters:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters}")
    x = x.float()
    centers = _initial_centers(x, n_clusters, n_init, init, generator)

    threshold = tol * x.var(dim=0).mean()
    # On the CPU the cluster sums are kept in float64 and updated with only the points whose
    # label changed (few after the first iterations), instead of summed again every iteration,
    # which was 70% of the time. On CUDA they are recomputed (index_add_ uses atomics there).
    incremental = x.device.type == "cpu"
    x64 = x.double() if incremental else x
    # Restarts that have converged leave the batch, so n_init restarts cost the sum of their own
    # iteration counts rather than n_init times the slowest one.
    active = torch.arange(centers.shape[0], device=x.device)
    prev_labels: torch.Tensor | None = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        current = centers[active]
        labels = _batched_labels(x, current)  # (R_active, N)
        if prev_labels is None or not incremental:
            sums, counts = cluster_sums(x64, labels, n_clusters)
        else:
            _update_cluster_sums(x64, prev_labels, labels, sums, counts)
        new_centers, shift = _lloyd_centers(x, current, labels, sums, counts, _relocate_empty)
        centers[active] = new_centers
        moving = shift > threshold
        if not bool(moving.any()):
            break
        active = active[moving]
        prev_labels, sums, counts = labels[moving], sums[moving], counts[moving]
    labels, mins = _batched_assign(x, centers)
    inertia = mins.sum(dim=1)
    best = int(inertia.argmin())
    return KMeansResult(
        centers=centers[best],
        labels=labels[best],
        inertia=float(inertia[best]),
        n_iter=n_iter,
    )


def _sharded_kmeans(
    x: torch.Tensor,
    n_clusters: int,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    init: torch.Tensor | str,
    generator: torch.Generator | None,
) -> KMeansResult:
    """Lloyd's k-means over the shards of a data-parallel fit; ``x`` is this process's shard.

    Seeding runs on a sample gathered from every process (all rows up to :data:`SEED_SAMPLE`, so
    small data seed exactly as one process does), identically everywhere; each iteration then
    all-reduces the per-cluster sums (float64) and counts, and an empty cluster takes the point
    farthest from its centre among every process's candidates. Restarts are not retired one by
    one as in :func:`kmeans`: all iterate until every one has converged.
    """
    device = x.device
    x = x.float()
    n_local = x.shape[0]
    n = int(distributed.total(n_local, device=device))
    if n < n_clusters:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters}")
    sample = x
    if not isinstance(init, torch.Tensor) and n > SEED_SAMPLE:
        # every process draws the same number from the shared generator, so it stays the same
        # everywhere; the rows come from a generator of this process's own
        gdev = generator_device(generator)
        base = int(torch.randint(0, 2**62, (1,), generator=generator, device=gdev))
        own = torch.Generator(device="cpu").manual_seed(base + distributed.world()[0])
        take = max(1, SEED_SAMPLE * n_local // n)
        sample = x[torch.randperm(n_local, generator=own)[:take].to(device)]
    if not isinstance(init, torch.Tensor):
        sample = distributed.gather_rows(sample)
    centers = _initial_centers(sample, n_clusters, n_init, init, generator)
    x64 = x.double()
    first = distributed.all_reduce_sum(x64.sum(dim=0))
    second = distributed.all_reduce_sum((x64 * x64).sum(dim=0))
    variance = (second - first * first / n) / max(n - 1, 1)  # unbiased, as torch.var
    threshold = tol * float(variance.mean())
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        labels = _batched_labels(x, centers)  # (R, N_local)
        sums, counts = cluster_sums(x64, labels, n_clusters)
        distributed.all_reduce_sum(sums)
        distributed.all_reduce_sum(counts)
        centers, shift = _lloyd_centers(x, centers, labels, sums, counts, _relocate_empty)
        if not bool((shift > threshold).any()):
            break
    labels, mins = _batched_assign(x, centers)
    inertia = distributed.all_reduce_sum(mins.double().sum(dim=1))
    best = int(inertia.argmin())
    return KMeansResult(
        centers=centers[best], labels=labels[best], inertia=float(inertia[best]), n_iter=n_iter
    )
