"""Every resumable training stage: a fit cut off after a checkpoint and run again inside the same
``aeclust.training.checkpointing`` block ends with the model of an uninterrupted fit."""

from __future__ import annotations

import numpy as np
import pytest

from aeclust.methods import CT, DAMIC, DCN, DEC, DKM, ICAE, IDEC, KDAE, VCC
from aeclust.training import Checkpoint, checkpointing

RUN = dict(batch_size=64, device="cpu", random_state=0)
AE = dict(RUN, autoencoder=[32, 8], pretrain_epochs=2)
PER_CLUSTER = dict(AE, cluster_autoencoder=[16, 4], cluster_pretrain_epochs=2, patience=None)
CASES = [
    (DEC, dict(AE, max_iter=40, update_interval=5, tol=0.0)),
    (IDEC, dict(AE, max_iter=40, update_interval=5, tol=0.0)),
    (DCN, dict(AE, epochs=4)),
    (DKM, dict(AE, n_alpha_steps=2, epochs_per_alpha=2)),
    (CT, dict(AE, epochs=4)),
    (
        VCC,
        dict(
            RUN, hidden_dims=[32], embedding_dim=2, epochs=4, steps_per_epoch=3, keep_snapshots=True
        ),
    ),
    (KDAE, dict(PER_CLUSTER, epochs=4)),
    (DAMIC, dict(PER_CLUSTER, epochs=4)),
    (ICAE, dict(RUN, channels=(4, 8), embedding_dim=8, epochs=4, n_views=1, image_shape=(1, 8, 8))),
]


@pytest.mark.parametrize("cls, params", CASES, ids=[c.__name__ for c, _ in CASES])
def test_a_fit_cut_off_after_a_checkpoint_resumes_to_the_uninterrupted_model(
    cls, params, digits, tmp_path, monkeypatch
):
    x = digits[0][:300]
    reference = cls(n_clusters=5, **params).fit(x)
    original = Checkpoint.save
    saves: list[tuple[str, int]] = []

    def save_then_die(self, trainer, epoch):
        original(self, trainer, epoch)
        saves.append((trainer.desc, epoch))
        if trainer.desc == type(reference).__name__:
            if epoch == 2:  # the clustering stage is cut off after its second epoch
                raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with checkpointing(tmp_path, interval_s=0):
        with pytest.raises(KeyboardInterrupt):
            cls(n_clusters=5, **params).fit(x)
        assert any(p.suffix == ".pt" for p in tmp_path.iterdir())
        monkeypatch.setattr(Checkpoint, "save", original)
        resumed = cls(n_clusters=5, **params).fit(x)
    assert saves[-1][1] == 2
    assert not any(p.suffix == ".pt" for p in tmp_path.iterdir())  # finished: removed
    # every recorded quantity, not only the loss (k-DAE's label changes, VCC's re-inits, ...)
    assert len(resumed.history_) == len(reference.history_)
    for got, want in zip(resumed.history_, reference.history_):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
            else:
                assert got[key] == value, key
    assert np.array_equal(resumed.labels_, reference.labels_)
    if hasattr(reference, "target_updates_"):  # DEC's record of every refresh of P
        assert resumed.target_updates_ == reference.target_updates_
    if hasattr(reference, "embedding_snapshots_"):  # VCC's Fig. 2 snapshots, before and after
        assert np.allclose(resumed.embedding_snapshots_, reference.embedding_snapshots_, atol=1e-5)
        assert len(reference.embedding_snapshots_) == 3
