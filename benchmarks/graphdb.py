"""graphdb benchmark: load throughput on both stores, side by side, and named-query latency.

The run is the real PBMC 3k analysis of ``tests/graphdb_fixtures.py`` (states, markers, gene
networks, bridges, properties) with its cells resampled (with replacement, seeded) to
``--cells`` cells: every synthetic cell copies one real cell's table rows -- its states,
properties, top-k expressed genes and QC columns. At 100,000 cells and ``--top-k 8`` that is
~1.38 M rows (~1.28 M relationships).

Measured on that same run, in one process:

* **LadybugDB COPY** -- ``write_run`` (bulk COPY, one transaction), rows/s and wall time; and,
  as the in-process baseline, the ``UNWIND`` path (the Neo4j statements) on a ``--unwind-cells``
  subset, so the COPY/UNWIND ratio is honest.
* **Neo4j online** -- ``write_run`` (``UNWIND`` batches, one managed transaction each) at every
  ``--neo4j-batch-sizes`` size into a live Neo4j 5.26 (``NEO4J_URI``, else the project's test
  server from Maven Central, started here). Each size writes the run under its own run and
  dataset id, so every write creates all of its nodes and relationships.
* **Neo4j bulk import** -- ``write_bulk_import`` (CSV files) and ``neo4j-admin database import
  full`` (Neo4j's own tool from the same Maven jars, :mod:`graphdb.neo4j_admin`) into a fresh
  home, ``--import-repeats`` times (median); rows/s of the tool's import time and of the whole
  process (JVM start included).
* **Named-query latency** -- p50 / p95 over ``--repeats`` calls (after warm-up) of every named
  query, on the LadybugDB store and on the bulk-imported Neo4j database (the same run, the only
  one in each store).

Goals (issue 12): bulk import >= 1 M rows/s, online writes >= 50 k rows/s, every named query
p50 < 50 ms at 100 k cells on both stores. Writes ``benchmarks/results/graphdb.json`` and
``graphdb.md`` (``--out``).

    python benchmarks/graphdb.py                          # 100k cells, both stores
    python benchmarks/graphdb.py --cells 20000 --stores ladybug
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from graphdb_fixtures import pbmc_run_tables  # noqa: E402

from graphdb import RunTables, open_store, write_bulk_import  # noqa: E402
from graphdb.neo4j_admin import AdminConfig, import_full, import_phases  # noqa: E402

GOALS = {"bulk_rows_per_s": 1_000_000, "online_rows_per_s": 50_000, "query_p50_ms": 50.0}
#: Timed beside the named queries for reference, left out of the latency goal: the cell-level count
#: that the per-state aggregate (``CellState.nCells``) replaces.
REFERENCE_QUERIES = frozenset({"query(cells per state, cell scan)"})
#: Plan operators that read a whole label or type instead of seeking an index.
SCAN_OPERATORS = ("AllNodesScan", "NodeByLabelScan", "RelationshipTypeScan", "AllRelationshipsScan")


@dataclass
class BenchConfig:
    """What to run (the command-line flags)."""

    cells: int = 100_000
    top_k: int = 8
    repeats: int = 20
    seed: int = 0
    stores: tuple[str, ...] = ("ladybug", "neo4j")
    unwind_cells: int = 5_000
    unwind_batch: int = 10_000
    neo4j_batch_sizes: tuple[int, ...] = (1_000, 5_000, 20_000)
    import_repeats: int = 3
    import_threads: int | None = None
    neo4j_heap: str = "2g"
    rewrite: bool = False
    out: Path = ROOT / "benchmarks" / "results"
    db_dir: Path | None = None


# ---- the run ---------------------------------------------------------------------------------


def scaled_tables(n_cells: int, top_k: int, seed: int, run_id: str = "bench-pbmc",
                  dataset_id: str | None = None) -> RunTables:
    """PBMC 3k resampled to ``n_cells`` cells (see the module docstring)."""
    base = pbmc_run_tables(run_id, expresses_top_k=top_k)
    rng = np.random.default_rng(seed)
    src_ids = base.cells["cellId"].to_numpy()
    pick = rng.integers(0, len(src_ids), n_cells)
    new = pd.DataFrame({"cellId": [f"cell{i:07d}" for i in range(n_cells)], "src": src_ids[pick]})
    cells = new.merge(base.cells.rename(columns={"cellId": "src"}), on="src", how="left").drop(columns="src")

    def expand(table: pd.DataFrame) -> pd.DataFrame:
        out = new.merge(table.rename(columns={"cellId": "src"}), on="src", how="inner")
        return out.drop(columns="src")

    dataset = base.dataset.copy()
    dataset["datasetId"] = dataset_id or f"pbmc3k-x{n_cells}"
    dataset["nCells"] = n_cells
    return RunTables(
        run=base.run | {"parameters": json.dumps({"cells": n_cells, "topK": top_k, "seed": seed})},
        dataset=dataset, cells=cells, genes=base.genes, states=base.states.drop(columns=["nCells"]),
        properties=base.properties, cell_state=expand(base.cell_state), cell_property=expand(base.cell_property),
        markers=base.markers, co_expressed=base.co_expressed, regulates=base.regulates,
        subtype_of=base.subtype_of, bridges=base.bridges, associated_with=base.associated_with,
        expresses=expand(base.expresses),
    )


def relabelled(tables: RunTables, run_id: str, dataset_id: str) -> RunTables:
    """The same run under another run id and dataset id (its own nodes in a shared store)."""
    dataset = tables.dataset.copy()
    dataset["datasetId"] = dataset_id
    fields = {name: getattr(tables, name) for name in RunTables.TABLE_NAMES}
    return RunTables(run=tables.run | {"runId": run_id}, **(fields | {"dataset": dataset}))


def n_edges(t: RunTables) -> int:
    return sum(len(getattr(t, n)) for n in (
        "cell_state", "cell_property", "markers", "co_expressed", "regulates", "subtype_of", "bridges",
        "associated_with", "expresses")) + 1


# ---- latency ---------------------------------------------------------------------------------


def latency(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    arr = np.array(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "min_ms": float(arr.min()), "repeats": repeats}


def named_queries(store, run_id: str, tmp: Path) -> dict:
    """Every named query (and one user query) on ``run_id``: name -> zero-argument call."""
    return {
        "markers('B', top=20)": lambda: store.markers("B", top=20, run_id=run_id),
        "states_for_gene('LYZ')": lambda: store.states_for_gene("LYZ", run_id=run_id),
        "subtype_graph('T cell')": lambda: store.subtype_graph("T cell", run_id=run_id),
        "gene_network('LYZ', depth=1)": lambda: store.gene_network("LYZ", depth=1, run_id=run_id),
        "gene_network('LYZ', depth=2, kinds=REGULATES)": lambda: store.gene_network(
            "LYZ", depth=2, kinds=("REGULATES",), run_id=run_id),
        "state_properties('Monocyte')": lambda: store.state_properties("Monocyte", run_id=run_id),
        "state_properties('T cell')": lambda: store.state_properties("T cell", run_id=run_id),
        "compare_states('Naive CD4 T', 'Memory CD4 T')": lambda: store.compare_states(
            "Naive CD4 T", "Memory CD4 T", run_id=run_id),
        "export_grn(graphml)": lambda: store.export_grn(tmp / f"grn-{store.backend}.graphml", run_id=run_id),
        "query(cells per state, aggregate)": lambda: store.query(
            "MATCH (s:CellState {runId: $runId}) WHERE s.nCells > 0 RETURN s.stateId AS state, s.nCells AS n",
            {"runId": run_id}),
        "query(cells per state, cell scan)": lambda: store.query(
            "MATCH (c:Cell)-[:IN_STATE {runId: $runId}]->(s:CellState) RETURN s.stateId AS state, count(c) AS n",
            {"runId": run_id}),
    }


def query_latency(store, run_id: str, tmp: Path, repeats: int, desc: str) -> dict:
    calls = named_queries(store, run_id, tmp)
    return {name: latency(fn, repeats) for name, fn in tqdm(calls.items(), desc=desc, unit="query")}


# ---- LadybugDB -------------------------------------------------------------------------------


def bench_ladybug(tables: RunTables, cfg: BenchConfig, tmp: Path) -> dict:
    out: dict = {}
    with open_store(tmp / f"bench-{uuid.uuid4().hex[:6]}.lbug") as store:
        report = store.write_run(tables, progress=True)
        out["copy"] = {"seconds": report.seconds, "rows": report.total_rows, "rows_per_s": report.rows_per_second}
        print(f"  LadybugDB COPY: {report.seconds:.1f} s, {report.rows_per_second:,.0f} rows/s", flush=True)
        if cfg.rewrite:
            before = store.counts()
            again = store.write_run(tables, progress=True)
            assert store.counts() == before, "re-write changed the counts"
            out["rewrite"] = {"seconds": again.seconds, "rows_per_s": again.rows_per_second}
        out["latency"] = query_latency(store, tables.run_id, tmp, cfg.repeats, "LadybugDB query latency")
    small = scaled_tables(cfg.unwind_cells, cfg.top_k, cfg.seed, run_id="bench-unwind")
    with open_store(tmp / f"unwind-{uuid.uuid4().hex[:6]}.lbug") as a, open_store(
            tmp / f"copy-{uuid.uuid4().hex[:6]}.lbug") as b:
        unwind = a.write_run(small, method="unwind", batch_size=cfg.unwind_batch, progress=True)
        copy = b.write_run(small)
        assert a.counts() == b.counts(), "UNWIND and COPY wrote different counts"
    out["subset"] = {"cells": cfg.unwind_cells, "rows": copy.total_rows, "copy_rows_per_s": copy.rows_per_second,
                     "unwind_rows_per_s": unwind.rows_per_second,
                     "copy_over_unwind": copy.rows_per_second / unwind.rows_per_second}
    return out


# ---- Neo4j -----------------------------------------------------------------------------------


@contextmanager
def neo4j_server(cfg: BenchConfig, home: Path | None = None):
    """``(uri, user, password)`` of a live Neo4j: ``NEO4J_URI`` (online writes only) or a test server."""
    if home is None and os.environ.get("NEO4J_URI"):
        yield os.environ["NEO4J_URI"], os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD"), None
        return
    from neo4j_server import Neo4jTestServer, ServerConfig

    server = Neo4jTestServer(ServerConfig(home=home, heap=cfg.neo4j_heap))
    server.start()
    try:
        yield server.uri, server.user, server.password, server.startup_seconds
    finally:
        server.stop()


def bench_online(tables: RunTables, cfg: BenchConfig) -> dict:
    """Online UNWIND writes at each batch size; each under its own run and dataset id."""
    out: dict = {"batches": {}}
    with neo4j_server(cfg) as (uri, user, password, startup):
        out["server_startup_s"] = startup
        with open_store(uri, user=user, password=password) as store:
            for bs in cfg.neo4j_batch_sizes:
                tag = f"bench-b{bs}-{uuid.uuid4().hex[:6]}"
                run = relabelled(tables, tag, tag)
                report = store.write_run(run, batch_size=bs, progress=True)
                counts = store.counts(tag)
                assert counts["EXPRESSES"] == len(tables.expresses), counts
                out["batches"][str(bs)] = {"seconds": report.seconds, "rows": report.total_rows,
                                           "rows_per_s": report.rows_per_second}
                print(f"  Neo4j online, batch {bs}: {report.seconds:.1f} s, {report.rows_per_second:,.0f} rows/s",
                      flush=True)
                if os.environ.get("NEO4J_URI"):
                    store.delete_run(tag)
    return out


def bench_bulk(tables: RunTables, cfg: BenchConfig, tmp: Path) -> dict:
    """CSV files, neo4j-admin import (median of repeats), then latency on the imported database."""
    t0 = time.perf_counter()
    files = write_bulk_import(tables, tmp / "bulk-csv")
    out: dict = {"csv_write_s": time.perf_counter() - t0, "imports": []}
    home = tmp / "bulk-home"
    for i in range(cfg.import_repeats):
        result = import_full(files, AdminConfig(home=home, heap=cfg.neo4j_heap, max_off_heap_memory="2g",
                                                threads=cfg.import_threads))
        out["imports"].append({"tool_s": result.tool_seconds, "wall_s": result.wall_seconds, "rows": result.rows,
                               "nodes": result.nodes, "relationships": result.relationships,
                               "phases_s": import_phases(result.log_file)})
        print(f"  neo4j-admin import {i + 1}/{cfg.import_repeats}: {result.tool_seconds:.1f} s "
              f"({result.rows_per_second:,.0f} rows/s), process {result.wall_seconds:.1f} s", flush=True)
    tool = float(np.median([r["tool_s"] for r in out["imports"]]))
    wall = float(np.median([r["wall_s"] for r in out["imports"]]))
    rows = out["imports"][0]["rows"]
    out |= {"rows": rows, "tool_s": tool, "wall_s": wall, "rows_per_s": rows / tool, "rows_per_s_wall": rows / wall}
    with neo4j_server(cfg, home=home) as (uri, user, password, startup):
        out["server_startup_s"] = startup
        with open_store(uri, user=user, password=password) as store:
            _await_indexes(uri, user, password)
            counts = store.counts()
            assert counts == {k: files.rows.get(k, 0) for k in counts}, counts
            out["latency"] = query_latency(store, tables.run_id, tmp, cfg.repeats, "Neo4j query latency")
            out["plans"] = neo4j_plans(store, (uri, user, password), tables.run_id, tmp)
    return out


def neo4j_plans(store, auth: tuple, run_id: str, tmp: Path) -> dict:
    """``PROFILE`` of every statement each named query sends: db hits and any whole-label/type scan."""
    import neo4j

    sent: list[tuple[str, dict]] = []
    read, read_user = store._read, store._read_user
    store._read = lambda st, p=None: (sent.append((st, dict(p or {}))), read(st, p))[1]
    store._read_user = lambda st, p: (sent.append((st, dict(p))), read_user(st, p))[1]
    plans: dict = {}
    uri, user, password = auth
    try:
        with neo4j.GraphDatabase.driver(uri, auth=(user, password)) as driver, driver.session() as session:
            for name, call in named_queries(store, run_id, tmp).items():
                sent.clear()
                call()
                steps = []
                for statement, params in sent:
                    result = session.run("PROFILE " + statement, params)
                    list(result)  # PROFILE's counts exist once the rows have been read
                    profile = result.consume().profile
                    ops = list(_operators(profile))
                    steps.append({"statement": " ".join(statement.split())[:160],
                                  "db_hits": sum(o["dbHits"] for o in ops),
                                  "scans": sorted({o["operatorType"].split("@")[0] for o in ops
                                                   if any(s in o["operatorType"] for s in SCAN_OPERATORS)})})
                plans[name] = {"statements": len(steps), "db_hits": sum(s["db_hits"] for s in steps),
                               "scans": sorted({x for s in steps for x in s["scans"]}), "steps": steps}
    finally:
        store._read, store._read_user = read, read_user
    return plans


def _operators(plan: dict):
    yield {"operatorType": plan.get("operatorType", ""), "dbHits": int(plan.get("dbHits", 0) or 0)}
    for child in plan.get("children", []):
        yield from _operators(child)


def _await_indexes(uri: str, user: str, password: str | None) -> None:
    import neo4j

    with neo4j.GraphDatabase.driver(uri, auth=(user, password)) as driver, driver.session() as session:
        session.run("CALL db.awaitIndexes(600)").consume()


# ---- summary and report ----------------------------------------------------------------------


def summarise(r: dict) -> dict:
    """Ratios against the in-process baselines and the issue's goals."""
    s: dict = {"ratios": {}, "goals": {}}
    lady, online, bulk = r.get("ladybug"), r.get("neo4j_online"), r.get("neo4j_bulk")
    best_online = max((v["rows_per_s"] for v in online["batches"].values()), default=None) if online else None
    if bulk and best_online:
        s["ratios"]["bulk_over_best_online"] = bulk["rows_per_s"] / best_online
    if lady and best_online:
        s["ratios"]["ladybug_copy_over_best_online"] = lady["copy"]["rows_per_s"] / best_online
    if lady and bulk:
        s["ratios"]["bulk_over_ladybug_copy"] = bulk["rows_per_s"] / lady["copy"]["rows_per_s"]
        s["ratios"]["neo4j_p50_over_ladybug_p50"] = {
            q: bulk["latency"][q]["p50_ms"] / lady["latency"][q]["p50_ms"] for q in lady["latency"]}
    if bulk:
        s["goals"]["bulk_rows_per_s"] = _goal(bulk["rows_per_s"], GOALS["bulk_rows_per_s"], higher=True)
    if best_online:
        s["goals"]["online_rows_per_s"] = _goal(best_online, GOALS["online_rows_per_s"], higher=True)
    for store, part in (("ladybug", lady), ("neo4j", bulk)):
        if part:
            goal_queries = {k: v for k, v in part["latency"].items() if k not in REFERENCE_QUERIES}
            worst = max(goal_queries.items(), key=lambda kv: kv[1]["p50_ms"])
            s["goals"][f"{store}_worst_query_p50_ms"] = _goal(worst[1]["p50_ms"], GOALS["query_p50_ms"], higher=False)
            s["goals"][f"{store}_worst_query_p50_ms"]["query"] = worst[0]
    return s


def _goal(value: float, target: float, *, higher: bool) -> dict:
    return {"value": value, "goal": target, "met": bool(value >= target if higher else value < target)}


def markdown(r: dict) -> str:
    m, run = r["machine"], r["run"]
    lines = [
        "# graphdb benchmark", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, load average {m['load_average_at_start'][0]:.1f} at start and "
        f"{r['load_average_at_end'][0]:.1f} at end (the CPUs were shared with other jobs: absolute figures are "
        f"pessimistic; ratios are from one process); Python {m['python']}, ladybug {m['ladybug']}, "
        f"Neo4j {m['neo4j']}.", "",
        f"Run: PBMC 3k resampled to {run['cells']:,} cells -- {run['rows']:,} table rows, "
        f"{run['edges']:,} relationships (EXPRESSES {run['expresses']:,}, IN_STATE {run['cell_state']:,}, "
        f"HAS_PROPERTY {run['cell_property']:,}). Built in {r['build_s']:.0f} s.", "",
        *_load_table(r), *_goal_lines(r), *_latency_table(r), *_plan_lines(r),
    ]
    return "\n".join(lines) + "\n"


def _load_table(r: dict) -> list[str]:
    rows = ["## Loading the same run", "", "| write | seconds | rows/s |", "|---|---:|---:|"]
    lady, online, bulk = r.get("ladybug"), r.get("neo4j_online"), r.get("neo4j_bulk")
    if lady:
        rows.append(f"| LadybugDB COPY (one transaction) | {lady['copy']['seconds']:.1f} | "
                    f"{lady['copy']['rows_per_s']:,.0f} |")
        if "rewrite" in lady:
            rows.append(f"| LadybugDB re-write (delete + COPY) | {lady['rewrite']['seconds']:.1f} | "
                        f"{lady['rewrite']['rows_per_s']:,.0f} |")
    for bs, v in (online or {}).get("batches", {}).items():
        rows.append(f"| Neo4j online UNWIND, batch {int(bs):,} | {v['seconds']:.1f} | {v['rows_per_s']:,.0f} |")
    if bulk:
        rows.append(f"| Neo4j bulk: write_bulk_import CSV files | {bulk['csv_write_s']:.1f} | "
                    f"{bulk['rows'] / bulk['csv_write_s']:,.0f} |")
        rows.append(f"| Neo4j bulk: neo4j-admin import (tool's time, median of {len(bulk['imports'])}) | "
                    f"{bulk['tool_s']:.1f} | {bulk['rows_per_s']:,.0f} |")
        rows.append(f"| Neo4j bulk: neo4j-admin process incl. JVM start | {bulk['wall_s']:.1f} | "
                    f"{bulk['rows_per_s_wall']:,.0f} |")
    rows.append("")
    if bulk:
        rows += _bulk_phase_lines(bulk)
    if lady:
        sub = lady["subset"]
        rows.append(f"In-process baseline: on a {sub['cells']:,}-cell subset LadybugDB COPY loads "
                    f"{sub['copy_rows_per_s']:,.0f} rows/s, the UNWIND path (Neo4j's statements) "
                    f"{sub['unwind_rows_per_s']:,.0f} rows/s: COPY/UNWIND = {sub['copy_over_unwind']:.1f}x.")
    ratios = r["summary"]["ratios"]
    names = {"bulk_over_best_online": "bulk import / best online batch",
             "ladybug_copy_over_best_online": "LadybugDB COPY / best online batch",
             "bulk_over_ladybug_copy": "bulk import / LadybugDB COPY"}
    if any(k in ratios for k in names):
        rows.append("Ratios (same run, same process): " + "; ".join(
            f"{label} {ratios[k]:.1f}x" for k, label in names.items() if k in ratios) + ".")
    return [*rows, ""]


def _bulk_phase_lines(bulk: dict) -> list[str]:
    """Where neo4j-admin's time goes: outside its own clock (JVM start, exit), and its phases."""
    first = bulk["imports"][0]
    phases = first.get("phases_s") or {}
    out = [f"neo4j-admin, outside the tool's own clock (JVM start, class loading, exit): "
           f"{bulk['wall_s'] - bulk['tool_s']:.1f} s of {bulk['wall_s']:.1f} s."]
    if phases:
        out.append("Its phases (first import, tool's own figures): " + "; ".join(
            f"{name} {sec:.1f} s" for name, sec in phases.items()) + ".")
        importing = sum(sec for name, sec in phases.items()
                        if name.lower() in ("nodes", "relationships", "node import", "relationship import"))
        if importing > 0:
            out.append(f"Rows per second of the node + relationship import phases alone: "
                       f"{bulk['rows'] / importing:,.0f} (not the goal's figure; the rest is linking, "
                       f"counting and flushing, fixed costs that do not shrink with the input).")
    return [*out, ""]


def _plan_lines(r: dict) -> list[str]:
    plans = (r.get("neo4j_bulk") or {}).get("plans")
    if not plans:
        return []
    out = ["## Neo4j plans (PROFILE of every statement each named query sends)", "",
           "| query | statements | db hits | whole-label / type scans |", "|---|---:|---:|---|"]
    for name, p in plans.items():
        out.append(f"| `{name}` | {p['statements']} | {p['db_hits']:,} | {', '.join(p['scans']) or 'none'} |")
    return [*out, ""]


def _goal_lines(r: dict) -> list[str]:
    goals = r["summary"]["goals"]
    if not goals:
        return []
    out = ["## Goals (issue 12)", "", "| goal | measured | met |", "|---|---:|:---:|"]
    labels = {"bulk_rows_per_s": "bulk import >= 1,000,000 rows/s",
              "online_rows_per_s": "online writes >= 50,000 rows/s (best batch)",
              "ladybug_worst_query_p50_ms": "every query p50 < 50 ms, LadybugDB",
              "neo4j_worst_query_p50_ms": "every query p50 < 50 ms, Neo4j"}
    for key, label in labels.items():
        if key in goals:
            g = goals[key]
            value = f"{g['value']:,.0f} rows/s" if "rows" in key else f"{g['value']:.1f} ms (`{g['query']}`)"
            out.append(f"| {label} | {value} | {'yes' if g['met'] else 'no'} |")
    return [*out, ""]


def _latency_table(r: dict) -> list[str]:
    lady, bulk = (r.get("ladybug") or {}).get("latency"), (r.get("neo4j_bulk") or {}).get("latency")
    names = list(lady or bulk or {})
    if not names:
        return []
    out = [f"## Named-query latency ({r['run']['cells']:,} cells; ms over {r['config']['repeats']} calls)", "",
           "| query | LadybugDB p50 | p95 | Neo4j p50 | p95 | Neo4j / LadybugDB p50 |", "|---|---:|---:|---:|---:|---:|"]
    for q in names:
        a, b = (lady or {}).get(q), (bulk or {}).get(q)
        ratio = f"{b['p50_ms'] / a['p50_ms']:.1f}x" if a and b else ""
        out.append(f"| `{q}` | {_ms(a, 'p50_ms')} | {_ms(a, 'p95_ms')} | {_ms(b, 'p50_ms')} | {_ms(b, 'p95_ms')} | {ratio} |")
    out += ["", "Neo4j latency is measured on the bulk-imported database (the same run as LadybugDB's, the only "
            "one in the store), after its indexes are online, through Bolt on loopback. "
            f"{', '.join(f'`{q}`' for q in sorted(REFERENCE_QUERIES))}: timed for reference (the count the "
            "per-state aggregate replaces), left out of the goal."]
    return [*out, ""]


def _ms(v: dict | None, key: str) -> str:
    return f"{v[key]:.1f}" if v else "-"


# ---- main ------------------------------------------------------------------------------------


def run_benchmark(cfg: BenchConfig) -> dict:
    import ladybug

    results: dict = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": list(os.getloadavg()), "ladybug": getattr(ladybug, "__version__", "?"),
                    "neo4j": "5.26.30 (tests/neo4j_server)"},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
    }
    print(f"building a {cfg.cells:,}-cell run from PBMC 3k ...", flush=True)
    t0 = time.perf_counter()
    tables = scaled_tables(cfg.cells, cfg.top_k, cfg.seed)
    results["build_s"] = time.perf_counter() - t0
    results["run"] = {"cells": cfg.cells, "rows": tables.n_rows(), "edges": n_edges(tables), **tables.summary()}
    print(f"  {tables.n_rows():,} rows, {n_edges(tables):,} relationships", flush=True)
    scratch = None if cfg.db_dir else tempfile.TemporaryDirectory(prefix="graphdb-bench-")
    tmp = Path(cfg.db_dir) if cfg.db_dir else Path(scratch.name)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if "ladybug" in cfg.stores:
            results["ladybug"] = bench_ladybug(tables, cfg, tmp)
        if "neo4j" in cfg.stores:
            results["neo4j_online"] = bench_online(tables, cfg)
            results["neo4j_bulk"] = bench_bulk(tables, cfg, tmp)
    finally:
        if scratch is not None:
            scratch.cleanup()
    results["load_average_at_end"] = list(os.getloadavg())
    results["summary"] = summarise(results)
    return results


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    d = BenchConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=d.cells, help="cells in the scaled run (default 100000)")
    ap.add_argument("--top-k", type=int, default=d.top_k, help="EXPRESSES edges per cell (default 8)")
    ap.add_argument("--repeats", type=int, default=d.repeats, help="calls per named query (default 20)")
    ap.add_argument("--stores", default=",".join(d.stores), help="ladybug,neo4j (default both)")
    ap.add_argument("--unwind-cells", type=int, default=d.unwind_cells, help="cells in the LadybugDB UNWIND baseline")
    ap.add_argument("--unwind-batch", type=int, default=d.unwind_batch, help="UNWIND batch size on LadybugDB")
    ap.add_argument("--neo4j-batch-sizes", default=",".join(map(str, d.neo4j_batch_sizes)))
    ap.add_argument("--import-repeats", type=int, default=d.import_repeats, help="neo4j-admin imports (median)")
    ap.add_argument("--import-threads", type=int, default=None, help="neo4j-admin --threads (default: cores)")
    ap.add_argument("--neo4j-heap", default=d.neo4j_heap, help="JVM -Xmx of the Neo4j server and importer")
    ap.add_argument("--rewrite", action="store_true", help="also time a LadybugDB re-write (delete + COPY)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--out", type=Path, default=d.out)
    ap.add_argument("--db-dir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    a = ap.parse_args(argv)
    stores = tuple(s.strip() for s in a.stores.split(",") if s.strip())
    unknown = set(stores) - {"ladybug", "neo4j"}
    if unknown:
        ap.error(f"--stores takes ladybug and/or neo4j, not {sorted(unknown)}")
    return BenchConfig(cells=a.cells, top_k=a.top_k, repeats=a.repeats, seed=a.seed, stores=stores,
                       unwind_cells=a.unwind_cells, unwind_batch=a.unwind_batch,
                       neo4j_batch_sizes=tuple(int(x) for x in a.neo4j_batch_sizes.split(",")),
                       import_repeats=a.import_repeats, import_threads=a.import_threads, neo4j_heap=a.neo4j_heap, rewrite=a.rewrite, out=a.out,
                       db_dir=a.db_dir)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(argv)
    results = run_benchmark(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "graphdb.json").write_text(json.dumps(results, indent=2))
    (cfg.out / "graphdb.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
