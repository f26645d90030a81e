"""Fits on a memory-mapped file read batch by batch (aeclust.rows; issue 30, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeclust import CT, DAMIC, DCN, DEC, DKM, KDAE, VCC, AEKMeans
from aeclust.rows import DiskRows, disk_rows_of

NETWORK = dict(autoencoder=[16, 3], pretrain_epochs=3, batch_size=32, device="cpu", random_state=0)
CASES = [
    AEKMeans(n_clusters=4, **NETWORK),
    DEC(n_clusters=4, max_iter=40, update_interval=10, **NETWORK),
    DCN(n_clusters=4, epochs=2, **NETWORK),
    DKM(n_clusters=4, n_alpha_steps=2, epochs_per_alpha=1, **NETWORK),
    CT(n_clusters=4, epochs=2, center_inputs=True, **NETWORK),
    KDAE(
        n_clusters=4,
        pretrain_loss="mse",
        cluster_autoencoder=[8, 2],
        cluster_pretrain_epochs=2,
        epochs=2,
        patience=None,
        **NETWORK,
    ),
]


@pytest.fixture
def on_disk(blobs, tmp_path):
    x = blobs[0] + 5.0  # off the origin, so that centring changes the rows
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float64))  # stored as float64: read back as float32
    return x.astype(np.float32), np.load(path, mmap_mode="r")


@pytest.mark.parametrize("est", CASES, ids=lambda e: type(e).__name__)
def test_a_fit_on_a_memory_map_equals_the_fit_in_memory(est, on_disk, monkeypatch):
    x, mapped = on_disk
    in_memory = est.__class__(**est.get_params()).fit(x)
    # the file is never mapped into memory: every read goes through DiskRows
    reads = []
    original = DiskRows.take
    monkeypatch.setattr(DiskRows, "take", lambda self, i: reads.append(len(i)) or original(self, i))
    from_disk = est.__class__(**est.get_params()).fit(mapped)
    assert reads  # the training batches came from the file
    assert np.array_equal(from_disk.labels_, in_memory.labels_)
    assert from_disk.pretrain_history_ == in_memory.pretrain_history_
    assert getattr(from_disk, "history_", None) == getattr(in_memory, "history_", None)
    assert from_disk.n_features_in_ == x.shape[1]
    assert np.array_equal(from_disk.predict(x), in_memory.predict(x))


def test_disk_rows_read_like_a_tensor(on_disk):
    x, mapped = on_disk
    rows = disk_rows_of(mapped)
    assert rows is not None and rows.shape == x.shape and len(rows) == len(x)
    index = torch.tensor([5, 3, 4, 299, 0, 3])  # unsorted, a run, a repeat
    assert torch.equal(rows[index], torch.from_numpy(x[index.numpy()]))
    assert torch.equal(rows[10:20], torch.from_numpy(x[10:20]))
    shard = rows.block(100, 200).shifted(np.ones(x.shape[1]))
    assert torch.allclose(shard[torch.tensor([0, 99])], torch.from_numpy(x[[100, 199]] - 1.0))
    assert np.allclose(rows.raw_sums()[0], x.sum(axis=0, dtype=np.float64))
    from aeclust.pretrain import data_fingerprint

    assert data_fingerprint(rows) == data_fingerprint(torch.from_numpy(x))  # cache entries shared
    with pytest.raises(IndexError):
        rows[torch.tensor([len(x)])]


def test_a_view_of_a_memory_map_reads_its_own_rows(on_disk):
    _, mapped = on_disk
    for view in (mapped[100:250], mapped[7:], mapped[-3:]):
        rows = disk_rows_of(view)
        assert rows is not None and rows.shape == view.shape
        assert np.array_equal(rows.read(0, len(view)), np.asarray(view, dtype=np.float32))
    assert disk_rows_of(mapped[::2]) is None  # not C-contiguous: read into memory
    assert disk_rows_of(mapped[:, :3]) is None


def test_a_memory_map_with_nan_is_refused_before_any_work(tmp_path):
    x = np.ones((20, 3))
    x[7, 1] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(ValueError, match="NaN or infinity"):
        DEC(n_clusters=2, **NETWORK).fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))


def test_a_method_that_cannot_stream_reads_the_map_into_memory(on_disk, caplog):
    _, mapped = on_disk
    with caplog.at_level("WARNING"):
        VCC(4, hidden_dims=[8], embedding_dim=2, epochs=1, steps_per_epoch=2).fit(mapped)
    assert "reads the memory-mapped X into memory" in caplog.text


# DEC and DAMIC also stream predict_proba (Q; the gate's p(c | x))
DAMIC_CASE = DAMIC(**{k: v for k, v in CASES[5].get_params().items() if k != "loss"})


@pytest.mark.parametrize(
    "est", [CASES[1], CASES[4], CASES[5], DAMIC_CASE], ids=lambda e: type(e).__name__
)
def test_predict_and_transform_read_a_memory_map_chunk_by_chunk(
    est, on_disk, monkeypatch, tmp_path
):
    import aeclust.methods.base as base

    x, mapped = on_disk
    model = est.__class__(**est.get_params()).fit(x)
    monkeypatch.setattr(base, "CHUNK_ROWS", 64)  # several chunks of the 300 rows, the last short
    reads = []
    original = DiskRows.read
    monkeypatch.setattr(
        DiskRows, "read", lambda self, a, b: reads.append(b - a) or original(self, a, b)
    )
    assert np.array_equal(model.predict(mapped), model.predict(x))
    assert reads == [64, 64, 64, 64, 44]  # the file, never read whole
    np.testing.assert_allclose(model.transform(mapped), model.transform(x), rtol=1e-5, atol=1e-6)
    if isinstance(model, (DEC, DAMIC)):
        np.testing.assert_allclose(model.predict_proba(mapped), model.predict_proba(x), atol=1e-6)
    np.save(tmp_path / "narrow.npy", x[:, :2])
    with pytest.raises(ValueError, match=r"X has 2 features, but \w+ is expecting"):
        model.predict(np.load(tmp_path / "narrow.npy", mmap_mode="r"))


def test_predict_refuses_a_memory_map_with_nan_naming_the_rows(on_disk, tmp_path):
    x, _ = on_disk
    model = DEC(n_clusters=4, max_iter=10, **NETWORK).fit(x)
    bad = x.copy()
    bad[130, 0] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(np.load(tmp_path / "bad.npy", mmap_mode="r"))


def test_whole_data_passes_return_freed_memory_between_batches(on_disk, monkeypatch):
    # A pass over a file returns the freed heap after every batch, one in memory every
    # TRIM_EVERY batches (the 1,000,000-row embedding held 8 GB without it; note 32).
    import aeclust.training as training

    x, mapped = on_disk
    calls = []
    monkeypatch.setattr(training, "release_freed_memory", lambda: calls.append(1))
    identity = torch.nn.Identity()
    training.batched_apply(identity, torch.from_numpy(x), batch_size=10)  # 30 batches in memory
    assert len(calls) == 30 // training.TRIM_EVERY
    calls.clear()
    training.batched_apply(identity, disk_rows_of(mapped), batch_size=10)  # 30 from the file
    assert len(calls) == 30
