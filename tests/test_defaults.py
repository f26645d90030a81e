"""A method's defaults are its validated full-protocol cell (issue 27): one source, not two.

`aeclust cluster --dataset NAME --method M` must run what the benchmark's full protocol runs, so
each method's constructor defaults must equal the parameters that protocol resolves for a
reference column. Columns whose paper changes a setting per data set (DEC's and IDEC's USPS
update interval, CT's alpha per data set, ICAE's COIL-20 network) are the protocol's to set and
are listed in docs/METHODS.md; they are not compared here.
"""

from __future__ import annotations

import pytest

from aeclust.bench.protocol import load_protocol
from aeclust.datasets import get_dataset_info
from aeclust.methods import METHODS
from aeclust.pretrain import auto_pretrain_epochs

# (row, protocol, column): the cell whose settings the method's defaults are
CELLS = [
    ("ae-kmeans", "baselines", "mnist"),
    ("dec", "baselines", "mnist"),
    ("idec", "baselines", "mnist"),
    ("dcn", "baselines", "mnist"),
    ("dkm", "ct-tables2-3", "usps"),
    ("ct-fcm", "ct-tables2-3", "usps"),
    ("kdae", "kdae-table2", "usps"),
    ("damic", "kdae-table2", "usps"),
    ("kdae", "kdae-table2", "mnist"),
    ("vcc", "vcc-table2", "usps"),
    ("icae", "icae-table7", "mnist"),
    ("n2d", "n2d", "usps"),
    ("n2d", "n2d", "mnist"),
]


def _resolved_default(name: str, value, defaults: dict, cls=None, n_samples=None):
    """What a default means, where a protocol spells the same setting another way."""
    if name == "pretrain_epochs" and value == "auto":
        # the epochs "auto" trains on this column's data (counted in steps on small data only)
        if not cls.pretrain_counts_steps:
            return cls.pretrain_epochs_base
        return auto_pretrain_epochs(cls.pretrain_epochs_base, n_samples, defaults["batch_size"])
    if isinstance(value, tuple):
        value = list(value)
    if name == "autoencoder" and value == "mlp":
        return [500, 500, 2000, defaults.get("embedding_dim", 10)]
    if name == "n_alpha_steps" and value is None and defaults.get("pretrained", True):
        return 20  # DKM: None means 20 alpha steps for the pretrained variant
    return value


@pytest.mark.parametrize(("row", "protocol", "column"), CELLS)
def test_defaults_are_the_full_protocol_cell(row, protocol, column):
    proto = load_protocol(protocol)
    shared, own = proto.cell_params(row, column, quick=False)
    cls = METHODS[proto.methods[row].estimator]
    defaults = cls().get_params()
    n_samples = get_dataset_info(proto.data_name(column, False)).n_samples
    differ = {}
    for name, value in {**shared, **own}.items():
        if name not in defaults:
            continue  # a shared pretraining key this estimator does not take
        if isinstance(value, tuple):
            value = list(value)
        if name == "autoencoder" and value == "mlp":
            value = [500, 500, 2000, defaults.get("embedding_dim", 10)]
        default = _resolved_default(name, defaults[name], defaults, cls, n_samples)
        if default != value:
            differ[name] = (default, value)
    assert not differ, f"{cls.__name__} defaults differ from {protocol}/{column}: {differ}"


@pytest.mark.parametrize(
    ("base", "n_samples", "batch_size", "epochs"),
    [
        (100, 9298, 256, 100),  # USPS: 37 batches, the count stands
        (50, 70000, 256, 50),  # MNIST-70k
        (100, 8192, 256, 100),  # exactly 32 batches
        (100, 8193, 256, 100),  # a trailing batch of one row joins the last: 32 batches
        (100, 8000, 256, 100),  # 32 batches, the last one short
        (100, 7900, 256, 104),  # 31 batches: ceil(3,200 / 31)
        (100, 400, 256, 1600),  # ORL: 2 batches, 3,200 steps
        (50, 165, 256, 1600),  # Yale: 1 batch, 50 x 32 steps
        (100, 1440, 256, 534),  # COIL-20: 6 batches, ceil(3,200 / 6)
        (100, 400, 32, 247),  # ORL at batch 32: 13 batches, ceil(3,200 / 13)
    ],
)
def test_auto_pretrain_epochs_count_steps_below_32_batches(base, n_samples, batch_size, epochs):
    assert auto_pretrain_epochs(base, n_samples, batch_size) == epochs


def test_pretrain_epochs_auto_steps_and_an_integer_reach_the_fit():
    import numpy as np

    from aeclust import CT, AEKMeans

    x = np.random.default_rng(0).random((300, 12), dtype=np.float32)
    net = {"n_clusters": 3, "autoencoder": (8, 3), "random_state": 0, "device": "cpu"}
    # 300 rows at batch 256: 2 batches an epoch. "steps" makes 100 epochs 3,200 steps; CT's
    # "auto" counts its 50 in steps (1,600); AE+KM's "auto" keeps the 100 epochs.
    assert len(AEKMeans(**net, pretrain_epochs="steps").fit(x).pretrain_history_) == 1600
    assert len(CT(**net, epochs=0).fit(x).pretrain_history_) == 800
    assert len(AEKMeans(**net).fit(x).pretrain_history_) == 100
    assert len(AEKMeans(**net, pretrain_epochs=7).fit(x).pretrain_history_) == 7
