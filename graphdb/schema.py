"""The graph schema and :class:`RunTables`, the plain tables a run is written from.

Everything about names lives here: node labels (PascalCase), relationship types
(UPPER_SNAKE_CASE), property keys (camelCase) and their types. Each node label and relationship
type is declared once (:data:`NODES`, :data:`RELATIONSHIPS`): key, typed properties and the
:class:`RunTables` table it comes from. Derived from these declarations, so they cannot drift apart:
the input tables' columns, types and foreign keys (:class:`RunTables`), the graph rows both stores
write (:func:`graph_frames`) and their inverse (:func:`table_from_graph`), the UNWIND ``MERGE``
statements, the LadybugDB DDL, migrations and COPY frames, the Neo4j bulk-import headers and the
Cypher linter's schema.

Keys
----
* ``Gene``      -- ``symbol``; shared by every run (a gene is a gene).
* ``Cell``      -- ``uid = datasetId + ":" + cellId``; shared by the runs over one dataset.
* ``CellState`` -- ``uid = runId + ":" + stateId``; one node per run, so runs never collide.
* ``Property``  -- ``uid = runId + ":" + propertyId``; one node per run.
* ``Run``       -- ``runId``; ``Dataset`` -- ``datasetId``.
* ``Perturbation`` -- ``uid = runId + ":" + perturbationId``; one node per run (its kind, SMILES, target).

Every relationship carries the ``runId`` of the run that produced it and is merged on it (per start,
end and ``runId``); ``SHIFTS`` is merged on ``predicted`` too, so the observed and the predicted shift
of one perturbation x gene pair are two relationships of one run.
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
    "PERTURBATION_KINDS",
    "RELATIONSHIPS",
    "STATE_KINDS",
    "NodeSpec",
    "Prop",
    "REGULATES_EVIDENCE",
    "RelSpec",
    "RunTables",
    "cell_uid",
    "graph_frames",
    "int_columns",
    "lint_schema",
    "node_keys",
    "records",
    "run_labels",
    "scoped_uid",
    "state_property_cells",
    "table_from_graph",
]

#: The kinds a ``CellState`` may have.
STATE_KINDS: tuple[str, ...] = ("code", "cluster", "subtype", "cellType")
#: The kinds a ``Perturbation`` may have (``smiles`` is given for drugs).
PERTURBATION_KINDS: tuple[str, ...] = ("knockout", "activation", "drug", "stimulus")

#: Run status values. A run is visible to the named queries only when ``complete``.
STATUS_WRITING = "writing"
STATUS_COMPLETE = "complete"

#: Extra ``cells`` columns become ``Cell`` properties; their names must be plain camelCase-ish
#: identifiers, because a property key cannot travel as a query parameter.
CELL_PROPERTY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")

# Property types, spelled the LadybugDB way; bulk_import maps them onto Neo4j import types.
STRING, INT64, DOUBLE = "STRING", "INT64", "DOUBLE"

# Where a property's value comes from, other than a column of the source table.
KEY, RUN_ID, DATASET_ID = "<key>", "<runId>", "<datasetId>"
# Scope of a node key: the key column prefixed by the run id, by the dataset id, or as it is.
RUN_SCOPE, DATASET_SCOPE = "run", "dataset"


@dataclass(frozen=True)
class Prop:
    """One typed property and where it comes from.

    ``source``: a column of the source table (default: the property's own name), or :data:`KEY` (the
    node's scoped key), :data:`RUN_ID` / :data:`DATASET_ID` (the run's / dataset's id). ``required``:
    the source table must hold the column (otherwise it is optional and may be left out).
    """

    name: str
    kind: str
    required: bool = False
    source: str | None = None

    @property
    def column(self) -> str | None:
        """The source-table column, or ``None`` for a derived value."""
        src = self.source or self.name
        return None if src in (KEY, RUN_ID, DATASET_ID) else src


@dataclass(frozen=True)
class NodeSpec:
    """One node label, declared once: key, typed properties (key first) and source table.

    ``table`` is the :class:`RunTables` table each row of which becomes one node, ``key_column`` the
    column that identifies a row there, ``scope`` how the key is built from it (``run``: ``runId:col``,
    ``dataset``: ``datasetId:col``, ``None``: the column itself). ``keep_known``: a missing value never
    erases a stored one (nodes shared by runs, e.g. a gene's Ensembl ID). New properties go last, so
    that stores created before them gain them as appended columns.
    """

    label: str
    key: str
    properties: tuple[Prop, ...]
    table: str | None = None
    key_column: str | None = None
    scope: str | None = None
    keep_known: bool = False

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in self.properties]

    @property
    def typed(self) -> tuple[tuple[str, str], ...]:
        """``(name, type)`` of every property, in order."""
        return tuple((p.name, p.kind) for p in self.properties)


@dataclass(frozen=True)
class RelSpec:
    """One relationship type, declared once: ends, typed properties (``runId`` first), source table.

    Each row of ``table`` becomes one relationship from the ``start`` node named by ``start_column``
    to the ``end`` node named by ``end_column`` (values of those labels' key columns). A relationship
    is merged on ``runId`` and the properties named in ``merge_on`` (which also join the source
    table's key: one row per start, end and ``merge_on`` values).
    """

    type: str
    start: str
    end: str
    properties: tuple[Prop, ...]
    table: str | None = None
    start_column: str | None = None
    end_column: str | None = None
    merge_on: tuple[str, ...] = ()

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in self.properties]

    @property
    def typed(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.name, p.kind) for p in self.properties)

    @property
    def set_properties(self) -> list[str]:
        """Properties set on the relationship besides ``runId`` and ``merge_on`` (which it is merged on)."""
        return [p.name for p in self.properties if p.source != RUN_ID and p.name not in self.merge_on]


def _p(name: str, kind: str = STRING, *, required: bool = False, source: str | None = None) -> Prop:
    return Prop(name, kind, required, source)


_RUN_PROP = _p("runId", source=RUN_ID)

NODES: dict[str, NodeSpec] = {
    spec.label: spec
    for spec in (
        NodeSpec(
            "Dataset", "datasetId", (_p("datasetId", required=True), _p("name"), _p("nCells", INT64)),
            table="dataset", key_column="datasetId",
        ),
        NodeSpec(
            "Run",
            "runId",
            tuple(
                _p(name)
                for name in ("runId", "model", "checkpointHash", "parameters", "createdAt", "completedAt",
                             "status", "command", "packageVersion", "writer")
            ),
        ),
        NodeSpec(
            "Cell", "uid",
            (_p("uid", source=KEY), _p("cellId", required=True), _p("datasetId", source=DATASET_ID)),
            table="cells", key_column="cellId", scope=DATASET_SCOPE,
        ),
        NodeSpec(
            "Gene", "symbol", (_p("symbol", required=True), _p("ensemblId")),
            table="genes", key_column="symbol", keep_known=True,
        ),
        NodeSpec(
            "CellState",
            "uid",
            (
                _p("uid", source=KEY),
                _RUN_PROP,
                _p("stateId", required=True),
                _p("kind", required=True),
                _p("name"),
                _p("nCells", INT64),
                _p("description"),
            ),
            table="states", key_column="stateId", scope=RUN_SCOPE,
        ),
        NodeSpec(
            "Property",
            "uid",
            (
                _p("uid", source=KEY),
                _RUN_PROP,
                _p("propertyId", required=True),
                _p("kind", required=True),
                _p("value", required=True),
            ),
            table="properties", key_column="propertyId", scope=RUN_SCOPE,
        ),
        NodeSpec(
            "Perturbation",
            "uid",
            (
                _p("uid", source=KEY),
                _RUN_PROP,
                _p("perturbationId", required=True),
                _p("kind", required=True),
                _p("smiles"),
                _p("target"),
            ),
            table="perturbations", key_column="perturbationId", scope=RUN_SCOPE,
        ),
    )
}

#: Evidence of a ``REGULATES`` edge beside its ``weight`` (the combined score), camelCase versions of
#: the columns of :func:`cellvq_graph.regulatory_network`; all optional.
REGULATES_EVIDENCE: tuple[Prop, ...] = (
    _p("rank", INT64),
    _p("treeImportance", DOUBLE),
    _p("treeConsensus", DOUBLE),
    _p("attention", DOUBLE),
    _p("perturbationZ", DOUBLE),
    _p("perturbationLogFc", DOUBLE),
    _p("spearman", DOUBLE),
    _p("nEvidence", INT64),
)


def _rel(rtype: str, start: str, end: str, table: str, cols: tuple[str, str], *props: Prop) -> RelSpec:
    return RelSpec(rtype, start, end, (_RUN_PROP, *props), table, cols[0], cols[1])


_WEIGHT = _p("weight", DOUBLE, required=True)
RELATIONSHIPS: dict[str, RelSpec] = {
    spec.type: spec
    for spec in (
        RelSpec("ON_DATASET", "Run", "Dataset", (_RUN_PROP,)),
        _rel("IN_STATE", "Cell", "CellState", "cell_state", ("cellId", "stateId")),
        _rel("HAS_PROPERTY", "Cell", "Property", "cell_property", ("cellId", "propertyId")),
        _rel(
            "MARKER_OF", "Gene", "CellState", "markers", ("symbol", "stateId"),
            _p("score", DOUBLE, required=True), _p("rank", INT64), _p("attention", DOUBLE), _p("logFc", DOUBLE),
        ),
        _rel("CO_EXPRESSED", "Gene", "Gene", "co_expressed", ("source", "target"), _WEIGHT),
        _rel("REGULATES", "Gene", "Gene", "regulates", ("source", "target"), _WEIGHT, *REGULATES_EVIDENCE),
        _rel("SUBTYPE_OF", "CellState", "CellState", "subtype_of", ("stateId", "parentStateId")),
        _rel(
            "BRIDGES", "CellState", "CellState", "bridges", ("stateA", "stateB"),
            _p("score", DOUBLE, required=True), _p("nCells", INT64),
            # the doublet call of the bridge's cells (scrublet): a bridge of doublets is not a state
            _p("doubletScore", DOUBLE), _p("doubletShare", DOUBLE), _p("doubletEnrichment", DOUBLE),
            _p("doubletP", DOUBLE),
        ),
        _rel(
            "ASSOCIATED_WITH", "CellState", "Property", "associated_with", ("stateId", "propertyId"),
            _p("attention", DOUBLE, required=True), _p("nCells", INT64),
        ),
        _rel("EXPRESSES", "Cell", "Gene", "expresses", ("cellId", "symbol"), _p("attention", DOUBLE, required=True)),
        RelSpec(
            "SHIFTS", "Perturbation", "Gene",
            (_RUN_PROP, _p("delta", DOUBLE, required=True), _p("rank", INT64), _p("predicted", INT64, required=True)),
            "shifts", "perturbationId", "symbol", merge_on=("predicted",),
        ),
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


def run_labels() -> list[str]:
    """Labels whose nodes belong to one run (keyed ``runId:...``), deleted with it."""
    return [label for label, spec in NODES.items() if spec.scope == RUN_SCOPE]


# --------------------------------------------------------------------------------------------
# RunTables: the input tables, derived from the declarations


@dataclass(frozen=True)
class _TableSpec:
    required: tuple[tuple[str, str], ...]
    optional: tuple[tuple[str, str], ...] = ()
    unique: tuple[str, ...] = ()
    extra_columns: bool = False


def _node_table(spec: NodeSpec) -> _TableSpec:
    cols = [p for p in spec.properties if p.column]
    return _TableSpec(
        tuple((p.column, p.kind) for p in cols if p.required),
        tuple((p.column, p.kind) for p in cols if not p.required),
        (spec.key_column,),
        extra_columns=spec.label == "Cell",
    )


def _rel_table(spec: RelSpec) -> _TableSpec:
    ends = ((spec.start_column, NODES[spec.start]), (spec.end_column, NODES[spec.end]))
    cols = [p for p in spec.properties if p.column]
    required = [(col, _key_kind(node)) for col, node in ends]
    required += [(p.column, p.kind) for p in cols if p.required]
    return _TableSpec(
        tuple(required), tuple((p.column, p.kind) for p in cols if not p.required),
        (spec.start_column, spec.end_column, *spec.merge_on),
    )


def _key_kind(node: NodeSpec) -> str:
    return next(p.kind for p in node.properties if p.column == node.key_column)


_TABLES: dict[str, _TableSpec] = {
    **{spec.table: _node_table(spec) for spec in NODES.values() if spec.table},
    **{spec.table: _rel_table(spec) for spec in RELATIONSHIPS.values() if spec.table},
}

_RUN_FIELDS = ("runId", "model", "checkpointHash", "parameters", "createdAt", "command", "packageVersion")

# (table, column) -> (referenced table, referenced column): every relationship end names a node row
_REFERENCES: tuple[tuple[str, str, str, str], ...] = tuple(
    (spec.table, column, NODES[label].table, NODES[label].key_column)
    for spec in RELATIONSHIPS.values()
    if spec.table
    for column, label in ((spec.start_column, spec.start), (spec.end_column, spec.end))
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

    Columns are camelCase. Required columns are listed first; optional ones may be left out. The
    tables, their columns, types and references are derived from :data:`NODES` and
    :data:`RELATIONSHIPS` (each node label and relationship type names its source table).

    ========================  =====================================================================
    table                     columns
    ========================  =====================================================================
    ``run`` (dict or 1 row)   runId; model, checkpointHash, parameters (dict or JSON str), createdAt
    ``dataset`` (1 row)       datasetId; name, nCells
    ``cells``                 cellId; any extra columns become ``Cell`` properties
    ``genes``                 symbol; ensemblId
    ``states``                stateId, kind (code|cluster|subtype|cellType); name, nCells, description
    ``properties``            propertyId, kind, value
    ``cell_state``            cellId, stateId
    ``cell_property``         cellId, propertyId
    ``markers``               stateId, symbol, score; rank, attention, logFc
    ``co_expressed``          source, target, weight
    ``regulates``             source, target, weight; rank, treeImportance, treeConsensus, attention,
                              perturbationZ, perturbationLogFc, spearman, nEvidence (the evidence)
    ``subtype_of``            stateId, parentStateId
    ``bridges``               stateA, stateB, score; nCells
    ``associated_with``       stateId, propertyId, attention
    ``expresses``             cellId, symbol, attention
    ``perturbations``         perturbationId, kind (knockout|activation|drug|stimulus); smiles, target
    ``shifts``                perturbationId, symbol, delta, predicted (0 observed, 1 predicted; bools
                              accepted); rank (1 = largest |delta| of that perturbation and predicted)
    ========================  =====================================================================

    On construction the tables are copied, checked and normalised: a missing column, an unknown
    column, a duplicated key, a non-numeric score or a reference to an unknown cell / gene / state
    raises :class:`~graphdb.errors.SchemaError` naming the table and column. Missing optional
    values are filled: ``name`` = ``stateId``; ``nCells`` counted from ``cell_state``; marker
    ``rank`` from ``score`` (1 = best) within each state; shift ``rank`` from ``|delta|`` within each
    perturbation and ``predicted``; ``dataset.nCells`` = ``len(cells)``;
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
    perturbations: TableLike = None
    shifts: TableLike = None
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
        for table, allowed in (("states", STATE_KINDS), ("perturbations", PERTURBATION_KINDS)):
            bad_kinds = sorted(set(getattr(self, table)["kind"]) - set(allowed))
            if bad_kinds:
                raise SchemaError(
                    f"table '{table}': column 'kind' has unknown value(s) {bad_kinds}; allowed: {list(allowed)}"
                )
        bad_flags = sorted(set(self.shifts["predicted"]) - {0.0, 1.0})
        if bad_flags:
            raise SchemaError(f"table 'shifts': column 'predicted' must be 0/False (observed) or 1/True "
                              f"(predicted); got {bad_flags[:5]}")
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
        aw = self.associated_with
        if len(aw) and aw["nCells"].isna().any():
            filled = state_property_cells(self.cell_state, self.cell_property, aw).astype("float64")
            aw["nCells"] = aw["nCells"].where(aw["nCells"].notna(), filled)
        mk = self.markers
        if len(mk) and mk["rank"].isna().any():
            computed = mk.groupby("stateId")["score"].rank(ascending=False, method="first")
            mk["rank"] = mk["rank"].where(mk["rank"].notna(), computed)
        sh = self.shifts
        if len(sh) and sh["rank"].isna().any():
            computed = sh.assign(_a=sh["delta"].abs()).groupby(["perturbationId", "predicted"])["_a"].rank(
                ascending=False, method="first")
            sh["rank"] = sh["rank"].where(sh["rank"].notna(), computed)
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


def state_property_cells(cell_state: pd.DataFrame, cell_property: pd.DataFrame,
                         pairs: pd.DataFrame) -> np.ndarray:
    """For each ``(stateId, propertyId)`` row of ``pairs``: how many cells are in the state and have
    the property (the per-state aggregate ``ASSOCIATED_WITH.nCells``, written with the run so that
    :meth:`GraphStore.state_properties` reads it instead of counting cells at query time)."""
    joined = cell_state[["cellId", "stateId"]].merge(cell_property[["cellId", "propertyId"]], on="cellId")
    counts = joined.groupby(["stateId", "propertyId"]).size().rename("_n").reset_index()
    keyed = pairs[["stateId", "propertyId"]].merge(counts, on=["stateId", "propertyId"], how="left")
    return keyed["_n"].fillna(0).to_numpy(dtype="int64")


# --------------------------------------------------------------------------------------------
# Tables -> graph rows


def graph_frames(tables: RunTables) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Turn :class:`RunTables` into one frame per node label and per relationship type.

    Node frames hold exactly the label's properties (``Cell`` frames also the extra cell
    columns) in declaration order. Relationship frames hold ``startKey``, ``endKey`` (the key of
    the start and end node) followed by the type's properties in declaration order. This is the
    one mapping used by the LadybugDB COPY path, the UNWIND path and the bulk-import writer, all
    derived from :data:`NODES` and :data:`RELATIONSHIPS`. The ``Run`` frame's ``status`` is ``writing``.
    """
    nodes: dict[str, pd.DataFrame] = {}
    for label, spec in NODES.items():
        if spec.table is None:  # the Run node, from the run record
            run = {**tables.run, "completedAt": None, "status": STATUS_WRITING}
            nodes[label] = pd.DataFrame([run], columns=spec.property_names)
            continue
        source = getattr(tables, spec.table)
        frame = pd.DataFrame({p.name: _values(p, source, spec, tables) for p in spec.properties})
        if label == "Cell":
            for col in tables.cell_property_types:
                frame[col] = source[col].to_numpy()
        nodes[label] = frame
    rels: dict[str, pd.DataFrame] = {}
    for rtype, spec in RELATIONSHIPS.items():
        if spec.table is None:  # ON_DATASET: the run and its dataset
            rels[rtype] = pd.DataFrame({"startKey": [tables.run_id], "endKey": [tables.dataset_id],
                                        "runId": [tables.run_id]})
            continue
        source = getattr(tables, spec.table)
        frame = {
            "startKey": node_keys(NODES[spec.start], source[spec.start_column], tables),
            "endKey": node_keys(NODES[spec.end], source[spec.end_column], tables),
        }
        frame.update({p.name: _values(p, source, None, tables) for p in spec.properties})
        rels[rtype] = pd.DataFrame(frame)
    return nodes, rels


def node_keys(spec: NodeSpec, ids: pd.Series, tables: RunTables) -> np.ndarray:
    """Node keys of ``spec`` for the values ``ids`` of its key column (scoped by run or dataset)."""
    prefix = {RUN_SCOPE: tables.run_id, DATASET_SCOPE: tables.dataset_id}.get(spec.scope)
    values = ids.to_numpy(dtype=object)
    if prefix is None:
        return values.copy()
    return np.array([f"{prefix}:{v}" for v in values], dtype=object)


def _values(prop: Prop, source: pd.DataFrame, node: NodeSpec | None, tables: RunTables) -> np.ndarray:
    n = len(source)
    if prop.source == KEY:
        return node_keys(node, source[node.key_column], tables)
    if prop.source == RUN_ID:
        return np.array([tables.run_id] * n, dtype=object)
    if prop.source == DATASET_ID:
        return np.array([tables.dataset_id] * n, dtype=object)
    return source[prop.column].to_numpy()


def table_from_graph(
    spec: NodeSpec | RelSpec, frame: pd.DataFrame, run_id: str, dataset_id: str
) -> pd.DataFrame:
    """The inverse of :func:`graph_frames` for one label or type: its source table's columns.

    ``frame`` holds one run's nodes (node properties) or relationships (``startKey``, ``endKey``,
    properties), as read back from a store or a bulk-import file.
    """
    prefixes = {RUN_SCOPE: run_id, DATASET_SCOPE: dataset_id}
    out = pd.DataFrame(index=frame.index)
    if isinstance(spec, RelSpec):
        for end, col, label in (("startKey", spec.start_column, spec.start), ("endKey", spec.end_column, spec.end)):
            out[col] = _unscoped(frame[end], prefixes.get(NODES[label].scope))
    for prop in spec.properties:
        if prop.column and prop.name in frame:
            out[prop.column] = frame[prop.name].to_numpy()
    return out.reset_index(drop=True)


def _unscoped(keys: pd.Series, prefix: str | None) -> np.ndarray:
    values = keys.astype(object).to_numpy()
    if prefix is None:
        return values
    return np.array([str(v)[len(prefix) + 1 :] for v in values], dtype=object)


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
    cols = [p.name for p in spec.properties if p.kind == INT64]
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
