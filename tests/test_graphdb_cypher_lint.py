"""Every statement the Neo4j store sends, checked by Neo4j's own Cypher linter.

The linter is the npm package ``@neo4j-cypher/language-support`` (pinned in
``tests/cypher_lint/package.json``; ``make test`` installs it). ``lint.mjs`` runs its
``lintCypherQuery`` -- Neo4j's grammar plus semantic analysis -- over the statements, with the
graphdb schema (labels, relationship types, property keys), so a misspelt label or property is
reported too. Any diagnostic fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from graphdb import queries as q
from graphdb.schema import lint_schema

LINT_DIR = Path(__file__).resolve().parent / "cypher_lint"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="Node.js ('node') is not installed, so Neo4j's Cypher linter cannot run"
)

# Extra property keys the statements use that are not graph properties (map keys of $rows).
_ROW_KEYS = ("startKey", "endKey", "props")


def lint(statements: dict[str, str], schema: dict | None = None) -> dict[str, list[dict]]:
    """Run lint.mjs; returns diagnostics per statement name."""
    modules = LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support"
    if not modules.is_dir():
        pytest.fail(
            f"Neo4j's Cypher linter is not installed in {LINT_DIR / 'node_modules'}. Run `make test` "
            f"(it installs it), or `cd {LINT_DIR.relative_to(LINT_DIR.parents[1])} && npm install`.",
            pytrace=False,
        )
    payload = {
        "statements": [{"name": k, "query": v} for k, v in statements.items()],
        "schema": schema if schema is not None else lint_schema(_ROW_KEYS),
    }
    proc = subprocess.run(
        [NODE, str(LINT_DIR / "lint.mjs")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=LINT_DIR,
    )
    assert proc.returncode == 0, f"lint.mjs failed: {proc.stderr[-3000:]}"
    return {item["name"]: item["diagnostics"] for item in json.loads(proc.stdout)}


# Statements that must fail, linted in the same run to prove the linter can fail.
PROBES = {
    "probe:broken": "MATCH (g:Gene {symbol: $symbol} RETURN g",
    "probe:undefined": "MATCH (g:Gene) RETURN h.symbol",
    "probe:misspelt": "MATCH (g:Gen)-[:MARKER]->(s:CellState) RETURN g.symbl",
    "probe:ladybug_ddl": q.LADYBUG_DDL["Gene"],
}


@pytest.fixture(scope="module")
def report() -> dict[str, list[dict]]:
    """One linter run (Node start-up is slow) over every Neo4j statement plus the probes."""
    return lint({**q.NEO4J_STATEMENTS, **PROBES})


def test_every_neo4j_statement_passes_neo4j_cypher_linter(report):
    statements = q.NEO4J_STATEMENTS
    assert len(statements) > 100
    assert set(statements) <= set(report)
    problems = {
        name: [f"{d['message']} (at {statements[name][d['start'] : d['end']]!r})" for d in diags]
        for name, diags in report.items()
        if diags and name in statements
    }
    assert not problems, json.dumps(problems, indent=1)


def test_linter_catches_broken_and_misspelt_statements(report):
    assert any(d["severity"] == 1 for d in report["probe:broken"])
    assert any("not defined" in d["message"] for d in report["probe:undefined"])
    misspelt = " ".join(d["message"] for d in report["probe:misspelt"])
    assert "Gen" in misspelt and "MARKER" in misspelt and "symbl" in misspelt
    assert report["probe:ladybug_ddl"], "LadybugDB DDL is not Neo4j Cypher; the linter must say so"
    assert report["MARKERS"] == []
