"""Perturbation-effect prediction benchmark (issue 14 A): leave-perturbation-out, every method in one run.

    python -m benchmarks.perturbation          # writes benchmarks/results/perturbation.md + .json

Datasets: Papalexi 2021 THP-1 CRISPR KO (25 targets, pseudobulk shifts) and Gasperini 2019 K562 CRISPRi
high MOI (the 10 TSS targets of `tss_targets`, all measured; joint ridge fit per target, batch-centred). Seeds 0-2 x 5 grouped folds each.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import anndata as ad
import pandas as pd

import foundation
from foundation import datasets
from foundation.perturb import EvalConfig, PerturbConfig, evaluate, perturbation_shifts, summarize

OUT = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)


def _load() -> dict[str, tuple]:
    gas = ad.read_h5ad(datasets.shared_data_dir() / "perturbation" / "gasperini2019_k562_highmoi_sceptre.h5ad")
    return {
        "papalexi_crispr": (datasets.papalexi_crispr(), PerturbConfig()),
        "gasperini2019_highmoi": (gas, PerturbConfig(key="tss_targets", control="none", batch_key="batch")),
    }


def run() -> tuple[pd.DataFrame, dict]:
    emb = foundation.load_pretrained().gene_embedding()
    tables, info = [], {}
    for name, (adata, cfg) in _load().items():
        t0 = time.perf_counter()
        data = perturbation_shifts(adata, cfg)
        info[name] = {"perturbations": len(data.perturbations), "genes": len(data.genes),
                      "shift_seconds": round(time.perf_counter() - t0, 2)}
        for seed in SEEDS:
            tables.append(evaluate(data, emb, EvalConfig(n_folds=5, seed=seed), dataset=name).assign(seed=seed))
    return pd.concat(tables, ignore_index=True), info


def _markdown(table: pd.DataFrame, info: dict) -> str:
    summ = summarize(table)
    secs = table.groupby(["dataset", "method", "seed", "fold"])["seconds"].first().groupby(["dataset", "method"]).median()
    summ["median_fold_seconds"] = [secs[(d, m)] for d, m in zip(summ.dataset, summ.method)]
    lines = ["# Perturbation-effect prediction (leave-perturbation-out)", "",
             "`python -m benchmarks.perturbation`. Mean over held-out perturbations of 5 grouped folds x seeds "
             f"{list(SEEDS)}. Shifts: mean log-normalised expression minus control. Pearson-delta = Pearson over each "
             "perturbation's top-20 DE genes (by |observed shift|); a constant prediction scores 0. "
             "`[cellvq]` = CellVQ gene embeddings of the shipped checkpoint, `[random]` = Gaussian of the same shape, "
             "`[none]` = no embedding (the CellVQ predictor keeps only its self/knock-down term).", "",
             f"Datasets: {json.dumps(info)}", f"Machine: {platform.machine()} {platform.python_version()} (times vary).", "",
             "| dataset | method | Pearson all | Pearson-delta (top-20) | MSE top-20 | direction top-20 | fold s |",
             "|---|---|---|---|---|---|---|"]
    for r in summ.itertuples():
        lines.append(f"| {r.dataset} | {r.method} | {r.pearson_all:.3f} | {r.pearson_de:.3f} | {r.mse_de:.4f} | "
                     f"{r.direction_de:.3f} | {r.median_fold_seconds:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    table, info = run()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "perturbation.md").write_text(_markdown(table, info))
    payload = {"datasets": info, "seeds": list(SEEDS), "summary": summarize(table).to_dict(orient="records")}
    (OUT / "perturbation.json").write_text(json.dumps(payload, indent=1))
    print((OUT / "perturbation.md").read_text())


if __name__ == "__main__":
    main()
