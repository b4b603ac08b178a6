"""Validation of raw UMI counts.

CellVQ models raw counts with a ZINB likelihood, so the matrix it reads must hold finite, non-negative
integers. The most common mistakes (passing log-normalised or scaled data, NaNs, duplicated gene names,
cells with no counts) are recognised and reported with the fix.

Everything here works on in-memory AnnData (dense or sparse ``X``/layers) and on backed AnnData
(``read_h5ad(path, backed="r")``), which is read in row chunks and never densified as a whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from foundation.errors import CountsValidationError, DuplicateGenesError, EmptyCellsError, MissingKeyError

__all__ = [
    "get_counts",
    "get_matrix",
    "check_counts",
    "scan_counts",
    "CountsScan",
    "check_unique_genes",
    "check_nonempty_cells",
    "validate_anndata",
    "iter_row_chunks",
    "CountStats",
    "scan_values",
    "raise_unless_counts",
    "INTEGER_TOL",
]

#: Largest distance from the nearest integer that still counts as an integer value.
INTEGER_TOL = 1e-3
#: Rows per chunk when reading a backed matrix.
CHUNK_ROWS = 1024
#: Non-integer data whose maximum is below this looks log-transformed (log1p of 1e4-normalised counts
#: rarely exceeds ~10; log1p(1e6) is 13.8).
_LOG_MAX = 20.0


def _where(layer: str | None) -> str:
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def get_matrix(adata: AnnData, layer: str | None = None):
    """The matrix to read: ``adata.X`` or ``adata.layers[layer]`` (may be a backed dataset).

    Raises :class:`~foundation.errors.MissingKeyError` (a ``KeyError``) listing the available layers when
    ``layer`` does not exist.
    """
    if layer is None:
        X = adata.X
        if X is None:
            raise CountsValidationError(
                "adata.X is empty (None); CellVQ needs raw UMI counts: put them in adata.X or pass "
                f"layer=... (available layers: {sorted(adata.layers.keys())})."
            )
        return X
    if layer not in adata.layers:
        avail = sorted(adata.layers.keys())
        raise MissingKeyError(
            f"layer {layer!r} not found in adata.layers; available layers: "
            f"{avail if avail else 'none'}. Pass one of them as layer=..., or layer=None to read adata.X."
        )
    return adata.layers[layer]


def is_backed_matrix(X) -> bool:
    return not (isinstance(X, np.ndarray) or sp.issparse(X))


def iter_row_chunks(X, chunk_rows: int = CHUNK_ROWS, start: int = 0, stop: int | None = None
                    ) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Yield ``(row_offset, csr_chunk)`` over rows ``[start, stop)`` of any matrix (dense, sparse, backed).

    Chunks are CSR float32 copies of at most ``chunk_rows`` rows; a backed matrix is read chunk by chunk.
    In-memory CSC input is converted to CSR once (it is already in memory).
    """
    n = X.shape[0]
    stop = n if stop is None else min(stop, n)
    if sp.issparse(X) and X.format != "csr":
        X = sp.csr_matrix(X)
    for i in range(start, stop, chunk_rows):
        j = min(i + chunk_rows, stop)
        yield i, to_csr32(X[i:j])


def to_csr32(M) -> sp.csr_matrix:
    """CSR float32 (scipy ``csr_matrix``, canonical format) of a dense or sparse block."""
    if isinstance(M, np.ndarray | np.matrix):
        M = sp.csr_matrix(np.asarray(M, dtype=np.float32))
    elif sp.issparse(M):
        M = sp.csr_matrix(M)  # also turns csr_array / coo / csc into csr_matrix
    else:
        raise TypeError(f"cannot read a matrix of type {type(M).__name__}")
    if M.dtype != np.float32:
        M = M.astype(np.float32)
    if not M.has_canonical_format:
        M = M.copy()
        M.sum_duplicates()
    return M


@dataclass
class CountStats:
    """Running statistics over the stored values of a matrix."""

    n_values: int = 0
    n_nan: int = 0
    n_inf: int = 0
    n_neg: int = 0
    n_nonint: int = 0
    vmin: float = np.inf
    vmax: float = -np.inf
    first_bad_row: int | None = None
    example_nonint: list[float] = field(default_factory=list)
    row_sums: list[np.ndarray] = field(default_factory=list)

    def update(self, C: sp.csr_matrix, row_offset: int) -> None:
        data = C.data
        if data.size == 0:
            return
        self.n_values += data.size
        finite = np.isfinite(data)
        if not finite.all():
            bad = ~finite
            self.n_nan += int(np.isnan(data).sum())
            self.n_inf += int(np.isinf(data).sum())
            if self.first_bad_row is None:
                pos = int(np.argmax(bad))
                self.first_bad_row = row_offset + int(np.searchsorted(C.indptr, pos, side="right") - 1)
            data = data[finite]
            if data.size == 0:
                return
        self.vmin = min(self.vmin, float(data.min()))
        self.vmax = max(self.vmax, float(data.max()))
        neg = data < 0
        if neg.any():
            self.n_neg += int(neg.sum())
        nonint = np.abs(data - np.rint(data)) > INTEGER_TOL
        if nonint.any():
            self.n_nonint += int(nonint.sum())
            if len(self.example_nonint) < 3:
                for v in np.unique(data[nonint][:1000])[:3]:
                    if len(self.example_nonint) < 3 and float(v) not in self.example_nonint:
                        self.example_nonint.append(float(v))


def scan_values(X, keep_row_sums: bool = True, col_sums: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS
          ) -> tuple[CountStats, int]:
    """Statistics of every stored value of X, chunked when backed. Returns (stats, n_stored).

    ``col_sums`` (float64, n_vars), if given, is incremented in place by the column sums.
    """
    st = CountStats()
    nnz = 0
    if is_backed_matrix(X) or isinstance(X, np.ndarray):
        chunks: Iterator[tuple[int, sp.csr_matrix]] = (
            iter_row_chunks(X, chunk_rows) if is_backed_matrix(X) else ((0, to_csr32(X)),)
        )
    else:
        chunks = ((0, to_csr32(X)),)
    for off, C in chunks:
        st.update(C, off)
        nnz += C.nnz
        if keep_row_sums:
            st.row_sums.append(np.asarray(C.sum(axis=1), dtype=np.float64).ravel())
        if col_sums is not None:
            col_sums += np.bincount(C.indices, weights=C.data, minlength=C.shape[1])
    return st, nnz


def _hints(adata: AnnData | None, layer: str | None) -> str:
    if adata is None:
        return ""
    parts = []
    other_layers = [k for k in adata.layers.keys() if k != layer]
    if other_layers:
        parts.append(f"available layers: {sorted(other_layers)}")
    if adata.raw is not None and layer is None:
        parts.append(
            f"adata.raw is set ({adata.raw.n_vars} genes) - if it holds counts use adata.raw.to_adata()"
        )
    return (" (" + "; ".join(parts) + ")") if parts else ""


def raise_unless_counts(st: CountStats, nnz: int, shape: tuple[int, int], where: str, hint: str,
              obs_names=None) -> None:
    """Raise CountsValidationError describing what the matrix looks like instead of raw counts."""
    fix = f"CellVQ needs raw UMI counts: pass layer='counts' or restore raw counts{hint}."
    if st.n_nan or st.n_inf:
        cell = ""
        if st.first_bad_row is not None:
            name = obs_names[st.first_bad_row] if obs_names is not None else st.first_bad_row
            cell = f", first in cell {name!r}"
        raise CountsValidationError(
            f"{where} contains {st.n_nan} NaN and {st.n_inf} infinite values{cell}; raw counts are always "
            f"finite. Fix the step that produced them (or drop the affected cells). {fix}"
        )
    if nnz == 0 or st.n_values == 0 or (st.vmax <= 0 and st.n_neg == 0):
        raise CountsValidationError(
            f"{where} ({shape[0]} cells x {shape[1]} genes) holds no non-zero values; there is nothing to "
            f"embed. {fix}"
        )
    if st.n_neg:
        if st.n_nonint:
            raise CountsValidationError(
                f"{where} looks scaled / z-scored (min {st.vmin:.3g}, {st.n_neg} negative values, non-integer "
                f"values), as after sc.pp.scale; {fix}"
            )
        raise CountsValidationError(
            f"{where} contains {st.n_neg} negative value(s) (min {st.vmin:.3g}); counts cannot be negative "
            f"(a subtraction such as background correction or batch regression?). {fix}"
        )
    if st.n_nonint:
        frac = st.n_nonint / max(st.n_values, 1)
        ex = ", ".join(f"{v:.4g}" for v in st.example_nonint)
        if st.vmax < _LOG_MAX:
            raise CountsValidationError(
                f"{where} looks log-normalised (max {st.vmax:.3g}, non-integer values such as {ex}); {fix}"
            )
        sums = np.concatenate(st.row_sums) if st.row_sums else np.zeros(0)
        sums = sums[sums > 0]
        if sums.size > 1 and np.std(sums) < 1e-3 * np.mean(sums):
            raise CountsValidationError(
                f"{where} looks normalised to a fixed total per cell ({np.median(sums):.6g} in every cell, "
                f"non-integer values such as {ex}), as after sc.pp.normalize_total; {fix}"
            )
        raise CountsValidationError(
            f"{where} holds non-integer values ({100 * frac:.3g}% of non-zeros, e.g. {ex}; max "
            f"{st.vmax:.6g}); it looks normalised or imputed, not raw UMI counts. {fix} If these are "
            "estimated counts (e.g. from ambient-RNA correction) round them first: X.data = np.rint(X.data)."
        )


def check_counts(X, *, where: str = "matrix", adata: AnnData | None = None, layer: str | None = None) -> None:
    """Raise :class:`CountsValidationError` unless ``X`` holds finite, non-negative integer counts.

    NaN/inf and negative values are looked for in every stored value; integrality is checked on every
    stored value too (tolerance :data:`INTEGER_TOL`). ``adata`` / ``layer`` only enrich the message.
    """
    st, nnz = scan_values(X)
    raise_unless_counts(st, nnz, X.shape, where, _hints(adata, layer),
              obs_names=adata.obs_names if adata is not None else None)
    if st.vmax <= 1:
        warnings.warn(
            f"{where} holds only 0/1 values; CellVQ expects UMI counts, binarised data will embed poorly.",
            UserWarning,
            stacklevel=3,
        )


@dataclass
class CountsScan:
    """What one validating pass over a counts matrix learnt, without keeping the matrix.

    ``library``: total counts per cell (float64, n_obs). ``col_sums``: total counts per var (float64,
    n_vars). ``nnz``: stored values."""

    library: np.ndarray
    col_sums: np.ndarray
    nnz: int


def scan_counts(adata: AnnData, layer: str | None = None, chunk_rows: int = CHUNK_ROWS) -> CountsScan:
    """Validate the raw counts of ``adata`` (as :func:`check_counts`) in one pass and return per-cell and
    per-gene totals, holding at most one row chunk in memory when ``adata`` is backed.

    This is the first of the two passes of a streamed embedding (:meth:`foundation.CellVQ.embed` on a
    backed AnnData): it raises before anything is embedded if the data are not raw counts, and its
    ``col_sums`` give the count match rate of :func:`~foundation.data.align_genes` without a second read.
    """
    X = get_matrix(adata, layer)
    col_sums = np.zeros(X.shape[1], dtype=np.float64)
    st, nnz = scan_values(X, keep_row_sums=True, col_sums=col_sums, chunk_rows=chunk_rows)
    raise_unless_counts(st, nnz, X.shape, _where(layer), _hints(adata, layer), obs_names=adata.obs_names)
    if st.vmax <= 1:
        warnings.warn(
            f"{_where(layer)} holds only 0/1 values; CellVQ expects UMI counts, binarised data will embed poorly.",
            UserWarning,
            stacklevel=2,
        )
    library = np.concatenate(st.row_sums) if st.row_sums else np.zeros(X.shape[0])
    return CountsScan(library=library, col_sums=col_sums, nnz=int(nnz))


def get_counts(adata: AnnData, layer: str | None = None) -> sp.csr_matrix:
    """Validated raw counts of ``adata`` as ``scipy.sparse.csr_matrix`` float32 (cells x vars).

    Parameters
    ----------
    adata
        In-memory or backed AnnData.
    layer
        Read ``adata.layers[layer]`` instead of ``adata.X``.

    Returns
    -------
    CSR float32 in canonical format. When ``adata.X`` (or the layer) is already a canonical CSR float32
    matrix it is returned without copying: do not modify it in place.

    Raises
    ------
    CountsValidationError
        NaN/inf, negative, non-integer (log-normalised, normalised, scaled) or all-zero input.
    MissingKeyError
        ``layer`` is not in ``adata.layers`` (a ``KeyError`` listing the available layers).
    """
    X = get_matrix(adata, layer)
    where = _where(layer)
    if is_backed_matrix(X):
        chunks = [C for _, C in iter_row_chunks(X)]
        counts = sp.vstack(chunks, format="csr") if chunks else sp.csr_matrix(X.shape, dtype=np.float32)
        counts = sp.csr_matrix(counts, dtype=np.float32)
    else:
        counts = to_csr32(X)
    check_counts(counts, where=where, adata=adata, layer=layer)
    return counts


def check_unique_genes(adata: AnnData, var_key: str | None = None) -> None:
    """Raise :class:`DuplicateGenesError` if a gene name occurs more than once.

    Names are ``adata.var_names`` or ``adata.var[var_key]``.
    """
    if var_key is None:
        names = adata.var_names
        where = "adata.var_names"
        fix = ("call adata.var_names_make_unique() (duplicates get suffixes and stay unmatched) or sum the "
               "duplicated columns into one")
    else:
        if var_key not in adata.var.columns:
            raise MissingKeyError(
                f"var_key {var_key!r} not found in adata.var; available columns: "
                f"{list(adata.var.columns) or 'none'}. Pass one of them, or var_key=None to use var_names."
            )
        names = adata.var[var_key].astype(str)
        where = f"adata.var[{var_key!r}]"
        fix = "make the column unique or sum the duplicated columns into one"
    s = np.asarray(names, dtype=object)
    uniq, counts = np.unique(s, return_counts=True)
    dup = counts > 1
    if dup.any():
        order = np.argsort(-counts[dup], kind="stable")
        examples = ", ".join(f"{uniq[dup][k]!r} x{counts[dup][k]}" for k in order[:5])
        raise DuplicateGenesError(
            f"{int(dup.sum())} gene names occur more than once in {where} (e.g. {examples}); CellVQ maps each "
            f"gene to one vocabulary entry: {fix}."
        )


def check_nonempty_cells(adata: AnnData | None = None, layer: str | None = None, *,
                         counts: sp.spmatrix | np.ndarray | None = None,
                         library: np.ndarray | None = None) -> None:
    """Raise :class:`EmptyCellsError` if some cells have zero total counts.

    Pass an AnnData (``X`` or ``layer``; backed is read in chunks), an already extracted ``counts`` matrix,
    or the per-cell totals ``library`` (e.g. :attr:`CountsScan.library`).
    """
    if library is not None:
        sums = np.asarray(library).ravel()
    else:
        if counts is None:
            if adata is None:
                raise TypeError("check_nonempty_cells needs an AnnData, counts= or library=")
            X = get_matrix(adata, layer)
        else:
            X = counts
        if is_backed_matrix(X):
            sums = np.concatenate([np.asarray(C.sum(axis=1)).ravel() for _, C in iter_row_chunks(X)])
        else:
            sums = np.asarray(X.sum(axis=1)).ravel()
    empty = np.flatnonzero(sums <= 0)
    if empty.size:
        names = list(adata.obs_names[empty[:3]]) if adata is not None else [int(i) for i in empty[:3]]
        raise EmptyCellsError(
            f"{empty.size} of {len(sums)} cells have zero total counts in {_where(layer)} (e.g. {names}); they "
            "carry no expression to embed. Remove them first: sc.pp.filter_cells(adata, min_counts=1)."
        )


def validate_anndata(adata: AnnData, layer: str | None = None, var_key: str | None = None) -> sp.csr_matrix:
    """All input checks CellVQ runs before embedding or training; returns :func:`get_counts`' matrix.

    Checks, in order: the layer exists, unique gene names, raw counts (finite, non-negative, integer), no
    cell with zero counts.
    """
    get_matrix(adata, layer)
    check_unique_genes(adata, var_key=var_key)
    counts = get_counts(adata, layer)
    check_nonempty_cells(adata, layer, counts=counts)
    return counts
