import itertools

import numpy as np
import pytest

from aeclust import AEKMeans, KMeans
from aeclust.cli import main
from aeclust.selection import best_k, select_k


def test_silhouette_sweep_finds_the_number_of_blobs(blobs):
    x, _ = blobs  # 4 well separated blobs
    rows = select_k(KMeans(n_init=3, random_state=0), x, range(2, 8))
    assert [r["k"] for r in rows] == list(range(2, 8))
    assert best_k(rows) == 4
    inertia = [r["objective"] for r in rows]
    assert all(a >= b for a, b in itertools.pairwise(inertia))  # the elbow curve decreases


def test_sweep_works_for_a_deep_method_in_its_embedding(blobs):
    x, _ = blobs
    est = AEKMeans(autoencoder=[16, 3], pretrain_epochs=5, n_init=2, random_state=0, device="cpu")
    rows = select_k(est, x, [3, 4], space="embedding")
    assert all(np.isfinite(r["silhouette"]) and r["n_nonempty"] == r["k"] for r in rows)
    with pytest.raises(ValueError, match="ks must list"):
        select_k(est, x, [1, 2])
    with pytest.raises(ValueError, match="space must be"):
        select_k(est, x, [2], space="latent")


def test_select_k_command(tmp_path, blobs, capsys):
    x, _ = blobs
    np.save(tmp_path / "x.npy", x)
    rc = main(
        ["select-k", str(tmp_path / "x.npy"), "--method", "kmeans", "--k-min", "2", "--k-max", "6"]
    )
    out = capsys.readouterr().out
    assert rc == 0 and out.strip().splitlines()[-1].endswith(": 4")
    assert (
        main(
            [
                "select-k",
                str(tmp_path / "x.npy"),
                "--method",
                "kmeans",
                "--k-min",
                "5",
                "--k-max",
                "3",
            ]
        )
        == 2
    )
