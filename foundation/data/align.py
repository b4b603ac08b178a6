"""Aligning a dataset's genes to a model's gene vocabulary.

Each var is matched by symbol first, then by Ensembl ID (version suffix ignored; an Ensembl ID the
vocabulary does not list is translated to its GENCODE v44 symbol). Genes of the vocabulary that the dataset
did not measure are flagged ``measured=False``: they are *missing*, not zero, and the model must treat them
as such (the decoder may predict them, the loss must not score them).

Match rates are logged on the ``foundation`` logger at INFO every time, warned about below
``warn_below`` and refused below ``min_match``.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from foundation.data.validate import get_matrix, is_backed_matrix, iter_row_chunks
from foundation.data.vocab import GeneVocab, gencode_table, is_ensembl_id
from foundation.errors import LowGeneMatchWarning, MissingKeyError, VocabularyMismatchError

__all__ = ["GeneAlignment", "align_genes", "align_names", "to_vocab_csr"]

logger = logging.getLogger(__name__)

_MOUSE_LIKE = re.compile(r"^[A-Z][a-z0-9]+[a-z][a-z0-9-]*$")  # e.g. Gapdh, Trp53, Nkx6-1


@dataclass
class GeneAlignment:
    """How a dataset's vars map onto a :class:`GeneVocab`.

    Attributes
    ----------
    var_index
        ``int64 (n_vars,)``: vocabulary position of each var, ``-1`` where unmatched.
    measured
        ``bool (len(vocab),)``: the vocabulary gene was measured by the dataset (matched by some var).
        Unmeasured genes are missing, not zero.
    gene_match_rate
        Matched vars / vars.
    count_match_rate
        Share of the dataset's total counts that falls on matched vars (``nan`` if counts were not given).
    n_matched
        Number of matched vars.
    n_vars, n_vocab
        Sizes of the two sides.
    unmatched_examples
        Up to 10 unmatched var names (for messages).
    n_by_ensembl
        How many vars matched only through their Ensembl ID.
    n_collisions
        Vocabulary genes hit by more than one var (their counts are summed by :func:`to_vocab_csr`).
    """

    var_index: np.ndarray
    measured: np.ndarray
    gene_match_rate: float
    count_match_rate: float
    n_matched: int
    n_vars: int
    n_vocab: int
    unmatched_examples: list[str] = field(default_factory=list)
    n_by_ensembl: int = 0
    n_collisions: int = 0
    source: str = "adata"

    @property
    def vocab_coverage(self) -> float:
        """Share of the vocabulary measured by the dataset."""
        return float(self.measured.sum()) / max(self.n_vocab, 1)

    def summary(self) -> str:
        """One-line human-readable report of the match rates."""
        cm = "n/a" if np.isnan(self.count_match_rate) else f"{100 * self.count_match_rate:.1f}%"
        return (
            f"{self.source}: {self.n_matched}/{self.n_vars} genes matched the vocabulary "
            f"({100 * self.gene_match_rate:.1f}% of genes, {cm} of counts; "
            f"{100 * self.vocab_coverage:.1f}% of the {self.n_vocab}-gene vocabulary measured)"
        )

    def as_dict(self) -> dict:
        """Plain scalars for ``adata.uns`` (no arrays)."""
        return {
            "gene_match_rate": float(self.gene_match_rate),
            "count_match_rate": float(self.count_match_rate),
            "n_matched": int(self.n_matched),
            "n_vars": int(self.n_vars),
            "n_vocab": int(self.n_vocab),
            "n_by_ensembl": int(self.n_by_ensembl),
        }


def _column_sums(X) -> np.ndarray:
    if is_backed_matrix(X):
        total = np.zeros(X.shape[1], dtype=np.float64)
        for _, C in iter_row_chunks(X):
            total += np.asarray(C.sum(axis=0), dtype=np.float64).ravel()
        return total
    return np.asarray(X.sum(axis=0), dtype=np.float64).ravel()


def _var_names(adata: AnnData, var_key: str | None) -> list[str]:
    if var_key is None:
        return [str(v) for v in adata.var_names]
    if var_key not in adata.var.columns:
        raise MissingKeyError(
            f"var_key {var_key!r} not found in adata.var; available columns: "
            f"{list(adata.var.columns) or 'none'}. Pass one of them, or var_key=None to use var_names."
        )
    col = adata.var[var_key]
    return ["" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in col]


def looks_like_mouse(names: list[str]) -> bool:
    """True when most names are mouse-style symbols whose upper-case form is a human GENCODE v44 symbol
    (``Gapdh`` -> ``GAPDH``); random or unknown names are not called mouse."""
    if not names:
        return False
    human = set(gencode_table()["symbol"])
    return float(np.mean([bool(_MOUSE_LIKE.match(n)) and n.upper() in human for n in names])) > 0.5


def _mismatch_hint(names: list[str], adata_var_columns: list[str], var_key: str | None) -> str:
    hints = []
    sample = [n for n in names[:2000] if n]
    if looks_like_mouse(sample):
        hints.append("the names look like mouse symbols (e.g. 'Gapdh'); symbols are case-sensitive and the "
                     "vocabulary is human: map them to human orthologs first")
    other = [c for c in adata_var_columns if c != var_key]
    if other:
        hints.append(f"adata.var has columns {other[:8]}: if one holds gene symbols or Ensembl IDs pass "
                     "var_key='<column>'")
    hints.append("use gene symbols (e.g. 'TP53') or Ensembl IDs (e.g. 'ENSG00000141510') in adata.var_names, "
                 "or pass var_key= naming a var column that holds them")
    return "; ".join(hints)


def align_names(names: list[str], vocab: GeneVocab, col_sums: np.ndarray | None = None,
                source: str = "adata") -> GeneAlignment:
    """Align a plain list of gene names (no checks, no logging); see :func:`align_genes`."""
    var_index = vocab.index_of(names) if len(names) else np.zeros(0, dtype=np.int64)
    matched = var_index >= 0
    n_vars = len(names)
    n_matched = int(matched.sum())
    measured = np.zeros(len(vocab), dtype=bool)
    measured[var_index[matched]] = True
    n_collisions = int(n_matched - measured.sum())
    # which matched only via Ensembl (their name is an ID, not a vocabulary symbol)
    n_by_ens = int(sum(1 for n, ok in zip(names, matched) if ok and is_ensembl_id(n)))
    if col_sums is not None and col_sums.sum() > 0:
        count_rate = float(col_sums[matched].sum() / col_sums.sum())
    else:
        count_rate = float("nan")
    unmatched = [names[i] for i in np.flatnonzero(~matched)[:10]]
    return GeneAlignment(
        var_index=var_index.astype(np.int64),
        measured=measured,
        gene_match_rate=n_matched / max(n_vars, 1),
        count_match_rate=count_rate,
        n_matched=n_matched,
        n_vars=n_vars,
        n_vocab=len(vocab),
        unmatched_examples=unmatched,
        n_by_ensembl=n_by_ens,
        n_collisions=n_collisions,
        source=source,
    )


def check_alignment(al: GeneAlignment, *, min_match: float, warn_below: float, hint: str = "") -> None:
    """Log the match rates; warn below ``warn_below``; raise below ``min_match`` or with no overlap."""
    logger.info("gene alignment - %s", al.summary())
    if al.n_collisions:
        logger.info("%s: %d vocabulary genes are matched by more than one var; their counts are summed",
                    al.source, al.n_collisions)
    rate = al.gene_match_rate
    if al.n_matched == 0 or rate < min_match:
        cm = "n/a" if np.isnan(al.count_match_rate) else f"{100 * al.count_match_rate:.1f}%"
        raise VocabularyMismatchError(
            f"only {al.n_matched} of {al.n_vars} genes of {al.source} are in the model's {al.n_vocab}-gene "
            f"vocabulary (gene match rate {100 * rate:.1f}%, count match rate {cm}; the floor is "
            f"{100 * min_match:.0f}%). Unmatched examples: {al.unmatched_examples[:5]}. Fix: {hint or 'use gene symbols or Ensembl IDs in var_names, or var_key='}."
        )
    if rate < warn_below:
        cm = "n/a" if np.isnan(al.count_match_rate) else f"{100 * al.count_match_rate:.1f}%"
        warnings.warn(
            f"{al.source}: only {100 * rate:.1f}% of genes ({al.n_matched}/{al.n_vars}; {cm} of counts) matched "
            f"the model vocabulary (below {100 * warn_below:.0f}%); unmatched examples: "
            f"{al.unmatched_examples[:5]}. Embeddings may lose information; check gene naming (symbols vs "
            "Ensembl IDs, species) or pass var_key=.",
            LowGeneMatchWarning,
            stacklevel=3,
        )


def align_genes(
    adata: AnnData,
    vocab: GeneVocab,
    *,
    layer: str | None = None,
    var_key: str | None = None,
    min_match: float = 0.2,
    warn_below: float = 0.9,
    source: str | None = None,
    col_sums: np.ndarray | None = None,
) -> GeneAlignment:
    """Map each var of ``adata`` to ``vocab`` (by symbol, else by Ensembl ID).

    Parameters
    ----------
    adata
        In-memory or backed AnnData (counts for the count match rate are read in chunks when backed).
    vocab
        The model's gene vocabulary.
    layer
        Layer whose counts give ``count_match_rate`` (default ``adata.X``).
    var_key
        Column of ``adata.var`` holding the gene names to match (default: ``adata.var_names``).
    min_match
        Raise :class:`VocabularyMismatchError` when the gene match rate is below this (or nothing matches).
    warn_below
        Emit :class:`LowGeneMatchWarning` when the gene match rate is below this.
    source
        Name used in messages (default ``"adata"`` or the backing file name).
    col_sums
        Total counts per var, if already known (e.g. :attr:`~foundation.data.validate.CountsScan.col_sums`
        from :func:`~foundation.data.scan_counts`); saves one pass over a backed matrix.

    Returns
    -------
    :class:`GeneAlignment`. The match rates are logged at INFO on the ``foundation`` logger every call.
    """
    names = _var_names(adata, var_key)
    if source is None:
        source = str(adata.filename.name) if adata.isbacked and adata.filename is not None else "adata"
    if col_sums is None:
        col_sums = _column_sums(get_matrix(adata, layer))
    elif len(col_sums) != adata.n_vars:
        raise ValueError(f"col_sums has {len(col_sums)} entries but adata has {adata.n_vars} vars")
    al = align_names(names, vocab, col_sums=col_sums, source=source)
    hint = _mismatch_hint(names, list(adata.var.columns), var_key) if al.gene_match_rate < warn_below else ""
    check_alignment(al, min_match=min_match, warn_below=warn_below, hint=hint)
    return al


def to_vocab_csr(counts: sp.spmatrix, alignment: GeneAlignment | np.ndarray, n_vocab: int | None = None
                 ) -> sp.csr_matrix:
    """Re-index the columns of ``counts`` (cells x vars) into vocabulary coordinates (cells x n_vocab).

    Unmatched vars are dropped; if several vars map to one vocabulary gene their counts are summed (this only
    happens when duplicated names were not refused earlier). Returns canonical CSR float32.
    """
    var_index = alignment.var_index if isinstance(alignment, GeneAlignment) else np.asarray(alignment)
    if n_vocab is None:
        if not isinstance(alignment, GeneAlignment):
            raise TypeError("to_vocab_csr needs n_vocab when given a bare var_index array")
        n_vocab = alignment.n_vocab
    counts = sp.csr_matrix(counts)
    if counts.shape[1] != len(var_index):
        raise ValueError(
            f"counts have {counts.shape[1]} columns but the alignment covers {len(var_index)} vars; align the "
            "same AnnData you read the counts from."
        )
    new_cols = var_index[counts.indices]
    keep = new_cols >= 0
    cs = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    row_nnz = cs[counts.indptr[1:]] - cs[counts.indptr[:-1]]
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    out = sp.csr_matrix(
        (counts.data[keep].astype(np.float32, copy=False), new_cols[keep].astype(np.int32), indptr),
        shape=(counts.shape[0], int(n_vocab)),
    )
    out.sum_duplicates()  # sorts indices and sums collisions
    return out
