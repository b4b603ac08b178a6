"""Map Ensembl gene IDs in ``var_names`` to gene symbols (GENCODE v44) before anything else reads them."""

from __future__ import annotations

import pandas as pd

from foundation.data.vocab import gencode_table, is_ensembl_id, strip_ensembl_version

__all__ = ["symbols_as_var_names"]


def symbols_as_var_names(adata, *, min_fraction: float = 0.5) -> int:
    """Replace Ensembl IDs (``ENSG...`` with or without ``.N``) in ``adata.var_names`` by gene symbols.

    Acts only when at least ``min_fraction`` of ``var_names`` are Ensembl IDs. The original IDs are kept in
    ``var["gene_ids"]``; IDs absent from GENCODE v44 stay as they are; duplicated symbols are made unique
    (``anndata``'s ``var_names_make_unique``: ``-1``, ``-2`` suffixes). Returns the number of names mapped.
    """
    names = [str(n) for n in adata.var_names]
    is_ens = [is_ensembl_id(n) for n in names]
    if not names or sum(is_ens) < min_fraction * len(names):
        return 0
    id2sym = dict(zip(gencode_table()["ensembl_id"], gencode_table()["symbol"]))
    new = [id2sym.get(strip_ensembl_version(n), n) if e else n for n, e in zip(names, is_ens)]
    mapped = sum(a != b for a, b in zip(names, new))
    adata.var["gene_ids"] = names
    adata.var_names = pd.Index(new)
    adata.var_names_make_unique()
    return mapped
