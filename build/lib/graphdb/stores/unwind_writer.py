"""Online writes in batches: ``UNWIND $rows AS row MERGE ...``, one transaction per batch.

This is how the Neo4j store writes a run. The statements are the Neo4j ones in
:mod:`graphdb.queries`; all of them but ``SET_CELL_PROPERTIES`` also run on LadybugDB, so the
embedded store can write through this very code path too (``write_run(..., method="unwind")``),
which is how the test suite checks the Neo4j write statements against a real database.

Protocol (the same for every backend):

1. ``RUN_BEGIN`` -- the ``Run`` node gets ``status: 'writing'``; named queries stop seeing the run.
2. The run's previous facts are deleted in batches (a re-write, or the remains of an
   interrupted write), so writing a run twice leaves the same counts; ``RUN_DATASET`` links
   the run to its dataset.
3. Nodes, then relationships, ``batch_size`` rows per transaction. Every statement is a
   ``MERGE`` on the node key (relationships: on ``runId``), so a retried batch is harmless.
4. ``RUN_COMPLETE`` -- ``status: 'complete'``; only now do queries see the run.

A write killed at any point leaves the run in ``writing`` (invisible); writing it again completes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from .. import queries as q
from ..schema import RunTables, graph_frames, int_columns, records
from .base import GraphStore, StepHook, WriteReport, progress_bar, rows_per_step

#: ``set_cell_properties(frame)`` writes the extra ``Cell`` columns of ``frame`` (``uid`` + extras).
CellPropertyWriter = Callable[[pd.DataFrame, Mapping[str, str]], int]

_NODE_STATEMENTS = {
    "Gene": q.MERGE_GENES,
    "Cell": q.MERGE_CELLS,
    "CellState": q.MERGE_STATES,
    "Property": q.MERGE_PROPERTIES,
}


def write_run_unwind(
    store: GraphStore,
    tables: RunTables,
    *,
    batch_size: int,
    set_cell_properties: CellPropertyWriter,
    progress: bool = False,
    on_step: StepHook | None = None,
) -> WriteReport:
    """Write ``tables`` through ``store._write`` in ``UNWIND`` batches of ``batch_size`` rows."""
    if not isinstance(tables, RunTables):
        raise TypeError(f"write_run expects graphdb.RunTables, got {type(tables).__name__}")
    t0 = time.perf_counter()
    nodes, rels = graph_frames(tables)
    report = WriteReport(run_id=tables.run_id, method="unwind")
    run_id = tables.run_id

    deleted = store._begin_run(tables, store._delete_batch_size())
    report.rows.update({"Run": 1, "Dataset": 1, "ON_DATASET": 1})
    _step(on_step, "begin", deleted)

    def batches(label: str, frame: pd.DataFrame):
        rows = records(frame, int_columns(label, tables.cell_property_types))
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]

    total = rows_per_step({k: v for k, v in nodes.items() if k in _NODE_STATEMENTS}, rels) - 1
    with progress_bar(total, progress, f"write {run_id}") as bar:
        for label, statement in _NODE_STATEMENTS.items():
            frame = nodes[label]
            if label == "Cell":
                frame = frame[["uid", "cellId", "datasetId"]]
            for batch in batches(label, frame):
                store._write(statement, {"rows": batch})
                bar.update(len(batch))
            report.rows[label] = len(frame)
            _step(on_step, label, len(frame))
        extras = list(tables.cell_property_types)
        if extras and len(nodes["Cell"]):
            set_cell_properties(nodes["Cell"][["uid", *extras]], tables.cell_property_types)
            _step(on_step, "Cell properties", len(nodes["Cell"]))
        for rtype, statement in q.MERGE_RELS.items():
            frame = rels[rtype]
            for batch in batches(rtype, frame):
                store._write(statement, {"rows": batch})
                bar.update(len(batch))
            report.rows[rtype] = len(frame)
            _step(on_step, rtype, len(frame))
    store._write(q.RUN_COMPLETE, {"runId": run_id, "completedAt": store._now()})
    _step(on_step, "complete", 1)
    report.seconds = time.perf_counter() - t0
    return report


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
