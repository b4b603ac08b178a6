"""The Neo4j store without a server: connection errors, credential hygiene, statement inventory.

The live behaviour is in ``test_graphdb_neo4j_live.py`` (runs when ``NEO4J_URI`` is set).
"""

from __future__ import annotations

import ast
import logging
import socket
from pathlib import Path

import pytest

import graphdb
from graphdb import StoreConnectionError, open_store, schema
from graphdb import queries as q
from graphdb.errors import redact_uri

PASSWORD = "s3cret-Pa55-do-not-leak"
STORE_SOURCES = [
    Path(graphdb.__file__).parent / "stores" / name
    for name in ("neo4j_store.py", "unwind_writer.py", "base.py")
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_gives_clear_message_without_credentials(caplog, monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEO4J_USER", "alice")
    port = _closed_port()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreConnectionError) as err:
        open_store(f"bolt://127.0.0.1:{port}", connection_timeout=3)
    msg = str(err.value)
    assert f"cannot reach Neo4j at bolt://127.0.0.1:{port}" in msg
    assert "server is running" in msg and "NEO4J_URI" in msg
    assert PASSWORD not in msg and PASSWORD not in repr(err.value.__cause__ or "")
    assert PASSWORD not in caplog.text


def test_credentials_in_uri_are_redacted(caplog):
    port = _closed_port()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreConnectionError) as err:
        open_store(f"neo4j://bob:{PASSWORD}@127.0.0.1:{port}", connection_timeout=3)
    assert PASSWORD not in str(err.value) and "bob" not in str(err.value)
    assert f"neo4j://127.0.0.1:{port}" in str(err.value)
    assert PASSWORD not in caplog.text
    assert redact_uri(f"bolt+s://u:{PASSWORD}@db.example.org:7687") == "bolt+s://db.example.org:7687"


def test_auth_error_message(monkeypatch):
    """A driver AuthError becomes graphdb.AuthError naming the fix, without the password."""
    import neo4j

    from graphdb.stores.neo4j_store import Neo4jStore

    store = Neo4jStore.__new__(Neo4jStore)
    store._neo4j = neo4j
    store._uri = "bolt://db.example.org:7687"
    err = store._translate(
        neo4j.exceptions.AuthError("The client is unauthorized due to authentication failure.")
    )
    assert isinstance(err, graphdb.AuthError)
    assert "refused the credentials" in str(err) and "NEO4J_PASSWORD" in str(err)
    # errors as the driver builds them from a server reply
    hydrate = neo4j.exceptions.Neo4jError._hydrate_neo4j
    access = hydrate(
        code="Neo.ClientError.Statement.AccessMode", message="Writing in read access mode not allowed."
    )
    assert isinstance(store._translate(access, user_query=True), graphdb.ReadOnlyViolation)
    syntax = hydrate(code="Neo.ClientError.Statement.SyntaxError", message="Invalid input 'RETRUN'")
    err = store._translate(syntax, user_query=True)
    assert isinstance(err, graphdb.QueryError) and "RETRUN" in str(err)


def test_not_a_neo4j_uri():
    from graphdb.stores.neo4j_store import Neo4jStore

    with pytest.raises(ValueError, match="is not a Neo4j URI"):
        Neo4jStore("http://localhost:7474")


def _cypher_literals(path: Path) -> list[str]:
    """String constants in a module that look like Cypher statements."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                docstrings.add(doc)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value not in docstrings:
            text = node.value.strip()
            head = text.split(" ", 1)[0]  # statements are written with upper-case clauses
            if " " in text and head in {
                "MATCH",
                "MERGE",
                "CREATE",
                "UNWIND",
                "RETURN",
                "CALL",
                "OPTIONAL",
                "WITH",
                "DROP",
            }:
                found.append(node.value)
    return found


def test_neo4j_store_sends_only_statements_from_the_query_module():
    for path in STORE_SOURCES:
        assert _cypher_literals(path) == [], f"{path.name} holds Cypher text; move it to graphdb/queries.py"
    # and the module's inventory is complete: every named constant is in NEO4J_STATEMENTS
    inventory = set(q.NEO4J_STATEMENTS.values())
    for name in dir(q):
        value = getattr(q, name)
        if (
            hasattr(schema, name)
            or name.startswith(("LADYBUG", "_"))
            or name in ("COPY", "GENE_NETWORK_DEPTHS")
        ):
            continue  # schema names, the LadybugDB dialect, the COPY statements
        if name.isupper():
            values = value.values() if isinstance(value, dict) else [value]
            for v in values:
                if isinstance(v, str):
                    assert v in inventory, f"queries.{name} is missing from NEO4J_STATEMENTS"
