"""What :meth:`CellVQGraph.annotate` wrote into an AnnData, and the accessors the read-outs share.

The keys are those of docs/CONTRACTS.md §3; :func:`require_readout` raises with the fix when they are
missing. ``markers``, ``states`` and ``networks`` read the attention, the graph genes and state labels
through these functions so they agree on alignment and on missing labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .tables import UNS_KEY

__all__ = [
    "ATT_LAYER",
    "GENE_ATT",
    "PROP_ATT",
    "EMB",
    "require_readout",
    "graph_genes",
    "attention_matrix",
    "state_labels",
    "mean_rows",
    "graph_embedding",
    "keep_torch_threads",
]

ATT_LAYER = "cellvq_graph_attention"
GENE_ATT = "cellvq_graph_gene_attention"
PROP_ATT = "cellvq_graph_property_attention"
EMB = "X_cellvq_graph"


def require_readout(adata) -> dict:
    """``uns["cellvq_graph"]`` of an annotated AnnData; raises ``KeyError`` naming the fix otherwise."""
    if ATT_LAYER not in adata.layers or UNS_KEY not in adata.uns:
        raise KeyError(
            "adata has no CellVQ-Graph read-out; run model.annotate(adata, data) (or cellvq_graph.tl.fit) first"
        )
    return adata.uns[UNS_KEY]


def graph_genes(adata) -> tuple[list[str], np.ndarray]:
    """The graph's genes and their positions in ``adata.var_names``."""
    genes = [str(g) for g in require_readout(adata)["genes"]]
    pos = pd.Index(adata.var_names.astype(str)).get_indexer(genes)
    if (pos < 0).any():
        raise ValueError("the graph's genes are not all in adata.var_names; was adata subset by genes?")
    return genes, pos


def attention_matrix(adata, pos: np.ndarray) -> sp.csr_matrix:
    """Cells x graph genes cell -> gene attention (columns ``pos`` of the attention layer)."""
    return sp.csr_matrix(adata.layers[ATT_LAYER])[:, pos].tocsr()


def state_labels(adata, groupby: str, groups: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """``obs[groupby]`` as an object array of strings (``None`` = missing), values pooled by ``groups``."""
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


def mean_rows(M: sp.csr_matrix, mask: np.ndarray) -> np.ndarray:
    """Column means over the rows in ``mask`` (zeros when the mask is empty)."""
    n = int(mask.sum())
    if n == 0:
        return np.zeros(M.shape[1])
    return np.asarray(M[mask].sum(0)).ravel() / n


def graph_embedding(adata, use_rep: str = EMB) -> np.ndarray:
    if use_rep not in adata.obsm:
        raise KeyError(f"obsm[{use_rep!r}] is missing; run model.annotate(adata, data) first")
    return np.asarray(adata.obsm[use_rep], dtype=np.float32)


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
