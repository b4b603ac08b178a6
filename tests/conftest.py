"""Shared fixtures. Real data only; fixtures that are expensive are session-scoped."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def pbmc3k():
    """The bundled PBMC 3k raw counts (2,638 cells x 13,714 genes, 9 cell types)."""
    from foundation import datasets

    return datasets.pbmc3k()


@pytest.fixture(scope="session")
def pbmc3k_embedded(pbmc3k):
    """pbmc3k embedded by the shipped CellVQ checkpoint (keys of docs/CONTRACTS.md section 1).

    Returns a fresh copy per session; tests that write into it must copy it first.
    """
    import foundation

    adata = pbmc3k.copy()
    foundation.load_pretrained().embed(adata, batch_size=256)
    return adata
