import numpy as np
import pytest
import torch
from torch.nn import functional as F

from aeclust.methods.kdae import DAMIC, KDAE, assign_to_best_reconstructor, reseed_empty
from aeclust.metrics import cluster_accuracy
from aeclust.nn import BatchedMLPAutoencoder


def test_batched_autoencoders_equal_k_separate_networks():
    torch.manual_seed(0)
    models = BatchedMLPAutoencoder(3, [6, 5, 2], activation="elu", batch_norm=False)
    x = torch.randn(7, 6)
    out = models(x)
    for i in range(3):
        h = x
        for layer_i, layer in enumerate(models.encoder):
            h = h @ layer.weight[i] + layer.bias[i]
            if layer_i < len(models.encoder) - 1:
                h = F.elu(h)
        for layer_i, layer in enumerate(models.decoder):
            h = h @ layer.weight[i] + layer.bias[i]
            if layer_i < len(models.decoder) - 1:
                h = F.elu(h)
        assert torch.allclose(out[i], torch.sigmoid(h), atol=1e-6)


def test_batch_norm_statistics_are_per_model():
    models = BatchedMLPAutoencoder(2, [4, 3, 2], batch_norm=True)
    models.train()
    with torch.no_grad():
        models.encoder[0].weight[1] *= 100.0  # model 1's hidden units have a far larger scale
    with torch.no_grad():
        h = models.encoder_post[0](models.encoder[0](torch.randn(64, 4).expand(2, -1, -1)))
    # after per-model normalisation (and ELU) both models' activations have similar spread
    assert 0.3 < float(h[0].std() / h[1].std()) < 3.0


def test_copy_model_reseeds_one_slice_only():
    models = BatchedMLPAutoencoder(3, [5, 4, 2], batch_norm=True)
    before = {k: v.clone() for k, v in models.state_dict().items()}
    models.copy_model(source=0, target=2, noise=0.0)
    x = torch.rand(9, 5)
    models.eval()
    out = models(x)
    assert torch.allclose(out[2], out[0])
    after = models.state_dict()
    for key, value in after.items():
        if value.ndim and value.shape[0] == 3:  # stacked weights: model 1 untouched
            assert torch.equal(value[1], before[key][1])


def test_a_noisy_copy_of_a_one_unit_layer_stays_finite():
    """A 1-unit layer's bias is one number per model, whose std is undefined (NaN): the noisy
    copy used it as the noise scale and re-seeded a k-DAE with embedding size 1 into NaN."""
    torch.manual_seed(0)
    models = BatchedMLPAutoencoder(3, [5, 4, 1], batch_norm=True)
    models.copy_model(source=0, target=2, noise=0.01)
    assert all(torch.isfinite(p).all() for p in models.parameters())
    bias = models.encoder[-1].bias  # (3, 1, 1): one value per model
    assert 0 < (bias[2] - bias[0]).abs().item() <= 0.1 * bias[0].abs().item()


def test_kdae_clusters_blobs_and_errors_pick_the_label(blobs):
    x, y = blobs
    x = (x - x.min()) / (x.max() - x.min())
    model = KDAE(
        4,
        autoencoder=[32, 4],
        cluster_autoencoder=[16, 2],
        pretrain_epochs=30,
        cluster_pretrain_epochs=10,
        epochs=20,
        batch_size=32,
        n_init=5,
        random_state=0,
        device="cpu",
    ).fit(x)
    assert cluster_accuracy(y, model.labels_) > 0.95
    errors = model.reconstruction_errors(x)
    assert errors.shape == (300, 4)
    assert np.array_equal(errors.argmin(1), model.labels_)
    assert model.reconstructions(x[:5]).shape == (4, 5, 8)
    assert model.history_[-1]["loss"] <= model.history_[0]["loss"]


def test_history_records_cluster_sizes_and_label_changes(blobs):
    x, _ = blobs
    x = (x - x.min()) / (x.max() - x.min())
    kw = dict(autoencoder=[16, 4], cluster_autoencoder=[8, 2], n_init=2, device="cpu")
    kw.update(epochs=3, patience=None, random_state=0)
    # well trained on separated blobs (no autoencoder loses its points) and barely trained
    model, short = (
        KDAE(4, pretrain_epochs=p, cluster_pretrain_epochs=c, batch_size=b, **kw).fit(x)
        for p, c, b in [(30, 10, 32), (3, 2, 128)]
    )
    assert len(model.history_) == 3
    assert model.n_reseeded_ == 0
    # the sizes count each point's winner at its step; trained, that is the final assignment
    assert model.history_[-1]["cluster_sizes"] == np.bincount(model.labels_, minlength=4).tolist()
    assert model.history_[-1]["label_changes"] < 0.05
    # sizes are recorded before re-seeding, so a re-seeded epoch shows its empty cluster
    for record in model.history_ + short.history_:
        assert len(record["cluster_sizes"]) == 4
        assert sum(record["cluster_sizes"]) == len(x)
        assert 0.0 <= record["label_changes"] <= 1.0
        assert (min(record["cluster_sizes"]) == 0) == (record["reseeded"] > 0)
    assert short.n_reseeded_ >= 1  # this short run re-seeds (seed 0), so the check above bites
    assert short.n_reseeded_ == sum(r["reseeded"] for r in short.history_)


def test_soft_loss_and_norm_distance_run(blobs):
    x, _ = blobs
    x = (x - x.min()) / (x.max() - x.min())
    kw = dict(
        autoencoder=[16, 4],
        cluster_autoencoder=[8, 2],
        pretrain_epochs=3,
        cluster_pretrain_epochs=2,
        epochs=3,
        n_init=2,
        random_state=0,
        device="cpu",
    )
    model = KDAE(4, loss="soft", distance="norm", **kw).fit(x)
    assert np.isfinite(model.history_[-1]["loss"])
    with pytest.raises(ValueError, match="'loss' parameter of KDAE must be a str among"):
        KDAE(4, loss="fuzzy", **kw).fit(x)


def test_an_autoencoder_that_loses_its_points_is_reseeded(blobs):
    x, _ = blobs
    x = (x - x.min()) / (x.max() - x.min())
    model = KDAE(
        4,
        autoencoder=[16, 4],
        cluster_autoencoder=[8, 2],
        pretrain_epochs=2,
        cluster_pretrain_epochs=1,
        epochs=1,
        n_init=2,
        random_state=0,
        device="cpu",
    )
    model.fit(x)
    models = model.autoencoders_
    xt = torch.from_numpy(x)
    opt = torch.optim.Adam(models.parameters())
    models.train()
    models(xt).square().mean().backward()  # one step, so that every model has Adam moments
    opt.step()
    with torch.no_grad():  # make autoencoder 3 useless: it wins no point
        models.decoder[-1].bias[3].fill_(1e3)
    assert 3 not in assign_to_best_reconstructor(models, xt, model.distance).tolist()
    source = int(
        torch.bincount(
            assign_to_best_reconstructor(models, xt, model.distance), minlength=4
        ).argmax()
    )
    labels = assign_to_best_reconstructor(models, xt, model.distance)
    assert reseed_empty(models, opt, labels, torch.Generator().manual_seed(0), 0.0) == 1
    models.eval()
    out = models(xt[:10])
    assert torch.allclose(out[3], out[source])  # a copy of the largest cluster's autoencoder
    # the copy starts with fresh Adam moments, in the linear layers and the batch norms alike
    kinds = set()
    for param, per_model in models.per_model_parameters():
        kinds.add(param.ndim)
        for name in ("exp_avg", "exp_avg_sq"):
            moments = per_model(opt.state[param][name])
            assert torch.all(moments[3] == 0) and torch.any(moments[source] != 0)
    assert kinds == {1, 3}  # batch-norm vectors (k * width,), linear weights and biases (k, ., .)


def test_damic_uses_the_gate(blobs):
    x, y = blobs
    x = (x - x.min()) / (x.max() - x.min())
    model = DAMIC(
        4,
        autoencoder=[32, 4],
        cluster_autoencoder=[16, 2],
        gate_hidden=[16],
        pretrain_epochs=30,
        cluster_pretrain_epochs=10,
        epochs=10,
        batch_size=32,
        n_init=5,
        random_state=0,
        device="cpu",
    ).fit(x)
    proba = model.predict_proba(x)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(proba.argmax(1), model.labels_)
    assert cluster_accuracy(y, model.labels_) > 0.9
    assert "loss" not in model.get_params()
