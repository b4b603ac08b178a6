"""The graph schema and :class:`RunTables`, the plain tables a run is written from.

Everything about names lives here: node labels (PascalCase), relationship types
(UPPER_SNAKE_CASE), property keys (camelCase) and their types. The LadybugDB DDL, the Neo4j
bulk-import headers, the Cypher linter's schema and the rows both stores write are all derived
from :data:`NODES` and :data:`RELATIONSHIPS`, so they cannot drift apart.

Keys
----
* ``Gene``      -- ``symbol``; shared by every run (a gene is a gene).
* ``Cell``      -- ``uid = datasetId + ":" + cellId``; shared by the runs over one dataset.
* ``CellState`` -- ``uid = runId + ":" + stateId``; one node per run, so runs never collide.
* ``Property``  -- ``uid = runId + ":" + propertyId``; one node per run.
* ``Run``       -- ``runId``; ``Dataset`` -- ``datasetId``.

Every relationship carries the ``runId`` of the run that produced it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .errors import SchemaError

__all__ = [
    "CELL_PROPERTY_PATTERN",
    "NODES",
    "RELATIONSHIPS",
    "STATE_KINDS",
    "NodeSpec",
    "RelSpec",
    "RunTables",
    "cell_uid",
    "graph_frames",
    "int_columns",
    "lint_schema",
    "records",
    "scoped_uid",
]

#: The kinds a ``CellState`` may have.
STATE_KINDS: tuple[str, ...] = ("code", "cluster", "subtype", "cellType")

#: Run status values. A run is visible to the named queries only when ``complete``.
STATUS_WRITING = "writing"
STATUS_COMPLETE = "complete"

#: Extra ``cells`` columns become ``Cell`` properties; their names must be plain camelCase-ish
#: identifiers, because a property key cannot travel as a query parameter.
CELL_PROPERTY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")

# Property types, spelled the LadybugDB way; bulk_import maps them onto Neo4j import types.
STRING, INT64, DOUBLE = "STRING", "INT64", "DOUBLE"


@dataclass(frozen=True)
class NodeSpec:
    """A node label: its key property and its typed properties (key first)."""

    label: str
    key: str
    properties: tuple[tuple[str, str], ...]

    @property
    def property_names(self) -> list[str]:
        return [name for name, _ in self.properties]


@dataclass(frozen=True)
class RelSpec:
    """A relationship type: start label, end label and typed properties (``runId`` first)."""

    type: str
    start: str
    end: str
    properties: tuple[tuple[str, str], ...]

    @property
    def property_names(self) -> list[str]:
        return [name for name, _ in self.properties]


NODES: dict[str, NodeSpec] = {
    spec.label: spec
    for spec in (
        NodeSpec("Dataset", "datasetId", (("datasetId", STRING), ("name", STRING), ("nCells", INT64))),
        NodeSpec(
            "Run",
            "runId",
            (
                ("runId", STRING),
                ("model", STRING),
                ("checkpointHash", STRING),
                ("parameters", STRING),
                ("createdAt", STRING),
                ("completedAt", STRING),
                ("status", STRING),
                ("command", STRING),
                ("packageVersion", STRING),
            ),
        ),
        NodeSpec("Cell", "uid", (("uid", STRING), ("cellId", STRING), ("datasetId", STRING))),
        NodeSpec("Gene", "symbol", (("symbol", STRING), ("ensemblId", STRING))),
        NodeSpec(
            "CellState",
            "uid",
            (
                ("uid", STRING),
                ("runId", STRING),
                ("stateId", STRING),
                ("kind", STRING),
                ("name", STRING),
                ("nCells", INT64),
            ),
        ),
        NodeSpec(
            "Property",
            "uid",
            (("uid", STRING), ("runId", STRING), ("propertyId", STRING), ("kind", STRING), ("value", STRING)),
        ),
    )
}

_RUN = ("runId", STRING)
RELATIONSHIPS: dict[str, RelSpec] = {
    spec.type: spec
    for spec in (
        RelSpec("ON_DATASET", "Run", "Dataset", (_RUN,)),
        RelSpec("IN_STATE", "Cell", "CellState", (_RUN,)),
        RelSpec("HAS_PROPERTY", "Cell", "Property", (_RUN,)),
        RelSpec(
            "MARKER_OF",
            "Gene",
            "CellState",
            (_RUN, ("score", DOUBLE), ("rank", INT64), ("attention", DOUBLE), ("logFc", DOUBLE)),
        ),
        RelSpec("CO_EXPRESSED", "Gene", "Gene", (_RUN, ("weight", DOUBLE))),
        RelSpec("REGULATES", "Gene", "Gene", (_RUN, ("weight", DOUBLE))),
        RelSpec("SUBTYPE_OF", "CellState", "CellState", (_RUN,)),
        RelSpec("BRIDGES", "CellState", "CellState", (_RUN, ("score", DOUBLE), ("nCells", INT64))),
        RelSpec("ASSOCIATED_WITH", "CellState", "Property", (_RUN, ("attention", DOUBLE))),
        RelSpec("EXPRESSES", "Cell", "Gene", (_RUN, ("attention", DOUBLE))),
    )
}

#: Relationship types holding the gene regulatory / co-expression network.
GRN_TYPES: tuple[str, ...] = ("REGULATES", "CO_EXPRESSED")


def scoped_uid(run_id: str, local_id: str) -> str:
    """Key of a per-run node (``CellState``, ``Property``): ``runId:localId``."""
    return f"{run_id}:{local_id}"


def cell_uid(dataset_id: str, cell_id: str) -> str:
    """Key of a ``Cell`` node: ``datasetId:cellId``."""
    return f"{dataset_id}:{cell_id}"


# --------------------------------------------------------------------------------------------
# RunTables


@dataclass(frozen=True)
class _TableSpec:
    required: tuple[tuple[str, str], ...]
    optional: tuple[tuple[str, str], ...] = ()
    unique: tuple[str, ...] = ()
    extra_columns: bool = False


_TABLES: dict[str, _TableSpec] = {
    "dataset": _TableSpec((("datasetId", STRING),), (("name", STRING), ("nCells", INT64)), ("datasetId",)),
    "cells": _TableSpec((("cellId", STRING),), (), ("cellId",), extra_columns=True),
    "genes": _TableSpec((("symbol", STRING),), (("ensemblId", STRING),), ("symbol",)),
    "states": _TableSpec(
        (("stateId", STRING), ("kind", STRING)), (("name", STRING), ("nCells", INT64)), ("stateId",)
    ),
    "properties": _TableSpec(
        (("propertyId", STRING), ("kind", STRING), ("value", STRING)), (), ("propertyId",)
    ),
    "cell_state": _TableSpec((("cellId", STRING), ("stateId", STRING)), (), ("cellId", "stateId")),
    "cell_property": _TableSpec((("cellId", STRING), ("propertyId", STRING)), (), ("cellId", "propertyId")),
    "markers": _TableSpec(
        (("stateId", STRING), ("symbol", STRING), ("score", DOUBLE)),
        (("rank", INT64), ("attention", DOUBLE), ("logFc", DOUBLE)),
        ("stateId", "symbol"),
    ),
    "co_expressed": _TableSpec(
        (("source", STRING), ("target", STRING), ("weight", DOUBLE)), (), ("source", "target")
    ),
    "regulates": _TableSpec(
        (("source", STRING), ("target", STRING), ("weight", DOUBLE)), (), ("source", "target")
    ),
    "subtype_of": _TableSpec(
        (("stateId", STRING), ("parentStateId", STRING)), (), ("stateId", "parentStateId")
    ),
    "bridges": _TableSpec(
        (("stateA", STRING), ("stateB", STRING), ("score", DOUBLE)), (("nCells", INT64),), ("stateA", "stateB")
    ),
    "associated_with": _TableSpec(
        (("stateId", STRING), ("propertyId", STRING), ("attention", DOUBLE)), (), ("stateId", "propertyId")
    ),
    "expresses": _TableSpec(
        (("cellId", STRING), ("symbol", STRING), ("attention", DOUBLE)), (), ("cellId", "symbol")
    ),
}

_RUN_FIELDS = ("runId", "model", "checkpointHash", "parameters", "createdAt", "command", "packageVersion")

# (table, column) -> (referenced table, referenced column)
_REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("cell_state", "cellId", "cells", "cellId"),
    ("cell_state", "stateId", "states", "stateId"),
    ("cell_property", "cellId", "cells", "cellId"),
    ("cell_property", "propertyId", "properties", "propertyId"),
    ("markers", "stateId", "states", "stateId"),
    ("markers", "symbol", "genes", "symbol"),
    ("co_expressed", "source", "genes", "symbol"),
    ("co_expressed", "target", "genes", "symbol"),
    ("regulates", "source", "genes", "symbol"),
    ("regulates", "target", "genes", "symbol"),
    ("subtype_of", "stateId", "states", "stateId"),
    ("subtype_of", "parentStateId", "states", "stateId"),
    ("bridges", "stateA", "states", "stateId"),
    ("bridges", "stateB", "states", "stateId"),
    ("associated_with", "stateId", "states", "stateId"),
    ("associated_with", "propertyId", "properties", "propertyId"),
    ("expresses", "cellId", "cells", "cellId"),
    ("expresses", "symbol", "genes", "symbol"),
)

TableLike = pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]] | None


def _as_frame(name: str, value: TableLike) -> pd.DataFrame:
    if value is None:
        spec = _TABLES[name]
        return pd.DataFrame({col: pd.Series(dtype=_pandas_dtype(t)) for col, t in spec.required})
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True).copy()
    if isinstance(value, Mapping):  # one record, e.g. the dataset
        return pd.DataFrame([dict(value)])
    try:
        return pd.DataFrame.from_records(list(value))
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"table '{name}' must be a pandas DataFrame or an iterable of dict records; got {type(value).__name__}"
        ) from exc


def _pandas_dtype(kind: str) -> str:
    return {STRING: "object", INT64: "float64", DOUBLE: "float64"}[kind]


def _coerce(name: str, frame: pd.DataFrame, column: str, kind: str, required: bool) -> None:
    series = frame[column]
    if kind == STRING:
        if required and series.isna().any():
            bad = int(series.isna().sum())
            raise SchemaError(
                f"table '{name}': column '{column}' has {bad} missing value(s); every row needs one"
            )
        frame[column] = series.map(lambda v: None if _is_missing(v) else str(v)).astype(object)
        return
    try:
        numeric = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"table '{name}': column '{column}' must be numeric ({kind}); {exc}. "
            f"Convert it with pandas.to_numeric before building RunTables."
        ) from exc
    numeric = numeric.astype("float64")
    if required and numeric.isna().any():
        raise SchemaError(
            f"table '{name}': column '{column}' has {int(numeric.isna().sum())} missing/NaN value(s); "
            "fill or drop those rows"
        )
    if kind == INT64:
        finite = numeric.dropna()
        if not np.all(np.equal(np.floor(finite), finite)):
            raise SchemaError(f"table '{name}': column '{column}' must hold whole numbers (INT64)")
    # INT64 columns travel as float64 (NaN = missing) and are stored as INT64 by the stores.
    frame[column] = numeric


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _infer_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return INT64
    if pd.api.types.is_integer_dtype(series):
        return INT64
    if pd.api.types.is_numeric_dtype(series):
        return DOUBLE
    return STRING


@dataclass
class RunTables:
    """One CellVQ run as plain tables (pandas DataFrames or lists of dict records).

    Columns are camelCase. Required columns are listed first; optional ones may be left out.

    ========================  =====================================================================
    table                     columns
    ========================  =====================================================================
    ``run`` (dict or 1 row)   runId; model, checkpointHash, parameters (dict or JSON str), createdAt
    ``dataset`` (1 row)       datasetId; name, nCells
    ``cells``                 cellId; any extra columns become ``Cell`` properties
    ``genes``                 symbol; ensemblId
    ``states``                stateId, kind (code|cluster|subtype|cellType); name, nCells
    ``properties``            propertyId, kind, value
    ``cell_state``            cellId, stateId
    ``cell_property``         cellId, propertyId
    ``markers``               stateId, symbol, score; rank, attention, logFc
    ``co_expressed``          source, target, weight
    ``regulates``             source, target, weight
    ``subtype_of``            stateId, parentStateId
    ``bridges``               stateA, stateB, score; nCells
    ``associated_with``       stateId, propertyId, attention
    ``expresses``             cellId, symbol, attention
    ========================  =====================================================================

    On construction the tables are copied, checked and normalised: a missing column, an unknown
    column, a duplicated key, a non-numeric score or a reference to an unknown cell / gene / state
    raises :class:`~graphdb.errors.SchemaError` naming the table and column. Missing optional
    values are filled: ``name`` = ``stateId``; ``nCells`` counted from ``cell_state``; marker
    ``rank`` from ``score`` (1 = best) within each state; ``dataset.nCells`` = ``len(cells)``;
    ``createdAt`` = now (UTC, ISO 8601).

    ``runId`` and ``datasetId`` may not contain ``':'`` (they prefix node keys).
    """

    run: Mapping[str, Any] | pd.DataFrame
    dataset: TableLike
    cells: TableLike = None
    genes: TableLike = None
    states: TableLike = None
    properties: TableLike = None
    cell_state: TableLike = None
    cell_property: TableLike = None
    markers: TableLike = None
    co_expressed: TableLike = None
    regulates: TableLike = None
    subtype_of: TableLike = None
    bridges: TableLike = None
    associated_with: TableLike = None
    expresses: TableLike = None
    cell_property_types: dict[str, str] = field(init=False, default_factory=dict)

    TABLE_NAMES = tuple(_TABLES)

    def __post_init__(self) -> None:
        self.run = self._normalise_run(self.run)
        for name in _TABLES:
            setattr(self, name, _as_frame(name, getattr(self, name)))
        for name, spec in _TABLES.items():
            self._check_table(name, spec)
        ds = self.dataset
        if len(ds) != 1:
            raise SchemaError(f"table 'dataset' must have exactly one row (the run's dataset); got {len(ds)}")
        for ident, what in ((self.run_id, "run.runId"), (self.dataset_id, "dataset.datasetId")):
            if not ident or ":" in ident or ident != ident.strip():
                raise SchemaError(
                    f"{what} {ident!r} is not a valid id: it must be non-empty, without ':' and without "
                    "surrounding spaces (it prefixes node keys)"
                )
        bad_kinds = sorted(set(self.states["kind"]) - set(STATE_KINDS))
        if bad_kinds:
            raise SchemaError(
                f"table 'states': column 'kind' has unknown value(s) {bad_kinds}; allowed: {list(STATE_KINDS)}"
            )
        for table, column, ref_table, ref_column in _REFERENCES:
            values = getattr(self, table)[column]
            known = set(getattr(self, ref_table)[ref_column])
            missing = pd.unique(values[~values.isin(known)])
            if len(missing):
                shown = ", ".join(repr(v) for v in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise SchemaError(
                    f"table '{table}': column '{column}' refers to {len(missing)} value(s) missing from "
                    f"'{ref_table}.{ref_column}': {shown}{more}. Add them to '{ref_table}' or drop those rows."
                )
        self._fill_defaults()

    # ---- normalisation -------------------------------------------------------------------------

    @staticmethod
    def _normalise_run(run: Mapping[str, Any] | pd.DataFrame) -> dict[str, Any]:
        if isinstance(run, pd.DataFrame):
            if len(run) != 1:
                raise SchemaError(f"table 'run' must have exactly one row; got {len(run)}")
            run = run.iloc[0].to_dict()
        if not isinstance(run, Mapping):
            raise SchemaError("table 'run' must be a dict or a one-row DataFrame with a 'runId'")
        unknown = sorted(set(run) - set(_RUN_FIELDS))
        if unknown:
            raise SchemaError(f"table 'run': unknown field(s) {unknown}; allowed: {list(_RUN_FIELDS)}")
        if _is_missing(run.get("runId")):
            raise SchemaError("table 'run': field 'runId' is missing; give every run a unique id")
        params = run.get("parameters")
        if params is None or (isinstance(params, float) and np.isnan(params)):
            params = {}
        if not isinstance(params, str):
            try:
                params = json.dumps(params, sort_keys=True, default=str)
            except (TypeError, ValueError) as exc:
                raise SchemaError(f"table 'run': 'parameters' is not JSON-serialisable: {exc}") from exc
        created = run.get("createdAt")
        if _is_missing(created):
            created = datetime.now(UTC).isoformat(timespec="seconds")
        elif isinstance(created, datetime | pd.Timestamp):
            created = created.isoformat()
        return {
            "runId": str(run["runId"]),
            "model": "" if _is_missing(run.get("model")) else str(run["model"]),
            "checkpointHash": "" if _is_missing(run.get("checkpointHash")) else str(run["checkpointHash"]),
            "parameters": params,
            "createdAt": str(created),
            "command": "" if _is_missing(run.get("command")) else str(run["command"]),
            "packageVersion": "" if _is_missing(run.get("packageVersion")) else str(run["packageVersion"]),
        }

    def _check_table(self, name: str, spec: _TableSpec) -> None:
        frame: pd.DataFrame = getattr(self, name)
        missing = [col for col, _ in spec.required if col not in frame.columns]
        if missing:
            raise SchemaError(
                f"table '{name}' is missing column(s) {missing}; required: {[c for c, _ in spec.required]}"
                + (f", optional: {[c for c, _ in spec.optional]}" if spec.optional else "")
            )
        known = {c for c, _ in spec.required} | {c for c, _ in spec.optional}
        extra = [c for c in frame.columns if c not in known]
        if extra and not spec.extra_columns:
            raise SchemaError(
                f"table '{name}' has unknown column(s) {extra}; allowed: {sorted(known)} "
                "(columns are camelCase)"
            )
        for col, kind in spec.required:
            _coerce(name, frame, col, kind, required=True)
        for col, kind in spec.optional:
            if col not in frame.columns:
                frame[col] = pd.Series([None] * len(frame), dtype=_pandas_dtype(kind), index=frame.index)
            _coerce(name, frame, col, kind, required=False)
        if spec.extra_columns:
            reserved = set(NODES["Cell"].property_names)
            for col in extra:
                if not isinstance(col, str) or not CELL_PROPERTY_PATTERN.match(col) or col in reserved:
                    raise SchemaError(
                        f"table '{name}': extra column {col!r} cannot be a Cell property: use a name matching "
                        f"{CELL_PROPERTY_PATTERN.pattern} other than {sorted(reserved)}"
                    )
                kind = _infer_kind(frame[col])
                _coerce(name, frame, col, kind, required=False)
                self.cell_property_types[col] = kind
        if spec.unique and len(frame):
            dup = frame.duplicated(list(spec.unique), keep=False)
            if dup.any():
                example = frame.loc[dup, list(spec.unique)].iloc[0].to_dict()
                raise SchemaError(
                    f"table '{name}' has {int(dup.sum())} rows with a duplicated key {list(spec.unique)}, "
                    f"e.g. {example}; keep one row per key"
                )
        frame.reset_index(drop=True, inplace=True)

    def _fill_defaults(self) -> None:
        st = self.states
        st["name"] = st["name"].where(st["name"].notna(), st["stateId"])
        if len(st):
            counts = self.cell_state.groupby("stateId").size()
            filled = st["stateId"].map(counts).fillna(0).astype("float64")
            st["nCells"] = st["nCells"].where(st["nCells"].notna(), filled)
        mk = self.markers
        if len(mk) and mk["rank"].isna().any():
            computed = mk.groupby("stateId")["score"].rank(ascending=False, method="first")
            mk["rank"] = mk["rank"].where(mk["rank"].notna(), computed)
        ds = self.dataset
        if ds["nCells"].isna().all():
            ds["nCells"] = float(len(self.cells))
        ds["name"] = ds["name"].where(ds["name"].notna(), ds["datasetId"])

    # ---- accessors -----------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.run["runId"]

    @property
    def dataset_id(self) -> str:
        return str(self.dataset["datasetId"].iloc[0])

    def summary(self) -> dict[str, int]:
        """Row count of every table."""
        return {name: len(getattr(self, name)) for name in _TABLES}

    def n_rows(self) -> int:
        """Total number of table rows (the unit of the load-throughput figures)."""
        return int(sum(self.summary().values())) + 1


# --------------------------------------------------------------------------------------------
# Tables -> graph rows


def graph_frames(tables: RunTables) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Turn :class:`RunTables` into one frame per node label and per relationship type.

    Node frames hold exactly the label's properties (``Cell`` frames also the extra cell
    columns) in schema order. Relationship frames hold ``startKey``, ``endKey`` (the key of
    the start and end node) followed by the type's properties in schema order. This is the one
    mapping used by the LadybugDB COPY path, the Neo4j UNWIND path and the bulk-import writer.
    The ``Run`` frame's ``status`` is ``writing``.
    """
    t = tables
    run_id, ds_id = t.run_id, t.dataset_id
    n = len

    def state_uid(col: pd.Series) -> pd.Series:
        return (run_id + ":" + col).astype(object)

    def cell_uids(col: pd.Series) -> pd.Series:
        return (ds_id + ":" + col).astype(object)

    nodes: dict[str, pd.DataFrame] = {}
    nodes["Run"] = pd.DataFrame(
        [{**t.run, "completedAt": None, "status": STATUS_WRITING}], columns=NODES["Run"].property_names
    )
    nodes["Dataset"] = t.dataset[NODES["Dataset"].property_names].copy()
    cells = pd.DataFrame(
        {"uid": cell_uids(t.cells["cellId"]), "cellId": t.cells["cellId"], "datasetId": [ds_id] * n(t.cells)}
    )
    for col in t.cell_property_types:
        cells[col] = t.cells[col].to_numpy()
    nodes["Cell"] = cells
    nodes["Gene"] = t.genes[["symbol", "ensemblId"]].copy()
    nodes["CellState"] = pd.DataFrame(
        {
            "uid": state_uid(t.states["stateId"]),
            "runId": [run_id] * n(t.states),
            "stateId": t.states["stateId"],
            "kind": t.states["kind"],
            "name": t.states["name"],
            "nCells": t.states["nCells"],
        }
    )
    nodes["Property"] = pd.DataFrame(
        {
            "uid": state_uid(t.properties["propertyId"]),
            "runId": [run_id] * n(t.properties),
            "propertyId": t.properties["propertyId"],
            "kind": t.properties["kind"],
            "value": t.properties["value"],
        }
    )

    def rel(start: pd.Series, end: pd.Series, frame: pd.DataFrame, props: list[str]) -> pd.DataFrame:
        out = pd.DataFrame({"startKey": start.to_numpy(), "endKey": end.to_numpy(), "runId": [run_id] * len(frame)})
        for p in props:
            out[p] = frame[p].to_numpy()
        return out

    rels: dict[str, pd.DataFrame] = {}
    rels["ON_DATASET"] = pd.DataFrame({"startKey": [run_id], "endKey": [ds_id], "runId": [run_id]})
    rels["IN_STATE"] = rel(cell_uids(t.cell_state["cellId"]), state_uid(t.cell_state["stateId"]), t.cell_state, [])
    rels["HAS_PROPERTY"] = rel(
        cell_uids(t.cell_property["cellId"]), state_uid(t.cell_property["propertyId"]), t.cell_property, []
    )
    rels["MARKER_OF"] = rel(
        t.markers["symbol"], state_uid(t.markers["stateId"]), t.markers, ["score", "rank", "attention", "logFc"]
    )
    rels["CO_EXPRESSED"] = rel(t.co_expressed["source"], t.co_expressed["target"], t.co_expressed, ["weight"])
    rels["REGULATES"] = rel(t.regulates["source"], t.regulates["target"], t.regulates, ["weight"])
    rels["SUBTYPE_OF"] = rel(
        state_uid(t.subtype_of["stateId"]), state_uid(t.subtype_of["parentStateId"]), t.subtype_of, []
    )
    rels["BRIDGES"] = rel(
        state_uid(t.bridges["stateA"]), state_uid(t.bridges["stateB"]), t.bridges, ["score", "nCells"]
    )
    rels["ASSOCIATED_WITH"] = rel(
        state_uid(t.associated_with["stateId"]),
        state_uid(t.associated_with["propertyId"]),
        t.associated_with,
        ["attention"],
    )
    rels["EXPRESSES"] = rel(cell_uids(t.expresses["cellId"]), t.expresses["symbol"], t.expresses, ["attention"])
    for rtype, frame in rels.items():
        expected = ["startKey", "endKey", *RELATIONSHIPS[rtype].property_names]
        assert list(frame.columns) == expected, (rtype, list(frame.columns))
    return nodes, rels


def records(frame: pd.DataFrame, int_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """DataFrame rows as dicts of plain Python values: NaN becomes ``None``, ``int_columns`` ints.

    These are the rows the UNWIND statements receive as ``$rows``.
    """
    if frame.empty:
        return []
    ints = set(int_columns)
    columns: dict[str, list[Any]] = {}
    for col in frame.columns:
        series = frame[col]
        mask = series.isna().to_numpy()
        if col in ints:
            values = [None if m else int(v) for v, m in zip(series.to_numpy(), mask)]
        elif pd.api.types.is_float_dtype(series):
            values = [None if m else float(v) for v, m in zip(series.to_numpy(), mask)]
        elif pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
            values = [int(v) for v in series.to_numpy()]
        else:
            values = [None if m else v for v, m in zip(series.tolist(), mask)]
        columns[col] = values
    keys = list(columns)
    return [dict(zip(keys, row)) for row in zip(*columns.values())]


def int_columns(label_or_type: str, cell_property_types: Mapping[str, str] | None = None) -> list[str]:
    """Names of the INT64 properties of a node label or relationship type."""
    spec = NODES.get(label_or_type) or RELATIONSHIPS[label_or_type]
    cols = [name for name, kind in spec.properties if kind == INT64]
    if label_or_type == "Cell" and cell_property_types:
        cols += [name for name, kind in cell_property_types.items() if kind == INT64]
    return cols


def lint_schema(extra_property_keys: Iterable[str] = ()) -> dict[str, list[str]]:
    """The schema in the shape Neo4j's Cypher linter expects (labels, types, property keys).

    Passing it to the linter turns a misspelt label, relationship type or property into a warning.
    """
    keys = {name for spec in NODES.values() for name in spec.property_names}
    keys |= {name for spec in RELATIONSHIPS.values() for name in spec.property_names}
    keys |= set(extra_property_keys)
    return {
        "labels": sorted(NODES),
        "relationshipTypes": sorted(RELATIONSHIPS),
        "propertyKeys": sorted(keys),
    }
