"""Per-state aggregates written with the run equal the cell-level counts (real pbmc3k, both stores).

``ASSOCIATED_WITH.nCells`` (cells of a state having a property) and ``CellState.nCells`` (cells in
a state) are written with the run so that :meth:`GraphStore.state_properties` and a cells-per-state
query read them instead of scanning every cell; here they are checked against the counts over the
``Cell`` nodes and relationships actually stored, and against the input tables.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from graphdb_fixtures import pbmc_run_tables

from graphdb import open_store
from graphdb import queries as q

CELLS_PER_STATE_SCAN = (
    "MATCH (c:Cell)-[:IN_STATE {runId: $runId}]->(s:CellState) RETURN s.stateId AS state, count(c) AS n"
)
CELLS_PER_STATE_AGGREGATE = (
    "MATCH (s:CellState {runId: $runId}) WHERE s.nCells > 0 RETURN s.stateId AS state, s.nCells AS n"
)


def _check_aggregates(store, tables) -> None:
    run_id = tables.run_id
    checked = 0
    for state in tables.states["stateId"]:
        got = store.state_properties(state, run_id=run_id)
        uid = store.resolve_state(state, run_id)["uid"]
        scan = store.query(q.STATE_PROPERTIES_SCAN, {"runId": run_id, "stateUid": uid})
        assert got["propertyId"].tolist() == scan["propertyId"].tolist(), state
        assert got["nCells"].astype(int).tolist() == scan["nCells"].astype(int).tolist(), state
        checked += int((scan["nCells"] > 0).sum())
    assert checked > 20  # real, non-zero counts were compared, not only empty pairs
    scan = store.query(CELLS_PER_STATE_SCAN, {"runId": run_id}).sort_values("state", ignore_index=True)
    agg = store.query(CELLS_PER_STATE_AGGREGATE, {"runId": run_id}).sort_values("state", ignore_index=True)
    assert scan["state"].tolist() == agg["state"].tolist() and len(scan) > 10
    assert scan["n"].astype(int).tolist() == agg["n"].astype(int).tolist()
    expected = tables.cell_state.groupby("stateId").size().sort_index()
    assert agg.set_index("state")["n"].astype(int).to_dict() == expected.to_dict()


def test_aggregates_equal_cell_counts_ladybug(tmp_path):
    tables = pbmc_run_tables("agg-lbug")
    with open_store(tmp_path / "db") as store:
        store.write_run(tables)
        _check_aggregates(store, tables)


def test_state_properties_of_a_run_without_the_aggregate_counts_cells(tmp_path):
    """A run written before ``ASSOCIATED_WITH.nCells`` existed (null there) is counted at query time."""
    tables = pbmc_run_tables("agg-old")
    with open_store(tmp_path / "db") as store:
        store.write_run(tables)
        state = "Monocyte"
        before = store.state_properties(state, run_id=tables.run_id)
        store._write("MATCH ()-[a:ASSOCIATED_WITH {runId: $runId}]->() SET a.nCells = null", {"runId": tables.run_id})
        after = store.state_properties(state, run_id=tables.run_id)
    assert (before["nCells"] > 0).any()
    pd.testing.assert_frame_equal(before.astype({"nCells": int}), after.astype({"nCells": int}))


@pytest.mark.neo4j_live
def test_aggregates_equal_cell_counts_neo4j(neo4j_live):
    tables = pbmc_run_tables(f"agg-{uuid.uuid4().hex[:8]}")
    store = neo4j_live.open(batch_size=5_000)
    try:
        store.write_run(tables)
        _check_aggregates(store, tables)
    finally:
        store.delete_run(tables.run_id)
        store.close()
