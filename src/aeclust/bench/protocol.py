"""Benchmark protocols: one TOML file per paper table, loaded, validated and resolved.

A protocol file says which methods run on which data sets with which hyper-parameters, and holds
the numbers the paper printed, so that a run can be set beside them. Keys (see
``benchmarks/protocols/*.toml`` for complete examples)::

    name = "kdae-table2"              # equals the file stem
    title = "..."                     # one line
    citation = "..."                  # the paper
    table = "Table 2"                 # which table(s) of the paper
    page = 3                          # optional
    kind = "clustering"               # or "classification" (see below)
    metrics = ["nmi", "ari", "acc"]   # what the paper reports
    nmi_average = "arithmetic"        # or "geometric" (CCAE)
    seeds = 5                         # the paper's number of runs
    notes = ["...", "..."]            # transcription and fidelity notes

    [pretrain]                        # shared autoencoder pretraining, given to every method
    autoencoder = [500, 500, 2000, 10]    # that accepts each key (same network, same cache)

    [methods.<row>]                   # one table per method row; <row> is a CLI method name,
    estimator = "ccae"                # or any name with an explicit ``estimator``
    label = "CCAE-1"                  # optional display name
    shared_pretrain = true            # false: [pretrain] is not given (end-to-end methods)
    shift = 1                         # constructor keyword arguments of the estimator
    like = "<other row>"              # optional: start from a copy of that row (see below)
    runs_from = "<other protocol>"    # optional: report that protocol's runs of this row
                                      # ("<other protocol>:<its row>" when it names it otherwise)

    [datasets.<key>]                  # a column of the paper's table
    name = "mnist_test"               # registry name (default: the key)
    label = "MNIST"                   # optional display name
    note = "..."                      # how our copy differs from the paper's
    available = true                  # false: paper column only, nothing to load
    downsample = 4                    # optional k x k block mean of the images
    value_range = "symmetric"         # optional: [-1, 1] (x -> 2x - 1), not the loader's [0, 1]
    n_clusters = 10                   # optional (default: the number of classes)
    [datasets.<key>.pretrain]         # per-data-set overrides of [pretrain]
    [datasets.<key>.methods.<row>]    # per-data-set overrides of a method's parameters

    [paper.<row>.<key>]               # exactly the paper's numbers, as fractions in [0, 1]
    acc = 0.88
    acc_std = 0.01

    [row_labels]                      # display names of rows that are only in the paper
    sc-ncut = "SC-NCUT"

    [quick]                           # the CPU variant
    seeds = 3
    [quick.datasets]                  # which columns run, on which (smaller) data set
    mnist = "mnist_test"
    [quick.pretrain]                  # overrides for every method
    [quick.methods.<row>]             # overrides for one method

A ``kind = "classification"`` protocol (the dAE paper's Tables 4-5, run by
:mod:`aeclust.evaluation`) has *representations* as ``[methods.<name>]`` (``estimator`` is an
:data:`aeclust.evaluation.ENCODERS` name: ``"pixels"`` or ``"dae"``; ``stage = 0`` takes the codes
after that stage of the same fit, e.g. the standard AE before any shift) and adds::

    [classifiers.<name>]              # one column of the paper's table
    type = "svm"                      # aeclust.evaluation.CLASSIFIERS kind
    label = "SVM"
    standardize = false               # optional StandardScaler before the classifier
    C = 1.0                           # constructor arguments

    [datasets.<key>.split]            # how a seed becomes a train / test split
    scheme = "kfold"                  # per-class k-fold (n_folds) or "random" (train_size)
    n_folds = 5

Its rows are ``<method>-<classifier>`` (``dae-2-svm``); a seed is one split. A representation
may choose encoder parameters by cross-validation inside each training part
(:class:`aeclust.evaluation.InnerCVEncoder`)::

    [methods.dae-2-cv.select]
    grid = { alpha = [0.3, 0.6, 0.9] }  # candidates of the encoder's parameters
    n_folds = 3                         # inner per-class folds (default 3)
    classifiers = ["mlp", "nc"]         # columns whose mean accuracy decides (default: all)

A row with ``like = "<other row>"`` is a variant of that row: it starts from a copy of the other
row's ``[methods.<other>]`` table (everything but ``label`` and ``runs_from``), of its
``[datasets.<key>.methods.<other>]`` tables and of its ``[quick.methods.<other>]`` table, and its
own tables override key by key; a key the variant sets in its own ``[methods]`` table is its point
and is not taken from the other row's data-set or quick tables. The copy is made when the file is
loaded (chains are followed, cycles are an error), so a variant cannot drift from its parent when
the parent is edited.

A row with ``runs_from = "<other protocol>"`` repeats a row of another table (an ablation table's
full-model row, say): where this protocol has no runs of it in a column, the report shows the
other protocol's runs of the same row name (or of the row named after a colon,
``runs_from = "vcc-table3:vcc"``, when the other table calls it otherwise), but only when both
resolve that cell to the same estimator, data set and parameters (otherwise the cell stays empty
and says why). Running this protocol still runs the row; its own runs then take precedence.

Resolution of one cell's parameters, later entries winning: ``[pretrain]``, then
``[datasets.<key>.pretrain]`` (only the keys the estimator accepts), then ``[methods.<row>]``,
then ``[datasets.<key>.methods.<row>]`` (every key must be accepted), then, for the quick
variant, ``[quick.pretrain]`` and ``[quick.methods.<row>]``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aeclust.methods.params import PRETRAIN_KEYS as _PRETRAIN_KEYS

__all__ = [
    "PRETRAIN_KEYS",
    "RUNNER_PARAMS",
    "ClassifierSpec",
    "DatasetSpec",
    "MethodSpec",
    "Protocol",
    "ProtocolError",
    "find_protocol",
    "list_protocols",
    "load_protocol",
    "protocol_dirs",
    "same_cell",
]

#: Keys allowed in ``[pretrain]`` sections: the shared autoencoder and its pretraining.
PRETRAIN_KEYS: frozenset[str] = frozenset(_PRETRAIN_KEYS)

#: Parameters the runner sets itself; a protocol may not set them.
RUNNER_PARAMS: frozenset[str] = frozenset(
    {"n_clusters", "random_state", "device", "precision", "pretrain_cache", "verbose"}
)

KINDS = ("clustering", "classification")
METRICS = ("acc", "nmi", "ari")
NMI_AVERAGES = ("arithmetic", "geometric")
_TOP_KEYS = frozenset(
    {
        "name",
        "title",
        "citation",
        "table",
        "page",
        "kind",
        "metrics",
        "nmi_average",
        "seeds",
        "notes",
        "pretrain",
        "methods",
        "datasets",
        "paper",
        "row_labels",
        "quick",
        "classifiers",
    }
)
#: How a column's pixels enter the methods: the loader's [0, 1], or [-1, 1] (x -> 2x - 1).
VALUE_RANGES = frozenset({"unit", "symmetric"})
_REQUIRED = ("name", "title", "citation", "table", "kind", "metrics", "nmi_average", "seeds")
_DATASET_KEYS = frozenset(
    {
        "name",
        "label",
        "note",
        "available",
        "downsample",
        "value_range",
        "n_clusters",
        "pretrain",
        "methods",
        "split",
    }
)
_QUICK_KEYS = frozenset({"seeds", "datasets", "pretrain", "methods", "note"})
_METHOD_META = frozenset(
    {"estimator", "label", "shared_pretrain", "stage", "select", "like", "runs_from"}
)
_CLASSIFIER_META = frozenset({"type", "label", "standardize"})


class ProtocolError(ValueError):
    """A protocol file is missing, unreadable or invalid (the message names the file and key)."""


@dataclass(frozen=True)
class MethodSpec:
    """One method row of a protocol.

    Parameters
    ----------
    name : str
        Row name (a CLI method name, or e.g. ``ccae-1``).
    estimator : str
        CLI name of the estimator class (``METHODS`` key).
    params : dict
        Constructor keyword arguments.
    label : str
        Display name in reports.
    shared_pretrain : bool
        Whether the shared ``[pretrain]`` parameters are given to this method (false for
        end-to-end methods with their own network, e.g. VCC and ICAE).
    stage : int or None
        Classification protocols: the encoder stage whose codes are used (None: the final).
    select : dict or None
        Classification protocols: ``{"grid": {...}, "n_folds": int, "classifiers": [...]}``,
        encoder parameters chosen by inner cross-validation on each training part (None: the
        parameters as given).
    runs_from : str or None
        Another protocol whose runs of this row the report shows where this one has none and
        both resolve the cell identically (see :func:`same_cell`).
    runs_from_row : str or None
        The row's name in ``runs_from`` when it differs (None: the same name).
    """

    name: str
    estimator: str
    params: dict[str, Any]
    label: str
    shared_pretrain: bool = True
    stage: int | None = None
    select: dict[str, Any] | None = None
    runs_from: str | None = None
    runs_from_row: str | None = None

    @property
    def source_row(self) -> str:
        """The name of this row in ``runs_from``."""
        return self.runs_from_row or self.name


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier column of a classification protocol.

    Parameters
    ----------
    name : str
        Column key (the suffix of the row names, e.g. ``svm`` in ``dae-2-svm``).
    kind : str
        :data:`aeclust.evaluation.CLASSIFIERS` kind.
    params : dict
        Constructor arguments (over :data:`aeclust.evaluation.DEFAULT_PARAMS`).
    label : str
        Display name.
    standardize : bool
        Standardise the codes (fitted on the training part) before the classifier.
    """

    name: str
    kind: str
    params: dict[str, Any]
    label: str
    standardize: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One data-set column of a protocol.

    Parameters
    ----------
    key : str
        Column key used by ``[paper.<row>.<key>]`` and the results store.
    name : str
        Registry name loaded for the full variant.
    label : str
        Display name.
    note : str
        How our copy differs from the paper's, if it does.
    available : bool
        False for columns with nothing to load (paper numbers only).
    downsample : int or None
        Block-mean factor applied to the images after loading.
    value_range : {"unit", "symmetric"}
        ``"unit"``: the loader's [0, 1]; ``"symmetric"``: mapped to [-1, 1] by x -> 2x - 1 (as a
        reference implementation fed the data, e.g. DKM's code on USPS).
    n_clusters : int or None
        Number of clusters (default: the number of classes).
    pretrain : dict
        Overrides of the shared ``[pretrain]``.
    methods : dict
        Per-method parameter overrides.
    split : dict
        Classification protocols: the split scheme (:func:`aeclust.evaluation.check_split_spec`).
    """

    key: str
    name: str
    label: str
    note: str = ""
    available: bool = True
    downsample: int | None = None
    value_range: str = "unit"
    n_clusters: int | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """A validated protocol (see the module docstring for the file format).

    Use :func:`load_protocol` to build one; ``raw`` keeps the parsed TOML for the results store.
    """

    name: str
    title: str
    citation: str
    table: str
    page: int | str | None
    kind: str
    metrics: tuple[str, ...]
    nmi_average: str
    seeds: int
    notes: tuple[str, ...]
    pretrain: dict[str, Any]
    methods: dict[str, MethodSpec]
    datasets: dict[str, DatasetSpec]
    paper: dict[str, dict[str, dict[str, float]]]
    row_labels: dict[str, str]
    quick: dict[str, Any]
    raw: dict[str, Any]
    source: str = ""
    classifiers: dict[str, ClassifierSpec] = field(default_factory=dict)

    # -- derived --------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """str : SHA-256 (16 hex digits) of the parsed protocol content."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def rows(self) -> list[str]:
        """Every row name: the paper's rows in the order printed, then methods without numbers
        (classification: ``<method>-<classifier>`` rows)."""
        out = list(self.paper)
        runnable = list(self.classification_cells()) if self.kind == "classification" else []
        out += [m for m in runnable or self.methods if m not in self.paper]
        return out

    def classification_cells(self) -> dict[str, tuple[str, str]]:
        """Classification protocols: row name -> (method, classifier), methods first."""
        if self.kind != "classification":
            return {}
        return {f"{m}-{c}": (m, c) for m in self.methods for c in self.classifiers}

    def label(self, row: str) -> str:
        """Display name of a row."""
        if row in self.methods:
            return self.methods[row].label
        if row in self.row_labels:
            return self.row_labels[row]
        cell = self.classification_cells().get(row)
        if cell is not None:
            return f"{self.methods[cell[0]].label}, {self.classifiers[cell[1]].label}"
        return row

    def seeds_for(self, quick: bool) -> int:
        """Number of seeds of a variant."""
        return int(self.quick.get("seeds", self.seeds)) if quick else self.seeds

    def dataset_keys(self, quick: bool) -> list[str]:
        """Columns that a variant runs (quick: those of ``[quick.datasets]``)."""
        if quick:
            return [k for k in self.quick.get("datasets", {}) if k in self.datasets]
        return list(self.datasets)

    def data_name(self, key: str, quick: bool) -> str:
        """Registry name of the data loaded for column ``key`` in a variant."""
        if quick:
            return str(self.quick.get("datasets", {}).get(key, self.datasets[key].name))
        return self.datasets[key].name

    def is_substitute(self, key: str, quick: bool) -> bool:
        """Whether a variant's data for ``key`` differ from the full variant's (not comparable)."""
        return quick and self.data_name(key, True) != self.datasets[key].name

    def cell_params(self, row: str, key: str, quick: bool) -> tuple[dict, dict]:
        """Resolve one cell's parameters.

        Parameters
        ----------
        row : str
            Method row.
        key : str
            Data-set column.
        quick : bool
            The quick variant.

        Returns
        -------
        shared : dict
            Shared pretraining parameters (the runner passes those the estimator accepts).
        own : dict
            The method's parameters (every key must be accepted by the estimator).
            ``own`` wins over ``shared``; the quick overrides are applied in order.
        """
        ds = self.datasets[key]
        method = self.methods[row]
        shared = {**self.pretrain, **ds.pretrain} if method.shared_pretrain else {}
        own = {**method.params, **ds.methods.get(row, {})}
        if quick:
            quick_shared = dict(self.quick.get("pretrain", {})) if method.shared_pretrain else {}
            quick_own = dict(self.quick.get("methods", {}).get(row, {}))
            # quick overrides of the shared section also beat a method's own value of that key
            for k, v in quick_shared.items():
                shared[k] = v
                if k in own:
                    own[k] = v
            own.update(quick_own)
        return copy.deepcopy(shared), copy.deepcopy(own)

    def at_precision(self, precision: str) -> Protocol:
        """This protocol as run in a non-default precision: its results are kept apart.

        Runs are stored per (protocol, variant, method, data set, seed); a ``bf16`` (or ``auto``)
        run of ``baselines`` is stored as protocol ``baselines+bf16`` so that it sits beside the
        fp32 one instead of replacing it, and the report shows both and their difference.
        ``fp32`` returns the protocol unchanged.
        """
        if precision == "fp32":
            return self
        name = f"{self.name}+{precision}"
        title = f"{self.title} [{precision}]"
        raw = {**self.raw, "name": name, "title": title}
        return replace(self, name=name, title=title, raw=raw)

    def to_json(self) -> str:
        """The parsed protocol as JSON (stored with every run)."""
        return json.dumps(self.raw, sort_keys=False, default=str)


# ---------------------------------------------------------------------------------------------
# Locating protocol files
# ---------------------------------------------------------------------------------------------


def _repo_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "benchmarks" / "protocols").is_dir():
            return parent
    return None


def protocol_dirs() -> list[Path]:
    """Folders searched for protocol names: ``benchmarks/protocols`` under the repository root
    (of this source tree), then under the current directory."""
    dirs: list[Path] = []
    root = _repo_root()
    if root is not None:
        dirs.append(root / "benchmarks" / "protocols")
    cwd = Path.cwd() / "benchmarks" / "protocols"
    if cwd.is_dir() and all(cwd.resolve() != d.resolve() for d in dirs):
        dirs.append(cwd)
    return dirs


def list_protocols() -> list[str]:
    """Names of the protocol files found in :func:`protocol_dirs`."""
    names: list[str] = []
    for d in protocol_dirs():
        for p in sorted(d.glob("*.toml")):
            if p.stem not in names:
                names.append(p.stem)
    return names


def find_protocol(spec: str | os.PathLike[str]) -> Path:
    """Return the file of a protocol given as a path or a name.

    Parameters
    ----------
    spec : str or path-like
        An existing file, or a protocol name (``kdae-table2``, with or without ``.toml``) looked
        up in :func:`protocol_dirs`.

    Returns
    -------
    Path

    Raises
    ------
    ProtocolError
        If nothing matches; the message lists the known names.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    if path.parent == Path("."):
        for d in protocol_dirs():
            candidate = d / f"{name}.toml"
            if candidate.is_file():
                return candidate
    known = ", ".join(list_protocols()) or "none found"
    raise ProtocolError(f"unknown protocol {str(spec)!r}: no such file or name; known: {known}")


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_params(where: str, params: Any, errors: list[str], *, pretrain: bool) -> dict:
    if not isinstance(params, dict):
        errors.append(f"{where} must be a table")
        return {}
    bad = sorted(set(params) & RUNNER_PARAMS)
    if bad:
        errors.append(f"{where}: {bad} are set by the runner, remove them")
    if pretrain:
        unknown = sorted(set(params) - PRETRAIN_KEYS)
        if unknown:
            errors.append(
                f"{where}: unknown pretraining key(s) {unknown}; valid: {sorted(PRETRAIN_KEYS)}"
            )
    return dict(params)


def _known_estimators(extra: Iterable[str] = ()) -> set[str]:
    from aeclust.methods import METHODS  # the one registry (other modules may add more)

    return set(METHODS) | set(extra)


def validate(data: Mapping[str, Any], *, source: str = "<protocol>") -> Protocol:
    """Validate a parsed protocol and build a :class:`Protocol`.

    Parameters
    ----------
    data : mapping
        The parsed TOML.
    source : str
        File name for the messages.

    Returns
    -------
    Protocol

    Raises
    ------
    ProtocolError
        Listing every problem found.
    """
    errors: list[str] = []
    data = dict(data)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        errors.append(f"unknown top-level key(s) {unknown}; valid: {sorted(_TOP_KEYS)}")
    for key in _REQUIRED:
        if key not in data:
            errors.append(f"missing required key {key!r}")
    if errors:
        raise ProtocolError(f"{source}: " + "; ".join(errors))

    for key in ("name", "title", "citation", "table"):
        if not isinstance(data[key], str) or not data[key].strip():
            errors.append(f"{key!r} must be a non-empty string")
    kind = data["kind"]
    if kind not in KINDS:
        errors.append(f"kind must be one of {KINDS}, got {kind!r}")
    metrics = data["metrics"]
    if (
        not isinstance(metrics, list)
        or not metrics
        or any(m not in METRICS for m in metrics)
        or len(set(metrics)) != len(metrics)
    ):
        errors.append(f"metrics must be a non-empty list of distinct names from {METRICS}")
        metrics = [m for m in metrics if m in METRICS] if isinstance(metrics, list) else []
    if data["nmi_average"] not in NMI_AVERAGES:
        errors.append(f"nmi_average must be one of {NMI_AVERAGES}, got {data['nmi_average']!r}")
    seeds = data["seeds"]
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        errors.append(f"seeds must be a positive integer, got {seeds!r}")
    notes = data.get("notes", [])
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        errors.append("notes must be a string or a list of strings")
        notes = []
    page = data.get("page")
    if page is not None and not isinstance(page, (int, str)):
        errors.append("page must be an integer or a string")

    pretrain = _check_params("[pretrain]", data.get("pretrain", {}), errors, pretrain=True)
    data = _expand_like(data, errors)

    # methods
    classification = kind == "classification"
    known = _known_encoders() if classification else _known_estimators()
    methods: dict[str, MethodSpec] = {}
    raw_methods = data.get("methods", {})
    if not isinstance(raw_methods, dict):
        errors.append("[methods] must be a table of tables")
        raw_methods = {}
    if kind == "clustering" and not raw_methods:
        errors.append("a clustering protocol needs at least one [methods.<name>] table")
    for row, spec in raw_methods.items():
        if not isinstance(spec, dict):
            errors.append(f"[methods.{row}] must be a table")
            continue
        estimator = spec.get("estimator", row)
        if estimator not in known:
            hint = "" if "estimator" in spec else ' (or add estimator = "<cli name>")'
            what = (
                "an encoder name (aeclust.evaluation.ENCODERS)"
                if classification
                else ("a method CLI name")
            )
            errors.append(
                f"[methods.{row}]: {estimator!r} is not {what}{hint}; "
                f"valid: {', '.join(sorted(known))}"
            )
        stage = spec.get("stage")
        if stage is not None and not classification:
            errors.append(f"[methods.{row}].stage is only for classification protocols")
        elif stage is not None and (
            isinstance(stage, bool) or not isinstance(stage, int) or stage < 0
        ):
            errors.append(f"[methods.{row}].stage must be a non-negative integer")
        label = spec.get("label", row)
        if not isinstance(label, str):
            errors.append(f"[methods.{row}].label must be a string")
            label = row
        shared_pretrain = spec.get("shared_pretrain", True)
        if not isinstance(shared_pretrain, bool):
            errors.append(f"[methods.{row}].shared_pretrain must be true or false")
        select = _check_select(row, spec.get("select"), classification, errors)
        runs_from = spec.get("runs_from")
        runs_from_row = None
        if isinstance(runs_from, str) and ":" in runs_from:
            runs_from, runs_from_row = runs_from.split(":", 1)
        if runs_from is not None and (
            not isinstance(runs_from, str)
            or not runs_from
            or runs_from == data.get("name")
            or runs_from_row == ""
        ):
            errors.append(
                f"[methods.{row}].runs_from must name another protocol "
                f'("<protocol>" or "<protocol>:<row>"), not {spec.get("runs_from")!r}'
            )
            runs_from = runs_from_row = None
        params = {k: v for k, v in spec.items() if k not in _METHOD_META}
        params = _check_params(f"[methods.{row}]", params, errors, pretrain=False)
        methods[row] = MethodSpec(
            row,
            str(estimator),
            params,
            label,
            bool(shared_pretrain),
            stage=stage,
            select=select,
            runs_from=runs_from,
            runs_from_row=runs_from_row,
        )

    # datasets
    datasets: dict[str, DatasetSpec] = {}
    raw_datasets = data.get("datasets", {})
    if not isinstance(raw_datasets, dict) or not raw_datasets:
        errors.append("[datasets] must hold at least one [datasets.<key>] table")
        raw_datasets = {}
    for key, spec in raw_datasets.items():
        where = f"[datasets.{key}]"
        if not isinstance(spec, dict):
            errors.append(f"{where} must be a table")
            continue
        bad = sorted(set(spec) - _DATASET_KEYS)
        if bad:
            errors.append(f"{where}: unknown key(s) {bad}; valid: {sorted(_DATASET_KEYS)}")
        name = spec.get("name", key)
        available = spec.get("available", True)
        if not isinstance(available, bool):
            errors.append(f"{where}.available must be true or false")
        if available:
            errors.extend(f"{where}: {e}" for e in _check_dataset_name(name))
        downsample = spec.get("downsample")
        if downsample is not None and (
            isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1
        ):
            errors.append(f"{where}.downsample must be a positive integer")
        value_range = spec.get("value_range", "unit")
        if value_range not in VALUE_RANGES:
            errors.append(f"{where}.value_range must be one of {sorted(VALUE_RANGES)}")
        n_clusters = spec.get("n_clusters")
        if n_clusters is not None and (
            isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1
        ):
            errors.append(f"{where}.n_clusters must be a positive integer")
        ds_pretrain = _check_params(
            f"{where}.pretrain", spec.get("pretrain", {}), errors, pretrain=True
        )
        ds_methods = spec.get("methods", {})
        if not isinstance(ds_methods, dict):
            errors.append(f"{where}.methods must be a table of tables")
            ds_methods = {}
        checked: dict[str, dict[str, Any]] = {}
        for row, params in ds_methods.items():
            if row not in raw_methods:
                errors.append(f"{where}.methods.{row}: no [methods.{row}] table")
            checked[row] = _check_params(f"{where}.methods.{row}", params, errors, pretrain=False)
        split: dict[str, Any] = {}
        if "split" in spec:
            if not classification:
                errors.append(f"{where}.split is only for classification protocols")
            else:
                try:
                    split = _check_split(spec["split"])
                except ValueError as exc:
                    errors.append(f"{where}.split: {exc}")
        elif classification:
            split = _check_split(None)
        datasets[key] = DatasetSpec(
            key=key,
            name=str(name),
            label=str(spec.get("label", key)),
            note=str(spec.get("note", "")),
            available=bool(available),
            downsample=downsample,
            value_range=str(value_range),
            n_clusters=n_clusters,
            pretrain=ds_pretrain,
            methods=checked,
            split=split,
        )

    classifiers = _check_classifiers(data.get("classifiers", {}), classification, errors)
    for m in methods.values():
        unknown = [c for c in (m.select or {}).get("classifiers") or [] if c not in classifiers]
        if unknown:
            errors.append(
                f"[methods.{m.name}.select].classifiers names {unknown}, not [classifiers] "
                f"columns; valid: {', '.join(sorted(classifiers))}"
            )
    for row in raw_methods:
        for c in classifiers:
            if f"{row}-{c}" in raw_methods:
                errors.append(f"row name {row}-{c} is both a method and a method-classifier pair")

    # paper numbers
    paper: dict[str, dict[str, dict[str, float]]] = {}
    raw_paper = data.get("paper", {})
    if not isinstance(raw_paper, dict):
        errors.append("[paper] must be a table [paper.<row>.<dataset>]")
        raw_paper = {}
    allowed = set(metrics) | {f"{m}_std" for m in metrics}
    for row, per_ds in raw_paper.items():
        if not isinstance(per_ds, dict):
            errors.append(f"[paper.{row}] must hold [paper.{row}.<dataset>] tables")
            continue
        paper[row] = {}
        for key, values in per_ds.items():
            where = f"[paper.{row}.{key}]"
            if key not in datasets:
                errors.append(f"{where}: {key!r} is not a [datasets] key")
            if not isinstance(values, dict) or not values:
                errors.append(f"{where} must be a non-empty table of numbers")
                continue
            bad = sorted(set(values) - allowed)
            if bad:
                errors.append(
                    f"{where}: key(s) {bad} not among the protocol's metrics {sorted(allowed)}"
                )
            for m, v in values.items():
                if not _is_number(v) or not 0.0 <= float(v) <= 1.0:
                    errors.append(
                        f"{where}.{m} = {v!r}: store paper numbers as fractions in [0, 1] "
                        "(divide percentages by 100)"
                    )
            for m in values:
                if m.endswith("_std") and m[:-4] not in values:
                    errors.append(f"{where}: {m} without {m[:-4]}")
            paper[row][key] = {m: float(v) for m, v in values.items() if _is_number(v)}

    row_labels = data.get("row_labels", {})
    if not isinstance(row_labels, dict) or not all(isinstance(v, str) for v in row_labels.values()):
        errors.append("[row_labels] must map row names to strings")
        row_labels = {}
    cells = {f"{m}-{c}" for m in methods for c in classifiers}
    for row in row_labels:
        if row not in paper and row not in methods and row not in cells:
            errors.append(f"[row_labels].{row}: no such row in [paper] or [methods]")

    # quick variant
    quick = data.get("quick", {})
    if not isinstance(quick, dict):
        errors.append("[quick] must be a table")
        quick = {}
    bad = sorted(set(quick) - _QUICK_KEYS)
    if bad:
        errors.append(f"[quick]: unknown key(s) {bad}; valid: {sorted(_QUICK_KEYS)}")
    q_seeds = quick.get("seeds", seeds)
    if isinstance(q_seeds, bool) or not isinstance(q_seeds, int) or q_seeds < 1:
        errors.append("[quick].seeds must be a positive integer")
    q_datasets = quick.get("datasets", {})
    if not isinstance(q_datasets, dict):
        errors.append("[quick.datasets] must map dataset keys to registry names")
        q_datasets = {}
    for key, name in q_datasets.items():
        if key not in datasets:
            errors.append(f"[quick.datasets].{key}: not a [datasets] key")
        elif not datasets[key].available:
            errors.append(f"[quick.datasets].{key}: the column is marked available = false")
        errors.extend(f"[quick.datasets].{key}: {e}" for e in _check_dataset_name(name))
    _check_params("[quick.pretrain]", quick.get("pretrain", {}), errors, pretrain=True)
    q_methods = quick.get("methods", {})
    if not isinstance(q_methods, dict):
        errors.append("[quick.methods] must be a table of tables")
    else:
        for row, params in q_methods.items():
            if row not in methods:
                errors.append(f"[quick.methods.{row}]: no [methods.{row}] table")
            _check_params(f"[quick.methods.{row}]", params, errors, pretrain=False)

    if errors:
        raise ProtocolError(f"{source}: " + "; ".join(errors))
    return Protocol(
        name=data["name"],
        title=data["title"],
        citation=data["citation"],
        table=data["table"],
        page=page,
        kind=kind,
        metrics=tuple(metrics),
        nmi_average=data["nmi_average"],
        seeds=int(seeds),
        notes=tuple(notes),
        pretrain=pretrain,
        methods=methods,
        datasets=datasets,
        paper=paper,
        row_labels=dict(row_labels),
        quick=copy.deepcopy(quick),
        raw=copy.deepcopy(data),
        source=source,
        classifiers=classifiers,
    )


def _expand_like(data: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """Return ``data`` with every ``like = "<row>"`` method row merged over a copy of that row.

    A liking row inherits the other row's ``[methods]`` table (all but ``label`` and
    ``runs_from``; the estimator
    too, which is the other row's name when its table does not say), its
    ``[datasets.<key>.methods]`` tables and its ``[quick.methods]`` table; its own tables win key
    by key, and a key set in its own ``[methods]`` table is not taken from the other row's
    per-data-set or quick tables either (``lam = 1.0`` in a variant of a row whose data sets set
    ``lam`` means 1.0 everywhere unless the variant's own data-set table says otherwise).
    ``like`` itself stays in the row (as metadata), so the stored protocol says where the values
    came from. Problems (unknown row, cycle, not a string) are appended to ``errors``.
    """
    raw_methods = data.get("methods")
    if not isinstance(raw_methods, dict) or not any(
        isinstance(spec, dict) and "like" in spec for spec in raw_methods.values()
    ):
        return data
    data = copy.deepcopy(data)
    raw_methods = data["methods"]
    datasets = data.get("datasets") if isinstance(data.get("datasets"), dict) else {}
    quick = data.get("quick") if isinstance(data.get("quick"), dict) else {}
    q_methods = quick.get("methods") if isinstance(quick.get("methods"), dict) else None
    done: set[str] = set()

    def resolve(row: str, chain: tuple[str, ...]) -> bool:
        if row in done:
            return True
        spec = raw_methods[row]
        parent = spec.get("like") if isinstance(spec, dict) else None
        if parent is None:
            done.add(row)
            return True
        where = f"[methods.{row}].like"
        if not isinstance(parent, str):
            errors.append(f"{where} must be the name of another [methods] row")
            return False
        if parent in chain or parent == row:
            cycle = " -> ".join((*chain, row, parent))
            errors.append(f"{where}: rows copy each other in a cycle ({cycle})")
            return False
        if not isinstance(raw_methods.get(parent), dict):
            errors.append(f"{where} = {parent!r}: no [methods.{parent}] table")
            return False
        if not resolve(parent, (*chain, row)):
            return False
        # runs_from says where the parent's own runs are; a variant's are not there
        inherited = {
            k: v for k, v in raw_methods[parent].items() if k not in ("label", "like", "runs_from")
        }
        # a parent named after its estimator has no explicit key; the copy needs one
        inherited.setdefault("estimator", parent)
        raw_methods[row] = {**copy.deepcopy(inherited), **spec}

        def inherit(tables: dict[str, Any]) -> None:
            # a key the variant sets in its own row is its point: the parent's per-data-set or
            # quick value of that key must not bring the parent's value back
            own = tables.get(row, {})
            if isinstance(tables.get(parent), dict) and isinstance(own, dict):
                kept = {k: v for k, v in tables[parent].items() if k not in spec}
                tables[row] = {**copy.deepcopy(kept), **own}

        for ds in datasets.values():
            if isinstance(ds, dict) and isinstance(ds.get("methods"), dict):
                inherit(ds["methods"])
        if q_methods is not None:
            inherit(q_methods)
        done.add(row)
        return True

    for row in list(raw_methods):
        resolve(row, ())
    return data


def _known_encoders() -> set[str]:
    from aeclust.evaluation import ENCODERS

    return set(ENCODERS)


def _check_split(spec: Any) -> dict[str, Any]:
    from aeclust.evaluation import check_split_spec

    if spec is not None and not isinstance(spec, dict):
        raise ValueError("must be a table (scheme = ...)")
    return check_split_spec(spec)


def _check_select(
    row: str, spec: Any, classification: bool, errors: list[str]
) -> dict[str, Any] | None:
    """Validate ``[methods.<row>.select]`` (inner cross-validation of encoder parameters)."""
    if spec is None:
        return None
    where = f"[methods.{row}.select]"
    if not classification:
        errors.append(f"{where} is only for classification protocols")
        return None
    if not isinstance(spec, dict):
        errors.append(f"{where} must be a table")
        return None
    unknown = sorted(set(spec) - {"grid", "n_folds", "classifiers"})
    if unknown:
        errors.append(f"{where}: unknown keys {unknown}; valid: classifiers, grid, n_folds")
    grid = spec.get("grid")
    if (
        not isinstance(grid, dict)
        or not grid
        or not all(isinstance(v, list) and v for v in grid.values())
    ):
        errors.append(f"{where}.grid must be a table of non-empty lists of candidates")
        grid = {}
    n_folds = spec.get("n_folds", 3)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        errors.append(f"{where}.n_folds must be an integer >= 2, got {n_folds!r}")
    clfs = spec.get("classifiers")
    if clfs is not None and (
        not isinstance(clfs, list) or not clfs or not all(isinstance(c, str) for c in clfs)
    ):
        errors.append(f"{where}.classifiers must be a non-empty list of [classifiers] names")
        clfs = None
    return {"grid": dict(grid), "n_folds": n_folds, "classifiers": clfs}


def _check_classifiers(
    raw: Any, classification: bool, errors: list[str]
) -> dict[str, ClassifierSpec]:
    from aeclust.evaluation import make_classifier

    if not isinstance(raw, dict):
        errors.append("[classifiers] must be a table of tables")
        return {}
    if raw and not classification:
        errors.append("[classifiers] is only for classification protocols")
        return {}
    out: dict[str, ClassifierSpec] = {}
    for name, spec in raw.items():
        where = f"[classifiers.{name}]"
        if not isinstance(spec, dict):
            errors.append(f"{where} must be a table")
            continue
        kind = spec.get("type")
        params = {k: v for k, v in spec.items() if k not in _CLASSIFIER_META}
        standardize = spec.get("standardize", False)
        if not isinstance(standardize, bool):
            errors.append(f"{where}.standardize must be true or false")
            continue
        label = spec.get("label", name)
        if not isinstance(label, str):
            errors.append(f"{where}.label must be a string")
            continue
        try:
            make_classifier(str(kind), params)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        out[name] = ClassifierSpec(name, str(kind), params, label, standardize)
    return out


def _check_dataset_name(name: Any) -> list[str]:
    from aeclust.datasets import get_dataset_info

    if not isinstance(name, str):
        return [f"dataset name must be a string, got {name!r}"]
    try:
        get_dataset_info(name)
    except ValueError as exc:
        return [str(exc).split(";")[0]]
    return []


def same_cell(
    a: Protocol,
    b: Protocol,
    row: str,
    key: str,
    quick: bool,
    *,
    key_b: str | None = None,
    row_b: str | None = None,
    quick_b: bool | None = None,
) -> str | None:
    """Whether two protocols resolve one cell identically (what ``runs_from`` relies on).

    Parameters
    ----------
    a, b : Protocol
    row : str
        Method row of ``a`` (and of ``b`` unless ``row_b`` is given).
    key : str
        Data-set column of ``a`` (and of ``b`` unless ``key_b`` is given).
    quick : bool
        The quick variant (of both, unless ``quick_b`` is given).
    key_b : str, optional
        ``b``'s column for the same data when its key differs (``fashion`` / ``fashion_test``).
    row_b : str, optional
        ``b``'s name of the row when it differs (``vcc-dim2`` / ``vcc``).
    quick_b : bool, optional
        ``b``'s variant when it differs: ``same_cell(p, p, row, key, False, quick_b=True)``
        asks whether one protocol's quick variant runs the full variant's cell.

    Returns
    -------
    str or None
        None when the estimator, the data set (name, downsampling, number of clusters), the
        NMI normalisation and every parameter the estimator is built with agree — a parameter
        one protocol leaves out is the estimator's default, so a table that spells the
        defaults out and one that relies on them resolve alike; otherwise the first difference.
    """
    key_b = key if key_b is None else key_b
    row_b = row if row_b is None else row_b
    quick_b = quick if quick_b is None else quick_b
    for proto, r, k in ((a, row, key), (b, row_b, key_b)):
        if r not in proto.methods:
            return f"{proto.name} has no row {r!r}"
        if k not in proto.datasets:
            return f"{proto.name} has no column {k!r}"
    ma, mb = a.methods[row], b.methods[row_b]
    da, db = a.datasets[key], b.datasets[key_b]
    checks = [
        ("estimator", ma.estimator, mb.estimator),
        ("data set", a.data_name(key, quick), b.data_name(key_b, quick_b)),
        ("downsample", da.downsample, db.downsample),
        ("value_range", da.value_range, db.value_range),
        ("n_clusters", da.n_clusters, db.n_clusters),
        ("nmi_average", a.nmi_average, b.nmi_average),
        ("shared_pretrain", ma.shared_pretrain, mb.shared_pretrain),
    ]
    if ma.estimator == mb.estimator:
        (shared_a, own_a), (shared_b, own_b) = (
            p.cell_params(r, k, q)
            for p, r, k, q in ((a, row, key, quick), (b, row_b, key_b, quick_b))
        )
        defaults = _estimator_defaults(ma.estimator)
        resolved = []
        for shared, own in ((shared_a, own_a), (shared_b, own_b)):
            used = {k: v for k, v in shared.items() if defaults is None or k in defaults}
            resolved.append({**(defaults or {}), **used, **own})
        pretraining = set(shared_a) | set(shared_b)
        for name in sorted(set(resolved[0]) | set(resolved[1])):
            what = f"pretraining {name}" if name in pretraining else name
            checks.append((what, _plain(resolved[0].get(name)), _plain(resolved[1].get(name))))
    for what, va, vb in checks:
        if va != vb:
            return f"{what} differs ({a.name}: {va!r}, {b.name}: {vb!r})"
    return None


def _plain(value: Any) -> Any:
    """A parameter value as a protocol file would write it (tuples as lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _estimator_defaults(name: str) -> dict[str, Any] | None:
    """The constructor defaults of a registered estimator (None if it is not registered)."""
    from aeclust.methods import METHODS

    cls = METHODS.get(name)
    return None if cls is None else cls().get_params()


def load_protocol(spec: str | os.PathLike[str] | Protocol) -> Protocol:
    """Load and validate a protocol given as a path, a name or an already built one.

    Parameters
    ----------
    spec : str, path-like or Protocol
        See :func:`find_protocol`.

    Returns
    -------
    Protocol

    Raises
    ------
    ProtocolError
        If the file cannot be found, parsed or validated. The file's ``name`` must equal its
        stem when it lives in a protocol folder.
    """
    if isinstance(spec, Protocol):
        return spec
    path = find_protocol(spec)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc})") from exc
    protocol = validate(data, source=str(path))
    if path.parent.name == "protocols" and protocol.name != path.stem:
        raise ProtocolError(
            f"{path}: name = {protocol.name!r} must equal the file name {path.stem!r}"
        )
    return protocol
