"""Gene vocabulary: the ordered list of genes a CellVQ model knows.

Each entry is a gene symbol (HGNC style, case-sensitive) and, where known, its Ensembl gene ID
(unversioned, e.g. ``ENSG00000141510``; empty string where unknown). Datasets are matched to a vocabulary
by symbol first and Ensembl ID second, so var_names may be either (``ENSG00000141510.17`` with a version
suffix is accepted too).

The shipped GENCODE v44 table (``foundation/datasets/files/gencode_v44_gene_id2name.csv.gz``; 62,754 Ensembl
IDs; some symbols such as ``Y_RNA`` map to several IDs) supplies the Ensembl IDs of a vocabulary built
from symbols, and translates Ensembl IDs to symbols at lookup time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["GeneVocab", "gencode_maps", "gencode_table", "strip_ensembl_version", "is_ensembl_id"]

GENCODE_PATH = Path(__file__).resolve().parents[1] / "datasets" / "files" / "gencode_v44_gene_id2name.csv.gz"

# ENSG (human), ENSMUSG (mouse), ENSDARG (zebrafish), ... optionally followed by a version like ".17"
# and a suffix such as "_PAR_Y".
_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(_PAR_Y)?$")


def is_ensembl_id(name: str) -> bool:
    """True if ``name`` looks like an Ensembl gene ID (with or without version suffix)."""
    return bool(_ENSEMBL_RE.match(name))


def strip_ensembl_version(name: str) -> str:
    """``'ENSG00000141510.17'`` -> ``'ENSG00000141510'``; anything that is not an Ensembl ID is returned as is."""
    m = _ENSEMBL_RE.match(name)
    return m.group(1) if m else name


@lru_cache(maxsize=1)
def gencode_table() -> pd.DataFrame:
    """The shipped GENCODE v44 gene table: columns ``ensembl_id`` (unversioned), ``symbol``; 62,754 rows."""
    if not GENCODE_PATH.exists():
        raise FileNotFoundError(
            f"GENCODE gene table not found at {GENCODE_PATH}; it ships with the package "
            "(foundation/datasets/files). Reinstall CellVQ (pip install -e .) to restore it."
        )
    df = pd.read_csv(GENCODE_PATH, dtype=str, keep_default_na=False)
    df["ensembl_id"] = [strip_ensembl_version(x) for x in df["ensembl_id"]]
    return df


@lru_cache(maxsize=1)
def gencode_maps() -> tuple[dict[str, str], dict[str, str]]:
    """(ensembl_id -> symbol, symbol -> first ensembl_id in table order)."""
    df = gencode_table()
    id2sym = dict(zip(df["ensembl_id"], df["symbol"]))
    sym2id: dict[str, str] = {}
    for eid, sym in zip(df["ensembl_id"], df["symbol"]):
        sym2id.setdefault(sym, eid)
    return id2sym, sym2id


class GeneVocab:
    """An ordered gene vocabulary.

    Parameters
    ----------
    symbols
        Gene symbols in model order (case-sensitive).
    ensembl_ids
        Unversioned Ensembl gene IDs, same length as ``symbols``; ``""`` where unknown. ``None``: all unknown.

    Notes
    -----
    Lookup (:meth:`index_of`) of a symbol returns the *first* position holding it (the GENCODE vocabulary has
    a few symbols with several Ensembl IDs); lookup of an Ensembl ID returns the position holding that ID,
    or, if the vocabulary does not list it, the position of its GENCODE symbol.
    """

    def __init__(self, symbols: Sequence[str], ensembl_ids: Sequence[str] | None = None):
        symbols = [str(s) for s in symbols]
        if ensembl_ids is None:
            ensembl_ids = [""] * len(symbols)
        ensembl_ids = [strip_ensembl_version(str(e)) if e else "" for e in ensembl_ids]
        if len(ensembl_ids) != len(symbols):
            raise ValueError(
                f"GeneVocab got {len(symbols)} symbols but {len(ensembl_ids)} Ensembl IDs; pass one ID per "
                "symbol ('' where unknown)."
            )
        if any(not s for s in symbols):
            raise ValueError("GeneVocab symbols must be non-empty strings; drop or name the empty entries.")
        self._symbols: list[str] = symbols
        self._ensembl: list[str] = ensembl_ids
        self._sym_index: dict[str, int] = {}
        for i, s in enumerate(symbols):
            self._sym_index.setdefault(s, i)
        self._ens_index: dict[str, int] = {}
        for i, e in enumerate(ensembl_ids):
            if e:
                self._ens_index.setdefault(e, i)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_gencode(cls) -> GeneVocab:
        """All 62,754 GENCODE v44 genes, in table order (symbols may repeat; Ensembl IDs are unique)."""
        df = gencode_table()
        return cls(df["symbol"].tolist(), df["ensembl_id"].tolist())

    @classmethod
    def build(cls, names: Iterable[str]) -> GeneVocab:
        """A model vocabulary of chosen genes, in the given order.

        ``names`` may be symbols or Ensembl IDs. Symbols get their Ensembl ID from GENCODE v44 (the first ID
        listed for the symbol; ``""`` if GENCODE does not know it). Ensembl IDs are translated to their
        GENCODE symbol (kept as the ID if GENCODE does not know it). Duplicates are refused.
        """
        id2sym, sym2id = gencode_maps()
        symbols: list[str] = []
        ids: list[str] = []
        for raw in names:
            name = str(raw)
            if is_ensembl_id(name):
                eid = strip_ensembl_version(name)
                symbols.append(id2sym.get(eid, eid))
                ids.append(eid)
            else:
                symbols.append(name)
                ids.append(sym2id.get(name, ""))
        seen: dict[str, int] = {}
        dups = []
        for s in symbols:
            seen[s] = seen.get(s, 0) + 1
            if seen[s] == 2:
                dups.append(s)
        if dups:
            raise ValueError(
                f"GeneVocab.build got {len(dups)} duplicated genes (e.g. {dups[:5]}); a model vocabulary "
                "needs each gene once: deduplicate the list (e.g. list(dict.fromkeys(names)))."
            )
        return cls(symbols, ids)

    # ------------------------------------------------------------------ accessors
    @property
    def symbols(self) -> list[str]:
        """Gene symbols in model order (a fresh copy on every access: hoist it out of loops)."""
        return list(self._symbols)

    @property
    def ensembl_ids(self) -> list[str]:
        """Unversioned Ensembl IDs in model order, ``""`` where unknown (a fresh copy: hoist it out of loops)."""
        return list(self._ensembl)

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._lookup(name) >= 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeneVocab):
            return NotImplemented
        return self._symbols == other._symbols and self._ensembl == other._ensembl

    def __hash__(self) -> int:
        return hash((tuple(self._symbols), tuple(self._ensembl)))

    def __repr__(self) -> str:
        n_ids = sum(bool(e) for e in self._ensembl)
        head = ", ".join(self._symbols[:3])
        return f"GeneVocab({len(self)} genes, {n_ids} with Ensembl IDs: {head}{', ...' if len(self) > 3 else ''})"

    def __getstate__(self) -> dict:
        return {"symbols": self._symbols, "ensembl_ids": self._ensembl}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["symbols"], state["ensembl_ids"])

    # ------------------------------------------------------------------ lookup
    def _lookup(self, name: str) -> int:
        i = self._sym_index.get(name)
        if i is not None:
            return i
        if is_ensembl_id(name):
            eid = strip_ensembl_version(name)
            i = self._ens_index.get(eid)
            if i is not None:
                return i
            sym = gencode_maps()[0].get(eid)
            if sym is not None:
                return self._sym_index.get(sym, -1)
        return -1

    def index_of(self, names: Iterable[str] | str) -> np.ndarray:
        """Vocabulary positions of ``names`` (symbols or Ensembl IDs); ``-1`` where unknown.

        Symbols are case-sensitive (``'TP53'`` is human, ``'Trp53'`` is mouse). Ensembl IDs may carry a
        version suffix. Returns ``np.ndarray[int64]`` of the same length as ``names``.
        """
        if isinstance(names, str):
            names = [names]
        return np.fromiter((self._lookup(str(n)) for n in names), dtype=np.int64)

    def symbol_of(self, names: Iterable[str]) -> list[str | None]:
        """The vocabulary symbol each name maps to (``None`` where unknown)."""
        return [self._symbols[i] if i >= 0 else None for i in self.index_of(names)]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"format": "cellvq-gene-vocab", "version": 1, "symbols": [...], "ensembl_ids": [...]}``."""
        return {
            "format": "cellvq-gene-vocab",
            "version": 1,
            "n_genes": len(self),
            "symbols": self._symbols,
            "ensembl_ids": self._ensembl,
        }

    @classmethod
    def from_dict(cls, d: dict) -> GeneVocab:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "symbols" not in d:
            raise ValueError(
                "not a CellVQ gene vocabulary (no 'symbols' list); write one with GeneVocab.to_json(path)."
            )
        vocab = cls(d["symbols"], d.get("ensembl_ids"))
        if "n_genes" in d and int(d["n_genes"]) != len(vocab):
            raise ValueError(
                f"gene vocabulary says n_genes={d['n_genes']} but lists {len(vocab)} symbols; the file is "
                "truncated or edited: re-export it with GeneVocab.to_json."
            )
        return vocab

    def to_json(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (UTF-8)."""
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> GeneVocab:
        """Read a vocabulary written by :meth:`to_json`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path} is not valid JSON ({e}); expected a gene vocabulary written by GeneVocab.to_json."
            ) from e
        return cls.from_dict(d)
