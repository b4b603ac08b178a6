"""Reading h5ad files with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anndata
from anndata import AnnData

from foundation.errors import CorruptFileError

__all__ = ["read_h5ad"]


def read_h5ad(path: str | Path, backed: Literal["r", "r+"] | None = None) -> AnnData:
    """``anndata.read_h5ad`` that raises ``FileNotFoundError`` / :class:`CorruptFileError` naming ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"h5ad file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an .h5ad file; pass the file inside it.")
    try:
        return anndata.read_h5ad(path, backed=backed)
    except Exception as e:
        raise CorruptFileError(
            f"cannot read {path} as an h5ad file ({type(e).__name__}: {e}); it is corrupt, truncated or not an "
            "AnnData file: re-export it with adata.write_h5ad() (or re-download it)."
        ) from e
