"""Streamed embedding of a backed h5ad vs the same file read into memory (run on demand, not in CI).

    python benchmarks/foundation_backed.py [--cells 50000] [--repeats 1] [--chunk-rows 2048 8192]

Builds an h5ad of ``--cells`` real pbmc3k cells (drawn with replacement, raw counts) in a temporary folder,
then runs ``cellvq embed`` on it in fresh child processes, once reading the file into memory and once per
``--chunk-rows`` with ``--backed`` (X left on disk, streamed in blocks, the output's X copied by HDF5). Each
child reports its wall time and peak resident memory (``ru_maxrss``), and its current resident memory
(``VmRSS``) after the model was loaded, before the file was opened. Writes ``benchmarks/results/foundation_backed.{json,md}``.

What carries over between machines is the memory: the in-memory path holds the counts several times over
(the file's CSR, its copy in vocabulary coordinates), the backed path one block, so its peak stays flat as
files grow. The timing ratio says what streaming costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = r"""
import json, resource, sys, time
import torch
import foundation
from cellvq.io import read_h5ad_checked, write_h5ad_atomic

path, out, backed, chunk = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
torch.manual_seed(0)
model = foundation.load_pretrained("cpu")
def rss_now_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss_now_mb()
t = time.perf_counter()
adata = read_h5ad_checked(path, backed=backed)
model.embed(adata, progress=False, chunk_rows=chunk)
t_embed = time.perf_counter() - t
write_h5ad_atomic(adata, out)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "embed_seconds": t_embed, "peak_rss_mb": peak, "rss_after_model_mb": base}))
"""


def build_file(path: Path, n_cells: int, seed: int = 0) -> dict:
    import anndata as ad

    from foundation import datasets

    pbmc = datasets.pbmc3k()
    idx = np.random.default_rng(seed).choice(pbmc.n_obs, size=n_cells, replace=True)
    obs = pbmc.obs.iloc[idx].copy()
    obs.index = [f"{name}-{i}" for i, name in enumerate(obs.index)]
    a = ad.AnnData(X=pbmc.X[idx], obs=obs, var=pbmc.var.copy())
    a.write_h5ad(path)
    return {"cells": int(a.n_obs), "genes": int(a.n_vars), "nnz": int(a.X.nnz),
            "csr_mb": round((a.X.data.nbytes + a.X.indices.nbytes + a.X.indptr.nbytes) / 2**20, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1)}


def run_child(path: Path, out: Path, backed: bool, chunk_rows: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(out), "1" if backed else "0", str(chunk_rows)],
                         capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=50000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--chunk-rows", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    import anndata as ad

    report: dict = {"machine": {"python": platform.python_version(), "threads": args.threads,
                                "cpu": platform.processor() or platform.machine()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "cells.h5ad"
        print(f"building {args.cells} cells ...", flush=True)
        report["file"] = build_file(src, args.cells)
        modes = [("in memory", False, 8192)] + [(f"backed, {c} cells a block", True, c) for c in args.chunk_rows]
        runs: dict[str, list[dict]] = {m: [] for m, _, _ in modes}
        outs = {}
        for r in range(args.repeats):
            for name, backed, chunk in modes:  # interleaved, so drift hits every mode alike
                print(f"repeat {r + 1}/{args.repeats}: {name} ...", flush=True)
                outs[name] = tmp / f"out_{len(outs)}.h5ad"
                runs[name].append(run_child(src, outs[name], backed, chunk, args.threads))
        ref = ad.read_h5ad(outs["in memory"])
        src_x = ad.read_h5ad(src).X
        rows = {}
        for name, _, _ in modes:
            o = ad.read_h5ad(outs[name])
            rs = runs[name]
            med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
            rows[name] = {
                "seconds_median": round(med["seconds"], 2),
                "cells_per_s_embed": round(args.cells / med["embed_seconds"], 1),
                "peak_rss_mb": round(med["peak_rss_mb"], 1),
                "rss_above_model_mb": round(med["peak_rss_mb"] - med["rss_after_model_mb"], 1),
                "max_abs_diff_vs_in_memory": float(np.abs(o.obsm["X_cellvq"] - ref.obsm["X_cellvq"]).max()),
                "codes_equal_share": float((o.obs["cellvq_code"].to_numpy() == ref.obs["cellvq_code"].to_numpy()).mean()),
                "output_counts_identical": bool((o.X != src_x).nnz == 0),
            }
    mem = rows["in memory"]
    for r in rows.values():
        r["time_ratio_vs_in_memory"] = round(r["seconds_median"] / mem["seconds_median"], 2)
        r["memory_ratio_vs_in_memory"] = round(r["rss_above_model_mb"] / max(mem["rss_above_model_mb"], 1e-9), 3)
    report["runs"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "foundation_backed.json").write_text(json.dumps(report, indent=2))
    f = report["file"]
    lines = ["# Streamed (backed) embedding vs in memory", "",
             f"`cellvq embed` on {f['cells']:,} real pbmc3k cells drawn with replacement ({f['nnz']:,} stored counts; "
             f"CSR {f['csr_mb']} MiB in memory, file {f['file_mb']} MiB), {args.threads} threads, median of "
             f"{args.repeats} run(s) per mode, each in a fresh process. Memory is the peak resident set, and that peak "
             "less the resident set once the model was loaded (before the file was opened); time includes reading, embedding and writing the output h5ad.", "",
             "| mode | seconds | embed cells/s | peak RSS MiB | above model MiB | memory vs in memory | time vs in memory "
             "| max abs diff of X_cellvq | same codes | output X = input X |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['seconds_median']} | {r['cells_per_s_embed']} | {r['peak_rss_mb']} | "
                     f"{r['rss_above_model_mb']} | {r['memory_ratio_vs_in_memory']}x | {r['time_ratio_vs_in_memory']}x | "
                     f"{r['max_abs_diff_vs_in_memory']:.1e} | {r['codes_equal_share']:.1%} | {r['output_counts_identical']} |")
    lines.append("")
    (args.out / "foundation_backed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
