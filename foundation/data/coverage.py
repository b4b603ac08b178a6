"""Gene coverage of a dataset against the full GENCODE v44 vocabulary and the model's trained genes.

The *full vocabulary* is every GENCODE v44 gene (62,754 Ensembl IDs, version suffixes stripped) plus the
few model genes GENCODE v44 no longer lists. A gene of the full vocabulary that the checkpoint never saw in
pretraining is **untrained**: it has no trained embedding, so it is left out of the encoder input (never
given a random embedding) and reported — ``var["cellvq_untrained"]``, ``uns["cellvq_vocabulary"]`` (number
of untrained genes, their share of counts) and an :class:`~foundation.errors.UntrainedGenesWarning` when
they hold a large share of the counts. ``cellvq adapt`` is the way to learn them.

Rows that are not genes — HTSeq-count's summary counters (``__no_feature``, ``__ambiguous``,
``__too_low_aQual``, ``__not_aligned``, ``__alignment_not_unique``) — are dropped by
:func:`drop_counter_rows` with a message naming how many counts they held.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from foundation.data.symbols import id_of
from foundation.data.vocab import GeneVocab, gencode_table, strip_ensembl_version
from foundation.errors import UntrainedGenesWarning

__all__ = [
    "COUNTER_PREFIX",
    "VocabularyCoverage",
    "full_vocabulary",
    "counter_rows",
    "drop_counter_rows",
    "gene_coverage",
    "annotate_coverage",
    "file_coverage",
]

logger = logging.getLogger("foundation")

COUNTER_PREFIX = "__"  # HTSeq-count summary rows; no gene symbol or Ensembl ID starts with it
# HTSeq-count's summary rows, also met without their "__" (e.g. Darmanis 2015: "no_feature", "ambiguous")
HTSEQ_COUNTERS = frozenset({"no_feature", "ambiguous", "too_low_aQual", "not_aligned", "alignment_not_unique"})
ID_COLUMNS = ("gene_ids", "gene_id", "ensembl_id", "ensembl", "feature_id")  # var columns with Ensembl IDs
UNTRAINED_WARN_SHARE = 0.05  # warn when untrained genes hold more than this share of the counts


@dataclass(frozen=True)
class VocabularyCoverage:
    """How a dataset's genes and counts fall on the full vocabulary and on the model's trained genes.

    Shares are of the counts on gene rows (counter rows excluded); ``nan`` when counts were not given.
    """

    n_vars: int
    n_full: int  # vars in the full (GENCODE v44) vocabulary
    n_trained: int  # vars the model was pretrained on
    n_untrained: int  # in the full vocabulary, not trained: excluded from the encoder input
    n_unknown: int  # in neither
    full_count_share: float
    trained_count_share: float
    untrained_count_share: float
    untrained_examples: list[str] = field(default_factory=list)
    unknown_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.n_full}/{self.n_vars} genes ({100 * self.full_count_share:.1f}% of counts) are in the "
                f"GENCODE v44 vocabulary; {self.n_untrained} of them ({100 * self.untrained_count_share:.1f}% of "
                f"counts) are untrained by this checkpoint and left out of its input")


@lru_cache(maxsize=1)
def _gencode_keys() -> tuple[frozenset[str], frozenset[str]]:
    df = gencode_table()
    return frozenset(df["symbol"]), frozenset(df["ensembl_id"])


def full_vocabulary(model_vocab: GeneVocab) -> tuple[GeneVocab, np.ndarray]:
    """The full vocabulary (GENCODE v44 order, then model genes GENCODE lacks) and its ``untrained`` mask.

    A GENCODE gene is trained when the model vocabulary holds its Ensembl ID, or its symbol where the model
    gene has no ID (duplicated GENCODE symbols are told apart by Ensembl ID).
    """
    df = gencode_table()
    trained_ids = {e for e in model_vocab.ensembl_ids if e}
    trained_syms = {s for s, e in zip(model_vocab.symbols, model_vocab.ensembl_ids) if not e}
    untrained = [not (e in trained_ids or s in trained_syms) for s, e in zip(df["symbol"], df["ensembl_id"])]
    gsyms, gids = _gencode_keys()
    extra = [(s, e) for s, e in zip(model_vocab.symbols, model_vocab.ensembl_ids) if e not in gids and s not in gsyms]
    symbols = df["symbol"].tolist() + [s for s, _ in extra]
    ids = df["ensembl_id"].tolist() + [e for _, e in extra]
    return GeneVocab(symbols, ids), np.array(untrained + [False] * len(extra), dtype=bool)


def counter_rows(names) -> np.ndarray:
    """Boolean mask of HTSeq-count summary rows (``__no_feature``, ``no_feature``, ``__ambiguous``, ...)."""
    return np.array([str(n).startswith(COUNTER_PREFIX) or str(n) in HTSEQ_COUNTERS for n in names], dtype=bool)


def drop_counter_rows(adata, col_sums: np.ndarray | None = None) -> list[str]:
    """Drop HTSeq-count summary rows (``__no_feature``, ``__ambiguous``, ..., with or without ``__``) in place.

    Returns the dropped names; logs a warning with the share of counts they held (counts only when
    ``col_sums`` is given or ``adata`` is in memory).
    """
    mask = counter_rows(adata.var_names)
    if not mask.any():
        return []
    names = [str(n) for n in adata.var_names[mask]]
    if col_sums is None and not adata.isbacked:
        col_sums = _col_sums(adata.X)
    share = "" if col_sums is None else f", holding {100 * col_sums[mask].sum() / max(col_sums.sum(), 1):.1f}% of the counts"
    warnings.warn(
        f"dropped {len(names)} HTSeq-count summary rows {names[:5]}{share}: they count reads that fell on no gene, "
        "not genes; remove these rows from your count table to silence this.",
        UserWarning, stacklevel=2)
    adata._inplace_subset_var(~mask)
    return names


def _col_sums(X) -> np.ndarray:
    return np.asarray(X.sum(axis=0), dtype=np.float64).ravel()


def _ensembl_column(adata, var_key: str | None) -> list[str] | None:
    for c in ID_COLUMNS:
        if c != var_key and c in adata.var:
            ids = [id_of(str(x)) for x in adata.var[c]]
            if np.mean([bool(e) for e in ids]) > 0.5:
                return ids
    return None


def gene_coverage(names: list[str], model_vocab: GeneVocab, col_sums: np.ndarray | None = None,
                  ensembl_ids: list[str] | None = None, trained: np.ndarray | None = None
                  ) -> tuple[VocabularyCoverage, np.ndarray]:
    """Coverage of var ``names`` (symbols or Ensembl IDs; ``ensembl_ids`` optional per var, ``""`` unknown).

    ``trained``: which vars the encoder actually reads (``GeneAlignment.var_index >= 0``); default: the vars
    whose name or ID the model vocabulary holds.
    Returns the coverage and a per-var ``untrained`` mask. Counter rows count as neither genes nor counts.
    """
    gsyms, gids = _gencode_keys()
    ids = [e or id_of(n) for n, e in zip(names, ensembl_ids or [""] * len(names))]
    genes = ~counter_rows(names)
    if trained is None:
        trained = np.array([n in model_vocab or bool(e and e in model_vocab) for n, e in zip(names, ids)])
    trained = np.asarray(trained, dtype=bool)
    in_full = np.array([strip_ensembl_version(n) in gids or n in gsyms or e in gids
                        for n, e in zip(names, ids)]) | trained
    untrained = in_full & ~trained & genes
    unknown = ~in_full & genes
    if col_sums is None:
        shares = (float("nan"),) * 3
    else:
        total = max(float(col_sums[genes].sum()), 1e-12)
        shares = tuple(float(col_sums[m].sum() / total) for m in (in_full & genes, trained & genes, untrained))
    cov = VocabularyCoverage(
        n_vars=int(genes.sum()), n_full=int((in_full & genes).sum()), n_trained=int((trained & genes).sum()),
        n_untrained=int(untrained.sum()), n_unknown=int(unknown.sum()),
        full_count_share=shares[0], trained_count_share=shares[1], untrained_count_share=shares[2],
        untrained_examples=[names[i] for i in np.flatnonzero(untrained)[:10]],
        unknown_examples=[names[i] for i in np.flatnonzero(unknown)[:10]],
    )
    return cov, untrained


def annotate_coverage(adata, model_vocab: GeneVocab, col_sums: np.ndarray | None = None,
                      var_key: str | None = None, trained: np.ndarray | None = None,
                      warn_share: float = UNTRAINED_WARN_SHARE) -> VocabularyCoverage:
    """Write ``var["cellvq_untrained"]`` and ``uns["cellvq_vocabulary"]``; warn when untrained genes hold
    more than ``warn_share`` of the counts. ``col_sums``: total counts per var (computed if in memory);
    ``trained``: the vars the encoder reads (see :func:`gene_coverage`)."""
    names = [str(n) for n in (adata.var[var_key] if var_key else adata.var_names)]
    if col_sums is None and not adata.isbacked:
        col_sums = _col_sums(adata.X)
    cov, untrained = gene_coverage(names, model_vocab, col_sums, _ensembl_column(adata, var_key), trained)
    adata.var["cellvq_untrained"] = pd.array(untrained, dtype=bool)
    adata.uns["cellvq_vocabulary"] = {k: v for k, v in cov.as_dict().items() if not k.endswith("_examples")}
    logger.info("%s", cov.summary())
    if cov.untrained_count_share > warn_share:
        warnings.warn(
            f"{cov.summary()}, e.g. {cov.untrained_examples[:5]}. The embedding rests on the trained genes only "
            "(var['cellvq_untrained']); run `cellvq adapt` (CellVQ.adapt) to learn the rest from these counts.",
            UntrainedGenesWarning, stacklevel=2)
    return cov


def file_coverage(path, vocab: GeneVocab, root=None) -> dict:
    """Coverage of one h5ad's counts in ``X``, prepared as ``cellvq.pipeline.run`` prepares it (HTSeq rows
    dropped, Ensembl IDs mapped to symbols), as one row of ``benchmarks/vocabulary.py``'s table."""
    import anndata as ad

    from foundation.data.align import align_names
    from foundation.data.symbols import symbols_as_var_names

    a = ad.read_h5ad(path)
    col = np.asarray(a.X.sum(axis=0), dtype=np.float64).ravel()
    counters = counter_rows(a.var_names)
    a = a[:, ~counters].copy()
    symbols_as_var_names(a)
    al = align_names([str(n) for n in a.var_names], vocab, col_sums=col[~counters])
    cov = annotate_coverage(a, vocab, col[~counters], trained=al.var_index >= 0, warn_share=1.0)
    return {"file": str(path.relative_to(root)) if root else str(path), "cells": a.n_obs, "genes": int(cov.n_vars),
            "counter_share": float(col[counters].sum() / max(col.sum(), 1)),
            "full_share": cov.full_count_share, "trained_share": cov.trained_count_share,
            "untrained_share": cov.untrained_count_share, "n_untrained": cov.n_untrained,
            "n_unknown": cov.n_unknown, "unknown_examples": cov.unknown_examples[:5]}
