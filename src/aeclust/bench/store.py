"""The results store: one SQLite file, one row per (protocol, variant, method, dataset, seed).

Each run is written by one ``INSERT`` inside one transaction (together with clearing that cell's
earlier failure, if any), so a crash or a failing write never leaves a partial row. The protocol
itself is stored beside its runs, so a report can be rendered from the database alone.

Schema (``SCHEMA_VERSION`` 1)::

    runs(id, protocol, variant, method, dataset, seed,       -- UNIQUE(protocol..seed)
         estimator, data_name, substitute, n_samples, n_features, n_clusters,
         acc, nmi, ari, purity, silhouette, nmi_average,
         pretrain_seconds, pretrain_cached, fit_seconds, eval_seconds,
         peak_memory_mb, memory_kind, device, precision,
         versions_json, git_commit, machine_json, config_json, config_hash,
         history_json, pretrain_history_json, n_history, n_pretrain_history,
         command, started_at, finished_at)
    failures(protocol, variant, method, dataset, seed, error, traceback, command, at)
    protocols(name, fingerprint, source, json, updated_at)
    speed(id, session, phase, name, precision, batch_size, n_samples, seconds,
          samples_per_s, reference_samples_per_s, reference, device, git_commit,
          machine_json, config_json, command, measured_at)   -- UNIQUE(session, phase, name,
                                                                precision)
    selections(id, session, dataset, candidate, position, seeds, n_samples, n_clusters,
               stability, consensus, silhouette, modularity, rank, n_nonempty, seconds, acc,
               params_json, device, git_commit, machine_json, command, measured_at)
                                                   -- UNIQUE(session, dataset, candidate)
    meta(key, value)

``selections`` holds the rankings of ``aeclust select --db``
(:func:`aeclust.selection.select_method`): one ``session`` is one ranking of the candidates on one
data set; ``acc`` is the mean ACC over the seeds where labels were known, only ever reported
beside the label-free ranking.
``speed`` holds the throughput benchmark (:mod:`aeclust.bench.speed`); one ``session`` is one
``aeclust bench --speed`` run, so its rows were measured together on one quiet machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "COMMITTED_RUNS",
    "DEFAULT_DB",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "SELECTION_COLUMNS",
    "SPEED_COLUMNS",
    "ResultStore",
    "committed_runs_file",
    "create_from_export",
    "utc_now",
]

DEFAULT_DB = Path("results") / "aeclust.db"
#: The committed text export of the runs (:meth:`ResultStore.export_jsonl`), relative to the root
#: of a checkout: the database itself is not in git.
COMMITTED_RUNS = Path("benchmarks") / "results" / "runs.jsonl"
SCHEMA_VERSION = 1

#: Columns of ``runs`` a record may set (``id`` is automatic).
RUN_COLUMNS: tuple[str, ...] = (
    "protocol",
    "variant",
    "method",
    "dataset",
    "seed",
    "estimator",
    "data_name",
    "substitute",
    "n_samples",
    "n_features",
    "n_clusters",
    "acc",
    "nmi",
    "ari",
    "purity",
    "silhouette",
    "nmi_average",
    "pretrain_seconds",
    "pretrain_cached",
    "fit_seconds",
    "eval_seconds",
    "peak_memory_mb",
    "memory_kind",
    "device",
    "precision",
    "versions_json",
    "git_commit",
    "machine_json",
    "config_json",
    "config_hash",
    "history_json",
    "pretrain_history_json",
    "n_history",
    "n_pretrain_history",
    "command",
    "started_at",
    "finished_at",
)

#: Columns of ``speed`` a record may set.
SPEED_COLUMNS: tuple[str, ...] = (
    "session",
    "phase",
    "name",
    "precision",
    "batch_size",
    "n_samples",
    "seconds",
    "samples_per_s",
    "reference_samples_per_s",
    "reference",
    "device",
    "git_commit",
    "machine_json",
    "config_json",
    "command",
    "measured_at",
)

#: Columns of ``selections`` a record may set.
SELECTION_COLUMNS: tuple[str, ...] = (
    "session",
    "dataset",
    "candidate",
    "position",
    "seeds",
    "n_samples",
    "n_clusters",
    "stability",
    "consensus",
    "silhouette",
    "modularity",
    "rank",
    "n_nonempty",
    "seconds",
    "acc",
    "params_json",
    "device",
    "git_commit",
    "machine_json",
    "command",
    "measured_at",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    protocol TEXT NOT NULL,
    variant TEXT NOT NULL CHECK (variant IN ('full', 'quick')),
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    seed INTEGER NOT NULL CHECK (seed >= 0),
    estimator TEXT NOT NULL,
    data_name TEXT NOT NULL,
    substitute INTEGER NOT NULL DEFAULT 0,
    n_samples INTEGER,
    n_features INTEGER,
    n_clusters INTEGER,
    acc REAL NOT NULL,
    nmi REAL NOT NULL,
    ari REAL NOT NULL,
    purity REAL,
    silhouette REAL,
    nmi_average TEXT NOT NULL,
    pretrain_seconds REAL,
    pretrain_cached INTEGER,
    fit_seconds REAL NOT NULL,
    eval_seconds REAL,
    peak_memory_mb REAL,
    memory_kind TEXT,
    device TEXT,
    precision TEXT,
    versions_json TEXT,
    git_commit TEXT,
    machine_json TEXT,
    config_json TEXT NOT NULL,
    config_hash TEXT,
    history_json TEXT,
    pretrain_history_json TEXT,
    n_history INTEGER,
    n_pretrain_history INTEGER,
    command TEXT,
    started_at TEXT,
    finished_at TEXT,
    UNIQUE (protocol, variant, method, dataset, seed)
);
CREATE TABLE IF NOT EXISTS failures (
    protocol TEXT NOT NULL,
    variant TEXT NOT NULL,
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    error TEXT NOT NULL,
    traceback TEXT,
    command TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (protocol, variant, method, dataset, seed)
);
CREATE TABLE IF NOT EXISTS speed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('pretrain', 'cluster', 'primitive')),
    name TEXT NOT NULL,
    precision TEXT NOT NULL,
    batch_size INTEGER,
    n_samples INTEGER,
    seconds REAL NOT NULL,
    samples_per_s REAL,
    reference_samples_per_s REAL,
    reference TEXT,
    device TEXT,
    git_commit TEXT,
    machine_json TEXT,
    config_json TEXT,
    command TEXT,
    measured_at TEXT NOT NULL,
    UNIQUE (session, phase, name, precision)
);
CREATE TABLE IF NOT EXISTS selections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    dataset TEXT NOT NULL,
    candidate TEXT NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 1),
    seeds TEXT NOT NULL,
    n_samples INTEGER,
    n_clusters INTEGER,
    stability REAL,
    consensus REAL,
    silhouette REAL,
    modularity REAL,
    rank REAL NOT NULL,
    n_nonempty INTEGER,
    seconds REAL,
    acc REAL,
    params_json TEXT,
    device TEXT,
    git_commit TEXT,
    machine_json TEXT,
    command TEXT,
    measured_at TEXT NOT NULL,
    UNIQUE (session, dataset, candidate)
);
CREATE TABLE IF NOT EXISTS protocols (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    source TEXT,
    json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

#: Columns added to a table after its first release, with their types: a database written
#: before gets them (NULL in its old rows) when it is opened, so old and new exports merge.
_ADDED_COLUMNS: dict[str, dict[str, str]] = {"selections": {"modularity": "REAL"}}


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each of ``columns`` that ``table`` lacks."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, sql_type in columns.items():
        if name not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


def utc_now() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


Cell = tuple[str, str, str, str, int]


def _insert_statement(
    table: str, columns: Sequence[str], record: Mapping[str, Any], *, or_ignore: bool = False
) -> tuple[str, list[Any]]:
    """``INSERT`` SQL and values for one row of ``table``; dicts and lists become JSON.

    Raises ValueError on a column ``table`` does not have.
    """
    unknown = sorted(set(record) - set(columns))
    if unknown:
        raise ValueError(f"unknown {table} column(s) {unknown}")
    cols = list(record)
    values = [json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for v in record.values()]
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    marks = ", ".join("?" for _ in cols)
    return f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({marks})", values


class ResultStore:
    """SQLite results database (see the module docstring for the schema).

    Parameters
    ----------
    path : path-like
        Database file; its folder is created. ``":memory:"`` for a throw-away store.

    Examples
    --------
    >>> store = ResultStore(":memory:")
    >>> store.finished_cells("p", "quick")
    set()
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_DB) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=60.0)
        self._conn.row_factory = sqlite3.Row
        with self._conn:
            self._conn.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                _add_missing_columns(self._conn, table, columns)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        version = int(self.meta("schema_version") or SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"{path} was written by a newer aeclust (results schema {version}); upgrade"
            )

    # -- plumbing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._conn:
            yield self._conn

    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- runs -----------------------------------------------------------------------------------
    def insert_run(self, record: Mapping[str, Any]) -> int:
        """Write one finished cell, atomically.

        Parameters
        ----------
        record : mapping
            Column values (see :data:`RUN_COLUMNS`); dicts and lists are stored as JSON.

        Returns
        -------
        int
            The row id.

        Raises
        ------
        ValueError
            On unknown columns.
        sqlite3.IntegrityError
            If the cell is already stored or a required column is missing; nothing is written.
        """
        sql, values = _insert_statement("runs", RUN_COLUMNS, record)
        with self.transaction() as conn:
            cur = conn.execute(sql, values)
            self._clear_failure(
                conn,
                (
                    record["protocol"],
                    record["variant"],
                    record["method"],
                    record["dataset"],
                    int(record["seed"]),
                ),
            )
            return int(cur.lastrowid or 0)

    @staticmethod
    def _clear_failure(conn: sqlite3.Connection, cell: Cell) -> None:
        conn.execute(
            "DELETE FROM failures WHERE protocol = ? AND variant = ? AND method = ? "
            "AND dataset = ? AND seed = ?",
            cell,
        )

    def record_failure(
        self, cell: Cell, error: str, traceback: str = "", command: str = ""
    ) -> None:
        """Remember that a cell failed (replaced by its run once it succeeds)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failures "
                "(protocol, variant, method, dataset, seed, error, traceback, command, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*cell, error, traceback, command, utc_now()),
            )

    def finished_cells(self, protocol: str, variant: str) -> set[Cell]:
        """The cells of a protocol variant already stored."""
        rows = self._conn.execute(
            "SELECT protocol, variant, method, dataset, seed FROM runs "
            "WHERE protocol = ? AND variant = ?",
            (protocol, variant),
        ).fetchall()
        return {(r[0], r[1], r[2], r[3], int(r[4])) for r in rows}

    def config_hash(self, cell: Cell) -> str | None:
        """The configuration hash a stored cell ran with."""
        row = self._conn.execute(
            "SELECT config_hash FROM runs WHERE protocol = ? AND variant = ? AND method = ? "
            "AND dataset = ? AND seed = ?",
            cell,
        ).fetchone()
        return None if row is None else row[0]

    def runs(self, protocol: str | None = None, variant: str | None = None) -> list[dict]:
        """Stored runs as dicts, optionally filtered, ordered by protocol, dataset, method, seed."""
        sql = "SELECT * FROM runs"
        where, args = [], []
        if protocol is not None:
            where.append("protocol = ?")
            args.append(protocol)
        if variant is not None:
            where.append("variant = ?")
            args.append(variant)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY protocol, variant, dataset, method, seed"
        return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

    def failures(self, protocol: str | None = None, variant: str | None = None) -> list[dict]:
        """Cells whose last attempt failed and that have no run yet."""
        sql = "SELECT * FROM failures"
        args: list[Any] = []
        if protocol is not None:
            sql += " WHERE protocol = ?"
            args.append(protocol)
            if variant is not None:
                sql += " AND variant = ?"
                args.append(variant)
        elif variant is not None:
            sql += " WHERE variant = ?"
            args.append(variant)
        return [dict(r) for r in self._conn.execute(sql + " ORDER BY at", args).fetchall()]

    # -- throughput -----------------------------------------------------------------------------
    def insert_speed(self, record: Mapping[str, Any]) -> bool:
        """Store one throughput measurement; False (nothing written) if it is already stored.

        Parameters
        ----------
        record : mapping
            Column values (see :data:`SPEED_COLUMNS`); dicts and lists are stored as JSON.

        Returns
        -------
        bool
            Whether a row was written.
        """
        sql, values = _insert_statement("speed", SPEED_COLUMNS, record, or_ignore=True)
        with self.transaction() as conn:
            return conn.execute(sql, values).rowcount == 1

    def speed_rows(self, session: str | None = None) -> list[dict]:
        """Throughput rows (of one session, or all), oldest session first."""
        return self._rows("speed", "session", session, "session, id")

    def _rows(self, table: str, column: str, value: Any, order: str) -> list[dict]:
        """Rows of ``table`` (those whose ``column`` is ``value`` unless it is None) in order."""
        sql, args = f"SELECT * FROM {table}", []
        if value is not None:
            sql += f" WHERE {column} = ?"
            args.append(value)
        return [dict(r) for r in self._conn.execute(f"{sql} ORDER BY {order}", args).fetchall()]

    # -- label-free selection -------------------------------------------------------------------
    def insert_selection(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Store one ranking (its candidates' rows, one transaction); rows already stored are kept.

        Parameters
        ----------
        records : sequence of mapping
            Column values (see :data:`SELECTION_COLUMNS`); dicts and lists are stored as JSON.

        Returns
        -------
        int
            Rows written.
        """
        written = 0
        with self.transaction() as conn:
            for record in records:
                sql, values = _insert_statement(
                    "selections", SELECTION_COLUMNS, record, or_ignore=True
                )
                written += conn.execute(sql, values).rowcount
        return written

    def selection_rows(self, dataset: str | None = None) -> list[dict]:
        """Stored rankings (of one data set, or all), by session, best candidate first."""
        return self._rows("selections", "dataset", dataset, "session, dataset, position")

    # -- protocols ------------------------------------------------------------------------------
    def save_protocol(self, name: str, fingerprint: str, source: str, data_json: str) -> None:
        """Store (or update) a protocol's content."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO protocols (name, fingerprint, source, json, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, fingerprint, source, data_json, utc_now()),
            )

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every stored protocol, run, throughput row and ranking as JSON lines, atomically.

        The database lives outside git (``results/``); this text export is what is committed
        (``benchmarks/results/runs.jsonl``), so runs made on another machine (a GPU session) or
        in an earlier session can be merged back with :meth:`import_jsonl`.

        Returns
        -------
        int
            Number of runs written.
        """
        from aeclust._utils import atomic_path

        proto_rows = self._conn.execute(
            "SELECT name, fingerprint, source, json, updated_at FROM protocols ORDER BY name"
        ).fetchall()
        runs = self.runs()
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for name, fingerprint, source, data_json, updated_at in proto_rows:
                row = {
                    "name": name,
                    "fingerprint": fingerprint,
                    "source": source,
                    "json": data_json,
                    "updated_at": updated_at,
                }
                fh.write(json.dumps({"table": "protocols", "row": row}, sort_keys=True) + "\n")
            for run in runs:
                run = {k: v for k, v in run.items() if k != "id"}
                fh.write(json.dumps({"table": "runs", "row": run}, sort_keys=True) + "\n")
            for row in self.speed_rows():
                row = {k: v for k, v in row.items() if k != "id"}
                fh.write(json.dumps({"table": "speed", "row": row}, sort_keys=True) + "\n")
            for row in self.selection_rows():
                row = {k: v for k, v in row.items() if k != "id"}
                fh.write(json.dumps({"table": "selections", "row": row}, sort_keys=True) + "\n")
        return len(runs)

    def import_jsonl(
        self, path: str | os.PathLike[str], *, replace_changed: bool = False
    ) -> tuple[int, int]:
        """Merge a :meth:`export_jsonl` file: runs whose cell is not stored yet are inserted (each
        in its own transaction), stored cells are kept; throughput rows and rankings are added when
        missing;
        a protocol is added when missing and replaced when the file's version was saved later
        than the stored one (so rows of a method that only the newer version has get its
        label in reports).

        Parameters
        ----------
        path : path-like
            The JSON-lines file.
        replace_changed : bool, default=False
            Replace a stored run by the file's run of the same cell when their configurations
            differ (``config_hash``): the run of a protocol whose settings changed replaces the
            run made before the change. Runs of the same configuration are never replaced.

        Returns
        -------
        (int, int)
            Runs inserted (or replaced), runs skipped because their cell was already stored.
        """
        inserted = skipped = 0
        known = dict(self._conn.execute("SELECT name, updated_at FROM protocols").fetchall())
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    table, row = item["table"], item["row"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{path}:{number}: not a results export line ({exc})"
                    ) from None
                if table == "speed":
                    self.insert_speed(row)
                    continue
                if table == "selections":
                    self.insert_selection([row])
                    continue
                if table == "protocols":
                    name, saved = row["name"], row.get("updated_at")
                    stored = known.get(name, "")
                    if name not in known or (saved and stored and saved > stored):
                        self.save_protocol(name, row["fingerprint"], row["source"], row["json"])
                        known[name] = saved or ""
                    continue
                cell = (row["protocol"], row["variant"], row["method"], row["dataset"], row["seed"])
                if cell in self.finished_cells(row["protocol"], row["variant"]):
                    if not (replace_changed and self._stored_hash(cell) != row.get("config_hash")):
                        skipped += 1
                        continue
                    self._delete_run(cell)
                self.insert_run(row)
                inserted += 1
        return inserted, skipped

    def _stored_hash(self, cell: Cell) -> str | None:
        row = self._conn.execute(
            "SELECT config_hash FROM runs WHERE protocol = ? AND variant = ? AND method = ? "
            "AND dataset = ? AND seed = ?",
            cell,
        ).fetchone()
        return None if row is None else row[0]

    def _delete_run(self, cell: Cell) -> None:
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM runs WHERE protocol = ? AND variant = ? AND method = ? "
                "AND dataset = ? AND seed = ?",
                cell,
            )

    def protocols(self) -> dict[str, dict[str, Any]]:
        """Stored protocols: name -> parsed content (in name order)."""
        rows = self._conn.execute("SELECT name, json FROM protocols ORDER BY name").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}


def committed_runs_file() -> Path | None:
    """The committed export of the runs, :data:`COMMITTED_RUNS`, if there is one.

    Looked for under the current folder (beside the default database, ``results/aeclust.db``),
    then under the checkout this package runs from.

    Returns
    -------
    Path or None
    """
    from aeclust.bench.protocol import _repo_root

    roots = [Path.cwd(), _repo_root()]
    for root in roots:
        if root is not None and (root / COMMITTED_RUNS).is_file():
            return root / COMMITTED_RUNS
    return None


def create_from_export(
    source: str | os.PathLike[str], path: str | os.PathLike[str] = DEFAULT_DB
) -> tuple[int, int]:
    """Create the database ``path`` from a :meth:`ResultStore.export_jsonl` file, atomically.

    The export is read into an in-memory store (:meth:`ResultStore.import_jsonl`) and copied to
    ``path`` with SQLite's backup in one step, then renamed into place: much faster than a row by
    row import into a file (one transaction each), and ``path`` appears only complete.

    Parameters
    ----------
    source : path-like
        The export (e.g. ``benchmarks/results/runs.jsonl``).
    path : path-like
        The database to create; it must not exist yet.

    Returns
    -------
    (int, int)
        Runs imported, runs skipped (as :meth:`ResultStore.import_jsonl`).

    Raises
    ------
    FileExistsError
        If ``path`` exists (merge into it with :meth:`ResultStore.import_jsonl` instead).
    """
    from aeclust._utils import atomic_path

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; merge an export into it with import_jsonl")
    with ResultStore(":memory:") as memory:
        counts = memory.import_jsonl(source)
        with atomic_path(path) as tmp:
            target = sqlite3.connect(str(tmp))
            try:
                memory._conn.backup(target)
            finally:
                target.close()
    return counts
