"""Bulk import for real: ``neo4j-admin database import full`` on write_bulk_import's files.

The importer is Neo4j's own (``org.neo4j.cli.AdminTool`` from the Maven artifacts the test server
runs on); the imported database is then opened by the test server on the same home and must hold
exactly what an online ``UNWIND`` write of the same real pbmc3k run holds -- the same counts and the
same rows from every named query.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from graphdb_fixtures import (
    NAMED_QUERIES,
    assert_same_answers,
    check_named_queries,
    check_round_trip,
    expected_run_counts,
    pbmc_run_tables,
)

from graphdb import open_store, write_bulk_import
from graphdb.neo4j_admin import AdminConfig, Neo4jAdminError, find_classpath, import_full, import_phases

live = pytest.mark.neo4j_live


def _launcher_built() -> None:
    """The Neo4j jars are built (as for the live suite): skip without them, unless they are required."""
    from neo4j_server import ServerStartError, ensure_built

    try:
        ensure_built()
    except ServerStartError as exc:
        if os.environ.get("CELLVQ_REQUIRE_NEO4J") == "1":
            pytest.fail(f"CELLVQ_REQUIRE_NEO4J=1 but Neo4j's jars could not be built: {exc}", pytrace=False)
        pytest.skip(f"no Neo4j jars for neo4j-admin: {exc}")


def _config(home: Path) -> AdminConfig:
    return AdminConfig(home=home, heap="512m", max_off_heap_memory="1g", threads=2)


@pytest.fixture(scope="module")
def tables():
    return pbmc_run_tables(f"bulk-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def imported_home(tables, tmp_path_factory):
    _launcher_built()
    root = tmp_path_factory.mktemp("bulk-live")
    files = write_bulk_import(tables, root / "csv")
    result = import_full(files, _config(root / "home"))
    return files, result


@pytest.fixture(scope="module")
def imported(imported_home):
    from neo4j_server import Neo4jTestServer, ServerConfig

    server = Neo4jTestServer(ServerConfig(home=imported_home[1].home, heap="768m"))
    server.start()
    store = open_store(server.uri, user=server.user, password=server.password)
    yield store
    store.close()
    server.stop()


@pytest.fixture(scope="module")
def online(neo4j_live, tables):
    store = neo4j_live.open(batch_size=5_000)
    store.write_run(tables)
    yield store
    store.delete_run(tables.run_id)
    store.close()


@live
def test_tool_imports_every_row_of_the_files(imported_home):
    files, result = imported_home
    assert result.nodes == sum(files.rows[label] for label in files.node_files)
    assert result.relationships == sum(files.rows[rtype] for rtype in files.rel_files)
    assert result.properties > result.nodes and result.tool_seconds > 0
    assert (result.home / "data" / "databases" / "neo4j").is_dir()


@live
def test_phases_of_the_tools_own_report(imported_home):
    """The phases read back from the tool's real output: node and relationship import are there,
    each took time, and together they fit inside the tool's own total."""
    _, result = imported_home
    phases = import_phases(result.log_file)
    assert {"Nodes", "Relationships"} <= set(phases), phases
    assert all(not name.startswith("WARNING") and "GiB" not in name for name in phases), phases
    assert phases["Nodes"] > 0 and phases["Relationships"] > 0
    assert sum(phases.values()) <= result.tool_seconds + 0.5, (phases, result.tool_seconds)


@live
def test_imported_counts_equal_an_online_write(imported, online, imported_home, tables):
    files, _ = imported_home
    assert imported.counts(tables.run_id) == online.counts(tables.run_id) == expected_run_counts(tables)
    # the imported database holds this run and nothing else: every label and type, in full
    assert imported.counts() == {k: files.rows.get(k, 0) for k in imported.counts()}
    check_round_trip(imported, tables)
    assert online.runs().set_index("runId").loc[tables.run_id, "status"] == "complete"


@live
@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_named_query_same_rows_as_online_write(imported, online, tables, name):
    query = NAMED_QUERIES[name]
    assert_same_answers(query(imported, tables.run_id), query(online, tables.run_id))


@live
def test_imported_store_answers_the_biology(imported, tables):
    check_named_queries(imported, tables)


@live
def test_import_into_a_running_database_is_refused(imported, imported_home, tables):
    """The tool refuses a store in use; the running database keeps its data (nothing is removed)."""
    _, result = imported_home
    with pytest.raises(Neo4jAdminError, match="in use"):
        import_full(imported_home[0], _config(result.home))
    assert imported.counts(tables.run_id) == expected_run_counts(tables)


@live
def test_bad_file_fails_with_the_tools_reason_and_leaves_no_store(tmp_path):
    _launcher_built()
    files = write_bulk_import(pbmc_run_tables("bulk-bad", n_cells=50), tmp_path / "csv")
    with files.rel_files["MARKER_OF"].open("a") as fh:
        fh.write("NOT_A_GENE,bulk-bad:cellType:B,bulk-bad,1.0,99,0.1,1.0,MARKER_OF\n")
    with pytest.raises(Neo4jAdminError, match="referring to missing node NOT_A_GENE") as caught:
        import_full(files, _config(tmp_path / "home"))
    assert "were removed" in str(caught.value)
    assert not (tmp_path / "home" / "data" / "databases" / "neo4j").exists()


def test_missing_jars_name_the_build_command(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLVQ_NEO4J_CLASSPATH", raising=False)
    with pytest.raises(Neo4jAdminError, match=r"mvn -q -B package.*CELLVQ_NEO4J_CLASSPATH"):
        find_classpath(str(tmp_path / "classpath.txt"))
    monkeypatch.setenv("CELLVQ_NEO4J_CLASSPATH", str(tmp_path / "gone.jar"))
    with pytest.raises(Neo4jAdminError, match="missing jar"):
        find_classpath()


def test_missing_java_names_the_fix(tmp_path):
    files = write_bulk_import(pbmc_run_tables("bulk-nojava", n_cells=20), tmp_path / "csv")
    with pytest.raises(Neo4jAdminError, match="install Java 17"):
        import_full(files, AdminConfig(home=tmp_path / "home", java=str(tmp_path / "no-java")))
    assert not (tmp_path / "home").exists()


def test_phases_parser_reads_the_5_26_layout(tmp_path):
    """The 5.26 layout (``<Phase>, started <ts>`` ... ``Done in <d>``), with the heap warning glued to
    the first name as the tool prints it, and the older ``COMPLETED in`` lines."""
    log = tmp_path / "import.out"
    log.write_text(
        "WARNING: heap size 512.0MiB may be too small to complete this import. Suggested heap size is "
        "1.000GiBNodes, started 2026-12-04 13:08:18.297+0000\n[*Nodes:?? 7.969MiB]\n"
        ".......... .......... 100%\nDone in 943ms\n"
        "Relationship --> Relationship 1-10/10, started 2026-12-04 13:08:21.120+0000\n"
        "Done in 1m 2s 298ms\nIMPORT DONE in 5s 774ms. \nNode import COMPLETED in 2s 5ms\n")
    assert import_phases(log) == pytest.approx(
        {"Nodes": 0.943, "Relationship --> Relationship 1-10/10": 62.298, "Node import": 2.005})
