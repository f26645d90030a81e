"""Benchmarks: protocols from the papers (data files), runner, results store, report and plots.

>>> from aeclust.bench import run_protocol, write_benchmarks_md     # doctest: +SKIP
>>> run_protocol("kdae-table2", quick=True, methods=["kmeans"], datasets=["usps"], seeds=1)
>>> write_benchmarks_md("results/aeclust.db", "BENCHMARKS.md")
"""

from aeclust.bench.protocol import (
    Protocol,
    ProtocolError,
    find_protocol,
    list_protocols,
    load_protocol,
)
from aeclust.bench.report import render_report, write_benchmarks_md
from aeclust.bench.runner import (
    CellResult,
    RunSummary,
    UnsupportedProtocolError,
    format_command,
    run_protocol,
)
from aeclust.bench.store import (
    COMMITTED_RUNS,
    DEFAULT_DB,
    ResultStore,
    committed_runs_file,
    create_from_export,
)

__all__ = [
    "COMMITTED_RUNS",
    "DEFAULT_DB",
    "CellResult",
    "Protocol",
    "ProtocolError",
    "ResultStore",
    "RunSummary",
    "UnsupportedProtocolError",
    "committed_runs_file",
    "create_from_export",
    "find_protocol",
    "format_command",
    "list_protocols",
    "load_protocol",
    "render_report",
    "run_protocol",
    "write_benchmarks_md",
]
