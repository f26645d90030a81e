"""Reports of the results store: our mean ± std over seeds beside the paper's numbers.

One table per (protocol, variant, data set): for every method row, ACC/NMI/ARI mean ± sample
standard deviation over seeds, the number of seeds and which, the paper's number and the
difference (ours − paper), silhouette and wall times. Rows the paper reports that we have no run
for show the paper's number and "—". A quick run on a substitute data set (``mnist_test`` for
``mnist``) is marked and not differenced. :func:`write_benchmarks_md` renders every protocol in
the database, with the machines and the exact commands, into ``BENCHMARKS.md``, which opens with
one summary table (:func:`summary_cells`: a row per method, a column per data set, each method's
own protocol's ACC beside the paper's) and links the hand-written notes of ``benchmarks/notes/``.

A classification protocol (the dAE paper's Tables 4-5) gets two more tables per data set: the
paper's layout (input × classifier, ours beside the paper's, in %) and the mean accuracy after
each target shift (the paper's Figs. 3-4, drawn by ``aeclust bench`` as
``accuracy-vs-shift-<variant>.png``; :func:`shift_curves` gives the numbers).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aeclust._utils import atomic_path
from aeclust.bench.protocol import Protocol, ProtocolError, protocol_dirs, same_cell, validate
from aeclust.bench.store import COMMITTED_RUNS, ResultStore

__all__ = [
    "CSV_COLUMNS",
    "SUMMARY_METHODS",
    "CellSummary",
    "SummaryCell",
    "render_csv",
    "render_markdown",
    "render_report",
    "shift_curves",
    "summarize",
    "summary_cells",
    "summary_md",
    "write_benchmarks_md",
]

logger = logging.getLogger(__name__)

_METRICS = ("acc", "nmi", "ari")
_DASH = "—"

#: Columns of :func:`render_csv`.
CSV_COLUMNS: tuple[str, ...] = (
    "protocol",
    "variant",
    "dataset",
    "data_used",
    "comparable",
    "method",
    "label",
    "n_seeds",
    "seeds",
    *(f"{m}_{s}" for m in _METRICS for s in ("mean", "std")),
    "silhouette_mean",
    *(f"paper_{m}{s}" for m in _METRICS for s in ("", "_std")),
    *(f"diff_{m}" for m in _METRICS),
    "pretrain_seconds_mean",
    "fit_seconds_mean",
    "peak_memory_mb_max",
    "note",
)


@dataclass
class CellSummary:
    """One (protocol, variant, data set, method) row of a report."""

    protocol: str
    variant: str
    dataset: str
    data_used: str
    comparable: bool
    method: str
    label: str
    seeds: list[int] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    silhouette: float = math.nan
    pretrain_seconds: float = math.nan
    pretrain_all_cached: bool = False
    fit_seconds: float = math.nan
    peak_memory_mb: float = math.nan
    machines: dict[str, list[int]] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def mixed(self) -> bool:
        """bool : The runs come from more than one machine or more than one code version."""
        return len(self.machines) > 1 or len(self.commits) > 1

    @property
    def n_seeds(self) -> int:
        """int : Number of runs."""
        return len(self.seeds)

    def diff(self, metric: str) -> float:
        """Ours − paper (nan when either is missing or the data are not the paper's)."""
        if not self.comparable or metric not in self.mean or metric not in self.paper:
            return math.nan
        return self.mean[metric] - self.paper[metric]


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------


def _nanmean(values: Iterable[Any]) -> float:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return float(np.nanmean(arr)) if arr.size and not np.isnan(arr).all() else math.nan


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _load_protocols(store: ResultStore) -> dict[str, Protocol]:
    out = {}
    for name, raw in store.protocols().items():
        try:
            out[name] = validate(raw, source=f"{name} (stored in the results database)")
        except ProtocolError as exc:
            logger.warning("cannot render protocol %s: %s", name, exc)
    return out


def _variants(store: ResultStore, name: str, variant: str | None) -> list[str]:
    if variant is not None:
        return [variant]
    present = {r["variant"] for r in store.runs(name)}
    return [v for v in ("full", "quick") if v in present] or ["full"]


def summarize(store: ResultStore, proto: Protocol, variant: str) -> dict[str, list[CellSummary]]:
    """Report rows of one protocol variant, per data-set column.

    Parameters
    ----------
    store : ResultStore
    proto : Protocol
    variant : {"full", "quick"}

    Returns
    -------
    dict
        Column key -> rows in the paper's order (then methods without paper numbers).
    """
    quick = variant == "quick"
    runs = store.runs(proto.name, variant)
    keys = proto.dataset_keys(quick)
    keys += [k for k in dict.fromkeys(r["dataset"] for r in runs) if k not in keys]
    rows = proto.rows()
    rows += [m for m in dict.fromkeys(r["method"] for r in runs) if m not in rows]
    others: dict[str, Protocol] | None = None
    other_runs: dict[str, list] = {}
    quick_runs: list | None = None
    out: dict[str, list[CellSummary]] = {}
    for key in keys:
        spec = proto.datasets.get(key)
        used = proto.data_name(key, quick) if spec is not None else key
        comparable = spec is not None and not proto.is_substitute(key, quick)
        cells = []
        for row in rows:
            mine = [r for r in runs if r["dataset"] == key and r["method"] == row]
            borrowed = ""
            spec_row = proto.methods.get(row)
            source = spec_row.runs_from if spec_row is not None else None
            if not mine and source and spec is not None:
                if others is None:
                    others = _load_protocols(store)
                if source not in other_runs:
                    other_runs[source] = store.runs(source, variant)
                other = others.get(source)
                # the other table's column for the same data, whatever its key
                their_key = key
                if other is not None and key not in other.datasets:
                    their_key = next(
                        (k for k in other.datasets if other.data_name(k, quick) == used), key
                    )
                their_row = spec_row.source_row
                theirs = [
                    r
                    for r in other_runs[source]
                    if r["dataset"] == their_key and r["method"] == their_row
                ]
                why = (
                    f"{source} is not stored in the database"
                    if other is None
                    else same_cell(proto, other, row, key, quick, key_b=their_key, row_b=their_row)
                )
                if theirs and why is None:
                    where = source if their_row == row else f"{source}'s {their_row} row"
                    mine, borrowed = theirs, f"runs of {where}, same settings"
                elif theirs:
                    borrowed = f"{source}'s runs not shown: {why}"
            if not mine and not quick and spec is not None and row in proto.methods:
                # a quick variant that only narrows the data sets or seeds runs the full cell
                if quick_runs is None:
                    quick_runs = store.runs(proto.name, "quick")
                theirs = [r for r in quick_runs if r["dataset"] == key and r["method"] == row]
                if theirs and same_cell(proto, proto, row, key, False, quick_b=True) is None:
                    mine, borrowed = theirs, "runs of the quick variant, same settings"
            paper = proto.paper.get(row, {}).get(key, {})
            # A row with no run here is kept when the paper reports it somewhere (a to-do),
            # not when it is one of our own diagnostic rows ("not in the paper")
            if not mine and not paper and (row not in proto.methods or not proto.paper.get(row)):
                continue
            if mine:
                used = mine[0]["data_name"]
            cell = CellSummary(
                protocol=proto.name,
                variant=variant,
                dataset=key,
                data_used=used,
                comparable=comparable,
                method=row,
                label=proto.label(row),
                paper=dict(paper),
            )
            if mine:
                cell.seeds = sorted(int(r["seed"]) for r in mine)
                for m in _METRICS:
                    vals = [float(r[m]) for r in mine]
                    cell.mean[m] = float(np.mean(vals))
                    cell.std[m] = _std(vals)
                cell.silhouette = _nanmean(r["silhouette"] for r in mine)
                trained = [r["pretrain_seconds"] for r in mine if r["pretrain_cached"] == 0]
                cached = [r["pretrain_seconds"] for r in mine if r["pretrain_cached"] == 1]
                cell.pretrain_seconds = _nanmean(trained) if trained else _nanmean(cached)
                cell.pretrain_all_cached = bool(cached) and not trained
                cell.fit_seconds = _nanmean(r["fit_seconds"] for r in mine)
                peaks = [r["peak_memory_mb"] for r in mine if r["peak_memory_mb"] is not None]
                cell.peak_memory_mb = float(max(peaks)) if peaks else math.nan
                for r in sorted(mine, key=lambda r: int(r["seed"])):
                    cell.machines.setdefault(_machine(r), []).append(int(r["seed"]))
                cell.commits = sorted({r["git_commit"] for r in mine if r["git_commit"]})
            if spec is not None and not comparable:
                cell.note = f"quick: {used} stands in for {spec.name}"
            notes = [cell.note, borrowed, _mixed_note(cell)]
            cell.note = "; ".join(n for n in notes if n)
            cells.append(cell)
        out[key] = cells
    return out


def _mixed_note(cell: CellSummary) -> str:
    """Which machines (with their seeds) and how many code versions a row's runs mix; '' when
    one of each. Times (and, across code versions, results) of such a row are not one
    measurement."""
    parts = []
    if len(cell.machines) > 1:
        parts.append(
            "runs from "
            + ", ".join(
                f"{m} (seed{'s' if len(s) > 1 else ''} {','.join(map(str, s))})"
                for m, s in cell.machines.items()
            )
        )
    if len(cell.commits) > 1:
        parts.append(f"{len(cell.commits)} code versions (see Code above)")
    return "; ".join(parts)


def shift_curves(
    proto: Protocol, runs: Sequence[dict]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, float]]]:
    """Accuracy after each shift of a classification protocol's runs (one data set).

    Parameters
    ----------
    proto : Protocol
    runs : sequence of dict
        Stored runs of one data set (``ResultStore.runs`` rows).

    Returns
    -------
    curves : dict
        Representation label -> classifier -> array (n_seeds, n_stages), from the runs with a
        per-stage history (seeds whose curve length differs from the first are left out).
    baselines : dict
        Representation label -> classifier -> mean accuracy of the encoder-free inputs (pixels).
    """
    cells = proto.classification_cells()
    per: dict[str, dict[str, list[list[float]]]] = {}
    base: dict[str, dict[str, list[float]]] = {}
    for r in sorted(runs, key=lambda r: int(r["seed"])):
        if r["method"] not in cells:
            continue
        rep, clf = cells[r["method"]]
        label = proto.methods[rep].label
        if r.get("history_json"):
            curve = [float(h["acc"]) for h in json.loads(r["history_json"])]
            per.setdefault(label, {}).setdefault(clf, []).append(curve)
        elif proto.methods[rep].estimator == "pixels":
            base.setdefault(label, {}).setdefault(clf, []).append(float(r["acc"]))
    curves = {
        label: {
            clf: np.array([c for c in lists if len(c) == len(lists[0])]) for clf, lists in d.items()
        }
        for label, d in per.items()
    }
    baselines = {label: {c: float(np.mean(v)) for c, v in d.items()} for label, d in base.items()}
    return curves, baselines


def _classification_md(
    proto: Protocol, key: str, cells: list[CellSummary], runs: list[dict]
) -> list[str]:
    """The paper's table layout and the per-shift accuracies for one data set."""
    lines: list[str] = []
    layout = proto.classification_cells()
    by_row = {c.method: c for c in cells}
    clfs = list(proto.classifiers)
    if layout and clfs:
        lines.append(f"{proto.table} layout: accuracy in %, ours (mean ± std over splits) / paper.")
        lines.append("")
        header = ["Input", *(proto.classifiers[c].label for c in clfs)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for m in proto.methods:
            row = [_md_escape(proto.methods[m].label)]
            for c in clfs:
                cell = by_row.get(f"{m}-{c}")
                ours = _DASH
                paper = ""
                if cell is not None and "acc" in cell.mean:
                    std = cell.std.get("acc", math.nan)
                    ours = f"{100 * cell.mean['acc']:.2f}" + (
                        "" if math.isnan(std) else f" ± {100 * std:.2f}"
                    )
                if cell is not None and "acc" in cell.paper:
                    p_std = cell.paper.get("acc_std")
                    paper = f"{100 * cell.paper['acc']:.2f}" + (
                        "" if p_std is None else f" ± {100 * p_std:.2f}"
                    )
                row.append(f"{ours} / {paper}" if paper else ours)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    curves, _ = shift_curves(proto, [r for r in runs if r["dataset"] == key])
    if curves:
        n_stages = max(a.shape[1] for d in curves.values() for a in d.values() if a.size)
        lines.append(
            "Accuracy (%) after each target shift, mean over splits (Figs. 3-4; shift 0 is the "
            "standard AE before any shift):"
        )
        lines.append("")
        header = ["Input, classifier", "Splits", *(str(i) for i in range(n_stages))]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for label, per_clf in curves.items():
            for c in clfs:
                if c not in per_clf or not per_clf[c].size:
                    continue
                means = per_clf[c].mean(axis=0)
                vals = [f"{100 * v:.2f}" for v in means]
                vals += [""] * (n_stages - len(vals))
                name = f"{label}, {proto.classifiers[c].label}"
                lines.append(
                    f"| {_md_escape(name)} | {len(per_clf[c])} | " + " | ".join(vals) + " |"
                )
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------


def _fmt_paper(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    text = f"{v:.4f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _fmt_ours(cell: CellSummary, metric: str) -> str:
    if metric not in cell.mean:
        return _DASH
    std = cell.std.get(metric, math.nan)
    mean = cell.mean[metric]
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def _fmt_paper_cell(cell: CellSummary, metric: str) -> str:
    if metric not in cell.paper:
        return ""
    text = _fmt_paper(cell.paper[metric])
    std = cell.paper.get(f"{metric}_std")
    return text if std is None else f"{text} ± {_fmt_paper(std)}"


def _fmt_diff(cell: CellSummary, metric: str) -> str:
    if metric not in cell.paper:
        return ""
    if not cell.comparable:
        return "n/c"
    d = cell.diff(metric)
    return _DASH if math.isnan(d) else f"{d:+.3f}"


def _fmt_seconds(v: float) -> str:
    if math.isnan(v):
        return ""
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(text: str) -> str:
    keep = [c for c in text.lower().replace(" ", "-") if c.isalnum() or c in "-_"]
    return "".join(keep)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _md_section(store: ResultStore, proto: Protocol, variant: str) -> list[str]:
    quick = variant == "quick"
    runs = store.runs(proto.name, variant)
    lines = [f"## {proto.name} ({variant})", ""]
    where = proto.table + (f", p. {proto.page}" if proto.page else "")
    lines.append(f"**{proto.title}** — {proto.citation}, {where}.")
    lines.append("")
    metric_names = ", ".join(m.upper() for m in proto.metrics)
    seeds_used = sorted({int(r["seed"]) for r in runs})
    nmi_text = (
        f"; NMI normalised by the {proto.nmi_average} mean of the entropies"
        if "nmi" in proto.metrics
        else ""
    )
    if proto.paper:
        lines.append(
            f"- Paper reports {metric_names}{nmi_text}; the paper's numbers are over "
            f"{proto.seeds} run(s)."
        )
    else:  # a library protocol: no paper table to set beside
        lines.append(f"- No paper numbers; we report {metric_names}{nmi_text}.")
    if runs:
        lines.append(
            f"- Ours: {len(runs)} run(s), seeds {', '.join(map(str, seeds_used))} "
            "(per row below); mean ± sample standard deviation over seeds. Labels are used only "
            "to evaluate."
        )
    else:
        lines.append("- No runs of this variant in the database yet: paper numbers only.")
    if quick:
        lines.append(
            "- Quick variant (CPU): fewer epochs and seeds than the paper"
            + (f"; {proto.quick['note']}" if proto.quick.get("note") else "")
            + ". Δ is given only where the data set is the paper's."
        )
    commands = list(dict.fromkeys(r["command"] for r in runs if r["command"]))
    if commands:
        lines.append("- Commands:")
        lines += [f"  - `{c}`" for c in commands]
    commits = sorted({r["git_commit"] for r in runs if r["git_commit"]})
    if commits:
        lines.append(f"- Code: git {', '.join(commits)}")
    vers = list(dict.fromkeys(r["versions_json"] for r in runs if r["versions_json"]))
    for v in vers:
        d = json.loads(v)
        lines.append("- Versions: " + ", ".join(f"{k} {val}" for k, val in d.items()))
    devices = sorted({f"{r['device']} ({r['precision']})" for r in runs})
    if devices:
        lines.append(f"- Device: {', '.join(devices)}")
    if proto.notes:
        lines.append("- Notes:")
        lines += [f"  - {_md_escape(n)}" for n in proto.notes]
    lines.append("")

    for key, cells in summarize(store, proto, variant).items():
        spec = proto.datasets.get(key)
        label = spec.label if spec is not None else key
        used = cells[0].data_used if cells else key
        lines.append(f"### {label} (`{key}`; data: `{used}`)")
        lines.append("")
        if spec is not None and spec.note:
            lines.append(f"*{_md_escape(spec.note)}*")
            lines.append("")
        if spec is not None and proto.is_substitute(key, quick):
            lines.append(
                f"**quick: `{used}` stands in for `{spec.name}`**: the paper's numbers are for "
                f"`{spec.name}` and are shown for reference only (Δ n/c = not comparable)."
            )
            lines.append("")
        shown = _METRICS if proto.kind == "clustering" else proto.metrics
        header = ["Method", "Seeds"]
        for m in shown:
            header.append(m.upper())
            if m in proto.metrics:
                header += [f"{m.upper()} paper", f"Δ {m.upper()}"]
        if proto.kind == "clustering":
            header += ["Silhouette", "Pretrain s", "Fit s"]
        elif proto.kind == "classification":
            header.append("Encoder fit s")
        header.append("Note")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for cell in cells:
            seeds = f"{cell.n_seeds} ({','.join(map(str, cell.seeds))})" if cell.seeds else "0"
            row = [_md_escape(cell.label), seeds]
            for m in shown:
                row.append(_fmt_ours(cell, m))
                if m in proto.metrics:
                    row += [_fmt_paper_cell(cell, m), _fmt_diff(cell, m)]
            if proto.kind == "clustering":
                sil = "" if math.isnan(cell.silhouette) else f"{cell.silhouette:.3f}"
                pre = _fmt_seconds(cell.pretrain_seconds)
                if pre and cell.pretrain_all_cached:
                    pre += " (cache)"
                row += [sil, pre, _fmt_seconds(cell.fit_seconds)]
            elif proto.kind == "classification":
                row.append(_fmt_seconds(cell.fit_seconds))
            row.append(_md_escape(cell.note))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if proto.kind == "classification":
            lines += _classification_md(proto, key, cells, runs)

    failures = store.failures(proto.name, variant)
    if failures:
        lines.append("Failed cells (retried by the next run):")
        lines.append("")
        for f in failures:
            err = _md_escape(f["error"].splitlines()[0][:200])
            lines.append(f"- {f['method']} on {f['dataset']}, seed {f['seed']}: {err}")
        lines.append("")
    return lines


def render_markdown(
    db: str | os.PathLike[str] | ResultStore,
    *,
    protocol: str | None = None,
    variant: str | None = None,
) -> str:
    """The report of the protocols in the database as Markdown (one section per variant).

    Parameters
    ----------
    db : path-like or ResultStore
    protocol : str, optional
        Only this protocol.
    variant : {"full", "quick"}, optional
        Only this variant (default: every variant with runs; "full" when there is none).

    Returns
    -------
    str
    """
    with _open(db) as store:
        protos = _selected(store, protocol)
        lines: list[str] = []
        for proto in protos.values():
            for v in _variants(store, proto.name, variant):
                lines += _md_section(store, proto, v)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Summary table: one row per method, one column per data set
# ---------------------------------------------------------------------------------------------

#: Rows of the summary table, in order: CLI method name -> the protocol of its own paper.
#: The last two rows are the user's alternatives to deep clustering.
SUMMARY_METHODS: dict[str, str] = {
    "kdae": "kdae-table2",
    "damic": "kdae-table2",
    "ccae": "ccae-table2",
    "icae": "icae-table7",
    "vcc": "vcc-table2",
    "ct": "ct-tables2-3",
    "dec": "baselines",
    "idec": "baselines",
    "dcn": "baselines",
    "dkm": "baselines",
    "ae-kmeans": "baselines",
    "n2d": "n2d",
    "kmeans": "baselines",
}

#: Columns of the summary table in this order (those with a run), then any other data set run.
SUMMARY_DATASETS: tuple[str, ...] = (
    "usps",
    "mnist_test",
    "mnist",
    "fashion_test",
    "fashion_mnist",
    "coil20",
    "orl",
    "yale",
    "yaleb",
)

#: The rule that picks each summary cell (printed under the table).
SUMMARY_RULE = (
    "Rule: each cell is the ACC row of the method's own protocol (the Protocol column) named "
    "like the method, else that table's first paper row whose estimator is the method "
    "(ccae: CCAE-1, the CCAE defaults); its full variant, else its quick variant, in the first "
    "column that ran on that data set; where that protocol has no run of the method on the data "
    "set, the row named like the method in the other clustering protocols (full variants "
    "first, then quick, each in name order; named in brackets). fp32 runs only."
)


@dataclass
class SummaryCell:
    """One (method, data set) cell of the summary table.

    Parameters
    ----------
    method : str
        CLI method name (the row).
    dataset : str
        Registry name of the data clustered (the column).
    home : str
        The protocol of the method's own paper.
    cell : CellSummary or None
        The protocol cell picked for it (None: no run anywhere).
    stand_in : bool
        The cell is a quick run on data standing in for the paper's (no paper number, no Δ).
    paper : float or None
        Where there is no run: the paper's ACC in the method's own protocol, if any.
    downsample : int or None
        The protocol clustered the images downsampled this many times per side (block means),
        not at the column's resolution.
    """

    method: str
    dataset: str
    home: str
    cell: CellSummary | None = None
    stand_in: bool = False
    paper: float | None = None
    downsample: int | None = None

    @property
    def quick(self) -> bool:
        """bool : The cell comes from a quick variant."""
        return self.cell is not None and self.cell.variant == "quick"

    def text(self) -> str:
        """``ours mean±std (seeds) [mark] / paper / Δ [protocol]``; '—' when nothing ran."""
        c = self.cell
        if c is None:
            return _DASH if self.paper is None else f"{_DASH} / {_fmt_paper(self.paper)}"
        std = c.std.get("acc", math.nan)
        text = f"{c.mean['acc']:.3f}" + ("" if math.isnan(std) else f"±{std:.3f}")
        text += f" ({c.n_seeds})"
        if self.quick:
            text += " †" if self.stand_in else " q"
        if self.downsample and self.downsample > 1:
            text += f" ↓{self.downsample}"
        if "acc" in c.paper and not self.stand_in:
            text += f" / {_fmt_paper(c.paper['acc'])}"
            d = c.diff("acc")
            if not math.isnan(d):
                text += " / " + f"{d:+.3f}".replace("-", "−")
        if c.mixed:
            text += " ‡"
        if c.protocol != self.home:
            text += f" [{c.protocol}]"
        return text


def _home_row(proto: Protocol, method: str) -> str | None:
    """The row of a method in its own protocol: named like it, else the first paper row (then
    other rows) whose estimator is the method."""
    if method in proto.methods:
        return method
    return next(
        (r for r in proto.rows() if r in proto.methods and proto.methods[r].estimator == method),
        None,
    )


def summary_cells(
    store: ResultStore,
    methods: Mapping[str, str] | None = None,
    *,
    variants: Sequence[str] = ("full", "quick"),
) -> dict[str, dict[str, SummaryCell]]:
    """The summary table: for each method and data set, the ACC cell picked by the rule.

    The rule (:data:`SUMMARY_RULE`): in the method's own protocol, the row named like the
    method, else the first paper row whose estimator is the method; its full variant, else its
    quick one (the first column that ran on the data set); where it has no run there, the row
    named like the method in the other fp32 clustering protocols, full variants before quick,
    protocols in name order. A quick run on a substitute data set is a stand-in.

    Parameters
    ----------
    store : ResultStore
    methods : mapping, optional
        CLI method name -> its own protocol, in row order (default :data:`SUMMARY_METHODS`).
    variants : sequence of {"full", "quick"}
        Variants that may fill a cell, preferred first.

    Returns
    -------
    dict
        Method -> data set -> :class:`SummaryCell`, for every data set that some method ran on
        (:data:`SUMMARY_DATASETS` first, in that order).
    """
    methods = SUMMARY_METHODS if methods is None else methods
    protos = {
        name: p
        for name, p in sorted(_load_protocols(store).items())
        if "+" not in name and p.kind == "clustering" and "acc" in p.metrics
    }
    present = {name: {r["variant"] for r in store.runs(name)} for name in protos}
    tables: dict[tuple[str, str], dict[str, list[CellSummary]]] = {}

    def table(name: str, variant: str) -> dict[str, list[CellSummary]]:
        if (name, variant) not in tables:
            found = variant in present[name]
            tables[name, variant] = summarize(store, protos[name], variant) if found else {}
        return tables[name, variant]

    home_rows = {m: _home_row(protos[h], m) if h in protos else None for m, h in methods.items()}
    picked: dict[str, dict[str, SummaryCell]] = {}
    for method, home in methods.items():
        row = home_rows[method]
        order = [(home, v, row) for v in variants if row is not None]
        order += [(p, v, method) for v in variants for p in protos if p != home]
        cells: dict[str, SummaryCell] = {}
        for name, variant, r in order:
            for key, rows in table(name, variant).items():
                cell = next((c for c in rows if c.method == r and c.seeds), None)
                if cell is None or cell.data_used in cells or "acc" not in cell.mean:
                    continue
                stand_in = key in protos[name].datasets and protos[name].is_substitute(
                    key, variant == "quick"
                )
                spec = protos[name].datasets.get(key)
                cells[cell.data_used] = SummaryCell(
                    method,
                    cell.data_used,
                    home,
                    cell,
                    stand_in,
                    downsample=spec.downsample if spec is not None else None,
                )
        picked[method] = cells
    columns = [d for d in SUMMARY_DATASETS if any(d in c for c in picked.values())]
    columns += [d for c in picked.values() for d in c if d not in columns]
    columns = list(dict.fromkeys(columns))
    out: dict[str, dict[str, SummaryCell]] = {}
    for method, home in methods.items():
        proto, row = protos.get(home), home_rows[method]
        out[method] = {}
        for d in columns:
            sc = picked[method].get(d)
            if sc is None:
                # not run anywhere: the paper's number of the method's own table, if any
                sc = SummaryCell(method, d, home)
                if proto is not None and row is not None:
                    sc.paper = next(
                        (
                            proto.paper[row][k]["acc"]
                            for k in proto.paper.get(row, {})
                            if k in proto.datasets
                            and proto.data_name(k, False) == d
                            and "acc" in proto.paper[row][k]
                        ),
                        None,
                    )
            out[method][d] = sc
    return out


def summary_md(store: ResultStore, *, variants: Sequence[str] = ("full", "quick")) -> list[str]:
    """The summary section of ``BENCHMARKS.md``: :func:`summary_cells` as one Markdown table,
    its legend and the rule that picked each cell."""
    from aeclust.methods import METHODS

    table = summary_cells(store, variants=variants)
    columns = list(next(iter(table.values()), {}))
    lines = [
        "## Summary",
        "",
        "ACC of each method (rows: estimator class, CLI name, and the protocol of its own paper) "
        "on each data set clustered (columns): ours as mean ± sample standard deviation over "
        "seeds (number of seeds) / the paper's number / Δ = ours − paper; the paper's number and "
        "Δ are left out where the paper has none. **q**: the protocol's quick variant (CPU: "
        "fewer epochs than the paper) on the paper's data (runs made with `--quick` whose "
        "settings are the full protocol's, e.g. fewer seeds or data sets, count as full); "
        "**†**: the quick variant on "
        "a stand-in data set (e.g. `mnist_test` for the paper's `mnist`), so no paper number "
        "and no Δ; **↓n**: the images were downsampled n times per side (n × n block means), "
        "not clustered at the column's resolution; **‡**: the seeds ran on more than one "
        "machine or code version (the section's Note column says which); **[protocol]**: the "
        "cell comes from that protocol, not the method's own; "
        "'— / 0.77': not run, the paper's number; '—': no run. KMeans (k-means on the pixels) "
        "and N2D are the user's alternatives to deep clustering. The sections below hold every "
        "row, NMI, ARI and times.",
        "",
    ]
    header = ["Method", "Protocol", *(f"`{d}`" for d in columns)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for method, cells in table.items():
        home = next(iter(cells.values())).home if cells else SUMMARY_METHODS.get(method, "")
        cls = METHODS[method].__name__ if method in METHODS else method
        row = [f"{cls} (`{method}`)", home, *(_md_escape(c.text()) for c in cells.values())]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", SUMMARY_RULE, ""]
    return lines


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def render_csv(
    db: str | os.PathLike[str] | ResultStore,
    *,
    protocol: str | None = None,
    variant: str | None = None,
) -> str:
    """The report as CSV, one line per (protocol, variant, data set, method); see CSV_COLUMNS."""

    def num(v: float) -> str:
        return "" if v is None or math.isnan(v) else f"{v:.10g}"

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    with _open(db) as store:
        for proto in _selected(store, protocol).values():
            for v in _variants(store, proto.name, variant):
                for key, cells in summarize(store, proto, v).items():
                    for c in cells:
                        row: list[Any] = [
                            c.protocol,
                            c.variant,
                            key,
                            c.data_used,
                            int(c.comparable),
                            c.method,
                            c.label,
                            c.n_seeds,
                            " ".join(map(str, c.seeds)),
                        ]
                        for m in _METRICS:
                            row += [num(c.mean.get(m, math.nan)), num(c.std.get(m, math.nan))]
                        row.append(num(c.silhouette))
                        for m in _METRICS:
                            row += [
                                num(c.paper.get(m, math.nan)),
                                num(c.paper.get(f"{m}_std", math.nan)),
                            ]
                        row += [num(c.diff(m)) for m in _METRICS]
                        row += [
                            num(c.pretrain_seconds),
                            num(c.fit_seconds),
                            num(c.peak_memory_mb),
                            c.note,
                        ]
                        writer.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


class _open:
    """Open a store from a path (closing it after) or use a given one."""

    def __init__(self, db: str | os.PathLike[str] | ResultStore) -> None:
        self._given = db if isinstance(db, ResultStore) else None
        if self._given is None:
            path = Path(db)
            if not path.is_file():
                raise FileNotFoundError(
                    f"no results database at {path}; run `aeclust bench`, or `aeclust results "
                    f"import {COMMITTED_RUNS}`, first, or pass --db"
                )
            self._path = path

    def __enter__(self) -> ResultStore:
        self._store = self._given or ResultStore(self._path)
        return self._store

    def __exit__(self, *exc: object) -> None:
        if self._given is None:
            self._store.close()


def _selected(store: ResultStore, protocol: str | None) -> dict[str, Protocol]:
    protos = _load_protocols(store)
    if protocol is None:
        return protos
    name = Path(protocol).stem if protocol.endswith(".toml") else protocol
    if name not in protos:
        raise ValueError(
            f"protocol {protocol!r} is not in the results database; present: "
            f"{', '.join(protos) or 'none'}"
        )
    return {name: protos[name]}


def render_report(
    db: str | os.PathLike[str] | ResultStore,
    *,
    fmt: str = "md",
    protocol: str | None = None,
    variant: str | None = None,
) -> str:
    """Render the report as ``"md"`` or ``"csv"`` (see :func:`render_markdown`)."""
    if variant not in (None, "full", "quick"):
        raise ValueError(f"variant must be 'full' or 'quick', got {variant!r}")
    if fmt == "md":
        return render_markdown(db, protocol=protocol, variant=variant)
    if fmt == "csv":
        return render_csv(db, protocol=protocol, variant=variant)
    raise ValueError(f"format must be 'md' or 'csv', got {fmt!r}")


def _machines_md(store: ResultStore, protos: Iterable[str]) -> list[str]:
    from aeclust.bench.env import machine_info

    used: dict[str, set[str]] = {}
    described: dict[str, dict] = {}
    for name in protos:
        for r in store.runs(name):
            raw = r["machine_json"] or "{}"
            used.setdefault(raw, set()).add(f"{name} ({r['variant']})")
            described[raw] = json.loads(raw)
    lines = ["## Machines", ""]
    if not used:
        here = machine_info()
        described = {"": here}
        used = {"": {"(no runs yet; this is the machine that wrote the report)"}}
    for raw, info in described.items():
        gpu = info.get("gpu") or "none"
        if info.get("gpu_memory_gb"):
            gpu += f" ({info['gpu_memory_gb']} GiB)"
        lines.append(
            f"- CPU {info.get('cpu', '?')}, {info.get('cores', '?')} logical cores "
            f"({info.get('cores_usable', '?')} usable), torch threads "
            f"{info.get('torch_threads', '?')}, GPU {gpu}; {info.get('platform', '')}. "
            f"Ran: {', '.join(sorted(used[raw]))}."
        )
    lines.append("")
    return lines


def _fmt_rate(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.0f}"


def _fmt_ratio(num: float | None, den: float | None) -> str:
    return "—" if not num or not den else f"{num / den:.2f}×"


def _machine(row: Mapping[str, Any]) -> str:
    """The machine a stored run or throughput row was measured on: its device, with the CPU
    model for CPUs (a CUDA device string already names its GPU)."""
    device = row["device"] or "?"
    try:
        cpu = json.loads(row["machine_json"] or "{}").get("cpu")
    except (TypeError, ValueError):
        cpu = None
    return f"{device} ({cpu})" if device == "cpu" and cpu else device


def speed_md(store: ResultStore) -> list[str]:
    """The throughput section: per machine (device, and CPU model for CPUs), the newest
    ``aeclust bench --speed`` session of each phase (a later ``--phases primitive`` run
    replaces the primitives only)."""
    rows = store.speed_rows()
    if not rows:
        return []
    # Two CPUs of the same kind ("cpu") are different machines (AVX-512 against AMX bf16 moved
    # the bf16 ratio from 1.8x to 2.4x): the newest session is kept per machine, not per device.
    for r in rows:
        r["device"] = _machine(r)
    newest: dict[tuple[str, str], str] = {}
    for r in rows:
        key = (r["device"], r["phase"])
        newest[key] = max(newest.get(key, ""), r["session"])
    sessions = sorted({(device, session) for (device, _), session in newest.items()})
    lines = [
        "## Throughput",
        "",
        "Samples per second measured by `aeclust bench --speed` on a quiet machine (best of "
        "the repeats after a warm-up; see `aeclust.bench.speed`); per machine (the device, and "
        "the CPU model for CPUs), the newest session of each phase (pretraining, clustering "
        "phases, primitives), each under its own heading. "
        "*Bare fp32* is the shortest correct hand-written torch loop (plain Adam, MSE) on the "
        "same architecture and batch size, in fp32; the ratios are aeclust's rate over it. A "
        "method's rate counts the training samples of every optimisation step of its "
        "clustering phase over the whole phase's wall time (target refreshes, k-means and "
        "kNN graphs included); its bare loop does the same work per step on a copy of the "
        "method's fitted networks (k-DAE: the k autoencoders and eq. 1; DAMIC: those and the "
        "gate; ICAE: its augmented views, MMD, reconstruction and Sobel terms; the others: "
        "reconstruction on the method's autoencoder, since 2026-12-07 one measurement of at "
        "least 5 repeats shared by every method on the same network, batch and data), so the "
        "ratio is what the method's loop, hooks and whole-data passes cost beyond its steps' "
        "arithmetic. Sessions measured "
        "before 2026-12-06T23:30 UTC compared k-DAE, DAMIC and ICAE with plain "
        "reconstruction too: their ratios for those three are not comparable with later ones "
        "(benchmarks/notes/30-clustering-phase-speed.md).",
        "",
    ]
    for device, session in sessions:
        batch = [
            r
            for r in rows
            if r["session"] == session
            and r["device"] == device
            and newest[(device, r["phase"])] == session
        ]
        first = batch[0]
        lines += [
            f"### {device}, {session}",
            "",
            f"Command: `{first['command'] or 'aeclust bench --speed'}` at commit "
            f"{(first['git_commit'] or '?')[:10]}.",
            "",
        ]
        pre = [r for r in batch if r["phase"] == "pretrain"]
        if pre:
            lines += [
                "| pretraining | batch | aeclust samples/s | bare loop, same precision "
                "| bare fp32 | aeclust / bare fp32 |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for r in pre:
                cfg = json.loads(r["config_json"] or "{}")
                arch = "-".join(str(d) for d in cfg.get("architecture", []))
                lines.append(
                    f"| {arch} AE, {r['precision']} | {r['batch_size']} "
                    f"| {_fmt_rate(r['samples_per_s'])} "
                    f"| {_fmt_rate(cfg.get('bare_same_precision_samples_per_s'))} "
                    f"| {_fmt_rate(r['reference_samples_per_s'])} "
                    f"| {_fmt_ratio(r['samples_per_s'], r['reference_samples_per_s'])} |"
                )
            lines.append("")
        cluster = [r for r in batch if r["phase"] == "cluster"]
        if cluster:
            precisions = list(dict.fromkeys(r["precision"] for r in cluster))
            head = "| method | batch | n "
            head += "".join(f"| {p} s | {p} samples/s " for p in precisions)
            head += "| bare fp32 loop, same work | " + " | ".join(f"{p} / bare" for p in precisions)
            if "fp32" in precisions and "bf16" in precisions:
                head += " | bf16 / fp32"
            lines += [head + " |", "|---" * (head.count("|") - 1) + "|"]
            for name in dict.fromkeys(r["name"] for r in cluster):
                by = {r["precision"]: r for r in cluster if r["name"] == name}
                any_row = next(iter(by.values()))
                ref = any_row["reference_samples_per_s"]
                cells = [name, str(any_row["batch_size"] or "—"), f"{any_row['n_samples']:,}"]
                for p in precisions:
                    r = by.get(p)
                    cells += [
                        "—" if r is None else _fmt_seconds(r["seconds"]),
                        "—" if r is None else _fmt_rate(r["samples_per_s"]),
                    ]
                cells.append(_fmt_rate(ref))
                cells += [
                    _fmt_ratio(by[p]["samples_per_s"] if p in by else None, ref) for p in precisions
                ]
                if "fp32" in precisions and "bf16" in precisions:
                    fp, bf = by.get("fp32"), by.get("bf16")
                    cells.append(
                        "—" if not fp or not bf else f"{fp['seconds'] / bf['seconds']:.2f}× faster"
                    )
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        prim = [r for r in batch if r["phase"] == "primitive"]
        if prim:
            lines += ["| primitive | precision | seconds | data |", "|---|---|---:|---|"]
            for r in prim:
                cfg = json.loads(r["config_json"] or "{}")
                data = cfg.get("data", "")
                lines.append(f"| {r['name']} | {r['precision']} | {r['seconds']:.2f} | {data} |")
            lines.append("")
    return lines


#: A first choice "agrees" with the labels when its ACC is at most this far below the best
#: candidate's (issue 27: within 2 ACC points).
SELECTION_TOLERANCE = 0.02

#: Criteria sets whose first choices the report compares on the stored rankings (the first is
#: the default of ``aeclust select``).
COMPARED_CRITERIA: tuple[tuple[str, ...], ...] = (
    ("stability", "consensus", "silhouette"),
    ("stability", "consensus", "modularity"),
    ("stability", "consensus", "silhouette", "modularity"),
    ("stability",),
    ("consensus",),
    ("silhouette",),
    ("modularity",),
)


def selection_md(store: ResultStore) -> list[str]:
    """The label-free selection section: per data set, the newest ``aeclust select --db``
    ranking, and how often its first choice is within :data:`SELECTION_TOLERANCE` ACC of the
    best candidate (ACC from the labels, which the ranking never saw)."""
    rows = store.selection_rows()
    if not rows:
        return []
    newest: dict[str, str] = {}
    for r in rows:
        newest[r["dataset"]] = max(newest.get(r["dataset"], ""), r["session"])
    rankings = {
        dataset: [r for r in rows if r["dataset"] == dataset and r["session"] == session]
        for dataset, session in sorted(newest.items())
    }
    lines = [
        "## Label-free selection",
        "",
        "`aeclust select --db` fits every candidate with each seed and ranks them by the mean "
        "of the ranks of criteria that need no labels (`aeclust.selection.select_method`; "
        "the command says which): stability "
        "(mean ARI between the seeds' partitions), consensus (mean ARI with the other "
        "candidates), the silhouette in the input space and the modularity of the partition "
        "on the input's 10-nearest-neighbour graph (measured since 2026-12-07; the default "
        "ranks by the first three); a candidate that leaves clusters "
        "empty ranks last. ACC is the mean over the seeds, computed from the labels for this "
        "table only. Per data set, the newest ranking. *Agrees*: the first choice's ACC is "
        f"within {SELECTION_TOLERANCE * 100:.0f} ACC points of the best candidate's.",
        "",
        "| data set | candidates | seeds | first choice | its ACC | best candidate | best ACC "
        "| agrees | ρ | measured |",
        "|---|---|---:|---|---:|---|---:|---|---:|---|",
    ]
    agree = scored = 0
    for dataset, ranking in rankings.items():
        first = ranking[0]
        with_acc = [r for r in ranking if r["acc"] is not None]
        seeds = len(json.loads(first["seeds"] or "[]"))
        names = ", ".join(r["candidate"] for r in sorted(ranking, key=lambda r: r["candidate"]))
        if with_acc and first["acc"] is not None:
            best = max(with_acc, key=lambda r: r["acc"])
            ok = first["acc"] >= best["acc"] - SELECTION_TOLERANCE
            agree, scored = agree + ok, scored + 1
            cells = [f"{first['acc']:.3f}", best["candidate"], f"{best['acc']:.3f}"]
            cells.append("yes" if ok else f"no ({first['acc'] - best['acc']:+.3f})")
            cells.append(_fmt_rho(_rank_agreement(ranking)))
        else:
            cells = ["—", "—", "—", "— (no labels)", "—"]
        lines.append(
            f"| `{dataset}` | {names} | {seeds} | {first['candidate']} | "
            + " | ".join(cells)
            + f" | {first['measured_at'][:10]} |"
        )
    lines.append("")
    if scored:
        lines += [
            f"First choice within {SELECTION_TOLERANCE * 100:.0f} ACC points of the best: "
            f"**{agree} of {scored}** data sets. ρ: Spearman's rank correlation between the "
            "ranking and the candidates' ACC (1: the same order; 0: unrelated; equal ACCs "
            "share a rank).",
            "",
        ]
        lines += _criteria_comparison_md(rankings)
    for dataset, ranking in rankings.items():
        first = ranking[0]
        lines += [
            f"### Ranking on `{dataset}`",
            "",
            f"Command: `{first['command']}` ({first['n_samples']:,} samples, "
            f"{first['n_clusters']} clusters), at commit {(first['git_commit'] or '?')[:10]}, "
            f"on {_machine(first)}.",
            "",
            "| # | candidate | stability | consensus | silhouette | modularity | mean rank "
            "| clusters used | fit s (per seed) | ACC (not used) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in ranking:
            acc = "—" if r["acc"] is None else f"{r['acc']:.3f}"
            modularity = "—" if r.get("modularity") is None else f"{r['modularity']:.3f}"
            lines.append(
                f"| {r['position']} | {r['candidate']} | {r['stability']:.3f} "
                f"| {r['consensus']:.3f} | {r['silhouette']:.3f} | {modularity} "
                f"| {r['rank']:.2f} "
                f"| {r['n_nonempty']} | {_fmt_seconds(r['seconds'])} | {acc} |"
            )
        lines.append("")
    return lines


def _rank_agreement(ranking: Sequence[Mapping[str, Any]]) -> float:
    """Spearman's ρ between a ranking (best first) and its candidates' ACC; nan when undefined."""
    from scipy.stats import spearmanr

    accs = [r["acc"] for r in ranking]
    if len(accs) < 3 or any(a is None for a in accs) or len(set(accs)) < 2:
        return math.nan
    # the first place is the best, so its score is the highest: -position
    return float(spearmanr([-i for i in range(len(accs))], accs).statistic)


def _fmt_rho(rho: float) -> str:
    return "—" if not np.isfinite(rho) else f"{rho:+.2f}"


def _criteria_comparison_md(rankings: Mapping[str, list[dict]]) -> list[str]:
    """Each of :data:`COMPARED_CRITERIA` applied to the stored criterion values of every
    ranking that measured them: how many first choices are within the tolerance of the best."""
    from aeclust.selection import rank_candidates

    lines = [
        "The same stored rankings ordered again by other sets of criteria (no refit; "
        "`aeclust.selection.rank_candidates`), on the data sets whose ranking measured them "
        "and has ACC:",
        "",
        "| criteria (mean rank) | first choice per data set | within "
        f"{SELECTION_TOLERANCE * 100:.0f} points of the best | mean ρ |",
        "|---|---|---:|---:|",
    ]
    for criteria in COMPARED_CRITERIA:
        picks, agree, rhos = [], 0, []
        for dataset, ranking in rankings.items():
            rows = [dict(r) for r in ranking]
            measured = all(r.get(c) is not None for r in rows for c in criteria)
            if not measured or any(r["acc"] is None for r in rows):
                continue
            ranked = rank_candidates(rows, criteria)
            first = ranked[0]
            rhos.append(_rank_agreement(ranked))
            ok = first["acc"] >= max(r["acc"] for r in rows) - SELECTION_TOLERANCE
            agree += ok
            picks.append(f"`{dataset}`: {first['candidate']}" + ("" if ok else " (no)"))
        if picks:
            lines.append(
                f"| {', '.join(criteria)} | {'; '.join(picks)} | {agree} of {len(picks)} "
                f"| {_fmt_rho(float(np.nanmean(rhos)) if any(np.isfinite(rhos)) else math.nan)} |"
            )
    return [*lines, ""] if len(lines) > 4 else []


def precision_md(store: ResultStore, protos: dict[str, Protocol]) -> list[str]:
    """bf16 against fp32: each protocol run in both, per data set and method (same seeds)."""
    lines: list[str] = []
    for name in protos:
        if "+" not in name:
            continue
        base, precision = name.rsplit("+", 1)
        if base not in protos:
            continue
        for variant in ("full", "quick"):
            low = store.runs(name, variant)
            if not low:
                continue
            ref = {(r["dataset"], r["method"], r["seed"]): r for r in store.runs(base, variant)}
            pairs: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
            for r in low:
                other = ref.get((r["dataset"], r["method"], r["seed"]))
                if other is not None:
                    pairs.setdefault((r["dataset"], r["method"]), []).append((other, r))
            if not pairs:
                continue
            if not lines:
                lines += [
                    "## bf16 against fp32",
                    "",
                    "Protocols run in both precisions, on the same seeds (only seeds present in "
                    "both count): mean ACC in fp32 and in the low precision, their difference in "
                    "points (low − fp32) ± its standard error over the paired seeds, and the "
                    "fit-time ratio (fp32 / low, > 1 = faster; only indicative when the two "
                    "were run in different sessions, on a busier machine or older code: the "
                    "Throughput section compares speed in one session). The "
                    "low-precision rows also have their own tables below (protocol "
                    "`NAME+bf16`).",
                    "",
                    "| protocol | data | method | seeds | fp32 ACC | low ACC | Δ points "
                    "| fit time fp32 / low |",
                    "|---|---|---|---:|---:|---:|---:|---:|",
                ]
            for (dataset, method), items in sorted(pairs.items()):
                fp = [a["acc"] for a, _ in items]
                lo = [b["acc"] for _, b in items]
                t_fp = sum(a["fit_seconds"] for a, _ in items)
                t_lo = sum(b["fit_seconds"] for _, b in items)
                diffs = 100 * (np.array(lo) - np.array(fp))
                se = (
                    f" ± {np.std(diffs, ddof=1) / np.sqrt(len(diffs)):.1f}"
                    if len(diffs) > 1
                    else ""
                )
                lines.append(
                    f"| {base} ({variant}), {precision} | {dataset} | {method} | {len(items)} "
                    f"| {np.mean(fp):.3f} | {np.mean(lo):.3f} | {diffs.mean():+.1f}{se} "
                    f"| {t_fp / t_lo:.2f} |"
                )
    if lines:
        lines.append("")
    return lines


def _note_link(note: str | os.PathLike[str], page_dir: Path) -> str:
    """``- [first heading](path relative to the page)`` for one note file."""
    path = Path(note)
    title = next(
        (
            ln.lstrip("#").strip()
            for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.startswith("#")
        ),
        path.stem,
    )
    rel = Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()
    text = title.replace("[", "\\[").replace("]", "\\]")
    return f"- [{text}]({urllib.parse.quote(rel)})"


def write_benchmarks_md(
    db: str | os.PathLike[str] | ResultStore,
    path: str | os.PathLike[str] = "BENCHMARKS.md",
    *,
    protocol: str | None = None,
    variant: str | None = None,
    notes: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``BENCHMARKS.md``: the summary table, machines, then every protocol, atomically.

    The page holds only generated text. It opens with the summary table (:func:`summary_md`:
    one row per method, one column per data set, ours beside the paper's ACC; left out when
    ``protocol`` is given). Hand-written findings (ablations, re-runs, diagnoses) are Markdown
    files in ``benchmarks/notes/``, each with the commands that produced it; the page lists
    them as links under "Notes", titled by each note's first heading.

    Parameters
    ----------
    db : path-like or ResultStore
        The results database.
    path : path-like, default="BENCHMARKS.md"
        Output file (written to a temporary file, then renamed).
    protocol, variant : str, optional
        Restrict to one protocol / variant.
    notes : sequence of path-like, optional
        Markdown files to link to (relative to the page); default every ``*.md`` in
        ``benchmarks/notes/`` of the repository.

    Returns
    -------
    Path
    """
    if notes is None:
        notes = sorted(p for d in protocol_dirs() for p in (d.parent / "notes").glob("*.md"))
    with _open(db) as store:
        protos = _selected(store, protocol)
        lines = [
            "# aeclust benchmarks",
            "",
            "Generated by `aeclust report --format md` from the results database "
            f"on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Each table sets "
            "our mean ± sample standard deviation over seeds beside the paper's numbers (as "
            "printed, as fractions) and their difference Δ = ours − paper. Δ is only given "
            "where we ran on the paper's data set; a quick run on a substitute is marked "
            "n/c. '—' means no run. Labels are used only for evaluation, never for training, "
            "early stopping or model selection. Pretrain s is the autoencoder pretraining wall "
            "time of runs that trained it ('(cache)': every run loaded the network shared "
            "through the pretraining cache).",
            "",
        ]
        summary = (
            summary_md(store, variants=[variant] if variant else ("full", "quick"))
            if protocol is None
            else []
        )
        lines += summary
        lines += _machines_md(store, protos)
        speed, precision = speed_md(store), precision_md(store, protos)
        selection = selection_md(store) if protocol is None else []
        lines += ["## Contents", ""]
        if summary:
            lines.append("- [Summary](#summary): ACC per method and data set beside the paper")
        if speed:
            lines.append("- [Throughput](#throughput): `aeclust bench --speed`")
        if precision:
            lines.append("- [bf16 against fp32](#bf16-against-fp32): accuracy in both precisions")
        if selection:
            lines.append(
                "- [Label-free selection](#label-free-selection): `aeclust select` against ACC"
            )
        for proto in protos.values():
            for v in _variants(store, proto.name, variant):
                n = len(store.runs(proto.name, v))
                title = f"{proto.name} ({v})"
                lines.append(f"- [{title}](#{_anchor(title)}): {proto.title}; {n} run(s)")
        if notes:
            lines.append("- [Notes](#notes): hand-written findings, one file each")
        lines.append("")
        lines += speed + precision + selection
        for proto in protos.values():
            for v in _variants(store, proto.name, variant):
                lines += _md_section(store, proto, v)
    target = Path(path)
    if notes:
        lines += [
            "## Notes",
            "",
            "Hand-written findings (ablations, re-runs, diagnoses), one file each, with the "
            "commands that produced them:",
            "",
        ]
        lines += [_note_link(note, target.parent) for note in notes]
        lines.append("")
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return target
