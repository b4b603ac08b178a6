"""Zero-shot figures of one checkpoint within and across experiments (run on demand, not in CI).

    python benchmarks/foundation_transfer.py [CHECKPOINT ...] [--out benchmarks/results]

For each checkpoint folder (default: the shipped one) it measures, on real data:
- pbmc3k cells held out of pretraining: Leiden ARI (resolution 1, mean of Leiden seeds 0-2) and kNN label
  transfer macro-F1 from the training cells;
- pbmc68k_reduced (other donors, a 765-gene panel, never seen): Leiden ARI against ``bulk_labels``;
- annotation of pbmc68k from pbmc3k on the coarse lineages both resolve (B, T, NK, monocyte, DC): macro-F1
  of a plain transfer between the two datasets' own embeddings, and of
  :func:`foundation.tasks.transfer_labels_across` (both embedded on the genes both measured), kNN and
  logistic regression;
- panel dependence: median cosine between each pbmc3k cell embedded from all its genes and from only the
  genes pbmc68k measured.

Writes ``foundation_transfer.json`` and ``.md``. The training variants in the README's "Across experiments"
table were pretrained with ``make pretrain``'s command plus the options named there
(``--panel-prob``, ``--panel-cell-prob``, ``--mix-cells``) and measured with this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COARSE_PBMC3K = {"Naive CD4 T": "T", "Memory CD4 T": "T", "CD8 T": "T", "B": "B", "CD14+ Mono": "Mono",
                 "FCGR3A+ Mono": "Mono", "NK": "NK", "DC": "DC", "Platelet": "Platelet"}
COARSE_PBMC68K = {"CD19+ B": "B", "CD14+ Monocyte": "Mono", "CD4+/CD25 T Reg": "T", "CD8+ Cytotoxic T": "T",
                  "CD8+/CD45RA+ Naive Cytotoxic": "T", "CD56+ NK": "NK", "CD4+/CD45RO+ Memory": "T",
                  "CD4+/CD45RA+/CD25- Naive T": "T", "Dendritic": "DC"}


def mean_leiden_ari(adata, rep: str, label: str, seeds=(0, 1, 2)) -> float:
    from foundation import tasks

    out = []
    for seed in seeds:
        tasks.leiden(adata, use_rep=rep, resolution=1.0, key_added="_leiden", seed=seed)
        out.append(tasks.cluster_scores(adata, label, "_leiden")["ari"])
    return float(np.mean(out))


def evaluate(path: Path) -> dict:
    import foundation
    from foundation import datasets, tasks
    from foundation.holdout import read_holdout
    from foundation.model import pretrained_path

    model = foundation.CellVQ.load(path)
    res: dict = {"checkpoint": str(path), "n_parameters": model.n_parameters()}
    pbmc = datasets.pbmc3k()
    names = read_holdout(pretrained_path().parent / "pbmc3k_holdout.tsv")["obs_name"]
    test, train = pbmc[pbmc.obs_names.isin(names)].copy(), pbmc[~pbmc.obs_names.isin(names)].copy()
    model.embed(test, progress=False)
    model.embed(train, progress=False)
    res["heldout_leiden_ari"] = mean_leiden_ari(test, "X_cellvq", "cell_type")
    pred = tasks.transfer_labels(train, test, "cell_type")["predicted"]
    res["heldout_knn_macro_f1"] = tasks.macro_f1(test.obs["cell_type"], pred)
    q = datasets.pbmc68k()
    model.embed(q, progress=False)
    res["pbmc68k_leiden_ari"] = mean_leiden_ari(q, "X_cellvq", "bulk_labels")
    pbmc.obs["coarse"] = pbmc.obs["cell_type"].astype(str).map(COARSE_PBMC3K)
    q = q[q.obs["bulk_labels"].astype(str).isin(list(COARSE_PBMC68K))].copy()
    truth = q.obs["bulk_labels"].astype(str).map(COARSE_PBMC68K)
    model.embed(pbmc, progress=False)
    for method in ("knn", "logreg"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tasks.GenePanelWarning)
            plain = tasks.transfer_labels(pbmc, q, "coarse", method=method)["predicted"]
        res[f"plain_transfer_{method}_f1"] = tasks.macro_f1(truth, plain)
        across = tasks.transfer_labels_across(model, pbmc, q, "coarse", method=method)["predicted"]
        res[f"shared_genes_transfer_{method}_f1"] = tasks.macro_f1(truth, across)
    shared = pbmc[:, pbmc.var_names.isin(q.var_names)].copy()
    model.embed(shared, progress=False)
    z1, z2 = pbmc.obsm["X_cellvq"], shared.obsm["X_cellvq"]
    cos = (z1 * z2).sum(1) / np.linalg.norm(z1, axis=1) / np.linalg.norm(z2, axis=1)
    res["panel_cosine_median"] = float(np.median(cos))
    res["shared_genes"] = int(shared.n_vars)
    return res


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    from foundation.model import pretrained_path

    rows = [evaluate(p) for p in (args.checkpoints or [pretrained_path()])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "foundation_transfer.json").write_text(json.dumps(rows, indent=2))
    lines = ["# Zero-shot within and across experiments", "",
             "| checkpoint | panel cosine | plain pbmc3k→pbmc68k F1 (kNN / logreg) | on shared genes (kNN / logreg) "
             "| pbmc3k held-out ARI | kNN F1 | pbmc68k ARI |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{Path(r['checkpoint']).name}` | {r['panel_cosine_median']:.2f} | "
                     f"{r['plain_transfer_knn_f1']:.2f} / {r['plain_transfer_logreg_f1']:.2f} | "
                     f"{r['shared_genes_transfer_knn_f1']:.2f} / {r['shared_genes_transfer_logreg_f1']:.2f} | "
                     f"{r['heldout_leiden_ari']:.3f} | {r['heldout_knn_macro_f1']:.3f} | {r['pbmc68k_leiden_ari']:.3f} |")
    lines.append("")
    (args.out / "foundation_transfer.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
