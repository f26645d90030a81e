"""What a fit will cost before it runs: a timed probe, and what the benchmark measured.

:func:`estimate_fit_cost` runs the estimator's own ``fit`` once with every training stage cut to
a few steps (:func:`aeclust.training.probing_cost`): the whole-data work (k-means, kNN graphs,
target refreshes between stages) runs at full size and is timed as it is, and each training
stage's steps are timed and multiplied by the steps the real fit would take. The estimate counts
the method's work as it will run on this machine and device, whatever the method.

:func:`measured_settings` reads the benchmark's committed runs (``benchmarks/results/runs.jsonl``
in a checkout) for the settings of a method that were measured on a data set, with their
accuracy and wall time, so a user can see what a cheaper setting costs in accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from aeclust.diagnostics import DegenerateClusteringWarning
from aeclust.training import StageCost, probing_cost

__all__ = [
    "LENGTH_PARAMS",
    "FitCost",
    "MeasuredSetting",
    "default_runs_file",
    "estimate_fit_cost",
    "format_duration",
    "measured_settings",
    "shorter_settings",
]

logger = logging.getLogger(__name__)

#: Parameters that say where or how a run is reported, not what it computes.
_NOT_A_SETTING = frozenset({"n_clusters", "random_state", "device", "pretrain_cache", "verbose"})

#: Parameters that set how long a method trains (epochs, iterations, repetitions of a stage).
LENGTH_PARAMS = (
    "pretrain_epochs",
    "epochs",
    "max_iter",
    "cluster_pretrain_epochs",
    "shift_epochs",
    "epochs_per_alpha",
)


def format_duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``14.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class FitCost:
    """An estimate of one fit's wall time (:func:`estimate_fit_cost`).

    Attributes
    ----------
    seconds : float
        Projected wall time of the whole fit.
    fixed_seconds : float
        The part that runs once whatever the training length (whole-data steps between
        training stages, measured at full size in the probe).
    stages : list of StageCost
        Each training stage's projection (planned steps x seconds per step, plus its per-epoch
        hooks).
    probe_seconds : float
        What the probe itself took.
    device : str
    """

    seconds: float
    fixed_seconds: float
    stages: list[StageCost]
    probe_seconds: float
    device: str

    def summary(self) -> str:
        """One line: the total and the stages that make it."""
        parts = ", ".join(
            f"{s.desc} {format_duration(s.seconds)} ({s.planned_steps:,} steps)"
            for s in _merged_stages(self.stages)
        )
        fixed = f", other work {format_duration(self.fixed_seconds)}"
        return (
            f"estimated fit time on this machine ({self.device}): about "
            f"{format_duration(self.seconds)} [{parts}{fixed}; probe took "
            f"{format_duration(self.probe_seconds)}]"
        )


def _merged_stages(stages: Sequence[StageCost]) -> list[StageCost]:
    """Stages of the same label added up (k-DAE trains one network per cluster, DKM one stage
    per alpha), in first-seen order."""
    merged: dict[str, StageCost] = {}
    for s in stages:
        if s.desc not in merged:
            merged[s.desc] = StageCost(s.desc, 0, 0, 0, 0.0, 0.0, 0.0)
        m = merged[s.desc]
        seconds = m.seconds + s.seconds
        m.planned_steps += s.planned_steps
        m.planned_epochs += s.planned_epochs
        m.probed_steps += s.probed_steps
        m.probed_seconds += s.probed_seconds
        # keep ``seconds`` exact: fold everything into the per-step figure
        m.epoch_seconds = 0.0
        m.planned_epochs = 0
        m.step_seconds = seconds / m.planned_steps if m.planned_steps else 0.0
        if not m.planned_steps:
            m.epoch_seconds, m.planned_epochs = seconds, 1
    return list(merged.values())


def shorter_settings(estimator: Any, cost: FitCost, budget_seconds: float) -> dict[str, int]:
    """Training lengths scaled down so that ``cost`` projects to at most ``budget_seconds``.

    Every length parameter the estimator has (:data:`LENGTH_PARAMS`) is scaled by one factor,
    so the projection is ``fixed + factor x training``; the fixed work cannot be scaled.

    Returns
    -------
    dict
        Parameter to shorter value; empty when the fixed work alone is over the budget or the
        estimator has no length parameter.
    """
    training = cost.seconds - cost.fixed_seconds
    if training <= 0 or cost.fixed_seconds >= budget_seconds:
        return {}
    factor = min(1.0, (budget_seconds - cost.fixed_seconds) / training)
    params = estimator.get_params(deep=False)
    if params.get("pretrain_epochs") in ("auto", "steps"):
        # the epochs "auto" / "steps" resolved to on this data: the probe's planned pretraining
        params["pretrain_epochs"] = next(
            (s.planned_epochs for s in cost.stages if s.desc == "pretrain"), None
        )
    return {
        name: max(1, int(params[name] * factor))
        for name in LENGTH_PARAMS
        if isinstance(params.get(name), int) and params[name] > 1
    }


def estimate_fit_cost(
    estimator: Any,
    X: Any,
    *,
    probe_steps: int = 4,
    clock: Callable[[], float] = time.perf_counter,
) -> FitCost:
    """Estimate the wall time of ``clone(estimator).fit(X)`` on this machine, by a short probe.

    The probe is the estimator's own ``fit`` on ``X`` (a clone: the estimator is not changed)
    with each training stage cut to ``probe_steps`` steps. What it does not count: a stage that
    stops early in the real fit (early stopping, DEC's convergence test) is projected at its
    full length, so the estimate is an upper bound there; work a method does every few steps
    inside a step (DEC's target refresh every ``update_interval`` steps) is counted once.

    Parameters
    ----------
    estimator : BaseDeepClusterer
        Configured, not necessarily fitted.
    X : array-like of shape (n_samples, n_features)
        The data the fit will see.
    probe_steps : int, default=4
        Steps per training stage in the probe (the first is a warm-up, not timed).
    clock : callable, default=time.perf_counter
        The timer: wall time by default; ``time.process_time`` projects CPU time, which other
        processes on the machine do not change (the tests use it).

    Returns
    -------
    FitCost
    """
    probe_est = clone(estimator)
    if hasattr(probe_est, "verbose"):
        probe_est.set_params(verbose=False)
    start = clock()
    with probing_cost(probe_steps, clock=clock) as probe, warnings.catch_warnings():
        # a partition after a few steps is not the fit's: its degeneracy means nothing
        warnings.simplefilter("ignore", DegenerateClusteringWarning)
        probe_est.fit(X)
    wall = clock() - start
    stages = list(probe.stages)
    fixed = max(0.0, wall - sum(s.probed_seconds for s in stages))
    total = fixed + sum(s.seconds for s in stages)
    device = str(probe_est._fitted_device()) if hasattr(probe_est, "_fitted_device") else "cpu"
    return FitCost(total, fixed, stages, wall, device)


@dataclass
class MeasuredSetting:
    """A setting of a method that the benchmark ran on a data set, and what it gave.

    Attributes
    ----------
    params : dict
        The parameters that differ from the estimator the user configured.
    acc : list of float
        ACC of each seed.
    seconds : list of float
        Wall time of each seed (pretraining + fit).
    machines : list of str
        The CPU / GPU of the runs.
    sources : list of str
        ``protocol/variant`` of the runs.
    """

    params: dict[str, Any]
    acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def line(self) -> str:
        """How the CLI prints it."""
        settings = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        acc = f"ACC {np.mean(self.acc):.3f}"
        if len(self.acc) > 1:
            acc += f" ± {np.std(self.acc):.3f}"
        where = ", ".join(sorted(set(self.machines)))
        took = (
            f"{format_duration(float(np.median(self.seconds)))} a seed on {where}"
            if self.seconds
            else f"on {where}"
        )
        seeds = f"{len(self.acc)} seed{'s' if len(self.acc) > 1 else ''}"
        return (
            f"{'--param ' + settings if settings else '(these settings)'}: {acc} ({seeds}, "
            f"{took}; {', '.join(sorted(set(self.sources)))})"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) and " " in value else str(value)


def default_runs_file() -> Path | None:
    """The committed benchmark runs of a source checkout, if there is one."""
    env = os.environ.get("AECLUST_RUNS")
    if env:
        return Path(env)
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "runs.jsonl"
    return path if path.is_file() else None


def measured_settings(
    estimator: Any, data_name: str, runs_file: str | os.PathLike | None = None
) -> list[MeasuredSetting]:
    """What the benchmark measured for this method on this data set, setting by setting.

    Runs are grouped by their full parameter set (the seed, device and precision aside); each
    group is shown by the parameters in which it differs from ``estimator``.

    Parameters
    ----------
    estimator : BaseDeepClusterer
        The configuration the user is about to run.
    data_name : str
        Registry name of the data set (``"mnist_test"``); runs on other data are not shown.
    runs_file : path, optional
        A JSON-lines export of the results store (default: :func:`default_runs_file`).

    Returns
    -------
    list of MeasuredSetting
        Fastest first; empty when there is no runs file or no run of the method on the data.
    """
    from aeclust.methods import METHODS

    path = Path(runs_file) if runs_file is not None else default_runs_file()
    if path is None or not path.is_file():
        return []
    names = {name for name, cls in METHODS.items() if cls is type(estimator)}
    mine = {k: v for k, v in estimator.get_params(deep=False).items() if k not in _NOT_A_SETTING}
    groups: dict[str, MeasuredSetting] = defaultdict(lambda: MeasuredSetting({}))
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            row = record.get("row", {})
            if record.get("table") != "runs" or row.get("data_name") != data_name:
                continue
            if row.get("estimator") not in names or row.get("acc") is None:
                continue
            config = json.loads(row.get("config_json") or "{}")
            params = {k: v for k, v in config.get("params", {}).items() if k not in _NOT_A_SETTING}
            diff = {k: v for k, v in params.items() if _differs(mine.get(k), v)}
            key = json.dumps(diff, sort_keys=True, default=str)
            group = groups[key]
            group.params = diff
            group.acc.append(float(row["acc"]))
            if row.get("pretrain_cached") != 1:  # a cached pretraining's time is not in the run
                group.seconds.append(
                    float(row.get("fit_seconds") or 0) + float(row.get("pretrain_seconds") or 0)
                )
            machine = json.loads(row.get("machine_json") or "{}")
            group.machines.append(str(machine.get("gpu") or machine.get("cpu") or "?"))
            group.sources.append(f"{row.get('protocol')}/{row.get('variant')}")
    return sorted(
        groups.values(), key=lambda g: float(np.median(g.seconds)) if g.seconds else math.inf
    )


def _differs(mine: Any, theirs: Any) -> bool:
    if isinstance(mine, tuple):
        mine = list(mine)
    if isinstance(mine, float) or isinstance(theirs, float):
        try:
            return not math.isclose(float(mine), float(theirs), rel_tol=1e-9)
        except (TypeError, ValueError):
            return True
    return mine != theirs
