"""A 2-D layout of the CellVQ embedding for figures: UMAP (scanpy) of ``obsm["X_cellvq"]``.

:func:`embedding_umap` works on a light copy of the embedding, so the AnnData it reads is left as it was.
:attr:`cellvq.pipeline.PipelineResult.umap` computes it once per result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["embedding_umap"]


def embedding_umap(adata, seed: int = 0) -> np.ndarray:
    """UMAP coordinates ``(n_obs, 2)`` (float32) of ``obsm["X_cellvq"]``: scanpy neighbours
    (``min(15, n_obs - 1)`` of them, at least 2) then ``sc.tl.umap``, both seeded; ``adata`` is not modified."""
    import anndata as ad
    import scanpy as sc

    from cellvq_graph import keep_torch_threads

    emb = np.asarray(adata.obsm["X_cellvq"], dtype=np.float32)
    light = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names.astype(str)), obsm={"X_cellvq": emb})
    k = max(2, min(15, adata.n_obs - 1))
    with keep_torch_threads():
        sc.pp.neighbors(light, n_neighbors=k, use_rep="X_cellvq", random_state=seed)
        sc.tl.umap(light, random_state=seed)
    return np.asarray(light.obsm["X_umap"], dtype=np.float32)
