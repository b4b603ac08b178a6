"""Marker genes of states from CellVQ-Graph attention, the paper's per-code read-out and property importance.

Every function takes the annotated AnnData (:meth:`CellVQGraph.annotate`), returns a DataFrame and stores
it with its parameters under ``uns["cellvq_graph"][<section>][<key>]`` (:mod:`cellvq_graph.tables`).

Marker ranking (why a contrast)
-------------------------------
A cell attends only to its top-k expressed genes, and some genes (ribosomal proteins, ``MALAT1``, ``FTL``
...) are in nearly every cell's top-k. The raw mean attention of a state therefore ranks ubiquitous genes
first; that is the paper's read-out and :func:`code_markers` returns it for comparability. :func:`markers`
contrasts instead: per gene, ``score = mean attention over the state's cells - the highest mean attention
among the other states`` (``contrast="max"``, default; a cell that does not attend to the gene counts as
0), kept only where the gene is attended in at least ``min_frac`` of the state's cells, so a marker has to
set its state apart from every other state, including the closest one. ``contrast="rest"`` subtracts the
mean over all other cells instead (a gene shared with one related state can still rank high). On PBMC 3k
(shipped checkpoint, three training seeds) "max" gave canonical-marker precision@10 0.475-0.625 and
"rest" 0.40-0.525. Columns also give
the fraction of the state's cells expressing the gene and scanpy-style log2 fold change of normalised
expression, so attention ranks can be read next to the usual statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np
import pandas as pd

from .build import counts_matrix, normalise_counts
from .readout import PROP_ATT, attention_matrix, graph_genes, mean_rows, require_readout, state_labels
from .tables import store_table

__all__ = ["markers", "code_markers", "property_importance", "marker_precision", "load_canonical_markers"]


def markers(
    adata,
    groupby: str = "cellvq_code",
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    contrast: str = "max",
    min_frac: float = 0.1,
    min_cells: int = 3,
    n_top: int | None = 100,
    layer: str | None = None,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Per-state genes ranked by attention contrasted against the other states.

    Parameters
    ----------
    groupby
        Any obs column: the cell codes (default), a clustering or labels such as ``cell_type``.
    groups
        Optional pooling of values, e.g. ``{"T": ["Naive CD4 T", "Memory CD4 T", "CD8 T"]}``.
    contrast
        ``"max"``: minus the highest other state (default); ``"rest"``: minus the mean over all other cells.
    min_frac
        Minimum fraction of the state's cells attending to the gene.
    n_top
        Genes kept per state (``None``: all that pass the filter).
    layer
        Counts layer for ``frac_cells``/``logfc`` (default ``X``).

    Returns
    -------
    DataFrame with columns ``state, gene, score, rank, attention, attention_rest, frac_attended,
    frac_cells, logfc`` (rank 1 = best), also stored in ``uns["cellvq_graph"]["markers"][key]``.
    """
    if contrast not in ("rest", "max"):
        raise ValueError("contrast must be 'rest' or 'max'")
    genes, pos = graph_genes(adata)
    A = attention_matrix(adata, pos)
    lab = state_labels(adata, groupby, groups)
    valid = np.array([x is not None for x in lab])
    states = [s for s in pd.unique(lab[valid]) if (lab == s).sum() >= min_cells]
    if len(states) < 2:
        raise ValueError(
            f"obs[{groupby!r}] has fewer than two states with {min_cells}+ cells; nothing to contrast"
        )
    counts = counts_matrix(adata, layer)[:, pos].tocsr()
    X = normalise_counts(counts_matrix(adata, layer))[:, pos].tocsr()
    Xe = X.copy()
    Xe.data = np.expm1(Xe.data)
    present = A.copy()
    present.data = (present.data > 0).astype(np.float32)
    expressed = counts.copy()
    expressed.data = (expressed.data > 0).astype(np.float32)
    means = {s: mean_rows(A, lab == s) for s in states}
    rows = []
    for s in states:
        ins = lab == s
        rest = valid & ~ins
        att_in = means[s]
        att_rest = (
            mean_rows(A, rest)
            if contrast == "rest"
            else np.max([means[o] for o in states if o != s], axis=0)
        )
        frac_att = mean_rows(present, ins)
        score = att_in - att_rest
        ok = frac_att >= min_frac
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(-score[idx], kind="stable")]
        if n_top is not None:
            idx = idx[:n_top]
        e_in, e_rest = mean_rows(Xe, ins)[idx], mean_rows(Xe, rest)[idx]
        logfc = np.log2((e_in + 1e-9) / (e_rest + 1e-9))
        rows.append(
            pd.DataFrame(
                {
                    "state": s,
                    "gene": np.asarray(genes, dtype=object)[idx],
                    "score": score[idx],
                    "rank": np.arange(1, idx.size + 1),
                    "attention": att_in[idx],
                    "attention_rest": att_rest[idx],
                    "frac_attended": frac_att[idx],
                    "frac_cells": mean_rows(expressed, ins)[idx],
                    "logfc": logfc,
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    params = dict(groupby=groupby, groups=groups, contrast=contrast, min_frac=min_frac, min_cells=min_cells,
                  n_top=n_top, layer=layer)
    store_table(adata, "markers", key_added or groupby, df, params)
    return df


def code_markers(adata, key: str = "cellvq_code", n_top: int = 20, min_cells: int = 1) -> pd.DataFrame:
    """The paper's read-out: genes ranked by cell->gene attention averaged over the cells of each code.

    No contrast, so ubiquitous highly expressed genes come first; use :func:`markers` to find genes that
    set a state apart. Columns ``state, gene, attention, rank``.
    """
    genes, pos = graph_genes(adata)
    A = attention_matrix(adata, pos)
    lab = state_labels(adata, key, None)
    rows = []
    for s in pd.unique(lab[np.array([x is not None for x in lab])]):
        ins = lab == s
        if ins.sum() < min_cells:
            continue
        m = mean_rows(A, ins)
        idx = np.argsort(-m, kind="stable")[:n_top]
        idx = idx[m[idx] > 0]
        rows.append(
            pd.DataFrame(
                {
                    "state": s,
                    "gene": np.asarray(genes, dtype=object)[idx],
                    "attention": m[idx],
                    "rank": np.arange(1, idx.size + 1),
                }
            )
        )
    df = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["state", "gene", "attention", "rank"])
    )
    store_table(adata, "code_markers", key, df, dict(key=key, n_top=n_top, min_cells=min_cells))
    return df


def property_importance(
    adata, groupby: str = "cellvq_code", groups: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """Which property values (tissue, disease, age bin, sex, ...) carry each state's attention.

    ``attention`` is the mean over the state's cells of the cell's attention to that property node (zero
    for cells without it); ``frac_cells`` the fraction of the state's cells that have the value. Rows with
    zero attention are dropped. Columns ``state, property_kind, property_value, attention, frac_cells``.
    """
    require_readout(adata)
    if PROP_ATT not in adata.obsm:
        raise KeyError(f"obsm[{PROP_ATT!r}] is missing; re-run model.annotate")
    P = adata.obsm[PROP_ATT]
    P = P if isinstance(P, pd.DataFrame) else pd.DataFrame(P)
    lab = state_labels(adata, groupby, groups)
    vals = P.to_numpy()
    rows = []
    for s in pd.unique(lab[np.array([x is not None for x in lab])]):
        ins = lab == s
        m = vals[ins].mean(0)
        f = (vals[ins] > 0).mean(0)
        for j, col in enumerate(P.columns):
            if m[j] > 0:
                kind, _, value = str(col).partition("=")
                rows.append((s, kind, value, float(m[j]), float(f[j])))
    df = pd.DataFrame(rows, columns=["state", "property_kind", "property_value", "attention", "frac_cells"])
    df = df.sort_values(["state", "attention"], ascending=[True, False], ignore_index=True)
    store_table(adata, "property_importance", groupby, df, dict(groupby=groupby, groups=groups))
    return df



def load_canonical_markers() -> pd.DataFrame:
    """The curated PBMC marker list (``cell_type, gene, source``) shipped with the package."""
    with resources.files("cellvq_graph").joinpath("resources/pbmc_canonical_markers.csv").open() as fh:
        return pd.read_csv(fh)



def marker_precision(
    ranking: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    k: int = 10,
    states: Sequence[str] | None = None,
    score_col: str | None = None,
) -> dict[str, float]:
    """precision@k of a per-state ranking against a reference marker list (default: the curated PBMC list).

    ``ranking`` needs ``state`` and ``gene`` columns and is ordered by ``rank`` if present (else by
    ``score_col`` descending, else by row order). Returns ``{state: |top-k ∩ reference| / k}``.
    """
    reference = load_canonical_markers() if reference is None else reference
    out = {}
    for s in states if states is not None else sorted(set(ranking["state"])):
        r = ranking[ranking["state"] == s]
        if "rank" in r:
            r = r.sort_values("rank")
        elif score_col is not None:
            r = r.sort_values(score_col, ascending=False)
        ref = set(reference.loc[reference["cell_type"] == s, "gene"])
        out[s] = len(set(r["gene"].head(k)) & ref) / k
    return out
