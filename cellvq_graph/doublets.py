"""Bridges against doublets, and bridges against a known path.

``score_doublets`` runs scanpy's scrublet on the raw counts and writes ``obs["doublet_score"]`` and
``obs["predicted_doublet"]`` (scanpy's names, so :func:`cellvq_graph.describe_bridges` finds them) and
``uns["cellvq_graph_doublets"]`` (parameters, threshold, share called). ``bridge_doublets`` compares, per
bridge (pair of states joined by intermediate cells), the share of its cells called doublets with the
share in the data (binomial test, one-sided). ``path_adjacency`` measures the share of bridge cells whose
two states are adjacent on a known path (e.g. the pancreatic endocrine path) beside the share expected when
the same states are paired at random (endpoint frequencies kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DoubletConfig", "score_doublets", "bridge_doublets", "path_adjacency"]


@dataclass
class DoubletConfig:
    """Parameters of :func:`score_doublets` / :func:`bridge_doublets`."""

    layer: str | None = None
    expected_doublet_rate: float = 0.06
    threshold: float | None = 0.25  # fixed: scrublet's automatic threshold needs scikit-image
    n_prin_comps: int = 30
    random_state: int = 0
    min_bridge_cells: int = 5


def score_doublets(adata, config: DoubletConfig | None = None) -> pd.Series:
    """Scrublet doublet scores of ``adata``'s raw counts (``config.layer`` or ``X``)."""
    import anndata as ad
    import scanpy as sc

    cfg = config or DoubletConfig()
    X = adata.layers[cfg.layer] if cfg.layer else adata.X
    b = ad.AnnData(X=X.copy(), obs=pd.DataFrame(index=adata.obs_names.astype(str)))
    sc.pp.scrublet(b, expected_doublet_rate=cfg.expected_doublet_rate, threshold=cfg.threshold,
                   n_prin_comps=min(cfg.n_prin_comps, adata.n_obs - 1), random_state=cfg.random_state,
                   verbose=False)
    adata.obs["doublet_score"] = b.obs["doublet_score"].to_numpy(dtype=np.float32)
    adata.obs["predicted_doublet"] = b.obs["predicted_doublet"].to_numpy(dtype=bool)
    adata.uns["cellvq_graph_doublets"] = {
        "method": "scanpy.pp.scrublet", "threshold": float(cfg.threshold or np.nan),
        "expected_doublet_rate": cfg.expected_doublet_rate, "n_prin_comps": cfg.n_prin_comps,
        "random_state": cfg.random_state, "share_called": float(adata.obs["predicted_doublet"].mean()),
    }
    return adata.obs["doublet_score"]


def bridge_doublets(adata, intermediate: pd.DataFrame, config: DoubletConfig | None = None) -> pd.DataFrame:
    """Per bridge: ``bridge, state_a, state_b, n_cells, doublet_score, doublet_share, data_share,
    enrichment, p_value``; per cell ``obs["cellvq_graph_bridge"]`` (``"a|b"``, NaN outside bridges)."""
    from scipy.stats import binomtest

    cfg = config or DoubletConfig()
    if "predicted_doublet" not in adata.obs:
        raise KeyError("obs['predicted_doublet'] is missing; run cellvq_graph.doublets.score_doublets first")
    called = adata.obs["predicted_doublet"].to_numpy(dtype=bool)
    score = adata.obs["doublet_score"].to_numpy(dtype=float)
    data_share = float(called.mean())
    pos = pd.Index(adata.obs_names.astype(str)).get_indexer(intermediate["cell"].astype(str))
    pairs = np.sort(intermediate[["state_a", "state_b"]].astype(str).to_numpy(), axis=1)
    names = np.array([f"{a}|{b}" for a, b in pairs], dtype=object)
    col = pd.Series(np.nan, index=adata.obs_names, dtype=object)
    col.iloc[pos] = names
    adata.obs["cellvq_graph_bridge"] = pd.Categorical(col)
    rows = []
    for name in pd.unique(names):
        cells = pos[names == name]
        if len(cells) < cfg.min_bridge_cells:
            continue
        k = int(called[cells].sum())
        share = k / len(cells)
        a, b = name.split("|", 1)
        rows.append({"bridge": name, "state_a": a, "state_b": b, "n_cells": len(cells),
                     "doublet_score": float(score[cells].mean()), "doublet_share": share,
                     "data_share": data_share, "enrichment": share / data_share if data_share else np.nan,
                     "p_value": float(binomtest(k, len(cells), data_share, alternative="greater").pvalue)})
    cols = ["bridge", "state_a", "state_b", "n_cells", "doublet_score", "doublet_share", "data_share",
            "enrichment", "p_value"]
    return pd.DataFrame(rows, columns=cols).sort_values("n_cells", ascending=False, ignore_index=True)


def path_adjacency(intermediate: pd.DataFrame, stage: dict[str, int]) -> dict:
    """Share of bridge cells joining states one step apart on ``stage`` (state -> position on the path)
    vs a random pairing of the same endpoints (frequencies kept, no self pairs). States not in
    ``stage`` count as off-path."""
    a = intermediate["state_a"].astype(str).map(stage)
    b = intermediate["state_b"].astype(str).map(stage)
    on = ((a - b).abs() == 1).to_numpy()
    w = pd.concat([intermediate["state_a"], intermediate["state_b"]]).astype(str).value_counts(normalize=True)
    s = w.index.map(stage).to_numpy(dtype=float)
    p = w.to_numpy()
    P = np.outer(p, p)
    np.fill_diagonal(P, 0.0)
    adj = np.abs(s[:, None] - s[None, :]) == 1
    return {"n_cells": int(len(intermediate)), "on_path_share": float(on.mean()) if len(on) else float("nan"),
            "random_share": float(P[adj].sum() / P.sum()) if P.sum() else float("nan")}
