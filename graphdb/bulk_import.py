"""Neo4j 5 bulk-import files for large runs, and a reader that parses them back.

Online writes (``UNWIND`` batches) suit small and incremental runs. A run with millions of
edges loads far faster with ``neo4j-admin database import full``, which builds a new database
from CSV files while the server is stopped. :func:`write_bulk_import` writes those files --

* ``nodes_<Label>.csv`` with headers such as ``uid:ID(CellState),runId:string,...,nCells:long,:LABEL``
* ``rels_<TYPE>.csv``   with ``:START_ID(Gene),:END_ID(CellState),runId:string,score:double,...,:TYPE``

(one ID space per label, typed properties) -- plus, beside them:

* ``import_command.txt`` -- the exact ``neo4j-admin database import full ...`` command,
* ``import.sh``          -- the same, runnable (``NEO4J_HOME`` / ``NEO4J_ADMIN`` respected),
* ``after_import.cypher`` -- the constraints and indexes to create once the server is up.

Runs are written with ``status: 'complete'``: the import is all-or-nothing. Several runs may go
into one import (genes and cells are shared; duplicates are merged).
:func:`read_bulk_import` parses the headers and rows back into :class:`~graphdb.schema.RunTables`
(each run gets every ``Gene`` node, since genes belong to no single run).
"""

from __future__ import annotations

import csv
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import queries as q
from .errors import SchemaError
from .schema import (
    DOUBLE,
    INT64,
    NODES,
    RELATIONSHIPS,
    RUN_SCOPE,
    STATUS_COMPLETE,
    STRING,
    RunTables,
    graph_frames,
    table_from_graph,
)

# Neo4j 5 database names: 3-63 characters, ASCII letters, digits, dots and dashes, starting with a letter
_DATABASE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.\-]{2,62}")

__all__ = ["BulkImport", "check_database_name", "node_header", "parse_header", "read_bulk_import", "rel_header",
           "write_bulk_import"]

_NEO4J_TYPES = {STRING: "string", INT64: "long", DOUBLE: "double"}
_FROM_NEO4J = {"string": STRING, "long": INT64, "int": INT64, "double": DOUBLE, "float": DOUBLE}


@dataclass
class BulkImport:
    """Files written by :func:`write_bulk_import` and the command that imports them."""

    directory: Path
    node_files: dict[str, Path] = field(default_factory=dict)
    rel_files: dict[str, Path] = field(default_factory=dict)
    command: str = ""
    rows: dict[str, int] = field(default_factory=dict)


def node_header(label: str, cell_types: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(column, header field)`` of a ``nodes_<Label>.csv``, from the label's declaration.

    The key is ``<key>:ID(<Label>)`` (one ID space per label), every property ``<name>:<type>``,
    then ``:LABEL``; ``Cell`` files add the extra cell columns (``cell_types``: name -> type)."""
    spec = NODES[label]
    columns = list(spec.typed) + (list((cell_types or {}).items()) if label == "Cell" else [])
    fields = [(name, f"{name}:ID({label})" if name == spec.key else f"{name}:{_NEO4J_TYPES[kind]}")
              for name, kind in columns]
    return [*fields, (":LABEL", ":LABEL")]


def rel_header(rtype: str) -> list[tuple[str, str]]:
    """``(column, header field)`` of a ``rels_<TYPE>.csv``: ``:START_ID(<Start>)``, ``:END_ID(<End>)``,
    every property ``<name>:<type>``, ``:TYPE``."""
    spec = RELATIONSHIPS[rtype]
    fields = [("startKey", f":START_ID({spec.start})"), ("endKey", f":END_ID({spec.end})")]
    fields += [(name, f"{name}:{_NEO4J_TYPES[kind]}") for name, kind in spec.typed]
    return [*fields, (":TYPE", ":TYPE")]


def _merge_nodes(frames: Iterable[pd.DataFrame], key: str) -> pd.DataFrame:
    """Concatenate node frames from several runs; one row per key, first non-missing value wins."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    allf = pd.concat(frames, ignore_index=True)
    return allf.groupby(key, sort=False, as_index=False).first()


def write_bulk_import(
    runs: RunTables | Sequence[RunTables],
    directory: str | Path,
    *,
    database: str = "neo4j",
    neo4j_admin: str = "neo4j-admin",
) -> BulkImport:
    """Write Neo4j 5 ``neo4j-admin database import full`` files for one or more runs.

    Returns the files and the command; the command is also printed to ``import_command.txt``.
    """
    check_database_name(database)
    if isinstance(runs, RunTables):
        runs = [runs]
    if not runs:
        raise ValueError("write_bulk_import needs at least one RunTables")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SchemaError(f"runs passed to write_bulk_import must have distinct runIds, got {ids}")
    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    completed = datetime.now(UTC).isoformat(timespec="seconds")

    per_run = [graph_frames(r) for r in runs]
    cell_types: dict[str, str] = {}
    for r in runs:
        for name, kind in r.cell_property_types.items():
            if cell_types.setdefault(name, kind) != kind:
                cell_types[name] = DOUBLE if {kind, cell_types[name]} <= {INT64, DOUBLE} else STRING
    result = BulkImport(directory=out)

    for label, spec in NODES.items():
        frame = _merge_nodes((nodes[label] for nodes, _ in per_run), spec.key)
        if frame.empty:
            continue
        if label == "Run":
            frame["status"] = STATUS_COMPLETE
            frame["completedAt"] = completed
        fields = node_header(label, cell_types)
        frame = frame.reindex(columns=[c for c, _ in fields[:-1]])
        frame[":LABEL"] = label
        path = out / f"nodes_{label}.csv"
        kinds = {**dict(spec.typed), **(cell_types if label == "Cell" else {})}
        _write_csv(path, [h for _, h in fields], frame, kinds)
        result.node_files[label] = path
        result.rows[label] = len(frame)

    for rtype, spec in RELATIONSHIPS.items():
        frames = [rels[rtype] for _, rels in per_run if len(rels[rtype])]
        if not frames:
            continue
        frame = pd.concat(frames, ignore_index=True)
        frame[":TYPE"] = rtype
        path = out / f"rels_{rtype}.csv"
        _write_csv(path, [h for _, h in rel_header(rtype)], frame, dict(spec.typed))
        result.rel_files[rtype] = path
        result.rows[rtype] = len(frame)

    args = [neo4j_admin, "database", "import", "full", database, "--overwrite-destination=true", "--id-type=string"]
    args += [f"--nodes={p}" for p in result.node_files.values()]
    args += [f"--relationships={p}" for p in result.rel_files.values()]
    result.command = shlex.join(args)
    (out / "import_command.txt").write_text(result.command + "\n")
    local = [
        '"${NEO4J_ADMIN:-${NEO4J_HOME:+$NEO4J_HOME/bin/}neo4j-admin}" database import full ' + shlex.quote(database),
        "--overwrite-destination=true --id-type=string",
        *(f'--nodes="$HERE/{p.name}"' for p in result.node_files.values()),
        *(f'--relationships="$HERE/{p.name}"' for p in result.rel_files.values()),
    ]
    script = (
        "#!/usr/bin/env bash\n"
        "# Import CellVQ runs into a NEW Neo4j 5 database (replaces its contents).\n"
        "# 1. stop the database (neo4j stop, or STOP DATABASE for a non-default one)\n"
        "# 2. run this script on the server\n"
        "# 3. start Neo4j (for a database other than 'neo4j': CREATE DATABASE `" + database + "`)\n"
        "# 4. run after_import.cypher (constraints and indexes), e.g. cypher-shell -f after_import.cypher\n"
        "set -euo pipefail\n"
        'HERE="$(cd "$(dirname "$0")" && pwd)"\n'
        + " \\\n  ".join(local)
        + "\n"
    )
    sh = out / "import.sh"
    sh.write_text(script)
    sh.chmod(0o755)
    after = [*q.NEO4J_CONSTRAINTS.values(), *q.NEO4J_INDEXES.values()]
    (out / "after_import.cypher").write_text(";\n".join(after) + ";\n")
    return result


def _write_csv(path: Path, header: list[str], frame: pd.DataFrame, kinds: dict[str, str]) -> None:
    body = frame.copy()
    for name, kind in kinds.items():
        if kind == INT64 and name in body:
            col = pd.to_numeric(body[name], errors="coerce")
            body[name] = col.map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif kind == DOUBLE and name in body:
            col = pd.to_numeric(body[name], errors="coerce")
            body[name] = col.map(lambda v: "" if pd.isna(v) else repr(float(v)))
    body.to_csv(path, index=False, header=header, quoting=csv.QUOTE_MINIMAL, lineterminator="\n", na_rep="")


def parse_header(header: Sequence[str]) -> list[dict[str, str | None]]:
    """Parse a bulk-import header into ``{"name", "type", "role", "space"}`` per column.

    ``role`` is ``ID``, ``START_ID``, ``END_ID``, ``LABEL``, ``TYPE`` or ``None`` (a property);
    ``type`` the graphdb type (STRING / INT64 / DOUBLE); ``space`` the ID space, e.g. ``Gene``.
    """
    out = []
    for field_ in header:
        name, _, spec = field_.partition(":")
        role = space = None
        kind = STRING
        if spec:
            head, _, rest = spec.partition("(")
            head = head.strip()
            if head.upper() in ("ID", "START_ID", "END_ID", "LABEL", "TYPE"):
                role = head.upper()
                space = rest.rstrip(")") or None
            else:
                base = head.lower().removesuffix("[]")
                if base not in _FROM_NEO4J:
                    raise SchemaError(f"bulk-import header field {field_!r} has an unsupported type {head!r}")
                kind = _FROM_NEO4J[base]
        out.append({"name": name or None, "type": kind, "role": role, "space": space})
    return out


def _read_file(path: Path) -> tuple[list[dict[str, str | None]], pd.DataFrame]:
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    cols = parse_header(header)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], header=0)
    frame = pd.DataFrame(index=raw.index)
    for spec, original in zip(cols, raw.columns):
        values = raw[original]
        name = spec["name"] or f":{spec['role']}"
        if spec["role"] in ("START_ID", "END_ID"):
            name = "startKey" if spec["role"] == "START_ID" else "endKey"
        if spec["type"] == STRING:
            frame[name] = values.where(values != "", None).astype(object)
        else:  # Python's float() parses the shortest repr exactly (pandas' fast parser may not)
            frame[name] = values.map(lambda v: np.nan if v == "" else float(v)).astype("float64")
    return cols, frame


def read_bulk_import(directory: str | Path) -> list[RunTables]:
    """Parse files written by :func:`write_bulk_import` back into one :class:`RunTables` per run."""
    d = Path(directory)
    nodes: dict[str, pd.DataFrame] = {}
    rels: dict[str, pd.DataFrame] = {}
    for path in sorted(d.glob("nodes_*.csv")):
        cols, frame = _read_file(path)
        label_col = [c for c in cols if c["role"] == "LABEL"]
        if not label_col or frame.empty:
            continue
        label = str(frame[":LABEL"].iloc[0])
        nodes[label] = frame.drop(columns=[":LABEL"])
    for path in sorted(d.glob("rels_*.csv")):
        cols, frame = _read_file(path)
        if frame.empty:
            continue
        rels[str(frame[":TYPE"].iloc[0])] = frame.drop(columns=[":TYPE"])
    if "Run" not in nodes:
        raise SchemaError(f"{d} holds no nodes_Run.csv; is it a directory written by write_bulk_import?")

    out = []
    for run in nodes["Run"].to_dict("records"):
        run_id = run["runId"]
        on_dataset = rels["ON_DATASET"]
        ds_id = str(on_dataset[on_dataset["runId"] == run_id]["endKey"].iloc[0])
        tables: dict[str, pd.DataFrame] = {}
        for label, spec in NODES.items():
            if spec.table:
                frame = _own_rows(label, nodes.get(label, pd.DataFrame(columns=spec.property_names)), run_id, ds_id)
                tables[spec.table] = table_from_graph(spec, frame, run_id, ds_id)
        cells = _own_rows("Cell", nodes.get("Cell", pd.DataFrame(columns=["datasetId"])), run_id, ds_id)
        extra = [c for c in cells.columns if c not in NODES["Cell"].property_names and cells[c].notna().any()]
        tables["cells"] = pd.concat([tables["cells"], cells[extra].reset_index(drop=True)], axis=1)
        for rtype, spec in RELATIONSHIPS.items():
            if spec.table:
                frame = rels.get(rtype, pd.DataFrame(columns=["startKey", "endKey", *spec.property_names]))
                tables[spec.table] = table_from_graph(spec, frame[frame["runId"] == run_id], run_id, ds_id)
        out.append(RunTables(run={k: run[k] for k in ("runId", "model", "checkpointHash", "parameters", "createdAt")},
                             **tables))
    return out


def _own_rows(label: str, frame: pd.DataFrame, run_id: str, dataset_id: str) -> pd.DataFrame:
    """One run's rows of a node file: per-run nodes by ``runId``, cells and the dataset by ``datasetId``,
    every gene (genes belong to no single run)."""
    if NODES[label].scope == RUN_SCOPE:
        return frame[frame["runId"] == run_id]
    if "datasetId" in frame:
        return frame[frame["datasetId"] == dataset_id]
    return frame


def check_database_name(database: str) -> str:
    """``database`` if it is a valid Neo4j 5 database name (it goes into a shell script and Cypher)."""
    if not _DATABASE_NAME.fullmatch(database):
        raise ValueError(
            f"invalid Neo4j database name {database!r}: use 3-63 ASCII letters, digits, dots or dashes, "
            "starting with a letter (e.g. 'cellvq')"
        )
    return database
