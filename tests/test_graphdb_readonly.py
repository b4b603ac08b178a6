"""Read-only user Cypher by allow-list (issue 15 item 9), on a real LadybugDB holding the PBMC 3k run.

Before: `UPDATE httpfs` and `UNINSTALL httpfs` passed the write-keyword check and reached LadybugDB, which
tried to download an extension. Now only read statements are accepted.
"""

from __future__ import annotations

import pytest
from graphdb_fixtures import pbmc_run_tables
from typer.testing import CliRunner

import graphdb
from cellvq.cli import app
from cellvq.report import ALL_MARKERS_CYPHER, MARKERS_CYPHER
from graphdb import ReadOnlyViolation

runner = CliRunner()

NOT_READS = [
    "UPDATE httpfs",
    "UNINSTALL httpfs",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD EXTENSION httpfs",
    "COPY Gene TO 'genes.csv'",
    "ATTACH 'other.lbug' AS o (dbtype lbug)",
    "DETACH DATABASE o",
    "EXPORT DATABASE 'dump'",
    "IMPORT DATABASE 'dump'",
    "USE o MATCH (n) RETURN n",
    "CALL threads=1",
    "CALL checkpoint_threshold = 0",
    "CALL dbms.security.createUser('a', 'b')",
    "CALL apoc.create.node(['X'], {}) YIELD node RETURN node",
    "MATCH (n:Gene) CALL { WITH n MERGE (x:Gene {symbol: 'Z'}) } RETURN n",
    "MATCH (create:Gene) CREATE (x:Gene {symbol: 'EVIL'})",
    "MATCH (g:Gene) WITH g FROBNICATE g",
    "FOOBAR httpfs",
    "PROFILE MATCH (n) RETURN n",
    "SHOW USERS",
    "MATCH (g:Gene) RETURN g LIMIT 1; UPDATE httpfs",
]

READS = [
    "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {kind: 'cellType'}) WHERE m.rank <= 3 "
    "RETURN s.name, g.symbol, m.score ORDER BY s.name, m.score DESC",
    "MATCH p = (a:Gene {symbol: 'LYZ'})-[:CO_EXPRESSED*1..2]-(b:Gene) RETURN length(p) AS n, "
    "size(nodes(p)) AS s LIMIT 3",
    "UNWIND ['LYZ', 'MS4A1'] AS x MATCH (g:Gene {symbol: x}) RETURN g.symbol AS symbol",
    "MATCH (g:Gene)-[m:MARKER_OF]->(s) WITH g, count(*) AS c WHERE c > 1 RETURN g.symbol, c ORDER BY c DESC LIMIT 5",
    "CALL table_info('Cell') RETURN name, type",
    "MATCH (s:CellState) RETURN s.name AS x UNION ALL MATCH (g:Gene {symbol: 'LYZ'}) RETURN g.symbol AS x",
    "MATCH (s:CellState) OPTIONAL MATCH (s)<-[:MARKER_OF]-(g:Gene) RETURN s.name, collect(g.symbol) AS genes, "
    "CASE WHEN s.nCells > 100 THEN 'big' ELSE 'small' END AS size",
    "MATCH (g:Gene) WHERE g.symbol IS NOT NULL AND NOT g.symbol STARTS WITH 'MT-' "
    "RETURN DISTINCT g.symbol ORDER BY g.symbol DESC SKIP 1 LIMIT 2",
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("readonly") / "store.lbug"
    with graphdb.open_store(path) as store:
        store.write_run(pbmc_run_tables())
    return path


@pytest.mark.parametrize("statement", NOT_READS)
def test_non_read_statements_are_refused(db, statement):
    with graphdb.open_store(db, read_only=True) as store:
        before = store.counts()
        with pytest.raises(ReadOnlyViolation, match="read statements only|exactly one statement"):
            store.query(statement, {})
        assert store.counts() == before
    res = runner.invoke(app, ["cypher", statement, "--db", str(db)])
    assert res.exit_code != 0 and "ReadOnlyViolation" in res.output


@pytest.mark.parametrize("statement", [*READS, MARKERS_CYPHER, ALL_MARKERS_CYPHER])
def test_read_statements_run(db, statement):
    with graphdb.open_store(db, read_only=True) as store:
        params = {"runId": store.resolve_run()}
        if "$state" in statement:
            params["state"] = "cellType:B"
        if "$kind" in statement:
            params["kind"] = "cellType"
        if "$top" in statement:
            params["top"] = 5
        used = {k: v for k, v in params.items() if f"${k}" in statement}
        assert len(store.query(statement, used)) > 0
