"""graphdb on a real embedded LadybugDB, created in a temporary folder, with real PBMC 3k tables.

Tests that write get their own database; the read-only query tests share one written per module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from graphdb_fixtures import (
    ROOT,
    check_idempotent_rewrite,
    check_interrupted_write,
    check_named_queries,
    check_round_trip,
    expected_run_counts,
    pbmc_run_tables,
)

import graphdb
from graphdb import (
    AmbiguousStateError,
    CorruptStoreError,
    NotFoundError,
    QueryError,
    ReadOnlyViolation,
    StoreLockedError,
    open_store,
    read_grn,
)
from graphdb.stores.ladybug_store import LadybugStore


@pytest.fixture(scope="module")
def tables() -> graphdb.RunTables:
    return pbmc_run_tables()


@pytest.fixture(scope="module")
def written(tables, tmp_path_factory):
    """A store holding the PBMC run (written once, queried by the read-only tests)."""
    path = tmp_path_factory.mktemp("graphdb") / "pbmc.lbug"
    store = open_store(path)
    store.write_run(tables)
    yield store
    store.close()


def test_open_store_dispatch(tmp_path):
    with open_store(tmp_path / "a" / "b.lbug") as store:
        assert isinstance(store, LadybugStore)
        assert store.backend == "ladybug"
        assert (tmp_path / "a" / "b.lbug").exists()
    with open_store(tmp_path) as store:  # a directory: the default file inside it
        assert store.target == str(tmp_path / "cellvq_graph.lbug")
    with pytest.raises(ValueError, match="unsupported store URI scheme 'http'"):
        open_store("http://localhost:7474")
    with pytest.raises(ValueError, match="Neo4j URIs only"):
        open_store(tmp_path / "x.lbug", password="secret")


def test_round_trip(written, tables):
    check_round_trip(written, tables)
    report_counts = written.counts()
    assert report_counts["Gene"] == len(tables.genes)
    assert report_counts["Cell"] == len(tables.cells)


def test_named_queries(written, tables):
    check_named_queries(written, tables)


def test_write_report(tmp_path, tables):
    steps = []
    with open_store(tmp_path / "r.lbug") as store:
        report = store.write_run(tables, on_step=lambda s, n: steps.append((s, n)))
    assert report.run_id == tables.run_id and report.method == "copy"
    assert report.rows["MARKER_OF"] == len(tables.markers)
    assert report.rows["EXPRESSES"] == len(tables.expresses)
    assert report.total_rows == tables.n_rows() + 1  # + the ON_DATASET edge
    assert report.rows_per_second > 0
    names = [s for s, _ in steps]
    assert names[0] == "begin" and names[-1] == "complete"
    assert ("IN_STATE", len(tables.cell_state)) in steps


def test_idempotent_rewrite(tmp_path, tables):
    with open_store(tmp_path / "i.lbug") as store:
        store.write_run(tables)
        check_idempotent_rewrite(store, tables)
        check_idempotent_rewrite(store, tables, method="unwind", batch_size=4000)


def test_neo4j_write_statements_on_ladybug(tmp_path, tables):
    """The Neo4j UNWIND write path, run on LadybugDB, builds exactly the graph COPY builds."""
    small = pbmc_run_tables("pbmc3k-small", n_cells=400)
    with open_store(tmp_path / "copy.lbug") as a, open_store(tmp_path / "unwind.lbug") as b:
        a.write_run(small)
        report = b.write_run(small, method="unwind", batch_size=700)
        assert report.method == "unwind"
        assert a.counts() == b.counts()
        assert b.counts(small.run_id) == expected_run_counts(small)
        check_round_trip(b, small)
        for state in ("B", "CD14+ Mono", "cluster:3"):
            pd.testing.assert_frame_equal(a.markers(state), b.markers(state))
        cells = "MATCH (c:Cell) RETURN c.uid AS uid, c.nCounts AS n, c.nGenes AS g, c.umap1 AS u ORDER BY uid"
        pd.testing.assert_frame_equal(a.query(cells), b.query(cells))


def test_runs_latest_and_run_id(tmp_path, tables):
    old = pbmc_run_tables("pbmc3k-old", created_at="2025-06-01T00:00:00+00:00", n_markers=8, n_cells=300)
    with open_store(tmp_path / "runs.lbug") as store:
        store.write_run(tables)
        store.write_run(old)
        runs = store.runs()
        assert list(runs["runId"]) == [tables.run_id, old.run_id]  # newest first
        assert store.resolve_run() == tables.run_id
        assert len(store.markers("B", top=50)) == 25
        assert len(store.markers("B", top=50, run_id=old.run_id)) == 8
        # the runs do not collide: each holds its own states, genes are shared
        assert store.counts(old.run_id) == expected_run_counts(old)
        assert store.counts(tables.run_id) == expected_run_counts(tables)
        assert store.counts()["Gene"] == len(set(tables.genes["symbol"]) | set(old.genes["symbol"]))
        with pytest.raises(NotFoundError, match="did you mean"):
            store.markers("B", run_id="pbmc3k-olf")
        store.delete_run(old.run_id)
        assert list(store.runs()["runId"]) == [tables.run_id]
        assert store.counts(old.run_id) == dict.fromkeys(expected_run_counts(old), 0)
        check_round_trip(store, tables)


def test_interrupted_copy_write_is_invisible_and_rerun_completes(tmp_path, tables):
    path = tmp_path / "kill.lbug"
    check_interrupted_write(
        lambda: open_store(path), str(path), tables, tmp_path, stop_at="MARKER_OF", atomic=True
    )


def test_interrupted_unwind_write_is_invisible_and_rerun_completes(tmp_path):
    small = pbmc_run_tables("pbmc3k-small", n_cells=300)
    path = tmp_path / "kill_unwind.lbug"
    check_interrupted_write(
        lambda: open_store(path), str(path), small, tmp_path, stop_at="MARKER_OF", method="unwind"
    )


def test_interrupted_rewrite_hides_old_version(tmp_path, tables):
    """Killing the re-write of a complete run hides the run until it is written again."""
    path = tmp_path / "rewrite.lbug"
    with open_store(path) as store:
        store.write_run(tables)
    check_interrupted_write(
        lambda: open_store(path), str(path), tables, tmp_path, stop_at="CellState", atomic=True
    )


def test_locked_database(tmp_path):
    path = tmp_path / "locked.lbug"
    open_store(path).close()
    code = "import sys, time, graphdb; s = graphdb.open_store(sys.argv[1]); print('READY', flush=True); time.sleep(600)"
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout.readline().strip() == "READY"
        with pytest.raises(StoreLockedError) as err:
            open_store(path)
        msg = str(err.value)
        assert str(path) in msg and f"process {child.pid}" in msg and "read_only=True" in msg
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with open_store(path) as store:  # the lock goes with the process
        assert store.runs().empty


def test_corrupt_database(tmp_path):
    path = tmp_path / "corrupt.lbug"
    path.write_bytes(np.random.default_rng(0).bytes(200_000))
    with pytest.raises(CorruptStoreError) as err:
        open_store(path)
    msg = str(err.value)
    assert str(path) in msg and "not a readable LadybugDB database" in msg and "new path" in msg
    with pytest.raises(CorruptStoreError):
        open_store(path, read_only=True)


def test_read_only_store(tmp_path, tables):
    path = tmp_path / "ro.lbug"
    with pytest.raises(NotFoundError, match="no LadybugDB database"):
        open_store(path, read_only=True)
    small = pbmc_run_tables("pbmc3k-small", n_cells=200)
    with open_store(path) as store:
        store.write_run(small)
    with open_store(path, read_only=True) as ro:
        assert len(ro.markers("B", top=3)) == 3
        with pytest.raises(ReadOnlyViolation, match="opened read-only"):
            ro.write_run(small)


def test_missing_state_gene_run(tmp_path, written):
    with pytest.raises(NotFoundError, match=r"no state 'B cells'.*did you mean") as err:
        written.markers("B cells")
    assert "stateId or name" in str(err.value)
    with pytest.raises(NotFoundError, match=r"gene 'lyz' is not in the store.*did you mean \['LYZ'") as err:
        written.states_for_gene("lyz")
    with pytest.raises(NotFoundError, match="not in the store"):
        written.gene_network("NOT_A_GENE")
    with pytest.raises(NotFoundError, match="run 'nope' is not in the store"):
        written.markers("B", run_id="nope")
    with pytest.raises(ValueError, match="depth must be one of"):
        written.gene_network("LYZ", depth=9)
    with pytest.raises(ValueError, match="kinds must be"):
        written.gene_network("LYZ", kinds=("BINDS",))
    with pytest.raises(ValueError, match="top must be a positive integer"):
        written.markers("B", top=0)
    with open_store(Path(written.target).parent / "empty.lbug") as empty:
        with pytest.raises(NotFoundError, match="holds no complete run"):
            empty.markers("B")


def test_ambiguous_state(tmp_path):
    t = pbmc_run_tables("pbmc3k-amb", n_cells=200)
    states = t.states.copy()
    states.loc[states["stateId"] == "cluster:0", "name"] = "B"  # a cluster also named "B"
    amb = graphdb.RunTables(
        **{**{n: getattr(t, n) for n in graphdb.RunTables.TABLE_NAMES}, "run": t.run, "states": states}
    )
    with open_store(tmp_path / "amb.lbug") as store:
        store.write_run(amb)
        with pytest.raises(AmbiguousStateError, match=r"\['cellType:B', 'cluster:0'\]"):
            store.markers("B")
        assert len(store.markers("cellType:B", top=3)) == 3


def test_user_queries_are_read_only(written):
    before = written.counts()
    for bad in (
        "MATCH (g:Gene) SET g.symbol = 'X'",
        "CREATE (:Gene {symbol: 'EVIL'})",
        "MATCH (g:Gene {symbol: 'LYZ'}) DETACH DELETE g",
        "MATCH (s:CellState) REMOVE s.name",
        "COPY Gene FROM 'genes.csv'",
        "DROP TABLE Gene",
        "MATCH (g:Gene) RETURN g LIMIT 1; CREATE (:Gene {symbol: 'Y'})",
        "COMMIT",
    ):
        with pytest.raises(ReadOnlyViolation):
            written.query(bad)
    # the database refuses writes on its own too (the read-only transaction)
    with pytest.raises(ReadOnlyViolation, match="refused a write"):
        written._read_user("CREATE (:Gene {symbol: 'EVIL'})", {})
    assert written.counts() == before
    # words inside strings and comments are not clauses
    ok = written.query(
        "MATCH (g:Gene) WHERE g.symbol = 'SET' OR g.symbol = $symbol /* CREATE */ RETURN count(g) AS n",
        {"symbol": "LYZ"},
    )
    assert int(ok["n"].iloc[0]) == 1
    with pytest.raises(QueryError, match="LadybugDB rejected the query"):
        written.query("MATCH (g:Gene RETURN g")
    # the connection is usable after a failed query
    assert len(written.markers("B", top=2)) == 2


def test_export_grn_round_trip(tmp_path, written, tables):
    edges = written.grn_edges(kinds=("REGULATES",))
    assert len(edges) == len(tables.regulates)
    for fmt, name in (
        ("graphml", "grn.graphml"),
        ("csv", "grn.csv"),
        ("cytoscape", "grn.cyjs"),
        ("sif", "grn.sif"),
    ):
        path = written.export_grn(tmp_path / name, kinds=("REGULATES",))
        back = read_grn(path)
        want = tables.regulates.assign(kind="REGULATES").sort_values(
            ["kind", "source", "target"], ignore_index=True
        )
        assert list(zip(back["source"], back["target"])) == list(zip(want["source"], want["target"])), fmt
        assert set(back["kind"]) == {"REGULATES"}
        if fmt != "sif":
            np.testing.assert_allclose(back["weight"], want["weight"], rtol=1e-12)
    # by default both kinds, each edge with its kind
    both = read_grn(written.export_grn(tmp_path / "both.csv"))
    assert both["kind"].value_counts().to_dict() == {"REGULATES": len(tables.regulates),
                                                    "CO_EXPRESSED": len(tables.co_expressed)}
    # independent readers: networkx and pandas
    g = nx.read_graphml(tmp_path / "grn.graphml")
    assert g.number_of_edges() == len(tables.regulates)
    assert g.nodes["LYZ"]["ensemblId"] == "ENSG00000090382"
    cy = nx.cytoscape_graph(__import__("json").loads((tmp_path / "grn.cyjs").read_text()))
    assert set(cy.edges()) == set(g.edges())
    assert set(pd.read_csv(tmp_path / "grn.csv").columns) >= {"source", "target", "kind", "weight"}
    # both network kinds: a multigraph keyed by kind
    both = written.export_grn(tmp_path / "both.graphml", kinds=("REGULATES", "CO_EXPRESSED"))
    mg = nx.read_graphml(both)
    assert mg.is_multigraph() and mg.number_of_edges() == len(tables.regulates) + len(tables.co_expressed)
    with pytest.raises(ValueError, match="cannot tell the format"):
        written.export_grn(tmp_path / "grn.txt")
    with pytest.raises(NotFoundError, match="nothing to export"):
        written.export_grn(tmp_path / "none.csv", min_weight=10.0)


def test_graphml_from_the_table_equals_networkx_graphml(tmp_path, written):
    """export_grn writes GraphML straight from the edge table: read back by networkx it is the same graph
    (nodes in order with their Ensembl IDs, edges with kind, weight and evidence, multigraph keys) as
    networkx's own writer gives for grn_graph, also for symbols that need XML escaping."""
    from graphdb.export import grn_graph, write_graphml_edges

    for kinds in (("REGULATES",), ("REGULATES", "CO_EXPRESSED")):
        edges = written.grn_edges(kinds=kinds)
        odd = edges.head(3).assign(source=['A&B<1>', 'x"y', "HLA-DRB1'"], sourceEnsemblId=None)
        for table in (edges, pd.concat([edges, odd], ignore_index=True)):
            nx.write_graphml(grn_graph(table), tmp_path / "nx.graphml")
            write_graphml_edges(table, tmp_path / "table.graphml")
            ref, ours = nx.read_graphml(tmp_path / "nx.graphml"), nx.read_graphml(tmp_path / "table.graphml")
            assert type(ours) is type(ref) and ours.graph == ref.graph
            assert list(ours.nodes(data=True)) == list(ref.nodes(data=True))
            keyed = {"keys": True} if ref.is_multigraph() else {}
            assert list(ours.edges(data=True, **keyed)) == list(ref.edges(data=True, **keyed))
        assert any(len(d) > 2 for *_, d in ours.edges(data=True))  # evidence columns came through
