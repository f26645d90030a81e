"""The benchmark: protocol files, runner (resume, atomic rows), results store, report, CLI."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import tomllib
from pathlib import Path

import numpy as np
import pytest

from aeclust.bench import (
    ProtocolError,
    ResultStore,
    UnsupportedProtocolError,
    list_protocols,
    load_protocol,
    render_report,
    run_protocol,
    write_benchmarks_md,
)
from aeclust.bench.protocol import PRETRAIN_KEYS, Protocol, protocol_dirs, validate
from aeclust.cli import main
from aeclust.methods import METHODS

PROTOCOLS = Path(__file__).resolve().parents[1] / "benchmarks" / "protocols"

TINY = """
name = "tiny"
title = "Tiny protocol on digits"
citation = "aeclust tests"
table = "Table 0"
kind = "clustering"
metrics = ["acc", "nmi"]
nmi_average = "arithmetic"
seeds = 2
notes = ["made up paper numbers"]

[pretrain]
autoencoder = [32, 10]
pretrain_epochs = 2
batch_size = 128
pretrain_optimizer = "adam"

[methods.kmeans]
label = "KM"
n_init = 2

[methods.ae-kmeans]
label = "AE+KM"
n_init = 2

[datasets.digits]
label = "Digits"

[paper.kmeans.digits]
acc = 0.75
acc_std = 0.02
nmi = 0.70

[paper.ae-kmeans.digits]
acc = 0.80

[paper.dec.digits]
acc = 0.85
nmi = 0.80

[row_labels]
dec = "DEC (paper only)"

[quick]
seeds = 1

[quick.datasets]
digits = "digits"

[quick.pretrain]
pretrain_epochs = 1
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _rows(db: Path) -> list[dict]:
    with ResultStore(db) as store:
        return store.runs()


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


def test_run_end_to_end_rows_and_report(tiny: Path, tmp_path: Path) -> None:
    db = tmp_path / "res" / "bench.db"
    summary = run_protocol(tiny, quick=True, seeds=2, device="cpu", db=db)
    assert len(summary.completed) == 4 and not summary.failures
    rows = _rows(db)
    assert {(r["method"], r["seed"]) for r in rows} == {
        (m, s) for m in ("kmeans", "ae-kmeans") for s in (0, 1)
    }
    for r in rows:
        assert 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["nmi"] <= 1.0
        assert r["variant"] == "quick" and r["data_name"] == "digits"
        assert r["device"] == "cpu" and r["memory_kind"] == "cpu_max_rss"
        assert "aeclust bench tiny " in r["command"] and "--quick" in r["command"]
        assert set(json.loads(r["versions_json"])) >= {"python", "torch", "numpy", "sklearn"}
        config = json.loads(r["config_json"])
        assert (
            config["params"]["n_clusters"] == 10 and config["params"]["random_state"] == r["seed"]
        )
        assert r["git_commit"]
    ae = [r for r in rows if r["method"] == "ae-kmeans"]
    assert all(r["n_pretrain_history"] == 1 for r in ae)  # quick: 1 pretraining epoch
    assert all(r["pretrain_seconds"] is not None for r in ae)
    assert all(r["pretrain_cached"] == 0 for r in ae)  # each seed's first pretraining trains
    # a shared [pretrain] key an estimator does not take is recorded, not silently dropped
    assert all(
        json.loads(r["config_json"])["ignored_shared_params"] == ["pretrain_optimizer"] for r in ae
    )
    km = [r for r in rows if r["method"] == "kmeans"]
    assert all(r["pretrain_seconds"] is None for r in km)
    assert all(r["pretrain_cached"] is None for r in km)
    # plots: embedding, curves (ae-kmeans has a pretraining history) and confusion matrix
    plots = tmp_path / "res" / "plots" / "tiny" / "digits"
    assert (plots / "ae-kmeans-seed0-quick-embedding.png").is_file()
    assert (plots / "ae-kmeans-seed0-quick-curves.png").is_file()
    assert (plots / "kmeans-seed1-quick-confusion.png").is_file()
    assert not (tmp_path / "res" / "checkpoints").exists()  # no stage saved: nothing left

    md = render_report(db, fmt="md")
    assert "## tiny (quick)" in md and "Δ ACC" in md and "ACC paper" in md
    km_line = next(line for line in md.splitlines() if line.startswith("| KM |"))
    cells = [c.strip() for c in km_line.strip("|").split("|")]
    assert cells[1] == "2 (0,1)"
    assert cells[3] == "0.75 ± 0.02"  # the paper's number beside ours
    ours = float(cells[2].split()[0])
    assert cells[4] == f"{ours - 0.75:+.3f}"  # difference ours − paper
    dec_line = next(line for line in md.splitlines() if "DEC (paper only)" in line)
    assert "—" in dec_line and "0.85" in dec_line  # a paper row without a run
    assert "aeclust bench" in md


def test_a_diagnostic_row_without_runs_or_paper_numbers_is_left_out(tmp_path: Path) -> None:
    """Rows of our own (no paper number anywhere) appear where they ran, not as empty lines."""
    proto = tmp_path / "diag.toml"
    proto.write_text(
        TINY.replace(
            "[datasets.digits]",
            '[methods.km-extra]\nestimator = "kmeans"\nlabel = "KM, extra diagnostic"\n'
            "n_init = 1\n\n[datasets.digits]",
        )
    )
    db = tmp_path / "diag.db"
    run_protocol(proto, quick=True, seeds=1, methods=["kmeans"], device="cpu", db=db, plots=False)
    md = render_report(db, fmt="md")
    assert "| KM |" in md and "KM, extra diagnostic" not in md
    assert "| AE+KM | 0 |" in md  # not run, but the paper reports it: kept as a to-do
    run_protocol(proto, quick=True, seeds=1, methods=["km-extra"], device="cpu", db=db, plots=False)
    assert "| KM, extra diagnostic | 1 (0) |" in render_report(db, fmt="md")


def test_a_symmetric_value_range_column_feeds_2x_minus_1_and_is_its_own_configuration(
    tiny: Path, tmp_path: Path
) -> None:
    """value_range = "symmetric" maps the loader's [0, 1] to [-1, 1] (DKM's code reads USPS so);
    the stored configuration says so, and a "unit" column's configuration is unchanged."""
    sym = tmp_path / "sym.toml"
    sym.write_text(
        TINY.replace('label = "Digits"', 'label = "Digits"\nvalue_range = "symmetric"', 1)
    )
    db_unit, db_sym = tmp_path / "unit.db", tmp_path / "sym.db"
    for proto, db in ((tiny, db_unit), (sym, db_sym)):
        summary = run_protocol(
            proto, quick=True, seeds=1, device="cpu", db=db, methods=["kmeans"], plots=False
        )
        assert not summary.failures
    (unit,), (symmetric,) = _rows(db_unit), _rows(db_sym)
    assert "value_range" not in json.loads(unit["config_json"])["dataset"]
    assert json.loads(symmetric["config_json"])["dataset"]["value_range"] == "symmetric"
    assert unit["config_hash"] != symmetric["config_hash"]
    # k-means is affine-equivariant: the same partition on 2x - 1 as on x
    assert symmetric["acc"] == pytest.approx(unit["acc"], abs=0.02)

    from aeclust.bench.runner import _load

    for spec_path, low in ((tiny, 0.0), (sym, -1.0)):
        data = _load(load_protocol(spec_path), "digits", True, None, False)
        assert data.x.min() == pytest.approx(low) and data.x.max() == pytest.approx(1.0)


def test_first_seed_runs_later_seeds_alone(tiny: Path, tmp_path: Path) -> None:
    """--first-seed 1 --seeds 1 stores seed 1 only, as seed 1 of a 0..1 run does."""
    db = tmp_path / "one.db"
    summary = run_protocol(
        tiny,
        quick=True,
        seeds=1,
        first_seed=1,
        methods=["kmeans"],
        device="cpu",
        db=db,
        plots=False,
    )
    assert summary.seeds == [1]
    rows = _rows(db)
    assert [(r["method"], r["seed"]) for r in rows] == [("kmeans", 1)]
    assert "--first-seed 1" in rows[0]["command"]
    both = tmp_path / "both.db"
    run_protocol(tiny, quick=True, seeds=2, methods=["kmeans"], device="cpu", db=both, plots=False)
    twin = next(r for r in _rows(both) if r["seed"] == 1)
    assert (twin["acc"], twin["nmi"]) == (rows[0]["acc"], rows[0]["nmi"])
    with pytest.raises(ValueError, match="first_seed"):
        run_protocol(tiny, quick=True, first_seed=-1, device="cpu", db=db)
    from aeclust.cli import main

    assert main(["bench", str(tiny), "--first-seed", "-1", "--db", str(db)]) == 2


def test_report_csv(tiny: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run_protocol(tiny, quick=True, methods=["kmeans"], device="cpu", db=db, plots=False)
    text = render_report(db, fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"kmeans", "ae-kmeans", "dec"}
    km = by_method["kmeans"]
    assert km["n_seeds"] == "1" and km["seeds"] == "0" and km["comparable"] == "1"
    assert float(km["paper_acc"]) == 0.75
    assert float(km["diff_acc"]) == pytest.approx(float(km["acc_mean"]) - 0.75)
    assert by_method["dec"]["n_seeds"] == "0" and by_method["dec"]["acc_mean"] == ""


def test_bf16_runs_are_stored_beside_the_fp32_ones(tiny: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    kw = {"quick": True, "methods": ["ae-kmeans"], "device": "cpu", "db": db, "plots": False}
    run_protocol(tiny, precision="fp32", **kw)
    summary = run_protocol(tiny, precision="bf16", **kw)
    assert summary.completed and not summary.already_done  # not mistaken for the fp32 cell
    rows = {(r["protocol"], r["precision"]) for r in _rows(db)}
    assert rows == {("tiny", "fp32"), ("tiny+bf16", "bf16")}
    assert "aeclust bench tiny --quick" in summary.command and "+bf16" not in summary.command
    text = render_report(db, fmt="md")
    assert "## tiny+bf16 (quick)" in text and "[bf16]" in text
    with pytest.raises(ValueError, match="precision must be one of"):
        run_protocol(tiny, precision="fp16", **kw)
    with ResultStore(db) as store:
        assert set(store.protocols()) == {"tiny", "tiny+bf16"}


def test_benchmarks_md_is_written_atomically_with_machine_header(tiny: Path, tmp_path: Path):
    db = tmp_path / "r.db"
    run_protocol(tiny, quick=True, methods=["kmeans"], device="cpu", db=db, plots=False)
    out = write_benchmarks_md(db, tmp_path / "BENCHMARKS.md")
    text = out.read_text()
    assert text.startswith("# aeclust benchmarks")
    assert "## Machines" in text and "torch threads" in text and "CPU " in text
    assert "aeclust bench tiny" in text and "## tiny (quick)" in text
    assert not list(tmp_path.glob(".BENCHMARKS.md.*"))  # no temporary file left


def test_substitute_dataset_is_marked_and_not_differenced(tmp_path: Path) -> None:
    text = TINY.replace('digits = "digits"', 'digits = "usps"')
    proto = validate(tomllib.loads(text), source="t")
    assert proto.is_substitute("digits", quick=True)
    assert not proto.is_substitute("digits", quick=False)
    # the report marks a substitute without running it: fake one stored run
    db = tmp_path / "s.db"
    with ResultStore(db) as store:
        store.save_protocol(proto.name, proto.fingerprint, "t", proto.to_json())
        store.insert_run(_fake_record(proto.name, "kmeans", "digits", 0, data_name="usps"))
    md = render_report(db, fmt="md", variant="quick")
    assert "quick: usps stands in for digits" in md
    km_line = next(line for line in md.splitlines() if line.startswith("| KM |"))
    assert "n/c" in km_line


def _summary_store(db: Path) -> None:
    """Two protocols: ``tiny`` (KM and AE+KM's own, with a USPS column and an MNIST column whose
    quick variant runs on the MNIST test set) and ``other`` (TINY again, under another name)."""
    home = TINY.replace(
        "[paper.kmeans.digits]",
        '[datasets.mnist]\nlabel = "MNIST"\n\n[datasets.usps]\nlabel = "USPS"\ndownsample = 2\n\n'
        "[paper.ae-kmeans.mnist]\nacc = 0.81\n\n[paper.kmeans.usps]\nacc = 0.67\n\n"
        "[paper.kmeans.digits]",
    ).replace('digits = "digits"', 'digits = "digits"\nmnist = "mnist_test"\nusps = "usps"')
    other = TINY.replace('name = "tiny"', 'name = "other"')
    with ResultStore(db) as store:
        for text in (home, other, other.replace('name = "other"', 'name = "other+bf16"')):
            proto = validate(tomllib.loads(text), source="t")
            store.save_protocol(proto.name, proto.fingerprint, "t", proto.to_json())
        # KM on digits, the full variant of its own protocol: 3 seeds ...
        for seed, acc in enumerate((0.70, 0.72, 0.74)):
            store.insert_run(
                _fake_record("tiny", "kmeans", "digits", seed, variant="full", acc=acc)
            )
        # ... beside a quick run (not picked: full first) and other protocols' (not picked:
        # its own protocol first)
        store.insert_run(_fake_record("tiny", "kmeans", "digits", 0, acc=0.99))
        store.insert_run(_fake_record("other", "kmeans", "digits", 0, variant="full", acc=0.98))
        # AE+KM: its own quick variant on the stand-in mnist_test ...
        for seed, acc in enumerate((0.60, 0.64)):
            store.insert_run(
                _fake_record("tiny", "ae-kmeans", "mnist", seed, data_name="mnist_test", acc=acc)
            )
        # ... its own quick variant on the paper's usps ...
        store.insert_run(_fake_record("tiny", "ae-kmeans", "usps", 0))
        # ... and on digits only in the other protocol (a bf16 run is never picked)
        store.insert_run(_fake_record("other", "ae-kmeans", "digits", 0, variant="full", acc=0.83))
        store.insert_run(_fake_record("other+bf16", "ae-kmeans", "digits", 1, acc=0.1))


def test_summary_table_picks_each_methods_own_protocol_full_variant_first(tmp_path: Path) -> None:
    from aeclust.bench.report import _home_row, summary_cells

    db = tmp_path / "s.db"
    _summary_store(db)
    with ResultStore(db) as store:
        table = summary_cells(store, {"kmeans": "tiny", "ae-kmeans": "tiny", "n2d": "n2d"})
    assert list(table) == ["kmeans", "ae-kmeans", "n2d"]
    assert list(table["kmeans"]) == ["usps", "mnist_test", "digits"]  # known data sets first
    km = table["kmeans"]["digits"]
    assert (km.cell.protocol, km.cell.variant, km.cell.seeds) == ("tiny", "full", [0, 1, 2])
    assert km.cell.mean["acc"] == pytest.approx(0.72) and km.cell.std["acc"] == pytest.approx(0.02)
    assert km.text() == "0.720±0.020 (3) / 0.75 / −0.030"
    assert table["kmeans"]["mnist_test"].text() == "—"
    assert table["kmeans"]["usps"].text() == "— / 0.67"  # not run: the paper's number alone
    # quick, on the paper's data, its images downsampled by the protocol
    assert table["ae-kmeans"]["usps"].text() == "0.500 (1) q ↓2"
    stand_in = table["ae-kmeans"]["mnist_test"]
    assert stand_in.stand_in and stand_in.quick and stand_in.cell.seeds == [0, 1]
    assert stand_in.text() == "0.620±0.028 (2) †"  # the paper's MNIST number is not set beside
    borrowed = table["ae-kmeans"]["digits"]
    assert borrowed.text() == "0.830 (1) / 0.80 / +0.030 [other]"
    assert [c.text() for c in table["n2d"].values()] == ["—"] * 3  # n2d is not stored
    # a row not named like the method: the first paper row whose estimator is the method
    assert _home_row(load_protocol("ccae-table2"), "ccae") == "ccae-1"
    assert _home_row(load_protocol("kdae-table2"), "kdae") == "kdae"


def test_a_row_whose_seeds_ran_on_two_machines_or_code_versions_is_marked(tmp_path: Path) -> None:
    from aeclust.bench.report import summary_cells

    db = tmp_path / "s.db"
    proto = validate(tomllib.loads(TINY), source="t")
    epyc = json.dumps({"cpu": "AMD EPYC"})
    with ResultStore(db) as store:
        store.save_protocol(proto.name, proto.fingerprint, "t", proto.to_json())
        for seed, device, commit in (
            (0, "cpu", "aaa"),
            (1, "cpu", "aaa"),
            (2, "cuda (H100)", "bbb"),
        ):
            store.insert_run(
                _fake_record(
                    "tiny",
                    "kmeans",
                    "digits",
                    seed,
                    variant="full",
                    device=device,
                    machine_json=epyc,
                    git_commit=commit,
                )
            )
        # one machine, one code version: not marked
        for seed in (0, 1):
            store.insert_run(
                _fake_record("tiny", "ae-kmeans", "digits", seed, device="cpu", machine_json=epyc)
            )
        table = summary_cells(store, {"kmeans": "tiny", "ae-kmeans": "tiny"})
    km = table["kmeans"]["digits"]
    assert km.cell.machines == {"cpu (AMD EPYC)": [0, 1], "cuda (H100)": [2]}
    assert km.text().endswith(" ‡")
    assert not table["ae-kmeans"]["digits"].cell.mixed
    assert "‡" not in table["ae-kmeans"]["digits"].text()
    md = render_report(db, fmt="md", variant="full")
    km_line = next(line for line in md.splitlines() if line.startswith("| KM |"))
    assert "runs from cpu (AMD EPYC) (seeds 0,1), cuda (H100) (seed 2); 2 code versions" in km_line


def test_benchmarks_md_opens_with_the_summary_and_links_the_notes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _summary_store(db)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "01-finding.md").write_text("# A finding (session 1)\n\nHand-written body text.\n")
    text = write_benchmarks_md(db, tmp_path / "B.md", notes=[notes / "01-finding.md"]).read_text()
    assert text.index("## Summary") < text.index("## Machines") < text.index("## tiny (full)")
    row = next(line for line in text.splitlines() if line.startswith("| KMeans (`kmeans`) |"))
    # the shipped rule: KMeans's own protocol is baselines, not stored here, so its cells come
    # from the other protocols, full variants first, in name order ("other" before "tiny")
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "KMeans (`kmeans`)",
        "baselines",
        "—",
        "—",
        "0.980 (1) / 0.75 / +0.230 [other]",
    ]
    assert "Rule: each cell is the ACC row of the method's own protocol" in text
    assert "- [A finding (session 1)](notes/01-finding.md)" in text
    assert "Hand-written body text" not in text  # linked, not appended


# ---------------------------------------------------------------------------------------------
# Resume and atomic writes
# ---------------------------------------------------------------------------------------------


def test_resume_after_a_failing_cell_recomputes_nothing(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aeclust.methods import KMeans

    db = tmp_path / "resume.db"
    calls = {"n": 0}
    original = KMeans.fit

    def flaky_fit(self, X, y=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is killed during its second cell
        return original(self, X, y)

    monkeypatch.setattr(KMeans, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(tiny, seeds=3, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert [r["seed"] for r in _rows(db)] == [0]  # the finished cell is stored, nothing else

    summary = run_protocol(tiny, seeds=3, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert calls["n"] == 4  # 2 before the interruption + the 2 missing cells: seed 0 not redone
    assert [c[4] for c in summary.already_done] == [0]
    assert sorted(r["seed"] for r in _rows(db)) == [0, 1, 2]

    # a third run finds everything done
    summary = run_protocol(tiny, seeds=3, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert calls["n"] == 4 and not summary.completed and len(summary.already_done) == 3


ICAE_TINY = """
name = "tiny-icae"
title = "ICAE on digits, for the resume test"
citation = "aeclust tests"
table = "Table 0"
kind = "clustering"
metrics = ["acc", "nmi"]
nmi_average = "arithmetic"
seeds = 1

[methods.icae]
label = "ICAE"
shared_pretrain = false
channels = [4, 8]
embedding_dim = 8
epochs = 4
batch_size = 256
n_views = 1

[datasets.digits]
label = "Digits"
"""


def test_a_cell_cut_off_mid_fit_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aeclust.bench.runner as runner_module
    from aeclust.training import Checkpoint, Trainer

    proto = tmp_path / "tiny-icae.toml"
    proto.write_text(ICAE_TINY)
    monkeypatch.setattr(runner_module, "CHECKPOINT_INTERVAL_S", 0.0)  # save every epoch
    run_protocol(proto, device="cpu", db=tmp_path / "straight" / "r.db", plots=False)
    reference = _rows(tmp_path / "straight" / "r.db")[0]

    original = Checkpoint.save

    def save_then_die(self, trainer, epoch):
        original(self, trainer, epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # the lease ends after the second epoch's checkpoint

    db = tmp_path / "cut" / "r.db"
    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(proto, device="cpu", db=db, plots=False)
    assert _rows(db) == []
    left = list((tmp_path / "cut" / "checkpoints").rglob("icae.pt"))
    assert len(left) == 1 and "tiny-icae/full/icae-digits-seed0-" in left[0].as_posix()

    monkeypatch.setattr(Checkpoint, "save", original)
    epochs_run = []
    original_fit = Trainer.fit

    def counting_fit(self, *args, **kwargs):
        history = original_fit(self, *args, **kwargs)
        epochs_run.append(len(history))
        return history

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    run_protocol(proto, device="cpu", db=db, plots=False)
    (resumed,) = _rows(db)
    assert epochs_run == [4]  # the history is whole: epochs 0-1 came from the checkpoint
    history = json.loads(resumed["history_json"])
    expected = json.loads(reference["history_json"])
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in expected])
    assert resumed["acc"] == reference["acc"]
    assert not list((tmp_path / "cut" / "checkpoints").rglob("*.pt"))  # cleaned up
    assert not (tmp_path / "cut" / "checkpoints" / "tiny-icae").exists()


def test_a_failing_cell_is_recorded_and_retried(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aeclust.methods import KMeans

    db = tmp_path / "fail.db"
    original = KMeans.fit
    state = {"broken": True}

    def fit(self, X, y=None):
        if state["broken"] and self.random_state == 1:
            raise RuntimeError("boom")
        return original(self, X, y)

    monkeypatch.setattr(KMeans, "fit", fit)
    summary = run_protocol(tiny, seeds=2, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert len(summary.completed) == 1 and len(summary.failures) == 1
    with ResultStore(db) as store:
        assert [f["seed"] for f in store.failures()] == [1]
    assert "boom" in render_report(db)
    state["broken"] = False
    summary = run_protocol(tiny, seeds=2, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert len(summary.completed) == 1
    with ResultStore(db) as store:
        assert store.failures() == [] and len(store.runs()) == 2


def _fake_record(protocol: str, method: str, dataset: str, seed: int, **extra) -> dict:
    record = {
        "protocol": protocol,
        "variant": "quick",
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "estimator": method,
        "data_name": dataset,
        "acc": 0.5,
        "nmi": 0.4,
        "ari": 0.3,
        "nmi_average": "arithmetic",
        "fit_seconds": 1.0,
        "config_json": {"params": {}},
    }
    record.update(extra)
    return record


def test_a_failing_insert_leaves_no_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "atomic.db"
    with ResultStore(db) as store:
        store.insert_run(_fake_record("p", "kmeans", "digits", 0))
        # duplicate cell: UNIQUE constraint, nothing written
        with pytest.raises(sqlite3.IntegrityError):
            store.insert_run(_fake_record("p", "kmeans", "digits", 0, acc=0.9))
        # a value sqlite cannot store: nothing written
        with pytest.raises(sqlite3.Error):
            store.insert_run(_fake_record("p", "kmeans", "digits", 1, command=object()))
        # a crash after the INSERT, inside the same transaction: rolled back

        def crash(conn, cell):
            raise RuntimeError("crash after insert")

        monkeypatch.setattr(ResultStore, "_clear_failure", staticmethod(crash))
        with pytest.raises(RuntimeError):
            store.insert_run(_fake_record("p", "kmeans", "digits", 2))
        rows = store.runs()
    assert [(r["seed"], r["acc"]) for r in rows] == [(0, 0.5)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


# ---------------------------------------------------------------------------------------------
# Methods not yet registered, parameter names, bad input
# ---------------------------------------------------------------------------------------------


def test_a_protocol_naming_an_unregistered_method_is_refused_naming_the_registered_ones(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = tiny.read_text() + '\n[methods.vcc]\nlabel = "VCC"\n'
    path = tmp_path / "with_vcc.toml"
    path.write_text(text.replace('name = "tiny"', 'name = "with_vcc"'))
    from aeclust.methods import METHODS

    # one registry: a method this installation lacks (a newer protocol file) is found before
    # any cell runs, not half-way through a benchmark
    monkeypatch.delitem(METHODS, "vcc")
    with pytest.raises(ProtocolError, match=r"'vcc' is not a method CLI name.*valid: ae-kmeans"):
        run_protocol(path, quick=True, device="cpu", db=tmp_path / "x.db", plots=False)
    assert not (tmp_path / "x.db").exists()


def test_unaccepted_method_parameters_skip_the_method(tiny: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad_param.toml"
    path.write_text(
        tiny.read_text()
        .replace('name = "tiny"', 'name = "bad_param"')
        .replace('label = "KM"', 'label = "KM"\nnot_a_param = 3')
    )
    summary = run_protocol(path, quick=True, device="cpu", db=tmp_path / "x.db", plots=False)
    assert "not_a_param" in summary.skipped_methods["kmeans"]
    assert {c.method for c in summary.completed} == {"ae-kmeans"}


def test_unknown_method_or_dataset_name_is_an_error(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_protocol(tiny, methods=["nope"], db=tmp_path / "x.db")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        run_protocol(tiny, datasets=["mnist"], db=tmp_path / "x.db")


def test_classification_protocol_without_data_still_reports_the_paper(tmp_path: Path) -> None:
    # classification protocols run (tests/test_evaluation.py runs one end to end); with no data
    # the columns are skipped and the report still shows the paper's numbers
    db = tmp_path / "c.db"
    summary = run_protocol(
        "ccae-tables4-5", db=db, methods=["no-ae-nc"], seeds=1, data_home=tmp_path / "none"
    )
    assert set(summary.skipped_datasets) == {"orl", "yaleb"} and not summary.completed
    md = render_report(db)
    assert "ccae-tables4-5" in md and "0.9625 ± 0.0158" in md
    assert "| No AE | — / 96.25 ± 1.58 |" in md  # the paper's layout (Table 4)
    assert issubclass(UnsupportedProtocolError, ProtocolError)


def test_cli_bench_and_report(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "cli.db"
    rc = main(["bench", str(tiny), "--quick", "--methods", "kmeans", "--db", str(db), "--no-plots"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "kmeans" in out and "ACC " in out and "1 cell(s) run" in out
    assert main(["report", "--db", str(db), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("protocol,variant,dataset")
    md = tmp_path / "B.md"
    assert main(["report", "--db", str(db), "--out", str(md)]) == 0
    assert md.read_text().startswith("# aeclust benchmarks")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "no-such-protocol"], "unknown protocol"),
        (["bench", "kdae-table2", "--methods", "nope"], "unknown method"),
        (["bench", "kdae-table2", "--seeds", "0"], "--seeds"),
        (["report", "--db", "/nonexistent/x.db"], "no results database"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if argv[0] == "bench":
        argv = [*argv, "--db", str(tmp_path / "x.db")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_cli_report_on_a_fresh_clone_reads_the_committed_runs(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No results/aeclust.db (it is not in git) but benchmarks/results/runs.jsonl: report
    creates the database from the committed runs once, says so on stderr, prints the tables."""
    from aeclust.bench import COMMITTED_RUNS, committed_runs_file

    checkout = tmp_path / "clone"
    db = tmp_path / "elsewhere.db"
    run_protocol(tiny, quick=True, methods=["kmeans"], device="cpu", db=db, plots=False)
    with ResultStore(db) as store:
        assert store.export_jsonl(checkout / COMMITTED_RUNS) == 1
    monkeypatch.chdir(checkout)
    assert committed_runs_file() == checkout / COMMITTED_RUNS
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert "## tiny (quick)" in captured.out and "| KM |" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "no results database at results/aeclust.db" in err[0]
    assert "created it from the 1 committed run(s)" in err[0]
    assert (checkout / "results" / "aeclust.db").is_file()
    assert not list((checkout / "results").glob(".*tmp"))
    # once: the next report reads the database and says nothing more
    assert main(["report", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "tiny,quick,digits" in captured.out
    # an explicit --db that does not exist is an error, never a silent import
    assert main(["report", "--db", "other.db"]) == 2
    assert "no results database at other.db" in capsys.readouterr().err
    assert not (checkout / "other.db").exists()


def test_create_from_export_refuses_an_existing_database(tmp_path: Path) -> None:
    from aeclust.bench import create_from_export

    (tmp_path / "runs.jsonl").write_text("")
    assert create_from_export(tmp_path / "runs.jsonl", tmp_path / "new.db") == (0, 0)
    with pytest.raises(FileExistsError, match="import_jsonl"):
        create_from_export(tmp_path / "runs.jsonl", tmp_path / "new.db")


def test_cli_report_unknown_protocol(tiny: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "r.db"
    run_protocol(tiny, quick=True, methods=["kmeans"], device="cpu", db=db, plots=False)
    assert main(["report", "--db", str(db), "--protocol", "nope"]) == 2
    assert "not in the results database" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The protocol files
# ---------------------------------------------------------------------------------------------

FILES = sorted(PROTOCOLS.glob("*.toml"))


def test_protocol_files_are_found_by_name() -> None:
    assert PROTOCOLS in [d.resolve() for d in protocol_dirs()]
    names = set(list_protocols())
    for stem in ("kdae-table2", "ct-tables2-3", "vcc-table2", "icae-table7", "ccae-table2"):
        assert stem in names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_protocol_file_is_valid(path: Path) -> None:
    from aeclust.evaluation import ENCODERS

    proto = load_protocol(path)  # parses and validates: known keys, CLI names, fractions
    assert proto.name == path.stem
    for spec in proto.methods.values():
        assert spec.estimator in (ENCODERS if proto.kind == "classification" else METHODS)
    for row, per_ds in proto.paper.items():
        for key, values in per_ds.items():
            assert key in proto.datasets
            assert all(0.0 <= v <= 1.0 for v in values.values()), (row, key)
            assert set(values) <= {*proto.metrics, *(f"{m}_std" for m in proto.metrics)}
    if proto.kind == "classification":
        assert set(proto.paper) <= set(proto.classification_cells())  # every paper row runs
        assert proto.quick.get("datasets") and proto.seeds_for(quick=True) <= 3
    if proto.kind == "clustering":
        assert proto.methods
        # a paper's table holds its numbers; only a library protocol (table = "none: ...") has none
        assert proto.paper or proto.table.startswith("none")
        assert proto.quick.get("datasets"), "a clustering protocol needs a quick variant"
        assert proto.seeds_for(quick=True) <= 3
        for key in proto.dataset_keys(quick=True):  # the quick data sets are the small ones
            from aeclust.datasets import get_dataset_info

            assert get_dataset_info(proto.data_name(key, quick=True)).n_samples <= 10_000
    assert set(proto.pretrain) <= PRETRAIN_KEYS


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_protocol_parameters_match_the_registered_estimators(path: Path) -> None:
    """Every parameter a protocol sets must be accepted by its estimator once it is registered."""
    from aeclust.evaluation import encoder_class
    from aeclust.methods import METHODS

    proto = load_protocol(path)
    for row, spec in proto.methods.items():
        if proto.kind == "classification":
            try:
                cls = encoder_class(spec.estimator)
            except ImportError:
                continue  # not implemented yet: the runner skips it
            if cls is None:
                assert not spec.params, f"{row}: the pixels take no parameters"
                continue
        elif spec.estimator not in METHODS:
            continue  # not implemented yet: the runner skips it
        else:
            cls = METHODS[spec.estimator]
        valid = set(cls().get_params())
        for quick in (False, True):
            for key in proto.dataset_keys(quick):
                _, own = proto.cell_params(row, key, quick)
                unknown = set(own) - valid
                assert not unknown, (
                    f"{path.name} [{row}] sets {sorted(unknown)}, which "
                    f"{cls.__name__} does not accept"
                )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("seeds = 2", "seeds = 0"), "seeds"),
        (('nmi_average = "arithmetic"', 'nmi_average = "mean"'), "nmi_average"),
        (("acc = 0.75", "acc = 75.0"), "fractions in [0, 1]"),
        (("[methods.kmeans]", "[methods.kmeanz]"), "not a method CLI name"),
        (("[datasets.digits]", "[datasets.digits]\ncolour = 1"), "unknown key"),
        (("batch_size = 128", "batch_size = 128\nn_clusters = 3"), "set by the runner"),
        (("pretrain_epochs = 2", "pretrain_epoch = 2"), "unknown pretraining key"),
        (('title = "Tiny protocol on digits"', "subtitle = 1"), "unknown top-level"),
        (("[paper.dec.digits]", "[paper.dec.mnist]"), "not a [datasets] key"),
        (('label = "Digits"', 'label = "Digits"\nvalue_range = "pm1"'), "value_range must be"),
    ],
)
def test_validation_rejects_bad_protocols(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in TINY
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(tomllib.loads(TINY.replace(old, new, 1)), source="t")


def test_load_protocol_rejects_unknown_names_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="unknown protocol 'nope'"):
        load_protocol("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(ProtocolError, match="not valid TOML"):
        load_protocol(bad)


def test_cell_params_resolution_order(tiny: Path) -> None:
    text = tiny.read_text() + (
        "\n[datasets.digits.methods.ae-kmeans]\nn_init = 5\n"
        "\n[quick.methods.ae-kmeans]\nn_init = 7\n"
    )
    proto = validate(tomllib.loads(text), source="t")
    shared, own = proto.cell_params("ae-kmeans", "digits", quick=False)
    assert shared["pretrain_epochs"] == 2 and own["n_init"] == 5
    shared, own = proto.cell_params("ae-kmeans", "digits", quick=True)
    assert shared["pretrain_epochs"] == 1 and own["n_init"] == 7
    # an end-to-end method can opt out of the shared pretraining section
    text = text.replace('label = "AE+KM"', 'label = "AE+KM"\nshared_pretrain = false')
    proto = validate(tomllib.loads(text), source="t")
    shared, own = proto.cell_params("ae-kmeans", "digits", quick=True)
    assert shared == {} and own == {"n_init": 7}


def test_like_copies_a_row_with_its_data_set_and_quick_tables(tiny: Path) -> None:
    text = tiny.read_text() + (
        '\n[methods.ae-kmeans-long]\nlike = "ae-kmeans"\nlabel = "long"\npretrain_epochs = 9\n'
        '\n[methods.ae-kmeans-longer]\nlike = "ae-kmeans-long"\n'
        "\n[datasets.digits.methods.ae-kmeans]\nn_init = 5\npretrain_epochs = 4\n"
        "\n[quick.methods.ae-kmeans]\nn_init = 7\n"
        "\n[quick.methods.ae-kmeans-longer]\nn_init = 8\n"
    )
    proto = validate(tomllib.loads(text), source="t")
    long_, longer = proto.methods["ae-kmeans-long"], proto.methods["ae-kmeans-longer"]
    # the estimator comes from the parent's row name; the label is the variant's own
    assert long_.estimator == "ae-kmeans" and long_.label == "long"
    assert longer.estimator == "ae-kmeans" and longer.label == "ae-kmeans-longer"
    for row in ("ae-kmeans-long", "ae-kmeans-longer"):
        # the parent's data-set table comes along, but not its value of the variant's own key
        _, own = proto.cell_params(row, "digits", quick=False)
        assert own == {"n_init": 5, "pretrain_epochs": 9}
    _, own = proto.cell_params("ae-kmeans-long", "digits", quick=True)
    assert own["n_init"] == 7  # the parent's quick table
    _, own = proto.cell_params("ae-kmeans-longer", "digits", quick=True)
    assert own["n_init"] == 8  # the variant's own quick table wins
    assert proto.cell_params("ae-kmeans", "digits", quick=False)[1]["pretrain_epochs"] == 4
    # the stored protocol says where a copied row came from
    assert proto.raw["methods"]["ae-kmeans-longer"]["like"] == "ae-kmeans-long"


def test_like_rows_of_the_shipped_protocols_differ_only_where_they_say() -> None:
    proto = load_protocol("icae-table4")
    for quick in (False, True):
        _, parent = proto.cell_params("icae", "coil20", quick)
        _, ablation = proto.cell_params("icae-no-aug", "coil20", quick)
        _, e100 = proto.cell_params("icae-no-aug-e100", "coil20", quick)
        assert ablation == {**parent, "augment": False, "aug_weight": 0.0}
        assert e100 == {**ablation, "epochs": 100} if quick else e100 == ablation
    proto_ct = load_protocol("ct-tables2-3")
    _, ct = proto_ct.cell_params("ct", "usps", False)
    _, lam1 = proto_ct.cell_params("ct-lam1", "usps", False)
    assert ct["lam"] == 10.0 and lam1 == {**ct, "lam": 1.0}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ('[methods.a]\nlike = "nope"\n', "no [methods.nope] table"),
        ('[methods.a]\nlike = "b"\n[methods.b]\nlike = "a"\n', "cycle"),
        ("[methods.a]\nlike = 3\n", "must be the name of another"),
    ],
)
def test_like_rejects_unknown_rows_and_cycles(rows: str, message: str) -> None:
    text = TINY.replace("[datasets.digits]", rows + "\n[datasets.digits]", 1)
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(tomllib.loads(text), source="t")


def _ablation_of_tiny(lam_kmeans: int = 2) -> str:
    """A second protocol whose full-model row repeats tiny's ae-kmeans row (runs_from)."""
    return (
        TINY.replace('name = "tiny"', 'name = "tiny-ablation"')
        .replace('label = "AE+KM"\n', 'label = "AE+KM"\nruns_from = "tiny"\n')
        .replace('label = "KM"\nn_init = 2', f'label = "KM"\nn_init = {lam_kmeans}')
        .replace(
            "[datasets.digits]",
            '[methods.ae-kmeans-short]\nlike = "ae-kmeans"\n'
            "pretrain_epochs = 1\n\n[datasets.digits]",
            1,
        )
    )


def _row_line(md: str, start: str) -> str:
    """The first line of a rendered report that starts with ``start`` (a table row)."""
    return next(x for x in md.splitlines() if x.startswith(start))


def _store_tiny_ae_kmeans_runs(db: Path, *protocols: Protocol) -> Path:
    """A results database holding the protocols and tiny's AE+KM runs (ACC 0.61 and 0.63)."""
    with ResultStore(db) as store:
        for proto in protocols:
            store.save_protocol(proto.name, proto.fingerprint, "t", proto.to_json())
        for seed, acc in ((0, 0.61), (1, 0.63)):
            store.insert_run(_fake_record("tiny", "ae-kmeans", "digits", seed, acc=acc))
    return db


def test_runs_from_shows_the_other_protocols_runs_only_when_the_cell_is_the_same(
    tmp_path: Path,
) -> None:
    from aeclust.bench.protocol import same_cell

    base = validate(tomllib.loads(TINY), source="t")
    ablation = validate(tomllib.loads(_ablation_of_tiny()), source="t")
    assert ablation.methods["ae-kmeans"].runs_from == "tiny"
    # a variant made with like does not inherit where its parent's runs live
    assert ablation.methods["ae-kmeans-short"].runs_from is None
    assert same_cell(ablation, base, "ae-kmeans", "digits", True) is None
    why = same_cell(ablation, base, "ae-kmeans-short", "digits", True)
    assert why is not None and "no row" in why
    db = _store_tiny_ae_kmeans_runs(tmp_path / "r.db", base, ablation)
    with ResultStore(db) as store:
        store.insert_run(_fake_record("tiny-ablation", "ae-kmeans-short", "digits", 0, acc=0.5))
        store.insert_run(_fake_record("tiny", "kmeans", "digits", 0, acc=0.77))
    md = render_report(db, fmt="md", protocol="tiny-ablation", variant="quick")
    line = _row_line(md, "| AE+KM |")
    assert "0.62" in line and "runs of tiny, same settings" in line
    # tiny's KM run is not borrowed: the ablation's KM row has no runs_from
    km_line = _row_line(md, "| KM |")
    assert "0.77" not in km_line and "runs of tiny" not in km_line

    # once the settings differ (here the shared pretraining), nothing is borrowed and the cell
    # says why
    changed = validate(
        tomllib.loads(_ablation_of_tiny().replace("batch_size = 128", "batch_size = 64")),
        source="t",
    )
    assert "batch_size" in (same_cell(changed, base, "ae-kmeans", "digits", True) or "")
    with ResultStore(db) as store:
        store.save_protocol(changed.name, changed.fingerprint, "t", changed.to_json())
    md = render_report(db, fmt="md", protocol="tiny-ablation", variant="quick")
    line = _row_line(md, "| AE+KM |")
    assert "0.62" not in line and "tiny's runs not shown: pretraining batch_size differs" in line


def test_the_full_table_shows_quick_runs_of_a_cell_the_quick_variant_runs_alike(
    tmp_path: Path,
) -> None:
    from aeclust.bench.protocol import same_cell

    tiny = validate(tomllib.loads(TINY), source="t")
    # tiny's quick variant narrows the seeds; it shortens only the shared pretraining
    assert same_cell(tiny, tiny, "kmeans", "digits", False, quick_b=True) is None
    why = same_cell(tiny, tiny, "ae-kmeans", "digits", False, quick_b=True) or ""
    assert "pretraining pretrain_epochs differs" in why
    db = _store_tiny_ae_kmeans_runs(tmp_path / "r.db", tiny)  # quick AE+KM runs
    with ResultStore(db) as store:
        store.insert_run(_fake_record("tiny", "kmeans", "digits", 0, acc=0.77))
    md = render_report(db, fmt="md", protocol="tiny", variant="full")
    km_line = _row_line(md, "| KM |")
    assert "0.77" in km_line and "runs of the quick variant, same settings" in km_line
    ae_line = _row_line(md, "| AE+KM |")
    assert "0.62" not in ae_line and "quick variant" not in ae_line


def test_same_cell_reads_a_left_out_parameter_as_the_default_and_maps_columns_by_data() -> None:
    from aeclust.bench.protocol import same_cell

    ae_km = 'label = "AE+KM"\nn_init = 2\n'
    assert ae_km in TINY and METHODS["ae-kmeans"]().n_init == 20
    # one table spells AE+KM's default n_init out, the other leaves it out (and keys its column
    # for the same data otherwise)
    spelled = validate(
        tomllib.loads(TINY.replace(ae_km, 'label = "AE+KM"\nn_init = 20\n')), source="t"
    )
    left_out = TINY.replace('name = "tiny"', 'name = "left-out"').replace(
        ae_km, 'label = "AE+KM"\n'
    )
    for old, new in (
        ("[datasets.digits]", '[datasets.sk]\nname = "digits"'),
        ("[paper.kmeans.digits]", "[paper.kmeans.sk]"),
        ("[paper.ae-kmeans.digits]", "[paper.ae-kmeans.sk]"),
        ("[paper.dec.digits]", "[paper.dec.sk]"),
        ('digits = "digits"', 'sk = "digits"'),
    ):
        left_out = left_out.replace(old, new)
    other = validate(tomllib.loads(left_out), source="t")
    assert same_cell(spelled, other, "ae-kmeans", "digits", True, key_b="sk") is None
    assert "no column" in (same_cell(spelled, other, "ae-kmeans", "digits", True) or "")
    base = validate(tomllib.loads(TINY), source="t")  # n_init = 2: not the default
    why = same_cell(base, other, "ae-kmeans", "digits", True, key_b="sk") or ""
    assert "n_init differs" in why


def test_runs_from_can_name_the_row_the_other_table_calls_otherwise(tmp_path: Path) -> None:
    from aeclust.bench.protocol import same_cell

    base = validate(tomllib.loads(TINY), source="t")
    # the ablation calls tiny's ae-kmeans row "full-model" and says so after a colon
    renamed = (
        TINY.replace('name = "tiny"', 'name = "tiny-renamed"')
        .replace("[methods.ae-kmeans]", '[methods.full-model]\nestimator = "ae-kmeans"')
        .replace('label = "AE+KM"\n', 'label = "AE+KM"\nruns_from = "tiny:ae-kmeans"\n')
        .replace("[paper.ae-kmeans.", "[paper.full-model.")
    )
    ablation = validate(tomllib.loads(renamed), source="t")
    spec = ablation.methods["full-model"]
    assert (spec.runs_from, spec.runs_from_row, spec.source_row) == (
        "tiny",
        "ae-kmeans",
        "ae-kmeans",
    )
    assert ablation.methods["kmeans"].source_row == "kmeans"
    assert same_cell(ablation, base, "full-model", "digits", True, row_b="ae-kmeans") is None
    assert "no row" in (same_cell(ablation, base, "full-model", "digits", True) or "")
    db = _store_tiny_ae_kmeans_runs(tmp_path / "r.db", base, ablation)
    md = render_report(db, fmt="md", protocol="tiny-renamed", variant="quick")
    line = _row_line(md, "| AE+KM |")
    assert "0.62" in line and "runs of tiny's ae-kmeans row, same settings" in line


@pytest.mark.parametrize("value", ['"tiny"', "3", '""', '"other:"'])
def test_runs_from_must_name_another_protocol(value: str) -> None:
    text = TINY.replace('label = "AE+KM"\n', f'label = "AE+KM"\nruns_from = {value}\n')
    with pytest.raises(ProtocolError, match="runs_from must name another protocol"):
        validate(tomllib.loads(text), source="t")


def test_results_export_and_import_merge_without_duplicates(tmp_path):
    from aeclust.bench.store import RUN_COLUMNS

    def row(seed, acc):
        r = {c: None for c in RUN_COLUMNS if c != "id"}
        r.update(
            protocol="p",
            variant="full",
            method="kmeans",
            dataset="usps",
            seed=seed,
            estimator="KMeans",
            data_name="usps",
            substitute=0,
            acc=acc,
            nmi=0.5,
            ari=0.4,
            nmi_average="arithmetic",
            fit_seconds=1.0,
            config_json="{}",
        )
        return {k: v for k, v in r.items() if v is not None}

    with ResultStore(tmp_path / "a.db") as a:
        a.save_protocol("p", "f", "src", "{}")
        a.insert_run(row(0, 0.6))
        a.insert_run(row(1, 0.7))
        assert a.export_jsonl(tmp_path / "runs.jsonl") == 2
    with ResultStore(tmp_path / "b.db") as b:
        b.insert_run(row(1, 0.9))  # an existing cell is kept, not overwritten
        assert b.import_jsonl(tmp_path / "runs.jsonl") == (1, 1)
        accs = {r["seed"]: r["acc"] for r in b.runs("p")}
        assert accs == {0: 0.6, 1: 0.9}
        assert "p" in b.protocols()
        assert b.import_jsonl(tmp_path / "runs.jsonl") == (0, 2)
    # a protocol saved later than the stored one replaces it; an older one does not
    with ResultStore(tmp_path / "a.db") as a:
        a.save_protocol("p", "f2", "src", '{"v": 2}')
        a.export_jsonl(tmp_path / "newer.jsonl")
    lines = (tmp_path / "newer.jsonl").read_text().splitlines()
    older = [ln.replace('"updated_at": "', '"updated_at": "1999') for ln in lines]
    (tmp_path / "older.jsonl").write_text("\n".join(older) + "\n")
    with ResultStore(tmp_path / "b.db") as b:
        b._conn.execute("UPDATE protocols SET updated_at = '2000-01-01T00:00:00+00:00'")
        b.import_jsonl(tmp_path / "older.jsonl")
        assert b.protocols()["p"] == {}
        b.import_jsonl(tmp_path / "newer.jsonl")
        assert b.protocols()["p"] == {"v": 2}
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with ResultStore(tmp_path / "c.db") as c, pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        c.import_jsonl(tmp_path / "bad.jsonl")
    assert (
        main(["results", "import", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "d.db")])
        == 2
    )


def test_reconstruction_figure_has_one_row_per_input_and_marks_the_assignment():
    from aeclust.bench.plots import reconstruction_figure

    rng = np.random.default_rng(0)
    x = rng.random((3, 16)).astype(np.float32)
    recon = np.stack([x + 0.5, x, x - 0.5])  # cluster 1 reconstructs perfectly
    fig = reconstruction_figure(x, recon, (1, 4, 4), "k-DAE")
    axes = fig.get_axes()
    assert len(axes) == 3 * 4
    assert all(axes[r * 4 + 2].get_title().startswith("1: 0.0") for r in range(3))
    assert axes[2].title.get_color() == "red"


def test_method_specific_figures_follow_the_fitted_attributes() -> None:
    """CT's memberships, CCAE's / VCC's snapshots and ICAE's generated grid are drawn when the
    estimator carries what they need (and only then)."""
    from types import SimpleNamespace

    from aeclust.bench.runner import _Data, _Runner

    rng = np.random.default_rng(0)
    n = 40
    data = _Data("d", "d", rng.random((n, 16)), rng.integers(0, 2, n), (1, 4, 4), 2, False)
    fake = SimpleNamespace(proto=SimpleNamespace(label=lambda row: row))
    ct = SimpleNamespace(initial_max_membership_=rng.random(n), max_membership_=rng.random(n))
    ccae = SimpleNamespace(
        embedding_snapshots_=[rng.random((n, 3)) for _ in range(3)],
        stage_labels_=rng.integers(0, 2, (3, n)),
    )
    vcc = SimpleNamespace(embedding_snapshots_=rng.random((3, n, 2)), snapshot_epochs_=[0, 5, 9])
    icae = SimpleNamespace(
        n_clusters=2, image_shape_=(1, 4, 4), generate=lambda k: rng.random((2 * k, 16))
    )
    expected = {
        "memberships": ct,
        "shift-snapshots": ccae,
        "epoch-snapshots": vcc,
        "generated": icae,
    }
    for name, est in expected.items():
        figures = _Runner._extra_figures(fake, est, data, "row", 0)
        assert set(figures) == {name}
        assert figures[name]() is not None
    assert _Runner._extra_figures(fake, SimpleNamespace(), data, "row", 0) == {}


def test_git_commit_outside_checkout_reads_environment(tmp_path, monkeypatch):
    """A source copy shipped elsewhere (no .git, or a stale one) reports $AECLUST_GIT_COMMIT."""
    from aeclust.bench.env import git_commit

    monkeypatch.delenv("AECLUST_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("AECLUST_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == "abc123"
    assert git_commit() == "abc123"  # the variable wins inside a checkout too


def test_results_import_replace_changed_swaps_only_runs_of_another_configuration(tmp_path):
    from aeclust.bench.store import RUN_COLUMNS

    def row(seed, acc, config_hash):
        r = {c: None for c in RUN_COLUMNS if c != "id"}
        r.update(
            protocol="p",
            variant="full",
            method="n2d",
            dataset="usps",
            seed=seed,
            estimator="N2D",
            data_name="usps",
            acc=acc,
            nmi=0.5,
            ari=0.4,
            nmi_average="arithmetic",
            fit_seconds=1.0,
            config_json="{}",
            config_hash=config_hash,
        )
        return {k: v for k, v in r.items() if v is not None}

    with ResultStore(tmp_path / "new.db") as new:
        new.insert_run(row(0, 0.96, "after"))  # the protocol changed: another configuration
        new.insert_run(row(1, 0.95, "same"))  # the same configuration as the stored run
        new.export_jsonl(tmp_path / "new.jsonl")
    with ResultStore(tmp_path / "old.db") as old:
        old.insert_run(row(0, 0.82, "before"))
        old.insert_run(row(1, 0.90, "same"))
        assert old.import_jsonl(tmp_path / "new.jsonl") == (0, 2)  # kept by default
        assert (
            main(
                [
                    "results",
                    "import",
                    str(tmp_path / "new.jsonl"),
                    "--db",
                    str(tmp_path / "old.db"),
                    "--replace-changed",
                ]
            )
            == 0
        )
    with ResultStore(tmp_path / "old.db") as old:
        accs = {r["seed"]: r["acc"] for r in old.runs("p")}
    assert accs == {0: 0.96, 1: 0.90}
