"""Smoke test of benchmarks/graphdb.py at a small size: every part runs and the report is whole.

The figures themselves are not asserted (speed targets live in the benchmark, not in tests);
what is asserted is that each store got the whole run and every named query was timed on both.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL = ["--cells", "1200", "--repeats", "2", "--unwind-cells", "300", "--import-repeats", "1",
         "--neo4j-batch-sizes", "1000,5000", "--neo4j-heap", "768m"]


def _bench():
    """benchmarks/graphdb.py, loaded from its file (its name would shadow the graphdb package)."""
    spec = importlib.util.spec_from_file_location("bench_graphdb", ROOT / "benchmarks" / "graphdb.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_ladybug_part_loads_the_whole_run_and_times_every_query(tmp_path):
    bench = _bench()
    results = bench.main([*SMALL, "--stores", "ladybug", "--out", str(tmp_path)])
    lady = results["ladybug"]
    assert lady["copy"]["rows"] == results["run"]["rows"] + 1  # + the ON_DATASET link
    assert set(lady["latency"]) == set(bench.named_queries(None, "r", tmp_path))
    assert all(v["p50_ms"] > 0 for v in lady["latency"].values())
    saved = json.loads((tmp_path / "graphdb.json").read_text())
    assert saved["summary"]["goals"]["ladybug_worst_query_p50_ms"]["goal"] == 50.0
    assert "| LadybugDB COPY (one transaction) |" in (tmp_path / "graphdb.md").read_text()


@pytest.mark.neo4j_live
def test_both_stores_side_by_side(tmp_path, neo4j_live):
    bench = _bench()
    results = bench.main([*SMALL, "--out", str(tmp_path)])
    rows = results["ladybug"]["copy"]["rows"]
    assert {b: v["rows"] for b, v in results["neo4j_online"]["batches"].items()} == {"1000": rows, "5000": rows}
    bulk = results["neo4j_bulk"]
    assert bulk["rows"] == rows and bulk["tool_s"] > 0
    assert set(bulk["latency"]) == set(results["ladybug"]["latency"])
    summary = results["summary"]
    assert set(summary["goals"]) == {"bulk_rows_per_s", "online_rows_per_s", "ladybug_worst_query_p50_ms",
                                     "neo4j_worst_query_p50_ms"}
    assert summary["ratios"]["bulk_over_best_online"] > 0
    md = (tmp_path / "graphdb.md").read_text()
    assert "| Neo4j online UNWIND, batch 5,000 |" in md and "neo4j-admin import" in md
