"""Fidelity of k-DAE / DAMIC to the paper, one step at a time, against values worked by hand.

Opochinsky, Chazan, Gannot and Goldberger, "K-autoencoders deep clustering", ICASSP 2020:
eq. 1 (hard minimum), eq. 2 (its gradient), eq. 4 (soft variant), eq. 5 (DAMIC's gated
mixture), Table 1 (pretraining, assignment). The row-by-row table is in
docs/METHODS.md (k-DAE).

The losses of eqs. 1, 4 and 5 are the ``training_step`` of ``KDAEModule`` / ``DAMICModule``
built inside a real fit; the tests stop that fit at the joint stage's ``Trainer.fit`` and call
the step on a hand-made batch. The autoencoders are replaced by "constant" networks (zero
weights, the output bias c_i), so f_i(x) = c_i and every error is ‖x − c_i‖², as in the paper's
reduction of eq. 1 to k-means (eq. 3).
"""

import math

import pytest
import torch
import torch._dynamo  # torch imports it with the first optimiser (2-4 s): paid at import
from torch import nn

from aeclust.methods import kdae as kdae_module
from aeclust.methods.kdae import (
    DAMIC,
    KDAE,
    _errors,
    assign_to_best_reconstructor,
    reseed_empty,
)
from aeclust.nn import BatchedMLPAutoencoder, MLPAutoencoder
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import Trainer

# Three points and two constant "autoencoders" c_0 = (0, 1), c_1 = (3, 0).
X = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, -1.0]])
C = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
# Squared errors ‖x_t − c_i‖², by hand:
#   x_0 = (0, 0):  c_0: 0 + 1 = 1      c_1: 9 + 0 = 9
#   x_1 = (3, 4):  c_0: 9 + 9 = 18     c_1: 0 + 16 = 16
#   x_2 = (3, −1): c_0: 9 + 4 = 13     c_1: 0 + 1 = 1
SQUARED = [[1.0, 9.0], [18.0, 16.0], [13.0, 1.0]]
# Un-squared norms: [[1, 3], [√18, 4], [√13, 1]].
NORM = [[1.0, 3.0], [math.sqrt(18.0), 4.0], [math.sqrt(13.0), 1.0]]


def constant_models(centres: torch.Tensor = C) -> BatchedMLPAutoencoder:
    """k batched autoencoders 2-1-2 whose output is the constant c_i (zero weights)."""
    k, d = centres.shape
    models = BatchedMLPAutoencoder(k, [d, 1], batch_norm=False, output_activation=None)
    with torch.no_grad():
        for layer in (*models.encoder, *models.decoder):
            layer.weight.zero_()
            layer.bias.zero_()
        models.decoder[-1].bias.copy_(centres.unsqueeze(1))
    return models


class FixedGate(nn.Module):
    """Stands in for DAMIC's MLPClassifier: logits log p for the rows of X, p given by hand."""

    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # so that the optimiser has something

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs[: x.shape[0]].log() + 0.0 * self.dummy


class _Stop(Exception):
    pass


def capture_losses(monkeypatch, estimator, models=None):
    """Fit ``estimator`` on X until its joint stage starts; return {stage name: loss_fn}.

    The initial pretraining has 0 epochs (k-means on an untrained network), the per-cluster
    autoencoders are :func:`constant_models`, and DAMIC's gate is :class:`FixedGate`.
    """
    captured = {}

    def fake_fit(self, tensors):
        captured[self.desc] = self.module.training_step
        if self.desc in ("KDAE", "DAMIC"):
            raise _Stop
        return []

    monkeypatch.setattr(Trainer, "fit", fake_fit)
    monkeypatch.setattr(kdae_module, "MLPClassifier", FixedGate)
    models = constant_models() if models is None else models
    monkeypatch.setattr(estimator, "_build_cluster_autoencoders", lambda n: models)
    with pytest.raises(_Stop):
        estimator.fit(X.numpy())
    return captured


def tiny(cls, **kw):
    """A 2-cluster estimator that does no real training (its stages are cut short)."""
    params = dict(
        autoencoder=[3],
        embedding_dim=2,
        batch_norm=False,
        pretrain_epochs=0,
        pretrain_loss="mse",  # X is not in [0, 1]; the constant networks have no sigmoid
        center_inputs=False,
        n_init=1,
        cluster_pretrain_epochs=1,
        epochs=1,
        random_state=0,
        device="cpu",
    )
    params.update(kw)
    return cls(2, **params)


def value(t: torch.Tensor) -> float:
    return float(t.detach())


IDX = torch.arange(3)


# -- the distance d and the n × k error matrix ----------------------------------------------------
def test_errors_are_the_squared_distance_or_the_norm_per_sample_and_model():
    models = constant_models()
    assert torch.allclose(_errors(models, X, "squared"), torch.tensor(SQUARED))
    # the norm is sqrt(err + 1e-12): 1e-6 away from the exact norm at worst
    assert torch.allclose(_errors(models, X, "norm"), torch.tensor(NORM), atol=1e-5)


# -- eq. 1: hard minimum --------------------------------------------------------------------------
def test_eq1_hard_loss_is_the_batch_mean_of_the_row_minimum(monkeypatch):
    loss_fn = capture_losses(monkeypatch, tiny(KDAE))["KDAE"]
    # row minima of SQUARED: 1, 16, 1 -> mean 18 / 3 = 6 (eq. 1 divided by n)
    assert value(loss_fn(IDX, X)) == pytest.approx(6.0, abs=1e-5)


def test_eq1_with_the_authors_norm(monkeypatch):
    loss_fn = capture_losses(monkeypatch, tiny(KDAE, distance="norm"))["KDAE"]
    # row minima of NORM: 1, 4, 1 -> mean 6 / 3 = 2 (the authors' un-squared ‖x − x̂‖)
    assert value(loss_fn(IDX, X)) == pytest.approx(2.0, abs=1e-5)


def test_eq2_gradient_reaches_only_each_points_best_autoencoder(monkeypatch):
    models = constant_models()
    loss_fn = capture_losses(monkeypatch, tiny(KDAE), models)["KDAE"]
    models.zero_grad()
    loss_fn(IDX, X).backward()
    grad = models.decoder[-1].bias.grad.squeeze(1)  # d loss / d c_i
    # N_0 = {x_0}, N_1 = {x_1, x_2}; d/dc (1/3)‖x − c‖² = (2/3)(c − x), summed over N_i only:
    #   c_0: (2/3)((0, 1) − (0, 0)) = (0, 2/3)
    #   c_1: (2/3)[((3, 0) − (3, 4)) + ((3, 0) − (3, −1))] = (2/3)(0, −3) = (0, −2)
    # (had x_1 also pulled c_0, c_0's gradient would hold (2/3)(c_0 − x_1) = (−2, −2) more)
    assert torch.allclose(grad, torch.tensor([[0.0, 2.0 / 3.0], [0.0, -2.0]]), atol=1e-5)


# -- eq. 4: soft minimum --------------------------------------------------------------------------
def test_eq4_soft_loss(monkeypatch):
    loss_fn = capture_losses(monkeypatch, tiny(KDAE, loss="soft"))["KDAE"]
    # −log(e^−a + e^−b) = a − log(1 + e^−(b − a)) with a the row minimum; the gaps are 8, 2, 12:
    #   (1 − log1p(e^−8)) + (16 − log1p(e^−2)) + (1 − log1p(e^−12)), all over 3
    expected = (18.0 - math.log1p(math.exp(-8)) - math.log1p(math.exp(-2))) / 3.0
    expected -= math.log1p(math.exp(-12)) / 3.0  # = 5.95758
    assert value(loss_fn(IDX, X)) == pytest.approx(expected, abs=1e-5)
    assert expected < 6.0  # below the hard loss of the same errors, as a soft minimum must be


# -- eq. 5: DAMIC ---------------------------------------------------------------------------------
def test_eq5_damic_loss_with_given_gate_probabilities(monkeypatch):
    loss_fn = capture_losses(monkeypatch, tiny(DAMIC))["DAMIC"]
    # −log Σ_i p_i e^−d_i with p = FixedGate.probs and d = SQUARED:
    #   x_0: −log(0.5 e^−1 + 0.5 e^−9)    = 1 − log 0.5 − log1p(e^−8)
    #   x_1: −log(0.25 e^−18 + 0.75 e^−16) = 16 − log 0.75 − log1p((1/3) e^−2)
    #   x_2: −log(0.9 e^−13 + 0.1 e^−1)   = 1 − log 0.1 − log1p(9 e^−12)
    rows = [
        1 - math.log(0.5) - math.log1p(math.exp(-8)),
        16 - math.log(0.75) - math.log1p(math.exp(-2) / 3),
        1 - math.log(0.1) - math.log1p(9 * math.exp(-12)),
    ]
    expected = sum(rows) / 3  # = (1.69281 + 16.24356 + 3.30253) / 3 = 7.07963
    assert value(loss_fn(IDX, X)) == pytest.approx(expected, abs=1e-5)


# -- Table 1, pretraining -------------------------------------------------------------------------
def test_pretraining_loss_is_the_binary_cross_entropy_averaged_over_entries():
    # Sec. 3.4: "trained with the binary cross-entropy loss" (the authors' Keras BCE: mean over
    # the features, outputs clipped to [1e-7, 1 − 1e-7]). x = (1, 0), x̂ = (0.5, 0.25):
    #   (−log 0.5 − log(1 − 0.25)) / 2 = (0.693147 + 0.287682) / 2 = 0.490415
    x, x_hat = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.25]])
    assert value(reconstruction_loss(x_hat, x, "bce")) == pytest.approx(0.490415, abs=1e-5)
    # a wrong output of exactly 0 is clipped: (−log 1e-7 + 0) / 2 = 16.118096 / 2 = 8.059048
    x_hat = torch.tensor([[0.0, 0.0]])
    assert value(reconstruction_loss(x_hat, x, "bce")) == pytest.approx(8.059048, rel=1e-4)


def test_initial_kmeans_runs_on_the_initial_autoencoders_embedding():
    # Embedding z = x[:, 0] (hand-set encoder, no training). In the input, the second coordinate
    # separates the points (16 apart against 4); in the embedding only the first one is seen.
    ae = MLPAutoencoder([2, 1], batch_norm=False)
    with torch.no_grad():
        ae.encoder_layers[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        ae.encoder_layers[0].bias.zero_()
    x = torch.tensor([[0.0, 8.0], [0.1, -8.0], [4.0, 8.0], [4.1, -8.0]])
    est = tiny(KDAE, autoencoder=ae, n_init=5)
    labels = est._initial_labels(ae, x, seed=0).tolist()
    # z = 0, 0.1, 4, 4.1 -> {x_0, x_1} and {x_2, x_3}
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert est.initial_labels_.tolist() == labels


def test_cluster_pretraining_reconstructs_each_point_by_its_own_clusters_autoencoder(
    monkeypatch,
):
    loss_fn = capture_losses(monkeypatch, tiny(KDAE))["cluster pretrain"]
    # pretrain_loss "mse" = mean over the 3 × 2 entries of (x̂ − x)², x̂_t = c_{l_t}:
    #   l = (0, 1, 1): x̂ = c_0, c_1, c_1 -> 1 + 16 + 1 = 18, / 6 = 3
    #   l = (1, 0, 0): x̂ = c_1, c_0, c_0 -> 9 + 18 + 13 = 40, / 6 = 6.667
    assert value(loss_fn(IDX, X, torch.tensor([0, 1, 1]))) == pytest.approx(3.0, abs=1e-5)
    assert value(loss_fn(IDX, X, torch.tensor([1, 0, 0]))) == pytest.approx(40 / 6, abs=1e-5)


def test_damic_cluster_pretraining_adds_the_gates_cross_entropy(monkeypatch):
    loss_fn = capture_losses(monkeypatch, tiny(DAMIC))["cluster pretrain"]
    # reconstruction 3 (as above) + cross entropy of the gate on l = (0, 1, 1):
    #   −(log 0.5 + log 0.75 + log 0.1) / 3 = (0.6931 + 0.2877 + 2.3026) / 3 = 1.0945
    total, parts = loss_fn(IDX, X, torch.tensor([0, 1, 1]))
    ce = -(math.log(0.5) + math.log(0.75) + math.log(0.1)) / 3
    assert value(parts["reconstruction"]) == pytest.approx(3.0, abs=1e-5)
    assert value(parts["gate_cross_entropy"]) == pytest.approx(ce, abs=1e-5)
    assert value(total) == pytest.approx(3.0 + ce, abs=1e-5)


# -- assignments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("distance", ["squared", "norm"])
def test_assignment_is_the_argmin_of_the_reconstruction_error(distance):
    models = constant_models().train()
    # argmin of SQUARED (or NORM) rows: (1 < 9) -> 0, (16 < 18) -> 1, (1 < 13) -> 1
    labels = assign_to_best_reconstructor(models, X, distance)
    assert labels.tolist() == [0, 1, 1]
    assert models.training  # the assignment puts the module back in the mode it found


def test_damic_labels_are_the_argmax_of_the_gate_not_of_the_errors():
    est = tiny(DAMIC)
    est.autoencoders_ = constant_models()  # its argmin would say (0, 1, 1)
    est.gate_ = FixedGate()  # p = (0.5, 0.5), (0.25, 0.75), (0.9, 0.1)
    # argmax per row: tie -> first index 0, then 1, then 0
    assert est._predict(X).tolist() == [0, 1, 0]


# -- the batched module: model i's weights act on slice i -----------------------------------------
def test_batched_module_applies_model_is_weights_to_slice_i():
    # 3 models 2-2-2, no batch norm, linear output; model i: encoder = I, decoder = s_i I,
    # biases 0 and b_i on the output -> f_i(x) = s_i x + b_i.
    models = BatchedMLPAutoencoder(3, [2, 2], batch_norm=False, output_activation=None)
    scales = [1.0, 2.0, -3.0]
    with torch.no_grad():
        models.encoder[0].weight.copy_(torch.eye(2).expand(3, 2, 2))
        models.encoder[0].bias.zero_()
        models.decoder[0].weight.copy_(torch.stack([s * torch.eye(2) for s in scales]))
        models.decoder[0].bias.copy_(torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]]))
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    out = models(x)
    # f_0(x) = x; f_1(x) = 2x + (1, 0); f_2(x) = −3x + (0, 1)
    expected = torch.tensor(
        [
            [[1.0, 2.0], [-1.0, 0.5]],
            [[3.0, 4.0], [-1.0, 1.0]],
            [[-3.0, -5.0], [3.0, -0.5]],
        ]
    )
    assert torch.allclose(out, expected)
    # decode() of per-model codes: slice i goes through decoder i only.
    # z_0 = (1, 1), z_1 = (1, 1), z_2 = (0, 2): (1, 1), 2(1, 1) + (1, 0), −3(0, 2) + (0, 1)
    z = torch.tensor([[[1.0, 1.0]], [[1.0, 1.0]], [[0.0, 2.0]]])
    assert torch.allclose(
        models.decode(z), torch.tensor([[[1.0, 1.0]], [[3.0, 2.0]], [[0.0, -5.0]]])
    )
    # the per-cluster pretraining's pick, out[l_t, t]: row 0 by model 2, row 1 by model 1
    picked = out[torch.tensor([2, 1]), torch.arange(2)]
    assert torch.allclose(picked, torch.tensor([[-3.0, -5.0], [-1.0, 1.0]]))


def test_batched_batch_norm_uses_model_is_own_running_statistics():
    # 2 models 1-2-1 (one hidden layer of width 2 with batch norm, linear output) in eval mode.
    # Channel j of model i is BN index i * 2 + j. Model 0: running mean 0, var 1 -> identity;
    # model 1: running mean (1, 1), var (4, 4) -> (h − 1) / 2 (BN eps 1e-5 is below the tolerance).
    models = BatchedMLPAutoencoder(
        2, [1, 2, 1], activation="linear", batch_norm=True, output_activation=None
    )
    with torch.no_grad():
        models.encoder[0].weight.copy_(torch.tensor([[[1.0, 2.0]], [[1.0, 2.0]]]))
        models.encoder[0].bias.zero_()
        bn = models.encoder_post[0].norm
        bn.running_mean.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 4.0, 4.0]))
    models.eval()
    # x = 3 and 5: hidden h = (3, 6) and (5, 10). Model 0 keeps them; model 1 gives
    # ((3 − 1) / 2, (6 − 1) / 2) = (1, 2.5) and ((5 − 1) / 2, (10 − 1) / 2) = (2, 4.5)
    h = models.encoder_post[0](models.encoder[0](torch.tensor([[3.0], [5.0]]).expand(2, -1, -1)))
    expected = torch.tensor([[[3.0, 6.0], [5.0, 10.0]], [[1.0, 2.5], [2.0, 4.5]]])
    assert torch.allclose(h, expected, atol=1e-4)


# -- re-seeding (ours, not in the paper) ----------------------------------------------------------
def test_reseeding_two_empty_models_copies_the_largest_and_splits_its_count():
    torch.manual_seed(0)
    models = BatchedMLPAutoencoder(4, [3, 2], batch_norm=False)
    opt = torch.optim.Adam(models.parameters())
    models(torch.rand(5, 3)).sum().backward()
    opt.step()  # non-zero Adam moments everywhere
    before = models(X.new_ones(1, 3)).detach().clone()
    labels = torch.tensor([0] * 4 + [2] * 6)  # counts (4, 0, 6, 0)
    # target 1: source argmax(4, 0, 6, 0) = 2, which gives it half: counts (4, 3, 3, 0);
    # target 3: source argmax(4, 3, 3, 0) = 0 -> model 1 copies model 2, model 3 copies model 0
    assert reseed_empty(models, opt, labels, torch.Generator().manual_seed(0), 0.0) == 2
    after = models(X.new_ones(1, 3)).detach()
    assert torch.allclose(after[1], before[2]) and torch.allclose(after[3], before[0])
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    moments = opt.state[models.encoder[0].weight]["exp_avg"]
    assert float(moments[1].abs().sum()) == 0 == float(moments[3].abs().sum())
    assert float(moments[0].abs().sum()) > 0
