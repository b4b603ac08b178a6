"""The corpus manifest shipped beside a checkpoint: which files it was trained on, and which were held out.

``foundation/pretrained/corpus.tsv`` has one row per human raw-count file of the shared data folder:
``file, sha256, cells, genes, tissue, technology, role, note``. ``role`` is ``train`` (in the checkpoint's
``metadata["corpus"]``), ``held-out`` (never seen, never tuned on: zero-shot figures come from these) or
``overlaps-train`` (never trained on, but sharing cells with a training file, e.g. the Kang 2018 files:
not an honest held-out set). Regenerate with ``python -m foundation.corpus`` after pretraining.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

MANIFEST = "corpus.tsv"
COLUMNS = ["file", "sha256", "cells", "genes", "tissue", "technology", "role", "note"]

# the top-level files carry no tissue/assay columns; these come from the shared data README
DESCRIBED = {
    "pbmc3k_counts.h5ad": ("blood", "10x 3' v1"),
    "celltypist_sample_counts.h5ad": ("blood (immune)", "10x"),
    "kang_ifnb_pbmc_subset_counts.h5ad": ("blood", "10x 3' v2"),
    "papalexi_thp1_crispr_counts.h5ad": ("cell line (THP-1)", "ECCITE-seq (10x)"),
}
# files that share cells with another file (shared data README, "Overlaps"): study -> file-name prefix
SAME_STUDY = {"kang": ("kang2018_", "kang_ifnb_"), "onek1k": ("onek1k_",)}


def human_files(shared: Path) -> list[Path]:
    """Every human raw-count h5ad of the shared data folder (top level, ``corpus/``, ``perturbation/``)."""
    import anndata as ad

    out = []
    for p in sorted([*shared.glob("*.h5ad"), *shared.glob("corpus/*.h5ad"), *shared.glob("perturbation/*.h5ad")]):
        a = ad.read_h5ad(p, backed="r")
        organism = str(a.obs["organism"].iloc[0]) if "organism" in a.obs else ("mouse" if "mouse" in p.name else "human")
        a.file.close()
        if organism.lower().startswith(("human", "homo")):
            out.append(p)
    return out


def study_of(name: str) -> str | None:
    for study, prefixes in SAME_STUDY.items():
        if name.startswith(prefixes):
            return study
    return None


def manifest(shared: Path, train: list[str], notes: dict[str, str] | None = None) -> pd.DataFrame:
    import anndata as ad

    from foundation.checkpoint import sha256_file

    train_studies = {study_of(t) for t in train} - {None}
    rows = []
    for p in human_files(shared):
        a = ad.read_h5ad(p, backed="r")
        first = a.obs.iloc[0] if a.n_obs else {}
        tissue, tech = DESCRIBED.get(p.name, (str(first.get("tissue", "")), str(first.get("assay", ""))))
        shape = a.shape
        a.file.close()
        role = "train" if p.name in train else ("overlaps-train" if study_of(p.name) in train_studies else "held-out")
        rows.append(dict(file=str(p.relative_to(shared)), sha256=sha256_file(p), cells=shape[0], genes=shape[1],
                         tissue=tissue, technology=tech, role=role, note=(notes or {}).get(p.name, "")))
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    """``python -m foundation.corpus [--shared DIR]``: write foundation/pretrained/corpus.tsv."""
    from foundation.datasets import shared_data_dir
    from foundation.holdout import read_holdout
    from foundation.model import load_pretrained, pretrained_path

    ap = argparse.ArgumentParser(prog="python -m foundation.corpus", description=main.__doc__)
    ap.add_argument("--shared", type=Path, default=None)
    args = ap.parse_args(argv)
    shared = args.shared or shared_data_dir()
    model = load_pretrained()
    held = read_holdout(pretrained_path().parent / "pbmc3k_holdout.tsv")
    notes = {f: f"{n} cells held out (pbmc3k_holdout.tsv)" for f, n in held["file"].value_counts().items()}
    df = manifest(shared, list(model.metadata.get("corpus", [])), notes)
    path = pretrained_path().parent / MANIFEST
    df.to_csv(path, sep="\t", index=False)
    print(df.groupby("role")[["cells"]].agg(["count", "sum"]).to_string())
    print(f"-> {path}")


if __name__ == "__main__":
    main()
