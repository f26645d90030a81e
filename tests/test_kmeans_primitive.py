import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from aeclust.metrics import ari
from aeclust.primitives import assign, kmeans, kmeans_plusplus, squared_distances


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_squared_distances_match_cdist():
    x, c = torch.randn(50, 7), torch.randn(4, 7)
    assert torch.allclose(squared_distances(x, c), torch.cdist(x, c) ** 2, atol=1e-4)


def test_kmeans_recovers_blobs_and_matches_sklearn_inertia():
    x, y = make_blobs(2000, centers=6, n_features=5, random_state=0)
    res = kmeans(torch.tensor(x, dtype=torch.float32), 6, n_init=5, generator=_gen())
    sk = SKKMeans(6, n_init=5, random_state=0).fit(x)
    assert ari(y, res.labels.numpy()) > 0.99
    assert res.inertia == pytest.approx(sk.inertia_, rel=1e-3)
    # labels are the nearest centres of the returned centres
    assert torch.equal(res.labels, assign(torch.tensor(x, dtype=torch.float32), res.centers)[0])


def test_kmeans_is_deterministic_for_a_seed():
    x = torch.randn(500, 4)
    a = kmeans(x, 5, n_init=3, generator=_gen(1))
    b = kmeans(x, 5, n_init=3, generator=_gen(1))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)


def test_kmeans_warm_start_keeps_a_fixed_point():
    x, _ = make_blobs(600, centers=3, random_state=1)
    xt = torch.tensor(x, dtype=torch.float32)
    first = kmeans(xt, 3, n_init=4, generator=_gen())
    again = kmeans(xt, 3, init=first.centers)
    assert torch.allclose(again.centers, first.centers, atol=1e-4)
    assert again.n_iter <= 2


def test_kmeans_plusplus_picks_distinct_points_per_restart():
    x = torch.randn(300, 3)
    c = kmeans_plusplus(x, 8, n_init=4, generator=_gen())
    assert c.shape == (4, 8, 3)
    for run in c:
        assert len({tuple(v.tolist()) for v in run}) == 8


def test_kmeans_handles_duplicate_points_and_validates():
    x = torch.zeros(20, 2)
    res = kmeans(x, 3, n_init=2, generator=_gen())
    assert res.inertia == 0.0
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        kmeans(torch.randn(2, 2), 3)
    with pytest.raises(ValueError, match="init centres must have shape"):
        kmeans(torch.randn(10, 2), 3, init=torch.zeros(2, 2))
    assert np.isfinite(res.inertia)


def test_cluster_sums_match_a_direct_computation():
    from aeclust.primitives.kmeans import cluster_sums

    x = torch.randn(3000, 4)
    labels = torch.randint(0, 5, (2, 3000))
    sums, counts = cluster_sums(x, labels, 5)
    for r in range(2):
        for k in range(5):
            mask = labels[r] == k
            assert counts[r, k] == mask.sum()
            assert torch.allclose(sums[r, k], x[mask].sum(0), atol=1e-3)


def test_incremental_sums_equal_summing_again():
    from aeclust.primitives.kmeans import _update_cluster_sums, cluster_sums

    g = _gen(3)
    x = torch.randn(3000, 4, generator=g).double()
    old = torch.randint(0, 5, (3, 3000), generator=g)
    new = old.clone()
    flip = torch.rand(3, 3000, generator=g) < 0.05
    new[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=g)
    new[1] = old[1]  # a run where nothing moved
    sums, counts = cluster_sums(x, old, 5)
    _update_cluster_sums(x, old, new, sums, counts)
    ref_sums, ref_counts = cluster_sums(x, new, 5)
    assert torch.equal(counts, ref_counts)
    assert torch.allclose(sums, ref_sums, atol=1e-9)


def test_lloyd_labels_are_the_nearest_centres_of_every_restart():
    from aeclust.primitives.kmeans import _batched_labels, squared_distances

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 6, generator=gen)  # several row blocks for 7 x 9 centres
    centers = torch.randn(7, 9, 6, generator=gen)
    labels = _batched_labels(x, centers)
    assert labels.shape == (7, 5000)
    assert torch.equal(labels, squared_distances(x, centers).argmin(dim=-1))


def test_batched_restarts_equal_separate_runs_from_the_same_seeds():
    # Converged restarts leave the batch early; each must still end where it would alone.
    from aeclust.primitives.kmeans import kmeans_plusplus

    gen = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(300, 3, generator=gen) + 3 * i for i in range(5)])
    seeds = kmeans_plusplus(x, 5, 8, torch.Generator().manual_seed(7))
    alone = [kmeans(x, 5, init=seeds[r], max_iter=300) for r in range(8)]
    batched = kmeans(x, 5, n_init=8, max_iter=300, generator=torch.Generator().manual_seed(7))
    best = min(alone, key=lambda r: r.inertia)
    assert len({round(r.inertia, 3) for r in alone}) > 1  # the restarts really differ
    assert batched.inertia == pytest.approx(best.inertia, rel=1e-6)
    assert torch.equal(batched.labels, best.labels)
    assert batched.n_iter == max(r.n_iter for r in alone)


def test_a_warm_start_far_from_the_data_still_gives_k_clusters():
    # Centres of an earlier embedding: two of the three lie far from every point, so a plain
    # Lloyd step leaves their clusters empty; they must be moved onto the data.
    gen = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(100, 2, generator=gen) + torch.tensor(c) for c in ([0, 0], [6, 0], [0, 6])]
    )
    init = torch.tensor([[2.0, 2.0], [100.0, 100.0], [-100.0, 100.0]])
    res = kmeans(x, 3, init=init)
    assert res.labels.bincount(minlength=3).tolist() == [100, 100, 100]


def test_kmeans_plusplus_in_row_blocks_picks_the_same_centres(monkeypatch):
    # Millions of rows seed block by block (bounded memory); the choice must not depend on it.
    import importlib

    kmeans_module = importlib.import_module("aeclust.primitives.kmeans")
    gen = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(200, 4, generator=gen) + 4 * i for i in range(6)])
    whole = kmeans_module.kmeans_plusplus(x, 6, 3, torch.Generator().manual_seed(5))
    # 3 restarts x 3 candidates x 50 rows: 24 blocks of the 1,200 rows
    monkeypatch.setattr(kmeans_module, "SEEDING_BLOCK", 3 * 3 * 50)
    blocked = kmeans_module.kmeans_plusplus(x, 6, 3, torch.Generator().manual_seed(5))
    assert torch.equal(blocked, whole)
    assert len({tuple(c.tolist()) for c in blocked[0]}) == 6


def test_lloyd_steps_one_restart_at_a_time_give_the_same_partition(monkeypatch):
    # Millions of points move their sums restart by restart (bounded memory); same result.
    import importlib

    kmeans_module = importlib.import_module("aeclust.primitives.kmeans")
    gen = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(300, 3, generator=gen) + 2.5 * i for i in range(5)])
    together = kmeans(x, 5, n_init=6, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(kmeans_module, "MOVES_BLOCK", 100)
    one_by_one = kmeans(x, 5, n_init=6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one_by_one.labels, together.labels)
    assert torch.equal(one_by_one.centers, together.centers)
    assert one_by_one.inertia == together.inertia and one_by_one.n_iter == together.n_iter
