"""Online writes in batches: ``UNWIND $rows AS row MERGE ...``, one transaction per batch.

This is how the Neo4j store writes a run: :class:`UnwindWriter` is a store base class, both
stores inherit it. The statements are derived from the declarations in :mod:`graphdb.schema`
(:data:`graphdb.queries.MERGE_NODES`, :data:`graphdb.queries.CREATE_RELS`); all of them but
``SET_CELL_PROPERTIES`` also run on LadybugDB, so the embedded store can write through this very
code path too (``write_run(..., method="unwind")``), which is how the test suite checks the Neo4j
write statements against a real database.

Protocol (the same for every backend):

1. ``RUN_BEGIN`` -- the ``Run`` node gets ``status: 'writing'``; named queries stop seeing the run.
2. The run's previous facts are deleted in batches (a re-write, or the remains of an
   interrupted write), so writing a run twice leaves the same counts; ``RUN_DATASET`` links
   the run to its dataset.
3. Nodes, then relationships, ``batch_size`` rows per transaction. Nodes are ``MERGE``d on their
   key (genes and cells are shared by runs); relationships are ``CREATE``d (they are new after the
   delete), each batch only while this writer still owns the run (``Run.writer``, checked under the
   run's write lock), so a writer superseded by a second one writing the same run adds nothing.
4. ``RUN_COMPLETE`` -- ``status: 'complete'``; only now do queries see the run.

A write killed at any point leaves the run in ``writing`` (invisible); writing it again completes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from .. import queries as q
from ..schema import NODES, RunTables, graph_frames, int_columns, records
from .base import GraphStore, StepHook, WriteReport, progress_bar, rows_per_step


class UnwindWriter(GraphStore):
    """A :class:`GraphStore` that writes runs in ``UNWIND`` batches through its own ``_write``.

    The store supplies :meth:`_set_cell_properties` (how extra ``Cell`` columns are set: Neo4j's
    ``SET c += map``, LadybugDB one column at a time). Statements come from the declarations
    (:data:`graphdb.queries.MERGE_NODES`, :data:`graphdb.queries.CREATE_RELS`).
    """

    def _set_cell_properties(self, frame: pd.DataFrame, types: Mapping[str, str], batch_size: int) -> int:
        """Write the extra ``Cell`` columns of ``frame`` (``uid`` + extras) in batches of ``batch_size``
        rows; returns the rows written."""
        raise NotImplementedError

    def _write_unwind(
        self, tables: RunTables, *, batch_size: int, progress: bool = False, on_step: StepHook | None = None
    ) -> WriteReport:
        """Write ``tables`` in ``UNWIND`` batches of ``batch_size`` rows (protocol: module docstring)."""
        if not isinstance(tables, RunTables):
            raise TypeError(f"write_run expects graphdb.RunTables, got {type(tables).__name__}")
        t0 = time.perf_counter()
        nodes, rels = graph_frames(tables)
        report = WriteReport(run_id=tables.run_id, method="unwind")
        deleted, writer = self._begin_run(tables, self._delete_batch_size())
        report.rows.update({"Run": 1, "Dataset": 1, "ON_DATASET": 1})
        _step(on_step, "begin", deleted)
        total = rows_per_step({k: v for k, v in nodes.items() if k in q.MERGE_NODES}, rels) - 1
        with progress_bar(total, progress, f"write {tables.run_id}") as bar:
            for label, statement in q.MERGE_NODES.items():
                frame = nodes[label][NODES[label].property_names]  # Cell: declared columns only
                self._write_batches(statement, label, frame, tables, batch_size, bar)
                report.rows[label] = len(frame)
                _step(on_step, label, len(frame))
            extras = list(tables.cell_property_types)
            if extras and len(nodes["Cell"]):
                self._set_cell_properties(nodes["Cell"][["uid", *extras]], tables.cell_property_types, batch_size)
                _step(on_step, "Cell properties", len(nodes["Cell"]))
            guard = {"runId": tables.run_id, "writer": writer}
            for rtype, statement in q.CREATE_RELS.items():
                self._write_batches(statement, rtype, rels[rtype], tables, batch_size, bar, guard)
                report.rows[rtype] = len(rels[rtype])
                _step(on_step, rtype, len(rels[rtype]))
        self._write(q.RUN_COMPLETE, {"runId": tables.run_id, "writer": writer, "completedAt": self._now()})
        _step(on_step, "complete", 1)
        report.seconds = time.perf_counter() - t0
        return report

    def _write_batches(
        self, statement: str, name: str, frame: pd.DataFrame, tables: RunTables, batch_size: int, bar: Any,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        for batch in _batches(records(frame, int_columns(name, tables.cell_property_types)), batch_size):
            self._write(self._batch_statement(name, statement, batch), {**(params or {}), "rows": batch})
            bar.update(len(batch))

    def _batch_statement(self, name: str, statement: str, batch: list[dict[str, Any]]) -> str:
        """The statement that writes ``batch`` (a backend may adapt it to the batch, see LadybugStore)."""
        return statement


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def cell_property_rows(frame: pd.DataFrame, types: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows ``{"uid": ..., "props": {name: value}}`` for ``SET c += row.props`` (missing values dropped)."""
    ints = [c for c, kind in types.items() if kind == "INT64"]
    out = []
    for row in records(frame, ints):
        uid = row.pop("uid")
        out.append({"uid": uid, "props": {k: v for k, v in row.items() if v is not None}})
    return out


def _step(hook: StepHook | None, name: str, rows: int) -> None:
    if hook is not None:
        hook(name, int(rows))
