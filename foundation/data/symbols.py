"""Map Ensembl gene IDs in ``var_names`` to gene symbols (GENCODE v44) before anything else reads them.

Accepted forms: ``ENSG00000141510``, ``ENSG00000141510.17`` and composite names that join a symbol and an
ID (``TP53_ENSG00000141510``, ``ENSG00000141510|TP53``, as some R exports write them).
"""

from __future__ import annotations

import re

import pandas as pd

from foundation.data.vocab import gencode_maps, is_ensembl_id, strip_ensembl_version

__all__ = ["id_of", "symbols_as_var_names"]

_COMPOSITE_RE = re.compile(r"^(?:.+[_|])?(ENS[A-Z]*G\d{11})(?:\.\d+)?(?:[_|].+)?$")


def id_of(name: str) -> str:
    """The unversioned Ensembl gene ID held in ``name`` (plain, versioned or composite), else ``""``."""
    if is_ensembl_id(name):
        return strip_ensembl_version(name)
    m = _COMPOSITE_RE.match(name)
    return m.group(1) if m else ""


def symbols_as_var_names(adata, *, min_fraction: float = 0.0) -> int:
    """Replace Ensembl IDs (``ENSG...`` with or without ``.N``, or composite) in ``adata.var_names`` by symbols.

    Acts when more than ``min_fraction`` of ``var_names`` hold Ensembl IDs (default: any). The original names are kept in
    ``var["gene_ids"]``; IDs absent from GENCODE v44 stay as they are; duplicated symbols are made unique
    (``anndata``'s ``var_names_make_unique``: ``-1``, ``-2`` suffixes). Returns the number of names mapped.
    """
    names = [str(n) for n in adata.var_names]
    ids = [id_of(n) for n in names]
    n_ids = sum(bool(e) for e in ids)
    if not n_ids or n_ids <= min_fraction * len(names):
        return 0
    id2sym = gencode_maps()[0]
    new = [id2sym.get(e, n) if e else n for n, e in zip(names, ids)]
    mapped = sum(a != b for a, b in zip(names, new))
    adata.var["gene_ids"] = names
    adata.var_names = pd.Index(new)
    adata.var_names_make_unique()
    return mapped
