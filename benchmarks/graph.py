"""CellVQ-Graph benchmark: marker quality on real PBMCs and build/train cost as cells grow.

Quality (bundled PBMC 3k, 2,638 cells, full-batch training):
    precision@10 of per-cell-type markers against the curated list
    (``cellvq_graph/resources/pbmc_canonical_markers.csv``) for: contrasted attention, attention with
    uniform coefficients on the same edges (what the top-k edge selection alone gives), the paper's
    uncontrasted mean attention, captum Integrated Gradients, and scanpy's Wilcoxon test (all genes and the
    graph's genes). Also IG-attention agreement, intermediate-cell pair counts, gene modules, subtypes.

Scale (real PBMC 3k cells resampled with replacement to each size, Gaussian noise of 0.05 sd on the cell
embedding): graph build time, NeighborLoader mini-batch training time (``--batch-size`` seed cells) and
peak resident memory, each size in its own subprocess. Memory is sampled from /proc/self/statm every
20 ms. The NeighborLoader's CSC index of the whole graph (O(edges), like the graph itself) is built before
the training window and reported as ``loader_index``; ``train_increment`` is the peak during training
minus the resident size just before it, i.e. what the mini-batch loop adds on top of holding graph and
index -- the part that must stay bounded as cells grow.

The cell embedding is the shipped foundation checkpoint's (``foundation.load_pretrained().embed``) when it
loads, else a PCA stand-in (log-normalised HVGs, 50 components; codes = Leiden clusters) -- the report says
which. Writes ``benchmarks/results/graph.json`` and ``graph.md``.

    python benchmarks/graph.py                       # sizes 10000 50000 100000
    python benchmarks/graph.py --sizes 10000 --skip-quality
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
T_POOL = {"T": ["Naive CD4 T", "Memory CD4 T", "CD8 T"]}
EVAL4 = ["B", "NK", "CD14+ Mono", "T"]
EVAL7 = EVAL4 + ["FCGR3A+ Mono", "DC", "Platelet"]


class PeakRSS:
    """Peak resident set size of this process, sampled in a thread (bytes)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())


def embedded_pbmc3k(force_standin: bool = False):
    """pbmc3k with foundation keys: the shipped checkpoint if it loads, else a PCA stand-in."""
    import anndata as ad

    path = ROOT / "foundation" / "datasets" / "files" / "pbmc3k_counts.h5ad"
    adata = ad.read_h5ad(path)
    if not force_standin:
        try:
            import foundation

            foundation.load_pretrained().embed(adata, batch_size=256)
            return adata, "foundation (shipped checkpoint)"
        except Exception as err:  # noqa: BLE001 - any failure means: fall back, and say so
            print(f"foundation embedding unavailable ({type(err).__name__}: {err}); using the PCA stand-in")
            return _standin(adata), "PCA stand-in (foundation checkpoint not available)"
    return _standin(adata), "PCA stand-in (--standin)"


def _standin(adata):
    import scanpy as sc
    from sklearn.decomposition import TruncatedSVD

    b = adata.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    sc.pp.highly_variable_genes(b, n_top_genes=2000)
    h = b[:, b.var["highly_variable"]].copy()
    sc.pp.scale(h, max_value=10)
    sc.tl.pca(h, n_comps=50, random_state=0)
    adata.obsm["X_cellvq"] = h.obsm["X_pca"].astype(np.float32)
    det = np.asarray((adata.X > 0).sum(0)).ravel() >= 3
    svd = TruncatedSVD(64, random_state=0).fit(b.X[:, det])
    G = np.zeros((adata.n_vars, 64), np.float32)
    G[det] = svd.components_.T * svd.singular_values_[None] / 100
    adata.varm["cellvq_gene"] = G
    adata.var["cellvq_in_vocab"] = det
    sc.pp.neighbors(h, n_neighbors=15, use_rep="X_pca", random_state=0)
    sc.tl.leiden(h, resolution=5.0, flavor="igraph", n_iterations=2, random_state=0)
    cl = h.obs["leiden"].astype(int).to_numpy()
    adata.obs["cellvq_code"] = [f"{c // 8}-{c % 8}" for c in cl]
    adata.obs["cellvq_code"] = adata.obs["cellvq_code"].astype("category")
    return adata


# --------------------------------------------------------------------------------------------- quality


def quality(adata, epochs: int, seed: int) -> dict:
    import scanpy as sc
    import scipy.sparse as sp
    from sklearn.metrics import adjusted_rand_score

    import cellvq_graph as cg

    out: dict = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cg.tl.fit(adata, train=cg.GraphTrainConfig(epochs=epochs, seed=seed), progress=False)
    out["fit_seconds"] = round(time.perf_counter() - t0, 1)
    out["final_history"] = {k: round(v, 4) for k, v in model.history[-1].items()}
    gi = model.graph.graph_index
    out["graph"] = {
        "cells": adata.n_obs,
        "genes": len(gi.genes),
        "codes": len(gi.categories["cellvq_code"]),
        "top_k": gi.top_k,
        "edges": {"__".join(et): int(model.graph[et].edge_index.size(1)) for et in model.graph.edge_types},
    }

    def prec(df, states):
        p = cg.marker_precision(df, k=10, states=states)
        return {"mean": round(float(np.mean(list(p.values()))), 3), **{k: round(v, 2) for k, v in p.items()}}

    rows = {}
    rows["attention (contrast: max other; default)"] = cg.markers(adata, "cell_type", groups=T_POOL)
    rows["attention (contrast: rest)"] = cg.markers(
        adata, "cell_type", groups=T_POOL, contrast="rest", key_added="ct_rest"
    )
    # uniform coefficients on the same top-k edges: what edge selection + contrast give without learning
    u = adata.copy()
    A = sp.csr_matrix(u.layers["cellvq_graph_attention"])
    deg = np.diff(A.indptr)
    A.data = np.repeat(1.0 / np.maximum(deg, 1), deg).astype(np.float32)
    u.layers["cellvq_graph_attention"] = A
    rows["uniform attention, same edges, contrast max (ablation)"] = cg.markers(u, "cell_type", groups=T_POOL)
    rows["uniform attention, same edges, contrast rest (ablation)"] = cg.markers(
        u, "cell_type", groups=T_POOL, contrast="rest"
    )
    # the paper's read-out: mean attention per group, no contrast
    lab = adata.obs["cell_type"].astype(str).replace({m: "T" for m in T_POOL["T"]})
    u.obs["pooled"] = lab.to_numpy()
    rows["mean attention, no contrast (paper read-out)"] = cg.code_markers(u, key="pooled", n_top=10)
    t0 = time.perf_counter()
    ig = cg.integrated_gradients(
        model, model.graph, "cell_type", groups=T_POOL, n_cells=50, n_steps=16, adata=adata
    )
    out["ig_seconds"] = round(time.perf_counter() - t0, 1)
    rows["integrated gradients"] = ig
    b = adata.copy()
    with cg.keep_torch_threads():
        sc.pp.normalize_total(b, target_sum=1e4)
        sc.pp.log1p(b)
    b.obs["pooled"] = lab.astype("category").to_numpy()
    for name, bb in (("wilcoxon (all genes)", b), ("wilcoxon (graph genes)", b[:, gi.genes].copy())):
        with cg.keep_torch_threads():
            sc.tl.rank_genes_groups(bb, "pooled", method="wilcoxon")
        names = bb.uns["rank_genes_groups"]["names"]
        import pandas as pd

        rows[name] = pd.DataFrame(
            [(s, names[s][i], i + 1) for s in names.dtype.names for i in range(10)],
            columns=["state", "gene", "rank"],
        )
    out["precision_at_10"] = {
        name: {"eval4": prec(df, EVAL4), "eval7": prec(df, EVAL7)} for name, df in rows.items()
    }
    out["top10"] = {
        name: {s: df[df["state"] == s].sort_values("rank")["gene"].head(10).tolist() for s in EVAL4}
        for name, df in rows.items()
    }
    agree = cg.attribution_agreement(
        ig, cg.markers(adata, "cell_type", groups=T_POOL, n_top=None, key_added="all")
    )
    out["ig_attention_agreement"] = agree.round(3).to_dict(orient="records")
    cg.plot_agreement(agree, RESULTS / "graph_ig_agreement.png")

    inter = cg.intermediate_states(adata, "cell_type")
    pairs = inter.apply(lambda r: " / ".join(sorted((r.state_a, r.state_b))), axis=1).value_counts()
    out["intermediate"] = {"n_cells": int(len(inter)), "pairs": {k: int(v) for k, v in pairs.head(8).items()}}
    out["intermediate"]["Naive CD4 T / Memory CD4 T"] = int(pairs.get("Memory CD4 T / Naive CD4 T", 0))
    out["intermediate"]["B / CD14+ Mono"] = int(pairs.get("B / CD14+ Mono", 0))
    labels, _ = cg.subtypes(adata, ["Naive CD4 T", "Memory CD4 T"], n_subtypes=2)
    out["subtypes_cd4"] = {
        "n_subtypes": int(labels.nunique()),
        "ari_vs_naive_memory": round(
            float(adjusted_rand_score(adata.obs.loc[labels.index, "cell_type"].astype(str), labels)), 3
        ),
    }
    # ablation: the same graph without the cell_type property (states = codes only), so attention and
    # embedding never see the annotation that the evaluation uses
    plain = adata.copy()
    for key in [k for k in plain.uns if k == "cellvq_graph"]:
        del plain.uns[key]
    t0 = time.perf_counter()
    m0 = cg.tl.fit(plain, properties=(), train=cg.GraphTrainConfig(epochs=epochs, seed=seed), progress=False)
    mk0 = cg.markers(plain, "cell_type", groups=T_POOL)
    lab0, _ = cg.subtypes(plain, ["Naive CD4 T", "Memory CD4 T"], n_subtypes=2)
    inter0 = cg.intermediate_states(plain, "cell_type")
    pairs0 = inter0.apply(lambda r: " / ".join(sorted((r.state_a, r.state_b))), axis=1).value_counts()
    out["codes_only"] = {
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "final_history": {k: round(v, 4) for k, v in m0.history[-1].items()},
        "precision_at_10": {"eval4": prec(mk0, EVAL4), "eval7": prec(mk0, EVAL7)},
        "top10": {s: mk0[mk0["state"] == s].sort_values("rank")["gene"].head(10).tolist() for s in EVAL4},
        "subtypes_cd4_ari": round(
            float(adjusted_rand_score(plain.obs.loc[lab0.index, "cell_type"].astype(str), lab0)), 3
        ),
        "intermediate_naive_memory": int(pairs0.get("Memory CD4 T / Naive CD4 T", 0)),
        "intermediate_b_mono": int(pairs0.get("B / CD14+ Mono", 0)),
    }
    G = cg.gene_network(adata)
    mods = {n: d for n, d in G.nodes(data="module")}
    sizes = np.bincount(list(mods.values()))
    kinds = [d["kind"] for *_, d in G.edges(data=True)]
    out["gene_network"] = {
        "genes": G.number_of_nodes(),
        "edges": G.number_of_edges(),
        "regulates_edges": int(sum(k == "regulates" for k in kinds)),
        "modules": int(len(sizes)),
        "largest_module": int(sizes.max()),
    }
    out["gene_network"]["hallmark_enriched_modules"] = hallmark_enrichment(G)
    return out


def hallmark_enrichment(G, min_size: int = 10, alpha: float = 0.01) -> dict:
    """Modules (>= min_size genes) with a hypergeometric hit in an MSigDB hallmark set (Bonferroni)."""
    from scipy.stats import hypergeom

    path = ROOT.parent / "shared" / "data" / "msigdb_hallmark_v7.5.1.symbols.gmt"
    if not path.is_file():
        return {"available": False}
    sets = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        sets[parts[0]] = set(parts[2:])
    universe = set(G.nodes)
    mods: dict[int, set] = {}
    for n, m in G.nodes(data="module"):
        mods.setdefault(m, set()).add(n)
    big = {m: g for m, g in mods.items() if len(g) >= min_size}
    n_tests = max(1, len(big) * len(sets))
    hits = {}
    for m, genes in big.items():
        best = (1.0, None)
        for name, s in sets.items():
            s_u = s & universe
            k = len(genes & s_u)
            if k < 3:
                continue
            p = hypergeom.sf(k - 1, len(universe), len(s_u), len(genes))
            best = min(best, (p, name))
        if best[0] * n_tests < alpha:
            hits[int(m)] = {"set": best[1], "p_bonferroni": float(best[0] * n_tests), "size": len(genes)}
    return {"available": True, "modules_tested": len(big), "enriched": len(hits), "hits": hits}


# --------------------------------------------------------------------------------------------- scale


def scale_one(
    size: int, source_h5ad: str, batch_size: int, epochs: int, max_steps: int | None, seed: int
) -> dict:
    import anndata as ad
    import torch

    import cellvq_graph as cg
    from cellvq_graph.sampler import make_loader
    from cellvq_graph.train import default_num_neighbors

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    mon = PeakRSS()
    rss_start = mon.rss()
    base = ad.read_h5ad(source_h5ad)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, base.n_obs, size)
    adata = base[idx].copy()
    adata.obs_names = [f"c{i}" for i in range(size)]
    X = adata.obsm["X_cellvq"]
    adata.obsm["X_cellvq"] = (X + rng.normal(0, 0.05, X.shape) * X.std(0, keepdims=True)).astype(np.float32)
    del base
    rss_data = mon.rss()
    with warnings.catch_warnings(), mon:
        warnings.simplefilter("ignore", UserWarning)
        t0 = time.perf_counter()
        data = cg.build_graph(adata, properties=("cell_type",), seed=seed)
        build_s = time.perf_counter() - t0
    build_peak = mon.peak
    model = cg.CellVQGraph.from_graph(data, hidden=32, heads=4, seed=seed)
    from cellvq_graph.nn import graph_inputs
    from cellvq_graph.train import GraphTrainConfig, seed_everything, training_loss

    seed_everything(seed)
    rss_graph = mon.rss()
    # the loader's CSC index of the whole graph is O(edges); build it before the training window
    loader = make_loader(data, default_num_neighbors(data.edge_types, 2), torch.arange(size), batch_size)
    rss_before = mon.rss()
    steps_per_epoch = int(np.ceil(size / batch_size))
    gen = torch.Generator().manual_seed(seed)
    train_cfg = GraphTrainConfig()  # the loss terms' defaults
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-2)
    model.net.train()
    steps = 0
    batch_nodes = []
    with PeakRSS() as mon2:
        t0 = time.perf_counter()
        for _ in range(epochs):
            for g in loader:
                batch_nodes.append(sum(int(g[nt].num_nodes) for nt in g.node_types))
                loss, _ = training_loss(
                    model.net, graph_inputs(g), g["cell"].y, int(g["cell"].batch_size), train_cfg, gen
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    break
            if max_steps is not None and steps >= max_steps:
                break
        train_s = time.perf_counter() - t0
    return {
        "cells": size,
        "genes": len(data.graph_index.genes),
        "cell_gene_edges": int(data["cell", "expresses", "gene"].edge_index.size(1)),
        "build_seconds": round(build_s, 2),
        "train_steps": steps,
        "train_seconds": round(train_s, 2),
        "seconds_per_step": round(train_s / max(steps, 1), 3),
        "epoch_seconds_est": round(train_s / max(steps, 1) * steps_per_epoch, 1),
        "rss_start_mb": round(rss_start / 2**20),
        "rss_with_data_mb": round(rss_data / 2**20),
        "build_peak_mb": round(build_peak / 2**20),
        "loader_index_mb": round((rss_before - rss_graph) / 2**20),
        "mean_batch_nodes": int(np.mean(batch_nodes)) if batch_nodes else 0,
        "rss_before_train_mb": round(rss_before / 2**20),
        "train_peak_mb": round(mon2.peak / 2**20),
        "train_increment_mb": round((mon2.peak - rss_before) / 2**20),
    }


# --------------------------------------------------------------------------------------------- report


def write_md(res: dict, path: Path) -> None:
    L = ["# CellVQ-Graph benchmark", ""]
    L.append(f"- command: `{res['command']}`")
    L.append(f"- machine: {res['machine']}; torch threads {res['threads']}")
    L.append(f"- cell embedding: **{res['embedding']}**")
    L.append("")
    q = res.get("quality")
    if q:
        g = q["graph"]
        L += [
            "## Marker quality on PBMC 3k",
            "",
            f"Graph: {g['cells']} cells, {g['genes']} genes, {g['codes']} codes, top-{g['top_k']} genes per cell; "
            f"training (cellvq_graph.tl.fit defaults: 80 epochs of 512-cell NeighborLoader mini-batches) "
            f"{q['fit_seconds']} s; final masked-cell accuracy "
            f"{ {k: v for k, v in q['final_history'].items() if k.startswith('acc')} }.",
            "",
            "precision@10 against the curated list (T = Naive CD4 T + Memory CD4 T + CD8 T pooled):",
            "",
            "| method | mean (B, NK, CD14+ Mono, T) | B | NK | CD14+ Mono | T | mean of 7 (+FCGR3A+ Mono, DC, Platelet) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, p in q["precision_at_10"].items():
            e4, e7 = p["eval4"], p["eval7"]
            L.append(
                f"| {name} | {e4['mean']} | {e4['B']} | {e4['NK']} | {e4['CD14+ Mono']} | {e4['T']} | {e7['mean']} |"
            )
        L += [
            "",
            "IG vs attention agreement per state:",
            "",
            "| state | overlap@10 | overlap@20 | spearman | genes ranked by both |",
            "|---|---|---|---|---|",
        ]
        for r in q["ig_attention_agreement"]:
            L.append(
                f"| {r['state']} | {r['overlap@10']} | {r['overlap@20']} | {r['spearman']} | {r['n_shared']} |"
            )
        it = q["intermediate"]
        L += [
            "",
            f"Intermediate cells (kNN 15 in the graph embedding, second state share >= 0.3): {it['n_cells']}; "
            f"Naive/Memory CD4 T {it['Naive CD4 T / Memory CD4 T']}, B/CD14+ Mono {it['B / CD14+ Mono']}. "
            f"Top pairs: {it['pairs']}.",
            "",
            f"Subtypes of CD4 T (Naive + Memory), split in two: {q['subtypes_cd4']['n_subtypes']} subtypes, ARI vs naive/memory "
            f"{q['subtypes_cd4']['ari_vs_naive_memory']}.",
            "",
            f"Gene network: {q['gene_network']['genes']} genes, {q['gene_network']['edges']} edges "
            f"({q['gene_network']['regulates_edges']} TF->target), {q['gene_network']['modules']} modules "
            f"(largest {q['gene_network']['largest_module']}); hallmark-enriched modules: "
            f"{q['gene_network']['hallmark_enriched_modules'].get('enriched')} of "
            f"{q['gene_network']['hallmark_enriched_modules'].get('modules_tested')} with >= 10 genes.",
            "",
            f"Integrated Gradients (50 cells per state, 16 steps): {q['ig_seconds']} s.",
            "",
        ]
        c0 = q.get("codes_only")
        if c0:
            p4, p7 = c0["precision_at_10"]["eval4"], c0["precision_at_10"]["eval7"]
            L += [
                "Ablation -- graph without the cell_type property (codes only; the model never sees the "
                f"annotation): attention precision@10 {p4['mean']} (B {p4['B']}, NK {p4['NK']}, CD14+ Mono "
                f"{p4['CD14+ Mono']}, T {p4['T']}; mean of 7: {p7['mean']}); CD4 subtypes ARI "
                f"{c0['subtypes_cd4_ari']}; intermediate Naive/Memory CD4 {c0['intermediate_naive_memory']}, "
                f"B/CD14+ Mono {c0['intermediate_b_mono']}; fit {c0['fit_seconds']} s.",
                "",
            ]
    if res.get("scale"):
        L += [
            "## Scale (PBMC 3k cells resampled; NeighborLoader mini-batches)",
            "",
            f"batch size {res['batch_size']} seed cells; " + res["scale_note"],
            "",
            "| cells | genes | cell-gene edges | build s | train steps | train s | s/step | epoch s (est.) | nodes per batch | RSS with data MB | build peak MB | loader index MB | RSS before train MB | train peak MB | train increment MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["scale"]:
            L.append(
                f"| {r['cells']} | {r['genes']} | {r['cell_gene_edges']} | {r['build_seconds']} | {r['train_steps']} | "
                f"{r['train_seconds']} | {r['seconds_per_step']} | {r['epoch_seconds_est']} | {r['mean_batch_nodes']} | "
                f"{r['rss_with_data_mb']} | {r['build_peak_mb']} | {r['loader_index_mb']} | {r['rss_before_train_mb']} | "
                f"{r['train_peak_mb']} | {r['train_increment_mb']} |"
            )
    path.write_text("\n".join(L) + "\n")


# --------------------------------------------------------------------------------------------- GRN


def _grn_methods(adata, edges):
    """Score columns for one candidate set: ours, each evidence alone, the old export, Spearman."""
    import cellvq_graph as cg

    e = edges.copy()
    e["abs_spearman"] = e["spearman"].abs()
    e["score_att"] = e["score"] + 0.5 * e["attention"].rank(pct=True)
    G = cg.gene_network(adata, key_added="bench")
    old = {(u, v): d["weight"] for u, v, d in G.edges(data=True) if d.get("kind") == "regulates"}
    e["old_export"] = [old.get((s, t), 0.0) for s, t in zip(e["source"], e["target"])]
    return e, {
        "CellVQ-Graph regulatory score (defaults)": "score",
        "GRNBoost2-like trees, one run (ours, sklearn GBM)": "tree_importance",
        "score + 0.5 x attention percentile": "score_att",
        "gene-gene attention TF->target alone": "attention",
        "previous export (REGULATES weight)": "old_export",
        "|Spearman| of expression": "abs_spearman",
    }


def grn_pbmc(adata, reference, seed: int) -> dict:
    import cellvq_graph as cg
    from cellvq_graph.networks import RegulatoryConfig, grn_benchmark, regulatory_network

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cg.tl.fit(adata, train=cg.GraphTrainConfig(seed=seed), progress=False)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    edges = regulatory_network(adata, RegulatoryConfig(seed=seed, progress=False))
    net_s = time.perf_counter() - t0
    two = regulatory_network(adata, RegulatoryConfig(seed=seed, progress=False, n_tree_seeds=2))
    edges = edges.merge(two[["source", "target", "tree_consensus"]].rename(
        columns={"tree_consensus": "consensus2"}), on=["source", "target"])
    e, methods = _grn_methods(adata, edges)
    methods["trees, 2-run consensus"] = "consensus2"
    table = grn_benchmark(e, reference, methods, ks=(50, 100, 500), seed=seed)
    return {
        "fit_seconds": round(fit_s, 1),
        "network_seconds": round(net_s, 1),
        "n_tfs": int(edges["source"].nunique()),
        "n_targets": int(edges["target"].nunique()),
        "table": table.round(4).to_dict(orient="records"),
    }


def grn_papalexi(reference, seed: int) -> dict:
    """Knock-out evidence: observed targets from rep_1, the network from rep_2 + rep_3."""
    from cellvq_graph.networks import (
        RegulatoryConfig,
        grn_benchmark,
        perturbation_response,
        regulatory_network,
        target_rank_auroc,
    )
    from foundation import datasets

    a = datasets.papalexi_crispr()
    rep = a.obs["bio_rep"].astype(str).to_numpy()
    observed = perturbation_response(a[rep == "rep_1"])
    b = a[rep != "rep_1"].copy()
    t0 = time.perf_counter()
    edges = regulatory_network(b, RegulatoryConfig(seed=seed, progress=False), perturbation_response(b))
    net_s = time.perf_counter() - t0
    rows = []
    rng = np.random.default_rng(seed)
    edges["_random"] = rng.random(len(edges))
    for tf in sorted(set(observed["source"]) & set(edges["source"])):
        o = observed[(observed["source"] == tf) & (observed["perturbation_z"].abs() > 4)]
        o = o[o["target"] != tf]["target"].tolist()
        if len(o) < 3:
            continue
        rows.append(
            {
                "tf": tf,
                "observed_targets": len(o),
                "auroc_score": round(target_rank_auroc(edges, tf, o), 3),
                "auroc_random": round(target_rank_auroc(edges, tf, o, "_random"), 3),
            }
        )
    edges["abs_spearman"] = edges["spearman"].abs()
    edges["abs_perturbation"] = edges["perturbation_z"].abs()
    methods = {
        "regulatory score": "score",
        "GRNBoost2-like trees": "tree_importance",
        "|perturbation z|": "abs_perturbation",
        "|Spearman|": "abs_spearman",
    }
    try:
        trrust = grn_benchmark(edges, reference, methods, ks=(10, 50), seed=seed).round(4).to_dict("records")
    except ValueError as err:
        trrust = str(err)
    return {"network_seconds": round(net_s, 1), "knockouts": rows, "trrust": trrust}


def write_grn_md(res: dict, path: Path) -> None:
    L = ["# CellVQ-Graph regulatory network benchmark", "", f"- command: `{res['command']}`",
         f"- machine: {res['machine']}; cell embedding: {res['embedding']}", ""]
    p = res["pbmc3k"]
    t = p["table"]
    L += ["## PBMC 3k vs TRRUST v2 (one candidate set)", "",
          f"Candidates: {p['n_tfs']} TFs (Lambert 2018 list, among the graph's genes) x {p['n_targets']} graph "
          f"genes, restricted to TFs with a TRRUST target among them: {t[0]['n_candidates']} pairs, "
          f"{t[0]['n_positives']} TRRUST positives (base rate {t[0]['base_rate']:.4f}). Graph fit "
          f"{p['fit_seconds']} s, regulatory network {p['network_seconds']} s.", "",
          "| method | AUPRC | AUPRC / base rate | p@50 | p@100 | p@500 |", "|---|---|---|---|---|---|"]
    for r in t:
        L.append(f"| {r['method']} | {r['auprc']:.4f} | {r['auprc_ratio_random']:.2f} | {r['p@50']:.3f} | "
                 f"{r['p@100']:.3f} | {r['p@500']:.3f} |")
    q = res["papalexi"]
    L += ["", "## Papalexi THP-1 CRISPR knock-outs (observed targets from rep_1, network from rep_2 + rep_3)",
          "", f"Network with perturbation evidence: {q['network_seconds']} s. Observed targets: |Welch t| > 4 "
          "in the knock-out vs non-targeting cells of rep_1. AUROC of those targets among the TF's outgoing "
          "edges ranked by the regulatory score (0.5 = random).", "",
          "| TF | observed targets | AUROC score | AUROC random |", "|---|---|---|---|"]
    for r in q["knockouts"]:
        L.append(f"| {r['tf']} | {r['observed_targets']} | {r['auroc_score']} | {r['auroc_random']} |")
    if isinstance(q["trrust"], list):
        L += ["", "TRRUST on the 299 Papalexi genes (few positives: read with care):", "",
              "| method | AUPRC | p@10 | p@50 | positives / candidates |", "|---|---|---|---|---|"]
        for r in q["trrust"]:
            L.append(f"| {r['method']} | {r['auprc']:.4f} | {r['p@10']:.2f} | {r['p@50']:.2f} | "
                     f"{r['n_positives']} / {r['n_candidates']} |")
    path.write_text("\n".join(L) + "\n")


def run_grn(args, argv) -> None:
    from cellvq_graph.networks import load_tf_target_reference
    from foundation import datasets

    ref = load_tf_target_reference(datasets.shared_data_dir() / "references" / "trrust_v2_human.tsv.gz")
    adata, source = embedded_pbmc3k(args.standin)
    res = {
        "command": "python benchmarks/graph.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "embedding": source,
        "pbmc3k": grn_pbmc(adata, ref, args.seed),
        "papalexi": grn_papalexi(ref, args.seed),
    }
    (args.out / "graph_grn.json").write_text(json.dumps(res, indent=1))
    write_grn_md(res, args.out / "graph_grn.md")
    print((args.out / "graph_grn.md").read_text())


# --------------------------------------------------------------------------------------------- markers

PBMC68K_TYPES = {
    "CD19+ B": "B", "CD56+ NK": "NK", "CD14+ Monocyte": "CD14+ Mono", "Dendritic": "DC",
    "CD4+/CD25 T Reg": "T Reg", "CD4+/CD45RO+ Memory": "Memory CD4 T", "CD8+ Cytotoxic T": "CD8 T",
    "CD8+/CD45RA+ Naive Cytotoxic": "Naive CD8 T", "CD4+/CD45RA+/CD25- Naive T": "Naive CD4 T", "CD34+": "CD34+",
}
POOL68K = {"T": ["T Reg", "Memory CD4 T", "CD8 T", "Naive CD8 T", "Naive CD4 T"]}
EVAL5 = ["B", "NK", "CD14+ Mono", "DC", "T"]


def embedded_pbmc68k():
    import foundation
    from foundation import datasets

    a = datasets.pbmc68k()
    a.obs["cell_type"] = a.obs["bulk_labels"].astype(str).map(PBMC68K_TYPES).astype("category")
    foundation.load_pretrained().embed(a, batch_size=256)
    return a


def uniform_copy(adata, model=None):
    """The same top-k edges with uniform attention: what edge selection + contrast give without learning.

    With ``model`` the edges are the graph's cell-gene edges (a sparsemax read-out stores exact zeros, so
    the attention layer's own pattern need not be the candidate set); without, the layer's stored entries."""
    import pandas as pd
    import scipy.sparse as sp

    from cellvq_graph.build import GENE_CELL

    u = adata.copy()
    if model is None:
        A = sp.csr_matrix(u.layers["cellvq_graph_attention"])
        deg = np.diff(A.indptr)
        A.data = np.repeat(1.0 / np.maximum(deg, 1), deg).astype(np.float32)
    else:
        ei = model.graph[GENE_CELL].edge_index.numpy()
        col = pd.Index(u.var_names.astype(str)).get_indexer(model.graph.graph_index.genes)[ei[0]]
        deg = np.bincount(ei[1], minlength=u.n_obs)
        A = sp.csr_matrix((1.0 / deg[ei[1]], (ei[1], col)), shape=u.shape, dtype=np.float32)
    u.layers["cellvq_graph_attention"] = A
    return u


def wilcoxon_logfc(adata, genes, pool, min_logfc: float = 1.0):
    """scanpy Wilcoxon on the graph's genes, genes with log2FC < min_logfc dropped, score order kept."""
    import pandas as pd
    import scanpy as sc

    import cellvq_graph as cg

    b = adata[:, genes].copy()
    b.X = cg.build.normalise_counts(b.X.tocsr() if hasattr(b.X, "tocsr") else b.X)
    b.obs["pooled"] = b.obs["cell_type"].astype(str).replace({m: k for k, v in pool.items() for m in v})
    b.obs["pooled"] = b.obs["pooled"].astype("category")
    with cg.keep_torch_threads():
        sc.tl.rank_genes_groups(b, "pooled", method="wilcoxon")
    df = sc.get.rank_genes_groups_df(b, None)
    df = df[df["logfoldchanges"] >= min_logfc].rename(columns={"group": "state", "names": "gene"})
    df["rank"] = df.groupby("state").cumcount() + 1
    return pd.DataFrame(df[["state", "gene", "rank"]])


def marker_rows(adata, model, pool, states) -> dict:
    """precision@10 on the curated list for attention, uniform, IG and Wilcoxon+logFC (same genes)."""
    import cellvq_graph as cg

    genes = list(model.graph.graph_index.genes)
    ig = cg.integrated_gradients(model, model.graph, "cell_type", groups=pool, n_cells=50, n_steps=16, adata=adata)
    rows = {
        "attention": cg.markers(adata, "cell_type", groups=pool),
        "uniform attention (ablation)": cg.markers(uniform_copy(adata, model), "cell_type", groups=pool),
        "integrated gradients": ig,
        "wilcoxon + log2FC >= 1 (graph genes)": wilcoxon_logfc(adata, genes, pool),
    }
    out = {}
    for name, df in rows.items():
        p = cg.marker_precision(df, k=10, states=states)
        out[name] = {"mean": round(float(np.mean(list(p.values()))), 3), **{k: round(v, 2) for k, v in p.items()}}
    return out


def bottleneck_variant(spec: str):
    """``"none"`` (message-passing attention, no bottleneck) or ``"<normaliser>/<query>"``, e.g. ``sparsemax/shared``."""
    from cellvq_graph.nn import BottleneckConfig

    if spec == "none":
        return None
    normaliser, _, query = spec.partition("/")
    return BottleneckConfig(normaliser=normaliser, query=query or "cell")


def fit_markers(adata, name, pool, states, spec, seed) -> dict:
    import cellvq_graph as cg

    a = adata.copy()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cg.tl.fit(a, train=cg.GraphTrainConfig(seed=seed), progress=False, bottleneck=bottleneck_variant(spec))
    fit_s = time.perf_counter() - t0
    r = marker_rows(a, model, pool, states)
    r["fit_seconds"] = round(fit_s, 1)
    r["dataset"] = name
    print(name, spec, json.dumps(r), flush=True)
    return r


def run_markers(args, argv) -> None:
    """Choose the attention variant on PBMC 3k, report it beside the plain model on pbmc68k (never tuned on)."""
    res = {"command": "python benchmarks/graph.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "tune": {}, "report": {}}
    a3k = embedded_pbmc3k()[0]
    for spec in args.variants:
        res["tune"][spec] = fit_markers(a3k, "pbmc3k", T_POOL, EVAL4, spec, args.seed)
    best = max(args.variants, key=lambda v: res["tune"][v]["attention"]["mean"])
    res["chosen_variant"] = best
    pooled = [v for v in args.variants if v != "none"]
    best_pool = max(pooled, key=lambda v: res["tune"][v]["attention"]["mean"]) if pooled else best
    res["best_bottleneck"] = best_pool
    a68k = embedded_pbmc68k()
    for spec in dict.fromkeys(["none", best, best_pool]):
        res["report"][spec] = fit_markers(a68k, "pbmc68k", POOL68K, EVAL5, spec, args.seed)
    (args.out / "graph_markers.json").write_text(json.dumps(res, indent=1))
    write_markers_md(res, args.out / "graph_markers.md")
    print((args.out / "graph_markers.md").read_text())


def write_markers_md(res: dict, path: Path) -> None:
    L = ["# CellVQ-Graph markers: attention vs uniform vs IG vs Wilcoxon+logFC", "", f"- command: `{res['command']}`",
         f"- machine: {res['machine']}", f"- variant chosen on pbmc3k: `{res['chosen_variant']}`; best bottleneck on pbmc3k: `{res['best_bottleneck']}`"
         " (both reported on pbmc68k)", "",
         "precision@10 against the curated list (`cellvq_graph/resources/pbmc_canonical_markers.csv`), T pooled;",
         "pbmc3k: B, NK, CD14+ Mono, T; pbmc68k (scanpy's pbmc68k_reduced, 765 genes): B, NK, CD14+ Mono, DC, T.",
         "Variant `none`: message-passing attention (no bottleneck); `<normaliser>/<query>`: the attention",
         "bottleneck (`cellvq_graph.nn.BottleneckConfig`), whose coefficients are the read-out. Uniform: 1/k on the",
         "same top-k cell-gene edges. IG: captum Integrated Gradients of the message-passing heads.", "",
         "| role | dataset | variant | attention | uniform (ablation) | IG | Wilcoxon+logFC | attention - max(uniform, Wilcoxon) | fit s |",
         "|---|---|---|---|---|---|---|---|---|"]
    for role in ("tune", "report"):
        for v, r in res[role].items():
            att, uni = r["attention"]["mean"], r["uniform attention (ablation)"]["mean"]
            ig, wil = r["integrated gradients"]["mean"], r["wilcoxon + log2FC >= 1 (graph genes)"]["mean"]
            L.append(f"| {role} | {r['dataset']} | `{v}` | {att} | {uni} | {ig} | {wil} | {att - max(uni, wil):+.3f} | {r['fit_seconds']} |")
    path.write_text("\n".join(L) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 50000, 100000])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument(
        "--epochs", type=int, default=1, help="mini-batch epochs per size (ignored with --max-steps)"
    )
    ap.add_argument(
        "--max-steps", type=int, default=None, help="time this many mini-batch steps instead of full epochs"
    )
    ap.add_argument("--quality-epochs", type=int, default=100)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--markers", action="store_true", help="only the marker benchmark (graph_markers.md)")
    ap.add_argument(
        "--variants", nargs="*", default=["none", "softmax/cell", "sparsemax/cell", "softmax/shared", "sparsemax/shared"],
        help="attention variants tried on pbmc3k for --markers (see bottleneck_variant)",
    )
    ap.add_argument("--grn", action="store_true", help="only the regulatory-network benchmark (graph_grn.md)")
    ap.add_argument(
        "--standin", action="store_true", help="use the PCA stand-in even if the checkpoint loads"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_src", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch

    if args._one is not None:
        r = scale_one(args._one, args._src, args.batch_size, args.epochs, args.max_steps, args.seed)
        print("RESULT " + json.dumps(r))
        return
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.grn:
        return run_grn(args, argv)
    if args.markers:
        return run_markers(args, argv)
    adata, source = embedded_pbmc3k(args.standin)
    res: dict = {
        "command": "python benchmarks/graph.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "threads": threads,
        "embedding": source,
        "batch_size": args.batch_size,
    }
    if not args.skip_quality:
        res["quality"] = quality(adata.copy(), args.quality_epochs, args.seed)
    res["scale"] = []
    res["scale_note"] = (
        f"{args.max_steps} training steps timed per size"
        if args.max_steps
        else f"{args.epochs} full epoch(s) per size"
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.h5ad"
        for k in list(adata.uns):
            if k != "cellvq":
                del adata.uns[k]
        adata.write_h5ad(src)
        for size in args.sizes:
            cmd = [
                sys.executable,
                __file__,
                "--_one",
                str(size),
                "--_src",
                str(src),
                "--batch-size",
                str(args.batch_size),
                "--epochs",
                str(args.epochs),
                "--seed",
                str(args.seed),
            ]
            if args.max_steps:
                cmd += ["--max-steps", str(args.max_steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise RuntimeError(f"size {size} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[0][7:])
            print(r)
            res["scale"].append(r)
    (args.out / "graph.json").write_text(json.dumps(res, indent=1))
    write_md(res, args.out / "graph.md")
    print((args.out / "graph.md").read_text())


if __name__ == "__main__":
    main()
