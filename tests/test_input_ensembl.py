"""Issue 15 item 5: Ensembl IDs as var_names (with .N suffixes) run end to end (real pbmc3k)."""

import numpy as np

from cellvq import pipeline
from foundation.data import gencode_table, symbols_as_var_names


def _as_ensembl(adata):
    """pbmc3k with var_names switched to versioned Ensembl IDs where GENCODE v44 knows the symbol (84%)."""
    df = gencode_table()
    sym2id = dict(zip(df["symbol"][::-1], df["ensembl_id"][::-1]))
    a = adata.copy()
    a.var_names = [f"{sym2id[s]}.5" if s in sym2id else s for s in a.var_names]
    a.var_names_make_unique()
    return a


def test_symbols_as_var_names_maps_and_keeps_ids(pbmc3k):
    a = _as_ensembl(pbmc3k[:50])
    ids = list(a.var_names)
    n = symbols_as_var_names(a)
    assert n > 0.8 * a.n_vars
    assert list(a.var["gene_ids"]) == ids
    assert a.var_names.is_unique and "LYZ" in a.var_names and "CD3E" in a.var_names
    assert symbols_as_var_names(a) == 0  # already symbols: a no-op


def test_pipeline_runs_on_ensembl_ids(pbmc3k, tmp_path):
    rng = np.random.default_rng(0)
    sub = _as_ensembl(pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, 600, replace=False))])
    assert sub.var_names.str.startswith("ENSG").mean() > 0.8
    res = pipeline.run(sub, db=tmp_path / "db", dataset_id="ens", graph_epochs=5)
    assert res.db is not None and "gene_ids" in res.adata.var
    assert res.adata.var_names.str.startswith("ENSG").mean() < 0.05
