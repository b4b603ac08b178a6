"""Build the CellVQ-Graph knowledge graph from an AnnData embedded by the foundation model.

Node types
----------
``cell``      one node per observation; features ``obsm["X_cellvq"]`` (foundation embedding).
``gene``      a selected gene set (see *Gene selection*); features ``varm["cellvq_gene"]``.
``property``  one node per (kind, value) of descriptive obs columns (tissue, disease, age, sex, cell type
              ...); numeric columns (e.g. age) are binned into quantile bins first.
``state``     one node per (key, value) of the state columns, by default the cell codes
              ``obs["cellvq_code"]``; clusters (any categorical obs column) can be added as further keys.

Relations (every relation has its reverse, so messages flow both ways)
----------------------------------------------------------------------
``(cell, expresses, gene)`` / ``(gene, expressed_in, cell)``
    the top-``k`` expressed genes of each cell (ranked by log-normalised expression within the selected
    genes). Edge attribute (2 columns): log-normalised expression and its per-gene z-score, so attention can
    tell "expressed" from "expressed more than usual".
``(cell, has, property)`` / ``(property, describes, cell)``
``(cell, in, state)`` / ``(state, contains, cell)``
``(gene, similar_to, gene)``
    symmetric kNN in gene-embedding space (cosine); attribute: cosine similarity.
``(gene, co_expressed, gene)``
    symmetric kNN on Pearson correlation of log-normalised expression (computed on at most
    ``coexpr_max_cells`` cells); attribute: correlation.

Gene selection
--------------
Genes must be in the foundation vocabulary (``var["cellvq_in_vocab"]``, else non-zero rows of
``varm["cellvq_gene"]``) and detected in ``min_cells`` cells. From those, ``genes="hvg"`` keeps the
``n_genes`` most variable ones (Seurat-style normalised dispersion within mean bins), which keeps the graph
light (a few thousand genes) and keeps ubiquitous housekeeping genes from crowding each cell's top-``k``;
``genes="expressed"`` keeps the genes that are most often among a cell's top-``k``; a list of names keeps
exactly those.

The id <-> index tables live in :class:`GraphIndex` (``data.graph_index``); they are saved with the model
as JSON so a trained model and a rebuilt graph agree on every index.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

__all__ = [
    "GraphIndex",
    "build_graph",
    "normalise_counts",
    "counts_matrix",
    "cell_gene_edge_attr",
    "CELL_GENE",
    "GENE_CELL",
    "CELL_PROP",
    "PROP_CELL",
    "CELL_STATE",
    "STATE_CELL",
    "GENE_SIM",
    "GENE_COEXPR",
]

CELL_GENE = ("cell", "expresses", "gene")
GENE_CELL = ("gene", "expressed_in", "cell")
CELL_PROP = ("cell", "has", "property")
PROP_CELL = ("property", "describes", "cell")
CELL_STATE = ("cell", "in", "state")
STATE_CELL = ("state", "contains", "cell")
GENE_SIM = ("gene", "similar_to", "gene")
GENE_COEXPR = ("gene", "co_expressed", "gene")

REVERSE = {
    CELL_GENE: GENE_CELL,
    GENE_CELL: CELL_GENE,
    CELL_PROP: PROP_CELL,
    PROP_CELL: CELL_PROP,
    CELL_STATE: STATE_CELL,
    STATE_CELL: CELL_STATE,
}

DEFAULT_PROPERTIES = ("cell_type", "tissue", "disease", "age", "sex")


@dataclass(repr=False)
class GraphIndex:
    """Id <-> index tables of a CellVQ-Graph.

    ``categories`` holds, for every categorical kind (state keys first, then property kinds), the ordered
    list of its values; node ``i`` of type ``state``/``property`` is ``(kind, value)`` at position ``i`` of
    :attr:`state_nodes` / :attr:`property_nodes`. ``bins`` holds the bin edges of numeric properties.
    """

    cells: list[str]
    genes: list[str]
    state_keys: list[str]
    property_kinds: list[str]
    categories: dict[str, list[str]]
    bins: dict[str, list[float]] = field(default_factory=dict)
    top_k: int = 64
    version: int = 1

    @property
    def kinds(self) -> list[str]:
        """All categorical kinds the model predicts: state keys, then property kinds."""
        return list(self.state_keys) + list(self.property_kinds)

    def _nodes(self, kinds: Sequence[str]) -> list[tuple[str, str]]:
        return [(k, v) for k in kinds for v in self.categories[k]]

    @property
    def state_nodes(self) -> list[tuple[str, str]]:
        return self._nodes(self.state_keys)

    @property
    def property_nodes(self) -> list[tuple[str, str]]:
        return self._nodes(self.property_kinds)

    def node_offset(self, kind: str) -> int:
        """Index of the first node of ``kind`` within its node type (state or property)."""
        kinds = self.state_keys if kind in self.state_keys else self.property_kinds
        if kind not in kinds:
            raise KeyError(f"{kind!r} is neither a state key nor a property kind of this graph")
        off = 0
        for k in kinds:
            if k == kind:
                return off
            off += len(self.categories[k])
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        cats = ", ".join(f"{k}: {len(v)}" for k, v in self.categories.items())
        return f"GraphIndex(cells={len(self.cells)}, genes={len(self.genes)}, top_k={self.top_k}, {cats})"

    def gene_index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GraphIndex:
        return cls(**d)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def from_json(cls, path: str | Path) -> GraphIndex:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------------------------------------
# expression helpers


def counts_matrix(adata, layer: str | None) -> sp.csr_matrix:
    """``X`` (or ``layers[layer]``) as float32 CSR; raises when it is missing or has negative values."""
    X = adata.layers[layer] if layer is not None else adata.X
    if X is None:
        raise ValueError("adata has no expression matrix; CellVQ-Graph needs raw counts in X (or `layer=`)")
    X = sp.csr_matrix(X, dtype=np.float32) if not sp.issparse(X) else X.tocsr().astype(np.float32)
    if X.nnz and X.data.min() < 0:
        raise ValueError(
            "expression has negative values; build_graph needs raw (or at least non-negative normalised) "
            "counts in X or in the layer passed as `layer=`"
        )
    return X


def normalise_counts(counts: sp.csr_matrix, target_sum: float = 1e4) -> sp.csr_matrix:
    """log1p of counts scaled to ``target_sum`` per cell (scanpy's ``normalize_total`` + ``log1p``)."""
    size = np.asarray(counts.sum(1)).ravel()
    size[size == 0] = 1.0
    out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    out.data = np.log1p(out.data * np.repeat(target_sum / size, np.diff(out.indptr)).astype(np.float32))
    return out


def _gene_stats(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[0]
    mean = np.asarray(X.mean(0)).ravel()
    sq = np.asarray(X.multiply(X).mean(0)).ravel()
    var = np.maximum(sq - mean**2, 0.0) * n / max(n - 1, 1)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def cell_gene_edge_attr(
    expr: torch.Tensor, gene: torch.Tensor, gene_mean: torch.Tensor, gene_std: torch.Tensor
) -> torch.Tensor:
    """Edge attribute of ``cell -> gene`` edges from log-normalised expression: ``[expr, z-score]``.

    Written as a function of ``expr`` so attributions (integrated gradients) can scale expression from a
    zero baseline and the z-score follows consistently.
    """
    z = (expr - gene_mean[gene]) / gene_std[gene].clamp_min(1e-3)
    return torch.stack([expr, z.clamp(-10.0, 10.0)], dim=-1)


def _select_hvg(logn: sp.csr_matrix, candidates: np.ndarray, n_genes: int) -> np.ndarray:
    mean, std = _gene_stats(logn[:, candidates])
    disp = np.log(np.maximum(std**2, 1e-12) / np.maximum(mean, 1e-12))
    bins = pd.cut(mean, 20, labels=False)
    z = np.zeros_like(disp)
    for b in np.unique(bins):
        m = bins == b
        s = disp[m].std()
        z[m] = (disp[m] - disp[m].mean()) / s if m.sum() > 1 and s > 0 else 0.0
    order = np.argsort(-z, kind="stable")[:n_genes]
    return np.sort(candidates[order])


def _topk_per_row(X: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of the ``k`` largest stored entries of every row of a CSR matrix."""
    X = X.tocsr()
    X.eliminate_zeros()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    order = np.lexsort((-X.data, rows))  # by row, then value descending
    rank = np.arange(order.size) - np.repeat(X.indptr[:-1], np.diff(X.indptr))
    keep = order[rank < k]
    return rows[keep], X.indices[keep], X.data[keep]


def _knn_edges(S: np.ndarray, k: int, min_value: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetrised kNN edges of a dense similarity matrix (self excluded)."""
    S = S.copy()
    np.fill_diagonal(S, -np.inf)
    k = min(k, S.shape[0] - 1)
    if k <= 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
    src = np.repeat(np.arange(S.shape[0]), k)
    dst = nn.ravel()
    val = S[src, dst]
    keep = np.isfinite(val) & (val >= min_value)
    src, dst = src[keep], dst[keep]
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0)
    return pairs[:, 0], pairs[:, 1], S[pairs[:, 0], pairs[:, 1]].astype(np.float32)


def _cosine(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=1, keepdims=True)
    Mn = M / np.maximum(n, 1e-12)
    return Mn @ Mn.T


def _correlation(X: sp.csr_matrix) -> np.ndarray:
    n = X.shape[0]
    mean = np.asarray(X.mean(0)).ravel()
    cov = np.asarray((X.T @ X).todense()) / n - np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 1e-12))
    return (cov / np.outer(sd, sd)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# categorical columns


def _categorical_codes(
    adata, key: str, *, numeric_bins: int, reuse: list[str] | None, reuse_bins: list[float] | None
) -> tuple[np.ndarray, list[str], list[float] | None]:
    """Integer codes (-1 = missing) and value table of an obs column; numeric columns are binned."""
    col = adata.obs[key]
    n_valid = int(col.notna().sum())
    is_cat = isinstance(col.dtype, pd.CategoricalDtype)
    numeric = (not is_cat) and pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    nunique = col.nunique(dropna=True)
    id_like = n_valid > 1 and nunique == n_valid and (not numeric or pd.api.types.is_integer_dtype(col))
    if id_like:
        raise ValueError(
            f"obs column {key!r} has a different value in every cell ({nunique} distinct values for "
            f"{n_valid} cells); it looks like an ID column, and a node per cell would carry no shared "
            "information. Pass only descriptive columns (tissue, disease, age, sex, cell type ...) as "
            "properties."
        )
    bins_out = None
    if numeric:
        values = col.to_numpy(dtype=float)
        if reuse_bins is not None:
            edges = np.asarray(reuse_bins, dtype=float)
        else:
            finite = values[np.isfinite(values)]
            edges = (
                np.unique(np.quantile(finite, np.linspace(0, 1, numeric_bins + 1)))
                if finite.size
                else np.array([0.0, 1.0])
            )
            if edges.size < 2:
                edges = np.array([edges[0], edges[0] + 1.0])
        bins_out = [float(e) for e in edges]
        idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        labels = [
            f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])}{']' if i == len(edges) - 2 else ')'}"
            for i in range(len(edges) - 1)
        ]
        strings = np.where(np.isfinite(values), np.asarray(labels, dtype=object)[idx], None)
        table = reuse if reuse is not None else labels
    else:
        strings = np.where(col.notna().to_numpy(), col.astype(str).to_numpy(dtype=object), None)
        if reuse is not None:
            table = reuse
        elif is_cat:
            present = set(strings[strings != None])  # noqa: E711
            table = [str(c) for c in col.cat.categories if str(c) in present]
        else:
            table = sorted({s for s in strings if s is not None})
    lookup = {v: i for i, v in enumerate(table)}
    codes = np.array([lookup.get(s, -1) if s is not None else -1 for s in strings], dtype=np.int64)
    return codes, list(table), bins_out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# ----------------------------------------------------------------------------------------------------------
# build


def build_graph(
    adata,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    *,
    states: str | Sequence[str] = "cellvq_code",
    use_rep: str = "X_cellvq",
    gene_rep: str = "cellvq_gene",
    layer: str | None = None,
    genes: str | Sequence[str] = "hvg",
    n_genes: int = 2000,
    top_k: int = 64,
    min_cells: int = 3,
    gene_knn: int = 10,
    coexpr_knn: int = 10,
    coexpr_min_corr: float = 0.05,
    coexpr_max_cells: int = 20000,
    numeric_bins: int = 5,
    index: GraphIndex | None = None,
    seed: int = 0,
) -> HeteroData:
    """Build the heterogeneous cell/gene/property/state graph of an embedded AnnData.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or ``layer``), ``obsm[use_rep]`` and ``varm[gene_rep]`` written by
        ``foundation.CellVQ.embed``.
    properties
        Descriptive obs columns; absent ones are skipped with a warning, ID-like ones (a distinct value in
        every cell) raise ``ValueError``. Numeric columns are binned into ``numeric_bins`` quantile bins.
    states
        Obs column(s) whose values become ``state`` nodes (default: the cell codes); add cluster columns to
        link cells to clusters too. Missing state columns raise.
    genes, n_genes, min_cells
        Gene selection (see module docstring).
    top_k
        Number of expressed genes linked to each cell.
    gene_knn, coexpr_knn, coexpr_min_corr
        Neighbours per gene in gene-embedding space and in co-expression; co-expression neighbours below
        ``coexpr_min_corr`` are dropped.
    index
        Reuse the gene/property/state tables of a trained model (``model.index``) so the graph matches it.

    Returns
    -------
    HeteroData with ``data.graph_index`` (:class:`GraphIndex`), node labels ``data["cell"].y`` (one column
    per kind of ``graph_index.kinds``, -1 where missing) and per-gene statistics
    ``data["gene"].expr_mean`` / ``expr_std`` of log-normalised expression.
    """
    if use_rep not in adata.obsm:
        raise KeyError(
            f"adata.obsm[{use_rep!r}] is missing: embed the data with the foundation model first "
            "(`foundation.load_pretrained().embed(adata)`, i.e. CellVQ.embed), which writes "
            "obsm['X_cellvq'], obs['cellvq_code'] and varm['cellvq_gene']."
        )
    if gene_rep not in adata.varm:
        raise KeyError(
            f"adata.varm[{gene_rep!r}] is missing: embed the data with the foundation model first "
            "(CellVQ.embed writes the gene embeddings)."
        )
    state_keys = [states] if isinstance(states, str) else list(states)
    for key in state_keys:
        if key not in adata.obs:
            raise KeyError(
                f"state column obs[{key!r}] is missing; the cell codes come from CellVQ.embed, clusters from "
                "e.g. scanpy.tl.leiden"
            )
    if index is not None:
        prop_kinds = list(index.property_kinds)
        missing = [p for p in prop_kinds if p not in adata.obs]
        if missing:
            raise KeyError(f"the model's property columns {missing} are missing from adata.obs")
        state_keys = list(index.state_keys)
    else:
        absent = [p for p in properties if p not in adata.obs]
        if absent:
            warnings.warn(
                f"properties {absent} are not columns of adata.obs and are skipped", UserWarning, stacklevel=2
            )
        prop_kinds = [p for p in dict.fromkeys(properties) if p in adata.obs and p not in state_keys]

    n_cells = adata.n_obs
    if n_cells < 2:
        raise ValueError("build_graph needs at least two cells")
    X_cell = np.asarray(adata.obsm[use_rep], dtype=np.float32)
    if not np.isfinite(X_cell).all():
        raise ValueError(f"obsm[{use_rep!r}] contains NaN or inf")
    G_emb = np.asarray(adata.varm[gene_rep], dtype=np.float32)

    counts = counts_matrix(adata, layer)
    logn = normalise_counts(counts)
    var_names = np.asarray(adata.var_names.astype(str))

    # ---- gene selection
    if index is not None:
        pos = pd.Index(var_names).get_indexer(index.genes)
        if (pos < 0).any():
            miss = [g for g, p in zip(index.genes, pos) if p < 0][:10]
            raise KeyError(
                f"{int((pos < 0).sum())} genes of the model are not in adata.var_names, e.g. {miss}"
            )
        gene_pos = pos
        top_k = index.top_k
    else:
        if "cellvq_in_vocab" in adata.var:
            in_vocab = adata.var["cellvq_in_vocab"].to_numpy(dtype=bool)
        else:
            in_vocab = np.abs(G_emb).sum(1) > 0
        detected = np.asarray((counts > 0).sum(0)).ravel() >= min_cells
        candidates = np.flatnonzero(in_vocab & detected)
        if isinstance(genes, str) and genes == "hvg":
            gene_pos = _select_hvg(logn, candidates, n_genes) if candidates.size > n_genes else candidates
        elif isinstance(genes, str) and genes == "expressed":
            r, c, _ = _topk_per_row(logn[:, candidates], top_k)
            freq = np.bincount(c, minlength=candidates.size)
            gene_pos = np.sort(candidates[np.argsort(-freq, kind="stable")[:n_genes]])
            gene_pos = gene_pos[np.isin(gene_pos, candidates[freq > 0])]
        elif isinstance(genes, str):
            raise ValueError(f"genes={genes!r}: use 'hvg', 'expressed' or a list of gene names")
        else:
            pos = pd.Index(var_names).get_indexer(list(genes))
            if (pos < 0).any():
                raise KeyError(
                    f"genes not in adata.var_names: {[g for g, p in zip(genes, pos) if p < 0][:10]}"
                )
            gene_pos = np.asarray(pos)
        if gene_pos.size < 2:
            raise ValueError(
                "fewer than two usable genes (in the foundation vocabulary and detected in "
                f"{min_cells} cells); check var['cellvq_in_vocab'] and the counts"
            )
    gene_names = [str(g) for g in var_names[gene_pos]]
    L = logn[:, gene_pos].tocsr()
    gmean, gstd = _gene_stats(L)

    # ---- cell -> gene edges (top-k per cell)
    r, c, v = _topk_per_row(L, top_k)
    empty = np.setdiff1d(np.arange(n_cells), r)
    if empty.size:
        warnings.warn(
            f"{empty.size} cells express none of the {len(gene_names)} graph genes and get no gene edges",
            UserWarning,
            stacklevel=2,
        )

    # ---- categorical kinds
    categories: dict[str, list[str]] = {}
    bins: dict[str, list[float]] = {}
    y_cols = []
    for kind in state_keys + prop_kinds:
        codes, table, b = _categorical_codes(
            adata,
            kind,
            numeric_bins=numeric_bins,
            reuse=index.categories[kind] if index is not None else None,
            reuse_bins=index.bins.get(kind) if index is not None else None,
        )
        categories[kind] = table
        if b is not None:
            bins[kind] = b
        y_cols.append(codes)
    y = np.stack(y_cols, 1) if y_cols else np.zeros((n_cells, 0), np.int64)

    gi = GraphIndex(
        cells=[str(x) for x in adata.obs_names],
        genes=gene_names,
        state_keys=state_keys,
        property_kinds=prop_kinds,
        categories=categories,
        bins=bins,
        top_k=int(top_k),
    )

    def _node_edges(kinds: list[str], offset_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cells, nodes, kind_of = [], [], []
        off = 0
        for j, kind in enumerate(kinds):
            codes = y[:, offset_cols + j]
            ok = codes >= 0
            cells.append(np.flatnonzero(ok))
            nodes.append(codes[ok] + off)
            kind_of.append(np.full(len(categories[kind]), j))
            off += len(categories[kind])
        if not kinds:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
        return np.concatenate(cells), np.concatenate(nodes), np.concatenate(kind_of)

    data = HeteroData()
    data["cell"].x = torch.from_numpy(X_cell)
    data["cell"].y = torch.from_numpy(y)
    data["gene"].x = torch.from_numpy(np.ascontiguousarray(G_emb[gene_pos]))
    data["gene"].expr_mean = torch.from_numpy(gmean)
    data["gene"].expr_std = torch.from_numpy(gstd)

    s_cells, s_nodes, s_kind = _node_edges(state_keys, 0)
    p_cells, p_nodes, p_kind = _node_edges(prop_kinds, len(state_keys))
    data["state"].num_nodes = int(sum(len(categories[k]) for k in state_keys))
    data["state"].kind = torch.from_numpy(s_kind.astype(np.int64))
    data["property"].num_nodes = int(sum(len(categories[k]) for k in prop_kinds))
    data["property"].kind = torch.from_numpy(p_kind.astype(np.int64))

    ei = torch.from_numpy(np.stack([r, c]).astype(np.int64))
    expr = torch.from_numpy(v.astype(np.float32))
    ea = cell_gene_edge_attr(expr, ei[1], data["gene"].expr_mean, data["gene"].expr_std)
    data[CELL_GENE].edge_index = ei
    data[CELL_GENE].edge_attr = ea
    data[GENE_CELL].edge_index = ei.flip(0)
    data[GENE_CELL].edge_attr = ea.clone()

    sei = torch.from_numpy(np.stack([s_cells, s_nodes]).astype(np.int64)).reshape(2, -1)
    data[CELL_STATE].edge_index = sei
    data[STATE_CELL].edge_index = sei.flip(0)
    pei = torch.from_numpy(np.stack([p_cells, p_nodes]).astype(np.int64)).reshape(2, -1)
    data[CELL_PROP].edge_index = pei
    data[PROP_CELL].edge_index = pei.flip(0)

    # ---- gene-gene edges
    emb = G_emb[gene_pos]
    if gene_knn > 0 and np.abs(emb).sum() > 0:
        s, d, w = _knn_edges(_cosine(emb), gene_knn, min_value=-np.inf)
    else:
        s, d, w = np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    data[GENE_SIM].edge_index = torch.from_numpy(np.stack([s, d]).astype(np.int64)).reshape(2, -1)
    data[GENE_SIM].edge_attr = torch.from_numpy(w.reshape(-1, 1))
    if coexpr_knn > 0:
        rng = np.random.default_rng(seed)
        sub = (
            rng.choice(n_cells, coexpr_max_cells, replace=False)
            if n_cells > coexpr_max_cells
            else slice(None)
        )
        s, d, w = _knn_edges(_correlation(L[sub]), coexpr_knn, min_value=coexpr_min_corr)
    else:
        s, d, w = np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    data[GENE_COEXPR].edge_index = torch.from_numpy(np.stack([s, d]).astype(np.int64)).reshape(2, -1)
    data[GENE_COEXPR].edge_attr = torch.from_numpy(w.reshape(-1, 1))

    data.graph_index = gi
    return data
