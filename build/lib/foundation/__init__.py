"""CellVQ foundation model.

An encoder over a cell's expressed genes, the Single-Cell Discretization (SCD) quantiser that turns each
cell into a discrete cell code, and a ZINB decoder that reconstructs masked and unmeasured expression.

AnnData keys written by :meth:`CellVQ.embed` are listed in ``docs/CONTRACTS.md`` (section 1).
This package knows nothing of ``cellvq_graph`` or ``graphdb``.
"""

from __future__ import annotations

import importlib

__all__ = ["CellVQ", "CellVQConfig", "load_pretrained", "datasets", "data", "tasks"]


def __getattr__(name: str):
    # Lazy imports keep `import foundation` cheap (no torch import for data-only use).
    if name in ("CellVQ", "load_pretrained"):
        mod = importlib.import_module("foundation.model")
        return getattr(mod, name)
    if name == "CellVQConfig":
        return importlib.import_module("foundation.config").CellVQConfig
    if name in ("datasets", "data", "tasks"):
        return importlib.import_module(f"foundation.{name}")
    raise AttributeError(name)
