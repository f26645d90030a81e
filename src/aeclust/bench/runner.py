"""Run a protocol: every (data set, seed, method) cell, timed, evaluated and stored.

For each data set and seed, every method is built from :data:`aeclust.methods.METHODS` with the
protocol's parameters plus ``n_clusters``, ``random_state``, ``device``, ``precision`` and a
shared ``pretrain_cache``, so methods with the same seed start from the same pretrained network.
Deep estimators are pretrained first (:meth:`~aeclust.methods.BaseDeepClusterer.pretrain`, timed
on its own; a cache hit is fast), then fitted (timed). Labels are used only to evaluate. Cells
already in the results store are skipped, so an interrupted run restarted finishes the rest.

A ``kind = "classification"`` protocol (the dAE paper's Tables 4-5) is run by
:mod:`aeclust.evaluation`: each seed is one train / test split of the data set (the column's
``split``); the protocol's encoders (``[methods.*]``, ``estimator = "pixels"`` or ``"dae"``) are
fitted on the training part only, representations with the same encoder parameters share one
fit (``stage = 0`` reads the standard AE codes of that fit), and every classifier of
``[classifiers.*]`` is scored on the test part. One row is stored per ``<method>-<classifier>``
cell: ``acc`` is the test accuracy, ``nmi`` / ``ari`` compare the test predictions with the
labels, ``fit_seconds`` is the encoder's fit, ``history_json`` the accuracy after each shift
(``[{"stage": 0, "acc": ...}, ...]``, the paper's Figs. 3-4) and ``pretrain_history_json`` the
encoder's own ``history_``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aeclust.bench.env import (
    git_commit,
    machine_info,
    peak_memory_mb,
    reset_peak_memory,
    versions,
)
from aeclust.bench.protocol import Protocol, ProtocolError, load_protocol
from aeclust.bench.store import DEFAULT_DB, ResultStore, utc_now

__all__ = [
    "CellResult",
    "RunSummary",
    "UnsupportedProtocolError",
    "format_command",
    "run_protocol",
]

logger = logging.getLogger(__name__)

#: Runner parameters that do not change a result (left out of the configuration hash).
_NOT_HASHED = ("pretrain_cache", "verbose")

#: How often (seconds) a cell's resumable training stage is checkpointed under
#: ``<results>/checkpoints/`` (see :func:`aeclust.training.checkpointing`).
CHECKPOINT_INTERVAL_S = 120.0


def _discard_checkpoints(folder: Path, root: Path) -> None:
    """Delete a stored cell's checkpoint folder and its parents below ``root`` left empty."""
    shutil.rmtree(folder, ignore_errors=True)  # the cell is stored: nothing there is needed
    for parent in folder.parents:
        if parent == root or root not in parent.parents:
            break
        try:
            parent.rmdir()  # only succeeds when empty (other cells may still be running)
        except OSError:
            break


class UnsupportedProtocolError(ProtocolError):
    """The protocol's kind cannot be run (kept for callers; every kind in ``KINDS`` runs now)."""


@dataclass(frozen=True)
class CellResult:
    """The outcome of one finished cell (also stored in the database)."""

    protocol: str
    variant: str
    method: str
    dataset: str
    seed: int
    data_name: str
    acc: float
    nmi: float
    ari: float
    silhouette: float
    pretrain_seconds: float | None
    fit_seconds: float


@dataclass
class RunSummary:
    """What :func:`run_protocol` did.

    Attributes
    ----------
    protocol, variant : str
    db : Path
        The results database.
    seeds : list of int
    completed : list of CellResult
        Cells run now.
    already_done : list of tuple
        Cells found in the database and skipped.
    skipped_methods : dict
        Row -> reason (not registered yet, parameter names not accepted, ...).
    skipped_datasets : dict
        Column -> reason (file missing, paper-only column, ...).
    failures : list of (cell, message)
        Cells that raised; they are retried by the next run.
    command : str
        The command line recorded with each row.
    """

    protocol: str
    variant: str
    db: Path
    seeds: list[int]
    command: str
    completed: list[CellResult] = field(default_factory=list)
    already_done: list[tuple] = field(default_factory=list)
    skipped_methods: dict[str, str] = field(default_factory=dict)
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[tuple, str]] = field(default_factory=list)


@dataclass
class _Data:
    key: str
    name: str
    x: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, int, int] | None
    n_clusters: int
    substitute: bool


class _ParamMismatch(ValueError):
    pass


def format_command(
    protocol: str,
    *,
    quick: bool = False,
    seeds: int | None = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    db: str | os.PathLike[str] | None = None,
    plots: bool = True,
    first_seed: int = 0,
) -> str:
    """The ``aeclust bench`` command line equivalent to a :func:`run_protocol` call.

    ``AECLUST_DATA`` is prefixed when it is set, so the command says where the data came from.
    """
    parts = ["aeclust", "bench", str(protocol)]
    if quick:
        parts.append("--quick")
    if seeds is not None:
        parts += ["--seeds", str(seeds)]
    if first_seed:
        parts += ["--first-seed", str(first_seed)]
    if methods:
        parts += ["--methods", ",".join(methods)]
    if datasets:
        parts += ["--datasets", ",".join(datasets)]
    if device != "auto":
        parts += ["--device", device]
    if precision != "fp32":
        parts += ["--precision", precision]
    if db is not None and Path(db) != DEFAULT_DB:
        parts += ["--db", str(db)]
    if not plots:
        parts.append("--no-plots")
    env = os.environ.get("AECLUST_DATA", "").strip()
    prefix = f"AECLUST_DATA={shlex.quote(env)} " if env else ""
    return prefix + shlex.join(parts)


def _select(
    requested: Sequence[str] | None, available: list[str], what: str, aliases: dict[str, str]
) -> list[str]:
    if not requested:
        return list(available)
    chosen: list[str] = []
    for name in requested:
        key = name if name in available else aliases.get(name)
        if key is None:
            raise ValueError(
                f"unknown {what} {name!r} for this protocol variant; valid: "
                f"{', '.join(available) or 'none'}"
            )
        if key not in chosen:
            chosen.append(key)
    return chosen


def _downsample(
    x: np.ndarray, image_shape: tuple[int, int, int] | None, factor: int
) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    if factor == 1:
        return x, image_shape
    if image_shape is None:
        raise ValueError("downsample needs image data (the data set has no image_shape)")
    c, h, w = image_shape
    if h % factor or w % factor:
        raise ValueError(f"downsample {factor} does not divide the image size {h}x{w}")
    imgs = x.reshape(len(x), c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    shape = (c, h // factor, w // factor)
    return np.ascontiguousarray(imgs.reshape(len(x), -1), dtype=np.float32), shape


def _value_range_entry(proto: Protocol, key: str) -> dict[str, str]:
    """``{"value_range": ...}`` for a column that changes it, else nothing, so that the stored
    configurations and hashes of every other cell stay as they were."""
    value_range = proto.datasets[key].value_range
    return {} if value_range == "unit" else {"value_range": value_range}


def _load(proto: Protocol, key: str, quick: bool, data_home: Any, download: bool) -> _Data:
    from aeclust.datasets import load_dataset

    spec = proto.datasets[key]
    name = proto.data_name(key, quick)
    ds = load_dataset(name, data_home, download=download)
    if ds.y is None:
        raise ValueError(f"{name} has no labels to evaluate against")
    x, shape = _downsample(ds.x, ds.image_shape, spec.downsample or 1)
    if spec.value_range == "symmetric":
        x = 2.0 * x - 1.0
    n_clusters = spec.n_clusters or int(ds.n_classes or len(np.unique(ds.y)))
    return _Data(key, name, x, ds.y, shape, n_clusters, proto.is_substitute(key, quick))


def _merged_params(
    cls: type, proto: Protocol, row: str, key: str, quick: bool
) -> tuple[dict, list[str], dict]:
    """A cell's constructor arguments from the protocol: the shared ones the estimator accepts,
    then its own (every one must be accepted); also the shared keys ignored and the valid ones."""
    valid = cls().get_params()
    shared, own = proto.cell_params(row, key, quick)
    unknown = sorted(set(own) - set(valid))
    if unknown:
        raise _ParamMismatch(
            f"{cls.__name__} does not accept {unknown} (set in the protocol for {row}); "
            f"valid: {', '.join(sorted(valid))}"
        )
    params = {k: v for k, v in shared.items() if k in valid}
    ignored = sorted(k for k in shared if k not in valid and k not in own)
    params.update(own)
    return params, ignored, valid


def _load_or_skip(
    proto: Protocol, key: str, quick: bool, data_home: Any, download: bool, summary: RunSummary
) -> _Data | None:
    """Load a column's data, or record why it is skipped and return None."""
    try:
        return _load(proto, key, quick, data_home, download)
    except Exception as exc:  # missing file, no download, bad npz: skip the column
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        logger.warning("skipping dataset %s: %s", key, message)
        summary.skipped_datasets[key] = message
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _history(est: Any, attr: str) -> tuple[str | None, int | None]:
    value = getattr(est, attr, None)
    if value is None:
        return None, None
    try:
        n = len(value)
    except TypeError:
        n = None
    return json.dumps(_json_safe(value)), n


class _Runner:
    def __init__(
        self,
        proto: Protocol,
        quick: bool,
        store: ResultStore,
        *,
        device: str,
        precision: str,
        results_dir: Path,
        plots: bool,
        command: str,
        verbose: bool,
        summary: RunSummary,
        on_cell: Callable[[CellResult], None] | None,
    ) -> None:
        from aeclust._utils import resolve_device, resolve_precision

        self.proto = proto
        self.quick = quick
        self.variant = "quick" if quick else "full"
        self.store = store
        self.device = device
        self.torch_device = resolve_device(device)  # fails early on an unusable device
        resolve_precision(precision, self.torch_device)
        self.precision = precision
        self.results_dir = results_dir
        self.cache_dir = results_dir / "cache" / "pretrained"
        #: seconds between two checkpoints of a cell's long training stage
        self.checkpoint_interval_s = CHECKPOINT_INTERVAL_S
        self.plots = plots
        self.command = command
        self.verbose = verbose
        self.summary = summary
        self.on_cell = on_cell
        self.versions = versions()
        self.commit = git_commit()
        self.machine = machine_info()
        self._warned: set[str] = set()

    # -- parameters -----------------------------------------------------------------------------
    def params(self, row: str, data: _Data, seed: int) -> tuple[type, dict, list[str]]:
        from aeclust.methods import METHODS, estimator_params

        spec = self.proto.methods[row]
        params, ignored, _ = _merged_params(
            METHODS[spec.estimator], self.proto, row, data.key, self.quick
        )
        params["n_clusters"] = data.n_clusters
        params["random_state"] = seed
        cls, params = estimator_params(
            spec.estimator,
            params,
            device=self.device,
            precision=self.precision,
            pretrain_cache=str(self.cache_dir),
            verbose=self.verbose,
            image_shape=tuple(data.image_shape) if data.image_shape is not None else None,
        )
        return cls, params, ignored

    def check_rows(self, rows: list[str], keys: list[str]) -> list[str]:
        """Drop rows whose estimator rejects the protocol's parameter names (the protocol's
        validation has checked that every estimator is registered)."""
        from aeclust.methods import METHODS

        kept = []
        for row in rows:
            cls = METHODS[self.proto.methods[row].estimator]
            valid = set(cls().get_params())
            problem = None
            for key in keys:
                _, own = self.proto.cell_params(row, key, self.quick)
                unknown = sorted(set(own) - valid)
                if unknown:
                    problem = (
                        f"{cls.__name__} does not accept {unknown} (protocol parameters for "
                        f"{row}/{key}); valid: {', '.join(sorted(valid))}"
                    )
                    break
            if problem:
                logger.warning("skipping %s: %s", row, problem)
                self.summary.skipped_methods[row] = problem
                continue
            kept.append(row)
        return kept

    # -- one cell -------------------------------------------------------------------------------
    def config(self, row: str, cls: type, params: dict, ignored: list[str], data: _Data) -> dict:
        return {
            "protocol": self.proto.name,
            "protocol_fingerprint": self.proto.fingerprint,
            "variant": self.variant,
            "method": row,
            "estimator": self.proto.methods[row].estimator,
            "class": cls.__name__,
            "params": _json_safe(params),
            "ignored_shared_params": ignored,
            "dataset": {
                "key": data.key,
                "name": data.name,
                "downsample": self.proto.datasets[data.key].downsample,
                **_value_range_entry(self.proto, data.key),
                "n_samples": int(data.x.shape[0]),
                "n_features": int(data.x.shape[1]),
                "image_shape": list(data.image_shape) if data.image_shape else None,
                "n_clusters": data.n_clusters,
                "substitute": data.substitute,
            },
            "nmi_average": self.proto.nmi_average,
        }

    def checkpoint_dir(self, row: str, data: _Data, seed: int, params: dict) -> Path:
        """The folder of one cell's training checkpoints (unique per configuration)."""
        digest = self.config_hash(row, params, data.name, data.key)
        cell = f"{row}-{data.key}-seed{seed}-{digest}"
        return self.results_dir / "checkpoints" / self.proto.name / self.variant / cell

    def config_hash(self, row: str, params: dict, data_name: str, key: str) -> str:
        """Hash of what determines a cell's result (not where files go or what is printed)."""
        payload = {
            "estimator": self.proto.methods[row].estimator,
            "params": {k: v for k, v in _json_safe(params).items() if k not in _NOT_HASHED},
            "data": data_name,
            "downsample": self.proto.datasets[key].downsample,
            **_value_range_entry(self.proto, key),
            "nmi_average": self.proto.nmi_average,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def run_cell(self, row: str, data: _Data, seed: int) -> CellResult:
        import torch

        from aeclust.metrics import evaluate, silhouette
        from aeclust.training import checkpointing

        cls, params, ignored = self.params(row, data, seed)
        if ignored and getattr(cls, "deep", True) and "pretrain_epochs" in params:
            tag = f"ignored:{row}"
            if tag not in self._warned:
                self._warned.add(tag)
                logger.warning(
                    "%s does not accept the shared pretraining parameter(s) %s: its pretrained "
                    "network may differ from the other methods'",
                    cls.__name__,
                    ignored,
                )
        config = self.config(row, cls, params, ignored, data)
        est = cls(**params)
        dev = self.torch_device

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        reset_peak_memory(dev)
        started = utc_now()
        pretrain_s: float | None = None
        cached: bool | None = None
        # A cell cut off mid-fit (a lease that ends, a killed process) resumes its long stages
        # from here when the same command runs again; the folder goes once the cell is stored.
        ckpt_dir = self.checkpoint_dir(row, data, seed, params)
        with checkpointing(ckpt_dir, interval_s=self.checkpoint_interval_s):
            if getattr(cls, "deep", True) and "pretrain_epochs" in params:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                pretrained = est.pretrain(data.x, return_details=True)
                sync()
                pretrain_s = time.perf_counter() - t0
                if params.get("pretrain_epochs"):
                    cached = bool(pretrained.cached)
            t0 = time.perf_counter()
            est.fit(data.x)
            sync()
            fit_s = time.perf_counter() - t0
        peak_mb, memory_kind = peak_memory_mb(dev)

        # evaluation: the only place labels are used
        t0 = time.perf_counter()
        labels = np.asarray(est.labels_)
        scores = evaluate(data.y, labels, average_method=self.proto.nmi_average)
        embedding = None
        try:
            embedding = np.asarray(est.embed(data.x))  # where the method clusters
            sil = silhouette(embedding, labels, random_state=seed)
        except Exception as exc:  # a missing embedding must not lose the result
            logger.warning("silhouette of %s on %s failed: %s", row, data.name, exc)
            sil = float("nan")
        eval_s = time.perf_counter() - t0

        history_json, n_history = _history(est, "history_")
        pre_json, n_pre = _history(est, "pretrain_history_")
        record = {
            "protocol": self.proto.name,
            "variant": self.variant,
            "method": row,
            "dataset": data.key,
            "seed": seed,
            "estimator": self.proto.methods[row].estimator,
            "data_name": data.name,
            "substitute": int(data.substitute),
            "n_samples": int(data.x.shape[0]),
            "n_features": int(data.x.shape[1]),
            "n_clusters": data.n_clusters,
            "acc": scores["acc"],
            "nmi": scores["nmi"],
            "ari": scores["ari"],
            "purity": scores["purity"],
            "silhouette": sil,
            "nmi_average": self.proto.nmi_average,
            "pretrain_seconds": pretrain_s,
            "pretrain_cached": None if cached is None else int(cached),
            "fit_seconds": fit_s,
            "eval_seconds": eval_s,
            "peak_memory_mb": peak_mb,
            "memory_kind": memory_kind,
            "device": str(dev) + (f" ({self.machine['gpu']})" if dev.type == "cuda" else ""),
            "precision": self.precision,
            "versions_json": self.versions,
            "git_commit": self.commit,
            "machine_json": self.machine,
            "config_json": config,
            "config_hash": self.config_hash(row, params, data.name, data.key),
            "history_json": history_json,
            "pretrain_history_json": pre_json,
            "n_history": n_history,
            "n_pretrain_history": n_pre,
            "command": self.command,
            "started_at": started,
            "finished_at": utc_now(),
        }
        self.store.insert_run(record)
        _discard_checkpoints(ckpt_dir, self.results_dir / "checkpoints")
        result = CellResult(
            self.proto.name,
            self.variant,
            row,
            data.key,
            seed,
            data.name,
            scores["acc"],
            scores["nmi"],
            scores["ari"],
            sil,
            pretrain_s,
            fit_s,
        )
        if self.plots:
            self.plot(row, data, seed, est, embedding, labels)
        return result

    def _extra_figures(self, est: Any, data: _Data, row: str, seed: int = 0) -> dict[str, Any]:
        """Method-specific figures: k-DAE's per-cluster reconstructions (its paper's Fig. 2), CT's
        membership histograms (Fig. 3), CCAE's and VCC's embedding snapshots (their Fig. 2) and
        ICAE's images generated from the PEDCC centres (Fig. 3)."""
        from aeclust.bench import plots

        figures: dict[str, Any] = {}
        title = self.proto.label(row)
        if hasattr(est, "reconstructions") and data.image_shape is not None:

            def reconstructions() -> Any:
                rows = data.x[:: max(1, data.x.shape[0] // 5)][:5]
                return plots.reconstruction_figure(
                    rows, est.reconstructions(rows), data.image_shape, title
                )

            figures["reconstructions"] = reconstructions
        if hasattr(est, "initial_max_membership_") and hasattr(est, "max_membership_"):
            figures["memberships"] = lambda: plots.membership_histogram_figure(
                est.initial_max_membership_, est.max_membership_, title
            )
        snapshots = getattr(est, "embedding_snapshots_", None)
        if snapshots is not None and hasattr(est, "stage_labels_"):  # CCAE's Fig. 2
            figures["shift-snapshots"] = lambda: plots.shift_snapshots_figure(
                snapshots, est.stage_labels_, data.y, title, seed=seed
            )
        elif snapshots is not None and hasattr(est, "snapshot_epochs_"):  # VCC's Fig. 2
            figures["epoch-snapshots"] = lambda: plots.epoch_snapshots_figure(
                snapshots, est.snapshot_epochs_, data.y, title, seed=seed
            )
        if hasattr(est, "generate") and data.image_shape is not None:  # ICAE's Fig. 3
            figures["generated"] = lambda: plots.generated_grid_figure(
                est.generate(10),
                getattr(est, "image_shape_", data.image_shape),
                est.n_clusters,
                title,
            )
        return figures

    def plot(
        self,
        row: str,
        data: _Data,
        seed: int,
        est: Any,
        embedding: np.ndarray | None,
        labels: np.ndarray,
    ) -> None:
        try:
            from aeclust.bench.plots import plot_cell

            plot_cell(
                self.results_dir / "plots" / self.proto.name / data.name,
                f"{row}-seed{seed}-{self.variant}",
                embedding=embedding,
                labels=labels,
                y_true=data.y,
                histories={
                    "pretraining": getattr(est, "pretrain_history_", None),
                    "clustering": getattr(est, "history_", None),
                },
                title=f"{self.proto.label(row)} on {data.name}, seed {seed}",
                seed=seed,
                extra=self._extra_figures(est, data, row, seed),
            )
        except Exception as exc:  # plots never lose results
            logger.warning("plots of %s on %s (seed %d) failed: %s", row, data.name, seed, exc)


def run_protocol(
    protocol: str | os.PathLike[str] | Protocol,
    *,
    quick: bool = False,
    seeds: int | None = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    db: str | os.PathLike[str] = DEFAULT_DB,
    results_dir: str | os.PathLike[str] | None = None,
    plots: bool = True,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = False,
    command: str | None = None,
    verbose: bool = False,
    on_cell: Callable[[CellResult], None] | None = None,
    first_seed: int = 0,
) -> RunSummary:
    """Run a benchmark protocol and store one row per finished cell.

    Parameters
    ----------
    protocol : str, path-like or Protocol
        A protocol file, or a name found in ``benchmarks/protocols``.
    quick : bool, default=False
        The CPU variant (``[quick]``: smaller data sets, fewer epochs and seeds).
    seeds : int, optional
        Number of seeds (``first_seed``, ..., ``first_seed + seeds - 1``); default: the variant's
        count.
    methods : sequence of str, optional
        Method rows to run (default: all of the protocol's).
    datasets : sequence of str, optional
        Data-set columns to run, by key or by the registry name the variant loads.
    device : str, default="auto"
        ``auto``, ``cpu`` or ``cuda[:N]``.
    precision : {"fp32", "bf16", "auto"}, default="fp32"
    db : path-like, default="results/aeclust.db"
        Results database.
    results_dir : path-like, optional
        Folder of the pretraining cache (``cache/pretrained``) and the plots (``plots``);
        default: the database's folder.
    plots : bool, default=True
        Write the figures of each cell.
    data_home : path-like, optional
        Dataset folder (default ``$AECLUST_DATA``).
    download : bool, default=False
        Download missing data sets (otherwise they are skipped with a warning).
    command : str, optional
        Command line stored with each row (default: the equivalent ``aeclust bench`` command).
    verbose : bool, default=False
        Progress bars of the estimators.
    on_cell : callable, optional
        Called with each :class:`CellResult` once it is stored.
    first_seed : int, default=0
        The first seed. Lets one protocol's seeds run as separate processes (one per seed on a
        machine with room for several) into separate databases that are merged afterwards.

    Returns
    -------
    RunSummary

    Raises
    ------
    ProtocolError
        If the protocol cannot be found or is invalid.
    UnsupportedProtocolError
        For a ``classification`` protocol (its paper numbers are still stored for the report).
    ValueError
        On an unknown method or data set name, or an unusable device or precision.
    KeyboardInterrupt
        Passed on; every cell finished before it is in the database.
    """
    from aeclust._utils import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    base = load_protocol(protocol)
    proto = base.at_precision(precision)
    variant = "quick" if quick else "full"
    if seeds is not None and (isinstance(seeds, bool) or int(seeds) < 1):
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if isinstance(first_seed, bool) or int(first_seed) < 0:
        raise ValueError(f"first_seed must be a non-negative integer, got {first_seed!r}")
    if plots:  # before any cell runs, not after the first one's training
        from aeclust.bench.plots import require_matplotlib

        require_matplotlib()
    db_path = Path(db)
    results = Path(results_dir) if results_dir is not None else db_path.parent
    if command is None:
        command = format_command(
            base.name,
            quick=quick,
            seeds=seeds,
            methods=methods,
            datasets=datasets,
            device=device,
            precision=precision,
            db=db,
            plots=plots,
            first_seed=first_seed,
        )
    if proto.kind == "classification":
        cells = proto.classification_cells()
        groups = {m: [r for r, (mm, _) in cells.items() if mm == m] for m in proto.methods}
        picked = _select(methods, [*proto.methods, *cells], "method or row", {})
        rows = list(dict.fromkeys(r for p in picked for r in groups.get(p, [p])))
    else:
        rows = _select(methods, list(proto.methods), "method", {})
    keys_all = proto.dataset_keys(quick)
    aliases = {proto.data_name(k, quick): k for k in keys_all}
    keys = _select(datasets, keys_all, "dataset", aliases)
    n_seeds = int(seeds) if seeds is not None else proto.seeds_for(quick)
    seed_list = list(range(int(first_seed), int(first_seed) + n_seeds))

    with ResultStore(db_path) as store:
        store.save_protocol(proto.name, proto.fingerprint, proto.source, proto.to_json())
        if proto.kind not in ("clustering", "classification"):  # pragma: no cover
            raise UnsupportedProtocolError(f"protocol {proto.name}: cannot run kind {proto.kind}")
        summary = RunSummary(proto.name, variant, db_path, seed_list, command)
        runner = _Runner(
            proto,
            quick,
            store,
            device=device,
            precision=precision,
            results_dir=results,
            plots=plots,
            command=command,
            verbose=verbose,
            summary=summary,
            on_cell=on_cell,
        )
        usable = []
        for key in keys:
            if not proto.datasets[key].available:
                summary.skipped_datasets[key] = "paper column only (available = false)"
            else:
                usable.append(key)
        if proto.kind == "classification":
            _run_classification(runner, rows, usable, seed_list, data_home, download)
            return summary
        rows = runner.check_rows(rows, usable)
        finished = store.finished_cells(proto.name, variant)
        for key in usable:
            cells = [(proto.name, variant, r, key, s) for s in seed_list for r in rows]
            todo = [c for c in cells if c not in finished]
            summary.already_done += [c for c in cells if c in finished]
            if not todo:
                continue
            data = _load_or_skip(proto, key, quick, data_home, download, summary)
            if data is None:
                continue
            logger.info(
                "%s %s: %s (%s), %d samples, %d clusters",
                proto.name,
                variant,
                key,
                data.name,
                len(data.x),
                data.n_clusters,
            )
            for seed in seed_list:
                for row in rows:
                    cell = (proto.name, variant, row, key, seed)
                    if cell in finished:
                        continue
                    try:
                        result = runner.run_cell(row, data, seed)
                    except KeyboardInterrupt:
                        logger.warning(
                            "interrupted during %s/%s seed %d; finished cells are stored, "
                            "rerun the same command to resume",
                            row,
                            key,
                            seed,
                        )
                        raise
                    except Exception as exc:
                        message = f"{type(exc).__name__}: {exc}".strip()
                        logger.error("cell %s/%s seed %d failed: %s", row, key, seed, message)
                        store.record_failure(cell, message, traceback.format_exc(), command)
                        summary.failures.append((cell, message))
                        continue
                    summary.completed.append(result)
                    if on_cell is not None:
                        on_cell(result)
        _warn_changed_configs(store, proto, summary, runner)
    return summary


def _warn_changed_configs(
    store: ResultStore, proto: Protocol, summary: RunSummary, runner: _Runner
) -> None:
    """Warn when stored cells were computed with another configuration than the current one."""
    if not summary.already_done:
        return
    changed = []
    for cell in summary.already_done:
        _, _, row, key, seed = cell
        if row in summary.skipped_methods:
            continue
        stored = store.config_hash(cell)
        try:
            _, params, _ = runner.params(row, _shape_only(proto, key, runner), seed)
        except Exception:
            continue
        current = runner.config_hash(row, params, proto.data_name(key, runner.quick), key)
        if stored is not None and stored != current:
            changed.append(f"{row}/{key}/seed{seed}")
    if changed:
        logger.warning(
            "%d stored cell(s) ran with a different configuration than the protocol now gives "
            "(e.g. %s); they were kept: use another --db or delete them to recompute",
            len(changed),
            ", ".join(changed[:3]),
        )


def _shape_only(proto: Protocol, key: str, runner: _Runner) -> _Data:
    """Data-set metadata (no arrays loaded) for recomputing a stored cell's configuration."""
    from aeclust.datasets import get_dataset_info

    info = get_dataset_info(proto.data_name(key, runner.quick))
    spec = proto.datasets[key]
    shape = info.image_shape
    if spec.downsample and shape is not None:
        c, h, w = shape
        shape = (c, h // spec.downsample, w // spec.downsample)
    empty = np.empty((0, 0), dtype=np.float32)
    return _Data(
        key,
        info.name,
        empty,
        np.empty(0, dtype=np.int64),
        shape,
        spec.n_clusters or info.n_classes,
        proto.is_substitute(key, runner.quick),
    )


# ---------------------------------------------------------------------------------------------
# Classification protocols (aeclust.evaluation)
# ---------------------------------------------------------------------------------------------


def _encoder_params(runner: _Runner, rep: str, key: str, seed: int) -> tuple[type | None, dict]:
    """The encoder class and constructor arguments of a representation on a data set."""
    from aeclust.evaluation import encoder_class
    from aeclust.methods.base import with_runner_settings

    spec = runner.proto.methods[rep]
    cls = encoder_class(spec.estimator)
    if cls is None:
        return None, {}
    params, _, valid = _merged_params(cls, runner.proto, rep, key, runner.quick)
    select = spec.select
    if select is not None:
        unknown = sorted(set(select["grid"]) - set(valid))
        if unknown:
            raise _ParamMismatch(
                f"[methods.{rep}.select].grid names {unknown}, which {cls.__name__} does not take"
            )
    if "random_state" in valid:
        params["random_state"] = seed
    params = with_runner_settings(
        cls,
        params,
        device=runner.device,
        precision=runner.precision,
        verbose=runner.verbose,
    )
    return cls, params


def _check_encoders(runner: _Runner, reps: list[str], keys: list[str]) -> list[str]:
    """Drop representations whose encoder is not registered or rejects the protocol's params."""
    kept = []
    for rep in reps:
        problem = None
        try:
            for key in keys:
                _encoder_params(runner, rep, key, 0)
        except LookupError as exc:
            problem = f"encoder {runner.proto.methods[rep].estimator!r} is not available ({exc})"
        except _ParamMismatch as exc:
            problem = str(exc)
        if problem:
            logger.warning("skipping %s: %s", rep, problem)
            runner.summary.skipped_methods[rep] = problem
            continue
        kept.append(rep)
    return kept


def _classification_hash(
    runner: _Runner, rep: str, clf: str, params: dict, data_name: str, key: str
) -> str:
    proto = runner.proto
    c = proto.classifiers[clf]
    payload = {
        "estimator": proto.methods[rep].estimator,
        "params": {k: v for k, v in _json_safe(params).items() if k not in _NOT_HASHED},
        "stage": proto.methods[rep].stage,
        "classifier": {"type": c.kind, "params": c.params, "standardize": c.standardize},
        "split": proto.datasets[key].split,
        "data": data_name,
        "downsample": proto.datasets[key].downsample,
        **_value_range_entry(proto, key),
        "nmi_average": proto.nmi_average,
    }
    if proto.methods[rep].select is not None:  # absent otherwise: older cells keep their hash
        payload["select"] = proto.methods[rep].select
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _protocol_classifiers(proto: Protocol, names: Sequence[str]) -> dict[str, Any]:
    """Unfitted classifiers of the protocol's ``[classifiers.<name>]`` columns."""
    from aeclust.evaluation import make_classifier

    return {
        c: make_classifier(
            proto.classifiers[c].kind,
            proto.classifiers[c].params,
            standardize=proto.classifiers[c].standardize,
        )
        for c in names
    }


def _inner_cv(proto: Protocol, cls: type, params: dict, select: dict, seed: int) -> Any:
    """The encoder of a representation with ``[methods.<row>.select]``, as an InnerCVEncoder."""
    from aeclust.evaluation import InnerCVEncoder

    names = select.get("classifiers") or list(proto.classifiers)
    return InnerCVEncoder(
        cls(**params),
        param_grid=select["grid"],
        classifiers=_protocol_classifiers(proto, names),
        n_folds=select["n_folds"],
        random_state=seed,
    )


def _run_classification_seed(
    runner: _Runner, data: _Data, seed: int, todo: list[tuple[str, str, str]]
) -> list[CellResult]:
    """Fit the encoders on one split and store every ``(row, representation, classifier)``."""
    import torch

    from aeclust.evaluation import Representation, evaluate_split, split_for_seed
    from aeclust.metrics import ari, nmi

    proto = runner.proto
    spec = proto.datasets[data.key].split
    train, test = split_for_seed(data.y, spec, seed)
    reps = list(dict.fromkeys(r for _, r, _ in todo))
    clf_names = list(dict.fromkeys(c for _, _, c in todo))
    # one encoder object per distinct (estimator, parameters): representations sharing it share
    # the fit (the standard AE codes are stage 0 of the dAE-1 fit)
    params_of: dict[str, dict] = {}
    shared: dict[str, Any] = {}
    representations: dict[str, Representation] = {}
    for rep in reps:
        cls, params = _encoder_params(runner, rep, data.key, seed)
        params_of[rep] = params
        if cls is None:
            representations[rep] = Representation()
            continue
        select = proto.methods[rep].select
        fit_key = json.dumps(
            [proto.methods[rep].estimator, _json_safe(params), select], sort_keys=True, default=str
        )
        if fit_key not in shared:
            shared[fit_key] = (
                cls(**params) if select is None else _inner_cv(proto, cls, params, select, seed)
            )
        representations[rep] = Representation(shared[fit_key], proto.methods[rep].stage)
    classifiers = _protocol_classifiers(proto, clf_names)
    dev = runner.torch_device
    reset_peak_memory(dev)
    started = utc_now()
    result = evaluate_split(
        data.x, data.y, train, test, representations, classifiers, seed=seed, stages=True
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    peak_mb, memory_kind = peak_memory_mb(dev)
    y_test = data.y[test]
    out = []
    for row, rep, clf in todo:
        pred = result.predictions[(rep, clf)]
        acc = result.accuracy[(rep, clf)]
        scores = {
            "acc": acc,
            "nmi": nmi(y_test, pred, average_method=proto.nmi_average),
            "ari": ari(y_test, pred),
        }
        curve = result.stage_accuracy.get((rep, clf))
        history = [{"stage": i, "acc": a} for i, a in enumerate(curve)] if curve else None
        enc = result.encoders.get(rep)
        pre_json, n_pre = _history(enc, "history_") if enc is not None else (None, None)
        c = proto.classifiers[clf]
        config = {
            "protocol": proto.name,
            "protocol_fingerprint": proto.fingerprint,
            "variant": runner.variant,
            "method": row,
            "representation": rep,
            "estimator": proto.methods[rep].estimator,
            "class": type(representations[rep].encoder).__name__
            if representations[rep].encoder is not None
            else None,
            "params": _json_safe(params_of[rep]),
            "stage": proto.methods[rep].stage,
            "classifier": {
                "name": clf,
                "type": c.kind,
                "params": c.params,
                "standardize": c.standardize,
            },
            "split": {
                **spec,
                "seed": seed,
                "n_train": len(train),
                "n_test": len(test),
                "test_index_sha256": hashlib.sha256(np.sort(test).tobytes()).hexdigest()[:16],
            },
            "dataset": {
                "key": data.key,
                "name": data.name,
                "downsample": proto.datasets[data.key].downsample,
                **_value_range_entry(proto, data.key),
                "n_samples": int(data.x.shape[0]),
                "n_features": int(data.x.shape[1]),
                "n_classes": data.n_clusters,
                "substitute": data.substitute,
            },
            "nmi_average": proto.nmi_average,
        }
        if enc is not None and hasattr(enc, "best_params_"):  # inner CV: what it chose and why
            config["select"] = {
                **proto.methods[rep].select,
                "best_params": _json_safe(enc.best_params_),
                "cv_mean_accuracy": [
                    {"params": _json_safe(r["params"]), "mean_accuracy": r["mean_accuracy"]}
                    for r in enc.cv_results_
                ],
            }
        record = {
            "protocol": proto.name,
            "variant": runner.variant,
            "method": row,
            "dataset": data.key,
            "seed": seed,
            "estimator": proto.methods[rep].estimator,
            "data_name": data.name,
            "substitute": int(data.substitute),
            "n_samples": int(data.x.shape[0]),
            "n_features": int(data.x.shape[1]),
            "n_clusters": data.n_clusters,
            **scores,
            "nmi_average": proto.nmi_average,
            "pretrain_seconds": None,
            "fit_seconds": result.fit_seconds[rep],
            "eval_seconds": result.eval_seconds[(rep, clf)],
            "peak_memory_mb": peak_mb,
            "memory_kind": memory_kind,
            "device": str(dev) + (f" ({runner.machine['gpu']})" if dev.type == "cuda" else ""),
            "precision": runner.precision,
            "versions_json": runner.versions,
            "git_commit": runner.commit,
            "machine_json": runner.machine,
            "config_json": config,
            "config_hash": _classification_hash(
                runner, rep, clf, params_of[rep], data.name, data.key
            ),
            "history_json": None if history is None else json.dumps(history),
            "pretrain_history_json": pre_json,
            "n_history": None if history is None else len(history),
            "n_pretrain_history": n_pre,
            "command": runner.command,
            "started_at": started,
            "finished_at": utc_now(),
        }
        runner.store.insert_run(record)
        out.append(
            CellResult(
                proto.name,
                runner.variant,
                row,
                data.key,
                seed,
                data.name,
                scores["acc"],
                scores["nmi"],
                scores["ari"],
                float("nan"),
                None,
                result.fit_seconds[rep],
            )
        )
    return out


def _run_classification(
    runner: _Runner,
    rows: list[str],
    keys: list[str],
    seed_list: list[int],
    data_home: Any,
    download: bool,
) -> None:
    """Run the cells of a classification protocol (see the module docstring)."""
    proto, store, summary = runner.proto, runner.store, runner.summary
    cells = proto.classification_cells()
    if not cells:
        logger.warning(
            "protocol %s has no [methods] x [classifiers] to run: paper numbers only", proto.name
        )
        return
    reps = _check_encoders(runner, list(dict.fromkeys(cells[r][0] for r in rows)), keys)
    rows = [r for r in rows if cells[r][0] in reps]
    finished = store.finished_cells(proto.name, runner.variant)
    for key in keys:
        all_cells = [(proto.name, runner.variant, r, key, s) for s in seed_list for r in rows]
        todo_cells = [c for c in all_cells if c not in finished]
        summary.already_done += [c for c in all_cells if c in finished]
        if not todo_cells:
            continue
        data = _load_or_skip(proto, key, runner.quick, data_home, download, summary)
        if data is None:
            continue
        logger.info(
            "%s %s: %s (%s), %d samples, %d classes, split %s",
            proto.name,
            runner.variant,
            key,
            data.name,
            len(data.x),
            data.n_clusters,
            proto.datasets[key].split,
        )
        for seed in seed_list:
            todo = [
                (r, *cells[r])
                for r in rows
                if (proto.name, runner.variant, r, key, seed) not in finished
            ]
            if not todo:
                continue
            try:
                results = _run_classification_seed(runner, data, seed, todo)
            except KeyboardInterrupt:
                logger.warning(
                    "interrupted during %s seed %d; finished cells are stored, rerun the same "
                    "command to resume",
                    key,
                    seed,
                )
                raise
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}".strip()
                logger.error("split %s seed %d failed: %s", key, seed, message)
                for row, _, _ in todo:
                    cell = (proto.name, runner.variant, row, key, seed)
                    store.record_failure(cell, message, traceback.format_exc(), runner.command)
                    summary.failures.append((cell, message))
                continue
            for result in results:
                summary.completed.append(result)
                if runner.on_cell is not None:
                    runner.on_cell(result)
        if runner.plots:
            _plot_shift_curves(runner, key, data.name)


def _plot_shift_curves(runner: _Runner, key: str, data_name: str) -> None:
    """The paper's Figs. 3-4 for one data set: accuracy after each shift, from the store."""
    try:
        from aeclust.bench.plots import shift_accuracy_figure
        from aeclust.bench.report import shift_curves

        proto = runner.proto
        runs = [r for r in runner.store.runs(proto.name, runner.variant) if r["dataset"] == key]
        curves, baselines = shift_curves(proto, runs)
        if not curves:
            return
        fig = shift_accuracy_figure(
            curves,
            baselines,
            {c: s.label for c, s in proto.classifiers.items()},
            f"{proto.table}: {proto.datasets[key].label}, {runner.variant}",
        )
        folder = runner.results_dir / "plots" / proto.name / data_name
        folder.mkdir(parents=True, exist_ok=True)
        from aeclust.bench.plots import _save

        _save(fig, folder / f"accuracy-vs-shift-{runner.variant}.png")
    except Exception as exc:  # plots never lose results
        logger.warning("accuracy-vs-shift figure of %s failed: %s", key, exc)
