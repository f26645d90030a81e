"""k-nearest-neighbour graphs and edge samplers (the graph side of VCC).

* :func:`knn` finds the M nearest neighbours of every row, exactly by chunked matrix products
  (never an N x N matrix in memory) or approximately with faiss / pynndescent when importable.
* :func:`softmax_knn_graph` and :func:`symmetrize_graph` build VCC's reference graph: the row-wise
  softmax of the neighbour distances (eq. 3) and Ã = A + Aᵀ + A∘Aᵀ (eq. 4), as a sparse COO tensor.
* :class:`EdgeSampler` draws edges with probability proportional to integer rates such as
  :func:`separation_rates` (R⁻, eq. 7) and :func:`contraction_rates` (R⁺, eq. 9), which is the
  same in distribution as shuffling the edge list duplicated R times, without materialising it;
  :func:`sample_non_edges` draws pairs that are not edges (B_neg, eqs. 11-12).

References
----------
VCC: Very Compact Clusters (Sec. 3.1-3.2); see ``shared/papers/vcc-very-compact-clusters.txt``.
"""

from __future__ import annotations

import importlib.util
import logging
import math

import torch

from aeclust._utils import has_native_bf16
from aeclust.primitives.kmeans import squared_distances

__all__ = [
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

logger = logging.getLogger(__name__)

KNN_METHODS = ("auto", "exact", "faiss", "pynndescent")
SCREENINGS = ("auto", "bf16", "none")
#: Above this many rows, ``method="auto"`` uses an approximate library when one is importable.
APPROX_THRESHOLD = 200_000
# Elements of one (chunk x N) score block: 2^26 (128 MiB in bf16, 256 MiB in fp32); blocks of
# ~1000 rows of a 70k set keep the bf16 product near its peak rate.
_BLOCK_ELEMENTS = 1 << 26
# Rows and columns of one tile of the bf16 screen (2^26 scores, 128 MiB); square tiles give the
# group maxima of _best_rows enough rows.
_SCREEN_TILE = 1 << 13
# Elements of one (chunk x candidates x D) gather for the exact re-ranking: 16 MiB, small enough
# to stay in cache (3x faster than 64 MiB blocks on the 2-core test machine).
_RERANK_ELEMENTS = 1 << 22


def _check_knn_input(x: torch.Tensor, n_neighbors: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be a positive int, got {n_neighbors!r}")
    if n_neighbors >= x.shape[0]:
        raise ValueError(
            f"n_neighbors={n_neighbors} must be smaller than the number of samples "
            f"({x.shape[0]}); lower n_neighbors"
        )


def knn(
    x: torch.Tensor,
    n_neighbors: int,
    *,
    method: str = "auto",
    screening: str = "auto",
    chunk_size: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_neighbors`` nearest neighbours (Euclidean) of every row of ``x``, itself excluded.

    Parameters
    ----------
    x : Tensor (N, D)
        Points (any float dtype; distances are fp32).
    n_neighbors : int
        M, the number of neighbours (< N).
    method : {"auto", "exact", "faiss", "pynndescent"}
        ``"exact"``: chunked matrix products on ``x``'s device. ``"faiss"`` / ``"pynndescent"``:
        approximate libraries (optional dependencies). ``"auto"``: exact up to
        :data:`APPROX_THRESHOLD` rows, above it faiss or pynndescent when importable, else exact.
    screening : {"auto", "bf16", "none"}
        For ``method="exact"``: ``"bf16"`` ranks candidates by ``-|x_i - x_j|^2 / 2`` from one
        bf16 product of the centred data with the ``|x|^2`` terms fused (bf16 scores; about 4x
        faster than fp32 on CPUs with AMX/AVX-512 bf16), each pair computed once (half the
        products), keeps ``M + max(M, 16)`` candidates per row and re-ranks them by exact fp32
        distances; ``"none"`` ranks all pairs
        in fp32. ``"auto"``: bf16 on a CPU with native bf16, else none. The screen can only miss
        a true neighbour if more than ``max(M, 16)`` points lie within bf16 rounding (about 0.4%
        of the squared distance) of it, which the tests check does not happen on image data.
    chunk_size : int, optional
        Rows per block (default: 2^26 score entries per block); with the bf16 screen, the side of
        its square tiles (default 8192).
    seed : int
        Seed of the approximate methods.

    Returns
    -------
    distances : Tensor (N, M), fp32, ascending along each row
    indices : LongTensor (N, M)
    """
    _check_knn_input(x, n_neighbors)
    if method not in KNN_METHODS:
        raise ValueError(f"unknown kNN method {method!r}; valid: {KNN_METHODS}")
    if screening not in SCREENINGS:
        raise ValueError(f"unknown screening {screening!r}; valid: {SCREENINGS}")
    if method == "auto":
        method = "exact"
        if x.shape[0] > APPROX_THRESHOLD:
            for lib in ("faiss", "pynndescent"):
                if importlib.util.find_spec(lib) is not None:
                    method = lib
                    break
    if method == "faiss":
        return _knn_faiss(x, n_neighbors)
    if method == "pynndescent":
        return _knn_pynndescent(x, n_neighbors, seed)
    if screening == "auto":
        screening = "bf16" if x.device.type == "cpu" and has_native_bf16(x.device) else "none"
    return _knn_exact(x, n_neighbors, screening == "bf16", chunk_size)


@torch.no_grad()
def _knn_exact(
    x: torch.Tensor, m: int, screen: bool, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    n, dim = x.shape
    # Distances do not change under translation; centring shrinks the dot products, hence the
    # absolute rounding error of the bf16 screen.
    xf = x.float() - x.float().mean(dim=0, keepdim=True)
    sq = (xf * xf).sum(dim=1)
    chunk = chunk_size or max(1, min(n, _BLOCK_ELEMENTS // n))
    if screen:
        n_cand = min(n - 1, m + max(m, 16))
        cand = _bf16_screen(xf, sq, n_cand, chunk_size or _SCREEN_TILE)
    else:
        n_cand = m
        cand = torch.empty(n, m, dtype=torch.long, device=x.device)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            rows = torch.arange(start, stop, device=x.device)
            # |x_i - x_j|^2 - |x_i|^2 = |x_j|^2 - 2 x_i.x_j ranks the j of row i like the distance.
            score = torch.matmul(xf[start:stop], xf.T).mul_(-2.0).add_(sq)
            score[rows - start, rows] = math.inf  # a point is not its own neighbour
            cand[start:stop] = score.topk(m, dim=1, largest=False, sorted=False).indices
            del score
    rerank_chunk = max(1, _RERANK_ELEMENTS // (n_cand * dim))
    out_d = torch.empty(n, m, device=x.device)
    out_i = torch.empty(n, m, dtype=torch.long, device=x.device)
    for start in range(0, n, rerank_chunk):
        c = cand[start : start + rerank_chunk]
        # Exact fp32 distances of the candidates, by differences (no cancellation).
        d2 = (xf[c] - xf[start : start + c.shape[0], None, :]).pow_(2).sum(dim=2)
        best = d2.topk(m, dim=1, largest=False, sorted=True)
        out_d[start : start + c.shape[0]] = best.values.sqrt_()
        out_i[start : start + c.shape[0]] = c.gather(1, best.indices)
    return out_d, out_i


def _bf16_screen(xf: torch.Tensor, sq: torch.Tensor, n_cand: int, tile: int) -> torch.Tensor:
    """The ``n_cand`` best candidates of every row by a bf16 score, each pair scored once.

    The score -|x_i - x_j|^2 / 2 = x_i.x_j - |x_i|^2/2 - |x_j|^2/2 is symmetric and comes out of
    one bf16 product of [x, -|x|^2/2, 1] with [x, 1, -|x|^2/2] (no fp32 copy of the block). Row
    block I is multiplied only with the columns from its own start on, in ``tile``-wide tiles,
    which halves the products: the block's rows take their best candidates along the tile's rows,
    and each later point takes its best among the block's rows from the tile's column
    (:func:`_best_rows`, which avoids transposing the tile). A running best list per point merges
    the tiles.
    """
    n = xf.shape[0]
    device = xf.device
    half = (sq * -0.5).unsqueeze(1)
    ones = torch.ones_like(half)
    left = torch.cat([xf, half, ones], dim=1).to(torch.bfloat16)
    right = torch.cat([xf, ones, half], dim=1).to(torch.bfloat16)
    best_v = torch.full((n, n_cand), -math.inf, dtype=torch.bfloat16, device=device)
    best_i = torch.zeros(n, n_cand, dtype=torch.long, device=device)

    def merge(lo: int, hi: int, values: torch.Tensor, indices: torch.Tensor) -> None:
        v = torch.cat([best_v[lo:hi], values], dim=1)
        keep = v.topk(n_cand, dim=1, sorted=False).indices
        best_v[lo:hi] = v.gather(1, keep)
        best_i[lo:hi] = torch.cat([best_i[lo:hi], indices], dim=1).gather(1, keep)

    for start in range(0, n, tile):
        stop = min(start + tile, n)
        for col in range(start, n, tile):
            col_stop = min(col + tile, n)
            score = left[start:stop] @ right[col:col_stop].T
            if col == start:
                diag = torch.arange(min(stop, col_stop) - start, device=device)
                score[diag, diag] = -math.inf  # a point is not its own neighbour
            top = score.topk(min(n_cand, col_stop - col), dim=1, sorted=False)
            merge(start, stop, top.values, top.indices + col)
            # Points after the block see these products from the other side. (The block's own
            # rows already took each other in their row pass.)
            first = max(col, stop)
            if first < col_stop:
                values, rows = _best_rows(score[:, first - col :], n_cand)
                merge(first, col_stop, values, rows + start)
            del score
    return best_i


def _best_rows(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest entries of every column of ``block`` (R, W): values and row indices (W, k).

    Transposing a bf16 tile to run ``topk`` along its rows costs more than the product on a
    2-core CPU; instead the rows are cut into groups of g, the group maxima (one vectorised pass)
    pick each column's k best groups, and only those k*g entries are ranked. Exact: each of a
    column's k largest entries lies in a group whose maximum is among the k largest maxima.
    """
    n_rows, width = block.shape
    k = min(k, n_rows)
    group = 16
    while group > 1 and (n_rows // group < k or n_rows % group):
        group //= 2
    if group == 1:
        top = block.T.contiguous().topk(k, dim=1, sorted=False)
        return top.values, top.indices
    maxima = block.view(n_rows // group, group, width).amax(dim=1)
    best_groups = maxima.T.contiguous().topk(k, dim=1, sorted=False).indices  # (W, k)
    offsets = torch.arange(group, device=block.device)
    rows = (best_groups.unsqueeze(2) * group + offsets).reshape(width, k * group)
    values = block[rows, torch.arange(width, device=block.device).unsqueeze(1)]
    top = values.topk(k, dim=1, sorted=False)
    return top.values, rows.gather(1, top.indices)


@torch.no_grad()
def grouped_knn(
    z: torch.Tensor, labels: torch.Tensor, k: int, *, same: bool, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of every row of ``z`` within (or outside) its own group.

    Chunked distances (:func:`aeclust.primitives.squared_distances`) + ``topk``, so memory is
    O(chunk x N), never N x N. ``same=True``: neighbours of the same group, the row itself
    excluded (CCAE's eq. 10, N_i), searched group by group (each group's rows against its own
    rows only: about N²/K distances for K similar groups instead of N²); ``same=False``: the
    nearest rows of the other groups (CCAE's eq. 13, R_i), block of rows against all rows.
    Squared Euclidean distances in fp32. ``chunk_size`` rows per block (default: as many as fit
    in 128 MiB of distances).

    Returns
    -------
    idx : LongTensor (N, k')
        k' = min(k, N); entries that do not exist (a group smaller than k + 1) are marked invalid.
    valid : BoolTensor (N, k')
    """
    n = z.shape[0]
    k = min(int(k), n)
    z = z.float()
    if same:
        return _knn_within_groups(z, labels, k, chunk_size)
    rows = chunk_size or max(1, min(n, _BLOCK_ELEMENTS // max(n, 1)))
    idx_parts, valid_parts = [], []
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        d = squared_distances(z[start:stop], z)
        d.masked_fill_(labels[start:stop, None] == labels[None, :], math.inf)
        vals, idx = d.topk(k, dim=1, largest=False, sorted=True)
        idx_parts.append(idx)
        valid_parts.append(torch.isfinite(vals))
    return torch.cat(idx_parts), torch.cat(valid_parts)


def _knn_within_groups(
    z: torch.Tensor, labels: torch.Tensor, k: int, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    n = z.shape[0]
    idx = torch.zeros(n, k, dtype=torch.long, device=z.device)
    valid = torch.zeros(n, k, dtype=torch.bool, device=z.device)
    for group in torch.unique(labels):
        members = (labels == group).nonzero().flatten()
        size = members.numel()
        zg = z[members]
        kg = min(k, size)  # columns beyond a small group's size stay invalid
        rows = chunk_size or max(1, min(size, _BLOCK_ELEMENTS // size))
        for start in range(0, size, rows):
            stop = min(start + rows, size)
            d = squared_distances(zg[start:stop], zg)
            r = torch.arange(stop - start, device=z.device)
            d[r, r + start] = math.inf  # not its own neighbour
            vals, local = d.topk(kg, dim=1, largest=False, sorted=True)
            idx[members[start:stop], :kg] = members[local]
            valid[members[start:stop], :kg] = torch.isfinite(vals)
    return idx, valid


def _knn_faiss(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("method='faiss' needs the faiss package (pip install faiss-cpu)") from None
    xn = x.detach().float().cpu().contiguous().numpy()
    index = faiss.IndexHNSWFlat(xn.shape[1], 32)
    index.add(xn)
    d2, idx = index.search(xn, m + 1)
    return _drop_self(torch.from_numpy(d2).clamp_min(0).sqrt(), torch.from_numpy(idx), m, x)


def _knn_pynndescent(x: torch.Tensor, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import pynndescent  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError(
            "method='pynndescent' needs the pynndescent package (pip install pynndescent)"
        ) from None
    xn = x.detach().float().cpu().numpy()
    index = pynndescent.NNDescent(xn, n_neighbors=m + 1, random_state=seed)
    idx, dist = index.neighbor_graph
    return _drop_self(torch.from_numpy(dist).float(), torch.from_numpy(idx).long(), m, x)


def _drop_self(
    dist: torch.Tensor, idx: torch.Tensor, m: int, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Approximate searches return the query itself (usually first); drop it, keep M others.
    n = idx.shape[0]
    is_self = idx == torch.arange(n).unsqueeze(1)
    is_self |= idx < 0  # faiss pads missing results with -1
    order = torch.argsort(is_self.to(torch.int8), dim=1, stable=True)[:, :m]
    return dist.gather(1, order).to(x.device), idx.gather(1, order).to(x.device)


def softmax_knn_graph(
    distances: torch.Tensor, indices: torch.Tensor, *, sign: float = -1.0
) -> torch.Tensor:
    """The non-symmetric weighted kNN adjacency A: row i holds softmax(sign * D_i) (VCC eq. 3).

    Parameters
    ----------
    distances, indices : Tensor (N, M)
        Output of :func:`knn`.
    sign : float
        ``-1`` (default) normalises ``exp(-d)``, so the nearest neighbour gets the largest weight
        (a similarity, as the paper describes Ã); ``+1`` is eq. 3 read literally.

    Returns
    -------
    Tensor
        Coalesced sparse COO (N, N), fp32; each row sums to 1.
    """
    if distances.shape != indices.shape or distances.ndim != 2:
        raise ValueError("distances and indices must have the same (N, M) shape")
    n, m = distances.shape
    with torch.autocast(distances.device.type, enabled=False):
        weights = torch.softmax(sign * distances.float(), dim=1)
    rows = torch.arange(n, device=indices.device).repeat_interleave(m)
    coords = torch.stack([rows, indices.reshape(-1)])
    return torch.sparse_coo_tensor(
        coords, weights.reshape(-1), (n, n), check_invariants=False
    ).coalesce()


def symmetrize_graph(a: torch.Tensor, *, fuzzy_union: bool = False) -> torch.Tensor:
    """Ã = A + Aᵀ + A∘Aᵀ (VCC eq. 4) of a sparse COO matrix, kept sparse.

    With ``fuzzy_union=True``: UMAP's fuzzy set union A + Aᵀ - A∘Aᵀ instead.

    Returns
    -------
    Tensor
        Coalesced sparse COO (N, N), symmetric.
    """
    if not a.is_sparse:
        raise ValueError("symmetrize_graph expects a sparse COO tensor")
    a = a.coalesce()
    product = a * a.t()
    return (a + a.t() - product if fuzzy_union else a + a.t() + product).coalesce()


def graph_edges(
    graph: torch.Tensor, *, upper: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges of a coalesced sparse graph as ``(rows, cols, values)``.

    With ``upper=True`` only ``i < j`` is kept: for a symmetric graph each undirected edge once.
    """
    graph = graph.coalesce()
    rows, cols = graph.indices()
    values = graph.values()
    if upper:
        keep = rows < cols
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return rows, cols, values


def separation_rates(values: torch.Tensor) -> torch.Tensor:
    """R⁻_ij = floor(Ã_max / Ã_ij) (VCC eq. 7): small (boundary) edges are sampled more often."""
    _check_positive(values)
    v = values.double()
    return torch.floor(v.max() / v).long()


def contraction_rates(values: torch.Tensor) -> torch.Tensor:
    """R⁺_ij = floor(Ã_ij / Ã_mean) (VCC eq. 9): strong edges are sampled more, weak ones never."""
    _check_positive(values)
    v = values.double()
    return torch.floor(v / v.mean()).long()


def _check_positive(values: torch.Tensor) -> None:
    if values.numel() == 0:
        raise ValueError("the graph has no edges")
    if bool((values <= 0).any()):
        raise ValueError("edge weights must be positive")


class EdgeSampler:
    """Draw edge indices with probability proportional to integer rates R.

    Drawing uniformly from the edge list with each edge duplicated R times (VCC's A⁻ and A⁺) is
    drawing edge e with probability R_e / sum(R); this does that by inverse-CDF sampling
    (``searchsorted`` on the cumulative rates), so nothing is duplicated and, unlike
    ``torch.multinomial``, there is no 2^24 limit on the number of edges.

    Parameters
    ----------
    rates : LongTensor (E,)
        Non-negative integer rates; at least one positive.
    """

    def __init__(self, rates: torch.Tensor) -> None:
        if rates.ndim != 1 or rates.numel() == 0:
            raise ValueError("rates must be a non-empty 1-D tensor")
        if bool((rates < 0).any()):
            raise ValueError("rates must be non-negative")
        self.cumulative = torch.cumsum(rates.long(), dim=0)
        self.total = int(self.cumulative[-1])
        if self.total == 0:
            raise ValueError("all rates are zero: nothing to sample")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` edge indices (LongTensor on the rates' device), drawn with replacement."""
        u = torch.randint(0, self.total, (n,), generator=generator, device=generator.device)
        # the edge whose cumulative range [C_{e-1}, C_e) holds u
        return torch.searchsorted(self.cumulative, u.to(self.cumulative.device), right=True)


def sample_non_edges(
    graph: torch.Tensor,
    n: int,
    generator: torch.Generator,
    *,
    max_rounds: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniformly random pairs (i, j), i != j, that are not edges of ``graph`` (B_neg).

    Pairs are drawn uniformly and the few that hit an edge or the diagonal (a fraction about
    M / N) are redrawn, up to ``max_rounds`` times; the membership test is a ``searchsorted`` on
    the coalesced graph's sorted keys ``i * N + j``.

    Returns
    -------
    rows, cols : LongTensor (n,)
    """
    graph = graph.coalesce()
    n_nodes = graph.shape[0]
    if n_nodes < 2:
        raise ValueError("need at least two nodes to sample non-edges")
    device = graph.device
    keys = graph.indices()[0] * n_nodes + graph.indices()[1]  # sorted: the graph is coalesced
    rows = torch.randint(0, n_nodes, (n,), generator=generator, device=generator.device).to(device)
    cols = torch.randint(0, n_nodes, (n,), generator=generator, device=generator.device).to(device)
    for _ in range(max_rounds):
        bad = _is_edge(keys, rows, cols, n_nodes) | (rows == cols)
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        gdev = generator.device
        rows[bad] = torch.randint(0, n_nodes, (n_bad,), generator=generator, device=gdev).to(device)
        cols[bad] = torch.randint(0, n_nodes, (n_bad,), generator=generator, device=gdev).to(device)
    else:
        ok = ~(_is_edge(keys, rows, cols, n_nodes) | (rows == cols))
        rows, cols = rows[ok], cols[ok]
    return rows, cols


def _is_edge(keys: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n: int) -> torch.Tensor:
    q = rows * n + cols
    if keys.numel() == 0:
        return torch.zeros_like(q, dtype=torch.bool)
    pos = torch.searchsorted(keys, q).clamp_max(keys.numel() - 1)
    return keys[pos] == q
