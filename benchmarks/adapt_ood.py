"""`adapt` and the OOD score on held-out datasets (run on demand, not in CI): `python benchmarks/adapt_ood.py`.

Writes benchmarks/results/adapt_ood.{json,md}:
1. OOD score of the shipped checkpoint on every held-out human dataset with >= 150 cells and >= 5,000 genes
   of foundation/pretrained/corpus.tsv, and on the held-out pbmc3k cells (median score, share of cells above
   the training cells' 99th percentile, unmatched count share, verdict);
2. clustering of labelled held-out datasets (Leiden at resolution 1, ARI/NMI vs the labels): zero-shot
   CellVQ, CellVQ adapted to the dataset's own counts (no labels; default `adapt` settings, seed 0), its
   ablation without the data-driven start of weakly known genes (`gene_init="none"`), its ablation that
   keeps the parent's vocabulary (no untrained genes learnt, `GrowConfig(max_new_genes=0)`), and PCA of HVGs.
   Nothing here was tuned on these datasets' labels; `adapt`'s settings were chosen on Moncada PDAC only,
   so its row there is not a held-out figure and the other rows are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anndata as ad  # noqa: E402

import foundation  # noqa: E402
from foundation import ood  # noqa: E402
from foundation.datasets import shared_data_dir  # noqa: E402
from foundation.grow import GrowConfig  # noqa: E402
from foundation.holdout import read_holdout  # noqa: E402

LABELLED = {"corpus/moncada2020_pdac_card.h5ad": "cell_type", "corpus/darmanis2015_brain.h5ad": "cell_type",
            "corpus/mudan_zheng_sorted_pbmc.h5ad": "cell_type"}
TUNED_ON = "corpus/moncada2020_pdac_card.h5ad"


def held_out(manifest: pd.DataFrame) -> pd.DataFrame:
    m = manifest[(manifest["role"] == "held-out") & (manifest["cells"] >= 150) & (manifest["genes"] >= 5000)]
    return m.sort_values("file")


def ood_rows(model, shared: Path, files: list[str], pbmc_heldout) -> list[dict]:
    rows = []
    items = [("pbmc3k (held-out cells)", pbmc_heldout)] + [(f, ad.read_h5ad(shared / f)) for f in files]
    for name, a in items:
        if a.n_obs > 3000:
            a = a[np.sort(np.random.default_rng(0).choice(a.n_obs, 3000, replace=False))]
        a = a.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.embed(a, progress=False)
            s = ood.score(model, a, warn=False)
        rows.append({"dataset": name, "cells": a.n_obs, **{k: s[k] for k in
                     ("median_score", "share_above_q99", "unmatched_count_share", "far")}})
        print(rows[-1], flush=True)
    return rows


def leiden(a, rep: str, label: str) -> dict:
    r = foundation.tasks.best_leiden_scores(a, use_rep=rep, label_key=label)["default"]
    return {"ari": round(float(r["ari"]), 3), "nmi": round(float(r["nmi"]), 3)}


def cluster_rows(model, shared: Path, epochs: int) -> list[dict]:
    rows = []
    for f, label in LABELLED.items():
        base = ad.read_h5ad(shared / f)
        base = base[base.obs[label].notna()].copy()
        res = {"dataset": f, "cells": base.n_obs, "tuned_on": f == TUNED_ON}
        pca = base.copy()
        foundation.tasks.pca_baseline(pca)
        res["pca"] = leiden(pca, "X_pca_baseline", label)
        zero = base.copy()
        model.embed(zero, progress=False)
        res["zero_shot"] = leiden(zero, "X_cellvq", label)
        for tag, over in (("adapted", {}), ("adapted_no_gene_init", {"gene_init": "none"}),
                          ("adapted_no_growth", {"grow": GrowConfig(max_new_genes=0)})):
            t0 = time.perf_counter()
            child = model.adapt(base, epochs=epochs, progress=False, **over)
            a = base.copy()
            child.embed(a, progress=False)
            res[tag] = {**leiden(a, "X_cellvq", label), "adapt_seconds": round(time.perf_counter() - t0, 1)}
        rows.append(res)
        print(res, flush=True)
    return rows


def to_markdown(ood_tab: list[dict], clus: list[dict], meta: dict) -> str:
    lines = ["# adapt and the OOD score", "", f"`python benchmarks/adapt_ood.py` ({meta['date']}, "
             f"{meta['threads']} CPU threads, adapt {meta['epochs']} epochs).", "",
             "## OOD score of the shipped checkpoint", "",
             "| dataset | cells | median score | above q99 | unmatched counts | verdict |", "|---|---:|---:|---:|---:|---|"]
    for r in ood_tab:
        lines.append(f"| {r['dataset']} | {r['cells']} | {r['median_score']:.3f} | {r['share_above_q99']:.0%} | "
                     f"{r['unmatched_count_share']:.0%} | {'far' if r['far'] else 'in range'} |")
    lines += ["", "## Clustering (Leiden, resolution 1): ARI / NMI", "",
              "| dataset | cells | PCA | zero-shot | adapted | adapted, no gene start | adapted, vocabulary kept "
              "| adapt s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in clus:
        name = r["dataset"] + (" (adapt tuned here)" if r["tuned_on"] else "")
        cell = [f"{r[k]['ari']:.3f} / {r[k]['nmi']:.3f}" for k in ("pca", "zero_shot", "adapted", "adapted_no_gene_init",
                                                                "adapted_no_growth")]
        lines.append(f"| {name} | {r['cells']} | " + " | ".join(cell) + f" | {r['adapted']['adapt_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    shared = shared_data_dir()
    model = foundation.load_pretrained()
    manifest = pd.read_csv(foundation.model.pretrained_path().parent / "corpus.tsv", sep="\t", keep_default_na=False)
    pb = foundation.datasets.pbmc3k()
    ho = read_holdout(foundation.model.pretrained_path().parent / "pbmc3k_holdout.tsv")
    ood_tab = ood_rows(model, shared, held_out(manifest)["file"].tolist(), pb[pb.obs_names.isin(ho["obs_name"])])
    clus = cluster_rows(model, shared, args.epochs)
    meta = {"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "epochs": args.epochs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapt_ood.json").write_text(json.dumps({"meta": meta, "ood": ood_tab, "clustering": clus}, indent=1))
    (args.out / "adapt_ood.md").write_text(to_markdown(ood_tab, clus, meta))
    print(to_markdown(ood_tab, clus, meta))


if __name__ == "__main__":
    main()
