"""Input and output helpers shared by CLI commands."""

from __future__ import annotations

import os
from pathlib import Path


def read_h5ad_checked(path: str | Path, backed: bool = False):
    """Read an h5ad with errors that say what is wrong (missing file, not an h5ad, corrupt).

    ``backed=True`` opens it read-only with ``X`` left on disk (``anndata.read_h5ad(path, backed="r")``)."""
    import anndata as ad

    from foundation.errors import CorruptFileError

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder; pass an .h5ad file")
    try:
        return ad.read_h5ad(p, backed="r" if backed else None)
    except Exception as exc:  # h5py raises OSError / KeyError variants on damaged files
        raise CorruptFileError(f"{p} cannot be read as an h5ad file ({type(exc).__name__}: {exc}); "
                               "check that it is a complete AnnData .h5ad (re-export or re-download it)") from exc


def write_h5ad_atomic(adata, output: str | Path) -> Path:
    """Write ``adata`` to ``output`` through a temporary file renamed into place, so that a failed write never
    leaves a half-written h5ad behind.

    A backed ``adata`` (``read_h5ad(..., backed="r")``) is written without loading its ``X``: everything in
    memory (obs, var, obsm, varm, layers, uns, ...) is written by anndata, then the ``X`` (and ``raw``) groups
    are copied from the source file by HDF5 itself, block by block."""
    import anndata as ad
    import h5py

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        if not adata.isbacked:
            adata.write_h5ad(tmp)
        else:
            source = Path(adata.filename)
            if source.resolve() == output.resolve():
                raise ValueError(f"{output} is the backed input itself; write to another path")
            light = ad.AnnData(
                obs=adata.obs, var=adata.var, uns=dict(adata.uns),
                obsm=dict(adata.obsm), varm=dict(adata.varm), obsp=dict(adata.obsp), varp=dict(adata.varp),
                layers=dict(adata.layers),
            )
            light.write_h5ad(tmp)
            with h5py.File(source, "r") as src, h5py.File(tmp, "r+") as dst:
                for key in ("X", "raw"):
                    if key in src:
                        if key in dst:
                            del dst[key]
                        src.copy(src[key], dst, name=key)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return output


def use_var_column(adata, column: str) -> None:
    """`--var-key COLUMN`: gene names come from ``var[column]`` (made unique); the former var_names are kept
    in ``var["original_var_names"]``."""
    import difflib

    import pandas as pd

    if column not in adata.var:
        cols = [str(c) for c in adata.var.columns]
        close = difflib.get_close_matches(column, cols, n=1, cutoff=0.6)
        hint = f" Did you mean --var-key {close[0]}?" if close else ""
        raise ValueError(f"--var-key {column}: var has no column {column!r}.{hint} var columns: "
                         f"{', '.join(cols[:20]) or '(none)'}.")
    adata.var["original_var_names"] = adata.var_names.astype(str)
    adata.var_names = pd.Index(adata.var[column].astype(str))
    adata.var_names_make_unique()
