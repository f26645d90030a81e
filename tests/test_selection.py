import itertools

import numpy as np
import pytest

from aeclust import AEKMeans, KMeans
from aeclust.cli import main
from aeclust.selection import best_k, select_k, select_method


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


class _OneCluster(KMeans):
    """A degenerate candidate: every point in cluster 0 (for the ranking rule)."""

    def _fit(self, x, seed):
        super()._fit(x, seed)
        self.labels_ = np.zeros(len(x), dtype=np.int64)


class _Noise(KMeans):
    """A candidate that ignores the data: uniform random labels, different for every seed."""

    def _fit(self, x, seed):
        super()._fit(x, seed)
        self.labels_ = np.random.default_rng(seed).integers(0, self.n_clusters, len(x))


def test_select_method_ranks_structure_above_noise_without_labels(blobs):
    x, _ = blobs
    candidates = {
        "kmeans": KMeans(n_clusters=4, n_init=3),
        "noise": _Noise(n_clusters=4, n_init=1),
        "one": _OneCluster(n_clusters=4, n_init=1),
    }
    rows = select_method(candidates, x, seeds=(0, 1, 2))
    assert [r["name"] for r in rows] == ["kmeans", "noise", "one"]
    best = rows[0]
    assert best["stability"] > 0.95 and best["n_nonempty"] == 4
    assert (
        rows[1]["stability"] < 0.1 and rows[1]["consensus"] < 0.1
    )  # random labels agree with nothing
    assert rows[2]["n_nonempty"] == 1  # the degenerate one ranks last whatever its scores
    assert "acc" not in best


def test_select_method_reports_acc_only_when_given_labels(blobs):
    x, y = blobs
    candidates = {"a": KMeans(n_clusters=4, n_init=2), "b": KMeans(n_clusters=4, n_init=1)}
    rows = select_method(candidates, x, seeds=(0, 1), y=y)
    assert all(r["acc"] > 0.9 for r in rows)
    with pytest.raises(ValueError, match="two different seeds"):
        select_method(candidates, x, seeds=(0,))
    with pytest.raises(ValueError, match="two candidates"):
        select_method({"a": candidates["a"]}, x)
    with pytest.raises(ValueError, match="criteria must name one or more of"):
        select_method(candidates, x, criteria=("silhouette", "bic"))


def test_select_method_ranks_by_the_criteria_it_is_given(blobs):
    x, _ = blobs
    candidates = {"kmeans": KMeans(n_clusters=4, n_init=3), "noise": _Noise(n_clusters=4)}
    rows = select_method(candidates, x, seeds=(0, 1), criteria=("modularity",))
    assert [r["name"] for r in rows] == ["kmeans", "noise"]
    assert rows[0]["modularity"] > 0.5 > 0.05 > abs(rows[1]["modularity"])
    assert all(r["rank"] == r["rank_modularity"] for r in rows)
    # every criterion is measured and ranked whatever orders the candidates
    assert all(f"rank_{c}" in rows[0] for c in ("stability", "consensus", "silhouette"))


def test_select_command(tmp_path, blobs, capsys):
    x, y = blobs
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    args = ["select", str(path), "--methods", "kmeans,ae-kmeans", "--device", "cpu"]
    args += ["--param", "pretrain_epochs=3", "--param", "autoencoder=[16,4]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stability" in out and "first choice" in out and "ACC (labels: not used)" in out
    assert "modularity" in out and "mean rank of stability, consensus, silhouette" in out
    assert main(["select", str(path), "--methods", "kmeans"]) == 2
    assert main(["select", str(path), "--methods", "kmeans,dec", "--criteria", "bic"]) == 2
    assert "--criteria takes one or more of" in capsys.readouterr().err
    assert main(["select", str(path), "--methods", "kmeans,dec", "--param", "bogus=1"]) == 2


def test_select_stores_its_ranking_and_keeps_the_shared_pretraining(tmp_path, blobs, capsys):
    from aeclust.bench.report import write_benchmarks_md
    from aeclust.bench.store import ResultStore

    x, y = blobs
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    db, cache = tmp_path / "r.db", tmp_path / "cache"
    args = ["select", str(path), "--methods", "kmeans,ae-kmeans", "--device", "cpu"]
    args += ["--param", "pretrain_epochs=3", "--param", "autoencoder=[16,4]"]
    assert main([*args, "--db", str(db), "--cache-dir", str(cache)]) == 0
    assert "ranking stored in" in capsys.readouterr().out
    assert len(list(cache.glob("*.pt"))) == 2  # one network per seed, kept for a later run
    with ResultStore(db) as store:
        rows = store.selection_rows()
        store.export_jsonl(tmp_path / "runs.jsonl")
    assert [r["position"] for r in rows] == [1, 2]
    assert {r["candidate"] for r in rows} == {"kmeans", "ae-kmeans"}
    assert all(r["acc"] is not None and r["seeds"] == "[0, 1]" for r in rows)
    assert "--param pretrain_epochs=3" in rows[0]["command"]

    with ResultStore(tmp_path / "copy.db") as copy:  # the committed export carries rankings
        copy.import_jsonl(tmp_path / "runs.jsonl")
        copy.import_jsonl(tmp_path / "runs.jsonl")  # merging twice adds nothing
        assert len(copy.selection_rows()) == 2
        page = write_benchmarks_md(copy, tmp_path / "B.md", notes=[]).read_text()
    first, best = rows[0], max(rows, key=lambda r: r["acc"])
    agrees = first["acc"] >= best["acc"] - 0.02
    assert "## Label-free selection" in page and "### Ranking on `blobs`" in page
    assert f"the best: **{int(agrees)} of 1** data sets" in page
    assert f"| `blobs` | ae-kmeans, kmeans | 2 | {first['candidate']} |" in page
    # the stored criteria ranked again: modularity alone picks the candidate of higher modularity
    by_modularity = max(rows, key=lambda r: r["modularity"])["candidate"]
    assert f"| modularity | `blobs`: {by_modularity}" in page
    assert "| stability, consensus, silhouette | `blobs`: " + first["candidate"] in page


def test_a_database_from_before_the_modularity_column_gets_it_when_opened(tmp_path):
    import sqlite3

    from aeclust.bench.store import ResultStore

    db = tmp_path / "old.db"
    with ResultStore(db) as store:
        pass
    with sqlite3.connect(db) as conn:  # the selections table as it was released first
        conn.execute("DROP TABLE selections")
        conn.execute(
            "CREATE TABLE selections (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL,"
            " dataset TEXT NOT NULL, candidate TEXT NOT NULL, position INTEGER NOT NULL, seeds"
            " TEXT NOT NULL, n_samples INTEGER, n_clusters INTEGER, stability REAL, consensus"
            " REAL, silhouette REAL, rank REAL NOT NULL, n_nonempty INTEGER, seconds REAL, acc"
            " REAL, params_json TEXT, device TEXT, git_commit TEXT, machine_json TEXT, command"
            " TEXT, measured_at TEXT NOT NULL, UNIQUE (session, dataset, candidate))"
        )
        conn.execute(
            "INSERT INTO selections (session, dataset, candidate, position, seeds, rank,"
            " measured_at) VALUES ('s', 'd', 'old', 1, '[0, 1]', 1.0, 't')"
        )
    record = {"session": "s2", "dataset": "d", "candidate": "new", "position": 1}
    record |= {"seeds": [0, 1], "rank": 1.0, "modularity": 0.4, "measured_at": "t"}
    with ResultStore(db) as store:
        store.insert_selection([record])
        rows = {r["candidate"]: r for r in store.selection_rows()}
    assert rows["old"]["modularity"] is None and rows["new"]["modularity"] == 0.4


def test_rank_agreement_is_spearmans_rho_between_the_ranking_and_acc():
    from aeclust.bench.report import _rank_agreement

    def ranking(*accs):
        return [{"acc": a} for a in accs]  # best first

    assert _rank_agreement(ranking(0.9, 0.7, 0.5)) == pytest.approx(1.0)
    assert _rank_agreement(ranking(0.5, 0.7, 0.9)) == pytest.approx(-1.0)
    assert _rank_agreement(ranking(0.7, 0.9, 0.5)) == pytest.approx(0.5)
    assert np.isnan(_rank_agreement(ranking(0.9, 0.5)))  # two candidates: not a ranking
    assert np.isnan(_rank_agreement(ranking(0.9, None, 0.5)))
