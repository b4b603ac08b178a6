"""Input helpers shared by CLI commands."""

from __future__ import annotations

from pathlib import Path


def read_h5ad_checked(path: str | Path):
    """Read an h5ad with errors that say what is wrong (missing file, not an h5ad, corrupt)."""
    import anndata as ad

    from foundation.errors import CorruptFileError

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder; pass an .h5ad file")
    try:
        return ad.read_h5ad(p)
    except Exception as exc:  # h5py raises OSError / KeyError variants on damaged files
        raise CorruptFileError(f"{p} cannot be read as an h5ad file ({type(exc).__name__}: {exc}); "
                               "check that it is a complete AnnData .h5ad (re-export or re-download it)") from exc
