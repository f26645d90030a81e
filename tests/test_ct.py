"""CT: the scikit-learn contract, the centering loss, re-initialisation, a sanity run on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from aeclust.methods.base import load
from aeclust.methods.ct import CT, centering_loss
from aeclust.metrics import cluster_accuracy
from aeclust.primitives import assign

SMALL = dict(autoencoder=[16, 4], pretrain_epochs=2, batch_size=32, device="cpu", random_state=0)

FAST = [
    CT(n_clusters=3, epochs=2, n_init=3, **SMALL),
    CT(n_clusters=3, epochs=2, n_init=3, reinit="none", assignment="softmax", **SMALL),
]
IDS = ["CT", "CT-rein-softmax"]


@parametrize_with_checks(FAST)
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", FAST, ids=IDS)
def test_deterministic_for_a_seed_and_predict_equals_labels(est, digits):
    x, _ = digits
    a = clone(est).set_params(n_clusters=10).fit(x)
    b = clone(est).set_params(n_clusters=10).fit(x)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    assert np.array_equal(a.predict(x), a.labels_)
    assert a.labels_.dtype == np.int64 and a.labels_.min() >= 0 and a.labels_.max() < 10
    assert a.cluster_centers_.shape == (10, 4)
    assert a.n_iter_ == len(a.history_) == 2
    assert {"loss", "reconstruction", "clustering"} <= set(a.history_[0])
    assert a.initial_max_membership_.shape == a.max_membership_.shape == (len(x),)
    assert np.all((a.max_membership_ >= 0.1 - 1e-6) & (a.max_membership_ <= 1 + 1e-6))


def test_save_and_load_roundtrip(digits, tmp_path):
    x, _ = digits
    model = clone(FAST[0]).set_params(n_clusters=10).fit(x[:500])
    restored = load(model.save(tmp_path / "model.pt"))
    assert restored.get_params() == model.get_params()
    assert np.array_equal(restored.predict(x), model.predict(x))
    assert np.array_equal(restored.labels_, model.labels_)
    assert restored.history_ == model.history_


def test_inverse_distance_centering_loss_is_k_harmonic_mean():
    # With G_k = d_k^-alpha / sum_j d_j^-alpha and alpha = 2: sum_k G_k d_k^2 = K / sum_j d_j^-2.
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20, 3, generator=gen, requires_grad=True)
    mu = torch.randn(4, 3, generator=gen)
    loss, g = centering_loss(z, mu, 2.0, "inverse-distance")
    d2 = ((z[:, None, :] - mu[None]) ** 2).sum(-1)
    expected = (4.0 / (1.0 / d2).sum(dim=1)).mean()
    assert torch.allclose(loss, expected, rtol=1e-4)
    assert torch.allclose(g.sum(dim=1), torch.ones(20))
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_centering_loss_is_finite_on_a_centre_and_does_not_move_the_centres():
    mu = torch.tensor([[0.0, 0.0], [10.0, 0.0]], requires_grad=True)
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    for kind in ("inverse-distance", "softmax", "student-t"):
        loss, g = centering_loss(z, mu, 3.0, kind)
        assert torch.isfinite(loss)
        assert g[0, 0] > 0.99  # a point on a centre belongs to it
        loss.backward()
        assert mu.grad is None  # k-means owns the centroids, not SGD


def test_reinitialisation_leaves_kmeans_centres_and_records_changes(digits):
    x, _ = digits
    est = CT(5, epochs=3, n_init=3, **SMALL).fit(x[:400])
    z = est.transform(x[:400])
    present = np.unique(est.labels_)
    means = np.stack([z[est.labels_ == k].mean(axis=0) for k in present])
    assert np.allclose(means, est.cluster_centers_[present], atol=1e-3)
    assert all(0.0 <= r["labels_changed"] <= 1.0 for r in est.history_)
    assert all(r["kmeans_inertia"] > 0 for r in est.history_)


def test_without_reinitialisation_the_centres_stay_put(digits):
    x, _ = digits
    base = CT(5, epochs=0, n_init=3, **SMALL).fit(x[:400])
    est = CT(5, epochs=3, n_init=3, reinit="none", **SMALL).fit(x[:400])
    assert np.array_equal(est.cluster_centers_, base.cluster_centers_)
    assert "labels_changed" not in est.history_[0]
    centers = torch.from_numpy(est.cluster_centers_)
    nearest = assign(torch.from_numpy(est.transform(x[:400])), centers)[0].numpy()
    assert np.array_equal(nearest, est.labels_)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(assignment="gaussian"), "'assignment' parameter of CT must be a str among"),
        (dict(reinit="always"), "'reinit' parameter of CT"),
        (dict(alpha=0.0), r"'alpha' parameter of CT must be a float in the range \(0.0, inf\)"),
        (dict(lam=-1.0), r"'lam' parameter of CT must be a float in the range \[0.0, inf\)"),
        (dict(assignment="fuzzy-cmeans", alpha=1.0), "fuzzy-cmeans' needs alpha > 1"),
    ],
)
def test_bad_parameters_are_named(params, message, digits):
    x, _ = digits
    with pytest.raises(ValueError, match=message):
        CT(3, epochs=1, **{**SMALL, **params}).fit(x[:100])


def test_learns_digits_and_the_centering_loss_decreases(digits):
    x, y = digits
    est = CT(
        10,
        autoencoder=[64, 32, 10],
        pretrain_epochs=30,
        epochs=10,
        lam=1.0,
        alpha=2.0,
        batch_size=64,
        device="cpu",
        random_state=0,
    ).fit(x)
    assert cluster_accuracy(y, est.labels_) > 0.6
    clustering = [r["clustering"] for r in est.history_]
    assert clustering[-1] < clustering[0]


def test_membership_histogram_figure_counts_every_point(tmp_path):
    from aeclust.bench.plots import membership_histogram_figure

    rng = np.random.default_rng(0)
    before, after = rng.uniform(0.1, 0.5, 300), rng.uniform(0.8, 1.0, 300)
    fig = membership_histogram_figure(before, after, "CT")
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert sum(p.get_height() for p in ax.patches) == 300
    assert "0.9" in axes[1].get_title()  # the mean of 'after' is shown


def test_curves_figure_gives_losses_of_other_magnitudes_their_own_panels():
    """CT's Fig. 4: the k-means inertia (thousands) must not flatten the loss curves (~1)."""
    from aeclust.bench.plots import _numeric_series, _scale_groups, curves_figure

    history = [
        {
            "epoch": e,
            "loss": 28.0 - e,
            "reconstruction": 17.0 - e,
            "clustering": 1.1 - 0.1 * e,
            "labels_changed": 0.1 / (e + 1),
            "kmeans_inertia": 6000.0 - 500 * e,
        }
        for e in range(5)
    ]
    pretraining = [{"epoch": e, "loss": 0.07 - 0.01 * e} for e in range(5)]
    groups = [sorted(g) for g in _scale_groups(_numeric_series(history))]
    assert groups == [
        ["kmeans_inertia"],
        ["loss", "reconstruction"],
        ["clustering", "labels_changed"],
    ]
    fig = curves_figure({"pretraining": pretraining, "clustering": history}, "CT")
    axes = fig.get_axes()
    assert len(axes) == 4  # one pretraining panel, three clustering panels
    plotted = sorted(line.get_label() for ax in axes for line in ax.get_lines())
    assert plotted == sorted(["loss", *history[0].keys() - {"epoch"}])
    # a history of one magnitude stays one panel
    assert len(curves_figure({"pretraining": pretraining}, "AE").get_axes()) == 1
