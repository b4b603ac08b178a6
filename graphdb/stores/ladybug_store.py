"""The embedded store: LadybugDB (``ladybug`` on PyPI, the maintained fork of Kùzu).

Zero setup: the database is one file (plus a ``.wal`` beside it while open). Node and
relationship tables are created idempotently when the store opens (:data:`queries.LADYBUG_DDL`).

Writing (``write_run``, default ``method="copy"``):

1. ``RUN_BEGIN`` commits the ``Run`` node with ``status: 'writing'``; the run's previous facts are
   deleted (a re-write, or the remains of an interrupted write).
2. One transaction bulk-loads every table with ``COPY <table> FROM $frame`` straight from the
   pandas DataFrames and commits, the run still ``writing``.
3. ``CHECKPOINT`` moves the committed facts from the WAL into the database file; the run's counts
   are checked against the tables; only then a second transaction sets ``status: 'complete'``,
   followed by another ``CHECKPOINT``. A process killed at any point (inside the COPY, in the
   commit, in either checkpoint) leaves the run ``writing`` -- invisible to queries -- or
   ``complete`` with every fact: never ``complete`` with missing facts.

A process killed in a commit or checkpoint leaves "checkpoint recovery pending": LadybugDB then
refuses read-only opens. A read-only :class:`LadybugStore` finishes the recovery itself by one
read-write open when no other process holds the database, and otherwise raises
:class:`~graphdb.errors.RecoveryPendingError` naming ``cellvq runs recover``. Runs left
``writing`` are listed by ``store.incomplete_runs()`` and removed by ``store.recover()``.

``method="unwind"`` writes through the Neo4j code path instead (:class:`.unwind_writer.UnwindWriter`), with
the same statements the Neo4j store sends; it suits small incremental writes and is how the
tests check those statements on a real database.

User queries run inside ``BEGIN TRANSACTION READ ONLY`` after :func:`graphdb.readonly.check_read_only`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import queries as q
from ..errors import (
    CorruptStoreError,
    GraphDBError,
    NotFoundError,
    QueryError,
    ReadOnlyViolation,
    RecoveryPendingError,
    SchemaError,
    StoreLockedError,
)
from ..schema import (
    CELL_PROPERTY_PATTERN,
    DOUBLE,
    INT64,
    STRING,
    RunTables,
    graph_frames,
    records,
    run_labels,
)
from .base import DEFAULT_BATCH_SIZE, StepHook, WriteReport, progress_bar, rows_per_step
from .unwind_writer import UnwindWriter

log = logging.getLogger("graphdb")

#: File name used when ``open_store`` is given an existing directory.
DEFAULT_FILENAME = "cellvq_graph.lbug"
#: Default buffer pool (bytes): LadybugDB would otherwise reserve most of the machine's memory.
DEFAULT_BUFFER_POOL = 1 << 30

_LADYBUG_TYPES = {STRING: "STRING", INT64: "INT64", DOUBLE: "DOUBLE"}


class LadybugStore(UnwindWriter):
    """A :class:`GraphStore` on an embedded LadybugDB file.

    Parameters
    ----------
    path
        Database file. An existing directory means ``<directory>/cellvq_graph.lbug``. Missing parent
        directories are created.
    read_only
        Open without write access (several processes may read at once); ``write_run`` is refused.
    batch_size
        Rows per transaction for ``method="unwind"`` writes and batched deletes.
    buffer_pool_size
        LadybugDB buffer pool in bytes (default 1 GiB).
    max_threads
        Threads LadybugDB may use per query (0 = all cores).
    """

    backend = "ladybug"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        buffer_pool_size: int = DEFAULT_BUFFER_POOL,
        max_threads: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, read_only=read_only)
        import ladybug  # imported here so `import graphdb` stays light

        p = Path(path).expanduser()
        if p.is_dir():
            p = p / DEFAULT_FILENAME
        self.path = p.resolve()
        if read_only and not self.path.exists():
            raise NotFoundError(
                f"no LadybugDB database at {self.path}; write a run first (open_store(path) without read_only)"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        opts = {"buffer_pool_size": int(buffer_pool_size), "max_num_threads": int(max_threads)}
        try:
            self._db, self._conn = _connect(ladybug, self.path, read_only, opts)
        except RuntimeError as exc:
            if not (read_only and _recovery_pending(exc)):
                raise _open_error(self.path, exc) from exc
            _finish_recovery(ladybug, self.path, opts)
            try:
                self._db, self._conn = _connect(ladybug, self.path, read_only, opts)
            except RuntimeError as exc2:
                raise _open_error(self.path, exc2) from exc2
        if not read_only:
            for stmt in _migrations(self._conn):
                self._conn.execute(stmt)
        elif _migrations(self._conn):  # a store written before some declared columns existed
            self._conn.close()
            self._db.close()
            _migrate(ladybug, self.path, opts)
            self._db, self._conn = _connect(ladybug, self.path, read_only, opts)
        self._closed = False

    # ---- primitives -----------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return str(self.path)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._conn.close()
        finally:
            self._db.close()

    def _execute(self, statement: str, params: Mapping[str, Any] | None = None):
        if self._closed:
            raise GraphDBError(f"the store at {self.target} is closed; open it again with open_store()")
        return self._conn.execute(statement, dict(params or {}))

    def _read(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self._execute(statement, params).get_as_df()

    def _write(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        self._require_writable()
        return self._execute(statement, params).get_as_df()

    def _read_user(self, cypher: str, params: Mapping[str, Any]) -> pd.DataFrame:
        self._execute("BEGIN TRANSACTION READ ONLY")
        try:
            result = self._execute(cypher, params)
            frame = result.get_as_df()
        except RuntimeError as exc:
            self._rollback()
            msg = str(exc)
            if "read-only" in msg.lower() or "read only" in msg.lower():
                raise ReadOnlyViolation(f"store.query() is read-only and the database refused a write: {msg}") from exc
            raise QueryError(f"LadybugDB rejected the query: {msg}") from exc
        self._execute("COMMIT")
        return frame

    def _delete_batch_size(self) -> int:
        # One statement per relationship type: LadybugDB deletes in bulk, and each batch would rescan.
        return 1 << 40

    def _rollback(self) -> None:
        try:
            self._execute("ROLLBACK")
        except RuntimeError:
            pass  # the failed statement already ended the transaction

    # ---- writing --------------------------------------------------------------------------------

    def write_run(
        self,
        tables: RunTables,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        on_step: StepHook | None = None,
        method: str = "copy",
    ) -> WriteReport:
        """Write one run (see the module docstring); returns row counts and timing.

        ``method="copy"`` (default) bulk-loads in one transaction; ``"unwind"`` writes batched
        ``UNWIND ... MERGE`` transactions with the Neo4j statements. ``on_step(step, rows)`` is
        called after each step; ``progress=True`` shows a progress bar.
        """
        self._require_writable()
        if not isinstance(tables, RunTables):
            raise TypeError(f"write_run expects graphdb.RunTables, got {type(tables).__name__}")
        batch = int(batch_size or self.batch_size)
        if method == "unwind":
            self._ensure_cell_columns(tables.cell_property_types)
            return self._write_unwind(tables, batch_size=batch, progress=progress, on_step=on_step)
        if method != "copy":
            raise ValueError(f"method must be 'copy' or 'unwind', got {method!r}")
        return self._write_run_copy(tables, progress=progress, on_step=on_step)

    def _write_run_copy(self, tables: RunTables, *, progress: bool, on_step: StepHook | None) -> WriteReport:
        t0 = time.perf_counter()
        run_id = tables.run_id
        nodes, rels = graph_frames(tables)
        report = WriteReport(run_id=run_id, method="copy")
        deleted, writer = self._begin_run(tables, self._delete_batch_size())
        report.rows.update({"Run": 1, "Dataset": 1, "ON_DATASET": 1})
        _hook(on_step, "begin", deleted)
        self._ensure_cell_columns(tables.cell_property_types)
        cell_columns = self._cell_columns()

        genes = self._new_genes(nodes["Gene"])
        cells = self._new_cells(nodes["Cell"], tables.dataset_id, cell_columns)
        load: list[tuple[str, pd.DataFrame]] = [
            ("Gene", genes), ("Cell", cells), *((label, nodes[label]) for label in run_labels()),
        ]
        load += [(rtype, frame) for rtype, frame in rels.items() if rtype != "ON_DATASET"]
        total = rows_per_step(dict(load), {})
        self._execute("BEGIN TRANSACTION")
        try:
            with progress_bar(total, progress, f"COPY {run_id}") as bar:
                updates = self._changed_genes(nodes["Gene"])
                if updates:
                    self._execute(q.MERGE_GENES, {"rows": updates})
                for name, frame in load:
                    if len(frame):
                        self._execute(q.COPY[name], {"frame": _copy_frame(frame)})
                    report.rows[name] = len(frame)
                    bar.update(len(frame))
                    _hook(on_step, name, len(frame))
            self._execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        _hook(on_step, "commit", total)
        self.checkpoint()
        _hook(on_step, "durable", total)
        self._check_written(run_id, nodes, rels)
        self._execute(q.RUN_COMPLETE, {"runId": run_id, "writer": writer, "completedAt": self._now()})
        self.checkpoint()
        _hook(on_step, "complete", 1)
        report.rows["Gene"] = len(nodes["Gene"])
        report.rows["Cell"] = len(nodes["Cell"])
        report.seconds = time.perf_counter() - t0
        return report

    def checkpoint(self) -> None:
        """Move committed transactions from the WAL into the database file (``CHECKPOINT``)."""
        self._require_writable()
        self._execute("CHECKPOINT")

    def _check_written(self, run_id: str, nodes: Mapping[str, pd.DataFrame], rels: Mapping[str, pd.DataFrame]) -> None:
        """Refuse to mark a run complete unless the database holds every one of its facts."""
        want = {label: len(nodes[label]) for label in run_labels()}
        want.update({rtype: len(frame) for rtype, frame in rels.items()})
        got = self.counts(run_id)
        missing = {k: (got.get(k, 0), n) for k, n in want.items() if got.get(k, 0) != n}
        if missing:
            raise GraphDBError(
                f"run {run_id!r} was not marked complete: after the write the database holds "
                + ", ".join(f"{k} {g} of {n}" for k, (g, n) in missing.items())
                + f". The run stays 'writing' (invisible); remove it with `cellvq runs delete {run_id}` and write it again."
            )

    def _new_genes(self, genes: pd.DataFrame) -> pd.DataFrame:
        existing = self._read(q.LADYBUG_EXISTING_GENES)
        return genes[~genes["symbol"].isin(set(existing["symbol"]))]

    def _changed_genes(self, genes: pd.DataFrame) -> list[dict[str, Any]]:
        """Known genes whose Ensembl ID the new run fills in or changes (written with MERGE_GENES)."""
        existing = self._read(q.LADYBUG_EXISTING_GENES)
        if existing.empty:
            return []
        merged = genes.merge(existing, on="symbol", how="inner", suffixes=("", "_old"))
        changed = merged[merged["ensemblId"].notna() & (merged["ensemblId"] != merged["ensemblId_old"])]
        return [{"symbol": s, "ensemblId": e} for s, e in zip(changed["symbol"], changed["ensemblId"])]

    def _new_cells(self, cells: pd.DataFrame, dataset_id: str, columns: list[tuple[str, str]]) -> pd.DataFrame:
        """Cells of the dataset not stored yet, with every ``Cell`` column in table order.

        Cells already stored (by an earlier run over the same dataset) keep their properties.
        """
        existing = self._read(q.LADYBUG_EXISTING_CELLS, {"datasetId": dataset_id})
        new = cells[~cells["uid"].isin(set(existing["uid"]))]
        out = pd.DataFrame(index=new.index)
        for name, kind in columns:
            if name in new.columns:
                out[name] = new[name]
            else:
                out[name] = None if kind == "STRING" else float("nan")
        return out.reset_index(drop=True)

    def _cell_columns(self) -> list[tuple[str, str]]:
        info = self._read(q.LADYBUG_CELL_COLUMNS)
        return [(str(n), str(t)) for n, t in zip(info["name"], info["type"])]

    def _ensure_cell_columns(self, types: Mapping[str, str]) -> None:
        """Add the extra ``cells`` columns to the ``Cell`` table (idempotent)."""
        stored = dict(self._cell_columns())
        for name, kind in types.items():
            want = _LADYBUG_TYPES[kind]
            have = stored.get(name)
            if have is None:
                if not CELL_PROPERTY_PATTERN.match(name):  # checked by RunTables too
                    raise SchemaError(f"cells column {name!r} is not a valid property name")
                self._execute(q.cell_column_statement(q.LADYBUG_ADD_CELL_COLUMN, name, want))
            elif have != want and not (have == "DOUBLE" and want == "INT64"):
                raise SchemaError(
                    f"cells column {name!r} holds {kind} values, but this database stores Cell.{name} as {have}; "
                    f"convert the column to {have.lower()} or rename it"
                )

    def _batch_statement(self, name: str, statement: str, batch: list[dict[str, Any]]) -> str:
        """Leave out of the statement (and the batch) every column that is null in all its rows:
        LadybugDB would type it STRING and refuse it for a numeric property (:func:`queries.merge_without`).
        Relationships go through :data:`queries.LADYBUG_CREATE_RELS` (no run lock: one writer at a time)."""
        empty = frozenset(k for k in batch[0] if all(row[k] is None for row in batch))
        if not empty:
            return q.LADYBUG_CREATE_RELS.get(name, statement)
        for row in batch:
            for key in empty:
                del row[key]
        return q.merge_without(name, empty)

    def _set_cell_properties(self, frame: pd.DataFrame, types: Mapping[str, str], batch_size: int) -> int:
        """Extra ``Cell`` columns for the UNWIND path: one parameterised SET per column."""
        n = 0
        for name, kind in types.items():
            sub = frame[["uid", name]].rename(columns={name: "value"})
            rows = records(sub, ["value"] if kind == INT64 else [])
            stmt = q.cell_column_statement(q.LADYBUG_SET_CELL_COLUMN, name)
            for start in range(0, len(rows), batch_size):
                self._write(stmt, {"rows": rows[start : start + batch_size]})
            n += len(rows)
        return n


def _copy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame LadybugDB's COPY accepts: object columns for text, float64 (NaN = null) for numbers."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
            out[col] = s.astype("int64") if not s.isna().any() else s.astype("float64")
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        else:
            out[col] = s.astype(object).where(s.notna(), None)
    return out


_LOCK_PID = re.compile(r"held by PID (\d+)")


def _connect(ladybug: Any, path: Path, read_only: bool, opts: Mapping[str, int]):
    db = ladybug.Database(str(path), read_only=read_only, **opts)
    conn = ladybug.Connection(db)
    conn.execute("RETURN 1")
    return db, conn


def _migrations(conn: Any) -> list[str]:
    """``ALTER TABLE ... ADD`` for every declared property missing from a table of an existing store
    (one written by an older graphdb: e.g. the Run provenance, CellState descriptions, REGULATES
    evidence), and the DDL of every declared table such a store lacks (e.g. ``Perturbation`` /
    ``SHIFTS``), nodes before relationships. Empty for a current store; a new, empty one gets the DDL."""
    existing = set(conn.execute("CALL show_tables() RETURN name").get_as_df()["name"])
    out = []
    for table, statement in q.LADYBUG_TABLE_COLUMNS.items():
        if table not in existing:
            out.append(q.LADYBUG_DDL[table])
            continue
        stored = set(conn.execute(statement).get_as_df()["name"])
        out += [stmt for (name, prop), stmt in q.LADYBUG_ADD_COLUMN.items() if name == table and prop not in stored]
    return out


def _migrate(ladybug: Any, path: Path, opts: Mapping[str, int]) -> None:
    """Add the declared columns missing from a store written by an older graphdb (one read-write open)."""
    try:
        db, conn = _connect(ladybug, path, False, opts)
    except RuntimeError as exc:
        raise GraphDBError(
            f"the LadybugDB database {path} was written by an older graphdb and needs its tables upgraded "
            f"(a read-write open), which failed: {str(exc).splitlines()[0]}. Open it once with open_store(path) "
            "when no other process has it open."
        ) from exc
    try:
        for stmt in _migrations(conn):
            conn.execute(stmt)
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
        db.close()


def _recovery_pending(exc: BaseException) -> bool:
    return "recovery is pending" in str(exc).lower()


def _finish_recovery(ladybug: Any, path: Path, opts: Mapping[str, int]) -> None:
    """Complete an interrupted checkpoint by one read-write open (replays the WAL), then close."""
    log.warning("%s: checkpoint recovery pending (a writer was killed); recovering with a read-write open", path)
    try:
        db, conn = _connect(ladybug, path, False, opts)
    except RuntimeError as exc:
        raise RecoveryPendingError(
            f"the LadybugDB database {path} needs checkpoint recovery (a process writing to it was killed) and "
            f"cannot be recovered now ({str(exc).splitlines()[0]}). When no other process has it open, run "
            f"`cellvq runs recover --db {path}` (or open_store(path) once without read_only), then read again."
        ) from exc
    try:
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
        db.close()


def _open_error(path: Path, exc: RuntimeError) -> GraphDBError:
    msg = str(exc)
    low = msg.lower()
    if "could not set lock" in low or "lock is held" in low:
        pid = _LOCK_PID.search(msg)
        who = f"process {pid.group(1)}" if pid else "another process"
        return StoreLockedError(
            f"the LadybugDB database {path} is locked by {who}, which has it open for writing. "
            "Only one process may open a database read-write: close the store in that process "
            "(store.close()) or wait for it to finish, or open this one with open_store(path, read_only=True)."
        )
    if any(s in low for s in ("not a valid", "corrupt", "checksum", "wal", "storage version", "magic")):
        return CorruptStoreError(
            f"{path} is not a readable LadybugDB database ({msg.splitlines()[0]}). Point open_store() at a new "
            f"path, or move the file (and any {path.name}.wal beside it) aside and write the runs again. "
            "A database written by another LadybugDB/Kùzu version must be exported and imported with that version."
        )
    return GraphDBError(f"could not open the LadybugDB database {path}: {msg}")


def _hook(hook: StepHook | None, name: str, rows: int) -> None:
    if hook is not None:
        hook(name, int(rows))
