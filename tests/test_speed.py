"""The throughput benchmark (aeclust bench --speed): what it counts, stores and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aeclust.bench import ResultStore, write_benchmarks_md
from aeclust.bench.speed import bare_autoencoder_loop, run_speed
from aeclust.cli import main
from aeclust.nn import MLPAutoencoder
from aeclust.training import Trainer, make_optimizer, tally_training


def test_tally_counts_every_trainer_step_inside_the_block_only():
    x = torch.randn(100, 5)
    ae = MLPAutoencoder([5, 8, 2])
    trainer = Trainer(ae, make_optimizer(ae.parameters()), epochs=3, batch_size=32)
    with tally_training() as tally:
        trainer.run([x], lambda idx, xb: ((ae(xb)[1] - xb) ** 2).mean())
    assert tally.samples == 300 and tally.steps == 3 * 4
    Trainer(ae, make_optimizer(ae.parameters()), epochs=1, batch_size=32).run(
        [x], lambda idx, xb: ((ae(xb)[1] - xb) ** 2).mean()
    )
    assert tally.samples == 300  # closed: no longer counting


def test_bare_loop_trains():
    torch.manual_seed(0)
    x = torch.rand(256, 20)
    ae = MLPAutoencoder([20, 16, 4])

    def error() -> float:
        with torch.no_grad():
            return float(((ae(x)[1] - x) ** 2).mean())

    before = error()
    bare_autoencoder_loop(ae, x, epochs=20, batch_size=64, dtype=None)
    assert error() < 0.5 * before


@pytest.fixture(scope="module")
def speed_db(tmp_path_factory) -> tuple[Path, list]:
    db = tmp_path_factory.mktemp("speed") / "r.db"
    rows = run_speed(
        dataset="digits",
        methods=["dcn", "vcc"],
        precisions=("fp32", "bf16"),
        repeats=1,
        device="cpu",
        db=db,
        primitive_samples=1500,
        command="aeclust bench --speed --datasets digits",
    )
    return db, rows


def test_speed_rows_measure_what_they_say(speed_db):
    db, rows = speed_db
    phases = [(r.phase, r.name, r.precision) for r in rows]
    assert ("pretrain", "autoencoder", "fp32") in phases and ("cluster", "vcc", "bf16") in phases
    assert sum(r.phase == "primitive" for r in rows) == 3
    dcn = next(r for r in rows if r.name == "dcn" and r.precision == "fp32")
    # DCN's 3 epochs over all 1,797 digits, each sample once per epoch.
    assert dcn.config["training_samples"] == 3 * 1797
    assert dcn.samples_per_s == pytest.approx(3 * 1797 / dcn.seconds)
    assert dcn.reference_samples_per_s > 0  # the bare loop on DCN's own autoencoder
    vcc = next(r for r in rows if r.name == "vcc")
    assert vcc.reference_samples_per_s is None  # no autoencoder to compare with
    pre = [r for r in rows if r.phase == "pretrain"]
    assert all(r.samples_per_s > 0 and r.reference_samples_per_s > 0 for r in pre)
    with ResultStore(db) as store:
        assert len(store.speed_rows()) == len(rows)


def test_speed_rows_survive_export_import_and_are_reported(speed_db, tmp_path):
    db, rows = speed_db
    export = tmp_path / "runs.jsonl"
    with ResultStore(db) as store:
        store.export_jsonl(export)
    other = tmp_path / "other.db"
    with ResultStore(other) as store:
        store.import_jsonl(export)
        store.import_jsonl(export)  # merging twice adds nothing
        assert len(store.speed_rows()) == len(rows)
    text = write_benchmarks_md(other, tmp_path / "B.md", notes=[]).read_text()
    assert "## Throughput" in text and "aeclust bench --speed --datasets digits" in text
    assert "| dcn |" in text and "bf16 / fp32" in text and "exact 10-NN graph" in text


def test_a_later_primitive_run_replaces_only_the_primitives(speed_db, tmp_path):
    db = speed_db[0]
    copy = tmp_path / "r.db"
    copy.write_bytes(db.read_bytes())
    with ResultStore(copy) as store:
        for row in store.speed_rows():
            if row["phase"] == "primitive":
                later = {k: v for k, v in row.items() if k != "id"}
                later.update(session="9999-12-31T00:00:00+00:00", seconds=123.25)
                later["command"] = "aeclust bench --speed --phases primitive"
                store.insert_speed(later)
    text = write_benchmarks_md(copy, tmp_path / "B.md", notes=[]).read_text()
    section = text.split("## Throughput")[1].split("\n## ")[0]
    assert "| dcn |" in section and "pretraining" in section  # the first session's phases stay
    assert "123.25" in section and "--phases primitive" in section
    assert section.count("exact 10-NN graph") == 1  # the older primitives are replaced


def test_each_cpu_model_keeps_its_own_newest_session(speed_db, tmp_path):
    """A later session on another CPU model is a second machine, not a newer run of the first."""
    db = speed_db[0]
    copy = tmp_path / "r.db"
    copy.write_bytes(db.read_bytes())
    with ResultStore(copy) as store:
        rows = store.speed_rows()
        assert {r["device"] for r in rows} == {"cpu"}
        first_cpu = json.loads(rows[0]["machine_json"])["cpu"]
        for row in rows:
            if row["phase"] == "pretrain":
                other = {k: v for k, v in row.items() if k != "id"}
                other.update(session="9999-12-31T00:00:00+00:00", seconds=77.5)
                other["machine_json"] = json.dumps({"cpu": "Other CPU Model", "cores": 2})
                store.insert_speed(other)
    text = write_benchmarks_md(copy, tmp_path / "B.md", notes=[]).read_text()
    section = text.split("## Throughput")[1].split("\n## ")[0]
    assert f"### cpu ({first_cpu})," in section and "### cpu (Other CPU Model)," in section
    # The first machine keeps its own pretraining rows beside the other machine's.
    assert section.count("| pretraining |") == 2 and "| dcn |" in section


def test_speed_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match="no speed configuration"):
        run_speed(dataset="digits", methods=["nope"], db=tmp_path / "r.db")
    with pytest.raises(ValueError, match="unknown speed phase"):
        run_speed(dataset="digits", phases=("warp",), db=tmp_path / "r.db")
    assert main(["bench", "baselines", "--speed"]) == 2
    assert "--speed takes no protocol" in capsys.readouterr().err
    assert main(["bench"]) == 2
    assert "needs a protocol" in capsys.readouterr().err


def test_cli_speed(tmp_path, capsys):
    db = tmp_path / "r.db"
    argv = ["bench", "--speed", "--datasets", "digits", "--methods", "dcn", "--phases"]
    code = main([*argv, "cluster", "--precision", "fp32", "--repeats", "1", "--db", str(db)])
    assert code == 0
    out = capsys.readouterr().out
    assert "cluster" in out and "dcn" in out and "samples/s" in out
    with ResultStore(db) as store:
        (row,) = store.speed_rows()
    assert row["command"].startswith("aeclust bench --speed --datasets digits --methods dcn")


def test_a_failing_method_does_not_cost_the_others(tmp_path, monkeypatch, capsys):
    """One method's crash (as k-DAE's bf16 BCE on CUDA once) is reported; the rest are stored."""
    import aeclust.bench.speed as speed

    real = speed.measure_methods

    def flaky(x, n_clusters, image_shape, names, *args, **kwargs):
        if names == ["dkm"]:
            raise RuntimeError("boom")
        return real(x, n_clusters, image_shape, names, *args, **kwargs)

    monkeypatch.setattr(speed, "measure_methods", flaky)
    db = tmp_path / "r.db"
    kw = dict(dataset="digits", phases=("cluster",), precisions=("fp32",), repeats=1, device="cpu")
    with pytest.raises(speed.SpeedRunError, match=r"dkm: RuntimeError: boom") as info:
        run_speed(methods=["dkm", "dcn"], db=db, **kw)
    assert info.value.failures == {"dkm": "RuntimeError: boom"}
    assert [r.name for r in info.value.rows] == ["dcn"]
    with ResultStore(db) as store:
        assert [r["name"] for r in store.speed_rows()] == ["dcn"]
    argv = ["bench", "--speed", "--datasets", "digits", "--methods", "dkm,dcn", "--phases"]
    code = main([*argv, "cluster", "--precision", "fp32", "--repeats", "1", "--db", str(db)])
    assert code == 1
    out = capsys.readouterr().out
    assert "failed dkm: RuntimeError: boom" in out and "dcn" in out


def test_a_speed_session_measures_the_shared_bare_loop_once(tmp_path, monkeypatch):
    """run_speed measures one method per call; the shared reference must outlive each call
    (before, every method measured its own, and 'shared' rows showed six different rates)."""
    import aeclust.bench.speed as speed

    calls = []
    real = speed._best_rate

    def counted(fn, n, repeats, device):
        calls.append(repeats)
        return real(fn, n, 1, device)

    monkeypatch.setattr(speed, "_best_rate", counted)
    db = tmp_path / "r.db"
    kw = dict(dataset="digits", phases=("cluster",), precisions=("fp32",), repeats=1, device="cpu")
    run_speed(methods=["dcn", "dkm"], db=db, **kw)
    with ResultStore(db) as store:
        rows = store.speed_rows()
    assert [r["name"] for r in rows] == ["dcn", "dkm"]
    assert rows[0]["reference_samples_per_s"] == rows[1]["reference_samples_per_s"]
    assert calls == [speed.SHARED_REFERENCE_REPEATS]


@pytest.fixture(scope="module")
def unit_blobs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 16, generator=gen)
    x = (centres.repeat(40, 1) + 0.05 * torch.randn(120, 16, generator=gen)).clamp(0, 1)
    return x


def _same_loss(reference_loss, module_loss, xb: torch.Tensor) -> None:
    torch.manual_seed(0)
    ours = module_loss(xb)
    torch.manual_seed(0)
    theirs = reference_loss(xb)
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-6), (float(theirs), float(ours))


def test_kdae_and_damic_references_are_the_methods_own_step(unit_blobs):
    """The bare loop of k-DAE / DAMIC computes the loss their modules train on (eqs. 1 and 5),
    so the speed ratio compares like with like (issue 33)."""
    import copy

    from aeclust import DAMIC, KDAE
    from aeclust.bench.speed import _damic_reference, _kdae_reference
    from aeclust.methods.kdae import DAMICModule, KDAEModule

    x = unit_blobs
    kw = dict(autoencoder=[8, 2], cluster_autoencoder=[8, 2], pretrain_epochs=2, n_init=2)
    kw.update(cluster_pretrain_epochs=1, epochs=1, batch_size=32, device="cpu", random_state=0)
    kdae = KDAE(3, **kw).fit(x.numpy())
    params, reference, what = _kdae_reference(kdae)
    assert "k batched autoencoders" in what
    assert {id(p) for p in params}.isdisjoint(id(p) for p in kdae.autoencoders_.parameters())
    module = KDAEModule(
        copy.deepcopy(kdae.autoencoders_).train(),
        torch.zeros(120, dtype=torch.long),
        loss="hard",
        distance="squared",
        reseed_noise=0.0,
        generator=torch.Generator(),
    )
    _same_loss(reference, lambda xb: module.training_step(torch.arange(32), xb), x[:32])

    damic = DAMIC(3, **kw).fit(x.numpy())
    params, reference, what = _damic_reference(damic)
    assert len(params) == len(list(damic.autoencoders_.parameters())) + len(
        list(damic.gate_.parameters())
    )
    module = DAMICModule(
        copy.deepcopy(damic.autoencoders_).train(),
        copy.deepcopy(damic.gate_).train(),
        distance="squared",
    )
    _same_loss(reference, lambda xb: module.training_step(torch.arange(32), xb), x[:32])


def test_icae_reference_is_the_methods_own_step(unit_blobs):
    """Without the random parts (views, latent noise), ICAE's bare loop and ICAEModule give the
    same loss: the same terms, weights and scales (eq. 7)."""
    import copy

    from aeclust import ICAE
    from aeclust.bench.speed import _icae_reference

    x = unit_blobs
    icae = ICAE(
        3,
        channels=(4, 8),
        embedding_dim=8,
        epochs=1,
        batch_size=32,
        augment=False,
        latent_noise=0.0,
        device="cpu",
        random_state=0,
    ).fit(x.numpy())
    _, reference, what = _icae_reference(icae)
    assert "0 augmented views" in what
    module = icae._icae_module(
        copy.deepcopy(icae.autoencoder_).train(), torch.from_numpy(icae.cluster_centers_), 0
    )
    _same_loss(reference, lambda xb: module.training_step(torch.arange(32), xb)[0], x[:32])


def test_methods_on_one_network_share_one_bare_reference(monkeypatch):
    from types import SimpleNamespace

    from aeclust.bench import speed
    from aeclust.nn import build_autoencoder

    calls = []
    monkeypatch.setattr(
        speed, "_best_rate", lambda fn, n, repeats, device: calls.append(repeats) or 100.0 + n
    )
    x = torch.zeros(40, 6)
    ae = build_autoencoder([8, 3], 6)
    other = build_autoencoder([8, 2], 6)
    shared: dict = {}
    dec = speed._reference_rate("dec", SimpleNamespace(autoencoder_=ae), x, 1, shared)
    dcn = speed._reference_rate("dcn", SimpleNamespace(autoencoder_=ae), x, 1, shared)
    assert dec == dcn and calls == [speed.SHARED_REFERENCE_REPEATS]  # measured once, carefully
    assert "shared by the methods" in dec[1]
    speed._reference_rate("dkm", SimpleNamespace(autoencoder_=other), x, 1, shared)
    speed._reference_rate("ct", SimpleNamespace(autoencoder_=ae, batch_size=16), x, 1, shared)
    assert len(calls) == 3  # another network, another batch size: measured for themselves
    speed._reference_rate("dec", SimpleNamespace(autoencoder_=ae), x, 1)
    assert calls[-1] == 1  # without a shared table: the repeats asked for
