import numpy as np
import pytest
import torch

from aeclust import DEC, IDEC
from aeclust.metrics import cluster_accuracy
from aeclust.primitives import kl_divergence, student_t_assignment, target_distribution


def test_student_t_and_target_distribution_by_hand():
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    q = student_t_assignment(z, mu, alpha=1.0)
    # point 0: kernels 1/(1+0)=1 and 1/(1+1)=0.5 -> [2/3, 1/3]
    assert torch.allclose(q[0], torch.tensor([2 / 3, 1 / 3]))
    # point 1: 1/(1+9)=0.1 and 1/(1+4)=0.2 -> [1/3, 2/3]
    assert torch.allclose(q[1], torch.tensor([1 / 3, 2 / 3]))
    p = target_distribution(q)
    f = q.sum(0)
    w = q**2 / f
    assert torch.allclose(p, w / w.sum(1, keepdim=True))
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-6)
    assert kl_divergence(p, q) > 0


def test_target_is_sharper_than_q():
    q = torch.softmax(torch.randn(100, 5), dim=1)
    p = target_distribution(q)
    assert (p.max(1).values >= q.max(1).values - 1e-6).float().mean() > 0.9


@pytest.mark.parametrize("cls", [DEC, IDEC])
def test_dec_clusters_blobs_and_stops_on_tolerance(cls, blobs):
    x, y = blobs
    model = cls(
        4,
        autoencoder=[32, 4],
        pretrain_epochs=20,
        batch_size=32,
        update_interval=10,
        max_iter=2000,
        tol=0.01,
        random_state=0,
        device="cpu",
    ).fit(x)
    assert cluster_accuracy(y, model.labels_) > 0.95
    # stopped by the tolerance, long before max_iter
    assert model.n_iter_ < 2000
    assert model.target_updates_[-1]["delta_label"] < 0.01
    proba = model.predict_proba(x)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(proba.argmax(1), model.labels_)
    parts = {"kl"} | ({"reconstruction"} if cls is IDEC else set())
    assert parts <= set(model.history_[0])


def test_dec_leaves_the_decoder_untouched_and_idec_trains_it(blobs, tmp_path):
    x, _ = blobs
    kw = dict(
        autoencoder=[16, 4],
        pretrain_epochs=5,
        max_iter=30,
        update_interval=10,
        random_state=0,
        device="cpu",
        pretrain_cache=str(tmp_path),
    )
    dec = DEC(4, **kw).fit(x)
    idec = IDEC(4, **kw).fit(x)
    pre = DEC(4, **kw).pretrain(x)
    last = "decoder_layers.1.weight"
    assert torch.equal(dec.autoencoder_.state_dict()[last], pre.state_dict()[last])
    assert not torch.equal(idec.autoencoder_.state_dict()[last], pre.state_dict()[last])
