"""VCC and its graph primitives: kNN, eqs. 3-4, the R⁻/R⁺ samplers, non-edges, the estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

import aeclust
from aeclust.methods.vcc import VCC, _in_batch_negatives, _separation_loss, _separation_terms
from aeclust.metrics import cluster_accuracy
from aeclust.primitives.knn import (
    EdgeSampler,
    contraction_rates,
    graph_edges,
    knn,
    sample_non_edges,
    separation_rates,
    softmax_knn_graph,
    symmetrize_graph,
)

FAST = VCC(
    n_clusters=3,
    hidden_dims=[16],
    embedding_dim=2,
    n_neighbors=3,
    epochs=2,
    steps_per_epoch=3,
    batch_size=16,
    n_init=2,
    device="cpu",
    random_state=0,
)


# -- kNN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("screening", ["bf16", "none"])
@pytest.mark.parametrize(
    ("n", "m", "chunk"),
    # many blocks; and a set so small that every other point is a candidate, with a last block
    # smaller than the candidate list
    [(600, 7, 128), (25, 20, 7)],
)
def test_knn_matches_brute_force(digits, screening, n, m, chunk):
    x = torch.from_numpy(digits[0][:n])
    d, i = knn(x, m, method="exact", screening=screening, chunk_size=chunk)
    full = torch.cdist(x.double(), x.double())
    full.fill_diagonal_(float("inf"))
    ref_d, _ = full.topk(m, dim=1, largest=False)
    assert torch.allclose(d.double(), ref_d, atol=1e-4)
    # the returned neighbours are at the returned distances, never the point itself, no twice
    assert torch.allclose(full.gather(1, i), ref_d, atol=1e-4)
    assert not (i == torch.arange(n)[:, None]).any()
    assert (i.sort(dim=1).values.diff(dim=1) > 0).all()
    assert (d[:, 1:] >= d[:, :-1]).all()


@pytest.mark.parametrize(("n_rows", "k"), [(256, 10), (96, 5), (7, 3), (40, 40)])
def test_best_rows_is_the_top_k_of_every_column(n_rows, k):
    from aeclust.primitives.knn import _best_rows

    g = torch.Generator().manual_seed(0)
    block = torch.randn(n_rows, 300, generator=g)
    block[: n_rows // 2, :50] += 10.0  # a column's best rows bunched in the same groups
    block = block.to(torch.bfloat16)
    values, rows = _best_rows(block[:, 17:], k)  # a column slice, as the screen passes it
    ref = block[:, 17:].float().T.topk(k, dim=1).values
    assert torch.equal(values.float().sort(dim=1).values, ref.sort(dim=1).values)
    assert torch.equal(block[:, 17:].T.gather(1, rows), values)


def test_knn_rejects_bad_arguments():
    x = torch.rand(10, 3)
    with pytest.raises(ValueError, match="smaller than the number of samples"):
        knn(x, 10)
    with pytest.raises(ValueError, match="unknown kNN method"):
        knn(x, 2, method="annoy")
    with pytest.raises(ValueError, match="2-D"):
        knn(torch.rand(10), 2)


# -- graph (eqs. 3-4) ---------------------------------------------------------------------------
def _small_graph():
    d = torch.tensor([[1.0, 2.0], [1.0, 3.0], [2.0, 3.0], [1.0, 4.0]])
    i = torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]])
    return d, i


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_row_softmax_rows_sum_to_one(sign):
    d, i = _small_graph()
    a = softmax_knn_graph(d, i, sign=sign).to_dense()
    assert torch.allclose(a.sum(1), torch.ones(4))
    expected = torch.softmax(sign * d, dim=1)
    assert torch.allclose(a[0, [1, 2]], expected[0])
    if sign < 0:
        assert a[0, 1] > a[0, 2]  # nearer neighbour, larger similarity


def test_symmetrized_graph_is_eq4_and_symmetric():
    d, i = _small_graph()
    a = softmax_knn_graph(d, i)
    s = symmetrize_graph(a)
    dense = a.to_dense()
    expected = dense + dense.T + dense * dense.T
    assert torch.allclose(s.to_dense(), expected)
    assert torch.allclose(s.to_dense(), s.to_dense().T)
    rows, cols, values = graph_edges(s)
    assert (rows < cols).all() and values.numel() == int((expected > 0).sum()) // 2


# -- samplers (eqs. 7, 9, 11) -------------------------------------------------------------------
def test_rates_follow_eqs_7_and_9():
    v = torch.tensor([0.1, 0.2, 0.4, 0.8])
    assert separation_rates(v).tolist() == [8, 4, 2, 1]
    # mean 0.375: floor(v / mean)
    assert contraction_rates(v).tolist() == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="positive"):
        separation_rates(torch.tensor([0.0, 1.0]))


def test_sampler_frequencies_are_proportional_to_rates():
    rates = torch.tensor([8, 4, 2, 1, 0, 5])
    gen = torch.Generator().manual_seed(0)
    draws = EdgeSampler(rates).sample(200_000, gen)
    freq = torch.bincount(draws, minlength=6).double() / 200_000
    expected = rates.double() / rates.sum()
    assert freq[4] == 0  # rate 0 is never drawn
    assert torch.allclose(freq, expected, atol=0.005)


def test_sampler_is_deterministic_and_validates():
    rates = torch.tensor([1, 2, 3])
    a = EdgeSampler(rates).sample(50, torch.Generator().manual_seed(3))
    b = EdgeSampler(rates).sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="all rates are zero"):
        EdgeSampler(torch.zeros(3, dtype=torch.long))


def test_non_edges_avoid_the_graph_and_the_diagonal(digits):
    x = torch.from_numpy(digits[0][:300])
    g = symmetrize_graph(softmax_knn_graph(*knn(x, 10)))
    dense = g.to_dense() > 0
    r, c = sample_non_edges(g, 5000, torch.Generator().manual_seed(0))
    assert r.numel() == 5000
    assert not dense[r, c].any()
    assert not (r == c).any()


# -- estimator ----------------------------------------------------------------------------------
@parametrize_with_checks([FAST])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_deterministic_predict_equals_labels_and_roundtrip(digits, tmp_path):
    x, _ = digits
    est = clone(FAST).set_params(n_clusters=10, n_neighbors=5, batch_size=64)
    a = clone(est).fit(x[:500])
    b = clone(est).fit(x[:500])
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.predict(x[:500]), a.labels_)
    restored = aeclust.load(a.save(tmp_path / "vcc.pt"))
    assert np.array_equal(restored.predict(x), a.predict(x))
    assert np.allclose(restored.transform(x), a.transform(x))
    assert np.array_equal(restored.embedding_snapshots_, a.embedding_snapshots_)


def test_vcc_clusters_blobs_and_keeps_three_snapshots(blobs):
    x, y = blobs
    model = VCC(
        4,
        hidden_dims=[32, 16],
        n_neighbors=10,
        epochs=6,
        batch_size=64,
        random_state=0,
        device="cpu",
    ).fit(x)
    assert cluster_accuracy(y, model.labels_) > 0.95
    assert model.snapshot_epochs_ == [0, 2, 5]
    assert model.embedding_snapshots_.shape == (3, 300, 2)
    assert np.allclose(model.embedding_snapshots_[-1], model.transform(x), atol=1e-5)
    proba = model.predict_proba(x)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(proba.argmax(1), model.labels_)
    rec = model.history_[-1]
    assert {"bps", "contraction", "expansion", "clustering", "beta", "nmi_kmeans"} <= set(rec)
    assert rec["beta"] == pytest.approx(0.05)
    assert model.history_[0]["reinitialized"]  # C starts from k-means


def test_ablation_switches_drop_the_losses(blobs):
    x, _ = blobs
    model = clone(FAST).set_params(contraction=False, expansion=False, keep_snapshots=False)
    model.fit(x)
    assert "contraction" not in model.history_[0] and "expansion" not in model.history_[0]
    assert model.snapshot_epochs_ == [] and model.embedding_snapshots_.shape[0] == 0


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_the_first_epoch_takes_the_kmeans_centres_whatever_the_threshold(blobs, threshold):
    # C starts at zero; ϑ = 0 (never re-initialise) used to leave it there, one point for all K
    x, _ = blobs
    model = clone(FAST).set_params(nmi_threshold=threshold).fit(x)
    assert model.history_[0]["reinitialized"] is True
    assert len({tuple(c) for c in model.cluster_centers_.round(6).tolist()}) == 3
    later = [r["reinitialized"] for r in model.history_[1:]]
    assert later == [threshold == 1.0] * len(later)


def test_separation_loss_forms():
    d = torch.tensor([0.1, 0.7, 2.0])
    targets = torch.tensor([1.0, 0.5, 0.2])
    repulsion = -torch.log(1 - torch.exp(-d))  # -log(1 - A_l), A_l = exp(-d)
    assert torch.allclose(_separation_loss(d, targets, "attraction"), d.mean())
    assert torch.allclose(_separation_loss(d, targets, "printed"), (d + repulsion).mean())
    expected = (targets * d + (1 - targets) * repulsion).mean()
    assert torch.allclose(_separation_loss(d, targets, "cross_entropy"), expected)
    ones = torch.ones(3)
    assert torch.allclose(
        _separation_loss(d, ones, "cross_entropy"), _separation_loss(d, ones, "attraction")
    )
    # eq. 6 with target A_h is smallest where A_l = A_h, i.e. at d = -log A_h: zero slope there,
    # higher loss on either side
    target = torch.tensor([0.2])
    at = torch.tensor([-np.log(0.2)], requires_grad=True)
    (slope,) = torch.autograd.grad(_separation_loss(at, target, "cross_entropy"), at)
    assert abs(slope.item()) < 1e-5
    low = _separation_loss(at.detach(), target, "cross_entropy")
    for d_other in (at.detach() * 0.8, at.detach() * 1.25):
        assert _separation_loss(d_other, target, "cross_entropy") > low


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("softmax_of", "cosine", "'softmax_of' parameter of VCC must be a str among"),
        ("separation_loss", "mse", "'separation_loss' parameter of VCC must be a str among"),
        ("nmi_threshold", 1.5, r"'nmi_threshold' parameter of VCC must be a float in the range"),
        ("n_neighbors", 0, r"'n_neighbors' parameter of VCC must be an int in the range \[1"),
        ("keep_snapshots", "yes", "'keep_snapshots' parameter of VCC must be"),
        ("assignment", "gmm", "'assignment' parameter of VCC must be a str among"),
    ],
)
def test_bad_parameters_get_clear_errors(blobs, param, value, message):
    with pytest.raises(ValueError, match=message):
        clone(FAST).set_params(**{param: value}).fit(blobs[0])


def test_fig2_snapshot_plot_is_written(blobs, tmp_path):
    from aeclust.bench.plots import plot_epoch_snapshots

    x, y = blobs
    model = clone(FAST).set_params(epochs=3).fit(x)
    assert model.snapshot_epochs_ == [0, 1, 2]
    path = plot_epoch_snapshots(model, y, tmp_path / "fig2.png", "blobs")
    assert path is not None and path.stat().st_size > 1000
    empty = clone(FAST).set_params(keep_snapshots=False).fit(x)
    assert plot_epoch_snapshots(empty, y, tmp_path / "none.png", "blobs") is None


def test_parametric_umap_separation_terms():
    # ParametricUMAP's reading of eq. 8: -log A_l on each edge, -log(1 - A_l) on each negative
    d = torch.tensor([0.1, 0.7])
    d_negative = torch.tensor([0.5, 1.0, 3.0, 2.0])
    terms = _separation_terms(d, d, "parametric_umap", d_negative)
    expected = torch.cat([d, -torch.log(1 - torch.exp(-d_negative))])
    assert torch.allclose(terms, expected)
    assert torch.allclose(_separation_loss(d, d, "parametric_umap", d_negative), expected.mean())


def test_in_batch_negatives_pair_heads_with_shuffled_tails():
    heads = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    tails = torch.tensor([[0.0, 1.0], [10.0, 2.0]])
    d = _in_batch_negatives(heads, tails, 3, torch.Generator().manual_seed(0))
    assert d.shape == (6,)
    # each head is repeated `rate` times; its partners are tails, each tail used `rate` times
    to_tail = torch.cdist(heads, tails)  # [[1, |(10, 2)|], [|(10, 1)|, 2]]
    for head, values in enumerate((d[:3], d[3:])):
        for v in values.tolist():
            assert torch.isclose(to_tail[head], torch.tensor(v)).any()
    first_tail = (
        torch.isclose(d[:3], to_tail[0, 0]).sum() + torch.isclose(d[3:], to_tail[1, 0]).sum()
    )
    assert int(first_tail) == 3


def test_fuzzy_union_symmetrization():
    a = torch.tensor([[0.0, 0.5], [0.25, 0.0]]).to_sparse()
    paper = symmetrize_graph(a).to_dense()
    union = symmetrize_graph(a, fuzzy_union=True).to_dense()
    assert torch.allclose(paper[0, 1], torch.tensor(0.5 + 0.25 + 0.125))
    assert torch.allclose(union[0, 1], torch.tensor(0.5 + 0.25 - 0.125))
    assert torch.allclose(union, union.T)


@pytest.mark.parametrize(
    "params",
    [
        {"separation_loss": "parametric_umap"},
        {"symmetrization": "fuzzy_union"},
        {"loss_reduction": "sum", "lr": 1e-5},
    ],
)
def test_reading_options_fit(params):
    x, _ = make_blobs(120, n_features=6, centers=3, random_state=0)
    model = VCC(3, epochs=2, batch_size=32, random_state=0, device="cpu", **params).fit(x)
    assert np.isfinite(model.transform(x)).all()
    assert set(np.unique(model.labels_)) <= {0, 1, 2}
    assert all(np.isfinite(h["bps"]) for h in model.history_)


def test_mixture_assignment_reads_clusters_off_the_same_embedding(blobs, tmp_path):
    from sklearn.mixture import GaussianMixture

    x, y = blobs
    base = VCC(4, hidden_dims=[32, 16], epochs=4, batch_size=64, random_state=0, device="cpu")
    paper = clone(base).fit(x)
    variant = clone(base).set_params(assignment="mixture").fit(x)
    # training does not depend on the assignment: same embedding, only the read-out differs
    assert np.allclose(variant.transform(x), paper.transform(x), atol=1e-6)
    expected = (
        GaussianMixture(4, covariance_type="full", n_init=10, random_state=0)
        .fit(variant.transform(x).astype(np.float64))
        .predict(variant.transform(x).astype(np.float64))
    )
    assert np.array_equal(variant.labels_, expected)
    assert cluster_accuracy(y, variant.labels_) > 0.95
    proba = variant.predict_proba(x)
    assert proba.shape == (len(x), 4) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(proba.argmax(1), variant.labels_)
    restored = aeclust.load(variant.save(tmp_path / "vcc-mixture.pt"))
    assert np.array_equal(restored.predict(x), variant.labels_)
    assert np.allclose(restored.predict_proba(x), proba)


def test_a_graph_too_spread_for_eq7_is_refused_before_training():
    # far-apart raw points: the softmax of eq. 3 spans many orders of magnitude, and eq. 7's
    # sampling would need billions of draws an epoch; fit says so instead of allocating them
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(60, 20)) * 300).astype(np.float32)
    with pytest.raises(ValueError, match=r"VCC: the kNN graph's weights .* span"):
        VCC(n_clusters=3, epochs=1, device="cpu", distance_scale=1.0).fit(x)


def test_auto_distance_scale_keeps_the_papers_graph_or_lowers_s_to_the_cap():
    from aeclust.methods.vcc import AUTO_DRAWS_PER_EDGE, mean_draws_per_edge

    rng = np.random.default_rng(0)
    spread = (rng.normal(size=(60, 20)) * 300).astype(np.float32)
    # where the literal graph is refused, "auto" scales the distances to the cap and trains
    with pytest.warns(UserWarning, match="distances are scaled by"):
        model = VCC(n_clusters=3, epochs=1, device="cpu", random_state=0).fit(spread)
    s = model.distance_scale_
    assert 0 < s < 1
    graph = VCC(n_clusters=3, distance_scale=s)._graph(torch.from_numpy(spread), 0)[0]
    assert mean_draws_per_edge(graph) <= AUTO_DRAWS_PER_EDGE
    wider = VCC(n_clusters=3, distance_scale=s * 1.01)._graph(torch.from_numpy(spread), 0)[0]
    assert mean_draws_per_edge(wider) > AUTO_DRAWS_PER_EDGE  # the largest such s, to 1 %
    assert model.steps_per_epoch_ <= AUTO_DRAWS_PER_EDGE * model.n_edges_ / 1000 + 1
    # where it is not (unit-scale data), "auto" is the paper's s = 1: the same graph, bit for bit
    unit = rng.random((60, 20)).astype(np.float32)
    auto = VCC(n_clusters=3)._graph(torch.from_numpy(unit), 0)[0]
    literal = VCC(n_clusters=3, distance_scale=1.0)._graph(torch.from_numpy(unit), 0)[0]
    assert torch.equal(auto.values(), literal.values())
    assert torch.equal(auto.indices(), literal.indices())
