"""graphdb: persist CellVQ runs to Neo4j or embedded LadybugDB; named Cypher queries; GRN export.

graphdb takes plain tables (:class:`RunTables`, pandas DataFrames or lists of records) and knows
no model. The CLI maps CellVQ-Graph's outputs onto these tables.

Quick start
-----------
>>> import graphdb
>>> with graphdb.open_store("runs/graph.lbug") as store:      # doctest: +SKIP
...     store.write_run(tables)
...     store.markers("B", top=10)
...     store.export_grn("grn.graphml")

Stores
------
``open_store(target)`` picks the backend from the target:

* a filesystem path  -> :class:`~graphdb.stores.ladybug_store.LadybugStore`, an embedded
  LadybugDB file (``ladybug`` on PyPI, the maintained fork of Kùzu); zero setup. An existing
  directory means ``<dir>/cellvq_graph.lbug``.
* ``bolt://`` / ``neo4j://`` (and ``+s`` / ``+ssc``) -> :class:`~graphdb.stores.neo4j_store.Neo4jStore`
  through the official driver; credentials from ``user=``/``password=`` or ``NEO4J_USER`` /
  ``NEO4J_PASSWORD``, never logged.

Both answer the same named queries with the same Cypher text (:mod:`graphdb.queries`).

Schema
------
Declared once in :mod:`graphdb.schema` (``NODES``, ``RELATIONSHIPS``), from which the tables, the
write statements, the LadybugDB DDL and the bulk-import headers are derived.
Nodes (labels PascalCase, properties camelCase; key first):

==============  =============================================================================
``Dataset``     datasetId, name, nCells
``Run``         runId, model, checkpointHash, parameters (JSON text), createdAt, completedAt,
                status (``writing`` | ``complete``)
``Cell``        uid (= datasetId:cellId), cellId, datasetId, + any extra ``cells`` columns
``Gene``        symbol, ensemblId -- shared by all runs
``CellState``   uid (= runId:stateId), runId, stateId, kind (code | cluster | subtype | cellType),
                name, nCells, description
``Property``    uid (= runId:propertyId), runId, propertyId, kind, value
``Perturbation`` uid (= runId:perturbationId), runId, perturbationId, kind (knockout | activation |
                drug | stimulus), smiles (drugs), target (genetic: the target genes, ``+``-joined)
==============  =============================================================================

Relationships (all carry ``runId``, the run that produced the fact):

=====================================  ==================================================
``(Run)-[:ON_DATASET]->(Dataset)``
``(Cell)-[:IN_STATE]->(CellState)``
``(Cell)-[:HAS_PROPERTY]->(Property)``
``(Gene)-[:MARKER_OF]->(CellState)``    score, rank (1 = best), attention, logFc
``(Gene)-[:CO_EXPRESSED]->(Gene)``      weight
``(Gene)-[:REGULATES]->(Gene)``         weight (regulator -> target); evidence: rank, treeImportance,
                                        treeConsensus, attention, perturbationZ, perturbationLogFc,
                                        spearman, nEvidence
``(CellState)-[:SUBTYPE_OF]->(CellState)``  subtype -> parent
``(CellState)-[:BRIDGES]->(CellState)`` score, nCells (cells intermediate between the two)
``(CellState)-[:ASSOCIATED_WITH]->(Property)``  attention, nCells (cells of the state having the
                                        property: an aggregate written with the run)
``(Cell)-[:EXPRESSES]->(Gene)``         attention (optional: a cell's top-k genes)
``(Perturbation)-[:SHIFTS]->(Gene)``   delta, rank (1 = largest |delta|), predicted (0 observed,
                                        1 predicted; merged on runId *and* predicted, so both stay)
=====================================  ==================================================

Runs and visibility
-------------------
A write first sets the ``Run`` node's ``status`` to ``writing`` and deletes the run's previous
facts, writes everything, makes it durable (LadybugDB: ``CHECKPOINT`` and a count check) and sets
``status`` to ``complete`` last. Every named query matches ``(:Run {runId: $runId, status:
'complete'})`` first, so a run is visible only once complete; a write that was killed leaves an
invisible ``writing`` run (``incomplete_runs()``; ``recover()`` or ``delete_run()`` remove it; writing
the run again completes it). Writing the same run twice leaves the same counts. Named queries default
to the latest complete run (by ``createdAt``); pass ``run_id=`` to choose. See docs/CONTRACTS.md 5.

Addressing states
-----------------
A state argument is matched against the run's ``stateId`` first, then against ``name``: with
``stateId="cellType:B"`` and ``name="B"`` both ``"cellType:B"`` and ``"B"`` work. A name shared by
several states raises :class:`AmbiguousStateError` listing their stateIds. Genes are addressed
by symbol (case-sensitive) or Ensembl ID.

Named queries
-------------
``markers(state, top=20)``, ``states_for_gene(symbol)``, ``subtype_graph(cell_type)``,
``gene_network(symbol, depth=1)``, ``state_properties(state)``, ``compare_states(a, b)``,
``query(cypher, params)`` (read-only), ``export_grn(path, format)`` (GraphML, CSV, Cytoscape
JSON, SIF); also ``runs()``, ``counts()``, ``delete_run()``.

Writes
------
* LadybugDB: bulk ``COPY`` from the DataFrames in one transaction (``method="copy"``), or the
  Neo4j ``UNWIND`` path (``method="unwind"``).
* Neo4j: ``UNWIND $rows ... MERGE`` in batches of ``batch_size`` rows, one managed (retried)
  transaction each; constraints and indexes created idempotently. For large runs,
  :func:`write_bulk_import` writes ``neo4j-admin database import full`` CSV files and the command.

Layout
------
``schema.py`` (names, types, :class:`RunTables`), ``queries.py`` (every Cypher statement),
``readonly.py`` (write-clause check for user queries), ``stores/`` (``base.py``,
``ladybug_store.py``, ``neo4j_store.py``, ``unwind_writer.py``), ``bulk_import.py``,
``export.py``, ``errors.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .bulk_import import BulkImport, read_bulk_import, write_bulk_import
from .errors import (
    AmbiguousStateError,
    AuthError,
    CorruptStoreError,
    GraphDBError,
    NotFoundError,
    QueryError,
    ReadOnlyViolation,
    RecoveryPendingError,
    SchemaError,
    StoreConnectionError,
    StoreLockedError,
)
from .export import read_grn
from .schema import NODES, PERTURBATION_KINDS, RELATIONSHIPS, STATE_KINDS, RunTables
from .stores.base import GraphStore, StateComparison, Subgraph, WriteReport

__all__ = [
    "NODES",
    "PERTURBATION_KINDS",
    "RELATIONSHIPS",
    "STATE_KINDS",
    "AmbiguousStateError",
    "AuthError",
    "BulkImport",
    "CorruptStoreError",
    "GraphDBError",
    "GraphStore",
    "NotFoundError",
    "QueryError",
    "ReadOnlyViolation",
    "RecoveryPendingError",
    "RunTables",
    "SchemaError",
    "StateComparison",
    "StoreConnectionError",
    "StoreLockedError",
    "Subgraph",
    "WriteReport",
    "open_store",
    "read_bulk_import",
    "read_grn",
    "write_bulk_import",
]

_URI_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")


def open_store(
    target: str | os.PathLike[str],
    *,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    read_only: bool = False,
    batch_size: int = 10_000,
    **options: Any,
) -> GraphStore:
    """Open a graph store: a path -> embedded LadybugDB, a ``bolt://``/``neo4j://`` URI -> Neo4j.

    ``user``/``password`` (default ``NEO4J_USER``/``NEO4J_PASSWORD``) and ``database`` apply to
    Neo4j only. ``read_only`` opens without write access. Further keyword ``options`` go to the
    store class (LadybugDB: ``buffer_pool_size``, ``max_threads``; Neo4j: ``connection_timeout``,
    ``max_transaction_retry_time``).

    Raises :class:`StoreLockedError`, :class:`CorruptStoreError`, :class:`AuthError` or
    :class:`StoreConnectionError` with a message naming the fix.
    """
    text = os.fspath(target)
    if isinstance(text, str) and text.lower().startswith(_URI_SCHEMES):
        from .stores.neo4j_store import Neo4jStore

        return Neo4jStore(
            text, user=user, password=password, database=database, read_only=read_only,
            batch_size=batch_size, **options,
        )
    if isinstance(text, str) and "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"unsupported store URI scheme {scheme!r}; use a filesystem path (embedded LadybugDB) or "
            "bolt:// / neo4j:// (Neo4j)"
        )
    if user is not None or password is not None or database is not None:
        raise ValueError("user/password/database apply to Neo4j URIs only, not to an embedded database path")
    from .stores.ladybug_store import LadybugStore

    return LadybugStore(Path(text), read_only=read_only, batch_size=batch_size, **options)
