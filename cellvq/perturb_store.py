"""Perturbation shift tables (docs/CONTRACTS.md section 10) into a graph store, as one run.

``foundation.perturb`` writes plain long tables (``perturbation, gene, delta, rank, predicted``);
``graphdb`` stores ``(Perturbation)-[:SHIFTS {delta, rank, predicted, runId}]->(Gene)``. This module
maps the one onto the other (``cellvq perturb store``): it knows neither model nor database internals.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

SHIFT_COLUMNS = ("perturbation", "gene", "delta", "rank", "predicted")
#: Kinds whose labels name target genes (``A+B`` for a combination), stored as ``target``.
GENETIC_KINDS = ("knockout", "activation")


@dataclass
class ShiftStoreConfig:
    """What the run is: its dataset, the perturbations' kind, SMILES of drugs, provenance."""

    dataset_id: str
    kind: str = "knockout"
    run_id: str | None = None
    smiles: Mapping[str, str] | None = None
    sep: str = r"[+;]"
    command: str = ""
    parameters: dict = field(default_factory=dict)

    def resolved_run_id(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        return self.run_id or f"{self.dataset_id}-perturb-{stamp}"


def check_shift_table(table: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    """The table with its columns checked (names of section 10), or a ValueError naming what is missing."""
    missing = [c for c in SHIFT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; a shift table has columns {list(SHIFT_COLUMNS)} "
                         "(written by `cellvq perturb train` as observed.csv and by `cellvq perturb predict --out`).")
    if table["gene"].isna().any() or table["perturbation"].isna().any():
        raise ValueError(f"{name} has rows without a gene or perturbation; drop them before storing.")
    return table[list(SHIFT_COLUMNS)]


def shift_run_tables(tables: Sequence[pd.DataFrame], cfg: ShiftStoreConfig):
    """One :class:`graphdb.RunTables` of the observed and/or predicted shift tables ``tables``."""
    import graphdb
    from graphdb import PERTURBATION_KINDS

    if cfg.kind not in PERTURBATION_KINDS:
        raise ValueError(f"unknown perturbation kind {cfg.kind!r}; pass one of {list(PERTURBATION_KINDS)} with --kind.")
    if not tables:
        raise ValueError("no shift table given; pass observed.csv and/or a predictions CSV.")
    long = pd.concat([check_shift_table(t, f"table {i + 1}") for i, t in enumerate(tables)], ignore_index=True)
    names = list(dict.fromkeys(long["perturbation"].astype(str)))
    perts = pd.DataFrame({"perturbationId": names, "kind": cfg.kind, "smiles": _smiles(names, cfg),
                          "target": [_targets(n, cfg) for n in names]})
    shifts = pd.DataFrame({"perturbationId": long["perturbation"].astype(str), "symbol": long["gene"].astype(str),
                           "delta": long["delta"], "rank": long["rank"], "predicted": long["predicted"].map(_flag)})
    from cellvq.pipeline import package_version

    run = {"runId": cfg.resolved_run_id(), "model": "cellvq-perturb", "command": cfg.command,
           "parameters": json.dumps({"kind": cfg.kind, **cfg.parameters}), "packageVersion": package_version()}
    return graphdb.RunTables(run=run, dataset={"datasetId": cfg.dataset_id, "name": cfg.dataset_id},
                             genes=pd.DataFrame({"symbol": pd.unique(shifts["symbol"])}),
                             perturbations=perts, shifts=shifts)


def store_shifts(tables: Sequence[pd.DataFrame], db: str, cfg: ShiftStoreConfig):
    """Write the shift tables to the store at ``db`` as one complete run; returns the write report.

    Every table is checked before the store is opened; a write that fails is removed again."""
    import graphdb
    from cellvq.pipeline import discard_run

    run_tables = shift_run_tables(tables, cfg)
    with graphdb.open_store(str(db)) as store:
        try:
            return store.write_run(run_tables)
        except Exception:
            discard_run(store, run_tables.run_id)
            raise


def _flag(value) -> bool:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        raise ValueError("column 'predicted' has a missing value; use True/False (observed rows False).")
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"column 'predicted' holds {value!r}; use True/False (observed rows False).")
    return bool(value)


def _targets(name: str, cfg: ShiftStoreConfig) -> str | None:
    if cfg.kind not in GENETIC_KINDS:
        return None
    return "+".join(t for t in re.split(cfg.sep, name) if t)


def _smiles(names: list[str], cfg: ShiftStoreConfig) -> list[str | None]:
    if cfg.kind != "drug":
        if cfg.smiles:
            raise ValueError(f"--smiles is for --kind drug, not {cfg.kind!r}.")
        return [None] * len(names)
    if cfg.smiles is None:
        raise ValueError("--kind drug needs --smiles (CSV with columns compound,smiles) for the Perturbation nodes.")
    missing = [n for n in names if n not in cfg.smiles]
    if missing:
        raise ValueError(f"compounds {missing[:8]} have no row in the SMILES table; add them to the --smiles CSV.")
    from foundation.perturb.molecules import parse_smiles

    smiles = [cfg.smiles[n] for n in names]
    parse_smiles(smiles, names=names)  # a SMILES RDKit cannot read is refused before anything is written
    return smiles
