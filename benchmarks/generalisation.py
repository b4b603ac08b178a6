"""Generalisation of CellVQ to whole datasets it never saw (issue 11 item 7; run on demand, not in CI).

    python benchmarks/generalisation.py [--datasets KEY ...] [--max-cells 3000] [--adapt-epochs 2]
                                        [--scvi-epochs 50] [--no-optional] [--no-pairs] [--out benchmarks/results]
                                        [--checkpoint CHECKPOINT_DIR]

On every labelled held-out dataset of ``foundation/pretrained/corpus.tsv`` (and the pbmc3k cells held out of
pretraining), subsampled to ``--max-cells`` (seed 0), for each representation:

- zero-shot CellVQ (``X_cellvq`` of the shipped checkpoint), adapted CellVQ (``CellVQ.adapt`` on the same
  cells, ``--adapt-epochs``, labels never read), PCA of 2,000 HVGs (``foundation.tasks.pca_baseline``),
  scVI (``scvi-tools``, 2,000 HVGs, ``--scvi-epochs``) and, where the dataset has batches, Harmony on that
  PCA (``harmonypy``);
- bio-conservation: k-means ARI and NMI (k = number of labels) and cell-type ASW; batch mixing where there
  are batches: batch ASW and iLISI (all from ``scib-metrics``; without it ARI/NMI/ASW come from
  scikit-learn and the batch columns are left empty, said so in the table);
- coarse-code NMI vs label and, across batches, coarse-code agreement (``foundation.codes``);
- embedding cells/s of CellVQ beside PCA's in the same process (absolute numbers vary between machines).

Across experiments (pairs of held-out PBMC datasets on the lineages both resolve): kNN label transfer
macro-F1 both ways for CellVQ zero-shot, CellVQ on the genes both measured
(``tasks.transfer_labels_across``) and a PCA fitted jointly on the shared genes; and coarse-code agreement.

The optional packages come with ``pip install -e ".[bench]"``; ``--no-optional`` runs without them (the smoke
test does). Writes ``generalisation.json`` and ``generalisation.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anndata as ad  # noqa: E402

import foundation  # noqa: E402
from foundation import codes, tasks  # noqa: E402
from foundation.datasets import shared_data_dir  # noqa: E402
from foundation.holdout import read_holdout  # noqa: E402
from foundation.model import pretrained_path  # noqa: E402

# PBMC labels of the held-out sets on the lineages all of them resolve (for transfer across experiments)
LINEAGE = {"nk": "NK", "bcells": "B", "memoryt": "T", "regulatoryt": "T", "thelper": "T", "cytotoxict": "T",
           "monocytes": "Mono", "naivet": "T", "naivecytotoxic": "T", "Naive CD4 T": "T", "Memory CD4 T": "T",
           "CD8 T": "T", "B": "B", "CD14+ Mono": "Mono", "FCGR3A+ Mono": "Mono", "NK": "NK", "DC": "DC",
           "Platelet": "Platelet", "cd4nc": "T", "bmem": "B", "monoc": "Mono", "mononc": "Mono"}


@dataclass
class Dataset:
    key: str
    file: str
    label: str
    batch: str | None = None
    subset: tuple[str, str] | None = None  # keep cells with obs[col] == value


DATASETS = [
    Dataset("pbmc3k_heldout", "pbmc3k_counts.h5ad", "cell_type"),
    Dataset("zheng_sorted", "corpus/mudan_zheng_sorted_pbmc.h5ad", "cell_type"),
    Dataset("onek1k", "corpus/onek1k_example_sce.h5ad", "cell_type", "donor"),
    Dataset("moncada_pdac", "corpus/moncada2020_pdac_card.h5ad", "cell_type"),
    Dataset("darmanis_brain", "corpus/darmanis2015_brain.h5ad", "cell_type", "batch"),
    Dataset("allen_m1_141genes", "corpus/allen_human_m1_141genes.h5ad", "celltype", "donor"),
    Dataset("onek1k_100genes", "corpus/onek1k_example_sce_100genes_14types.h5ad", "cell_type", "donor"),
    Dataset("onek1k_bcell", "corpus/onek1k_example_sce_Bcell.h5ad", "cell_type", "donor"),
    Dataset("cimseq_celllines", "corpus/cimseq_sorted_celllines_known_multiplets.h5ad", "cell_line",
            subset=("well_type", "singlet")),
]
# held-out files of the manifest without cell labels: not scored here (bio-conservation needs labels)
UNLABELLED = ["combat_covid_pbmc_scdapp", "damagedetective_test500", "hao2021_pbmc1k_speck", "mudan_pbmc_donorA",
              "pisces_pbmc1k", "scwgparis_1k_PBMC_v2_filt", "scwgparis_1k_PBMC_v3_filt",
              "scwgparis_5prime_PBMC_filt_1kcells", "cimseq_fetal_pancreas_singlets_multiplets",
              "berginski_trametinib_cells", "gasperini2019_k562_highmoi_sceptre"]
PAIRS = [("pbmc3k_heldout", "zheng_sorted"), ("pbmc3k_heldout", "onek1k"), ("zheng_sorted", "onek1k")]


@dataclass
class BenchConfig:
    datasets: list[str] = field(default_factory=lambda: [d.key for d in DATASETS])
    max_cells: int = 3000
    adapt_epochs: int = 2
    scvi_epochs: int = 50
    optional: bool = True
    pairs: bool = True
    seed: int = 0
    reuse: Path | None = None  # an earlier generalisation.json whose dataset rows and pairs are kept
    checkpoint: Path | None = None  # a checkpoint folder to score instead of the shipped model

    def settings(self) -> dict:
        return {"max_cells": self.max_cells, "adapt_epochs": self.adapt_epochs, "scvi_epochs": self.scvi_epochs}


def load(ds: Dataset, shared: Path, cfg: BenchConfig):
    a = ad.read_h5ad(shared / ds.file)
    if ds.key == "pbmc3k_heldout":  # only the cells kept out of pretraining
        names = set(read_holdout(pretrained_path().parent / "pbmc3k_holdout.tsv")["obs_name"])
        a = a[a.obs_names.isin(names)]
    if ds.subset is not None:
        a = a[a.obs[ds.subset[0]].astype(str) == ds.subset[1]]
    a = a[a.obs[ds.label].notna()]
    if a.n_obs > cfg.max_cells:
        a = a[np.sort(np.random.default_rng(cfg.seed).choice(a.n_obs, cfg.max_cells, replace=False))]
    return a.copy()


# ------------------------------------------------------------------------------------------ metrics
def bio_metrics(X: np.ndarray, labels: np.ndarray, optional: bool) -> dict:
    if optional:
        import scib_metrics

        r = scib_metrics.nmi_ari_cluster_labels_kmeans(X, labels)
        asw = scib_metrics.silhouette_label(X, labels)
        return {"ari": float(r["ari"]), "nmi": float(r["nmi"]), "asw": float(asw)}
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    pred = KMeans(len(np.unique(labels)), n_init=10, random_state=0).fit_predict(X)
    return {"ari": float(adjusted_rand_score(labels, pred)), "nmi": float(normalized_mutual_info_score(labels, pred)),
            "asw": float((silhouette_score(X, labels) + 1) / 2)}


def batch_metrics(X: np.ndarray, labels: np.ndarray, batch: np.ndarray, optional: bool) -> dict:
    if not optional:
        return {}
    import scib_metrics
    from scib_metrics.nearest_neighbors import pynndescent

    nn = pynndescent(X, n_neighbors=min(90, X.shape[0] - 1), random_state=0)
    return {"batch_asw": float(scib_metrics.silhouette_batch(X, labels, batch)),
            "ilisi": float(scib_metrics.ilisi_knn(nn, batch))}


def score(X, a, ds: Dataset, optional: bool) -> dict:
    labels = a.obs[ds.label].astype(str).to_numpy()
    X = np.asarray(X, dtype=np.float32)
    out = bio_metrics(X, labels, optional)
    if ds.batch is not None:
        out.update(batch_metrics(X, labels, a.obs[ds.batch].astype(str).to_numpy(), optional))
    return {k: round(v, 3) for k, v in out.items()}


# ---------------------------------------------------------------------------------- representations
def cellvq_rep(model, a) -> tuple[np.ndarray, dict]:
    e = codes.embed_copy(model, a)
    return e.obsm["X_cellvq"], {"cells_per_second": round(e.uns["cellvq"]["cells_per_second"], 1), "embedded": e}


def pca_rep(a) -> tuple[np.ndarray, dict]:
    t0 = time.perf_counter()
    X = tasks.pca_baseline(a.copy())
    return X, {"cells_per_second": round(a.n_obs / (time.perf_counter() - t0), 1)}


def scvi_rep(a, ds: Dataset, cfg: BenchConfig) -> tuple[np.ndarray, dict]:
    import scanpy as sc
    import scvi

    scvi.settings.seed = cfg.seed
    b = a.copy()
    b.layers["counts"] = b.X.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    sc.pp.highly_variable_genes(b, n_top_genes=min(2000, b.n_vars), flavor="seurat", subset=True)
    scvi.model.SCVI.setup_anndata(b, layer="counts", batch_key=ds.batch)
    m = scvi.model.SCVI(b, n_latent=10)
    t0 = time.perf_counter()
    m.train(max_epochs=cfg.scvi_epochs, accelerator="cpu", enable_progress_bar=False, early_stopping=False)
    return m.get_latent_representation(), {"train_seconds": round(time.perf_counter() - t0, 1)}


def harmony_rep(pca: np.ndarray, a, ds: Dataset, cfg: BenchConfig) -> tuple[np.ndarray, dict]:
    import harmonypy

    ho = harmonypy.run_harmony(pca, a.obs[[ds.batch]], [ds.batch], random_state=cfg.seed, verbose=False)
    Z = np.asarray(ho.Z_corr)
    return (Z.T if Z.shape[0] != pca.shape[0] else Z), {}


def code_figures(e, ds: Dataset) -> dict:
    if "cellvq_code_coarse" not in e.obs:
        return {}
    obs = e.obs
    out = {"coarse_nmi": round(codes.nmi(obs[ds.label], obs["cellvq_code_coarse"]), 3),
           "fine_nmi": round(codes.nmi(obs[ds.label], obs["cellvq_code_id"]), 3),
           "coarse_used": int(obs["cellvq_code_coarse"].nunique())}
    if ds.batch is not None:  # first half of the batches vs the rest
        b = obs[ds.batch].astype(str)
        first = b.isin(sorted(b.unique())[: max(1, b.nunique() // 2)]).to_numpy()
        ag = codes.code_agreement(obs["cellvq_code_coarse"][first], obs[ds.label][first],
                                  obs["cellvq_code_coarse"][~first], obs[ds.label][~first])
        out["agreement_across_batches"] = {k: round(float(v), 3) for k, v in ag.items()}
    return out


def run_dataset(model, ds: Dataset, shared: Path, cfg: BenchConfig) -> tuple[dict, object]:
    a = load(ds, shared, cfg)
    res: dict = {"dataset": ds.key, "file": ds.file, "cells": a.n_obs, "labels": int(a.obs[ds.label].nunique()),
                 "batch": ds.batch, "settings": cfg.settings(), "methods": {}, "skipped": {}}
    X, info = cellvq_rep(model, a)
    e = info.pop("embedded")
    res["methods"]["CellVQ zero-shot"] = {**score(X, a, ds, cfg.optional), **info}
    res["codes"] = code_figures(e, ds)
    res["count_match_rate"] = round(e.uns["cellvq"]["count_match_rate"], 3)
    pca, info = pca_rep(a)
    res["methods"]["PCA (HVG)"] = {**score(pca, a, ds, cfg.optional), **info}
    run_adapted(model, a, ds, cfg, res)
    run_optional(a, pca, ds, cfg, res)
    print(json.dumps({k: res[k] for k in ("dataset", "cells", "methods")}), flush=True)
    return res, e


def run_adapted(model, a, ds: Dataset, cfg: BenchConfig, res: dict) -> None:
    if cfg.adapt_epochs < 1:
        res["skipped"]["CellVQ adapted"] = "--adapt-epochs 0"
        return
    t0 = time.perf_counter()
    try:
        child = model.adapt(a, epochs=cfg.adapt_epochs, progress=False, seed=cfg.seed)
    except ValueError as exc:  # e.g. too few cells to adapt on
        res["skipped"]["CellVQ adapted"] = str(exc).split(":")[0]
        return
    seconds = round(time.perf_counter() - t0, 1)
    X, info = cellvq_rep(child, a)
    info.pop("embedded")
    res["methods"]["CellVQ adapted"] = {**score(X, a, ds, cfg.optional), **info, "adapt_seconds": seconds}


def run_optional(a, pca, ds: Dataset, cfg: BenchConfig, res: dict) -> None:
    if not cfg.optional:
        res["skipped"]["scVI"] = "--no-optional"
        if ds.batch:
            res["skipped"]["Harmony (PCA)"] = "--no-optional"
        return
    X, info = scvi_rep(a, ds, cfg)
    res["methods"]["scVI"] = {**score(X, a, ds, cfg.optional), **info}
    if ds.batch is not None:
        X, info = harmony_rep(pca, a, ds, cfg)
        res["methods"]["Harmony (PCA)"] = {**score(X, a, ds, cfg.optional), **info}


# ----------------------------------------------------------------------------------------- pairs
def on_vocab_names(model, a):
    """``a`` restricted to the genes the model's vocabulary knows, named by vocabulary symbol (so that two
    experiments, one named by symbols and one by Ensembl IDs, share their genes)."""
    from foundation.data import align_genes

    idx = align_genes(a, model.vocab).var_index
    keep = idx >= 0
    out = a[:, keep].copy()
    out.var_names = np.asarray(model.vocab.symbols)[idx[keep]]
    return out[:, ~out.var_names.duplicated()].copy()


def joint_pca_f1(model, a, b, label: str) -> float:
    a, b = on_vocab_names(model, a), on_vocab_names(model, b)
    genes = a.var_names.intersection(b.var_names)
    both = ad.concat([a[:, genes], b[:, genes]], label="_exp", keys=["a", "b"], index_unique="-")
    X = tasks.pca_baseline(both)
    ra, rb = both[both.obs["_exp"] == "a"].copy(), both[both.obs["_exp"] == "b"].copy()
    ra.obsm["X_joint"], rb.obsm["X_joint"] = X[(both.obs["_exp"] == "a").to_numpy()], X[(both.obs["_exp"] == "b").to_numpy()]
    return float(np.mean([_f1(r, q, label, "X_joint") for r, q in ((ra, rb), (rb, ra))]))


def _f1(ref, query, label: str, rep: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = tasks.transfer_labels(ref, query, label, use_rep=rep)["predicted"]
    return tasks.macro_f1(query.obs[label], pred)


def shared_lineages(a, b):
    a, b = a.copy(), b.copy()
    for x in (a, b):
        x.obs["lineage"] = x.obs["_label"].map(LINEAGE)
    keep = set(a.obs["lineage"].dropna()) & set(b.obs["lineage"].dropna())
    return a[a.obs["lineage"].isin(keep)].copy(), b[b.obs["lineage"].isin(keep)].copy(), sorted(keep)


def run_pair(model, ea, eb) -> dict:
    a, b, lineages = shared_lineages(ea, eb)
    f1_own = np.mean([_f1(r, q, "lineage", "X_cellvq") for r, q in ((a, b), (b, a))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        across = []
        for r, q in ((a, b), (b, a)):
            q2 = q.copy()
            pred = tasks.transfer_labels_across(model, r.copy(), q2, "lineage")["predicted"]
            across.append(tasks.macro_f1(q.obs["lineage"], pred))
    ag = codes.code_agreement(a.obs["cellvq_code_coarse"], a.obs["lineage"], b.obs["cellvq_code_coarse"], b.obs["lineage"])
    return {"lineages": lineages, "cells": [a.n_obs, b.n_obs], "f1_cellvq": round(float(f1_own), 3),
            "f1_cellvq_shared_genes": round(float(np.mean(across)), 3),
            "f1_joint_pca": round(joint_pca_f1(model, a, b, "lineage"), 3),
            "code_agreement": {k: round(float(v), 3) for k, v in ag.items()}}


# ------------------------------------------------------------------------------------------ report
COLS = ["CellVQ zero-shot", "CellVQ adapted", "PCA (HVG)", "scVI", "Harmony (PCA)"]


def fmt(m: dict | None, keys) -> str:
    if m is None:
        return "—"
    return " / ".join(f"{m[k]:.2f}" if k in m else "–" for k in keys)


def to_markdown(rows: list[dict], pairs: list[dict], meta: dict) -> str:
    L = ["# Generalisation to held-out datasets", "",
         f"`{meta['command']}` ({meta['date']}, {meta['threads']} CPU threads, {meta['machine']}; checkpoint "
         f"`{meta['checkpoint']}`, {meta['n_coarse']} coarse codes). Every dataset is a whole dataset never "
         "trained or tuned on (pbmc3k: its 791 held-out cells), subsampled to "
         f"{meta['config']['max_cells']} cells (seed 0; per dataset: last column). Adapted = `CellVQ.adapt`, "
         f"{meta['config']['adapt_epochs']} epochs on the same cells (no labels); scVI {meta['config']['scvi_epochs']} "
         "epochs, 2,000 HVGs. ARI/NMI: k-means with k = number of labels; ASW: cell-type silhouette (rescaled "
         f"to 0..1); {meta['metrics']}.", "",
         "## Bio-conservation: ARI / NMI / cell-type ASW", "",
         "| dataset | cells | labels | counts matched | " + " | ".join(COLS) + " | cells cap / adapt ep / scVI ep |",
         "|---|---:|---:|---:|" + "---|" * len(COLS) + "---|"]
    for r in rows:
        cells = [fmt(r["methods"].get(c), ("ari", "nmi", "asw")) if c in r["methods"]
                 else f"skipped: {r['skipped'].get(c, 'no batches')}" for c in COLS]
        st = r.get("settings", {})
        sets = f"{st.get('max_cells', '?')} / {st.get('adapt_epochs', '?')} / {st.get('scvi_epochs', '?')}"
        L.append(f"| {r['dataset']} | {r['cells']} | {r['labels']} | {r['count_match_rate']:.0%} | " + " | ".join(cells)
                 + f" | {sets} |")
    L += ["", "## Batch mixing (datasets with batches): batch ASW / iLISI (higher = better mixed)", "",
          "| dataset | batch | " + " | ".join(COLS) + " |", "|---|---|" + "---|" * len(COLS)]
    for r in rows:
        if r["batch"]:
            L.append(f"| {r['dataset']} | {r['batch']} | " + " | ".join(
                fmt(r["methods"].get(c), ("batch_asw", "ilisi")) for c in COLS) + " |")
    L += ["", "## Cell codes (zero-shot) and embedding speed", "",
          "| dataset | coarse-code NMI | fine-code NMI | coarse codes used | agreement across batches (same / other = ratio) "
          "| CellVQ cells/s | PCA cells/s | adapt s |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        c, m = r["codes"], r["methods"]
        ag = c.get("agreement_across_batches")
        ags = f"{ag['same']:.3f} / {ag['other']:.3f} = {ag['ratio']:.1f}x" if ag else "—"
        ad_s = m.get("CellVQ adapted", {}).get("adapt_seconds", "—")
        L.append(f"| {r['dataset']} | {c.get('coarse_nmi', '—')} | {c.get('fine_nmi', '—')} | {c.get('coarse_used', '—')} "
                 f"| {ags} | {m['CellVQ zero-shot']['cells_per_second']:.0f} | {m['PCA (HVG)']['cells_per_second']:.0f} | {ad_s} |")
    if pairs:
        L += ["", "## Across experiments (shared PBMC lineages): kNN label transfer macro-F1 (mean of both "
              "directions) and coarse-code agreement", "",
              "| pair | lineages | CellVQ zero-shot | CellVQ, shared genes | joint PCA | code agreement same / other = ratio |",
              "|---|---|---:|---:|---:|---|"]
        for p in pairs:
            ag = p["code_agreement"]
            L.append(f"| {p['pair']} | {', '.join(p['lineages'])} | {p['f1_cellvq']:.3f} | {p['f1_cellvq_shared_genes']:.3f} "
                     f"| {p['f1_joint_pca']:.3f} | {ag['same']:.3f} / {ag['other']:.3f} = {ag['ratio']:.1f}x |")
    pending = [d for d in meta["config"]["datasets"] if d not in {r["dataset"] for r in rows}]
    L += ["", f"Not scored: {', '.join(UNLABELLED)} (no cell labels)."]
    if pending:
        L.append(f"Not yet scored in this run (interrupted or still running): {', '.join(pending)}.")
    return "\n".join(L) + "\n"


def run(cfg: BenchConfig, out: Path, command: str) -> dict:
    import torch

    shared = shared_data_dir()
    model = foundation.CellVQ.load(cfg.checkpoint) if cfg.checkpoint else foundation.load_pretrained()
    chosen = {d.key: d for d in DATASETS}
    unknown = sorted(set(cfg.datasets) - set(chosen))
    if unknown:
        raise SystemExit(f"unknown --datasets {unknown}; choose from {sorted(chosen)}")
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "checkpoint": model.metadata.get("name"),
            "n_coarse": model.coarse.n_coarse if model.coarse is not None else 0,
            "config": {**asdict(cfg), "reuse": str(cfg.reuse) if cfg.reuse else None,
                       "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None},
            "metrics": "scib-metrics" if cfg.optional else "scikit-learn fallback (--no-optional: no scib-metrics, "
                       "scVI, Harmony, batch ASW or iLISI)"}
    done, pairs = reused(cfg)
    rows, embedded = [], {}
    for key in cfg.datasets:
        if key in done:  # scored by the earlier run: embedded again (cheap) only for the pairs
            res, e = done[key], codes.embed_copy(model, load(chosen[key], shared, cfg))
        else:
            res, e = run_dataset(model, chosen[key], shared, cfg)
        e.obs["_label"] = e.obs[chosen[key].label].astype(str)
        rows.append(res)
        embedded[key] = e
        write(out, meta, rows, pairs)
        for ka, kb in PAIRS if cfg.pairs else ():  # a pair as soon as both of its datasets are embedded
            have = any(p["pair"] == f"{ka} ↔ {kb}" for p in pairs)
            if key in (ka, kb) and ka in embedded and kb in embedded and not have:
                pairs.append({"pair": f"{ka} ↔ {kb}", **run_pair(model, embedded[ka], embedded[kb])})
                print(json.dumps(pairs[-1]), flush=True)
        write(out, meta, rows, pairs)  # partial results survive an interrupted run
    return write(out, meta, rows, pairs)


def reused(cfg: BenchConfig) -> tuple[dict[str, dict], list[dict]]:
    if cfg.reuse is None:
        return {}, []
    old = json.loads(Path(cfg.reuse).read_text())
    for r in old["datasets"]:
        r.setdefault("settings", {k: old["meta"]["config"][k] for k in ("max_cells", "adapt_epochs", "scvi_epochs")})
    return {r["dataset"]: r for r in old["datasets"]}, old.get("pairs", [])


def write(out: Path, meta: dict, rows: list[dict], pairs: list[dict]) -> dict:
    report = {"meta": meta, "datasets": rows, "pairs": pairs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "generalisation.json").write_text(json.dumps(report, indent=2))
    (out / "generalisation.md").write_text(to_markdown(rows, pairs, meta))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=BenchConfig().datasets)
    ap.add_argument("--max-cells", type=int, default=3000)
    ap.add_argument("--adapt-epochs", type=int, default=2)
    ap.add_argument("--scvi-epochs", type=int, default=50)
    ap.add_argument("--no-optional", action="store_true", help="run without scib-metrics, scvi-tools, harmonypy")
    ap.add_argument("--no-pairs", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="keep the dataset rows and pairs of an earlier generalisation.json (their settings stay recorded)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="checkpoint folder to score (default: the shipped model), e.g. foundation/pretrained/cellvq-small-human")
    args = ap.parse_args(argv)
    cfg = BenchConfig(args.datasets, args.max_cells, args.adapt_epochs, args.scvi_epochs, not args.no_optional,
                      not args.no_pairs, reuse=args.reuse, checkpoint=args.checkpoint)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    run(cfg, args.out, f"python benchmarks/generalisation.py {argv_s}".strip())


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
