"""Real single-cell datasets with raw UMI counts.

Two datasets ship inside the package (``foundation/datasets/files``): :func:`pbmc3k` and :func:`kang_ifnb`.
:func:`pbmc68k` is rebuilt from the copy that ships inside scanpy. The others are read from the project's
shared data folder (:func:`shared_data_dir`: ``$CELLVQ_SHARED_DATA``, else ``<repo>/../shared/data``).
Nothing is downloaded.

Every single-cell loader returns a fresh in-memory AnnData whose ``X`` is raw counts (CSR float32 holding
integers, except :func:`pancreas_mouse`, which is dense on disk and returned as CSR too).

:func:`gdsc` is the exception: bulk cancer cell lines (CCLE z-scored expression of 706 cancer-census genes)
with GDSC drug response, bundled too; ``X`` is dense z-scores, not counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from foundation.data.io import read_h5ad

__all__ = [
    "pbmc3k",
    "pbmc68k",
    "kang_ifnb",
    "celltypist_sample",
    "papalexi_crispr",
    "pancreas_mouse",
    "shared_data_dir",
    "pretraining_corpus",
    "gdsc",
    "dataset_path",
    "FILES_DIR",
]

#: Folder of the files bundled with the package.
FILES_DIR = Path(__file__).resolve().parent / "files"
_REPO_ROOT = Path(__file__).resolve().parents[2]

_BUNDLED = {
    "pbmc3k": "pbmc3k_counts.h5ad",
    "kang_ifnb": "kang_ifnb_pbmc_subset_counts.h5ad",
}
_SHARED = {
    "pbmc3k": "pbmc3k_counts.h5ad",
    "kang_ifnb": "kang_ifnb_pbmc_subset_counts.h5ad",
    "celltypist_sample": "celltypist_sample_counts.h5ad",
    "papalexi_crispr": "papalexi_thp1_crispr_counts.h5ad",
    "pancreas_mouse": "pancreas_mouse_bastidas_ponce_counts.h5ad",
}
#: Human raw-count datasets of the shared folder used for pretraining (the mouse pancreas is excluded).
PRETRAINING_NAMES = ("pbmc3k", "celltypist_sample", "kang_ifnb", "papalexi_crispr")


def _shared_candidates() -> list[Path]:
    env = os.environ.get("CELLVQ_SHARED_DATA")
    if env:
        return [Path(env).expanduser()]
    return [(_REPO_ROOT.parent / "shared" / "data").resolve()]


def shared_data_dir() -> Path:
    """The project's shared real-data folder.

    ``$CELLVQ_SHARED_DATA`` if set, else ``<repo>/../shared/data``. Raises ``FileNotFoundError`` saying where
    it looked when the folder is absent.
    """
    cands = _shared_candidates()
    for c in cands:
        if c.is_dir():
            return c
    how = ("$CELLVQ_SHARED_DATA" if os.environ.get("CELLVQ_SHARED_DATA")
           else "<repo>/../shared/data (set $CELLVQ_SHARED_DATA to use another folder)")
    raise FileNotFoundError(
        f"shared data folder not found; looked in {[str(c) for c in cands]} ({how}). Put the project's shared "
        "data there or point CELLVQ_SHARED_DATA at it."
    )


def dataset_path(name: str, prefer_bundled: bool = True) -> Path:
    """Path of a dataset's h5ad file by name (``pbmc3k``, ``kang_ifnb``, ``celltypist_sample``,
    ``papalexi_crispr``, ``pancreas_mouse``); bundled copies are preferred where they exist."""
    if prefer_bundled and name in _BUNDLED:
        p = FILES_DIR / _BUNDLED[name]
        if p.exists():
            return p
    if name not in _SHARED:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_SHARED)}")
    p = shared_data_dir() / _SHARED[name]
    if not p.exists():
        raise FileNotFoundError(f"{name}: expected {p} in the shared data folder, but it is missing.")
    return p


def _as_csr32(adata: AnnData) -> AnnData:
    if not sp.issparse(adata.X) or adata.X.format != "csr" or adata.X.dtype != np.float32:
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def pbmc3k() -> AnnData:
    """10x PBMC 3k (the Seurat tutorial's filtered cells), raw UMI counts; bundled.

    2,638 cells x 13,714 genes (symbols), ``X`` CSR float32 counts. ``obs["cell_type"]``: Naive CD4 T 697,
    Memory CD4 T 483, CD14+ Mono 480, B 344, CD8 T 271, FCGR3A+ Mono 162, NK 155, DC 32, Platelet 14; also
    ``nCount_RNA``, ``nFeature_RNA``, ``percent.mt``, ``seurat_clusters``, ``UMAP_1/2``.
    Counts were recovered exactly from the published log-normalised matrix and ``nCount_RNA``.
    Source: R packages ``rnabioco/clustifyrdata`` (``pbmc_matrix``) and ``rnabioco/clustifyr`` (``pbmc_meta``).
    """
    return _as_csr32(read_h5ad(dataset_path("pbmc3k")))


def kang_ifnb() -> AnnData:
    """PBMCs, control vs interferon-beta stimulated (Kang et al. 2018), a tiny subset; bundled.

    600 cells x 249 genes, raw counts. ``obs["condition"]``: ``ctrl`` 300, ``stim`` 300 (ISG15 mean 0.9 -> 57).
    Source: R package ``welch-lab/liger`` (``inst/extdata/{ctrl,stim}.h5``).
    """
    adata = _as_csr32(read_h5ad(dataset_path("kang_ifnb")))
    adata.obs["condition"] = adata.obs["condition"].astype("category")
    return adata


def pbmc68k(check_tol: float = 0.05, min_integral: float = 0.999) -> AnnData:
    """700 PBMCs x 765 genes with raw counts rebuilt from ``scanpy.datasets.pbmc68k_reduced()``.

    scanpy's copy has scaled data in ``X`` and ``log1p`` of 1e4-normalised counts in ``raw.X``; counts come
    back as ``round(expm1(raw.X) * obs["n_counts"] / 1e4)``. Before rounding, the share of non-zeros within
    ``check_tol`` of an integer is measured and stored in ``uns["counts_recovery"]``; below ``min_integral``
    a ``ValueError`` is raised (the README measured 99.999 %).

    ``X`` is CSR float32; ``var_names`` are ``raw.var_names``; ``obs`` is kept (``bulk_labels``: 10 cell
    types, ``n_counts``, ``louvain``, ...).
    """
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    if src.raw is None or "n_counts" not in src.obs:
        raise ValueError("scanpy's pbmc68k_reduced has no raw.X / obs['n_counts']; cannot rebuild counts.")
    raw = sp.csr_matrix(src.raw.X, dtype=np.float64)
    scale = src.obs["n_counts"].to_numpy(dtype=np.float64) / 1e4
    est = raw.copy()
    est.data = np.expm1(est.data)
    est = sp.csr_matrix(sp.diags(scale) @ est)
    dist = np.abs(est.data - np.rint(est.data))
    frac = float(np.mean(dist <= check_tol)) if est.nnz else 0.0
    if frac < min_integral:
        raise ValueError(
            f"pbmc68k: only {100 * frac:.3f}% of rebuilt values are within {check_tol} of an integer (need "
            f"{100 * min_integral:.1f}%); scanpy's pbmc68k_reduced changed and no longer yields raw counts."
        )
    est.data = np.rint(est.data)
    est.eliminate_zeros()
    counts = sp.csr_matrix(est, dtype=np.float32)
    adata = AnnData(X=counts, obs=src.obs.copy(), var=src.raw.var.copy())
    adata.var_names = list(src.raw.var_names)
    adata.uns["counts_recovery"] = {
        "formula": "round(expm1(raw.X) * obs['n_counts'] / 1e4)",
        "frac_within_tol": frac,
        "tol": check_tol,
        "max_abs_rounding": float(dist.max()) if dist.size else 0.0,
        "source": "scanpy.datasets.pbmc68k_reduced()",
    }
    return adata


def celltypist_sample() -> AnnData:
    """Human immune cells, raw UMI counts; 559 cells x 32,786 genes (symbols); no labels.

    The sample shipped inside the ``celltypist`` 1.7.1 wheel (``celltypist/data/samples/sample_cell_by_gene.csv``),
    converted to h5ad unchanged. Read from :func:`shared_data_dir`.
    """
    return _as_csr32(read_h5ad(dataset_path("celltypist_sample", prefer_bundled=False)))


def papalexi_crispr() -> AnnData:
    """CRISPR knockout screen in THP-1 cells (Papalexi et al. 2021, ECCITE-seq), a random subset of 299 genes.

    20,729 cells x 299 genes, raw counts. ``obs["perturbation"]``: 25 targeted genes + non-targeting;
    also ``grna``, ``bio_rep``, ``grna_umi_max``; ``obsm["grna_counts"]``.
    Source: R package ``Katsevich-Lab/sceptredata`` (``lowmoi_example_data``). Read from :func:`shared_data_dir`.
    """
    return _as_csr32(read_h5ad(dataset_path("papalexi_crispr", prefer_bundled=False)))


def pancreas_mouse() -> AnnData:
    """Mouse embryonic pancreas (Bastidas-Ponce et al. 2019): spliced counts in ``X``, unspliced in
    ``layers["unspliced"]``.

    739 cells x 7,192 genes (mouse symbols). ``obs["clusters"]``: 8 types (ductal, Ngn3 low/high EP,
    pre-endocrine, alpha, beta, delta, epsilon). Source: R package ``JEFworks-Lab/veloviz`` (``data/pancreas.rda``).
    Read from :func:`shared_data_dir`. Mouse symbols do not match the human vocabulary (use orthologs).
    """
    adata = _as_csr32(read_h5ad(dataset_path("pancreas_mouse", prefer_bundled=False)))
    if "unspliced" in adata.layers and not sp.issparse(adata.layers["unspliced"]):
        adata.layers["unspliced"] = sp.csr_matrix(adata.layers["unspliced"], dtype=np.float32)
    return adata


def pretraining_corpus() -> list[Path]:
    """Paths of the human raw-count h5ad files in the shared folder, for pretraining.

    pbmc3k (2,638 cells), celltypist sample (559), Kang IFN-beta (600), Papalexi CRISPR (20,729): 24,526 cells.
    The mouse pancreas is excluded (other species). Raises ``FileNotFoundError`` if a file is missing.
    """
    d = shared_data_dir()
    out = []
    for name in PRETRAINING_NAMES:
        p = d / _SHARED[name]
        if not p.exists():
            raise FileNotFoundError(f"pretraining corpus: {p} is missing from the shared data folder {d}.")
        out.append(p)
    return out


def gdsc() -> AnnData:
    """Cancer cell lines: CCLE expression of 706 cancer-census genes and GDSC drug response (ln IC50); bundled.

    580 lines x 706 genes. Not single-cell and not counts:

    - ``X``: dense float32, CCLE expression z-scored per gene over the 580 lines (as distributed).
    - ``var_names``: gene symbols (COSMIC Cancer Gene Census; a few are older HGNC names, e.g. ``H3F3A``,
      ``SEPT9``); ``var["entrez_id"]`` (int, NCBI Gene id of the source columns); ``var["ensembl_id"]``
      (GENCODE v44 id where the symbol is in that table, 697 of 706; else ``""``).
    - ``obs_names``: DepMap ids (``ACH-000001``...). ``obs``: ``name``, ``ccle_name``, ``tissue`` (27 values,
      e.g. lung 109, haematopoietic_and_lymphoid_tissue 90, breast 47; none missing), ``histology``,
      ``histology_subtype``, ``disease``, ``tcga_code``, ``pathology`` (primary/metastasis), ``sex``
      (male 264, female 226, missing 90), ``age`` (float years, 135 missing). Categorical except ``age``.
    - ``obsm["gdsc_ln_ic50"]``: DataFrame (580 lines x 266 drugs, columns ``GDSC:<drug id>``) of natural-log
      IC50 (micromolar), aligned to ``obs_names``; NaN where the pair was not tested (123,558 tested pairs;
      12 lines have none). Drugs are GDSC drug ids only (the source carries no names).
    - ``uns["gdsc"]``: provenance (sources, what was trimmed).

    Sources: ``<shared>/gdsc/`` (the ``violet-sto/TGSA`` / DeepCDR data; GDSC terms of use). The expression
    file is shipped unchanged; IC50 is restricted to the 568 lines with expression (6 decimals); annotations
    (``Cell_lines_annotations_20181226.txt``) are slimmed to 10 columns; Entrez ids map to symbols through a
    COSMIC Cancer Gene Census table. ``foundation/datasets/gdsc_build.py`` rebuilds the files from the shared
    folder; ``foundation/datasets/files/README.md`` lists them. Use with
    :func:`foundation.tasks.drug_response_features` / :func:`foundation.tasks.predict_drug_response`.
    """
    import pandas as pd

    from foundation.datasets import gdsc_build as b

    paths = {k: FILES_DIR / f for k, f in (("expression", b.EXPRESSION), ("ic50", b.IC50), ("lines", b.LINES),
                                            ("genes", b.GENES))}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"gdsc: bundled files missing: {missing}; they ship with the package (foundation/datasets/files). "
            "Reinstall CellVQ (pip install -e .), or rebuild them from ../shared/data/gdsc with "
            "foundation.datasets.gdsc_build.build_gdsc_files."
        )
    expr = pd.read_csv(paths["expression"], index_col=0)
    genes = pd.read_csv(paths["genes"], dtype={"symbol": str, "entrez_id": np.int64})
    entrez = expr.columns.astype(np.int64)
    sym = dict(zip(genes["entrez_id"], genes["symbol"]))
    unknown = [int(e) for e in entrez if e not in sym]
    if unknown:
        raise ValueError(f"gdsc: Entrez ids {unknown[:5]} of the expression file have no symbol in {paths['genes']}.")
    from foundation.data.vocab import gencode_table

    gc = gencode_table()
    sym2ens = dict(zip(gc["symbol"][::-1], gc["ensembl_id"][::-1]))  # first id in table order wins
    var = pd.DataFrame(
        {"entrez_id": np.asarray(entrez), "ensembl_id": [sym2ens.get(sym[e], "") for e in entrez]},
        index=pd.Index([sym[e] for e in entrez], name="symbol"),
    )
    lines = pd.read_csv(paths["lines"], index_col=0).reindex(expr.index)
    for col in lines.columns:
        if col != "age":
            lines[col] = lines[col].astype("category")
    lines.index.name = None
    ic50 = pd.read_csv(paths["ic50"], index_col=0).T.reindex(expr.index)
    ic50.index.name = None
    ic50.columns.name = None
    adata = AnnData(X=expr.to_numpy(dtype=np.float32), obs=lines, var=var)
    adata.var_names = var.index.astype(str)
    adata.obs_names = expr.index.astype(str)
    adata.obsm["gdsc_ln_ic50"] = ic50.astype(np.float64)
    adata.uns["gdsc"] = {
        "source": "violet-sto/TGSA and DeepCDR data (<shared>/gdsc); GDSC terms of use",
        "expression": "ccle_census706_expression.csv.gz, unchanged: CCLE, z-scored per gene over 580 lines",
        "ic50": "GDSC_IC50.csv (266 drugs x 969 lines), restricted to the 568 lines with expression; ln IC50",
        "annotations": "Cell_lines_annotations_20181226.txt, 10 columns; tissue of 53 lines from the CCLE name",
        "genes": "Entrez -> symbol from a COSMIC Cancer Gene Census table",
        "n_tested_pairs": int(ic50.notna().to_numpy().sum()),
    }
    return adata
