"""The cost estimate: a probe of a few steps, projected; measured settings from the runs file."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from aeclust import DEC, AEKMeans
from aeclust.cli import main
from aeclust.cost import estimate_fit_cost, measured_settings, shorter_settings
from aeclust.training import Trainer, make_optimizer, probing_cost


@pytest.fixture
def one_thread():
    """torch on one thread for the test, then as before."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "est",
    [
        AEKMeans(n_clusters=10, pretrain_epochs=12, batch_size=64, device="cpu", random_state=0),
        DEC(
            n_clusters=10,
            pretrain_epochs=4,
            max_iter=600,
            tol=0.0,
            batch_size=64,
            device="cpu",
            random_state=0,
        ),
    ],
    ids=["AEKMeans", "DEC"],
)
def test_estimate_is_within_twice_the_measured_time(est, digits, one_thread):
    # CPU time of this process, for the probe and the fit alike: the projection is what is
    # tested, and another process on the machine would change wall time, not CPU time. One
    # thread: with two, OpenMP's workers spin (and count CPU time) while another process holds
    # the other core, which made a probe of a few steps look up to 10x dearer on a busy machine.
    x, _ = digits
    cost = estimate_fit_cost(est, x, clock=time.process_time)
    start = time.process_time()
    est.fit(x)
    measured = time.process_time() - start
    assert measured / 2 <= cost.seconds <= 2 * measured, (cost.summary(), measured)
    # the probe costs a small part of the fit
    assert cost.probe_seconds < measured / 3


def test_probe_projects_the_planned_steps_and_persists_nothing(digits, tmp_path):
    x, _ = digits
    est = AEKMeans(
        n_clusters=10,
        pretrain_epochs=7,
        batch_size=100,
        pretrain_cache=str(tmp_path),
        device="cpu",
        random_state=0,
    )
    cost = estimate_fit_cost(est, x, probe_steps=3)
    [stage] = cost.stages
    assert stage.desc == "pretrain"
    assert stage.planned_steps == 7 * int(np.ceil(len(x) / 100)) and stage.planned_epochs == 7
    assert stage.probed_steps == 3 and stage.step_seconds > 0
    assert cost.seconds > cost.fixed_seconds
    assert not list(tmp_path.iterdir())  # a probe's few steps never enter the cache
    assert not hasattr(est, "labels_")  # the estimator itself is not fitted


def test_probing_cuts_a_trainer_and_keeps_a_history():
    net = __import__("torch").nn.Linear(3, 1)
    x = __import__("torch").randn(64, 3)
    trainer = Trainer(net, make_optimizer(net.parameters()), epochs=50, batch_size=8)
    with probing_cost(5) as probe:
        history = trainer.run([x], lambda idx, xb: net(xb).pow(2).mean())
    assert trainer.n_steps == 5 and len(history) == 1
    assert probe.stages[0].planned_steps == 50 * 8
    with pytest.raises(ValueError, match="steps"):
        with probing_cost(1):
            pass


def test_shorter_settings_scale_every_length_to_the_budget():
    from aeclust.cost import FitCost
    from aeclust.training import StageCost

    est = DEC(n_clusters=3, pretrain_epochs=200, max_iter=10000)
    stage = StageCost("DEC", 1000, 10, 4, 0.9, 0.0, 1.0)  # 900 s of training
    cost = FitCost(1000.0, fixed_seconds=100.0, stages=[stage], probe_seconds=2, device="cpu")
    assert shorter_settings(est, cost, 550.0) == {"pretrain_epochs": 100, "max_iter": 5000}
    assert shorter_settings(est, cost, 50.0) == {}  # the fixed work alone is over the budget


def test_shorter_settings_scale_the_epochs_auto_resolved_to():
    from aeclust.cost import FitCost
    from aeclust.training import StageCost

    # "auto" is a word, not a length: the probe's planned pretraining (1,600 epochs) is scaled
    pretrain = StageCost("pretrain", 3200, 1600, 4, 0.25, 0.0, 1.0)  # 800 s
    stage = StageCost("DEC", 1000, 10, 4, 0.1, 0.0, 1.0)  # 100 s
    cost = FitCost(
        1000.0, fixed_seconds=100.0, stages=[pretrain, stage], probe_seconds=2, device="cpu"
    )
    est = DEC(n_clusters=3, max_iter=10000)
    assert est.pretrain_epochs == "auto"
    assert shorter_settings(est, cost, 550.0) == {"pretrain_epochs": 800, "max_iter": 5000}


def _run(method, data, params, acc, seconds, protocol="p", variant="quick"):
    config = {"params": {**params, "n_clusters": 10, "random_state": 0, "device": "cpu"}}
    row = {
        "estimator": method,
        "data_name": data,
        "acc": acc,
        "fit_seconds": seconds,
        "pretrain_seconds": None,
        "pretrain_cached": None,
        "config_json": json.dumps(config),
        "machine_json": json.dumps({"cpu": "CPU-X", "gpu": None}),
        "protocol": protocol,
        "variant": variant,
    }
    return json.dumps({"table": "runs", "row": row})


def test_measured_settings_group_runs_by_what_differs(tmp_path):
    runs = tmp_path / "runs.jsonl"
    lines = [
        _run("dec", "usps", {"max_iter": 3000}, 0.70, 60.0),
        _run("dec", "usps", {"max_iter": 3000}, 0.74, 62.0),
        _run("dec", "usps", {"max_iter": 20000}, 0.78, 400.0, variant="full"),
        _run("dec", "mnist_test", {"max_iter": 3000}, 0.5, 10.0),  # other data
        _run("idec", "usps", {"max_iter": 3000}, 0.9, 10.0),  # other method
    ]
    runs.write_text("\n".join(lines) + "\n")
    found = measured_settings(DEC(n_clusters=10, max_iter=20000), "usps", runs)
    assert [s.params for s in found] == [{"max_iter": 3000}, {}]  # fastest first
    assert found[0].acc == [0.70, 0.74] and found[1].acc == [0.78]
    assert "--param max_iter=3000: ACC 0.720 ± 0.020 (2 seeds" in found[0].line()
    assert found[1].line().startswith("(these settings): ACC 0.780 (1 seed")
    assert measured_settings(DEC(n_clusters=10), "usps", tmp_path / "absent.jsonl") == []


def test_cli_prints_the_estimate_before_fitting(digits, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["cluster", "--dataset", "digits", "--method", "ae-kmeans", "--device", "cpu"]
    args += ["--param", "pretrain_epochs=400", "--estimate-only", "--estimate-threshold", "0.05"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "estimated fit time on this machine (cpu): about" in out
    assert "cheaper settings" in out and "--param pretrain_epochs=" in out
    assert not list(tmp_path.iterdir())  # --estimate-only fits nothing and writes nothing
