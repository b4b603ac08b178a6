"""Gene networks: attention/similarity networks with modules, and regulatory networks from directional evidence.

:func:`gene_network` (attention co-occurrence and gene-embedding similarity, oriented from a TF where one
side is a TF) and :func:`code_gene_network` (the paper's per-code gene-gene attention) are networks of
genes that move together, with Leiden modules (:func:`gene_modules`); they carry no directional evidence.
:func:`regulatory_network` scores TF -> target edges from evidence that has a direction, and
:func:`grn_benchmark` measures them against a TF-target reference.

Regulatory evidence
-------------------

Every candidate edge is a transcription factor (``source``) and a gene it may regulate (``target``). Each
edge carries its evidence in its own column, so a user can see *why* it is there:

``tree_importance``
    GRNBoost2's question, answered by our own code: how much the TF's expression helps predict the target's
    across cells *given all the other TFs* (gradient-boosted regression trees of the target on every TF but
    itself, stochastic: ``subsample`` of the cells and ``max_features`` of the TFs per tree, early stopping
    on a held-out tenth of the cells). Importance = impurity importance x number of trees kept, as GRNBoost2
    reports it, so a target that the TFs predict well gives its regulators more weight. Directional because
    the regression runs one way, TFs -> target, conditional on the other TFs.
``tree_consensus``
    The mean percentile rank of ``tree_importance`` over ``n_tree_seeds`` stochastic runs (different cell
    subsamples and TF subsets per tree; default 1 run, i.e. the percentile of ``tree_importance``). On PBMC
    3k vs TRRUST, a two-run consensus reached AUPRC 0.0171 against 0.0096 for either run alone on one
    candidate set (scanpy HVGs, 48,627 pairs) but 0.0144 against 0.0263 on the graph genes' set (22,410
    pairs): with 68-84 positives the difference is within noise, so it is not the default. Conditioning the
    trees on the cell's foundation embedding (10 PCs) or its code lowered AUPRC (0.0050, 0.0061 vs 0.0096),
    so the trees are not conditioned on state.
``attention``
    CellVQ-Graph's gene-gene attention of the target to the TF (``varp["cellvq_graph_gene_attention"]``
    ``[tf, target]``: how much the target's node draws on the TF's node in message passing); 0 where the
    pair is not a graph edge or the AnnData has no graph read-out.
``perturbation_z`` / ``perturbation_logfc``
    Observed response: Welch t statistic (and log2 fold change of normalised expression) of the target in
    cells where the TF was knocked out (or perturbed) against control cells (:func:`perturbation_response`);
    NaN for TFs that were not perturbed. The only interventional evidence.
``spearman``
    Spearman correlation of TF and target across cells: undirected, kept as a column (its sign suggests
    activation or repression) and as a baseline, not weighted in ``score`` by default.

``score`` is a weighted mean of the evidence columns' percentile ranks among all candidates (0 = weakest,
1 = strongest; ``perturbation_z`` and ``spearman`` by absolute value), over the evidence that exists for the
edge (a TF that is perturbed but not measured is scored from its perturbation alone). Weights are
:class:`RegulatoryConfig` ``weights``; attention is exported but weighted 0 by default because against
TRRUST on PBMC 3k it was barely above random (AUPRC 1.3x the base rate) and mixing it in at weight 0.5
halved the trees' AUPRC (benchmarks/results/graph_grn.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from tqdm.auto import tqdm

from .build import counts_matrix, normalise_counts
from .readout import GENE_ATT, attention_matrix, graph_genes, state_labels
from .tables import store_table

__all__ = [
    "gene_network",
    "code_gene_network",
    "gene_modules",
    "load_tf_list",
    "RegulatoryConfig",
    "regulatory_network",
    "tree_importance",
    "perturbation_response",
    "load_tf_target_reference",
    "grn_benchmark",
    "edges_to_networkx",
    "target_rank_auroc",
    "EVIDENCE_COLUMNS",
]

EVIDENCE_COLUMNS = (
    "tree_importance",
    "tree_consensus",
    "attention",
    "perturbation_z",
    "perturbation_logfc",
    "spearman",
)


@dataclass
class RegulatoryConfig:
    """Parameters of :func:`regulatory_network` (and :func:`tree_importance`).

    ``tfs``: candidate regulators (default: the shipped Lambert 2018 list); ``targets``: candidate targets
    (default: the CellVQ-Graph genes when the AnnData has a read-out, else all genes; the measured
    regulators are the TFs among them, plus perturbed TFs when a perturbation table is given); ``max_cells``: cells
    subsampled for the regressions; the tree parameters follow GRNBoost2's defaults in spirit (shallow
    stochastic trees, 10 % of the regulators per split, early stopping) at CPU-friendly sizes.
    """

    tfs: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    layer: str | None = None
    max_cells: int = 2000
    min_cells: int = 10
    n_estimators: int = 300
    learning_rate: float = 0.05
    max_depth: int = 3
    subsample: float = 0.9
    max_features: float = 0.1
    n_iter_no_change: int = 10
    n_tree_seeds: int = 1
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"tree_consensus": 1.0, "attention": 0.0, "perturbation_z": 2.0}
    )
    seed: int = 0
    progress: bool = True


# ---------------------------------------------------------------------------------------------------------
# gene networks (no directional evidence)


def load_tf_list() -> set[str]:
    """Human transcription factors shipped with the package (Lambert et al., Cell 2018; 1,639 symbols)."""
    text = resources.files("cellvq_graph").joinpath("resources/human_tfs_lambert2018.txt").read_text()
    return {line.strip() for line in text.splitlines() if line.strip()}


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
    genes, pos = graph_genes(adata)
    A = attention_matrix(adata, pos)
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
    tfs_given = tfs
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
    params = dict(n_edges_per_gene=n_edges_per_gene, min_weight=min_weight, attention_weight=attention_weight,
                  tfs=None if tfs_given is None else sorted(tfs), resolution=resolution, seed=seed)
    _store_network(adata, key_added, G, params)
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
    genes, pos = graph_genes(adata)
    if GENE_ATT not in adata.varp:
        raise KeyError(f"varp[{GENE_ATT!r}] is missing; re-run model.annotate")
    lab = state_labels(adata, key, None)
    ins = lab == str(code)
    if not ins.any():
        raise KeyError(f"no cell has obs[{key!r}] == {code!r}")
    A = attention_matrix(adata, pos)[ins]
    B = A.copy()
    B.data = (B.data > 0).astype(np.float32)
    co = (B.T @ B).tocsr()
    ga = sp.csr_matrix(adata.varp[GENE_ATT])[pos][:, pos].tocoo()
    w = ga.data * np.asarray(co[ga.row, ga.col]).ravel()
    keep = np.flatnonzero(w > 0)
    keep = keep[np.argsort(-w[keep], kind="stable")[:n_edges]]
    tfs_given = tfs
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
    params = dict(code=code, key=key, n_edges=n_edges, tfs=None if tfs_given is None else sorted(tfs),
                  resolution=resolution, seed=seed)
    _store_network(adata, f"code:{code}", G, params)
    return G


def _store_network(adata, key: str, G: nx.DiGraph, params: dict) -> None:
    edges = nx.to_pandas_edgelist(G, source="source", target="target")
    nodes = pd.DataFrame(
        {
            "gene": list(G.nodes),
            "module": [int(G.nodes[n].get("module", -1)) for n in G.nodes],
            "is_tf": [bool(G.nodes[n].get("is_tf", False)) for n in G.nodes],
        }
    )
    store_table(adata, "gene_network_edges", key, edges, params)
    store_table(adata, "gene_network_nodes", key, nodes, params)


# ---------------------------------------------------------------------------------------------------------
# expression and candidates


def _log_expression(adata, genes: Sequence[str], layer: str | None, rows=None) -> np.ndarray:
    counts = counts_matrix(adata, layer)
    if rows is not None:
        counts = counts[rows]
    pos = pd.Index(adata.var_names.astype(str)).get_indexer(list(genes))
    return np.asarray(normalise_counts(counts)[:, pos].todense(), dtype=np.float32)


def _candidates(adata, cfg: RegulatoryConfig) -> tuple[list[str], list[str]]:
    var = pd.Index(adata.var_names.astype(str))
    if cfg.targets is not None:
        targets = [g for g in cfg.targets if g in var]
    elif "cellvq_graph" in adata.uns and "genes" in adata.uns["cellvq_graph"]:
        targets = [str(g) for g in adata.uns["cellvq_graph"]["genes"]]
    else:
        targets = list(var)
    detected = np.asarray((counts_matrix(adata, cfg.layer) > 0).sum(0)).ravel() >= cfg.min_cells
    det = set(var[detected])
    targets = [g for g in targets if g in det]
    tf_set = load_tfs(cfg)
    tfs = sorted(g for g in targets if g in tf_set)
    return tfs, targets


# ---------------------------------------------------------------------------------------------------------
# evidence


def tree_importance(
    X_tf: np.ndarray,
    tfs: Sequence[str],
    X_target: np.ndarray,
    targets: Sequence[str],
    cfg: RegulatoryConfig,
    seed_offset: int = 0,
) -> pd.DataFrame:
    """GRNBoost2-style importances of every TF for every target (columns ``source, target, tree_importance``).

    For each target, a ``GradientBoostingRegressor`` (squared error, ``subsample``, ``max_features``, early
    stopping with ``n_iter_no_change`` on 10 % of the cells) regresses its expression on all TFs but itself.
    Importance = ``feature_importances_ * n_estimators_``.
    """
    from sklearn.ensemble import GradientBoostingRegressor

    rows = []
    for j, target in enumerate(tqdm(targets, desc="tree importance", disable=not cfg.progress, leave=False)):
        y = X_target[:, j]
        keep = [i for i, t in enumerate(tfs) if t != target]
        if y.std() == 0 or not keep:
            continue
        reg = GradientBoostingRegressor(
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            max_depth=cfg.max_depth,
            subsample=cfg.subsample,
            max_features=cfg.max_features,
            n_iter_no_change=cfg.n_iter_no_change,
            validation_fraction=0.1,
            random_state=cfg.seed + 7919 * seed_offset + j,
        ).fit(X_tf[:, keep], y)
        imp = reg.feature_importances_ * reg.n_estimators_
        rows.append(pd.DataFrame({"source": [tfs[i] for i in keep], "target": target, "tree_importance": imp}))
    if not rows:
        return pd.DataFrame(columns=["source", "target", "tree_importance"])
    return pd.concat(rows, ignore_index=True)


def _spearman(X_tf: np.ndarray, X_target: np.ndarray) -> np.ndarray:
    R_tf = stats.rankdata(X_tf, axis=0)
    R_t = stats.rankdata(X_target, axis=0)
    R_tf = (R_tf - R_tf.mean(0)) / np.maximum(R_tf.std(0), 1e-12)
    R_t = (R_t - R_t.mean(0)) / np.maximum(R_t.std(0), 1e-12)
    return (R_tf.T @ R_t) / X_tf.shape[0]


def perturbation_response(
    adata,
    key: str = "perturbation",
    control: str = "non-targeting",
    *,
    genes: Sequence[str] | None = None,
    perturbations: Sequence[str] | None = None,
    layer: str | None = None,
    min_cells: int = 20,
) -> pd.DataFrame:
    """Observed response of every gene to every perturbation, against the control cells.

    Welch t statistic (``perturbation_z``) and log2 fold change of mean normalised expression
    (``perturbation_logfc``) of each gene in the perturbed cells vs ``control`` cells, on log1p(CP10k).
    Perturbations with fewer than ``min_cells`` cells are skipped. Columns ``source`` (the perturbed
    gene), ``target``, ``perturbation_z``, ``perturbation_logfc``, ``n_cells``.
    """
    if key not in adata.obs:
        raise KeyError(f"obs[{key!r}] does not exist; pass the column naming each cell's perturbation as key=")
    lab = adata.obs[key].astype(str).to_numpy()
    if not (lab == control).any():
        raise ValueError(f"no cell has obs[{key!r}] == {control!r}; pass the control label as control=")
    genes = list(adata.var_names.astype(str)) if genes is None else list(genes)
    X = _log_expression(adata, genes, layer)
    ctrl = X[lab == control]
    mean_c = np.expm1(ctrl).mean(0)
    names = [p for p in pd.unique(lab) if p != control] if perturbations is None else list(perturbations)
    rows = []
    for p in names:
        ko = X[lab == p]
        if ko.shape[0] < min_cells:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            t, _ = stats.ttest_ind(ko, ctrl, equal_var=False)
        lfc = np.log2((np.expm1(ko).mean(0) + 1e-3) / (mean_c + 1e-3))
        rows.append(
            pd.DataFrame(
                {
                    "source": p,
                    "target": genes,
                    "perturbation_z": np.nan_to_num(t),
                    "perturbation_logfc": lfc,
                    "n_cells": ko.shape[0],
                }
            )
        )
    cols = ["source", "target", "perturbation_z", "perturbation_logfc", "n_cells"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def _attention_column(adata, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if GENE_ATT not in adata.varp:
        return np.zeros(src.size)
    var = pd.Index(adata.var_names.astype(str))
    A = sp.csr_matrix(adata.varp[GENE_ATT])
    return np.asarray(A[var.get_indexer(src), var.get_indexer(dst)]).ravel()


def _percentile(v: pd.Series) -> pd.Series:
    r = v.rank(method="average", pct=True)
    return r.where(v.notna())


def _combine(edges: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    num = pd.Series(0.0, index=edges.index)
    den = pd.Series(0.0, index=edges.index)
    for col, w in weights.items():
        if col not in edges or w == 0:
            continue
        v = edges[col].abs() if col in ("perturbation_z", "spearman") else edges[col]
        if v.notna().sum() == 0 or (v.fillna(0) == 0).all():
            continue
        p = _percentile(v)
        num += (w * p).fillna(0)
        den += w * p.notna()
    return num / den.where(den > 0)


# ---------------------------------------------------------------------------------------------------------
# the network


def regulatory_network(
    adata, config: RegulatoryConfig | None = None, perturbation: pd.DataFrame | None = None
) -> pd.DataFrame:
    """TF -> target edges with their evidence columns and a combined ``score`` (see the module docstring).

    ``perturbation`` is a :func:`perturbation_response` table (its perturbed TFs become candidate
    regulators even when they are not measured). Returns one row per candidate edge, sorted by ``score``
    with ``rank`` 1 = strongest: ``source, target, score, rank`` then :data:`EVIDENCE_COLUMNS` and
    ``n_evidence`` (evidence kinds with a value). Stored with the config under
    ``uns["cellvq_graph"]["regulatory_network"]["global"]``
    when the AnnData has a CellVQ-Graph read-out.
    """
    cfg = config or RegulatoryConfig()
    tfs, targets = _candidates(adata, cfg)
    if not targets:
        raise ValueError("no candidate target is detected in min_cells cells; check RegulatoryConfig.targets")
    rng = np.random.default_rng(cfg.seed)
    rows = rng.choice(adata.n_obs, cfg.max_cells, replace=False) if adata.n_obs > cfg.max_cells else None
    parts = []
    if tfs:
        X_tf = _log_expression(adata, tfs, cfg.layer, rows)
        X_t = _log_expression(adata, targets, cfg.layer, rows)
        tree = tree_importance(X_tf, tfs, X_t, targets, cfg)
        ranks = [tree["tree_importance"].rank(pct=True)]
        for k in range(1, cfg.n_tree_seeds):
            other = tree_importance(X_tf, tfs, X_t, targets, cfg, seed_offset=k)
            other = tree[["source", "target"]].merge(other, on=["source", "target"], how="left")
            ranks.append(other["tree_importance"].fillna(0).rank(pct=True))
        tree["tree_consensus"] = np.mean(ranks, axis=0)
        rho = _spearman(X_tf, X_t)
        ti, gi = {t: i for i, t in enumerate(tfs)}, {g: j for j, g in enumerate(targets)}
        tree["spearman"] = rho[tree["source"].map(ti).to_numpy(), tree["target"].map(gi).to_numpy()]
        parts.append(tree)
    edges = parts[0] if parts else pd.DataFrame(columns=["source", "target", "tree_importance", "spearman"])
    if perturbation is not None and len(perturbation):
        tf_set = set(tfs) | set(load_tfs(cfg))
        pert = perturbation[perturbation["source"].isin(tf_set) & perturbation["target"].isin(targets)]
        pert = pert[pert["source"] != pert["target"]]
        edges = edges.merge(
            pert[["source", "target", "perturbation_z", "perturbation_logfc"]], on=["source", "target"], how="outer"
        )
    for col in EVIDENCE_COLUMNS:
        if col not in edges:
            edges[col] = np.nan
    edges["attention"] = _attention_column(adata, edges["source"].to_numpy(), edges["target"].to_numpy())
    edges["n_evidence"] = (
        edges["tree_importance"].fillna(0).gt(0).astype(int)
        + edges["attention"].gt(0).astype(int)
        + edges["perturbation_z"].notna().astype(int)
    )
    edges["score"] = _combine(edges, cfg.weights).fillna(0.0)
    edges = edges.sort_values(["score", "source", "target"], ascending=[False, True, True], ignore_index=True)
    edges["rank"] = np.arange(1, len(edges) + 1)
    edges = edges[["source", "target", "score", "rank", *EVIDENCE_COLUMNS, "n_evidence"]]
    if "cellvq_graph" in adata.uns:
        store_table(adata, "regulatory_network", "global", edges, asdict(cfg))
    return edges


def load_tfs(cfg: RegulatoryConfig) -> set[str]:
    return set(load_tf_list() if cfg.tfs is None else cfg.tfs)


def edges_to_networkx(edges: pd.DataFrame, top: int | None = None, min_score: float = 0.0) -> nx.DiGraph:
    """A ``networkx.DiGraph`` of the ``top`` strongest edges, every evidence column as an edge attribute.

    ``weight`` = ``score``, ``kind = "regulates"``; NaN evidence is written as 0 with ``has_<col>=False``
    so GraphML, CSV and Cytoscape JSON (:func:`cellvq_graph.export_network`) carry the same columns.
    """
    e = edges[edges["score"] >= min_score]
    e = e.head(top) if top is not None else e
    G = nx.DiGraph()
    for r in e.itertuples(index=False):
        d = r._asdict()
        attrs = {"weight": float(d["score"]), "kind": "regulates", "rank": int(d["rank"])}
        for c in (*EVIDENCE_COLUMNS, "n_evidence"):
            v = d[c]
            missing = v is None or (isinstance(v, float) and np.isnan(v))
            attrs[c] = 0.0 if missing else float(v)
            if c == "perturbation_z":
                attrs["has_perturbation"] = not missing
        G.add_edge(str(d["source"]), str(d["target"]), **attrs)
    nx.set_node_attributes(G, {n: bool(G.out_degree(n) > 0) for n in G.nodes}, "is_tf")
    return G


# ---------------------------------------------------------------------------------------------------------
# benchmark


def load_tf_target_reference(path) -> pd.DataFrame:
    """A TF -> target reference table (TRRUST-style TSV, optional header): columns ``source, target, mode``."""
    df = pd.read_csv(path, sep="\t", header=None, dtype=str)
    if df.iloc[0, 0].lower() in ("tf", "source"):
        df = df.iloc[1:]
    df = df.rename(columns={0: "source", 1: "target", 2: "mode"})
    if "mode" not in df:
        df["mode"] = "Unknown"
    return df[["source", "target", "mode"]].drop_duplicates(["source", "target"]).reset_index(drop=True)


def grn_benchmark(
    edges: pd.DataFrame,
    reference: pd.DataFrame,
    score_cols: Mapping[str, str],
    ks: Sequence[int] = (50, 100, 500),
    seed: int = 0,
    n_random: int = 50,
) -> pd.DataFrame:
    """AUPRC and precision@k of several scorings of one candidate set against a TF-target reference.

    The candidate set is ``edges`` restricted to TFs with at least one reference target among the
    candidates (so every method is judged on the same pairs and a TF the reference does not cover cannot
    count against anyone). ``score_cols`` maps a method name to an ``edges`` column (higher = stronger;
    use a column of absolute values for signed scores). A ``random`` row (the mean over ``n_random`` seeded
    uniform scorings: with few positives one random ranking can land a hit at the top and reach several times
    the base rate) and the base rate are added. Columns ``method, auprc, p@k..., auprc_ratio_random (AUPRC / base rate), n_candidates, n_positives, base_rate``.
    """
    from sklearn.metrics import average_precision_score

    ref = set(zip(reference["source"], reference["target"]))
    pairs = list(zip(edges["source"], edges["target"]))
    y = np.array([p in ref for p in pairs])
    covered = set(edges.loc[y, "source"])
    keep = edges["source"].isin(covered).to_numpy()
    y = y[keep]
    if y.sum() == 0:
        raise ValueError("no reference edge among the candidates; is the reference for this organism?")
    e = edges.loc[keep]
    base = float(y.mean())

    def row(name, s):
        order = np.argsort(-s, kind="stable")
        r = {"method": name, "auprc": float(average_precision_score(y, s))}
        r.update({f"p@{k}": float(y[order[:k]].mean()) for k in ks})
        return r

    out = [row(name, e[col].fillna(0).to_numpy(dtype=float)) for name, col in score_cols.items()]
    rng = np.random.default_rng(seed)
    rand = pd.DataFrame([row("random", rng.random(len(e))) for _ in range(n_random)])
    out.append({"method": f"random (mean of {n_random})", **rand.drop(columns="method").mean().to_dict()})
    df = pd.DataFrame(out)
    df["auprc_ratio_random"] = df["auprc"] / base
    df["n_candidates"] = int(len(y))
    df["n_positives"] = int(y.sum())
    df["base_rate"] = base
    return df


def target_rank_auroc(edges: pd.DataFrame, tf: str, targets: Sequence[str], score_col: str = "score") -> float:
    """AUROC of ``targets`` among ``tf``'s outgoing edges ranked by ``score_col`` (0.5 = random order)."""
    from sklearn.metrics import roc_auc_score

    out = edges[edges["source"] == tf]
    y = out["target"].isin(set(targets)).to_numpy()
    if y.all() or not y.any():
        raise ValueError(f"{tf}: need both observed targets and other genes among its outgoing edges")
    return float(roc_auc_score(y, out[score_col].fillna(0).abs().to_numpy()))
