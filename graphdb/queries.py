"""Every Cypher statement graphdb sends, as named constants.

Three groups:

* **Shared** (:data:`SHARED_STATEMENTS`) -- the named read queries and the small run-bookkeeping
  writes. The same text runs on Neo4j and on LadybugDB, so the embedded tests exercise it for real.
* **Neo4j** (:data:`NEO4J_STATEMENTS`) -- everything the Neo4j store sends: the shared statements,
  constraints and indexes, and the batched ``UNWIND ... MERGE`` / ``CREATE`` writes. Every one is checked
  against Neo4j's own Cypher grammar by ``tests/test_graphdb_cypher_lint.py``. All but
  :data:`SET_CELL_PROPERTIES` (``SET c += map``) also run on LadybugDB, where the tests use them
  to write a run through the Neo4j code path.
* **LadybugDB** (:data:`LADYBUG_DDL`, :data:`COPY`, ...) -- table DDL and bulk ``COPY``, which are
  LadybugDB dialect.

Values only ever travel as ``$parameters``. The text holds labels, relationship types, property
keys and two constants (the status ``'complete'`` and a variable-length bound), nothing from
user data. A variable-length upper bound cannot be a parameter in either database, so the gene
network query exists once per supported depth (:data:`GENE_NETWORK_NODES`).

A named query reads only *complete* runs: it starts by matching
``(r:Run {runId: $runId, status: 'complete'})``; an incomplete run yields no rows.
"""

from __future__ import annotations

import re

from .schema import CELL_PROPERTY_PATTERN, GRN_TYPES, NODES, RELATIONSHIPS, STATUS_COMPLETE, run_labels

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\|[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")


def fill_template(template: str, **names: str) -> str:
    """Put schema names (labels, types, property keys, a relationship alternation ``A|B`` or a numeric
    bound -- never values, which travel as ``$parameters``) into a statement template's ``<NAME>`` slots."""
    for key, value in names.items():
        if not _SCHEMA_NAME.fullmatch(value):
            raise ValueError(f"not a schema name: {value!r} (values must be passed as $parameters)")
        template = template.replace(f"<{key}>", value)
    if _PLACEHOLDER.search(template):
        raise ValueError(f"unfilled placeholder in statement: {template}")
    return template

# The status filter every named query starts with.
_COMPLETE_RUN = "MATCH (r:Run {runId: $runId, status: 'complete'})"
assert STATUS_COMPLETE in _COMPLETE_RUN

# ============================================================================================
# Shared named read queries (Neo4j and LadybugDB)

RUNS = """
MATCH (r:Run)
OPTIONAL MATCH (r)-[:ON_DATASET]->(d:Dataset)
RETURN r.runId AS runId, r.status AS status, r.model AS model, r.checkpointHash AS checkpointHash,
       r.parameters AS parameters, r.createdAt AS createdAt, r.completedAt AS completedAt,
       d.datasetId AS datasetId, d.name AS datasetName, d.nCells AS nCells, r.command AS command,
       r.packageVersion AS packageVersion
ORDER BY createdAt DESC, runId DESC
"""

LATEST_COMPLETE_RUN = """
MATCH (r:Run {status: 'complete'})
RETURN r.runId AS runId
ORDER BY r.createdAt DESC, r.completedAt DESC, r.runId DESC
LIMIT 1
"""

RUN_STATUS = """
MATCH (r:Run {runId: $runId})
RETURN r.status AS status
"""

STATE_LOOKUP = (
    _COMPLETE_RUN
    + """
MATCH (s:CellState {runId: $runId})
WHERE s.stateId = $state OR s.name = $state
RETURN s.uid AS uid, s.stateId AS stateId, s.name AS name, s.kind AS kind, s.nCells AS nCells,
       s.description AS description
"""
)

STATES_OF_RUN = """
MATCH (s:CellState {runId: $runId})
RETURN s.stateId AS stateId, s.name AS name, s.kind AS kind
ORDER BY stateId
"""

GENE_LOOKUP = """
MATCH (g:Gene)
WHERE g.symbol = $gene OR g.ensemblId = $gene
RETURN g.symbol AS symbol, g.ensemblId AS ensemblId
"""

GENE_SUGGESTIONS = """
MATCH (g:Gene)
WHERE toUpper(g.symbol) = toUpper($gene) OR g.symbol STARTS WITH $prefix
RETURN g.symbol AS symbol
ORDER BY symbol
LIMIT 10
"""

MARKERS = (
    _COMPLETE_RUN
    + """
MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {uid: $stateUid})
WHERE m.score > $minScore
RETURN g.symbol AS symbol, g.ensemblId AS ensemblId, m.rank AS rank, m.score AS score,
       m.attention AS attention, m.logFc AS logFc, s.name AS stateName
ORDER BY rank ASC, score DESC, symbol ASC
LIMIT $top
"""
)

STATES_FOR_GENE = (
    _COMPLETE_RUN
    + """
MATCH (g:Gene {symbol: $symbol})-[m:MARKER_OF {runId: $runId}]->(s:CellState)
WHERE m.score > $minScore
RETURN s.stateId AS stateId, s.name AS name, s.kind AS kind, s.nCells AS nCells,
       m.rank AS rank, m.score AS score, m.attention AS attention, m.logFc AS logFc
ORDER BY score DESC, rank ASC, stateId ASC
"""
)

SUBTYPE_NODES = (
    _COMPLETE_RUN
    + """
MATCH p = (sub:CellState {runId: $runId})-[:SUBTYPE_OF*1..8]->(parent:CellState {uid: $stateUid})
RETURN sub.uid AS uid, sub.stateId AS stateId, sub.name AS name, sub.kind AS kind,
       sub.nCells AS nCells, sub.description AS description, min(length(p)) AS depth
ORDER BY depth ASC, stateId ASC
"""
)

SUBTYPE_EDGES = (
    _COMPLETE_RUN
    + """
UNWIND $uids AS uid
MATCH (a:CellState {uid: uid})-[:SUBTYPE_OF]->(b:CellState)
WHERE b.uid IN $uids
RETURN a.stateId AS source, b.stateId AS target
ORDER BY source, target
"""
)

BRIDGE_EDGES = (
    _COMPLETE_RUN
    + """
UNWIND $uids AS uid
MATCH (a:CellState {uid: uid})-[e:BRIDGES]->(b:CellState)
WHERE b.uid IN $uids
RETURN a.stateId AS source, b.stateId AS target, e.score AS score, e.nCells AS nCells
ORDER BY score DESC, source, target
"""
)

#: Supported ``depth`` values of :meth:`GraphStore.gene_network`.
GENE_NETWORK_DEPTHS: tuple[int, ...] = (1, 2, 3, 4)
#: Relationship patterns :meth:`GraphStore.gene_network` may walk, keyed by the kinds walked.
_GRN_PATTERNS: dict[tuple[str, ...], str] = {
    ("CO_EXPRESSED", "REGULATES"): "REGULATES|CO_EXPRESSED",
    ("REGULATES",): "REGULATES",
    ("CO_EXPRESSED",): "CO_EXPRESSED",
}
_GENE_NETWORK_TEMPLATE = (
    _COMPLETE_RUN
    + """
MATCH p = (g:Gene {symbol: $symbol})-[:<PATTERN>*1..<DEPTH>]-(:Gene)
WITH p, $runId AS run, $minWeight AS minWeight
WHERE all(x IN relationships(p) WHERE x.runId = run AND x.weight >= minWeight)
UNWIND nodes(p) AS node
RETURN DISTINCT node.symbol AS symbol
"""
)
#: Gene neighbourhood within ``depth`` steps, one statement per (kinds, depth). The bound of a
#: variable-length pattern cannot be a parameter, so each depth is its own constant statement.
GENE_NETWORK_NODES: dict[tuple[tuple[str, ...], int], str] = {
    (kinds, depth): fill_template(_GENE_NETWORK_TEMPLATE, PATTERN=pattern, DEPTH=str(int(depth)))
    for kinds, pattern in _GRN_PATTERNS.items()
    for depth in GENE_NETWORK_DEPTHS
}

def _edge_columns(rtype: str) -> str:
    """``e.weight AS weight, ...``: every declared property of a network type but ``runId`` (for
    ``REGULATES`` its evidence), so a property added to the declaration comes back from the queries."""
    return ", ".join(fill_template("e.<P> AS <P>", P=p) for p in RELATIONSHIPS[rtype].set_properties)


#: Edges of one network type among a set of genes (``$symbols``), by relationship type.
GENE_NETWORK_EDGES: dict[str, str] = {
    rtype: fill_template(
        _COMPLETE_RUN
        + """
UNWIND $symbols AS symbol
MATCH (a:Gene {symbol: symbol})-[e:<TYPE> {runId: $runId}]->(b:Gene)
WHERE b.symbol IN $symbols AND e.weight >= $minWeight
RETURN a.symbol AS source, b.symbol AS target, """
        + _edge_columns(rtype)
        + """
ORDER BY source, target
""",
        TYPE=rtype,
    )
    for rtype in GRN_TYPES
}

GENES_BY_SYMBOL = """
UNWIND $symbols AS symbol
MATCH (g:Gene {symbol: symbol})
RETURN g.symbol AS symbol, g.ensemblId AS ensemblId
"""

#: Every edge of one network type of a run (GRN export), by relationship type.
GRN_EDGES: dict[str, str] = {
    rtype: fill_template(
        _COMPLETE_RUN
        + """
MATCH (a:Gene)-[e:<TYPE> {runId: $runId}]->(b:Gene)
WHERE e.weight >= $minWeight
RETURN a.symbol AS source, b.symbol AS target, a.ensemblId AS sourceEnsemblId,
       b.ensemblId AS targetEnsemblId, """
        + _edge_columns(rtype)
        + """
ORDER BY source, target
""",
        TYPE=rtype,
    )
    for rtype in GRN_TYPES
}

STATE_PROPERTIES = (
    _COMPLETE_RUN
    + """
MATCH (s:CellState {uid: $stateUid})-[a:ASSOCIATED_WITH]->(p:Property)
RETURN p.propertyId AS propertyId, p.kind AS kind, p.value AS value, a.attention AS attention,
       a.nCells AS nCells, s.nCells AS stateCells
ORDER BY attention DESC, propertyId ASC
"""
)

#: :data:`STATE_PROPERTIES` counting the cells at query time, for a run written before
#: ``ASSOCIATED_WITH.nCells`` was (whose aggregate is null).
STATE_PROPERTIES_SCAN = (
    _COMPLETE_RUN
    + """
MATCH (s:CellState {uid: $stateUid})-[a:ASSOCIATED_WITH]->(p:Property)
OPTIONAL MATCH (s)<-[:IN_STATE]-(c:Cell)-[:HAS_PROPERTY]->(p)
RETURN p.propertyId AS propertyId, p.kind AS kind, p.value AS value, a.attention AS attention,
       count(DISTINCT c) AS nCells, s.nCells AS stateCells
ORDER BY attention DESC, propertyId ASC
"""
)

COMPARE_MARKERS = (
    _COMPLETE_RUN
    + """
UNWIND [$stateUidA, $stateUidB] AS uid
MATCH (s:CellState {uid: uid})<-[m:MARKER_OF]-(g:Gene)
WHERE m.score > $minScore
RETURN g.symbol AS symbol, s.uid AS stateUid, m.rank AS rank, m.score AS score, m.logFc AS logFc
"""
)

COMPARE_PROPERTIES = (
    _COMPLETE_RUN
    + """
UNWIND [$stateUidA, $stateUidB] AS uid
MATCH (s:CellState {uid: uid})-[a:ASSOCIATED_WITH]->(p:Property)
RETURN p.kind AS kind, p.value AS value, s.uid AS stateUid, a.attention AS attention
"""
)

BRIDGE_BETWEEN = (
    _COMPLETE_RUN
    + """
MATCH (a:CellState {uid: $stateUidA})-[e:BRIDGES]-(b:CellState {uid: $stateUidB})
RETURN e.score AS score, e.nCells AS nCells
"""
)

#: Complete runs with a state whose markers include a gene (``$symbol``, ``$minScore``, ``$maxRank``).
RUNS_WITH_MARKER = """
MATCH (g:Gene {symbol: $symbol})-[m:MARKER_OF]->(s:CellState)
WHERE m.score > $minScore AND m.rank <= $maxRank
MATCH (r:Run {status: 'complete'})-[:ON_DATASET]->(d:Dataset)
WHERE r.runId = m.runId
RETURN r.runId AS runId, d.datasetId AS datasetId, d.name AS datasetName, s.stateId AS stateId,
       s.name AS name, s.kind AS kind, m.rank AS rank, m.score AS score
ORDER BY runId ASC, score DESC, stateId ASC
"""

#: One state's markers as the run report prints them for ``cellvq cypher`` / ``store.query``
#: (``$runId``, ``$state`` = stateId, ``$top``); one line, so that it pastes into a shell.
REPORT_STATE_MARKERS = (
    "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {runId: $runId, stateId: $state}) "
    "RETURN g.symbol AS symbol, m.rank AS rank, m.score AS score, m.attention AS attention, m.logFc AS logFc "
    "ORDER BY rank LIMIT $top"
)

#: The top markers of every state of one kind, as the run report prints it (``$runId``, ``$kind``, ``$top``).
REPORT_MARKERS_BY_KIND = (
    "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {runId: $runId, kind: $kind}) "
    "WHERE m.rank <= $top "
    "RETURN s.name AS state, m.rank AS rank, g.symbol AS symbol, m.score AS score "
    "ORDER BY state, rank"
)

#: The shifts of one perturbation of a run (``$perturbation`` = perturbationId), ``$top`` ranks of each of
#: the observed / predicted sets asked for (``$predicted``: a list of 0 and/or 1), largest |delta| first.
PERTURBATION_EFFECTS = (
    _COMPLETE_RUN
    + """
MATCH (p:Perturbation {runId: $runId, perturbationId: $perturbation})-[e:SHIFTS {runId: $runId}]->(g:Gene)
WHERE e.rank <= $top AND e.predicted IN $predicted
RETURN p.perturbationId AS perturbation, p.kind AS kind, p.target AS target, g.symbol AS symbol,
       e.delta AS delta, e.rank AS rank, e.predicted AS predicted
ORDER BY predicted ASC, rank ASC, symbol ASC
"""
)

#: The perturbations of a run that shift a gene (``$symbol``) within their ``$maxRank`` largest shifts.
PERTURBATIONS_SHIFTING = (
    _COMPLETE_RUN
    + """
MATCH (p:Perturbation {runId: $runId})-[e:SHIFTS {runId: $runId}]->(g:Gene {symbol: $symbol})
WHERE e.rank <= $maxRank AND e.predicted IN $predicted
RETURN p.perturbationId AS perturbation, p.kind AS kind, p.target AS target, p.smiles AS smiles,
       g.symbol AS symbol, e.delta AS delta, e.rank AS rank, e.predicted AS predicted
ORDER BY rank ASC, predicted ASC, perturbation ASC
"""
)

#: Every perturbation of a run (for suggestions when one is not found).
PERTURBATIONS_OF_RUN = """
MATCH (p:Perturbation {runId: $runId})
RETURN p.perturbationId AS perturbation, p.kind AS kind
ORDER BY perturbation
"""

#: ``count`` of every node label / relationship type in the whole store.
COUNT_NODES: dict[str, str] = {label: fill_template("MATCH (n:<LABEL>) RETURN count(n) AS n", LABEL=label) for label in NODES}
COUNT_RELS: dict[str, str] = {
    rtype: fill_template("MATCH ()-[e:<TYPE>]->() RETURN count(e) AS n", TYPE=rtype) for rtype in RELATIONSHIPS
}
#: ``count`` of a run's own facts: its per-run nodes and its relationships.
COUNT_RUN_NODES: dict[str, str] = {
    label: fill_template("MATCH (n:<LABEL> {runId: $runId}) RETURN count(n) AS n", LABEL=label)
    for label in run_labels()
}
COUNT_RUN_RELS: dict[str, str] = {
    rtype: fill_template("MATCH ()-[e:<TYPE> {runId: $runId}]->() RETURN count(e) AS n", TYPE=rtype)
    for rtype in RELATIONSHIPS
}

# ============================================================================================
# Shared run bookkeeping (writes; Neo4j and LadybugDB)

RUN_BEGIN = """
MERGE (r:Run {runId: $runId})
SET r.model = $model, r.checkpointHash = $checkpointHash, r.parameters = $parameters,
    r.createdAt = $createdAt, r.status = 'writing', r.completedAt = null, r.command = $command,
    r.packageVersion = $packageVersion, r.writer = $writer
"""

RUN_DATASET = """
MERGE (d:Dataset {datasetId: $datasetId})
SET d.name = $name, d.nCells = $nCells
WITH d
MATCH (r:Run {runId: $runId})
MERGE (r)-[:ON_DATASET {runId: $runId}]->(d)
"""

#: Only the writer that began the run last completes it: a writer superseded by a second one writing
#: the same run (which deleted and rewrites its facts) must not show the run complete before that ends.
RUN_COMPLETE = """
MATCH (r:Run {runId: $runId})
WHERE r.writer = $writer
SET r.status = 'complete', r.completedAt = $completedAt
"""

RUN_DELETE = """
MATCH (r:Run {runId: $runId})
DETACH DELETE r
"""

#: Delete up to ``$batchSize`` of a run's relationships of one type; returns ``deleted``.
DELETE_RUN_RELS: dict[str, str] = {
    rtype: fill_template(
        """
MATCH ()-[e:<TYPE> {runId: $runId}]->()
WITH e LIMIT $batchSize
DELETE e
RETURN count(*) AS deleted
""",
        TYPE=rtype,
    )
    for rtype in RELATIONSHIPS
}

#: Delete up to ``$batchSize`` of a run's per-run nodes of one label; returns ``deleted``.
DELETE_RUN_NODES: dict[str, str] = {
    label: fill_template(
        """
MATCH (n:<LABEL> {runId: $runId})
WITH n LIMIT $batchSize
DETACH DELETE n
RETURN count(*) AS deleted
""",
        LABEL=label,
    )
    for label in run_labels()
}

# ============================================================================================
# Neo4j writes: constraints, indexes, batched UNWIND ... MERGE

NEO4J_CONSTRAINTS: dict[str, str] = {
    label + "_key": fill_template("CREATE CONSTRAINT cellvq_<NAME>_key IF NOT EXISTS FOR (n:<LABEL>) REQUIRE n.<KEY> IS UNIQUE",
                          NAME=label.lower(), LABEL=label, KEY=spec.key)
    for label, spec in NODES.items()
}

NEO4J_INDEXES: dict[str, str] = {
    "CellState_runId": "CREATE INDEX cellvq_cellstate_run IF NOT EXISTS FOR (n:CellState) ON (n.runId)",
    "CellState_stateId": "CREATE INDEX cellvq_cellstate_stateid IF NOT EXISTS FOR (n:CellState) ON (n.stateId)",
    "CellState_name": "CREATE INDEX cellvq_cellstate_name IF NOT EXISTS FOR (n:CellState) ON (n.name)",
    "Property_runId": "CREATE INDEX cellvq_property_run IF NOT EXISTS FOR (n:Property) ON (n.runId)",
    "Perturbation_runId": "CREATE INDEX cellvq_perturbation_run IF NOT EXISTS FOR (n:Perturbation) ON (n.runId)",
    "Gene_ensemblId": "CREATE INDEX cellvq_gene_ensembl IF NOT EXISTS FOR (n:Gene) ON (n.ensemblId)",
    "Run_status": "CREATE INDEX cellvq_run_status IF NOT EXISTS FOR (n:Run) ON (n.status)",
    **{
        rtype + "_runId": fill_template("CREATE INDEX cellvq_<NAME>_run IF NOT EXISTS FOR ()-[e:<TYPE>]-() ON (e.runId)",
                                NAME=rtype.lower(), TYPE=rtype)
        for rtype in RELATIONSHIPS
    },
}

#: Extra ``cells`` columns as ``Cell`` properties (Neo4j only: LadybugDB has no ``SET n += map``).
SET_CELL_PROPERTIES = """
UNWIND $rows AS row
MATCH (c:Cell {uid: row.uid})
SET c += row.props
"""


def _merge_node(label: str, skip: frozenset[str] = frozenset()) -> str:
    """``UNWIND $rows ... MERGE`` of one label's nodes on their key, every declared property set.

    A ``keep_known`` label keeps a stored value where the row has none (``coalesce``)."""
    spec = NODES[label]
    head = fill_template("\nUNWIND $rows AS row\nMERGE (n:<LABEL> {<KEY>: row.<KEY>})\n", LABEL=label, KEY=spec.key)
    template = "n.<P> = coalesce(row.<P>, n.<P>)" if spec.keep_known else "n.<P> = row.<P>"
    sets = [fill_template(template, P=name) for name in spec.property_names if name != spec.key and name not in skip]
    return head + ("SET " + ", ".join(sets) + "\n" if sets else "")


#: The head of every batched relationship write on Neo4j: take the run's write lock (a no-op ``SET``
#: locks the ``Run`` node until the batch commits; Neo4j reads the node again once it holds the lock),
#: then go on only if this writer still owns the run. A second writer's :data:`RUN_BEGIN` waits for the
#: batch in flight, and the first writer's later batches write nothing, so the relationships can be
#: ``CREATE``d: they are new after the run's delete.
_RUN_WRITER_LOCK = """
MATCH (r:Run {runId: $runId})
SET r.writer = r.writer
WITH r
WHERE r.writer = $writer
"""
#: The same check without the lock, for LadybugDB: it runs one write transaction at a time (so needs no
#: lock), and reading a string property it has just set to itself in the same statement returns garbage
#: there (ladybug 0.22).
_RUN_WRITER_CHECK = """
MATCH (r:Run {runId: $runId})
WHERE r.writer = $writer
"""


def _create_rel(rtype: str, skip: frozenset[str] = frozenset(), *, lock: bool = True) -> str:
    """Under :data:`_RUN_WRITER_LOCK` (``lock``) or :data:`_RUN_WRITER_CHECK`, ``UNWIND $rows ... MATCH``
    both ends by key and ``CREATE`` the relationship with ``runId`` (and the type's ``merge_on``
    properties), then set the rest."""
    spec = RELATIONSHIPS[rtype]
    start, end = NODES[spec.start], NODES[spec.end]
    names = {"START": spec.start, "SKEY": start.key, "END": spec.end, "EKEY": end.key, "TYPE": rtype}
    head = ((_RUN_WRITER_LOCK if lock else _RUN_WRITER_CHECK) + "UNWIND $rows AS row\nMATCH (a:<START> {<SKEY>: row.startKey})\n"
            "MATCH (b:<END> {<EKEY>: row.endKey})\n")
    key = "".join(fill_template(", <P>: row.<P>", P=p) for p in spec.merge_on)
    props = [p for p in spec.set_properties if p not in skip]
    if not props:
        return fill_template(head + "CREATE (a)-[:<TYPE> {runId: row.runId" + key + "}]->(b)\n", **names)
    create = fill_template(head + "CREATE (a)-[e:<TYPE> {runId: row.runId" + key + "}]->(b)\n", **names)
    return create + "SET " + ", ".join(fill_template("e.<P> = row.<P>", P=p) for p in props) + "\n"


def merge_without(name: str, skip: frozenset[str]) -> str:
    """LadybugDB's :data:`MERGE_NODES` / :data:`LADYBUG_CREATE_RELS` statement of ``name`` that leaves
    the properties ``skip`` unset. LadybugDB types a parameter column that is null in every row as
    STRING, so its UNWIND path leaves such columns out of the batch; unset equals null, because a run's
    facts are new after :data:`RUN_BEGIN`'s delete (and a gene's known values are kept anyway)."""
    return _merge_node(name, skip) if name in NODES else _create_rel(name, skip, lock=False)


#: Batched node writes, by label, in writing order (unscoped labels, i.e. genes, first): every label
#: with a source table except the run's ``Dataset`` (written by :data:`RUN_DATASET`). ``Cell`` rows
#: carry the declared properties only.
MERGE_NODES: dict[str, str] = {
    label: _merge_node(label)
    for label, spec in sorted(NODES.items(), key=lambda item: item[1].scope is not None)
    if spec.table and spec.table != "dataset"
}
MERGE_GENES = MERGE_NODES["Gene"]
MERGE_CELLS = MERGE_NODES["Cell"]
MERGE_STATES = MERGE_NODES["CellState"]
MERGE_PROPERTIES = MERGE_NODES["Property"]
MERGE_PERTURBATIONS = MERGE_NODES["Perturbation"]

#: Batched relationship writes, by type (``$runId``, ``$writer``, ``$rows``; ``row.startKey`` /
#: ``row.endKey`` are node keys). ``CREATE``, not ``MERGE``: every relationship of a run is new once
#: :data:`RUN_BEGIN` has deleted its old facts, and :data:`_RUN_WRITER_GUARD` keeps a superseded writer
#: from adding any. A batch retried by the driver was rolled back first, so it creates nothing twice.
CREATE_RELS: dict[str, str] = {rtype: _create_rel(rtype) for rtype, spec in RELATIONSHIPS.items() if spec.table}
#: :data:`CREATE_RELS` as LadybugDB's UNWIND path sends them (the writer check without the lock).
LADYBUG_CREATE_RELS: dict[str, str] = {
    rtype: _create_rel(rtype, lock=False) for rtype, spec in RELATIONSHIPS.items() if spec.table
}

#: Verifies the server answers (used when a Neo4j store opens).
PING = "RETURN 1 AS ok"

# ============================================================================================
# LadybugDB dialect: DDL, COPY, lookups used by the COPY path


def _columns(properties: tuple[tuple[str, str], ...]) -> list[str]:
    return [fill_template("<NAME> <KIND>", NAME=name, KIND=kind) for name, kind in properties]


def _ladybug_node_ddl(label: str) -> str:
    spec = NODES[label]
    template = "CREATE NODE TABLE IF NOT EXISTS <LABEL>(" + ", ".join(_columns(spec.typed)) + ", PRIMARY KEY(<KEY>))"
    return fill_template(template, LABEL=label, KEY=spec.key)


def _ladybug_rel_ddl(rtype: str) -> str:
    spec = RELATIONSHIPS[rtype]
    cols = "".join(", " + c for c in _columns(spec.typed))
    return fill_template("CREATE REL TABLE IF NOT EXISTS <TYPE>(FROM <START> TO <END>" + cols + ")",
                 TYPE=rtype, START=spec.start, END=spec.end)


#: Node and relationship tables, created idempotently when an embedded store opens.
LADYBUG_DDL: dict[str, str] = {
    **{label: _ladybug_node_ddl(label) for label in NODES},
    **{rtype: _ladybug_rel_ddl(rtype) for rtype in RELATIONSHIPS},
}

#: Bulk load of one table from a DataFrame passed as ``$frame`` (columns in table order).
COPY: dict[str, str] = {name: fill_template("COPY <TABLE> FROM $frame", TABLE=name) for name in (*NODES, *RELATIONSHIPS)}

#: The stored columns of every table (``name, type``), by table.
LADYBUG_TABLE_COLUMNS: dict[str, str] = {
    name: fill_template("CALL table_info('<TABLE>') RETURN name, type", TABLE=name) for name in (*NODES, *RELATIONSHIPS)
}
LADYBUG_CELL_COLUMNS = LADYBUG_TABLE_COLUMNS["Cell"]

#: A declared property that a store created by an older graphdb lacks, added to its table. New
#: properties are declared last, so the added (appended) column keeps the declared column order.
LADYBUG_ADD_COLUMN: dict[tuple[str, str], str] = {
    (name, prop): fill_template("ALTER TABLE <TABLE> ADD IF NOT EXISTS <NAME> <KIND>", TABLE=name, NAME=prop, KIND=kind)
    for name, spec in (*NODES.items(), *RELATIONSHIPS.items())
    for prop, kind in spec.typed
}

#: Adds a ``Cell`` property column (``<NAME>``, ``<TYPE>``): see :func:`cell_column_statement`.
LADYBUG_ADD_CELL_COLUMN = "ALTER TABLE Cell ADD IF NOT EXISTS `<NAME>` <TYPE>"

#: UNWIND path on LadybugDB: set one extra ``Cell`` column (name checked by CELL_PROPERTY_PATTERN);
#: stands in for the Neo4j-only :data:`SET_CELL_PROPERTIES`.
LADYBUG_SET_CELL_COLUMN = "UNWIND $rows AS row MATCH (c:Cell {uid: row.uid}) SET c.`<NAME>` = row.value"


def cell_column_statement(template: str, name: str, kind: str = "STRING") -> str:
    """Fill a ``Cell``-column template. Property names cannot be parameters, so ``name`` must match
    :data:`graphdb.schema.CELL_PROPERTY_PATTERN` and ``kind`` be STRING / INT64 / DOUBLE."""
    if not CELL_PROPERTY_PATTERN.match(name) or kind not in ("STRING", "INT64", "DOUBLE"):
        raise ValueError(f"invalid Cell column {name!r} of type {kind!r}")
    return fill_template(template, NAME=name, TYPE=kind)


LADYBUG_EXISTING_CELLS = """
MATCH (c:Cell {datasetId: $datasetId})
RETURN c.uid AS uid
"""

LADYBUG_EXISTING_GENES = """
MATCH (g:Gene)
RETURN g.symbol AS symbol, g.ensemblId AS ensemblId
"""

# ============================================================================================
# Inventories (what the linter checks and what the stores may send)

def _named(table_name: str, table: dict[str, str]) -> dict[str, str]:
    """``{"TABLE[key]": statement}``: the names under which a table's statements are listed and linted."""
    return {f"{table_name}[{k}]": q for k, q in table.items()}


SHARED_STATEMENTS: dict[str, str] = {
    "RUNS": RUNS,
    "LATEST_COMPLETE_RUN": LATEST_COMPLETE_RUN,
    "RUN_STATUS": RUN_STATUS,
    "STATE_LOOKUP": STATE_LOOKUP,
    "STATES_OF_RUN": STATES_OF_RUN,
    "GENE_LOOKUP": GENE_LOOKUP,
    "GENE_SUGGESTIONS": GENE_SUGGESTIONS,
    "MARKERS": MARKERS,
    "STATES_FOR_GENE": STATES_FOR_GENE,
    "SUBTYPE_NODES": SUBTYPE_NODES,
    "SUBTYPE_EDGES": SUBTYPE_EDGES,
    "BRIDGE_EDGES": BRIDGE_EDGES,
    **{f"GENE_NETWORK_NODES[{'|'.join(k)},{d}]": q for (k, d), q in GENE_NETWORK_NODES.items()},
    **_named("GENE_NETWORK_EDGES", GENE_NETWORK_EDGES),
    "GENES_BY_SYMBOL": GENES_BY_SYMBOL,
    **_named("GRN_EDGES", GRN_EDGES),
    "STATE_PROPERTIES": STATE_PROPERTIES,
    "STATE_PROPERTIES_SCAN": STATE_PROPERTIES_SCAN,
    "COMPARE_MARKERS": COMPARE_MARKERS,
    "COMPARE_PROPERTIES": COMPARE_PROPERTIES,
    "BRIDGE_BETWEEN": BRIDGE_BETWEEN,
    "RUNS_WITH_MARKER": RUNS_WITH_MARKER,
    "REPORT_STATE_MARKERS": REPORT_STATE_MARKERS,
    "REPORT_MARKERS_BY_KIND": REPORT_MARKERS_BY_KIND,
    "PERTURBATION_EFFECTS": PERTURBATION_EFFECTS,
    "PERTURBATIONS_SHIFTING": PERTURBATIONS_SHIFTING,
    "PERTURBATIONS_OF_RUN": PERTURBATIONS_OF_RUN,
    **_named("COUNT_NODES", COUNT_NODES),
    **_named("COUNT_RELS", COUNT_RELS),
    **_named("COUNT_RUN_NODES", COUNT_RUN_NODES),
    **_named("COUNT_RUN_RELS", COUNT_RUN_RELS),
    "RUN_BEGIN": RUN_BEGIN,
    "RUN_DATASET": RUN_DATASET,
    "RUN_COMPLETE": RUN_COMPLETE,
    "RUN_DELETE": RUN_DELETE,
    **_named("DELETE_RUN_RELS", DELETE_RUN_RELS),
    **_named("DELETE_RUN_NODES", DELETE_RUN_NODES),
    "MERGE_GENES": MERGE_GENES,
    "PING": PING,
}

#: Every statement the Neo4j store sends (user queries from :meth:`GraphStore.query` aside).
NEO4J_STATEMENTS: dict[str, str] = {
    **SHARED_STATEMENTS,
    **_named("NEO4J_CONSTRAINTS", NEO4J_CONSTRAINTS),
    **_named("NEO4J_INDEXES", NEO4J_INDEXES),
    "MERGE_CELLS": MERGE_CELLS,
    "SET_CELL_PROPERTIES": SET_CELL_PROPERTIES,
    "MERGE_STATES": MERGE_STATES,
    "MERGE_PROPERTIES": MERGE_PROPERTIES,
    "MERGE_PERTURBATIONS": MERGE_PERTURBATIONS,
    **_named("CREATE_RELS", CREATE_RELS),
}

#: Neo4j statements LadybugDB cannot parse (everything else in NEO4J_STATEMENTS runs on both,
#: constraints and indexes aside, which the embedded store replaces by :data:`LADYBUG_DDL`).
NEO4J_ONLY: frozenset[str] = frozenset(
    {"SET_CELL_PROPERTIES", *_named("NEO4J_CONSTRAINTS", NEO4J_CONSTRAINTS),
     *_named("NEO4J_INDEXES", NEO4J_INDEXES)}
)
