"""The Neo4j store against a live Neo4j 5 server: the same checks the embedded store passes.

The server is the session fixture ``neo4j_live`` (tests/conftest.py): the project's Neo4j 5.26
test server (tests/neo4j_server, started from Maven Central jars), or an external server when
``NEO4J_URI`` is set (credentials from ``NEO4J_USER`` / ``NEO4J_PASSWORD``, database from
``NEO4J_DATABASE``), e.g.::

    NEO4J_URI=bolt://localhost:7687 NEO4J_PASSWORD=... pytest -m neo4j_live tests/test_graphdb_neo4j_live.py

The suite writes runs named ``live-<random>`` and deletes them afterwards; the shared ``Gene`` and
``Cell`` nodes it adds stay. Use a scratch database: the idempotence check compares whole-store
counts, so nothing else should write to it meanwhile.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from graphdb_fixtures import (
    check_idempotent_rewrite,
    check_interrupted_write,
    check_named_queries,
    check_round_trip,
    pbmc_run_tables,
)

import graphdb
from graphdb import open_store, read_grn

pytestmark = pytest.mark.neo4j_live


@pytest.fixture(scope="module")
def store(neo4j_live):
    s = neo4j_live.open(batch_size=5_000)
    yield s
    s.close()


@pytest.fixture(scope="module")
def tables(store):
    t = pbmc_run_tables(f"live-{uuid.uuid4().hex[:8]}")
    yield t
    store.delete_run(t.run_id)


@pytest.fixture(scope="module")
def written(store, tables):
    report = store.write_run(tables)
    assert report.method == "unwind"
    return store


def test_constraints_exist(written):
    # SHOW is not a read statement for `cellvq cypher`'s allow-list: ask the server on a session of its own
    with written._session(read=True) as session:
        names = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    assert {f"cellvq_{label.lower()}_key" for label in graphdb.NODES} <= names


def test_round_trip(written, tables):
    check_round_trip(written, tables)


def test_named_queries(written, tables):
    check_named_queries(written, tables)


def test_idempotent_rewrite_and_batch_size(written, tables):
    check_idempotent_rewrite(written, tables)
    check_idempotent_rewrite(written, tables, batch_size=997)


def test_user_queries_are_read_only_on_the_server(written):
    with pytest.raises(graphdb.ReadOnlyViolation):
        written.query("CREATE (:Gene {symbol: 'EVIL'})")
    # bypass the client-side check: the READ access mode session refuses the write itself
    with pytest.raises(graphdb.ReadOnlyViolation):
        written._read_user("CREATE (:Gene {symbol: 'EVIL'})", {})
    assert written.query("MATCH (g:Gene {symbol: 'EVIL'}) RETURN count(g) AS n")["n"].iloc[0] == 0
    with pytest.raises(graphdb.QueryError):
        written.query("MATCH (g:Gene RETURN g")


def test_export_grn(written, tables, tmp_path):
    path = written.export_grn(tmp_path / "grn.graphml", run_id=tables.run_id, kinds=("REGULATES",))
    back = read_grn(path)
    want = tables.regulates.sort_values(["source", "target"], ignore_index=True)
    assert list(zip(back["source"], back["target"])) == list(zip(want["source"], want["target"]))
    np.testing.assert_allclose(back["weight"], want["weight"], rtol=1e-12)


def test_interrupted_write(neo4j_live, tmp_path):
    small = pbmc_run_tables(f"live-{uuid.uuid4().hex[:8]}", n_cells=400)
    try:
        check_interrupted_write(neo4j_live.open, neo4j_live.uri, small, tmp_path, stop_at="MARKER_OF")
    finally:
        with neo4j_live.open() as s:
            s.delete_run(small.run_id)


def test_wrong_password(neo4j_live):
    with pytest.raises(graphdb.AuthError) as err:
        open_store(neo4j_live.uri, user=neo4j_live.user, password="definitely-not-the-password")
    assert "definitely-not-the-password" not in str(err.value)
    assert "NEO4J_PASSWORD" in str(err.value)


def test_a_named_query_is_one_transaction(written, tables):
    """Every read of a named query (run, state and gene lookups, the answer) runs in one session and one
    read transaction: one commit per question instead of one per statement, one snapshot, and the whole
    question retried on transient errors. Errors raised inside (an unknown state) still come out as
    the store's own errors."""
    driver = written._driver
    opened = []
    session = driver.session

    def counting(**kwargs):
        opened.append(kwargs)
        return session(**kwargs)

    driver.session = counting
    try:
        run = tables.run_id
        calls = {
            "markers": lambda: written.markers("B", top=5, run_id=run),
            "compare_states": lambda: written.compare_states("Naive CD4 T", "Memory CD4 T", run_id=run).markers,
            "gene_network": lambda: written.gene_network("LYZ", depth=1, run_id=run).edges,
            "compare_runs": lambda: written.compare_runs("B", run, run),
            "grn_edges": lambda: written.grn_edges(run_id=run),
        }
        for name, call in calls.items():
            opened.clear()
            assert not call().empty, name
            assert len(opened) == 1, (name, len(opened))
            assert opened[0]["default_access_mode"] == "READ"
        opened.clear()
        with pytest.raises(graphdb.NotFoundError, match="no state 'no-such-state'"):
            written.markers("no-such-state", run_id=run)
        assert len(opened) == 1
    finally:
        driver.session = session
    assert written._local.tx is None
