"""Checks of the obs columns a `cellvq run` names (--groupby, --properties), before any compute."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence

import pandas as pd

DEFAULT_LABEL_KEY = "cell_type"
UNLABELLED = "unlabelled"


def _missing_column(adata, flag: str, name: str) -> ValueError:
    columns = [str(c) for c in adata.obs.columns]
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    hint = f" Did you mean {flag} {close[0]}?" if close else ""
    shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "") or "(none)"
    return ValueError(f"{flag} {name}: obs has no column {name!r}.{hint} obs columns: {shown}.")


def resolve_obs_keys(adata, groupby: str | None, properties: Sequence[str] | None) -> str | None:
    """The label column to use. ``groupby=None`` means ``cell_type`` when present (else no labels); a
    column the user named (``--groupby``, ``--properties``) must exist, or a ValueError says which is
    missing and suggests the closest column."""
    if groupby is None:
        groupby = DEFAULT_LABEL_KEY if DEFAULT_LABEL_KEY in adata.obs else None
    elif groupby not in adata.obs:
        raise _missing_column(adata, "--groupby", groupby)
    for p in properties or ():
        if p not in adata.obs:
            raise _missing_column(adata, "--properties", p)
    return groupby


def normalize_labels(adata, label_key: str) -> int:
    """Make ``obs[label_key]`` a categorical of strings (integer labels become "0", "1", ...); missing labels
    become the state ``unlabelled`` (with a warning). Returns the number of missing labels."""
    col = adata.obs[label_key]
    missing = int(col.isna().sum())
    if not missing and isinstance(col.dtype, pd.CategoricalDtype) and all(isinstance(c, str) for c in col.cat.categories):
        return 0  # already string labels: left as they are (their category order too)
    values = col.astype(object).where(col.notna(), UNLABELLED).map(str)
    if missing:
        warnings.warn(f"obs[{label_key!r}]: {missing} cells have no label; they form the state "
                      f"{UNLABELLED!r} (drop or fill them to leave them out)", stacklevel=2)
    adata.obs[label_key] = pd.Categorical(values)
    return missing
