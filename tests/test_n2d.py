"""N2D: the scikit-learn contract, the paper's settings, predict through the whole chain, files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

import aeclust
from aeclust import N2D
from aeclust.metrics import cluster_accuracy

SMALL = N2D(
    n_clusters=3,
    autoencoder=[16, 4],
    pretrain_epochs=3,
    batch_size=32,
    umap_neighbors=5,
    device="cpu",
    random_state=0,
)


# UMAP places a batch of new points by one stochastic optimisation whose random draws follow the
# batch's order and composition, so transform (and rarely predict) of a row depends on the other
# rows passed with it. That is UMAP's transform, which N2D's predict must use (issue 27).
_BATCH_DEPENDENT = "UMAP.transform optimises a batch of new points jointly: rows depend on it"
EXPECTED_FAILURES = {
    "check_methods_sample_order_invariance": _BATCH_DEPENDENT,
    "check_methods_subset_invariance": _BATCH_DEPENDENT,
}


@parametrize_with_checks([SMALL], expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def split_blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four separated blobs in 12-D: 400 rows to fit on, 100 held-out rows of the same blobs."""
    x, y = make_blobs(n_samples=500, centers=4, n_features=12, cluster_std=1.0, random_state=7)
    x = x.astype(np.float32)
    return x[:400], y[:400], x[400:], y[400:]


@pytest.fixture(scope="module")
def fitted(split_blobs) -> N2D:
    x, _, _, _ = split_blobs
    model = N2D(
        n_clusters=4,
        autoencoder=[32, 4],
        pretrain_epochs=30,
        batch_size=64,
        device="cpu",
        random_state=0,
    )
    return model.fit(x)


def test_defaults_are_the_papers():
    est = N2D(n_clusters=10)
    assert est.pretrain_epochs == 1000 and est.batch_size == 256 and est.pretrain_lr == 1e-3
    assert est.autoencoder == "mlp" and est.pretrain_loss == "mse"
    assert est.umap_neighbors == 20 and est.umap_min_dist == 0.0
    assert est.umap_metric == "euclidean" and est.covariance_type == "full"
    assert est.embedding_dim is None and est.umap_components is None  # both follow n_clusters


def test_code_and_manifold_sizes_follow_n_clusters(fitted, split_blobs):
    x, _, _, _ = split_blobs
    untrained = N2D(n_clusters=5, pretrain_epochs=0, device="cpu", random_state=0).fit(x)
    assert untrained.autoencoder_.embedding_dim == 5  # the preset's code has k units
    assert untrained.manifold_.shape == (400, 5)
    assert fitted.codes_.shape == (400, 4)
    assert fitted.manifold_.shape == (400, 4)
    assert fitted.mixture_means_.shape == (4, 4)
    assert fitted.mixture_covariances_.shape == (4, 4, 4)  # full covariances
    assert fitted.transform(x[:10]).shape == (10, 4)


def test_clusters_separated_blobs_and_places_held_out_rows(fitted, split_blobs):
    _, y, x_new, y_new = split_blobs
    assert cluster_accuracy(y, fitted.labels_) > 0.95
    # held-out rows of the same blobs land in the clusters of their blob
    new = fitted.predict(x_new)
    assert cluster_accuracy(y_new, new) > 0.9
    # and in the same cluster as the training rows of that blob (the clustering is not re-run)
    majority = {c: np.bincount(fitted.labels_[y == c]).argmax() for c in range(4)}
    assert np.mean([majority[c] == p for c, p in zip(y_new, new)]) > 0.9


def test_predict_goes_through_umap_transform_and_keeps_the_manifold(fitted, split_blobs):
    x, _, x_new, _ = split_blobs
    before = fitted.manifold_.copy()
    assert np.array_equal(fitted.predict(x), fitted.labels_)
    placed = fitted.transform(x_new)
    # new points are placed against the fitted layout, which does not move
    assert np.array_equal(fitted.manifold_, before)
    assert np.array_equal(fitted._fitted_reducer().embedding_, before)
    # ... and each new point lies near training points of its own cluster
    nearest = np.argmin(((placed[:, None, :] - before[None, :, :]) ** 2).sum(-1), axis=1)
    assert np.mean(fitted.labels_[nearest] == fitted.predict(x_new)) > 0.9
    proba = fitted.predict_proba(x_new)
    assert proba.shape == (100, 4) and np.allclose(proba.sum(1), 1.0)
    assert np.array_equal(proba.argmax(1), fitted.predict(x_new))


def test_model_file_rebuilds_the_same_chain(fitted, split_blobs, tmp_path):
    x, _, x_new, _ = split_blobs
    restored = aeclust.load(fitted.save(tmp_path / "n2d.pt"))
    assert getattr(restored, "_reducer", None) is None  # rebuilt on first use
    assert np.array_equal(restored.transform(x_new), fitted.transform(x_new))
    assert np.array_equal(restored.predict(x_new), fitted.predict(x_new))
    assert np.array_equal(restored.predict(x), fitted.labels_)


def test_same_seed_same_labels(split_blobs):
    x, _, _, _ = split_blobs
    est = clone(SMALL).set_params(n_clusters=4)
    assert np.array_equal(clone(est).fit(x).labels_, clone(est).fit(x).labels_)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("umap_neighbors", 1),
        ("umap_components", 0),
        ("umap_min_dist", -0.1),
        ("covariance_type", "ful"),
        ("n_init", 0),
    ],
)
def test_bad_stage_parameter_fails_before_pretraining(param, value, split_blobs, monkeypatch):
    x, _, _, _ = split_blobs

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretraining started before the parameters were checked")

    monkeypatch.setattr("aeclust.methods.base.pretrain_autoencoder", no_pretraining)
    with pytest.raises(ValueError, match=param):
        clone(SMALL).set_params(**{param: value}).fit(x)
