"""Data plumbing of CellVQ: gene vocabulary, count validation, gene alignment, streaming.

Public surface (``docs/CONTRACTS.md`` section 2):

- :class:`GeneVocab` - ordered gene symbols with Ensembl IDs.
- :func:`get_counts`, :func:`scan_counts`, :func:`check_unique_genes`, :func:`check_nonempty_cells`, :func:`validate_anndata`.
- :func:`align_genes` -> :class:`GeneAlignment`; :func:`to_vocab_csr`.
- :class:`CountsBlock`, :func:`iter_blocks`, :class:`CountsStream`, :func:`stream_collate`.
- :func:`read_h5ad` - ``anndata.read_h5ad`` with a :class:`~foundation.errors.CorruptFileError` naming the file.

The streaming names are imported lazily, so data-only use does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from foundation.data.align import GeneAlignment, align_genes, align_names, to_vocab_csr
from foundation.data.coverage import (
    VocabularyCoverage,
    annotate_coverage,
    drop_counter_rows,
    full_vocabulary,
    gene_coverage,
)
from foundation.data.io import read_h5ad
from foundation.data.symbols import symbols_as_var_names
from foundation.data.validate import (
    INTEGER_TOL,
    CountsScan,
    check_counts,
    check_nonempty_cells,
    check_unique_genes,
    get_counts,
    iter_row_chunks,
    scan_counts,
    validate_anndata,
)
from foundation.data.vocab import GeneVocab, gencode_table, is_ensembl_id, strip_ensembl_version

__all__ = [
    "GeneVocab",
    "symbols_as_var_names",
    "VocabularyCoverage",
    "annotate_coverage",
    "drop_counter_rows",
    "full_vocabulary",
    "gene_coverage",
    "gencode_table",
    "is_ensembl_id",
    "strip_ensembl_version",
    "get_counts",
    "check_counts",
    "scan_counts",
    "CountsScan",
    "check_unique_genes",
    "check_nonempty_cells",
    "validate_anndata",
    "iter_row_chunks",
    "INTEGER_TOL",
    "GeneAlignment",
    "align_genes",
    "align_names",
    "to_vocab_csr",
    "CountsBlock",
    "iter_blocks",
    "CountsStream",
    "stream_collate",
    "open_h5ad_matrix",
    "read_h5ad",
]

_LAZY = {"CountsBlock", "CountsStream", "iter_blocks", "stream_collate", "open_h5ad_matrix"}

if TYPE_CHECKING:  # pragma: no cover
    from foundation.data.stream import (
        CountsBlock,
        CountsStream,
        iter_blocks,
        open_h5ad_matrix,
        stream_collate,
    )


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module("foundation.data.stream"), name)
    raise AttributeError(f"module 'foundation.data' has no attribute {name!r}")
