"""RunTables validation, graph rows and the read-only guard (no database needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from graphdb_fixtures import pbmc_run_tables

from graphdb import RELATIONSHIPS, ReadOnlyViolation, RunTables, SchemaError
from graphdb import queries as q
from graphdb.readonly import check_read_only, cypher_keywords
from graphdb.schema import NODES, REGULATES_EVIDENCE, graph_frames, int_columns, lint_schema, records


def minimal(**overrides) -> RunTables:
    base = dict(
        run={"runId": "r1", "parameters": {"k": 3}},
        dataset={"datasetId": "ds"},
        cells=[{"cellId": "c1", "nCounts": 10.0}, {"cellId": "c2", "nCounts": 20.0}],
        genes=[{"symbol": "LYZ", "ensemblId": "ENSG00000090382"}, {"symbol": "CD14"}],
        states=[{"stateId": "cellType:Mono", "kind": "cellType", "name": "Mono"}],
        cell_state=[
            {"cellId": "c1", "stateId": "cellType:Mono"},
            {"cellId": "c2", "stateId": "cellType:Mono"},
        ],
        markers=[
            {"stateId": "cellType:Mono", "symbol": "LYZ", "score": 3.0},
            {"stateId": "cellType:Mono", "symbol": "CD14", "score": 1.0},
        ],
    )
    base.update(overrides)
    return RunTables(**base)


def test_defaults_are_filled():
    t = minimal()
    assert t.run_id == "r1" and t.dataset_id == "ds"
    assert json.loads(t.run["parameters"]) == {"k": 3}
    assert t.run["createdAt"]  # now, ISO 8601
    assert list(t.markers["rank"]) == [1.0, 2.0]  # from score
    assert t.states["nCells"].tolist() == [2.0]  # counted from cell_state
    assert t.dataset["nCells"].tolist() == [2.0]
    assert t.cell_property_types == {"nCounts": "DOUBLE"}
    assert len(t.regulates) == 0
    assert list(t.regulates.columns) == ["source", "target", "weight", *(p.name for p in REGULATES_EVIDENCE)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"markers": [{"stateId": "cellType:Mono", "symbol": "LYZ"}]},
            r"table 'markers' is missing column\(s\) \['score'\]",
        ),
        (
            {"genes": [{"symbol": "LYZ", "ensembl": "x"}]},
            r"table 'genes' has unknown column\(s\) \['ensembl'\]",
        ),
        (
            {"markers": [{"stateId": "cellType:Mono", "symbol": "GAPDH", "score": 1.0}]},
            r"table 'markers': column 'symbol' refers to 1 value\(s\) missing from 'genes.symbol': 'GAPDH'",
        ),
        (
            {"states": [{"stateId": "x", "kind": "lineage"}]},
            r"column 'kind' has unknown value\(s\) \['lineage'\]",
        ),
        (
            {"markers": [{"stateId": "cellType:Mono", "symbol": "LYZ", "score": "high"}]},
            r"table 'markers': column 'score' must be numeric",
        ),
        (
            {"genes": [{"symbol": "LYZ"}, {"symbol": "LYZ"}]},
            r"table 'genes' has 2 rows with a duplicated key",
        ),
        ({"run": {"runId": "a:b"}}, r"run.runId 'a:b' is not a valid id"),
        ({"run": {"model": "x"}}, r"field 'runId' is missing"),
        ({"dataset": [{"datasetId": "a"}, {"datasetId": "b"}]}, r"exactly one row"),
        ({"cells": [{"cellId": "c1", "bad name": 1}]}, r"extra column 'bad name' cannot be a Cell property"),
        (
            {"markers": [{"stateId": "cellType:Mono", "symbol": "LYZ", "score": 1.0, "rank": 1.5}]},
            r"whole numbers",
        ),
        (
            {"cell_state": [{"cellId": None, "stateId": "cellType:Mono"}]},
            r"column 'cellId' has 1 missing value",
        ),
    ],
)
def test_bad_tables_name_table_and_column(override, message):
    with pytest.raises(SchemaError, match=message):
        minimal(**override)


def test_graph_frames_follow_the_schema():
    t = pbmc_run_tables("pbmc3k-r1", n_cells=100)
    nodes, rels = graph_frames(t)
    for label, frame in nodes.items():
        cols = list(frame.columns)
        assert cols[: len(NODES[label].properties)] == NODES[label].property_names
    for rtype, frame in rels.items():
        assert list(frame.columns) == ["startKey", "endKey", *RELATIONSHIPS[rtype].property_names]
        assert (frame["runId"] == t.run_id).all()
    assert nodes["CellState"]["uid"].str.startswith("pbmc3k-r1:").all()
    assert nodes["Cell"]["uid"].str.startswith("pbmc3k:").all()
    assert set(rels["MARKER_OF"]["endKey"]) <= set(nodes["CellState"]["uid"])
    assert set(rels["IN_STATE"]["startKey"]) <= set(nodes["Cell"]["uid"])
    assert nodes["Run"]["status"].iloc[0] == "writing"


def test_records_are_plain_python():
    frame = pd.DataFrame({"a": ["x", None], "n": [1.0, np.nan], "f": [0.5, np.nan]})
    rows = records(frame, ["n"])
    assert rows == [{"a": "x", "n": 1, "f": 0.5}, {"a": None, "n": None, "f": None}]
    assert type(rows[0]["n"]) is int and type(rows[0]["f"]) is float
    assert int_columns("MARKER_OF") == ["rank"]
    assert int_columns("Cell", {"nGenes": "INT64", "x": "DOUBLE"}) == ["nGenes"]


def test_every_statement_is_parameterised():
    """No statement text holds a value: every run/state/gene reference is a $parameter."""
    for name, stmt in q.NEO4J_STATEMENTS.items():
        assert "pbmc" not in stmt and "cellType:" not in stmt, name
        if "runId" in stmt and "MATCH" in stmt and "CONSTRAINT" not in stmt and "INDEX" not in stmt:
            assert "$runId" in stmt or "row.runId" in stmt or "runId AS" in stmt, name
    schema = lint_schema()
    assert "Gene" in schema["labels"] and "MARKER_OF" in schema["relationshipTypes"]
    assert "logFc" in schema["propertyKeys"]


def test_statement_templates_take_schema_names_only():
    """Labels, types and keys go into statement text through one checked helper; a value cannot."""
    assert q.fill_template("MATCH (n:<LABEL>) RETURN n.<KEY>", LABEL="Gene", KEY="symbol") == "MATCH (n:Gene) RETURN n.symbol"
    assert q.fill_template("[:<PATTERN>*1..<DEPTH>]", PATTERN="REGULATES|CO_EXPRESSED", DEPTH="3") == "[:REGULATES|CO_EXPRESSED*1..3]"
    for value in ("Gene) DETACH DELETE n //", "x'}", "CD4 T", ""):
        with pytest.raises(ValueError, match="not a schema name"):
            q.fill_template("MATCH (n:<LABEL>) RETURN n", LABEL=value)
    with pytest.raises(ValueError, match="unfilled placeholder"):
        q.fill_template("MATCH (n:<LABEL>)-[e:<TYPE>]->() RETURN n", LABEL="Gene")


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (n) SET n.x = 1",
        "create (n:Gene)",
        "MATCH (n) DETACH DELETE n",
        "MERGE (n:Gene {symbol: $s})",
        "MATCH (n) REMOVE n:Gene",
        "LOAD CSV FROM 'file:///x.csv' AS row RETURN row",
        "MATCH (n) FOREACH (x IN [1] | SET n.y = x)",
        "MATCH (n) CALL { WITH n SET n.a = 1 } IN TRANSACTIONS RETURN n",
        "RETURN 1; RETURN 2",
        "INSTALL json",
        "ATTACH 'other.lbug' AS o (dbtype lbug)",
        "BEGIN TRANSACTION",
        "",
    ],
)
def test_read_only_guard_refuses_writes(query):
    with pytest.raises(ReadOnlyViolation):
        check_read_only(query)


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (g:Gene {symbol: 'SET'}) RETURN g.merge AS merge",
        'MATCH (g:Gene) WHERE g.symbol = "CREATE" RETURN g',
        "MATCH (g:Gene) // DELETE everything\nRETURN g",
        "MATCH (g:Gene) /* SET */ RETURN g.symbol, $delete AS d",
        "MATCH (g:`Set`)-[:`DELETE`]->(h) RETURN {set: 1, remove: 2} AS m",
        "MATCH (g:Gene) WHERE g.symbol STARTS WITH 'CD' RETURN g.symbol;",
        "MATCH (a)-[r:REGULATES*1..2]-(b) RETURN count(*)",
        "CALL db.labels() YIELD label RETURN label",
        "RETURN 'it''s' AS s, 'a\\'b CREATE' AS t",
    ],
)
def test_read_only_guard_allows_reads(query):
    check_read_only(query)


def test_keywords_skip_literals_and_keys():
    words = cypher_keywords("MATCH (n {set: 'CREATE'}) RETURN n.delete, $merge AS remove")
    assert words == ["MATCH", "N", "RETURN", "N", "AS"]
