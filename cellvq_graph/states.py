"""States beyond the labels: subtypes, intermediate states (bridges), and every state described in words.

:func:`subtypes` splits cell types into Leiden subtypes of the graph embedding with their attention
markers; :func:`intermediate_states` finds cells whose neighbourhood mixes two states (the bridges);
:func:`describe_states` / :func:`describe_bridges` give each a one-line name and a description. Tables are
stored with their parameters under ``uns["cellvq_graph"]`` (:mod:`cellvq_graph.tables`).

A name reads ``<nearest known type> · <GENE>hi <GENE>hi`` (e.g. ``Naive CD4 T · CCR7hi LEF1hi``): the known
type is the majority label of the state's cells in ``reference_key`` (or, without labels, the curated
marker list's type that shares most of the state's top markers), the genes are the state's strongest
attention markers that are also up in it (log2 fold change >= ``min_logfc``, expressed in at least
``min_frac_cells`` of its cells). The description adds size, the purity of the nearest type, each top
marker's log2FC and share of cells, the property values the state attends to and, when given, how far
Integrated Gradients agree with attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .markers import load_canonical_markers, markers
from .readout import EMB, PROP_ATT, graph_embedding, keep_torch_threads, require_readout, state_labels
from .tables import store_table

__all__ = [
    "DescribeConfig",
    "subtypes",
    "intermediate_states",
    "describe_states",
    "describe_bridges",
    "state_name",
]


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


# ---------------------------------------------------------------------------------------------------------
# subtypes


def _type_groups(cell_type) -> tuple[dict[str, list[str]], bool]:
    """``({name: [types]}, several)`` from a type, a pooled list of types or a mapping of several groups."""
    if isinstance(cell_type, str):
        return {cell_type: [cell_type]}, False
    if isinstance(cell_type, Mapping):
        groups = {str(k): ([v] if isinstance(v, str) else [str(x) for x in v]) for k, v in cell_type.items()}
        seen: dict[str, str] = {}
        for name, types in groups.items():
            for t in types:
                if t in seen:
                    raise ValueError(f"{t!r} is in two groups ({seen[t]!r} and {name!r}); give each type one group")
                seen[t] = name
        return groups, True
    types = [str(t) for t in cell_type]
    return {"+".join(types): types}, False


def _leiden_subtypes(sub, cfg: dict, key: str) -> None:
    """Leiden clusters of ``sub``'s kNN graph into ``sub.obs[key]`` (resolution bisected to ``n_subtypes``)."""
    import scanpy as sc

    seed, n_subtypes, resolution = cfg["seed"], cfg["n_subtypes"], cfg["resolution"]
    with keep_torch_threads():
        sc.pp.neighbors(sub, n_neighbors=cfg["n_neighbors"], use_rep=cfg["use_rep"], random_state=seed)

        def run(res: float) -> int:
            sc.tl.leiden(sub, resolution=res, flavor="igraph", n_iterations=2, random_state=seed, key_added=key)
            return int(sub.obs[key].nunique())

        got = run(resolution)
        if n_subtypes is None:
            return
        lo, hi = 1e-3, 5.0  # bisect the resolution (log scale) until Leiden returns n_subtypes clusters
        for _ in range(25):
            if got == n_subtypes:
                break
            if got < n_subtypes:
                lo = resolution
            else:
                hi = resolution
            resolution = float(np.sqrt(lo * hi))
            got = run(resolution)


def _split_type(adata, name: str, mask: np.ndarray, cfg: dict, describe, marker_kwargs):
    """Subtype labels, their markers and descriptions of the cells in ``mask`` (stores the tables)."""
    if mask.sum() < max(cfg["n_neighbors"] + 1, 10):
        raise ValueError(f"only {int(mask.sum())} cells of {name}; too few to find subtypes")
    sub = adata[mask].copy()
    _leiden_subtypes(sub, cfg, "_sub")
    key_added, groupby = cfg["key_added"], cfg["groupby"]
    labels = pd.Series(
        [f"{name}:{c}" for c in sub.obs["_sub"].astype(str)], index=sub.obs_names, name=key_added
    )
    sub.obs[key_added] = labels.to_numpy()
    params = {**cfg, "cell_type": name, **marker_kwargs}
    if labels.nunique() > 1:
        mk = markers(sub, key_added, key_added="subtypes", **marker_kwargs)
        desc_cfg = replace(describe or DescribeConfig(), reference_key=groupby)
        desc = describe_states(sub, mk, key_added, desc_cfg, parent=name)
        mk["state_name"] = mk["state"].map(dict(zip(desc["state"], desc["name"])))
        store_table(adata, "subtype_descriptions", name, desc, {**params, "describe": asdict(desc_cfg)})
    else:
        mk = pd.DataFrame(columns=["state", "gene", "score", "rank", "attention", "frac_cells", "logfc"])
        desc = pd.DataFrame({"state": labels.unique(), "name": name})
    store = adata.uns["cellvq_graph"].setdefault("subtypes", {})
    store[name] = {"cells": labels.index.to_numpy().astype(str), "labels": labels.to_numpy().astype(str)}
    store_table(adata, "subtype_markers", name, mk, params)
    return labels, mk, dict(zip(desc["state"], desc["name"]))


def subtypes(
    adata,
    cell_type: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    *,
    groupby: str = "cell_type",
    resolution: float = 0.5,
    n_subtypes: int | None = None,
    n_neighbors: int = 15,
    use_rep: str = EMB,
    seed: int = 0,
    key_added: str = "cellvq_graph_subtype",
    describe: DescribeConfig | None = None,
    **marker_kwargs,
):
    """Split a cell type (a pooled list of types, or several groups in one call) into subtypes.

    ``cell_type`` is one type (``"B"``), one pooled group of types (``["Naive CD4 T", "Memory CD4 T"]``,
    named ``"Naive CD4 T+Memory CD4 T"``) or a mapping of several groups, each split on its own
    (``{"B": "B", "CD4 T": ["Naive CD4 T", "Memory CD4 T"]}``; a type may be in one group only).

    Each group: Leiden clustering (igraph implementation, ``resolution``) of the kNN graph of its cells in
    ``obsm[use_rep]`` (default: the graph embedding, i.e. what the graph infers about each cell from its
    genes, see :meth:`CellVQGraph.attention`). With ``n_subtypes`` the resolution is bisected until Leiden
    returns that many subtypes (or the closest it gets). Each subtype then gets attention markers
    contrasted against the other subtypes of the same group. Labels go into ``obs[key_added]`` (NaN outside
    the call's types: a call replaces the column). When the graph was built with ``cell_type`` as a
    property, the embedding was trained to predict it, so subtypes that match annotated sub-labels partly
    reflect that supervision.

    Every subtype also gets a one-line name and a description (:func:`describe_states`, nearest known type
    = majority ``groupby`` label of its cells; ``describe`` configures it): the markers table carries them
    as ``state_name``, the full table is stored under ``uns["cellvq_graph"]["subtype_descriptions"][<group>]``
    and the names go into ``obs[key_added + "_name"]``. Markers go to ``["subtype_markers"][<group>]``; both
    tables carry the call's parameters (:func:`cellvq_graph.tables.table_params`).

    Returns ``(labels, markers)`` for one type or group: a Series of subtype labels ``"<group>:<k>"``
    indexed by cell name, and the subtype markers DataFrame; for a mapping, ``{group: (labels, markers)}``.
    """
    require_readout(adata)
    groups, several = _type_groups(cell_type)
    if groupby not in adata.obs:
        raise KeyError(f"obs[{groupby!r}] does not exist")
    col = adata.obs[groupby].astype(str)
    known = set(col)
    unknown = [t for types in groups.values() for t in types if t not in known]
    if unknown:
        raise KeyError(f"{unknown} not found in obs[{groupby!r}]; values are {sorted(known)[:20]}")
    cfg = dict(groupby=groupby, resolution=resolution, n_subtypes=n_subtypes, n_neighbors=n_neighbors,
               use_rep=use_rep, seed=seed, key_added=key_added)
    labels_col = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    names_col = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    out = {}
    for name, types in groups.items():
        labels, mk, names = _split_type(adata, name, col.isin(types).to_numpy(), cfg, describe, marker_kwargs)
        labels_col[labels.index] = labels.to_numpy()
        names_col[labels.index] = labels.map(names).to_numpy()
        out[name] = (labels, mk)
    adata.obs[key_added] = pd.Categorical(labels_col)
    adata.obs[f"{key_added}_name"] = pd.Categorical(names_col)
    return out if several else next(iter(out.values()))


# ---------------------------------------------------------------------------------------------------------
# intermediate states (bridges)


def intermediate_states(
    adata,
    groupby: str = "cellvq_code",
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_neighbors: int = 15,
    min_share: float = 0.3,
    use_rep: str = EMB,
) -> pd.DataFrame:
    """Cells whose neighbourhood in the graph embedding mixes two states.

    For every cell, the states of its ``n_neighbors`` nearest neighbours (itself excluded) give shares
    ``share_a >= share_b >= ...``. A cell is intermediate when ``share_b >= min_share``; ``score =
    2 * share_b / (share_a + share_b)`` is 1 for an even split of the two leading states and falls toward 0
    as one dominates. ``state_a`` is the leading state. Columns ``cell, state_a, state_b, score, share_a,
    share_b, own_state``; a per-cell score (0 for non-intermediate cells) goes into
    ``obs["cellvq_graph_intermediate"]``.
    """
    from sklearn.neighbors import NearestNeighbors

    require_readout(adata)
    E = graph_embedding(adata, use_rep)
    lab = state_labels(adata, groupby, groups)
    valid = np.array([x is not None for x in lab])
    k = min(n_neighbors, adata.n_obs - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(E)
    _, idx = nn.kneighbors(E)
    idx = idx[:, 1:]
    codes, uniques = pd.factorize(pd.Series(lab).where(valid, None))
    nb = codes[idx]
    n_states = len(uniques)
    comp = np.zeros((adata.n_obs, n_states), np.float32)
    for j in range(k):
        ok = nb[:, j] >= 0
        np.add.at(comp, (np.flatnonzero(ok), nb[ok, j]), 1.0)
    tot = comp.sum(1, keepdims=True)
    comp = comp / np.maximum(tot, 1)
    order = np.argsort(-comp, axis=1, kind="stable")
    a_i, b_i = order[:, 0], order[:, 1] if n_states > 1 else order[:, 0]
    share_a = comp[np.arange(adata.n_obs), a_i]
    share_b = comp[np.arange(adata.n_obs), b_i] if n_states > 1 else np.zeros(adata.n_obs)
    score = np.where(share_a + share_b > 0, 2 * share_b / np.maximum(share_a + share_b, 1e-9), 0.0)
    inter = share_b >= min_share
    uniq = np.asarray(uniques, dtype=object)
    df = pd.DataFrame(
        {
            "cell": adata.obs_names[inter].astype(str),
            "state_a": uniq[a_i[inter]],
            "state_b": uniq[b_i[inter]],
            "score": score[inter],
            "share_a": share_a[inter],
            "share_b": share_b[inter],
            "own_state": lab[inter],
        }
    ).sort_values("score", ascending=False, ignore_index=True)
    adata.obs["cellvq_graph_intermediate"] = np.where(inter, score, 0.0).astype(np.float32)
    params = dict(groupby=groupby, groups=groups, n_neighbors=n_neighbors, min_share=min_share, use_rep=use_rep)
    store_table(adata, "intermediate_states", groupby, df, params)
    return df


# ---------------------------------------------------------------------------------------------------------
# states in words


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
    lab = state_labels(adata, groupby)
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
