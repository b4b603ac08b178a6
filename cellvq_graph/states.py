"""States in words: a one-line name and a description for every state, subtype and bridge, from its evidence.

A name reads ``<nearest known type> · <GENE>hi <GENE>hi`` (e.g. ``Naive CD4 T · CCR7hi LEF1hi``): the known
type is the majority label of the state's cells in ``reference_key`` (or, without labels, the curated
marker list's type that shares most of the state's top markers), the genes are the state's strongest
attention markers that are also up in it (log2 fold change >= ``min_logfc``, expressed in at least
``min_frac_cells`` of its cells). The description adds size, the purity of the nearest type, each top
marker's log2FC and share of cells, the property values the state attends to and, when given, how far
Integrated Gradients agree with attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["DescribeConfig", "describe_states", "describe_bridges", "state_name"]

PROP_ATT = "cellvq_graph_property_attention"


@dataclass
class DescribeConfig:
    """Parameters of :func:`describe_states` / :func:`describe_bridges`."""

    n_name_markers: int = 2
    n_markers: int = 5
    min_logfc: float = 0.5
    min_frac_cells: float = 0.2
    reference_key: str | None = "cell_type"
    min_type_share: float = 0.5
    n_reference_markers: int = 20
    min_bridge_cells: int = 5
    doublet_key: str | None = "doublet_score"


def state_name(nearest: str, genes: list[str]) -> str:
    """``"<nearest> · G1hi G2hi"`` (just the type when no gene qualifies)."""
    return f"{nearest} · " + " ".join(f"{g}hi" for g in genes) if genes else str(nearest)


def _state_labels(adata, groupby: str) -> np.ndarray:
    if groupby not in adata.obs:
        raise KeyError(f"obs[{groupby!r}] does not exist; pass the column the markers were computed for")
    col = adata.obs[groupby]
    return np.where(col.notna().to_numpy(), col.astype(str).to_numpy(dtype=object), None)


def _nearest_types(adata, lab, states, markers: pd.DataFrame, cfg: DescribeConfig, groupby: str) -> dict:
    """``{state: (type, share)}`` from reference labels, else from the curated marker list."""
    key = cfg.reference_key
    if key is not None and key in adata.obs and key != groupby:
        ref = adata.obs[key].astype(str).to_numpy()
        out = {}
        for s in states:
            vc = pd.Series(ref[lab == s]).value_counts(normalize=True)
            t, share = (vc.index[0], float(vc.iloc[0])) if len(vc) else ("unknown", 0.0)
            if share < cfg.min_type_share and len(vc) > 1:
                t = f"{vc.index[0]}/{vc.index[1]}"
            out[s] = (t, share)
        return out
    from .interpret import load_canonical_markers

    curated = load_canonical_markers()
    out = {}
    for s in states:
        top = set(markers.loc[markers["state"] == s].sort_values("rank")["gene"].head(cfg.n_reference_markers))
        hits = curated[curated["gene"].isin(top)].groupby("cell_type").size().sort_values(ascending=False)
        if len(hits) and (len(hits) == 1 or hits.iloc[0] > hits.iloc[1]):
            out[s] = (str(hits.index[0]), float(hits.iloc[0]) / max(len(top), 1))
        else:
            out[s] = ("unknown", 0.0)
    return out


def _top_genes(mk: pd.DataFrame, cfg: DescribeConfig) -> pd.DataFrame:
    mk = mk.sort_values("rank")
    up = mk[(mk["logfc"] >= cfg.min_logfc) & (mk["frac_cells"] >= cfg.min_frac_cells)]
    return (up if len(up) else mk).head(cfg.n_markers)


def _properties(adata, lab, s, reference_key) -> str:
    if PROP_ATT not in adata.obsm:
        return ""
    P = adata.obsm[PROP_ATT]
    P = P if isinstance(P, pd.DataFrame) else pd.DataFrame(P)
    keep = [c for c in P.columns if str(c).partition("=")[0] != reference_key]
    if not keep:
        return ""
    m = P.loc[lab == s, keep].mean(0).sort_values(ascending=False)
    m = m[m > 0].head(2)
    return ", ".join(f"{c} (attention {v:.2f})" for c, v in m.items())


def describe_states(
    adata,
    markers: pd.DataFrame,
    groupby: str,
    config: DescribeConfig | None = None,
    *,
    parent: str | None = None,
    agreement: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per state of ``markers`` (a :func:`cellvq_graph.markers` table for ``obs[groupby]``).

    Columns ``state, name, description, n_cells, share, nearest_type, nearest_type_share, top_markers``
    (``share`` of ``parent``'s cells when given, else of all labelled cells). ``agreement`` is an
    :func:`cellvq_graph.attribution_agreement` table (adds IG/attention overlap@10 to the description).
    """
    cfg = config or DescribeConfig()
    lab = _state_labels(adata, groupby)
    states = [s for s in pd.unique(markers["state"].astype(str))]
    nearest = _nearest_types(adata, lab, states, markers, cfg, groupby)
    total = int(np.sum([x is not None for x in lab]))
    agree = {} if agreement is None else dict(zip(agreement["state"].astype(str), agreement["overlap@10"]))
    rows = []
    for s in states:
        top = _top_genes(markers[markers["state"].astype(str) == s], cfg)
        t, share_t = nearest[s]
        name = state_name(t, top["gene"].head(cfg.n_name_markers).tolist())
        n = int((lab == s).sum())
        genes = "; ".join(
            f"{r.gene} (log2FC {r.logfc:.1f}, {r.frac_cells:.0%} of cells)" for r in top.itertuples()
        )
        text = f"{name}: {n} cells ({n / max(total, 1):.0%} of {parent or 'all labelled cells'}); "
        text += f"nearest known type {t} ({share_t:.0%}); top attention markers: {genes or 'none'}"
        props = _properties(adata, lab, s, cfg.reference_key)
        if props:
            text += f"; attends to {props}"
        if s in agree:
            text += f"; IG/attention overlap@10 {float(agree[s]):.1f}"
        rows.append(
            {
                "state": s,
                "name": name,
                "description": text,
                "n_cells": n,
                "share": n / max(total, 1),
                "nearest_type": t,
                "nearest_type_share": share_t,
                "top_markers": ",".join(top["gene"]),
            }
        )
    return pd.DataFrame(rows)


def describe_bridges(
    adata, intermediate: pd.DataFrame, markers: pd.DataFrame, config: DescribeConfig | None = None
) -> pd.DataFrame:
    """A name and description for each pair of states joined by intermediate cells.

    ``intermediate`` is a :func:`cellvq_graph.intermediate_states` table and ``markers`` the markers of
    the same states. For the bridge's cells, the share expressing each side's top markers shows whether
    they carry both programmes. Columns ``bridge, name, description, n_cells, mean_score, state_a,
    state_b`` and, when ``obs[doublet_key]`` exists (e.g. ``scanpy.pp.scrublet``'s ``doublet_score``),
    ``doublet_score`` (mean over the bridge's cells) beside ``doublet_score_rest`` (mean over cells in no
    bridge): a bridge of doublets scores well above the rest, a biological intermediate does not.
    """
    cfg = config or DescribeConfig()
    if intermediate.empty:
        return pd.DataFrame(columns=["bridge", "name", "description", "n_cells", "mean_score", "state_a", "state_b"])
    pair = intermediate.apply(lambda r: tuple(sorted((str(r.state_a), str(r.state_b)))), axis=1)
    X = sp.csr_matrix(adata.X)
    var = pd.Index(adata.var_names.astype(str))
    pos = pd.Index(adata.obs_names.astype(str))
    dkey = cfg.doublet_key if cfg.doublet_key and cfg.doublet_key in adata.obs else None
    if dkey:
        dbl = adata.obs[dkey].to_numpy(dtype=float)
        rest = float(np.nanmean(dbl[~pos.isin(intermediate["cell"].astype(str))]))
    rows = []
    for (a, b), grp in intermediate.groupby(pair):
        if len(grp) < cfg.min_bridge_cells:
            continue
        cells = pos.get_indexer(grp["cell"].astype(str))
        sides = []
        for s in (a, b):
            g = _top_genes(markers[markers["state"].astype(str) == s], cfg)["gene"].head(3).tolist()
            frac = np.asarray((X[cells][:, var.get_indexer(g)] > 0).mean(0)).ravel() if g else []
            sides.append(", ".join(f"{x} {f:.0%}" for x, f in zip(g, frac)))
        name = f"{a} ↔ {b} bridge"
        text = (
            f"{name}: {len(grp)} cells (mean mixing score {grp['score'].mean():.2f}; own labels "
            f"{grp['own_state'].astype(str).value_counts().to_dict()}); cells expressing {a} markers: "
            f"{sides[0] or 'none'}; {b} markers: {sides[1] or 'none'}"
        )
        extra = {}
        if dkey:
            extra = {"doublet_score": float(np.nanmean(dbl[cells])), "doublet_score_rest": rest}
            text += f"; doublet score {extra['doublet_score']:.2f} (cells in no bridge {rest:.2f})"
        rows.append(
            {
                **extra,
                "bridge": f"{a}|{b}",
                "name": name,
                "description": text,
                "n_cells": len(grp),
                "mean_score": float(grp["score"].mean()),
                "state_a": a,
                "state_b": b,
            }
        )
    return pd.DataFrame(rows).sort_values("n_cells", ascending=False, ignore_index=True)
