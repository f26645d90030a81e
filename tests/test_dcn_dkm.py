"""DCN and DKM: the scikit-learn contract, update rules, schedules and a sanity run on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from aeclust.methods.base import load
from aeclust.methods.dcn import DCN, DCNModule, dcn_centroid_update
from aeclust.methods.dkm import DKM, annealed_alphas, dkm_clustering_loss
from aeclust.metrics import cluster_accuracy
from aeclust.nn import MLPAutoencoder
from aeclust.primitives import assign, softmax_assignment

SMALL = dict(autoencoder=[16, 4], pretrain_epochs=2, batch_size=32, device="cpu", random_state=0)

# DCN's default SGD (lr 1e-4 on summed squared errors) diverges on the unscaled data (values near
# 100) of check_fit_idempotent, raising the Trainer's FloatingPointError; these checks are about
# the API, so the DCN configuration uses Adam.
FAST = [
    DCN(n_clusters=3, epochs=2, optimizer="adam", lr=1e-3, **SMALL),
    DKM(n_clusters=3, alphas=[1000.0], epochs_per_alpha=2, **SMALL),
    DKM(n_clusters=3, pretrained=False, n_alpha_steps=2, epochs_per_alpha=1, **SMALL),
]
IDS = ["DCN", "DKM-pretrained", "DKM-annealed"]

# Named expected failures: check name -> reason, per configuration.
_ANNEALED_REASON = (
    "DKM without pretraining starts from representatives drawn uniformly in [-1, 1]; a short run "
    "on 50 points often puts every point on one representative (ARI 0, labels not consecutive), "
    "which is the variant's behaviour, not an API fault (the pretrained DKM passes)"
)
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "DCN": {},
    "DKM-pretrained": {},
    "DKM-annealed": {
        "check_clustering": _ANNEALED_REASON,
        "check_clustering(readonly_memmap=True)": _ANNEALED_REASON,
    },
}


def _expected(est):
    if isinstance(est, DKM):
        return EXPECTED_FAILURES["DKM-pretrained" if est.pretrained else "DKM-annealed"]
    return EXPECTED_FAILURES[type(est).__name__]


@parametrize_with_checks(FAST, expected_failed_checks=_expected)
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
    assert a.cluster_centers_.shape == (10, 4) and a.cluster_centers_.dtype == np.float32
    assert a.n_iter_ == len(a.history_) == 2
    assert {"loss", "reconstruction", "clustering"} <= set(a.history_[0])


@pytest.mark.parametrize("est", FAST, ids=IDS)
def test_save_and_load_roundtrip(est, digits, tmp_path):
    x, _ = digits
    model = clone(est).set_params(n_clusters=10).fit(x[:500])
    restored = load(model.save(tmp_path / "model.pt"))
    assert type(restored) is type(model)
    assert restored.get_params() == model.get_params()
    assert np.array_equal(restored.predict(x), model.predict(x))
    assert np.array_equal(restored.labels_, model.labels_)
    assert np.array_equal(restored.cluster_centers_, model.cluster_centers_)
    assert restored.history_ == model.history_


# -- DCN --------------------------------------------------------------------------------------
def _sequential_update(centers, counts, z, labels):
    # The paper's per-sample rule (eq. 8), literally.
    m = centers.double().clone()
    c = counts.double().clone()
    for zi, k in zip(z.double(), labels.tolist()):
        c[k] += 1
        m[k] -= (m[k] - zi) / c[k]
    return m, c


@pytest.mark.parametrize("initial_count", [100.0, 3.0, 0.0])
def test_dcn_vectorised_centroid_update_equals_the_sequential_rule(initial_count):
    gen = torch.Generator().manual_seed(0)
    k, d, n = 5, 3, 64
    centers = torch.randn(k, d, generator=gen)
    counts = torch.full((k,), initial_count) + torch.randint(0, 4, (k,), generator=gen)
    z = torch.randn(n, d, generator=gen) * 3
    labels = torch.randint(0, k - 1, (n,), generator=gen)  # cluster k-1 gets no point
    new_m, new_c = dcn_centroid_update(centers, counts, z, labels)
    ref_m, ref_c = _sequential_update(centers, counts, z, labels)
    assert torch.allclose(new_m.double(), ref_m, atol=1e-5)
    assert torch.equal(new_c.double(), ref_c)
    assert torch.equal(new_m[k - 1], centers[k - 1])
    assert not torch.equal(centers, new_m)  # the inputs are left alone


def test_dcn_state_lives_in_checkpointed_buffers():
    ae = MLPAutoencoder([6, 2])
    data = torch.zeros(10, 6)
    model = DCNModule(
        ae,
        torch.zeros(3, 2),
        torch.zeros(10, dtype=torch.long),
        data,
        initial_count=100,
        lam=1.0,
        rec_loss="sum",
    )
    keys = set(model.state_dict())
    assert {"centers", "counts", "assignments"} <= keys
    assert not any(k.startswith("data") for k in keys)  # the training set is not state
    assert all(not k.startswith(("centers", "counts")) for k, _ in model.named_parameters())


def test_dcn_counts_and_assignment_bookkeeping(digits):
    x, _ = digits
    x = x[:300]
    est = DCN(4, epochs=3, initial_count=10, **SMALL).fit(x)
    # Every point is assigned once per epoch, each assignment adding 1 to a count.
    assert est.cluster_counts_.sum() == pytest.approx(4 * 10 + 3 * len(x))
    assert all(0.0 <= r["assignment_changes"] <= 1.0 for r in est.history_)
    r = est.history_[-1]
    assert r["loss"] == pytest.approx(r["reconstruction"] + 0.5 * est.lam * r["clustering"])


# -- DKM --------------------------------------------------------------------------------------
def test_dkm_soft_assignment_is_normalised_and_finite_for_large_alpha():
    gen = torch.Generator().manual_seed(1)
    reps = torch.randn(4, 5, generator=gen) * 1e3
    z = (torch.randn(50, 5, generator=gen) * 1e3).requires_grad_()
    g = softmax_assignment(z, reps, 1000.0)
    assert torch.allclose(g.sum(dim=1), torch.ones(50))
    assert torch.isfinite(g).all()
    loss, g2 = dkm_clustering_loss(z, reps, 1000.0)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # At this temperature G is the nearest-representative indicator.
    assert torch.equal(g2.argmax(dim=1), assign(z.detach(), reps)[0])
    assert torch.allclose(g2.max(dim=1).values, torch.ones(50))


def test_dkm_alpha_schedules():
    alphas = annealed_alphas(40, 0.1)
    assert len(alphas) == 40 and alphas[0] == 0.1
    for i in range(1, 40):  # 1-based: alpha_{i+1} = 2^(1 / ln(i + 1)^2) alpha_i
        assert alphas[i] == pytest.approx(alphas[i - 1] * 2 ** (1 / math.log(i + 1) ** 2))
    assert alphas[1] == pytest.approx(0.1 * 2 ** (1 / math.log(2) ** 2))
    assert DKM(pretrained=False).alpha_schedule() == alphas
    assert DKM().alpha_schedule() == [1000.0] * 20
    assert DKM(alpha=50.0, n_alpha_steps=3).alpha_schedule() == [50.0] * 3
    assert DKM(alphas=[1, 2.5]).alpha_schedule() == [1.0, 2.5]


def test_dkm_history_follows_the_schedule(digits):
    x, _ = digits
    est = DKM(4, pretrained=False, n_alpha_steps=3, epochs_per_alpha=2, **SMALL).fit(x[:300])
    expected = [a for a in annealed_alphas(3) for _ in range(2)]
    assert [r["alpha"] for r in est.history_] == pytest.approx(expected)
    assert est.alphas_ == annealed_alphas(3)
    assert est.pretrain_history_ == []  # the no-pretraining variant


def test_dkm_without_pretraining_starts_from_uniform_representatives(digits):
    x, _ = digits
    est = DKM(5, pretrained=False, alphas=[0.1], epochs_per_alpha=0, **SMALL).fit(x[:100])
    assert est.n_iter_ == 0
    assert np.all(np.abs(est.cluster_centers_) <= 1.0)
    assert np.unique(est.cluster_centers_).size == est.cluster_centers_.size


def test_dkm_reinit_leaves_kmeans_centres(digits):
    x, _ = digits
    est = DKM(5, alphas=[1000.0], epochs_per_alpha=2, reinit="kmeans", **SMALL).fit(x[:400])
    z = est.transform(x[:400])
    means = np.stack([z[est.labels_ == k].mean(axis=0) for k in np.unique(est.labels_)])
    assert np.allclose(means, est.cluster_centers_[np.unique(est.labels_)], atol=1e-2)


# -- both -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "est",
    [
        DCN(10, epochs=10, optimizer="adam", lr=1e-3),
        DKM(10, alphas=[1000.0, 1000.0], epochs_per_alpha=5),
    ],
    ids=["DCN", "DKM"],
)
def test_learns_digits_and_the_clustering_loss_decreases(est, digits):
    x, y = digits
    params = dict(autoencoder=[64, 32, 10], pretrain_epochs=30, batch_size=64, random_state=0)
    est = clone(est).set_params(device="cpu", **params).fit(x)
    assert cluster_accuracy(y, est.labels_) > 0.6
    clustering = [r["clustering"] for r in est.history_]
    assert clustering[-1] < 0.8 * clustering[0]
    assert all(math.isfinite(r["loss"]) for r in est.history_)


@pytest.mark.parametrize("cls", [DCN, DKM])
def test_bf16_keeps_cluster_state_in_fp32(cls, digits):
    x, _ = digits
    extra = {"alphas": [1000.0], "epochs_per_alpha": 1} if cls is DKM else {"epochs": 1}
    est = cls(4, precision="bf16", **SMALL, **extra).fit(x[:200])
    assert est.cluster_centers_.dtype == np.float32
    assert np.array_equal(est.predict(x[:200]), est.labels_)


@pytest.mark.parametrize(
    ("est", "message"),
    [
        (DCN(2, rec_loss="l1"), "'rec_loss' parameter of DCN must be a str among"),
        (DCN(2, lam=-1.0), "'lam' parameter of DCN"),
        (DCN(2, initial_count=-5), "'initial_count' parameter of DCN"),
        (DCN(2, optimizer="rmsprop"), "'optimizer' parameter of DCN must be a str among"),
        (DKM(2, reinit="always"), "'reinit' parameter of DKM"),
        (DKM(2, alphas=[]), "'alphas' parameter of DKM must be None or a list or tuple of at"),
        (DKM(2, alphas=[1.0, -2.0]), "'alphas' parameter of DKM"),
        (DKM(2, pretrained=False, n_alpha_steps=0), "'n_alpha_steps' parameter of DKM"),
    ],
)
def test_bad_parameters_get_a_clear_error(est, message):
    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        est.set_params(autoencoder=[4, 2], pretrain_epochs=0, device="cpu").fit(x)
