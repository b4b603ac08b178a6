"""Table storage: every read-out table lives in ``adata.uns["cellvq_graph"]`` with the parameters that made it.

A table is stored as ``uns["cellvq_graph"][<section>][<key>]``: a plain dict of column arrays (strings for
object and categorical columns, so the AnnData still writes to h5ad) plus a ``"params"`` dict of the
arguments of the call that computed it, as scanpy stores ``uns["rank_genes_groups"]["params"]``.
:func:`read_table` turns a stored table back into a DataFrame and :func:`table_params` returns its
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["UNS_KEY", "store_table", "read_table", "table_params"]

UNS_KEY = "cellvq_graph"
PARAMS = "params"


def _plain(v):
    """A parameter value as something h5ad writes: dicts and lists of plain values, strings for the rest."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str | np.generic):
        return v
    return str(v)


def store_table(adata, section: str, key: str, df: pd.DataFrame, params: Mapping | None = None) -> None:
    """Store ``df`` as ``uns["cellvq_graph"][section][key]`` together with the ``params`` that made it."""
    rec: dict = {}
    for c in df.columns:
        v = df[c].to_numpy()
        rec[str(c)] = v.astype(str) if v.dtype == object or isinstance(df[c].dtype, pd.CategoricalDtype) else v
    rec[PARAMS] = _plain(dict(params or {}))
    adata.uns.setdefault(UNS_KEY, {}).setdefault(section, {})[str(key)] = rec


def _record(adata, section: str, key: str) -> dict:
    try:
        return adata.uns[UNS_KEY][section][str(key)]
    except KeyError as err:
        raise KeyError(f"no stored table uns['cellvq_graph'][{section!r}][{key!r}]") from err


def read_table(adata, section: str, key: str) -> pd.DataFrame:
    """A table stored by one of the read-out functions, e.g. ``read_table(adata, "markers", "cell_type")``."""
    rec = _record(adata, section, key)
    return pd.DataFrame({k: np.asarray(v) for k, v in rec.items() if k != PARAMS})


def table_params(adata, section: str, key: str) -> dict:
    """The parameters stored with a table (``{}`` for a table stored without them)."""
    return dict(_record(adata, section, key).get(PARAMS, {}))
