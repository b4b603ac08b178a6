"""Issue 15 item 4: Leiden on 10k+ real cells (scanpy 1.11.5 neighbors crashed on pynndescent 0.7 csr_array graphs)."""

import numpy as np
import scanpy as sc

from foundation.tasks.clustering import leiden


def test_leiden_on_10k_cells(pbmc3k):
    a = pbmc3k.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=20, random_state=0)
    big = sc.concat([a] * 4, index_unique="-")  # 10,552 real cells, PCA rep jittered per copy
    rng = np.random.default_rng(0)
    big.obsm["X_pca"] = np.vstack([a.obsm["X_pca"]] * 4) + rng.normal(0, 0.01, (big.n_obs, 20)).astype(np.float32)
    labels = leiden(big, use_rep="X_pca")
    assert big.n_obs > 10_000 and len(labels) == big.n_obs
    assert 3 <= labels.nunique() <= 60
