"""CT (arXiv 2411.19496): each step of the method against a value worked out by hand.

One test per row of the fidelity table (docs/METHODS.md, CT). Inputs are 2-4 points in
two dimensions with two centres, so that every expected value is a short hand computation,
written in the comment above it. tests/test_ct.py covers the scikit-learn contract, the
K-harmonic-means identity of the inverse-distance reading and the "Ours-rein" centres.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import aeclust.methods.base as base_module
import aeclust.methods.ct as ct_module
from aeclust.methods.ct import CT, centering_loss
from aeclust.metrics import cluster_accuracy, nmi
from aeclust.nn import MLPAutoencoder
from aeclust.primitives import fuzzy_cmeans_membership, kmeans
from aeclust.primitives.losses import reconstruction_loss

# Two centres on the x-axis and two points: z1 = (1, 0) has d2 = (1, 4); z2 = (1.5, 0.5) is
# equidistant, d2 = (1.5^2 + 0.5^2, 1.5^2 + 0.5^2) = (2.5, 2.5), so every reading gives it
# G = (0.5, 0.5) (u = (0.5, 0.5) for fuzzy c-means).
MU = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
Z = torch.tensor([[1.0, 0.0], [1.5, 0.5]])
LN3 = math.log(3.0)

# reading, alpha, G (or u) of z1, centering loss of the batch (mean over the two points)
READINGS = [
    # G ∝ d^-1 = (1, 1/2) -> (2/3, 1/3); L1 = 2/3*1 + 1/3*4 = 2; L2 = 2.5; mean = 2.25
    ("inverse-distance", 1.0, (2 / 3, 1 / 3), 2.25),
    # G ∝ d^-4 = d2^-2 = (1, 1/16) -> (16/17, 1/17); L1 = 16/17 + 4/17 = 20/17; mean (20/17+2.5)/2
    ("inverse-distance", 4.0, (16 / 17, 1 / 17), (20 / 17 + 2.5) / 2),
    # G ∝ exp(-a d2) with a = ln3/3: (1, e^-ln3) = (1, 1/3) -> (3/4, 1/4); L1 = 3/4 + 1 = 1.75;
    # mean = (1.75 + 2.5)/2 = 2.125
    ("softmax", LN3 / 3, (3 / 4, 1 / 4), 2.125),
    # dof 3: (1 + d2/3)^-2 = ((4/3)^-2, (7/3)^-2) = (9/16, 9/49) -> (49/65, 16/65);
    # L1 = 49/65 + 64/65 = 113/65; mean = (113/65 + 2.5)/2 = 551/260
    ("student-t", 3.0, (49 / 65, 16 / 65), 551 / 260),
    # m = 2: u ∝ d2^(-1/(m-1)) = (1, 1/4) -> (0.8, 0.2); G = u^2 = (0.64, 0.04);
    # L1 = 0.64*1 + 0.04*4 = 0.8; L2 = 2 * 0.25 * 2.5 = 1.25; mean = 1.025
    ("fuzzy-cmeans", 2.0, (0.8, 0.2), 1.025),
    # m = 3: u ∝ d2^(-1/2) = (1, 1/2) -> (2/3, 1/3); G = u^3 = (8/27, 1/27);
    # L1 = 8/27 + 4/27 = 4/9; L2 = 2 * (1/8) * 2.5 = 0.625; mean = (4/9 + 5/8)/2 = 77/144
    ("fuzzy-cmeans", 3.0, (2 / 3, 1 / 3), 77 / 144),
]


@pytest.mark.parametrize(
    "assignment, alpha, g1, expected",
    READINGS,
    ids=["inverse-1", "inverse-4", "softmax", "student-t-3", "fcm-2", "fcm-3"],
)
def test_centering_loss_and_membership_of_every_reading(assignment, alpha, g1, expected):
    loss, g = centering_loss(Z, MU, alpha, assignment)
    # the returned membership: G itself, or u (not u^alpha) for fuzzy c-means
    assert_close(g, torch.tensor([g1, (0.5, 0.5)]), rtol=1e-5, atol=1e-6)
    assert_close(loss, torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_fuzzy_cmeans_membership_minimises_bezdek_objective_for_fixed_centres():
    # d2 = (1, 4), m = 2: J(u) = u1^2 + 4 u2^2 on u1 + u2 = 1; u = (0.8, 0.2) gives 0.8,
    # (0.9, 0.1) gives 0.81 + 0.04 = 0.85, (0.7, 0.3) gives 0.49 + 0.36 = 0.85.
    u = fuzzy_cmeans_membership(Z[:1], MU, 2.0)
    assert_close(u, torch.tensor([[0.8, 0.2]]))
    d2 = torch.tensor([1.0, 4.0])
    j = (u[0] ** 2 * d2).sum()
    assert_close(j, torch.tensor(0.8))
    for other in ([0.9, 0.1], [0.7, 0.3]):
        assert_close((torch.tensor(other) ** 2 * d2).sum(), torch.tensor(0.85))


def test_softmax_centering_gradient_flows_through_distances_and_g_not_to_the_centres():
    # L = sum_k G_k d_k, G = softmax(-a d), a = ln3/3, d = (1, 4), G = (3/4, 1/4), L = 1.75.
    # dL/dd_k = G_k (1 - a (d_k - L)): (0.75 (1 + 0.75 a), 0.25 (1 - 2.25 a)).
    # dd_k/dz = 2 (z - mu_k) = ((2, 0), (-4, 0)), so
    # dL/dz_x = 1.5 (1 + 0.75 a) - (1 - 2.25 a) = 0.5 + 3.375 a  (G frozen would give 0.5).
    mu = MU.clone().requires_grad_(True)
    z = Z[:1].clone().requires_grad_(True)
    a = LN3 / 3
    loss, _ = centering_loss(z, mu, a, "softmax")
    loss.backward()
    assert_close(z.grad, torch.tensor([[0.5 + 3.375 * a, 0.0]]), rtol=1e-5, atol=1e-6)
    assert mu.grad is None


def test_fuzzy_cmeans_centering_gradient_and_no_gradient_to_the_centres():
    # m = 2, z = (1, 0): u = (0.8, 0.2) is the minimiser of J over u, so dJ/dz = sum_k u_k^2
    # * 2 (z - mu_k) = 0.64 * (2, 0) + 0.04 * (-4, 0) = (1.28 - 0.16, 0) = (1.12, 0).
    mu = MU.clone().requires_grad_(True)
    z = Z[:1].clone().requires_grad_(True)
    loss, _ = centering_loss(z, mu, 2.0, "fuzzy-cmeans")
    loss.backward()
    assert_close(z.grad, torch.tensor([[1.12, 0.0]]), rtol=1e-5, atol=1e-6)
    assert mu.grad is None


def test_reconstruction_sum_is_per_sample_sum_of_squares_averaged_over_the_batch():
    # x - x_hat = ((1, 2), (1, -1)): per-sample sums (1 + 4, 1 + 1) = (5, 2); mean = 3.5.
    # "mean" (the mean over the 4 entries) = 7 / 4 = 1.75.
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x_hat = torch.tensor([[0.0, 0.0], [-1.0, 1.0]])
    assert_close(reconstruction_loss(x_hat, x, "sum"), torch.tensor(3.5))
    assert_close(reconstruction_loss(x_hat, x, "mean"), torch.tensor(1.75))


def test_kmeans_warm_start_runs_lloyd_from_the_given_centres():
    # Four points (0,0), (0,2), (4,0), (4,2).
    x = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
    # From (1,1), (2,1): d2 of (0,0) = (2, 5), (0,2) = (2, 5), (4,0) = (10, 5), (4,2) = (10, 5)
    # -> labels (0, 0, 1, 1) -> centres (0, 1), (4, 1), a fixed point; inertia 4 * 1 = 4.
    res = kmeans(x, 2, init=torch.tensor([[1.0, 1.0], [2.0, 1.0]]))
    assert_close(res.centers, torch.tensor([[0.0, 1.0], [4.0, 1.0]]))
    assert res.labels.tolist() == [0, 0, 1, 1]
    assert res.inertia == pytest.approx(4.0)
    # From (2,0), (2,2) (the other 2+2 split): (0,0) d2 = (4, 8) -> 0, (0,2) -> 1, (4,0) -> 0,
    # (4,2) -> 1; the means are (2,0), (2,2) again: a warm start keeps this local optimum
    # (inertia 4 * 4 = 16) instead of restarting k-means++ (which finds inertia 4).
    res = kmeans(x, 2, init=torch.tensor([[2.0, 0.0], [2.0, 2.0]]))
    assert_close(res.centers, torch.tensor([[2.0, 0.0], [2.0, 2.0]]))
    assert res.labels.tolist() == [0, 1, 0, 1]
    assert res.inertia == pytest.approx(16.0)


def _hand_autoencoder() -> MLPAutoencoder:
    """A linear 2-2 autoencoder with z = x and x_hat = z / 2."""
    ae = MLPAutoencoder([2, 2], activation="linear")
    with torch.no_grad():
        enc, dec = ae.encoder_layers[0], ae.decoder_layers[0]
        enc.weight.copy_(torch.eye(2))
        enc.bias.zero_()
        dec.weight.copy_(0.5 * torch.eye(2))
        dec.bias.zero_()
    return ae


# (0,0), (0,2) and (4,0), (4,2): k-means gives centres (0, 1), (4, 1); each point has d2 = (1, 17)
X4 = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]], dtype=np.float32)


def _hand_ct(**params) -> CT:
    # lr = 1e-12 (pretraining Adam and fine-tuning SGD): the weights stay at their hand values
    # within fp32, so the records and the k-means runs see z = x and x_hat = x / 2.
    base = dict(
        autoencoder=_hand_autoencoder(),
        pretrain_epochs=0,
        pretrain_lr=1e-12,
        center_inputs=False,
        batch_size=4,
        epochs=1,
        lam=2.0,
        alpha=2.0,
        assignment="fuzzy-cmeans",
        optimizer="sgd",
        lr=1e-12,
        n_init=5,
        device="cpu",
        random_state=0,
    )
    return CT(2, **{**base, **params})


def test_pretraining_minimises_the_mean_squared_reconstruction():
    # One batch of all 4 points, before the step: (x_hat - x)^2 = (x/2)^2, per-sample sums
    # (0, 1, 4, 5) -> 10 over 8 entries: the pretraining loss (pretrain_loss="mse") = 1.25.
    est = _hand_ct(pretrain_epochs=1).fit(X4)
    assert len(est.pretrain_history_) == 1
    assert est.pretrain_history_[0]["loss"] == pytest.approx(1.25, rel=1e-6)


def test_one_fine_tuning_epoch_records_rec_plus_lam_times_centering_by_hand():
    # Reconstruction ("sum"): per-sample (0, 1, 4, 5) -> mean 10 / 4 = 2.5.
    # Centering, fuzzy c-means m = 2, d2 = (1, 17) for every point: u = (17/18, 1/18),
    # J = (17/18)^2 * 1 + (1/18)^2 * 17 = (289 + 17) / 324 = 17/18.
    # Loss = 2.5 + lam * 17/18 = 2.5 + 34/18 = 79/18.
    est = _hand_ct().fit(X4)
    (record,) = est.history_
    assert record["reconstruction"] == pytest.approx(2.5, rel=1e-6)
    assert record["clustering"] == pytest.approx(17 / 18, rel=1e-6)
    assert record["loss"] == pytest.approx(79 / 18, rel=1e-6)
    # The re-initialisation: k-means from (0,1), (4,1) on the unchanged embedding stays there:
    # inertia 4 * 1 = 4, no label changes.
    assert record["kmeans_inertia"] == pytest.approx(4.0, rel=1e-6)
    assert record["labels_changed"] == 0.0


def test_labels_are_the_nearest_final_centre():
    est = _hand_ct().fit(X4)
    order = np.argsort(est.cluster_centers_[:, 0])
    np.testing.assert_allclose(est.cluster_centers_[order], [[0.0, 1.0], [4.0, 1.0]], atol=1e-5)
    left, right = order
    # (0,0), (0,2): d2 = (1, 17) -> the centre (0, 1); (4,0), (4,2): d2 = (17, 1) -> (4, 1).
    assert est.labels_.tolist() == [left, left, right, right]
    # New points: (1,1) d2 = (1, 9) -> (0, 1); (3,5) d2 = (9 + 16, 1 + 16) = (25, 17) -> (4, 1).
    assert est.predict(np.array([[1.0, 1.0], [3.0, 5.0]], dtype=np.float32)).tolist() == [
        left,
        right,
    ]


def test_each_epoch_reinitialises_kmeans_from_the_previous_centres(monkeypatch):
    calls = []
    real = ct_module.kmeans

    def spy(x, n_clusters, **kwargs):
        result = real(x, n_clusters, **kwargs)
        calls.append((kwargs, result))
        return result

    monkeypatch.setattr(ct_module, "kmeans", spy)  # the re-initialisations
    monkeypatch.setattr(base_module, "kmeans", spy)  # the initial k-means (shared opening)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (4, 2)), rng.normal(3, 0.3, (4, 2))]).astype(np.float32)
    est = CT(
        2,
        autoencoder=[4, 2],
        pretrain_epochs=1,
        epochs=2,
        batch_size=4,
        n_init=3,
        center_inputs=False,
        device="cpu",
        random_state=0,
    ).fit(x)
    # 1 initial k-means (k-means++, n_init restarts) + 1 per epoch.
    assert len(calls) == 3
    first_kwargs = calls[0][0]
    assert "init" not in first_kwargs and first_kwargs["n_init"] == 3
    for (_, previous), (kwargs, result), record in zip(calls, calls[1:], est.history_):
        assert torch.equal(kwargs["init"], previous.centers)  # warm start from the last centres
        assert record["kmeans_inertia"] == result.inertia
    np.testing.assert_array_equal(est.cluster_centers_, calls[-1][1].centers.numpy())


def test_ours_rein_runs_kmeans_once(monkeypatch):
    calls = []
    real = ct_module.kmeans

    def spy(x, n_clusters, **kwargs):
        calls.append(kwargs)
        return real(x, n_clusters, **kwargs)

    monkeypatch.setattr(ct_module, "kmeans", spy)  # the re-initialisations
    monkeypatch.setattr(base_module, "kmeans", spy)  # the initial k-means (shared opening)
    est = _hand_ct(reinit="none", epochs=2).fit(X4)
    assert len(calls) == 1 and "init" not in calls[0]
    assert len(est.history_) == 2


def test_acc_and_nmi_of_a_hand_worked_partition():
    # y = (0, 0, 1, 1), c = (0, 0, 0, 1). ACC: map c0 -> 0, c1 -> 1: 2 + 1 = 3 of 4 = 0.75.
    # NMI (arithmetic): H(Y) = ln 2; H(C) = -(3/4 ln 3/4 + 1/4 ln 1/4);
    # MI = 1/2 ln(1/2 / (1/2 * 3/4)) + 1/4 ln(1/4 / (1/2 * 3/4)) + 1/4 ln(1/4 / (1/2 * 1/4))
    #    = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2 = 0.21576; NMI = MI / ((H(Y) + H(C)) / 2) = 0.34372.
    y, c = [0, 0, 1, 1], [0, 0, 0, 1]
    assert cluster_accuracy(y, c) == pytest.approx(0.75)
    h_y = math.log(2)
    h_c = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert nmi(y, c) == pytest.approx(mi / ((h_y + h_c) / 2))
    assert nmi(y, c) == pytest.approx(0.34372, abs=1e-5)
