"""The ``aeclust`` command line: cluster, predict, select-k, methods, datasets, bench, report.

Every command validates its input at the boundary; a user error ends with one line on stderr and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aeclust import __version__
from aeclust.diagnostics import DegenerateClusteringWarning

logger = logging.getLogger("aeclust")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise CLIError(f"--param expects NAME=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as mlp or sigmoid
    return key.strip().replace("-", "_"), value


def _messages(args: argparse.Namespace) -> Any:
    """Where cluster and predict print their summary: stdout, or stderr when the labels go to
    stdout (``--out -``), so that stdout is the CSV alone."""
    return sys.stderr if getattr(args, "out", None) == "-" else sys.stdout


def _write_labels(args: argparse.Namespace, labels: np.ndarray) -> str:
    """Write the labels as CSV (``index,label``) where ``--out`` says: a file (atomically), or
    stdout for ``-``; nothing without ``--out``. Returns the end of the summary line."""
    from aeclust._utils import atomic_path

    def write(fh: Any) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["index", "label"])
        writer.writerows(zip(range(len(labels)), labels.tolist()))

    if args.out is None:
        return ""
    if args.out == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return "; labels written to stdout"
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as fh:
        write(fh)
    return f"; labels written to {args.out}"


def _embedding_and_scores(args: argparse.Namespace, model: Any, data: Any, labels: Any) -> None:
    """What cluster and predict print and write after their labels: the codes, the scores."""
    from aeclust._utils import atomic_path
    from aeclust.metrics import evaluate, format_metrics

    say = _messages(args)
    if args.embedding:
        codes = model.embed(data.x)
        with atomic_path(args.embedding) as tmp, open(tmp, "wb") as fh:
            np.save(fh, codes)
        print(
            f"embedding {codes.shape[0]} x {codes.shape[1]} written to {args.embedding}", file=say
        )
    if data.y is not None:  # labels are known: score the clustering against them
        print(format_metrics(evaluate(data.y, labels), keys=("acc", "nmi", "ari")), file=say)


def _load_data(args: argparse.Namespace, scaling: Sequence[float] | None = None):
    """The data named by the shared arguments; ``scaling`` maps a FILE's raw values instead of
    ``--scale`` (predict: the training data's recorded ``(offset, divisor)``)."""
    from aeclust.datasets import load_dataset, load_file

    if (args.dataset is None) == (args.file is None):
        raise CLIError("give exactly one of --dataset NAME or a FILE")
    if args.dataset is not None:
        data = load_dataset(args.dataset, args.data_home)
    else:
        scale = tuple(scaling) if scaling is not None else args.scale
        mmap = bool(getattr(args, "from_disk", False))
        data = load_file(args.file, label_column=args.label_column, scale=scale, mmap=mmap)
    if isinstance(data.x, np.memmap):
        # left in its file: the estimator checks the values chunk by chunk before any work
        print(f"{data.name}: rows read from {data.source} as they are needed", file=_messages(args))
    elif not np.isfinite(data.x).all():
        bad = int((~np.isfinite(data.x)).any(axis=1).sum())
        raise CLIError(f"the data contain NaN or infinite values in {bad} rows; clean them first")
    return data


def _value_range(x: np.ndarray) -> tuple[float, float]:
    """Smallest and largest value of the rows; a memory map's read chunk by chunk."""
    from aeclust.rows import disk_rows_of

    rows = disk_rows_of(x)
    if rows is not None:
        return rows.value_range()
    return float(x.min()), float(x.max())


def _n_clusters(args: argparse.Namespace, data: Any) -> int:
    """``--n-clusters``, else the number of classes of labelled data."""
    n_clusters = args.n_clusters or data.n_classes
    if n_clusters is None:
        raise CLIError("--n-clusters is required when the data carry no labels")
    return n_clusters


def _build_estimator(args: argparse.Namespace, data: Any, n_clusters: int) -> Any:
    from aeclust.methods import build_estimator

    if n_clusters > data.n_samples:
        raise CLIError(
            f"--n-clusters {n_clusters} is larger than the number of samples ({data.n_samples})"
        )
    params: dict[str, Any] = dict(_parse_param(p) for p in args.param)
    params.update(n_clusters=n_clusters, random_state=args.seed)
    # the pretraining cache is opt-in, as in the library: --cache, or --cache-dir DIR
    cache = args.cache if args.cache is not None else bool(args.cache_dir)
    try:
        return build_estimator(
            args.method,
            params,
            device=args.device,
            precision=args.precision,
            verbose=args.verbose,
            image_shape=data.image_shape,
            pretrain_cache=(str(args.cache_dir) if args.cache_dir else True) if cache else None,
        )
    except ValueError as exc:  # an unknown method or parameter: one line, not a traceback
        raise CLIError(str(exc)) from None


def _print_cost_estimate(model: Any, data: Any, threshold_min: float) -> None:
    """Say what the fit will cost before it starts; over the threshold, what is cheaper."""
    from aeclust.cost import (
        estimate_fit_cost,
        format_duration,
        measured_settings,
        shorter_settings,
    )

    print(f"probing the cost of {type(model).__name__} on {data.name} ...", flush=True)
    cost = estimate_fit_cost(model, data.x)
    print(cost.summary(), flush=True)
    budget = threshold_min * 60.0
    if cost.seconds <= budget:
        return
    print(f"that is over {format_duration(budget)}; cheaper settings:")
    shorter = shorter_settings(model, cost, budget)
    if shorter:
        settings = " ".join(f"--param {k}={v}" for k, v in shorter.items())
        print(f"  {settings}  (about {format_duration(budget)} by the same estimate)")
    measured = measured_settings(model, data.name)
    if measured:
        print(f"  measured in our benchmark on {data.name} (benchmarks/results/runs.jsonl):")
        for setting in measured[:6]:
            print(f"    {setting.line()}")
    print("  (--estimate-only stops here; --no-estimate skips the probe)", flush=True)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Fit one method on a named dataset or a file; print a summary and, when the labels are
    known, the metrics; write the labels (and codes, model) only where asked."""

    from aeclust import distributed

    # under torchrun (WORLD_SIZE > 1): one process of a data-parallel fit; the first one reports
    parallel = distributed.init_from_env(args.device)
    try:
        return _cluster(args, parallel)
    finally:
        distributed.shutdown()


def _cluster(args: argparse.Namespace, parallel: bool) -> int:
    from aeclust import distributed

    data = _load_data(args)
    n_clusters = _n_clusters(args, data)
    if args.checkpoint_interval < 0:
        raise CLIError(
            f"--checkpoint-interval must be a non-negative number of seconds, "
            f"got {args.checkpoint_interval}"
        )
    model = _build_estimator(args, data, n_clusters)
    main_process = distributed.is_main_process()
    if parallel:
        size = distributed.world()[1]
        if main_process:
            print(f"data-parallel fit: {size} processes", file=_messages(args))
    elif model.deep and not args.no_estimate:
        _print_cost_estimate(model, data, args.estimate_threshold)
    if args.estimate_only:
        return 0
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateClusteringWarning)
        if args.checkpoint_dir:
            from aeclust.training import checkpointing

            # an interrupted run, started again with the same arguments, continues from here
            with checkpointing(args.checkpoint_dir, interval_s=args.checkpoint_interval):
                labels = model.fit_predict(data.x)
        else:
            labels = model.fit_predict(data.x)
    elapsed = time.perf_counter() - start
    if not main_process:  # every process holds the labels; the first one writes and reports
        return 0
    for warning in caught:  # one readable line each (the others as Python prints them)
        if issubclass(warning.category, DegenerateClusteringWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )

    written = _write_labels(args, labels)
    say = _messages(args)
    print(
        f"{args.method} on {data.name}: {data.n_samples} samples, {n_clusters} clusters", file=say
    )
    print(f"fit time {elapsed:.1f} s{written}", file=say)
    if args.save_model:
        # how the rows were scaled and the range they span, so that predict maps new rows alike
        metadata = {
            "data": data.name,
            "scaling": data.scaling,
            "range": list(_value_range(data.x)),
        }
        model.save(args.save_model, metadata=metadata)
        print(f"model saved to {args.save_model}", file=say)
    _embedding_and_scores(args, model, data, labels)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Apply a model saved by ``cluster --save-model`` to new data: labels, optionally the codes.

    The model is restored with :func:`aeclust.load` and its own assignment rule is applied
    (``predict``), so new points go to the clusters found at fit time; nothing is refitted. A
    FILE is scaled by the map recorded with the model (the training data's ``(offset,
    divisor)``) unless ``--scale`` is given.
    """
    from aeclust.methods import load, load_metadata

    model = load(args.model, device=args.device)
    metadata = load_metadata(args.model)
    recorded = metadata.get("scaling")
    use_recorded = args.file is not None and args.scale is None and recorded is not None
    data = _load_data(args, scaling=recorded if use_recorded else None)
    if use_recorded:
        offset, divisor = recorded
        print(
            f"{data.name} scaled as the training data were: (x - {offset:g}) / {divisor:g}",
            file=_messages(args),
        )
    expected = getattr(model, "n_features_in_", data.n_features)
    if data.n_features != expected:
        raise CLIError(
            f"{data.name} has {data.n_features} features per sample but the model in "
            f"{args.model} was fitted on {expected}"
        )
    if "range" in metadata:
        _warn_outside_range(data, metadata["range"])
    labels = model.predict(data.x)
    written = _write_labels(args, labels)
    print(
        f"{type(model).__name__} from {args.model} on {data.name}: {data.n_samples} "
        f"samples{written}",
        file=_messages(args),
    )
    _embedding_and_scores(args, model, data, labels)
    return 0


def _warn_outside_range(data: Any, fitted_range: Sequence[float]) -> None:
    """Warn when new rows lie far outside the values the model was fitted on (another scaling)."""
    lo, hi = (float(v) for v in fitted_range)
    new_lo, new_hi = _value_range(data.x)
    margin = 0.5 * max(hi - lo, 1e-12)
    if new_lo < lo - margin or new_hi > hi + margin:
        print(
            f"warning: {data.name}'s values span [{new_lo:g}, {new_hi:g}] but the model was "
            f"fitted on values in [{lo:g}, {hi:g}]; scale the new data as the training data "
            f"were (--scale, or give the raw file)",
            file=sys.stderr,
        )


def cmd_select_k(args: argparse.Namespace) -> int:
    """Elbow / silhouette sweep over k for one method; print a table and the best k."""
    from aeclust.selection import best_k, select_k

    data = _load_data(args)
    if not 2 <= args.k_min <= args.k_max:
        raise CLIError(f"need 2 <= --k-min <= --k-max, got {args.k_min} and {args.k_max}")
    model = _build_estimator(args, data, args.k_max)
    rows = select_k(model, data.x, range(args.k_min, args.k_max + 1), space=args.space)
    print(f"{'k':>4} {'silhouette':>11} {'objective':>12} {'clusters':>9}")
    for r in rows:
        print(f"{r['k']:>4} {r['silhouette']:>11.4f} {r['objective']:>12.5g} {r['n_nonempty']:>9}")
    print(f"best k by silhouette ({args.space} space): {best_k(rows)}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """Rank methods on the data by label-free criteria (aeclust.selection.select_method)."""
    import copy
    import tempfile

    from aeclust.methods import METHODS
    from aeclust.selection import ALL_SELECTION_CRITERIA, SELECTION_CRITERIA, select_method

    data = _load_data(args)
    n_clusters = _n_clusters(args, data)
    if args.seeds < 2:
        raise CLIError(f"--seeds must be at least 2 (stability compares seeds), got {args.seeds}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(methods) < 2:
        raise CLIError(
            f"--methods needs two or more of {', '.join(sorted(METHODS))}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    args.criteria = args.criteria or ",".join(SELECTION_CRITERIA)
    criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]
    if not criteria or set(criteria) - set(ALL_SELECTION_CRITERIA):
        raise CLIError(
            f"--criteria takes one or more of {', '.join(ALL_SELECTION_CRITERIA)}; "
            f"got {args.criteria!r}"
        )
    params = dict(_parse_param(p) for p in args.param)
    known = set().union(*(METHODS[m]().get_params() for m in methods))
    if set(params) - known:
        raise CLIError(f"no method of {methods} takes {sorted(set(params) - known)}")
    with contextlib.ExitStack() as stack:
        # the candidates of one seed share one pretraining: in --cache-dir when given (a later
        # select, cluster or bench with the same data, network and seed reuses it), else in a
        # folder removed afterwards
        cache = args.cache_dir or stack.enter_context(tempfile.TemporaryDirectory())
        candidates = {}
        for method in methods:
            one = copy.copy(args)
            accepted = METHODS[method]().get_params()
            one.method = method
            one.param = [p for p in args.param if _parse_param(p)[0] in accepted]
            model = _build_estimator(one, data, n_clusters)
            if "pretrain_cache" in accepted:
                model.set_params(pretrain_cache=cache)
            candidates[method] = model
        print(
            f"fitting {len(methods)} methods x {args.seeds} seeds on {data.name} "
            f"({data.n_samples} samples, {n_clusters} clusters) ...",
            flush=True,
        )
        rows = select_method(
            candidates, data.x, seeds=range(args.seeds), y=data.y, criteria=criteria
        )
    header = f"{'method':<12} {'stability':>9} {'consensus':>9} {'silhouette':>10}"
    header += f" {'modularity':>10} {'rank':>5}"
    header += f" {'clusters':>8} {'fit s':>7}" + (
        "  ACC (labels: not used)" if data.y is not None else ""
    )
    print(header)
    for r in rows:
        line = (
            f"{r['name']:<12} {r['stability']:>9.3f} {r['consensus']:>9.3f} "
            f"{r['silhouette']:>10.3f} {r['modularity']:>10.3f} {r['rank']:>5.2f} "
            f"{r['n_nonempty']:>8} {r['seconds']:>7.1f}"
        )
        print(line + (f"  {r['acc']:.3f}" if "acc" in r else ""))
    print(f"first choice (mean rank of {', '.join(criteria)}): {rows[0]['name']}")
    if args.db:
        _store_selection(args, data, n_clusters, methods, params, rows)
    return 0


def _store_selection(args, data, n_clusters: int, methods, params: dict, rows) -> None:
    """Write one ``aeclust select`` ranking into the results database (``--db``)."""
    from aeclust.bench.env import git_commit, machine_info
    from aeclust.bench.store import ResultStore, utc_now
    from aeclust.selection import ALL_SELECTION_CRITERIA

    command = ["aeclust select", f"--dataset {data.name}" if args.dataset else str(args.file)]
    command += [f"--methods {','.join(methods)}", f"--seeds {args.seeds}"]
    command += [f"--criteria {args.criteria}"]
    if args.cache_dir:  # its pretrainings make the fit seconds shorter
        command += [f"--cache-dir {args.cache_dir}"]
    command += [f"--param {p}" for p in args.param] + [f"--device {args.device}"]
    when, machine, commit = utc_now(), machine_info(), git_commit()
    records = [
        {
            "session": when,
            "dataset": data.name,
            "candidate": r["name"],
            "position": position,
            "seeds": list(range(args.seeds)),
            "n_samples": data.n_samples,
            "n_clusters": n_clusters,
            **{k: r[k] for k in (*ALL_SELECTION_CRITERIA, "rank", "n_nonempty")},
            "seconds": r["seconds"],
            "acc": r.get("acc"),
            "params_json": params,
            "device": args.device,
            "git_commit": commit,
            "machine_json": machine,
            "command": " ".join(command),
            "measured_at": when,
        }
        for position, r in enumerate(rows, 1)
    ]
    with ResultStore(args.db) as store:
        store.insert_selection(records)
    print(f"ranking stored in {args.db}")


def cmd_methods(args: argparse.Namespace) -> int:
    """List the methods."""
    from aeclust.methods import METHODS

    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<12} {cls.__name__:<12} {doc}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """List the named datasets, their sizes and whether each is present locally."""
    from aeclust.datasets import get_data_home, list_datasets

    rows = list_datasets(args.data_home)
    print(f"data home: {get_data_home(args.data_home)}")
    print(f"{'name':<14} {'samples':>8} {'shape':<14} {'classes':>7}  present")
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        print(
            f"{r['name']:<14} {r['n_samples'] or '?':>8} {shape:<14} {r['n_classes'] or '?':>7}  "
            f"{'yes' if r['present'] else 'no'}"
        )
    return 0


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"expected a comma-separated list, got {text!r}")
    return items


def cmd_speed(args: argparse.Namespace) -> int:
    """``aeclust bench --speed``: the throughput table (aeclust against a bare torch loop)."""
    from aeclust.bench.speed import SpeedRunError, run_speed

    if args.protocol is not None:
        raise CLIError("--speed takes no protocol (it measures throughput, not a paper table)")
    datasets = _csv_list(args.datasets) or ["mnist_test"]
    if len(datasets) != 1:
        raise CLIError(f"--speed measures on one dataset, got {datasets}")
    precisions = [args.precision] if args.precision else ["fp32", "bf16"]
    phases = _csv_list(args.phases) or ["pretrain", "cluster", "primitive"]
    parts = ["aeclust", "bench", "--speed", "--datasets", datasets[0]]
    if args.methods:
        parts += ["--methods", args.methods]
    if args.precision:
        parts += ["--precision", args.precision]
    if args.phases:
        parts += ["--phases", args.phases]
    if args.repeats != 2:
        parts += ["--repeats", str(args.repeats)]
    if args.device != "auto":
        parts += ["--device", args.device]

    def show(row) -> None:
        rate = "" if row.samples_per_s is None else f"{row.samples_per_s:9.0f} samples/s"
        ref = row.reference_samples_per_s
        vs = (
            ""
            if ref is None or row.samples_per_s is None
            else f"  ({row.samples_per_s / ref:.2f}x bare fp32)"
        )
        print(
            f"{row.phase:<9} {row.name:<36} {row.precision:<8} {row.seconds:8.2f} s {rate}{vs}",
            flush=True,
        )

    try:
        run_speed(
            dataset=datasets[0],
            methods=_csv_list(args.methods),
            precisions=precisions,
            phases=phases,
            repeats=args.repeats,
            device=args.device,
            db=args.db,
            data_home=args.data_home,
            command=" ".join(parts),
            on_row=show,
        )
    except SpeedRunError as exc:
        for name, why in exc.failures.items():
            print(f"failed {name}: {why}")
        print(f"the other rows are stored in {args.db}")
        return 1
    print(f"stored in {args.db}; `aeclust report --out BENCHMARKS.md` renders the table")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark protocol into the results database (resumes finished cells)."""
    from aeclust.bench import format_command, run_protocol
    from aeclust.metrics import format_metrics

    if args.speed:
        return cmd_speed(args)
    if args.protocol is None:
        raise CLIError("bench needs a protocol (see benchmarks/protocols) or --speed")
    args.precision = args.precision or "fp32"
    if args.seeds is not None and args.seeds < 1:
        raise CLIError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.first_seed < 0:
        raise CLIError(f"--first-seed must be a non-negative integer, got {args.first_seed}")
    methods, datasets = _csv_list(args.methods), _csv_list(args.datasets)
    command = format_command(
        args.protocol,
        quick=args.quick,
        seeds=args.seeds,
        methods=methods,
        datasets=datasets,
        device=args.device,
        precision=args.precision,
        db=args.db,
        plots=args.plots,
        first_seed=args.first_seed,
    )

    def show(cell) -> None:
        scores = {"acc": cell.acc, "nmi": cell.nmi, "ari": cell.ari}
        pre = "" if cell.pretrain_seconds is None else f"pretrain {cell.pretrain_seconds:.1f} s, "
        print(
            f"{cell.dataset:<14} {cell.method:<14} seed {cell.seed}: {format_metrics(scores)}"
            f"  ({pre}fit {cell.fit_seconds:.1f} s)",
            flush=True,
        )

    summary = run_protocol(
        args.protocol,
        quick=args.quick,
        seeds=args.seeds,
        methods=methods,
        datasets=datasets,
        device=args.device,
        precision=args.precision,
        db=args.db,
        plots=args.plots,
        data_home=args.data_home,
        download=args.download,
        command=command,
        verbose=args.verbose,
        on_cell=show,
        first_seed=args.first_seed,
    )
    print(
        f"{summary.protocol} ({summary.variant}): {len(summary.completed)} cell(s) run, "
        f"{len(summary.already_done)} already in {summary.db}"
    )
    for name, why in summary.skipped_methods.items():
        print(f"skipped method {name}: {why}")
    for name, why in summary.skipped_datasets.items():
        print(f"skipped dataset {name}: {why}")
    for cell, why in summary.failures:
        print(f"failed {cell[2]} on {cell[3]} seed {cell[4]}: {why}")
    nothing = not summary.completed and not summary.already_done
    return 1 if summary.failures or (nothing and summary.skipped_datasets) else 0


def _report_db(db: str | None) -> Path:
    """The database ``report`` reads: ``--db``, or the default one, which is created once from
    the committed runs (``benchmarks/results/runs.jsonl``) when it does not exist yet (a fresh
    clone), saying so on stderr."""
    from aeclust.bench import DEFAULT_DB, committed_runs_file, create_from_export

    if db is not None:
        return Path(db)
    path = Path(DEFAULT_DB)
    runs = None if path.exists() else committed_runs_file()
    if runs is not None:
        inserted, _ = create_from_export(runs, path)
        print(
            f"no results database at {path}: created it from the {inserted} committed run(s) in "
            f"{runs} (once; `aeclust results import FILE` merges more)",
            file=sys.stderr,
        )
    return path


def cmd_report(args: argparse.Namespace) -> int:
    """Print or write the report of the results database (Markdown or CSV)."""
    from aeclust._utils import atomic_path
    from aeclust.bench import render_report, write_benchmarks_md

    args.db = _report_db(args.db)
    if args.out and args.format == "md":
        path = write_benchmarks_md(args.db, args.out, protocol=args.protocol, variant=args.variant)
        print(f"report written to {path}")
        return 0
    text = render_report(args.db, fmt=args.format, protocol=args.protocol, variant=args.variant)
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        print(f"report written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """Export the results database as JSON lines (committed), or merge an export into it."""
    from aeclust.bench import ResultStore

    if args.action == "export":
        if not Path(args.db).exists():
            raise CLIError(f"results database not found: {args.db}")
        with ResultStore(args.db) as store:
            n = store.export_jsonl(args.file)
        print(f"{n} run(s) exported from {args.db} to {args.file}")
        return 0
    if not Path(args.file).exists():
        raise CLIError(f"results file not found: {args.file}")
    with ResultStore(args.db) as store:
        inserted, skipped = store.import_jsonl(args.file, replace_changed=args.replace_changed)
    print(f"{inserted} run(s) merged into {args.db}; {skipped} already there")
    return 0


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data arguments shared by cluster, predict and select-k (read by ``_load_data``)."""
    p.add_argument("file", nargs="?", help=".npy, .npz, .csv or a folder of images")
    p.add_argument("--dataset", help="a named dataset (see `aeclust datasets`)")
    p.add_argument("--label-column", help="CSV: the label column (name or index)")
    p.add_argument(
        "--scale",
        choices=["unit", "raw"],
        default=None,
        help="files: scale values to [0, 1]; predict's default is the map recorded with the "
        "model (the training data's), so give it the raw file",
    )
    p.add_argument("--data-home", help="dataset folder (default $AECLUST_DATA)")
    p.add_argument(
        "--from-disk",
        action="store_true",
        help="a .npy FILE larger than memory: leave it on disk and read the rows as they are "
        "needed (AE+KM, DEC, IDEC, DCN, DKM, CT, k-DAE, DAMIC; the others read it into memory). "
        "A 2-D float array, raw or already in [0, 1]",
    )


def _add_fit_arguments(p: argparse.ArgumentParser, param_help: str) -> None:
    """Device, precision and hyper-parameters of the fits of cluster, select-k and select."""
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help=param_help)


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Where cluster and predict write what they found (nothing unless asked)."""
    p.add_argument(
        "--out",
        metavar="FILE",
        help="write the labels as CSV (index,label) to FILE, or to stdout with '-' (the summary "
        "then goes to stderr); without --out no labels are written",
    )
    p.add_argument(
        "--embedding",
        metavar="FILE",
        help="also write the codes (model.embed: the space the method clusters in; the scaled "
        "input for kmeans) to this .npy file",
    )


def _add_cache_arguments(p: argparse.ArgumentParser) -> None:
    """The pretraining cache options of cluster and select-k (read by ``_build_estimator``)."""
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cache pretrained networks on disk so that a later run with the same data, "
        "network, settings and seed reuses them (off by default, as the library's "
        "pretrain_cache=False; the folder has no size cap: delete it to reclaim the space)",
    )
    p.add_argument(
        "--cache-dir",
        help="the cache folder (implies --cache; default $AECLUST_CACHE, else "
        "~/.cache/aeclust/pretrained)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aeclust`` command."""
    parser = argparse.ArgumentParser(
        prog="aeclust", description="Deep clustering with autoencoders."
    )
    parser.add_argument("--version", action="version", version=f"aeclust {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress bars and logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "cluster",
        help="cluster a dataset or a file; print a summary and, when labels are known, ACC/NMI/ARI",
    )
    _add_data_arguments(p)
    p.add_argument("--method", required=True, help="see `aeclust methods`")
    p.add_argument("--n-clusters", type=int, help="default: the number of classes, when known")
    _add_output_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    _add_fit_arguments(p, "a method hyper-parameter, e.g. --param pretrain_epochs=100")
    _add_cache_arguments(p)
    p.add_argument("--save-model", help="save the fitted model to this file")
    p.add_argument(
        "--checkpoint-dir",
        help="checkpoint the training stages here; rerunning the same command after an "
        "interruption resumes them",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=300.0,
        help="seconds between checkpoints (default 300)",
    )
    p.add_argument(
        "--no-estimate",
        action="store_true",
        help="skip the cost probe (a few training steps timed before a deep method's fit)",
    )
    p.add_argument(
        "--estimate-only",
        action="store_true",
        help="print the cost estimate and the cheaper settings, then stop",
    )
    p.add_argument(
        "--estimate-threshold",
        type=float,
        default=30.0,
        metavar="MIN",
        help="above this many minutes, list cheaper settings (default 30)",
    )
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser(
        "predict", help="assign new data to the clusters of a model saved by cluster --save-model"
    )
    p.add_argument("model", help="the model file written by `aeclust cluster --save-model`")
    _add_data_arguments(p)
    _add_output_arguments(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("select-k", help="elbow / silhouette sweep over the number of clusters")
    _add_data_arguments(p)
    p.add_argument("--method", required=True, help="see `aeclust methods`")
    p.add_argument("--k-min", type=int, default=2)
    p.add_argument("--k-max", type=int, default=15)
    p.add_argument(
        "--space",
        choices=["input", "embedding"],
        default="input",
        help="where the silhouette is measured",
    )
    p.add_argument("--seed", type=int, default=0)
    _add_fit_arguments(p, "a method hyper-parameter")
    _add_cache_arguments(p)
    p.set_defaults(func=cmd_select_k)

    p = sub.add_parser("select", help="rank methods on the data without labels")
    _add_data_arguments(p)
    p.add_argument(
        "--methods",
        default="kmeans,ae-kmeans,dec,idec,dcn,n2d",
        help="comma-separated candidates (default: kmeans,ae-kmeans,dec,idec,dcn,n2d)",
    )
    p.add_argument("--n-clusters", type=int, help="default: the number of classes, when known")
    p.add_argument("--seeds", type=int, default=2, help="fits per method (>= 2; default 2)")
    p.add_argument(
        "--criteria",
        help="comma-separated criteria whose mean rank orders the candidates: stability, "
        "consensus, silhouette, modularity (default: aeclust.selection.SELECTION_CRITERIA, "
        "printed with the ranking); every criterion is measured and printed either way",
    )
    _add_fit_arguments(
        p, "a hyper-parameter for every candidate that takes it, e.g. pretrain_epochs=30"
    )
    p.add_argument(
        "--cache-dir",
        help="keep the candidates' shared pretrainings in this folder, so that a later select, "
        "cluster or bench with the same data, network, settings and seed reuses them "
        "(default: a temporary folder, removed afterwards)",
    )
    p.add_argument(
        "--db",
        help="also store the ranking in this results database (read by `aeclust report`); "
        "labels, when the data has them, are stored as ACC beside it, never used to rank",
    )
    p.set_defaults(func=cmd_select, seed=0, cache=False)

    p = sub.add_parser("methods", help="list the methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("datasets", help="list the named datasets")
    p.add_argument("--data-home", help="dataset folder (default $AECLUST_DATA)")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser(
        "bench",
        help="run a benchmark protocol (a paper table) into the results database",
        description="Run every (dataset, seed, method) cell of a protocol; cells already in the "
        "database are skipped, so an interrupted run resumes.",
    )
    p.add_argument("protocol", nargs="?", help="a protocol file, or a name in benchmarks/protocols")
    p.add_argument("--quick", action="store_true", help="the CPU variant ([quick] section)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the protocol's)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="first seed (default 0): --first-seed 2 --seeds 1 runs seed 2 alone",
    )
    p.add_argument("--methods", help="comma-separated method rows (default: all)")
    p.add_argument("--datasets", help="comma-separated dataset columns (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        help="default fp32; a bf16/auto run is stored as protocol NAME+PRECISION. "
        "With --speed: only this precision (default: fp32 and bf16)",
    )
    p.add_argument(
        "--speed",
        action="store_true",
        help="instead of a protocol: throughput of pretraining, of each method's clustering "
        "phase and of k-means / kNN, against a bare torch loop, in fp32 and bf16",
    )
    p.add_argument("--phases", help="--speed: comma-separated pretrain, cluster, primitive")
    p.add_argument("--repeats", type=int, default=2, help="--speed: timed repetitions")
    p.add_argument("--db", default="results/aeclust.db", help="results database")
    p.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write embedding, curves and confusion figures under results/plots",
    )
    p.add_argument("--data-home", help="dataset folder (default $AECLUST_DATA)")
    p.add_argument("--download", action="store_true", help="download missing datasets")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="report the results database beside the papers' numbers")
    p.add_argument("--protocol", help="only this protocol")
    p.add_argument("--variant", choices=["quick", "full"], help="only this variant")
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument(
        "--db",
        help="results database (default results/aeclust.db; when it does not exist, it is "
        "created once from the committed benchmarks/results/runs.jsonl)",
    )
    p.add_argument("--out", help="write to this file (md: the full BENCHMARKS.md page)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "results", help="export the results database to JSON lines, or merge such a file in"
    )
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("file", help="the JSON-lines file (e.g. benchmarks/results/runs.jsonl)")
    p.add_argument("--db", default="results/aeclust.db", help="results database")
    p.add_argument(
        "--replace-changed",
        action="store_true",
        help="import: a run replaces the stored run of its cell when their configurations "
        "differ (a protocol's settings changed since the stored run)",
    )
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aeclust`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if (
        getattr(args, "label_column", None) is not None
        and str(args.label_column).lstrip("-").isdigit()
    ):
        args.label_column = int(args.label_column)
    from aeclust.datasets import DownloadError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("aeclust: interrupted", file=sys.stderr)
        return 130
    except (
        CLIError,
        ValueError,
        TypeError,
        FileNotFoundError,
        DownloadError,
        OSError,
        ImportError,  # an optional dependency missing: the message says which extra
    ) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"aeclust: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
