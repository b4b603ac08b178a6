"""graphdb benchmark: load throughput, named-query latency, Neo4j batch-size sweep.

The run is the real PBMC 3k analysis of ``tests/graphdb_fixtures.py`` (states, markers, gene
networks, bridges, properties) with its cells resampled (with replacement, seeded) to
``--cells`` cells: every synthetic cell copies one real cell's states, properties and top-k
expressed genes. At 100,000 cells and ``--top-k 8`` that is ~1.3 M relationships
(IN_STATE + HAS_PROPERTY + EXPRESSES + the gene/state layers).

Measured:

* LadybugDB load: ``write_run`` (bulk COPY, one transaction) of the whole run, rows/s; a
  re-write of the same run (delete + load); and, as the baseline in the same process, the
  ``UNWIND`` write path (the Neo4j statements) on a subset, so the COPY/UNWIND ratio is honest.
* Named-query latency on the loaded store: p50 / p95 over ``--repeats`` calls after warm-up.
* Neo4j (only when ``NEO4J_URI`` is set): online write throughput for several batch sizes.

Writes ``benchmarks/results/graphdb.json`` and ``benchmarks/results/graphdb.md``.

    python benchmarks/graphdb.py                     # 100k cells
    python benchmarks/graphdb.py --cells 20000       # quicker
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
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from graphdb_fixtures import pbmc_run_tables  # noqa: E402

from graphdb import RunTables, open_store  # noqa: E402


def scaled_tables(n_cells: int, top_k: int, seed: int, run_id: str = "bench-pbmc") -> RunTables:
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
    dataset["datasetId"] = f"pbmc3k-x{n_cells}"
    dataset["nCells"] = n_cells
    states = base.states.drop(columns=["nCells"])
    return RunTables(
        run=base.run | {"parameters": json.dumps({"cells": n_cells, "topK": top_k, "seed": seed})},
        dataset=dataset,
        cells=cells,
        genes=base.genes,
        states=states,
        properties=base.properties,
        cell_state=expand(base.cell_state),
        cell_property=expand(base.cell_property),
        markers=base.markers,
        co_expressed=base.co_expressed,
        regulates=base.regulates,
        subtype_of=base.subtype_of,
        bridges=base.bridges,
        associated_with=base.associated_with,
        expresses=expand(base.expresses),
    )


def n_edges(t: RunTables) -> int:
    return sum(len(getattr(t, n)) for n in (
        "cell_state", "cell_property", "markers", "co_expressed", "regulates", "subtype_of", "bridges",
        "associated_with", "expresses")) + 1


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=100_000, help="cells in the scaled run (default 100000)")
    ap.add_argument("--top-k", type=int, default=8, help="EXPRESSES edges per cell (default 8)")
    ap.add_argument("--repeats", type=int, default=20, help="calls per named query (default 20)")
    ap.add_argument("--unwind-cells", type=int, default=5_000, help="cells in the UNWIND baseline run")
    ap.add_argument("--unwind-batch", type=int, default=10_000, help="UNWIND batch size on LadybugDB")
    ap.add_argument("--neo4j-cells", type=int, default=20_000, help="cells in the Neo4j sweep run")
    ap.add_argument("--neo4j-batch-sizes", default="1000,5000,10000,20000,50000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--db-dir", type=Path, default=None, help="where the database goes (default: a temp dir)")
    args = ap.parse_args()

    import ladybug

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "ladybug": getattr(ladybug, "__version__", "?"),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"building a {args.cells:,}-cell run from PBMC 3k ...", flush=True)
    t0 = time.perf_counter()
    tables = scaled_tables(args.cells, args.top_k, args.seed)
    small = scaled_tables(args.unwind_cells, args.top_k, args.seed, run_id="bench-unwind")
    results["build_s"] = time.perf_counter() - t0
    results["run"] = {"cells": args.cells, "rows": tables.n_rows(), "edges": n_edges(tables), **tables.summary()}
    print(f"  {tables.n_rows():,} rows, {n_edges(tables):,} relationships", flush=True)

    scratch = None if args.db_dir else tempfile.TemporaryDirectory(prefix="graphdb-bench-")
    tmp = Path(args.db_dir) if args.db_dir else Path(scratch.name)
    tmp.mkdir(parents=True, exist_ok=True)
    db_path = tmp / f"bench-{uuid.uuid4().hex[:6]}.lbug"
    with open_store(db_path) as store:
        report = store.write_run(tables, progress=True)
        results["ladybug_load"] = {
            "seconds": report.seconds, "rows": report.total_rows, "rows_per_s": report.rows_per_second,
            "edges_per_s": n_edges(tables) / report.seconds,
        }
        print(f"  COPY load: {report.seconds:.1f} s, {report.rows_per_second:,.0f} rows/s", flush=True)
        before = store.counts()
        rewrite = store.write_run(tables, progress=True)
        assert store.counts() == before, "re-write changed the counts"
        results["ladybug_rewrite"] = {"seconds": rewrite.seconds, "rows_per_s": rewrite.rows_per_second}
        print(f"  re-write (delete + COPY): {rewrite.seconds:.1f} s", flush=True)

        queries = {
            "markers('B', top=20)": lambda: store.markers("B", top=20),
            "states_for_gene('LYZ')": lambda: store.states_for_gene("LYZ"),
            "subtype_graph('T cell')": lambda: store.subtype_graph("T cell"),
            "gene_network('LYZ', depth=1)": lambda: store.gene_network("LYZ", depth=1),
            "gene_network('LYZ', depth=2, kinds=REGULATES)": lambda: store.gene_network(
                "LYZ", depth=2, kinds=("REGULATES",)),
            "state_properties('Monocyte')": lambda: store.state_properties("Monocyte"),
            "state_properties('T cell')": lambda: store.state_properties("T cell"),
            "compare_states('Naive CD4 T', 'Memory CD4 T')": lambda: store.compare_states("Naive CD4 T", "Memory CD4 T"),
            "query(cells per state)": lambda: store.query(
                "MATCH (c:Cell)-[:IN_STATE {runId: $runId}]->(s:CellState) RETURN s.stateId AS state, count(c) AS n",
                {"runId": tables.run_id}),
            "export_grn(graphml)": lambda: store.export_grn(tmp / "grn.graphml"),
        }
        lat = {}
        for name, fn in tqdm(queries.items(), desc="query latency", unit="query"):
            lat[name] = latency(fn, args.repeats)
        results["ladybug_query_latency"] = lat

    # baseline in the same process: the UNWIND (Neo4j statement) path vs COPY on the same subset
    with open_store(tmp / f"unwind-{uuid.uuid4().hex[:6]}.lbug") as a, open_store(
        tmp / f"copy-{uuid.uuid4().hex[:6]}.lbug"
    ) as b:
        unwind = a.write_run(small, method="unwind", batch_size=args.unwind_batch, progress=True)
        copy = b.write_run(small)
        assert a.counts() == b.counts()
        results["ladybug_subset"] = {
            "cells": args.unwind_cells, "rows": copy.total_rows,
            "copy_rows_per_s": copy.rows_per_second, "unwind_rows_per_s": unwind.rows_per_second,
            "copy_over_unwind": copy.rows_per_second / unwind.rows_per_second,
        }

    uri = os.environ.get("NEO4J_URI")
    if uri:
        sweep = {}
        neo = scaled_tables(args.neo4j_cells, args.top_k, args.seed, run_id=f"bench-{uuid.uuid4().hex[:6]}")
        with open_store(uri) as store:
            for bs in [int(x) for x in args.neo4j_batch_sizes.split(",")]:
                rep = store.write_run(neo, batch_size=bs, progress=True)
                sweep[str(bs)] = {"seconds": rep.seconds, "rows_per_s": rep.rows_per_second}
                print(f"  Neo4j batch {bs}: {rep.rows_per_second:,.0f} rows/s", flush=True)
            lat = {"markers('B', top=20)": latency(lambda: store.markers("B", top=20, run_id=neo.run_id), args.repeats)}
            store.delete_run(neo.run_id)
        results["neo4j_batch_sweep"] = {"cells": args.neo4j_cells, "rows": neo.n_rows(), "batches": sweep,
                                        "query_latency": lat}
    else:
        results["neo4j_batch_sweep"] = {"skipped": "NEO4J_URI is not set; set it (and NEO4J_USER/NEO4J_PASSWORD) to run"}

    if scratch is not None:
        scratch.cleanup()
    results["load_average_at_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "graphdb.json").write_text(json.dumps(results, indent=2))
    (args.out / "graphdb.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    m = r["machine"]
    load, sub = r["ladybug_load"], r["ladybug_subset"]
    lines = [
        "# graphdb benchmark",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs (load average at start {m['load_average_at_start'][0]:.1f}), "
        f"Python {m['python']}, ladybug {m['ladybug']}.",
        "",
        f"Run: PBMC 3k resampled to {r['run']['cells']:,} cells -- {r['run']['rows']:,} table rows, "
        f"{r['run']['edges']:,} relationships (EXPRESSES {r['run']['expresses']:,}, IN_STATE "
        f"{r['run']['cell_state']:,}, HAS_PROPERTY {r['run']['cell_property']:,}).",
        "",
        "## LadybugDB load",
        "",
        "| write | seconds | rows/s |",
        "|---|---:|---:|",
        f"| COPY, whole run (one transaction) | {load['seconds']:.1f} | {load['rows_per_s']:,.0f} |",
        f"| re-write of the same run (delete + COPY) | {r['ladybug_rewrite']['seconds']:.1f} | "
        f"{r['ladybug_rewrite']['rows_per_s']:,.0f} |",
        f"| COPY, {sub['cells']:,}-cell subset | | {sub['copy_rows_per_s']:,.0f} |",
        f"| UNWIND batches (Neo4j statements), same subset | | {sub['unwind_rows_per_s']:,.0f} |",
        "",
        f"COPY is {sub['copy_over_unwind']:.1f}x the UNWIND path on the same subset in the same process. "
        "A re-write first deletes the run's old relationships; LadybugDB deletes relationships far more slowly "
        "than it loads them, so the delete dominates the re-write.",
        "",
        f"## Named-query latency (LadybugDB, {r['run']['cells']:,} cells)",
        "",
        "| query | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for name, v in r["ladybug_query_latency"].items():
        lines.append(f"| `{name}` | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} |")
    lines += ["", "## Neo4j batch-size sweep", ""]
    sweep = r["neo4j_batch_sweep"]
    if "skipped" in sweep:
        lines.append(f"Skipped: {sweep['skipped']}.")
    else:
        lines += ["| batch size | seconds | rows/s |", "|---:|---:|---:|"]
        for bs, v in sweep["batches"].items():
            lines.append(f"| {bs} | {v['seconds']:.1f} | {v['rows_per_s']:,.0f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
