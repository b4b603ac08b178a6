"""Streaming raw counts in vocabulary coordinates, block by block.

:func:`iter_blocks` walks one AnnData (in memory or backed) in order; :class:`CountsStream` is a
``torch.utils.data.IterableDataset`` over many ``.h5ad`` files for pretraining: it reads contiguous row
blocks straight from disk (a block of a CSR matrix is a contiguous slice of ``data``/``indices``),
remaps them to the vocabulary, shuffles block order (and rows within a block) per epoch, and shards blocks
across DDP ranks and DataLoader workers. No whole matrix is ever loaded or densified.

Typical use::

    stream = CountsStream(datasets.pretraining_corpus(), vocab, block_size=512, rank=rank, world_size=ws)
    loader = DataLoader(stream, batch_size=None, num_workers=2, collate_fn=stream_collate)
    for epoch in range(n_epochs):
        stream.set_epoch(epoch)        # before creating the iterator (workers copy the stream)
        for block in loader: ...       # block: CountsBlock
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from foundation.data.align import GeneAlignment, align_genes, align_names, check_alignment, to_vocab_csr
from foundation.data.validate import (
    check_counts,
    check_unique_genes,
    get_matrix,
    iter_row_chunks,
    raise_unless_counts,
    scan_values,
)
from foundation.data.vocab import GeneVocab
from foundation.errors import CorruptFileError, DuplicateGenesError, EmptyCellsError, MissingKeyError

try:  # torch is a hard dependency of the package, but keep data-only use importable without it
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover
    IterableDataset = object  # type: ignore[misc,assignment]

    def get_worker_info():  # type: ignore[no-redef]
        return None

__all__ = ["CountsBlock", "iter_blocks", "CountsStream", "stream_collate", "open_h5ad_matrix"]

logger = logging.getLogger(__name__)


@dataclass
class CountsBlock:
    """A block of cells' raw counts in vocabulary coordinates.

    Attributes
    ----------
    counts
        ``scipy.sparse.csr_matrix`` float32, shape ``(b, len(vocab))``.
    measured
        ``bool (len(vocab),)``: genes the source dataset measured (unmeasured genes are missing, not zero).
    source
        File path (or ``"adata"``) the cells come from.
    obs_names
        The cells' names, in block row order.
    obs_index
        ``int64 (b,)``: the cells' row positions in the source (``None`` if unknown).
    """

    counts: sp.csr_matrix
    measured: np.ndarray
    source: str
    obs_names: list[str]
    obs_index: np.ndarray | None = field(default=None)

    @property
    def n_obs(self) -> int:
        """Number of cells in the block."""
        return self.counts.shape[0]

    def __len__(self) -> int:
        return self.n_obs

    def to_torch(self, device: Any = None, dense: bool = True):
        """``(counts, measured)`` as torch tensors: dense float32 ``(b, n_vocab)`` (or sparse CSR) and bool."""
        import torch

        c = self.counts
        if dense:
            x = torch.from_numpy(c.toarray())
        else:
            x = torch.sparse_csr_tensor(
                torch.from_numpy(c.indptr.astype(np.int64)),
                torch.from_numpy(c.indices.astype(np.int64)),
                torch.from_numpy(c.data),
                size=c.shape,
            )
        m = torch.from_numpy(self.measured.copy())
        if device is not None:
            x, m = x.to(device), m.to(device)
        return x, m


def _source_name(adata: AnnData) -> str:
    if adata.isbacked and adata.filename is not None:
        return str(adata.filename)
    return "adata"


def iter_blocks(
    adata: AnnData,
    vocab: GeneVocab,
    block_size: int = 1024,
    layer: str | None = None,
    alignment: GeneAlignment | None = None,
    *,
    var_key: str | None = None,
    min_match: float = 0.2,
    validate: bool = True,
) -> Iterator[CountsBlock]:
    """Yield :class:`CountsBlock`s of ``block_size`` consecutive cells of ``adata``, in order.

    Works on in-memory AnnData (dense or sparse) and backed AnnData (``read_h5ad(p, backed="r")``; only
    one block is read at a time). Gene names are checked for duplicates and aligned once (pass
    ``alignment=`` to reuse one); each block's counts are validated as it is read (``validate=False`` skips).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    X = get_matrix(adata, layer)
    if alignment is None:
        check_unique_genes(adata, var_key=var_key)
        alignment = align_genes(adata, vocab, layer=layer, var_key=var_key, min_match=min_match)
    elif len(alignment.var_index) != adata.n_vars or alignment.n_vocab != len(vocab):
        raise ValueError(
            f"alignment covers {len(alignment.var_index)} vars x {alignment.n_vocab} vocabulary genes but adata "
            f"has {adata.n_vars} vars and the vocabulary {len(vocab)} genes; recompute it with align_genes."
        )
    src = _source_name(adata)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    names = adata.obs_names
    for off, C in iter_row_chunks(X, chunk_rows=block_size):
        stop = off + C.shape[0]
        if validate:
            check_counts(C, where=f"{where} rows {off}:{stop}", adata=adata, layer=layer)
        yield CountsBlock(
            counts=to_vocab_csr(C, alignment),
            measured=alignment.measured,
            source=src,
            obs_names=[str(x) for x in names[off:stop]],
            obs_index=np.arange(off, stop, dtype=np.int64),
        )


# ---------------------------------------------------------------------------------------------- files
class _OpenFile:
    """An h5ad file opened read-only with only the pieces the stream needs (no layers/obsm loaded)."""

    def __init__(self, path: Path, layer: str | None, var_key: str | None, read_var: bool = True):
        import h5py
        from anndata.io import read_elem, sparse_dataset

        self.path = path
        if not path.exists():
            raise FileNotFoundError(f"h5ad file not found: {path}")
        try:
            self.h5 = h5py.File(path, "r")
        except Exception as e:  # OSError for non-HDF5 bytes, others for truncated files
            raise CorruptFileError(
                f"cannot open {path} as an h5ad (HDF5) file ({type(e).__name__}: {e}); it is corrupt, truncated "
                "or not an .h5ad: re-export it with adata.write_h5ad() or remove it from the corpus."
            ) from e
        try:
            f = self.h5
            if layer is None:
                if "X" not in f:
                    raise CorruptFileError(f"{path} has no X matrix; write counts into X or pass layer=...")
                node = f["X"]
            else:
                layers = f["layers"] if "layers" in f else {}
                if layer not in layers:
                    raise MissingKeyError(
                        f"layer {layer!r} not found in {path}; available layers: "
                        f"{sorted(layers.keys()) or 'none'}. Pass one of them, or layer=None for X."
                    )
                node = layers[layer]
            if isinstance(node, h5py.Group):
                self.X = sparse_dataset(node)
                self.format = self.X.format
            else:
                self.X = node
                self.format = "dense"
            self.obs_names = self._index(f["obs"], read_elem)
            if not read_var:  # iteration handles need only the matrix and obs names
                self.var_names = None
            elif var_key is None:
                self.var_names = self._index(f["var"], read_elem)
            else:
                if var_key not in f["var"]:
                    raise MissingKeyError(
                        f"var_key {var_key!r} not found in {path} var; available columns: "
                        f"{[k for k in f['var'].keys() if k != f['var'].attrs.get('_index')]}."
                    )
                self.var_names = [str(v) for v in read_elem(f["var"][var_key])]
            self.var_columns = [k for k in f["var"].keys() if k != f["var"].attrs.get("_index", "_index")]
            self.layers = sorted(f["layers"].keys()) if "layers" in f else []
        except (CorruptFileError, MissingKeyError):
            self.close()
            raise
        except Exception as e:
            self.close()
            raise CorruptFileError(
                f"{path} is an HDF5 file but not a readable AnnData ({type(e).__name__}: {e}); re-export it "
                "with anndata's adata.write_h5ad()."
            ) from e
        self.shape = tuple(int(s) for s in self.X.shape)
        n_var = self.shape[1] if self.var_names is None else len(self.var_names)
        if len(self.obs_names) != self.shape[0] or n_var != self.shape[1]:
            self.close()
            raise CorruptFileError(
                f"{path}: matrix is {self.shape} but obs/var list {len(self.obs_names)}/{n_var} "
                "names; the file is inconsistent: re-export it with adata.write_h5ad()."
            )

    @staticmethod
    def _index(group, read_elem) -> list[str]:
        key = group.attrs.get("_index", "_index")
        return [str(x) for x in read_elem(group[key])]

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        from foundation.data.validate import to_csr32

        return to_csr32(self.X[start:stop])

    def close(self) -> None:
        try:
            self.h5.close()
        except Exception:  # closing a broken handle must not mask the real error
            pass


def open_h5ad_matrix(path: str | Path, layer: str | None = None, var_key: str | None = None) -> _OpenFile:
    """Open the count matrix of an h5ad file read-only without loading it (CorruptFileError if unreadable)."""
    return _OpenFile(Path(path), layer, var_key)


@dataclass
class _FileInfo:
    path: Path
    n_obs: int
    alignment: GeneAlignment


def resolve_paths(paths_or_folder: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths_or_folder] if isinstance(paths_or_folder, str | Path) else list(paths_or_folder)
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = sorted(p.glob("*.h5ad"))
            if not found:
                raise FileNotFoundError(f"no .h5ad files in folder {p}; point CountsStream at h5ad files.")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"h5ad file or folder not found: {p}")
    if not out:
        raise ValueError("CountsStream needs at least one .h5ad file or folder")
    if len(set(out)) != len(out):
        raise ValueError("CountsStream got the same file twice; pass each file once")
    return out


class CountsStream(IterableDataset):
    """An ``IterableDataset`` of :class:`CountsBlock`s over many h5ad files.

    Parameters
    ----------
    paths_or_folder
        One path, a folder (all ``*.h5ad`` in it, sorted), or a list of paths/folders.
    vocab
        The model's gene vocabulary; blocks come in its coordinates.
    block_size
        Cells per block (the last block of each file may be smaller). Blocks are contiguous rows on disk.
    shuffle
        Shuffle block order and the rows within each block, per epoch (see :meth:`set_epoch`).
    seed
        Base seed; the order of epoch ``e`` depends only on ``(seed, e)``, so all ranks agree.
    rank, world_size
        DDP sharding: rank ``r`` gets blocks ``r, r + world_size, ...`` of the epoch order (further split
        across DataLoader workers). Shards are disjoint and together cover every cell once.
    layer
        Read ``layers[layer]`` instead of ``X`` in every file.
    min_match, warn_below
        Gene-match floor (raise) and warning level, per file.
    var_key
        var column holding gene names (default: var_names).
    validate
        Check every file once at construction (raw counts, unique genes, no empty cells), reading it in
        chunks. ``False`` skips the counts pass (gene names are always checked).
    even_shards
        Drop the last (< world_size) blocks of an epoch's order so every rank gets the same number of blocks
        (avoids DDP ranks waiting on each other); coverage is then "at most once" per epoch.

    Notes
    -----
    Files are opened with h5py + ``anndata.io`` element readers: only the matrix (lazily), obs names and
    var names are read, so unlike ``read_h5ad(backed="r")`` no layers, obsm or uns are loaded into memory.
    Handles are opened lazily in each process (DataLoader workers re-open them).
    """

    def __init__(
        self,
        paths_or_folder: str | Path | Sequence[str | Path],
        vocab: GeneVocab,
        block_size: int = 512,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        layer: str | None = None,
        min_match: float = 0.2,
        *,
        warn_below: float = 0.9,
        var_key: str | None = None,
        validate: bool = True,
        even_shards: bool = False,
    ):
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.paths = resolve_paths(paths_or_folder)
        self.vocab = vocab
        self.block_size = int(block_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.layer = layer
        self.var_key = var_key
        self.even_shards = bool(even_shards)
        self.epoch = 0
        self._handles: dict[int, _OpenFile] = {}
        self.files: list[_FileInfo] = [
            self._inspect(p, min_match=min_match, warn_below=warn_below, validate=validate) for p in self.paths
        ]
        self._blocks = np.array(
            [(k, i, min(i + self.block_size, fi.n_obs))
             for k, fi in enumerate(self.files) for i in range(0, fi.n_obs, self.block_size)],
            dtype=np.int64,
        ).reshape(-1, 3)

    # ------------------------------------------------------------------ setup
    def _inspect(self, path: Path, *, min_match: float, warn_below: float, validate: bool) -> _FileInfo:
        of = _OpenFile(path, self.layer, self.var_key)
        try:
            names = of.var_names
            uniq, cnt = np.unique(np.asarray(names, dtype=object), return_counts=True)
            if (cnt > 1).any():
                ex = ", ".join(f"{u!r} x{c}" for u, c in zip(uniq[cnt > 1][:5], cnt[cnt > 1][:5]))
                raise DuplicateGenesError(
                    f"{path}: {int((cnt > 1).sum())} gene names occur more than once (e.g. {ex}); make them unique "
                    "(adata.var_names_make_unique()) or sum the duplicated columns, then rewrite the file."
                )
            if of.format == "csc":
                warnings.warn(
                    f"{path} stores its matrix as CSC: every row block reads whole columns (slow). Rewrite it "
                    "as CSR: adata.X = adata.X.tocsr(); adata.write_h5ad(path).",
                    UserWarning,
                    stacklevel=3,
                )
            col_sums = np.zeros(of.shape[1], dtype=np.float64)
            if validate:
                where = f"{path} ({'X' if self.layer is None else f'layers[{self.layer!r}]'})"
                st, nnz = scan_values(of.X, col_sums=col_sums)
                others = [k for k in of.layers if k != self.layer]
                hint = f" (layers in the file: {others}; CountsStream(..., layer=...))" if others else ""
                raise_unless_counts(st, nnz, of.shape, where, hint, obs_names=of.obs_names)
                sums = np.concatenate(st.row_sums) if st.row_sums else np.zeros(0)
                empty = np.flatnonzero(sums <= 0)
                if empty.size:
                    raise EmptyCellsError(
                        f"{path}: {empty.size} of {of.shape[0]} cells have zero total counts (e.g. "
                        f"{[of.obs_names[i] for i in empty[:3]]}); remove them (sc.pp.filter_cells(adata, "
                        "min_counts=1)) and rewrite the file."
                    )
            al = align_names(names, self.vocab, col_sums=col_sums if validate else None, source=str(path))
            check_alignment(al, min_match=min_match, warn_below=warn_below,
                            hint="use gene symbols or Ensembl IDs as var_names, or var_key=")
            return _FileInfo(path=path, n_obs=of.shape[0], alignment=al)
        finally:
            of.close()

    # ------------------------------------------------------------------ properties
    @property
    def n_cells(self) -> int:
        """Total cells over all files."""
        return int(sum(f.n_obs for f in self.files))

    @property
    def n_blocks(self) -> int:
        """Total blocks per epoch over all ranks and workers."""
        return int(len(self._blocks))

    @property
    def alignments(self) -> list[GeneAlignment]:
        """The per-file gene alignments, in file order."""
        return [f.alignment for f in self.files]

    def __len__(self) -> int:
        """Blocks this rank yields per epoch (all its DataLoader workers together)."""
        return len(self._rank_order(np.arange(self.n_blocks)))

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order of ``epoch`` (call before iterating, on every rank)."""
        self.epoch = int(epoch)

    def summary(self):
        """``pandas.DataFrame`` with one row per file: path, n_obs, match rates."""
        import pandas as pd

        return pd.DataFrame(
            [{"path": str(f.path), "n_obs": f.n_obs, "gene_match_rate": f.alignment.gene_match_rate,
              "count_match_rate": f.alignment.count_match_rate, "n_matched": f.alignment.n_matched}
             for f in self.files]
        )

    # ------------------------------------------------------------------ iteration
    def _epoch_order(self) -> np.ndarray:
        order = np.arange(self.n_blocks)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return order

    def _rank_order(self, order: np.ndarray) -> np.ndarray:
        if self.even_shards:
            order = order[: (len(order) // self.world_size) * self.world_size]
        return order[self.rank :: self.world_size]

    def _handle(self, k: int) -> _OpenFile:
        h = self._handles.get(k)
        if h is None:
            h = _OpenFile(self.files[k].path, self.layer, self.var_key, read_var=False)
            if h.shape[0] != self.files[k].n_obs:
                h.close()
                raise CorruptFileError(
                    f"{self.files[k].path} changed since the stream was created ({h.shape[0]} cells, was "
                    f"{self.files[k].n_obs}); recreate the CountsStream."
                )
            self._handles[k] = h
        return h

    def file_blocks(self, k: int) -> np.ndarray:
        """Ids (for :meth:`read_block`) of the blocks of the ``k``-th file, in row order."""
        return np.flatnonzero(self._blocks[:, 0] == k)

    def read_block(self, block_id: int, shuffle_rows: bool = False) -> CountsBlock:
        """Read one block (by its id in file order) in vocabulary coordinates."""
        k, start, stop = (int(v) for v in self._blocks[block_id])
        fi = self.files[k]
        h = self._handle(k)
        try:
            C = h.rows(start, stop)
        except (OSError, ValueError, KeyError) as e:
            raise CorruptFileError(
                f"cannot read rows {start}:{stop} of {fi.path} ({type(e).__name__}: {e}); the file is damaged: "
                "re-export it with adata.write_h5ad() or remove it from the corpus."
            ) from e
        idx = np.arange(start, stop, dtype=np.int64)
        if shuffle_rows:
            perm = np.random.default_rng([self.seed, self.epoch, block_id]).permutation(stop - start)
            C = C[perm]
            idx = idx[perm]
        return CountsBlock(
            counts=to_vocab_csr(C, fi.alignment),
            measured=fi.alignment.measured,
            source=str(fi.path),
            obs_names=[h.obs_names[i] for i in idx],
            obs_index=idx,
        )

    def __iter__(self) -> Iterator[CountsBlock]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        mine = self._rank_order(self._epoch_order())[wid::nw]
        try:
            for b in mine:
                yield self.read_block(int(b), shuffle_rows=self.shuffle)
        finally:
            self.close()

    def close(self) -> None:
        """Close the file handles this process opened."""
        for h in self._handles.values():
            h.close()
        self._handles.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finaliser
            pass


def stream_collate(batch: CountsBlock | list[CountsBlock]) -> CountsBlock | list[CountsBlock]:
    """DataLoader ``collate_fn`` that passes :class:`CountsBlock`s through unchanged.

    Use with ``DataLoader(stream, batch_size=None, collate_fn=stream_collate)``: each item is one block.
    With ``batch_size=k`` the list of ``k`` blocks is returned as is (blocks of different files have
    different ``measured`` masks, so they are not merged).
    """
    return batch
