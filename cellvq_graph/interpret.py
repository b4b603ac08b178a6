"""Interpretation of a trained CellVQ-Graph from what :meth:`CellVQGraph.annotate` wrote into an AnnData.

Every function takes the annotated AnnData, returns a DataFrame (or ``networkx`` graph) and stores a
plain, h5ad-writable copy (dict of column arrays) under ``adata.uns["cellvq_graph"][<section>][<key>]``;
:func:`read_table` turns a stored table back into a DataFrame. Column sets follow docs/CONTRACTS.md §3.

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
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .build import _counts, normalise_counts
from .states import DescribeConfig, describe_states

__all__ = [
    "markers",
    "code_markers",
    "property_importance",
    "subtypes",
    "intermediate_states",
    "gene_network",
    "code_gene_network",
    "gene_modules",
    "load_tf_list",
    "load_canonical_markers",
    "read_table",
    "marker_precision",
    "keep_torch_threads",
]

ATT_LAYER = "cellvq_graph_attention"
GENE_ATT = "cellvq_graph_gene_attention"
PROP_ATT = "cellvq_graph_property_attention"
EMB = "X_cellvq_graph"


# ---------------------------------------------------------------------------------------------------------
# helpers


def _uns(adata) -> dict:
    if ATT_LAYER not in adata.layers or "cellvq_graph" not in adata.uns:
        raise KeyError(
            "adata has no CellVQ-Graph read-out; run model.annotate(adata, data) (or cellvq_graph.tl.fit) first"
        )
    return adata.uns["cellvq_graph"]


def _store(adata, section: str, key: str, df: pd.DataFrame) -> None:
    rec = {}
    for c in df.columns:
        v = df[c].to_numpy()
        rec[str(c)] = (
            v.astype(str) if v.dtype == object or isinstance(df[c].dtype, pd.CategoricalDtype) else v
        )
    adata.uns["cellvq_graph"].setdefault(section, {})[str(key)] = rec


def read_table(adata, section: str, key: str) -> pd.DataFrame:
    """A table stored by one of the interpretation functions, e.g. ``read_table(adata, "markers", "cell_type")``."""
    try:
        rec = adata.uns["cellvq_graph"][section][str(key)]
    except KeyError as err:
        raise KeyError(f"no stored table uns['cellvq_graph'][{section!r}][{key!r}]") from err
    return pd.DataFrame({k: np.asarray(v) for k, v in rec.items()})


def _graph_genes(adata) -> tuple[list[str], np.ndarray]:
    genes = [str(g) for g in _uns(adata)["genes"]]
    pos = pd.Index(adata.var_names.astype(str)).get_indexer(genes)
    if (pos < 0).any():
        raise ValueError("the graph's genes are not all in adata.var_names; was adata subset by genes?")
    return genes, pos


def _attention(adata, pos: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(adata.layers[ATT_LAYER])[:, pos].tocsr()


@contextmanager
def keep_torch_threads():
    """Restore torch's intra-op thread count afterwards.

    numba's OpenMP layer (used by scanpy's neighbours and Wilcoxon test) resets the process-wide OpenMP
    thread count, which silently changes torch's; on a busy machine that slowed CellVQ-Graph read-outs
    ten-fold in our measurements.
    """
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _labels(adata, groupby: str, groups: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    if groupby not in adata.obs:
        raise KeyError(
            f"obs[{groupby!r}] does not exist; pass a column of adata.obs (a code, cluster or label)"
        )
    col = adata.obs[groupby]
    lab = np.where(col.notna().to_numpy(), col.astype(str).to_numpy(dtype=object), None)
    if groups:
        rev = {str(m): str(g) for g, members in groups.items() for m in members}
        lab = np.array([rev.get(x, x) if x is not None else None for x in lab], dtype=object)
    return lab


def _mean_rows(M: sp.csr_matrix, mask: np.ndarray) -> np.ndarray:
    n = int(mask.sum())
    if n == 0:
        return np.zeros(M.shape[1])
    return np.asarray(M[mask].sum(0)).ravel() / n


def load_tf_list() -> set[str]:
    """Human transcription factors shipped with the package (Lambert et al., Cell 2018; 1,639 symbols)."""
    text = resources.files("cellvq_graph").joinpath("resources/human_tfs_lambert2018.txt").read_text()
    return {line.strip() for line in text.splitlines() if line.strip()}


def load_canonical_markers() -> pd.DataFrame:
    """The curated PBMC marker list (``cell_type, gene, source``) shipped with the package."""
    with resources.files("cellvq_graph").joinpath("resources/pbmc_canonical_markers.csv").open() as fh:
        return pd.read_csv(fh)


# ---------------------------------------------------------------------------------------------------------
# markers


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
    genes, pos = _graph_genes(adata)
    A = _attention(adata, pos)
    lab = _labels(adata, groupby, groups)
    valid = np.array([x is not None for x in lab])
    states = [s for s in pd.unique(lab[valid]) if (lab == s).sum() >= min_cells]
    if len(states) < 2:
        raise ValueError(
            f"obs[{groupby!r}] has fewer than two states with {min_cells}+ cells; nothing to contrast"
        )
    counts = _counts(adata, layer)[:, pos].tocsr()
    X = normalise_counts(_counts(adata, layer))[:, pos].tocsr()
    Xe = X.copy()
    Xe.data = np.expm1(Xe.data)
    present = A.copy()
    present.data = (present.data > 0).astype(np.float32)
    expressed = counts.copy()
    expressed.data = (expressed.data > 0).astype(np.float32)
    means = {s: _mean_rows(A, lab == s) for s in states}
    rows = []
    for s in states:
        ins = lab == s
        rest = valid & ~ins
        att_in = means[s]
        att_rest = (
            _mean_rows(A, rest)
            if contrast == "rest"
            else np.max([means[o] for o in states if o != s], axis=0)
        )
        frac_att = _mean_rows(present, ins)
        score = att_in - att_rest
        ok = frac_att >= min_frac
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(-score[idx], kind="stable")]
        if n_top is not None:
            idx = idx[:n_top]
        e_in, e_rest = _mean_rows(Xe, ins)[idx], _mean_rows(Xe, rest)[idx]
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
                    "frac_cells": _mean_rows(expressed, ins)[idx],
                    "logfc": logfc,
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    _store(adata, "markers", key_added or groupby, df)
    return df


def code_markers(adata, key: str = "cellvq_code", n_top: int = 20, min_cells: int = 1) -> pd.DataFrame:
    """The paper's read-out: genes ranked by cell->gene attention averaged over the cells of each code.

    No contrast, so ubiquitous highly expressed genes come first; use :func:`markers` to find genes that
    set a state apart. Columns ``state, gene, attention, rank``.
    """
    genes, pos = _graph_genes(adata)
    A = _attention(adata, pos)
    lab = _labels(adata, key, None)
    rows = []
    for s in pd.unique(lab[np.array([x is not None for x in lab])]):
        ins = lab == s
        if ins.sum() < min_cells:
            continue
        m = _mean_rows(A, ins)
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
    _store(adata, "code_markers", key, df)
    return df


def property_importance(
    adata, groupby: str = "cellvq_code", groups: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """Which property values (tissue, disease, age bin, sex, ...) carry each state's attention.

    ``attention`` is the mean over the state's cells of the cell's attention to that property node (zero
    for cells without it); ``frac_cells`` the fraction of the state's cells that have the value. Rows with
    zero attention are dropped. Columns ``state, property_kind, property_value, attention, frac_cells``.
    """
    _uns(adata)
    if PROP_ATT not in adata.obsm:
        raise KeyError(f"obsm[{PROP_ATT!r}] is missing; re-run model.annotate")
    P = adata.obsm[PROP_ATT]
    P = P if isinstance(P, pd.DataFrame) else pd.DataFrame(P)
    lab = _labels(adata, groupby, groups)
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
    _store(adata, "property_importance", groupby, df)
    return df


# ---------------------------------------------------------------------------------------------------------
# subtypes and intermediate states


def _embedding(adata, use_rep: str) -> np.ndarray:
    if use_rep not in adata.obsm:
        raise KeyError(f"obsm[{use_rep!r}] is missing; run model.annotate(adata, data) first")
    return np.asarray(adata.obsm[use_rep], dtype=np.float32)


def subtypes(
    adata,
    cell_type: str | Sequence[str],
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
) -> tuple[pd.Series, pd.DataFrame]:
    """Split one cell type (or a pooled list of types) into subtypes of the graph embedding.

    Leiden clustering (igraph implementation, ``resolution``) of the kNN graph of the type's cells in
    ``obsm[use_rep]`` (default: the graph embedding, i.e. what the graph infers about each cell from its
    genes, see :meth:`CellVQGraph.attention`). With ``n_subtypes`` the resolution is bisected until Leiden
    returns that many subtypes (or the closest it gets). Each subtype then gets attention markers
    contrasted against the other subtypes of the same type. Labels go into ``obs[key_added]`` (NaN outside
    the type). When the graph was built with ``cell_type`` as a property, the embedding was trained to
    predict it, so subtypes that match annotated sub-labels partly reflect that supervision.

    Every subtype also gets a one-line name and a description (:func:`cellvq_graph.states.describe_states`,
    nearest known type = majority ``groupby`` label of its cells; ``describe`` configures it): the markers
    table carries them as ``state_name``, the full table is stored under
    ``uns["cellvq_graph"]["subtype_descriptions"][<type>]`` and the names go into ``obs[key_added + "_name"]``.

    Returns ``(labels, markers)``: a Series of subtype labels ``"<type>:<k>"`` indexed by cell name, and the
    subtype markers DataFrame.
    """
    import scanpy as sc

    _uns(adata)
    types = [cell_type] if isinstance(cell_type, str) else list(cell_type)
    if groupby not in adata.obs:
        raise KeyError(f"obs[{groupby!r}] does not exist")
    known = set(adata.obs[groupby].astype(str))
    unknown = [t for t in types if t not in known]
    if unknown:
        raise KeyError(f"{unknown} not found in obs[{groupby!r}]; values are {sorted(known)[:20]}")
    name = "+".join(types)
    mask = adata.obs[groupby].astype(str).isin(types).to_numpy()
    if mask.sum() < max(n_neighbors + 1, 10):
        raise ValueError(f"only {int(mask.sum())} cells of {name}; too few to find subtypes")
    sub = adata[mask].copy()
    with keep_torch_threads():
        sc.pp.neighbors(sub, n_neighbors=n_neighbors, use_rep=use_rep, random_state=seed)

        def _leiden(res: float) -> int:
            sc.tl.leiden(
                sub, resolution=res, flavor="igraph", n_iterations=2, random_state=seed, key_added="_sub"
            )
            return int(sub.obs["_sub"].nunique())

        if n_subtypes is None:
            _leiden(resolution)
        else:
            # bisect the resolution (log scale) until Leiden returns n_subtypes clusters
            lo, hi = 1e-3, 5.0
            got = _leiden(resolution)
            for _ in range(25):
                if got == n_subtypes:
                    break
                if got < n_subtypes:
                    lo = resolution
                else:
                    hi = resolution
                resolution = float(np.sqrt(lo * hi))
                got = _leiden(resolution)
    labels = pd.Series(
        [f"{name}:{c}" for c in sub.obs["_sub"].astype(str)], index=sub.obs_names, name=key_added
    )
    sub.obs[key_added] = labels.to_numpy()
    if labels.nunique() > 1:
        mk = markers(sub, key_added, key_added="subtypes", **marker_kwargs)
        cfg = replace(describe or DescribeConfig(), reference_key=groupby)
        desc = describe_states(sub, mk, key_added, cfg, parent=name)
        mk["state_name"] = mk["state"].map(dict(zip(desc["state"], desc["name"])))
        _store(adata, "subtype_descriptions", name, desc)
    else:
        mk = pd.DataFrame(columns=["state", "gene", "score", "rank", "attention", "frac_cells", "logfc"])
        desc = pd.DataFrame({"state": labels.unique(), "name": name})
    col = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    col[labels.index] = labels.to_numpy()
    adata.obs[key_added] = pd.Categorical(col)
    names = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    names[labels.index] = labels.map(dict(zip(desc["state"], desc["name"]))).to_numpy()
    adata.obs[f"{key_added}_name"] = pd.Categorical(names)
    store = adata.uns["cellvq_graph"].setdefault("subtypes", {})
    store[name] = {"cells": labels.index.to_numpy().astype(str), "labels": labels.to_numpy().astype(str)}
    _store(adata, "subtype_markers", name, mk)
    return labels, mk


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

    _uns(adata)
    E = _embedding(adata, use_rep)
    lab = _labels(adata, groupby, groups)
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
    _store(adata, "intermediate_states", groupby, df)
    return df


# ---------------------------------------------------------------------------------------------------------
# gene networks


def _orient(u: str, v: str, tfs: set[str]) -> list[tuple[str, str, str]]:
    """Edges (source, target, kind) for an undirected gene pair, TF -> target where one side is a TF."""
    ut, vt = u in tfs, v in tfs
    if ut and vt:
        return [(u, v, "regulates"), (v, u, "regulates")]
    if ut:
        return [(u, v, "regulates")]
    if vt:
        return [(v, u, "regulates")]
    a, b = sorted((u, v))
    return [(a, b, "co_expressed")]


def _correlation_dense(A: sp.csr_matrix) -> np.ndarray:
    n = A.shape[0]
    mean = np.asarray(A.mean(0)).ravel()
    cov = np.asarray((A.T @ A).todense()) / n - np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = cov / np.outer(sd, sd)
    return np.nan_to_num(c)


def gene_modules(G: nx.Graph, resolution: float = 1.0, seed: int = 0, attr: str = "module") -> dict[str, int]:
    """Leiden communities (modularity with ``resolution``) of the undirected, weighted projection of ``G``.

    Sets node attribute ``attr`` and returns ``{gene: module}``; modules are numbered by size (0 = largest).
    """
    import igraph as ig
    import leidenalg

    und = nx.Graph()
    und.add_nodes_from(G.nodes)
    for u, v, d in G.edges(data=True):
        w = float(d.get("weight", 1.0))
        if und.has_edge(u, v):
            und[u][v]["weight"] = max(und[u][v]["weight"], w)
        else:
            und.add_edge(u, v, weight=w)
    nodes = list(und.nodes)
    if not nodes:
        return {}
    pos = {n: i for i, n in enumerate(nodes)}
    g = ig.Graph(n=len(nodes), edges=[(pos[u], pos[v]) for u, v in und.edges])
    g.es["weight"] = [d["weight"] for _, _, d in und.edges(data=True)]
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=seed,
    )
    sizes = pd.Series(part.membership).value_counts()
    relabel = {old: new for new, old in enumerate(sizes.index)}
    modules = {nodes[i]: int(relabel[m]) for i, m in enumerate(part.membership)}
    nx.set_node_attributes(G, modules, attr)
    return modules


def gene_network(
    adata,
    *,
    n_edges_per_gene: int = 5,
    min_weight: float = 0.1,
    attention_weight: float = 0.5,
    tfs: set[str] | None = None,
    resolution: float = 1.0,
    seed: int = 0,
    key_added: str = "global",
) -> nx.DiGraph:
    """A weighted gene-gene network from attention co-occurrence and gene-embedding similarity.

    ``weight = attention_weight * max(r_att, 0) + (1 - attention_weight) * max(cos_emb, 0)`` where ``r_att``
    is the Pearson correlation across cells of two genes' attention (genes that the same cells attend to)
    and ``cos_emb`` the cosine similarity of their foundation gene embeddings. Each gene keeps its
    ``n_edges_per_gene`` strongest partners with ``weight >= min_weight``. Pairs with a transcription factor
    (``tfs``, default the shipped Lambert 2018 list) are oriented TF -> target with ``kind="regulates"`` (both
    ways when both are TFs); other pairs get one edge, ``kind="co_expressed"``, from the alphabetically
    first gene. Edge attributes: ``weight, kind, attention_corr, embedding_sim, gene_attention`` (the
    model's gene-gene attention, max over both directions, 0 when the pair is not a graph edge). Node
    attributes: ``module`` (Leiden, :func:`gene_modules`) and ``is_tf``.
    """
    genes, pos = _graph_genes(adata)
    A = _attention(adata, pos)
    R = _correlation_dense(A)
    emb = (
        np.asarray(adata.varm["cellvq_gene"], dtype=np.float32)[pos] if "cellvq_gene" in adata.varm else None
    )
    if emb is not None and np.abs(emb).sum() > 0:
        en = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        C = en @ en.T
    else:
        C = np.zeros_like(R)
    W = attention_weight * np.clip(R, 0, None) + (1 - attention_weight) * np.clip(C, 0, None)
    np.fill_diagonal(W, -np.inf)
    ga = (
        sp.csr_matrix(adata.varp[GENE_ATT])[pos][:, pos] if GENE_ATT in adata.varp else sp.csr_matrix(W.shape)
    )
    ga = ga.maximum(ga.T).tocsr()
    k = min(n_edges_per_gene, len(genes) - 1)
    top = np.argpartition(-W, k - 1, axis=1)[:, :k]
    tfs = load_tf_list() if tfs is None else set(tfs)
    pairs = set()
    for i in range(len(genes)):
        for j in top[i]:
            if W[i, j] >= min_weight:
                pairs.add((min(i, j), max(i, j)))
    G = nx.DiGraph()
    for i, j in sorted(pairs):
        attrs = {
            "weight": float(W[i, j]),
            "attention_corr": float(R[i, j]),
            "embedding_sim": float(C[i, j]),
            "gene_attention": float(ga[i, j]),
        }
        for s, t, kind in _orient(genes[i], genes[j], tfs):
            G.add_edge(s, t, kind=kind, **attrs)
    nx.set_node_attributes(G, {n: bool(n in tfs) for n in G.nodes}, "is_tf")
    gene_modules(G, resolution=resolution, seed=seed)
    _store_network(adata, key_added, G)
    return G


def code_gene_network(
    adata,
    code: str,
    *,
    key: str = "cellvq_code",
    n_edges: int = 200,
    tfs: set[str] | None = None,
    resolution: float = 1.0,
    seed: int = 0,
) -> nx.DiGraph:
    """The paper's per-code gene network: gene x gene attention summed over the code's cells.

    A cell contributes the model's gene-gene attention ``alpha(s -> t)`` for every graph edge whose two
    genes it both attends to, so ``weight(s, t) = alpha(s -> t) * #cells of the code attending to s and t``.
    The ``n_edges`` heaviest edges are kept; a pair with exactly one TF is oriented TF -> target
    (``kind="regulates"``), otherwise the attention direction is kept (``kind="co_expressed"``).
    """
    genes, pos = _graph_genes(adata)
    if GENE_ATT not in adata.varp:
        raise KeyError(f"varp[{GENE_ATT!r}] is missing; re-run model.annotate")
    lab = _labels(adata, key, None)
    ins = lab == str(code)
    if not ins.any():
        raise KeyError(f"no cell has obs[{key!r}] == {code!r}")
    A = _attention(adata, pos)[ins]
    B = A.copy()
    B.data = (B.data > 0).astype(np.float32)
    co = (B.T @ B).tocsr()
    ga = sp.csr_matrix(adata.varp[GENE_ATT])[pos][:, pos].tocoo()
    w = ga.data * np.asarray(co[ga.row, ga.col]).ravel()
    keep = np.flatnonzero(w > 0)
    keep = keep[np.argsort(-w[keep], kind="stable")[:n_edges]]
    tfs = load_tf_list() if tfs is None else set(tfs)
    G = nx.DiGraph()
    for e in keep:
        s, t = genes[ga.row[e]], genes[ga.col[e]]
        kind = "co_expressed"
        if (t in tfs) and (s not in tfs):
            s, t = t, s
        if s in tfs and t not in tfs:
            kind = "regulates"
        if G.has_edge(s, t):
            G[s][t]["weight"] += float(w[e])
        else:
            G.add_edge(s, t, weight=float(w[e]), kind=kind)
    nx.set_node_attributes(G, {n: bool(n in tfs) for n in G.nodes}, "is_tf")
    if G.number_of_nodes():
        gene_modules(G, resolution=resolution, seed=seed)
    _store_network(adata, f"code:{code}", G)
    return G


def _store_network(adata, key: str, G: nx.DiGraph) -> None:
    edges = nx.to_pandas_edgelist(G, source="source", target="target")
    nodes = pd.DataFrame(
        {
            "gene": list(G.nodes),
            "module": [int(G.nodes[n].get("module", -1)) for n in G.nodes],
            "is_tf": [bool(G.nodes[n].get("is_tf", False)) for n in G.nodes],
        }
    )
    _store(adata, "gene_network_edges", key, edges)
    _store(adata, "gene_network_nodes", key, nodes)


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
