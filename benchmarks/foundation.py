"""Foundation-model benchmark (run on demand, not in CI): `python benchmarks/foundation.py`.

Writes benchmarks/results/foundation.json and foundation.md with
1. CPU embedding throughput (median cells/s over repeats) and peak RSS of the shipped checkpoint, beside a
   generic dense transformer of the same width/depth over a fixed 1,200-gene window, run in the same
   process (the ratio is what carries over between machines);
2. zero-shot quality on the pbmc3k cells held out of pretraining: Leiden ARI/NMI of X_cellvq vs PCA of
   log-normalised counts, code ARI/NMI, kNN label transfer macro-F1 (train cells -> held-out cells);
3. the two SCD quantisers (soft conditional VQ vs EMA hard VQ, plus no quantiser, and the soft VQ without
   the cross-view loss, as ablations) trained with the same budget on the pbmc3k training cells;
4. on a GPU (when CUDA is available): benchmarks/foundation_gpu.py -- bf16 embedding and pretraining throughput,
   model-FLOPs utilisation and peak memory at the issue's 38M / 302M sizes beside the dense reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resample(adata, n: int, seed: int = 0):
    idx = np.random.default_rng(seed).choice(adata.n_obs, size=n, replace=n > adata.n_obs)
    out = adata[idx].copy()
    out.obs_names_make_unique()
    return out


def bench_embedding(model, adata, repeats: int, batch_size: int, window: int = 1200) -> dict:
    from foundation.data import align_genes, get_counts, to_vocab_csr

    times = []
    for _ in range(repeats):
        a = adata.copy()
        t = time.perf_counter()
        model.embed(a, batch_size=batch_size, progress=False)
        times.append(time.perf_counter() - t)
    cps = adata.n_obs / statistics.median(times)
    # length bucketing vs cells in file order, same process, runs interleaved. Nearly every pbmc3k cell
    # expresses more genes than max_tokens, so every batch is full either way; bucketing matters where depth
    # varies: the same cells binomially thinned to a random 5-100% of their UMIs (shallow droplets)
    from foundation.tokens import thin_counts

    shallow = adata.copy()
    shallow.X = thin_counts(get_counts(adata), np.random.default_rng(0), keep_min=0.05)
    btimes_sorted, btimes_file = [], []
    for _ in range(repeats):
        for flag, sink in ((True, btimes_sorted), (False, btimes_file)):
            a = shallow.copy()
            t = time.perf_counter()
            model.embed(a, batch_size=batch_size, progress=False, sort_by_length=flag)
            sink.append(time.perf_counter() - t)
    shallow_cps = adata.n_obs / statistics.median(btimes_sorted)
    unsorted_cps = adata.n_obs / statistics.median(btimes_file)
    rss_cellvq = peak_rss_mb()  # before the dense baseline, whose L x L attention dominates memory
    # dense baseline over the `window` most expressed vocabulary genes of this dataset
    c = model.config
    from foundation_gpu import DenseReference  # the generic dense transformer, shared with the GPU benchmark

    base = DenseReference(c.n_genes, c.d_model, c.n_layers, c.n_heads, c.d_ff).eval()
    counts = get_counts(adata)
    al = align_genes(adata, model.vocab)
    vc = to_vocab_csr(counts, al, len(model.vocab))
    top = np.argsort(-np.asarray(vc.sum(0)).ravel())[:window]
    dense = vc[:, top].toarray()
    lib = np.asarray(counts.sum(1)).ravel()[:, None]
    vals = torch.from_numpy(np.log1p(dense / lib * 1e4).astype(np.float32))
    ids = torch.from_numpy(np.broadcast_to(top, dense.shape).copy())
    btimes = []
    n_base = min(adata.n_obs, 300)  # the dense baseline is slow on CPU; its median over repeats is enough
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            for s in range(0, n_base, batch_size):
                base(ids[s : s + batch_size], vals[s : s + batch_size])
            btimes.append(time.perf_counter() - t)
    base_cps = n_base / statistics.median(btimes)
    return {"cells": int(adata.n_obs), "cells_per_s": round(cps, 1), "seconds_median": round(statistics.median(times), 2),
            "shallow_cells_per_s": round(shallow_cps, 1), "shallow_unsorted_cells_per_s": round(unsorted_cps, 1),
            "speedup_of_length_bucketing": round(shallow_cps / unsorted_cps, 2),
            "dense_baseline_cells_per_s": round(base_cps, 1), "speedup_vs_dense": round(cps / base_cps, 2),
            "dense_window_genes": window, "mean_tokens_per_cell": float(np.diff(vc.indptr).clip(max=c.max_tokens).mean()),
            "peak_rss_mb_cellvq": round(rss_cellvq, 1),
            "peak_rss_mb_with_dense_baseline": round(peak_rss_mb(), 1)}


def zero_shot(model, pbmc, holdout_names) -> dict:
    from foundation import tasks

    full = pbmc.copy()
    tasks.pca_baseline(full)  # one PCA basis for both halves
    test = full[full.obs_names.isin(holdout_names)].copy()
    train = full[~full.obs_names.isin(holdout_names)].copy()
    model.embed(test, progress=False)
    model.embed(train, progress=False)
    res = {"n_heldout": int(test.n_obs)}
    for rep in ("X_cellvq", "X_pca_baseline"):
        sc = tasks.best_leiden_scores(test, use_rep=rep, label_key="cell_type")
        res[rep] = {"default": sc["default"], "oracle": sc["oracle"]}
        pred = tasks.transfer_labels(train, test, "cell_type", use_rep=rep)
        res[rep]["label_transfer_macro_f1"] = round(tasks.macro_f1(test.obs["cell_type"], pred["predicted"]), 4)
    res["code_scores"] = tasks.cluster_scores(test, "cell_type", "cellvq_code")
    res["codes_used"] = test.uns["cellvq"]["codes_used"]
    res["code_perplexity"] = round(test.uns["cellvq"]["code_perplexity"], 2)
    return res


def scvi_baseline(pbmc, holdout_names, max_epochs: int = 200, seed: int = 0) -> dict:
    """scVI (scvi-tools, if it installs: `pip install -e ".[bench]"`) trained on the same pbmc3k training
    cells that CellVQ saw, then asked for the latent of the held-out cells: the same split as CellVQ's
    figures. Unlike CellVQ it is fitted to this dataset alone (2,000 HVGs of the training cells)."""
    try:
        import scvi
    except ImportError as exc:
        return {"skipped": f"scvi-tools not installed ({exc}); pip install -e '.[bench]'"}
    import scanpy as sc

    from foundation import tasks

    scvi.settings.seed = seed
    full = pbmc.copy()
    full.layers["counts"] = full.X.copy()
    train = full[~full.obs_names.isin(holdout_names)].copy()
    hv = sc.pp.highly_variable_genes(train, flavor="seurat_v3", n_top_genes=2000, layer="counts", inplace=False)
    genes = train.var_names[hv["highly_variable"].to_numpy()]
    train = train[:, genes].copy()
    test = full[full.obs_names.isin(holdout_names)][:, genes].copy()
    scvi.model.SCVI.setup_anndata(train, layer="counts")
    t = time.perf_counter()
    model = scvi.model.SCVI(train, n_latent=30)
    model.train(max_epochs=max_epochs, accelerator="cpu", enable_progress_bar=False)
    secs = time.perf_counter() - t
    scvi.model.SCVI.setup_anndata(test, layer="counts")
    test.obsm["X_scvi"] = model.get_latent_representation(test)
    train.obsm["X_scvi"] = model.get_latent_representation(train)
    s = tasks.best_leiden_scores(test, use_rep="X_scvi", label_key="cell_type")
    pred = tasks.transfer_labels(train, test, "cell_type", use_rep="X_scvi")
    return {"version": scvi.__version__, "train_seconds": round(secs, 1), "max_epochs": max_epochs,
            "default": s["default"], "oracle": s["oracle"],
            "label_transfer_macro_f1": round(tasks.macro_f1(test.obs["cell_type"], pred["predicted"]), 4)}


def quantizers(pbmc, holdout_names, epochs: int, path: Path) -> dict:
    from foundation import CellVQ, CellVQConfig, tasks
    from foundation.config import TrainConfig

    test = pbmc[pbmc.obs_names.isin(holdout_names)].copy()
    hold = {(path.name, n) for n in holdout_names}
    out = {}
    variants = {"soft_conditional": ("soft_conditional", 1.0), "ema": ("ema", 1.0), "none": ("none", 1.0),
                "soft_conditional, no cross-view loss": ("soft_conditional", 0.0)}
    for label, (q, cw) in variants.items():
        t = time.perf_counter()
        m = CellVQ.pretrain([path], CellVQConfig.tiny(quantizer=q),
                            TrainConfig(epochs=epochs, lr=2e-3, warmup_steps=50, contrastive_weight=cw),
                            holdout=hold, progress=False)
        secs = time.perf_counter() - t
        a = test.copy()
        m.embed(a, progress=False)
        sc = tasks.best_leiden_scores(a, use_rep="X_cellvq", label_key="cell_type")
        out[label] = {"train_seconds": round(secs, 1), "codes_used": a.uns["cellvq"]["codes_used"],
                  "code_perplexity": round(a.uns["cellvq"]["code_perplexity"], 2),
                  "leiden_default": sc["default"], "code_scores": tasks.cluster_scores(a, "cell_type", "cellvq_code")}
    return out


def gpu_section(out: Path) -> dict:
    """On a CUDA machine: ``benchmarks/foundation_gpu.py`` (bf16 throughput, MFU and peak memory of the CellVQ
    encoder at the issue's 38M and 302M sizes beside the dense reference), written next to this report."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine; run benchmarks/foundation_gpu.py on one"}
    import foundation_gpu

    return foundation_gpu.main(["--out", str(out)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=10000, help="cells for the throughput test (pbmc3k resampled)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--quantizer-epochs", type=int, default=6)
    ap.add_argument("--skip-quantizers", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.manual_seed(0)

    import foundation
    from foundation import datasets
    from foundation.holdout import read_holdout

    model = foundation.load_pretrained()
    pbmc = datasets.pbmc3k()
    holdout = read_holdout(foundation.model.pretrained_path().parent / "pbmc3k_holdout.tsv")["obs_name"].tolist()
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu": platform.processor() or platform.machine()}, "model": repr(model)}
    print("1/4 embedding throughput ...", flush=True)
    report["embedding_cpu"] = bench_embedding(model, resample(pbmc, args.cells), args.repeats, args.batch_size)
    print("2/4 zero-shot on held-out cells ...", flush=True)
    report["zero_shot_heldout"] = zero_shot(model, pbmc, holdout)
    print("   scVI on the same split ...", flush=True)
    report["zero_shot_heldout"]["X_scvi"] = scvi_baseline(pbmc, holdout)
    if not args.skip_quantizers:
        print("3/4 quantiser comparison ...", flush=True)
        report["quantizers"] = quantizers(pbmc, holdout, args.quantizer_epochs, datasets.dataset_path("pbmc3k"))
    print("4/4 GPU section ...", flush=True)
    report["gpu"] = gpu_section(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "foundation.json").write_text(json.dumps(report, indent=2, default=float))
    e, z = report["embedding_cpu"], report["zero_shot_heldout"]
    lines = ["# Foundation benchmark", "", f"Model: `{report['model']}`; torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
             "## CPU embedding", "",
             "| cells | CellVQ cells/s (median) | dense 1,200-gene baseline cells/s | CellVQ vs dense | peak RSS MB (CellVQ) |",
             "|---:|---:|---:|---:|---:|",
             f"| {e['cells']} | {e['cells_per_s']} | {e['dense_baseline_cells_per_s']} | {e['speedup_vs_dense']}x | "
             f"{e['peak_rss_mb_cellvq']} |", "",
             "Length bucketing, on the same cells thinned to 5-100% of their UMIs (depth varies):", "",
             "| bucketed cells/s | cells in file order | gain |", "|---:|---:|---:|",
             f"| {e['shallow_cells_per_s']} | {e['shallow_unsorted_cells_per_s']} | {e['speedup_of_length_bucketing']}x |", "",
             f"## Zero-shot on {z['n_heldout']} held-out pbmc3k cells", "",
             "| representation | Leiden ARI (res 1.0) | NMI | ARI (oracle res) | kNN transfer macro-F1 |", "|---|---:|---:|---:|---:|"]
    for rep in ("X_cellvq", "X_pca_baseline", "X_scvi"):
        r = z[rep]
        if "skipped" in r:
            lines.append(f"| {rep} | {r['skipped']} | | | |")
            continue
        lines.append(f"| {rep} | {r['default']['ari']:.3f} | {r['default']['nmi']:.3f} | {r['oracle']['ari']:.3f} | {r['label_transfer_macro_f1']:.3f} |")
    lines += ["", f"Cell codes: {z['codes_used']} used, perplexity {z['code_perplexity']}, code ARI {z['code_scores']['ari']:.3f}, "
              f"NMI {z['code_scores']['nmi']:.3f}.", ""]
    if "quantizers" in report:
        lines += ["## Quantisers (same budget, pbmc3k training cells)", "", "| quantiser | codes used | perplexity | Leiden ARI | code NMI | train s |",
                  "|---|---:|---:|---:|---:|---:|"]
        for q, r in report["quantizers"].items():
            lines.append(f"| {q} | {r['codes_used']} | {r['code_perplexity']} | {r['leiden_default']['ari']:.3f} | "
                         f"{r['code_scores']['nmi']:.3f} | {r['train_seconds']} |")
        lines.append("")
    lines += ["## GPU", "", "```", json.dumps(report["gpu"], indent=2), "```", ""]
    (args.out / "foundation.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
