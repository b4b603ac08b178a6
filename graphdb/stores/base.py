"""The store interface and the named queries, written once for both backends.

A backend implements four primitives -- :meth:`GraphStore._read` (a named, parameterised read),
:meth:`GraphStore._write` (a small write in its own transaction), :meth:`GraphStore._read_user`
(a read-only user query) and :meth:`GraphStore.write_run` -- and inherits every named query, so
the embedded store and Neo4j answer with the same statements (:mod:`graphdb.queries`) and the
same Python post-processing.
"""

from __future__ import annotations

import difflib
import functools
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd

from .. import queries as q
from ..errors import AmbiguousStateError, NotFoundError, ReadOnlyViolation
from ..export import GRN_FORMATS, export_edges
from ..readonly import check_read_only
from ..schema import GRN_TYPES, RELATIONSHIPS, STATUS_COMPLETE, RunTables, run_labels

log = logging.getLogger("graphdb")

#: Callback ``on_step(step, rows)`` called after each write step (e.g. ``"MARKER_OF"``, 1234).
StepHook = Callable[[str, int], None]

DEFAULT_BATCH_SIZE = 10_000


def one_read(method):
    """Run every read of a named query in one read transaction of the backend (:meth:`GraphStore._reading`):
    the run, state and gene lookups and the answer see one snapshot, and on Neo4j they share one
    session and one transaction (one commit) instead of one each, and the whole query is retried on
    transient errors. Nested calls join the outer transaction."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self._reading(lambda: method(self, *args, **kwargs))

    return wrapper


@dataclass
class WriteReport:
    """What :meth:`GraphStore.write_run` wrote."""

    run_id: str
    method: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return int(sum(self.rows.values()))

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Subgraph:
    """A small graph answered by a named query: a node table and an edge table.

    ``edges`` has at least ``source``, ``target`` and ``type``; :meth:`to_networkx` turns it into a
    :class:`networkx.MultiDiGraph` (keyed by ``type``) with every column as an attribute.
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame
    node_key: str

    def to_networkx(self) -> nx.MultiDiGraph:
        g = nx.MultiDiGraph()
        for row in self.nodes.to_dict("records"):
            g.add_node(row[self.node_key], **{k: v for k, v in row.items() if k != self.node_key and _present(v)})
        for row in self.edges.to_dict("records"):
            attrs = {k: v for k, v in row.items() if k not in ("source", "target") and _present(v)}
            g.add_edge(row["source"], row["target"], key=row["type"], **attrs)
        return g


@dataclass
class StateComparison:
    """Two states side by side (:meth:`GraphStore.compare_states`).

    ``markers``: one row per gene that marks either state (positive score) -- ``rankA``, ``scoreA``,
    ``logFcA``, ``rankB``, ``scoreB``, ``logFcB``, ``deltaScore`` (A - B for genes in both lists; a
    gene missing from a list has no score there, so NaN otherwise) and ``group`` (``"A only"``,
    ``"shared"``, ``"B only"``), A's differences first: A only by scoreA, shared by deltaScore, B only
    last (B's strongest at the bottom).
    ``properties``: ``kind``, ``value``, ``attentionA``, ``attentionB``, ``deltaAttention``.
    ``bridge``: the ``BRIDGES`` edge between them (``score``, ``nCells``) or ``None``.
    """

    run_id: str
    state_a: str
    state_b: str
    markers: pd.DataFrame
    properties: pd.DataFrame
    bridge: dict[str, Any] | None


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


class GraphStore(ABC):
    """A CellVQ graph store. Use :func:`graphdb.open_store` to get one; close it (or use ``with``)."""

    #: ``"ladybug"`` or ``"neo4j"``.
    backend: str = ""

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE, read_only: bool = False) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.read_only = read_only

    # ---- backend primitives -------------------------------------------------------------------

    @abstractmethod
    def _read(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a named read statement from :mod:`graphdb.queries`."""

    def _reading(self, work: Callable[[], Any]) -> Any:
        """Call ``work`` (a named query) with its reads in one read transaction; a plain call by default."""
        return work()

    @abstractmethod
    def _write(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a named write statement in its own (retried, where supported) transaction."""

    @abstractmethod
    def _read_user(self, cypher: str, params: Mapping[str, Any]) -> pd.DataFrame:
        """Run a user query in a read-only transaction."""

    @abstractmethod
    def write_run(
        self,
        tables: RunTables,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        on_step: StepHook | None = None,
    ) -> WriteReport:
        """Write one run; see the concrete stores."""

    @abstractmethod
    def close(self) -> None:
        """Release the database."""

    @property
    @abstractmethod
    def target(self) -> str:
        """Where the store points (a path or a URI without credentials)."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    # ---- runs -----------------------------------------------------------------------------------

    @one_read
    def runs(self) -> pd.DataFrame:
        """All runs in the store, newest first, with their ``status`` (``writing`` / ``complete``)."""
        return self._read(q.RUNS)

    @one_read
    def resolve_run(self, run_id: str | None = None) -> str:
        """``run_id`` checked to be complete, or the latest complete run when ``None``."""
        if run_id is None:
            found = self._read(q.LATEST_COMPLETE_RUN)
            if found.empty:
                runs = self.runs()
                hint = ""
                if not runs.empty:
                    hint = (
                        f" Incomplete run(s) {sorted(runs['runId'])}: their write was interrupted; "
                        "write them again with store.write_run(tables) to complete them."
                    )
                raise NotFoundError(
                    f"the store at {self.target} holds no complete run; write one with store.write_run(tables).{hint}"
                )
            return str(found["runId"].iloc[0])
        status = self._read(q.RUN_STATUS, {"runId": run_id})
        if status.empty:
            known = sorted(self.runs()["runId"].astype(str))
            close = difflib.get_close_matches(run_id, known, n=3)
            raise NotFoundError(
                f"run {run_id!r} is not in the store at {self.target}"
                + (f"; did you mean {close}?" if close else "")
                + f" Known runs: {known[:10]}"
            )
        if status["status"].iloc[0] != STATUS_COMPLETE:
            raise NotFoundError(
                f"run {run_id!r} is incomplete (status {status['status'].iloc[0]!r}): its write was interrupted "
                "or is still in progress, so queries do not see it. Write it again with store.write_run(tables) "
                "to complete it."
            )
        return run_id

    @one_read
    def resolve_state(self, state: str, run_id: str | None = None) -> dict[str, Any]:
        """Find a state of a run by ``stateId`` or, failing that, by ``name``.

        Rule: an exact ``stateId`` match wins; otherwise the state whose ``name`` equals ``state``;
        several states with that name raise :class:`AmbiguousStateError` listing their stateIds.
        """
        run = self.resolve_run(run_id)
        found = self._read(q.STATE_LOOKUP, {"runId": run, "state": str(state)})
        by_id = found[found["stateId"] == state]
        if len(by_id) == 1:
            return {**by_id.iloc[0].to_dict(), "runId": run}
        if len(found) == 1:
            return {**found.iloc[0].to_dict(), "runId": run}
        if len(found) > 1:
            raise AmbiguousStateError(
                f"{state!r} is the name of {len(found)} states of run {run!r}: {sorted(found['stateId'])}; "
                "pass one of these stateIds instead"
            )
        states = self._read(q.STATES_OF_RUN, {"runId": run})
        names = sorted(set(states["stateId"].astype(str)) | set(states["name"].dropna().astype(str)))
        close = difflib.get_close_matches(str(state), names, n=3, cutoff=0.5)
        raise NotFoundError(
            f"no state {state!r} in run {run!r} (states are addressed by stateId or name)"
            + (f"; did you mean {close}?" if close else "")
            + f" The run has {len(states)} states, e.g. {names[:8]}"
        )

    @one_read
    def resolve_gene(self, gene: str) -> str:
        """The stored symbol of ``gene`` (a symbol or an Ensembl ID); clear error when unknown."""
        found = self._read(q.GENE_LOOKUP, {"gene": str(gene)})
        if not found.empty:
            exact = found[found["symbol"] == gene]
            return str((exact if not exact.empty else found)["symbol"].iloc[0])
        close = self._read(q.GENE_SUGGESTIONS, {"gene": str(gene), "prefix": str(gene)[:3]})
        options = list(close["symbol"]) if not close.empty else []
        ranked = difflib.get_close_matches(str(gene), options, n=5, cutoff=0.0) if options else []
        raise NotFoundError(
            f"gene {gene!r} is not in the store (symbols are case-sensitive; Ensembl IDs work too)"
            + (f"; did you mean {ranked}?" if ranked else "")
        )

    # ---- named queries --------------------------------------------------------------------------

    @one_read
    def markers(
        self, state: str, top: int = 20, *, run_id: str | None = None, include_negative: bool = False
    ) -> pd.DataFrame:
        """The ``top`` marker genes of a state, best first.

        Columns: ``symbol, ensemblId, rank, score, attention, logFc, stateName`` (the state's name,
        e.g. a subtype's generated one-line name). Only genes with a positive score (enriched in the
        state) unless ``include_negative=True`` (depleted genes too).
        """
        st = self.resolve_state(state, run_id)
        top = _positive_int(top, "top")
        params = {"runId": st["runId"], "stateUid": st["uid"], "top": top, "minScore": _min_score(include_negative)}
        return self._read(q.MARKERS, params)

    @one_read
    def states_for_gene(
        self, symbol: str, *, run_id: str | None = None, include_negative: bool = False
    ) -> pd.DataFrame:
        """The states a gene marks (positive score), highest score first.

        Columns: ``stateId, name, kind, nCells, rank, score, attention, logFc``. Empty when the gene
        is known but marks no state of the run; :class:`NotFoundError` when the gene is unknown.
        ``include_negative=True`` adds the states where the gene is depleted (negative score).
        """
        run = self.resolve_run(run_id)
        gene = self.resolve_gene(symbol)
        return self._read(q.STATES_FOR_GENE, {"runId": run, "symbol": gene, "minScore": _min_score(include_negative)})

    @one_read
    def subtype_graph(self, cell_type: str, *, run_id: str | None = None) -> Subgraph:
        """A cell type, its subtypes (``SUBTYPE_OF``, any depth) and the ``BRIDGES`` among them.

        ``nodes``: ``stateId, name, kind, nCells, description, depth`` (0 = the cell type itself);
        ``name`` / ``description`` are the states' (generated) one-line names and descriptions.
        ``edges``: ``source, target, type`` (``SUBTYPE_OF`` | ``BRIDGES``), ``score``, ``nCells``.
        """
        parent = self.resolve_state(cell_type, run_id)
        run = parent["runId"]
        subs = self._read(q.SUBTYPE_NODES, {"runId": run, "stateUid": parent["uid"]})
        top = pd.DataFrame(
            [{k: parent[k] for k in ("uid", "stateId", "name", "kind", "nCells", "description")} | {"depth": 0}]
        )
        nodes = pd.concat([top, subs], ignore_index=True) if not subs.empty else top
        uids = list(nodes["uid"])
        sub_edges = self._read(q.SUBTYPE_EDGES, {"runId": run, "uids": uids})
        sub_edges["type"] = "SUBTYPE_OF"
        bridges = self._read(q.BRIDGE_EDGES, {"runId": run, "uids": uids})
        bridges["type"] = "BRIDGES"
        edges = pd.concat([sub_edges, bridges], ignore_index=True)
        edges = edges.reindex(columns=["source", "target", "type", "score", "nCells"])
        nodes = nodes.drop(columns=["uid"]).reset_index(drop=True)
        return Subgraph(nodes=nodes, edges=edges, node_key="stateId")

    @one_read
    def gene_network(
        self,
        symbol: str,
        depth: int = 1,
        *,
        run_id: str | None = None,
        kinds: Sequence[str] = GRN_TYPES,
        min_weight: float = float("-inf"),
    ) -> Subgraph:
        """The gene network around ``symbol``: genes within ``depth`` steps and the edges among them.

        Walks ``REGULATES`` and/or ``CO_EXPRESSED`` edges of the run (either direction) whose
        ``weight >= min_weight``. ``nodes``: ``symbol, ensemblId``; ``edges``: ``source, target,
        type, weight`` and the ``REGULATES`` evidence (``rank, treeImportance, treeConsensus,
        attention, perturbationZ, perturbationLogFc, spearman, nEvidence``; missing on
        ``CO_EXPRESSED`` edges and where the run recorded none).
        """
        run = self.resolve_run(run_id)
        gene = self.resolve_gene(symbol)
        key = _kinds_key(kinds)
        if depth not in q.GENE_NETWORK_DEPTHS:
            raise ValueError(f"depth must be one of {list(q.GENE_NETWORK_DEPTHS)}, got {depth!r}")
        params = {"runId": run, "symbol": gene, "minWeight": float(min_weight)}
        found = self._read(q.GENE_NETWORK_NODES[(key, depth)], params)
        symbols = sorted(set(found["symbol"]) | {gene}) if not found.empty else [gene]
        frames = []
        for rtype in key:
            e = self._read(
                q.GENE_NETWORK_EDGES[rtype], {"runId": run, "symbols": symbols, "minWeight": float(min_weight)}
            )
            e["type"] = rtype
            frames.append(e)
        edges = pd.concat(frames, ignore_index=True).reindex(columns=["source", "target", "type", *_EDGE_PROPS])
        nodes = self._read(q.GENES_BY_SYMBOL, {"symbols": symbols}).sort_values("symbol", ignore_index=True)
        return Subgraph(nodes=nodes, edges=edges, node_key="symbol")

    @one_read
    def state_properties(self, state: str, *, run_id: str | None = None) -> pd.DataFrame:
        """Properties associated with a state, by attention.

        Columns: ``propertyId, kind, value, attention, nCells`` (cells of the state having the
        property), ``stateCells``, ``fraction`` (= nCells / stateCells).
        """
        st = self.resolve_state(state, run_id)
        params = {"runId": st["runId"], "stateUid": st["uid"]}
        out = self._read(q.STATE_PROPERTIES, params)
        if not out.empty and out["nCells"].isna().all():  # a run written before the aggregate was
            out = self._read(q.STATE_PROPERTIES_SCAN, params)
        if not out.empty:
            denom = pd.to_numeric(out["stateCells"], errors="coerce").where(lambda s: s > 0)
            out["fraction"] = pd.to_numeric(out["nCells"]) / denom
        else:
            out["fraction"] = pd.Series(dtype=float)
        return out

    @one_read
    def compare_states(
        self, a: str, b: str, *, run_id: str | None = None, top: int | None = 50, include_negative: bool = False
    ) -> StateComparison:
        """Markers and properties of two states of one run side by side (see :class:`StateComparison`).

        Markers are the genes with a positive score in A or B (``include_negative=True``: any score).
        """
        sa = self.resolve_state(a, run_id)
        sb = self.resolve_state(b, sa["runId"])
        run = sa["runId"]
        params = {"runId": run, "stateUidA": sa["uid"], "stateUidB": sb["uid"]}
        m = self._read(q.COMPARE_MARKERS, {**params, "minScore": _min_score(include_negative)})
        genes = _side_by_side(m, sa["uid"], sb["uid"])
        if top is not None:
            top = _positive_int(top, "top")
            keep = pd.concat([genes.head(top), genes.tail(top)]).drop_duplicates("symbol")
            genes = keep.sort_values("order", kind="stable")
        genes = genes.drop(columns="order").reset_index(drop=True)
        p = self._read(q.COMPARE_PROPERTIES, params)
        pa = p[p["stateUid"] == sa["uid"]].set_index(["kind", "value"])["attention"].rename("attentionA")
        pb = p[p["stateUid"] == sb["uid"]].set_index(["kind", "value"])["attention"].rename("attentionB")
        props = pd.concat([pa, pb], axis=1).reset_index()
        if props.empty:
            props = pd.DataFrame(columns=["kind", "value", "attentionA", "attentionB"])
        props["deltaAttention"] = props["attentionA"].fillna(0.0) - props["attentionB"].fillna(0.0)
        props = props.sort_values("deltaAttention", ascending=False, ignore_index=True)
        br = self._read(q.BRIDGE_BETWEEN, params)
        bridge = None if br.empty else {k: _py(v) for k, v in br.to_dict("records")[0].items()}
        return StateComparison(run, sa["stateId"], sb["stateId"], genes, props, bridge)

    def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one read-only Cypher statement; values go in ``params`` (``$name`` in the text).

        Write clauses are refused with :class:`~graphdb.errors.ReadOnlyViolation` before the
        statement is sent, and the statement runs in a read-only transaction.
        """
        check_read_only(cypher)
        if params is not None and not isinstance(params, Mapping):
            raise TypeError("params must be a dict of parameter name -> value")
        return self._read_user(cypher, dict(params or {}))

    @one_read
    def grn_edges(
        self, *, run_id: str | None = None, kinds: Sequence[str] = GRN_TYPES, min_weight: float = float("-inf")
    ) -> pd.DataFrame:
        """Every network edge of a run: ``source, target, kind, weight, sourceEnsemblId, targetEnsemblId``
        and the ``REGULATES`` evidence columns (see :meth:`gene_network`).

        Both kinds (``REGULATES``, ``CO_EXPRESSED``) by default, told apart by ``kind``."""
        run = self.resolve_run(run_id)
        frames = []
        for rtype in _kinds_key(kinds):
            e = self._read(q.GRN_EDGES[rtype], {"runId": run, "minWeight": float(min_weight)})
            e["kind"] = rtype
            frames.append(e)
        columns = ["source", "target", "kind", "weight", "sourceEnsemblId", "targetEnsemblId", *_EDGE_PROPS[1:]]
        return pd.concat(frames, ignore_index=True).reindex(columns=columns)

    def export_grn(
        self,
        path: str | Path,
        format: str | None = None,  # noqa: A002 - the issue's name
        *,
        run_id: str | None = None,
        kinds: Sequence[str] = GRN_TYPES,
        min_weight: float = float("-inf"),
    ) -> Path:
        """Write a run's gene regulatory network to ``path``.

        ``format``: ``graphml``, ``csv``, ``cytoscape`` (Cytoscape.js JSON) or ``sif``; inferred from
        the suffix (``.graphml``, ``.csv``, ``.cyjs``/``.json``, ``.sif``) when ``None``. ``kinds``
        picks ``REGULATES`` and/or ``CO_EXPRESSED`` edges (default both, each edge with its ``kind``;
        a gene pair may carry both). Returns the path written.
        """
        edges = self.grn_edges(run_id=run_id, kinds=kinds, min_weight=min_weight)
        if edges.empty:
            raise NotFoundError(
                f"run {self.resolve_run(run_id)!r} has no {' / '.join(_kinds_key(kinds))} edges"
                + (f" with weight >= {min_weight}" if min_weight != float("-inf") else "")
                + "; nothing to export. Try kinds=('REGULATES', 'CO_EXPRESSED') or a lower min_weight."
            )
        return export_edges(edges, path, format)

    # ---- bookkeeping ----------------------------------------------------------------------------

    @one_read
    def counts(self, run_id: str | None = None) -> dict[str, int]:
        """Node and relationship counts: of the whole store, or of one run's own facts."""
        out: dict[str, int] = {}
        if run_id is None:
            for label, stmt in q.COUNT_NODES.items():
                out[label] = int(self._read(stmt)["n"].iloc[0])
            for rtype, stmt in q.COUNT_RELS.items():
                out[rtype] = int(self._read(stmt)["n"].iloc[0])
        else:
            for label, stmt in q.COUNT_RUN_NODES.items():
                out[label] = int(self._read(stmt, {"runId": run_id})["n"].iloc[0])
            for rtype, stmt in q.COUNT_RUN_RELS.items():
                out[rtype] = int(self._read(stmt, {"runId": run_id})["n"].iloc[0])
        return out

    def delete_run(self, run_id: str) -> bool:
        """Remove exactly one run: its states, properties, relationships and its ``Run`` node.

        Genes, cells and datasets stay (other runs share them); other runs' facts are untouched.
        Returns ``False`` when the store holds no such run.
        """
        self._require_writable()
        known = not self._read(q.RUN_STATUS, {"runId": run_id}).empty
        self._delete_run_facts(run_id, self._delete_batch_size())
        self._write(q.RUN_DELETE, {"runId": run_id})
        self.checkpoint()
        return known

    def list_runs(self, *, complete_only: bool = False) -> pd.DataFrame:
        """Every run with its dataset and provenance, newest first: ``runId, status, datasetId,
        datasetName, nCells, model, checkpointHash, packageVersion, command, parameters, createdAt,
        completedAt``."""
        runs = self.runs()
        return runs[runs["status"] == STATUS_COMPLETE].reset_index(drop=True) if complete_only else runs

    @one_read
    def runs_with_marker(
        self, symbol: str, *, max_rank: int = 1_000_000, include_negative: bool = False
    ) -> pd.DataFrame:
        """Across every complete run: the states whose markers include ``symbol`` (rank <= ``max_rank``).

        Columns: ``runId, datasetId, datasetName, stateId, name, kind, rank, score``.
        """
        gene = self.resolve_gene(symbol)
        params = {"symbol": gene, "minScore": _min_score(include_negative), "maxRank": _positive_int(max_rank, "max_rank")}
        return self._read(q.RUNS_WITH_MARKER, params)

    @one_read
    def perturbation_effects(
        self, perturbation: str, top: int = 20, *, run_id: str | None = None, predicted: bool | None = None
    ) -> pd.DataFrame:
        """The ``top`` genes a perturbation shifts most (by ``|delta|``), observed and/or predicted.

        ``predicted``: ``None`` both (observed first), ``False`` measured only, ``True`` predicted only.
        Columns: ``perturbation, kind, target, symbol, delta, rank, predicted`` (bool), by rank within
        observed / predicted. An unknown perturbation raises :class:`NotFoundError` with suggestions.
        """
        run = self.resolve_run(run_id)
        params = {"runId": run, "perturbation": str(perturbation), "top": _positive_int(top, "top"),
                  "predicted": _predicted_flags(predicted)}
        out = self._read(q.PERTURBATION_EFFECTS, params)
        if out.empty:
            known = self._read(q.PERTURBATIONS_OF_RUN, {"runId": run})
            names = [str(n) for n in known["perturbation"]] if not known.empty else []
            if str(perturbation) not in names:
                close = difflib.get_close_matches(str(perturbation), names, n=3, cutoff=0.5)
                raise NotFoundError(
                    f"no perturbation {perturbation!r} in run {run!r}"
                    + (f"; did you mean {close}?" if close else "")
                    + f" The run has {len(names)} perturbations, e.g. {names[:8]}"
                )
        return _with_bool_predicted(out)

    @one_read
    def perturbations_shifting(
        self, symbol: str, *, run_id: str | None = None, max_rank: int = 20, predicted: bool | None = None
    ) -> pd.DataFrame:
        """The perturbations of a run that have ``symbol`` among their ``max_rank`` largest shifts.

        Columns: ``perturbation, kind, target, smiles, symbol, delta, rank, predicted`` (bool), by rank.
        ``predicted`` as in :meth:`perturbation_effects`; an unknown gene raises :class:`NotFoundError`.
        """
        run = self.resolve_run(run_id)
        gene = self.resolve_gene(symbol)
        params = {"runId": run, "symbol": gene, "maxRank": _positive_int(max_rank, "max_rank"),
                  "predicted": _predicted_flags(predicted)}
        return _with_bool_predicted(self._read(q.PERTURBATIONS_SHIFTING, params))

    @one_read
    def compare_runs(
        self, state: str, run_a: str, run_b: str, *, top: int | None = None, include_negative: bool = False
    ) -> pd.DataFrame:
        """The markers of one state (e.g. a cell type by name) in two runs side by side.

        Same columns and order as :meth:`compare_states` (``A`` = ``run_a``, ``B`` = ``run_b``): genes
        marking the state in one run only, then shared genes by ``deltaScore``.
        """
        frames = []
        for run in (run_a, run_b):
            st = self.resolve_state(state, run)
            params = {"runId": st["runId"], "stateUid": st["uid"], "top": 1 << 40,
                      "minScore": _min_score(include_negative)}
            frames.append(self._read(q.MARKERS, params).assign(stateUid=st["runId"]))
        genes = _side_by_side(pd.concat(frames, ignore_index=True), run_a, run_b)
        if top is not None:
            top = _positive_int(top, "top")
            genes = pd.concat([genes.head(top), genes.tail(top)]).drop_duplicates("symbol").sort_values("order")
        return genes.drop(columns="order").reset_index(drop=True)

    def incomplete_runs(self) -> pd.DataFrame:
        """Runs left ``writing``: a write in progress, or one that was killed (see :meth:`recover`)."""
        runs = self.runs()
        return runs[runs["status"] != STATUS_COMPLETE].reset_index(drop=True)

    def recover(self) -> list[str]:
        """Delete every run left ``writing`` (the remains of killed writes); returns their run ids.

        Only call it when no write is in progress (LadybugDB's file lock ensures that for the
        embedded store; on Neo4j make sure no ``cellvq run`` is writing into the database).
        """
        self._require_writable()
        removed = [str(r) for r in self.incomplete_runs()["runId"]]
        for run_id in removed:
            self.delete_run(run_id)
        self.checkpoint()
        return removed

    def checkpoint(self) -> None:  # noqa: B027 - a no-op by default, on purpose
        """Make committed writes durable in the database files (a no-op where commits already are)."""

    def _delete_batch_size(self) -> int:
        """Rows deleted per transaction when a run's old facts are removed."""
        return self.batch_size

    def _delete_run_facts(self, run_id: str, batch_size: int) -> int:
        """Delete a run's relationships and per-run nodes in batches; returns the number deleted."""
        total = 0
        for rtype in RELATIONSHIPS:
            total += self._delete_loop(q.DELETE_RUN_RELS[rtype], run_id, batch_size)
        for label in run_labels():
            total += self._delete_loop(q.DELETE_RUN_NODES[label], run_id, batch_size)
        return total

    def _delete_loop(self, statement: str, run_id: str, batch_size: int) -> int:
        total = 0
        while True:
            res = self._write(statement, {"runId": run_id, "batchSize": int(batch_size)})
            n = int(res["deleted"].iloc[0]) if not res.empty else 0
            total += n
            if n < batch_size:
                return total

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyViolation(
                f"the store at {self.target} was opened read-only; open it with open_store(target) to write"
            )

    def _begin_run(self, tables: RunTables, batch_size: int) -> tuple[int, str]:
        """Start (or restart) writing a run; returns the number of old facts deleted and this writer's
        token, which :data:`~graphdb.queries.RUN_COMPLETE` needs.

        Marks the ``Run`` node ``status: 'writing'`` (named queries stop seeing it) under a fresh writer
        token, deletes the run's previous facts in batches, and links the run to its dataset.
        """
        writer = uuid.uuid4().hex
        self._write(q.RUN_BEGIN, {**dict(tables.run), "writer": writer})
        deleted = self._delete_run_facts(tables.run_id, batch_size)
        ds = tables.dataset.iloc[0]
        self._write(
            q.RUN_DATASET,
            {
                "runId": tables.run_id,
                "datasetId": tables.dataset_id,
                "name": None if pd.isna(ds["name"]) else str(ds["name"]),
                "nCells": None if pd.isna(ds["nCells"]) else int(ds["nCells"]),
            },
        )
        return deleted, writer

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat(timespec="seconds")


#: Properties of the network edges, in declaration order (``weight`` first, then the REGULATES evidence).
_EDGE_PROPS: list[str] = list(dict.fromkeys(p for rtype in GRN_TYPES for p in RELATIONSHIPS[rtype].set_properties))


def _min_score(include_negative: bool) -> float:
    """``MARKER_OF.score`` must exceed this: 0 (enriched genes only), or -inf with ``include_negative``."""
    return float("-inf") if include_negative else 0.0


_GROUP_ORDER = {"A only": 0, "shared": 1, "B only": 2}


def _side_by_side(m: pd.DataFrame, uid_a: str, uid_b: str) -> pd.DataFrame:
    """Markers of A and B joined by gene, A's differences first.

    A gene missing from one side's marker list has no score there (not 0), so ``deltaScore`` is set for
    shared genes only. Order: A only (scoreA descending), shared (deltaScore descending), B only
    (scoreB ascending, so B's strongest markers come last).
    """
    cols = ["rank", "score", "logFc"]
    side_a = m[m["stateUid"] == uid_a].set_index("symbol")[cols].add_suffix("A")
    side_b = m[m["stateUid"] == uid_b].set_index("symbol")[cols].add_suffix("B")
    genes = side_a.join(side_b, how="outer")
    genes["group"] = "shared"
    genes.loc[genes["scoreB"].isna(), "group"] = "A only"
    genes.loc[genes["scoreA"].isna(), "group"] = "B only"
    genes["deltaScore"] = genes["scoreA"] - genes["scoreB"]  # NaN unless shared
    key = genes["deltaScore"].where(genes["group"] == "shared", genes["scoreA"].fillna(-genes["scoreB"]))
    genes = genes.assign(_g=genes["group"].map(_GROUP_ORDER), _k=-key).reset_index()
    genes = genes.sort_values(["_g", "_k", "symbol"], kind="stable").drop(columns=["_g", "_k"])
    genes["order"] = range(len(genes))
    return genes


def _predicted_flags(predicted: bool | None) -> list[int]:
    """``SHIFTS.predicted`` values asked for: both (``None``), observed (``False``) or predicted (``True``)."""
    if predicted is None:
        return [0, 1]
    if not isinstance(predicted, bool):
        raise ValueError(f"predicted must be None, True or False, got {predicted!r}")
    return [int(predicted)]


def _with_bool_predicted(frame: pd.DataFrame) -> pd.DataFrame:
    frame["predicted"] = frame["predicted"].astype(bool) if len(frame) else pd.Series(dtype=bool)
    return frame


def _kinds_key(kinds: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    norm = tuple(sorted({str(k).upper() for k in kinds}))
    if not norm or any(k not in GRN_TYPES for k in norm):
        raise ValueError(f"kinds must be a non-empty subset of {list(GRN_TYPES)}, got {list(kinds)!r}")
    return norm


def _positive_int(value: Any, name: str) -> int:
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if ivalue < 1 or ivalue != value:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return ivalue


def _py(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar (or a silent stand-in) counting written rows."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="row", unit_scale=True, leave=False)


def rows_per_step(node_frames: Mapping[str, pd.DataFrame], rel_frames: Mapping[str, pd.DataFrame]) -> int:
    return int(sum(len(f) for f in node_frames.values()) + sum(len(f) for f in rel_frames.values()))


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "GRN_FORMATS",
    "GraphStore",
    "StateComparison",
    "StepHook",
    "Subgraph",
    "WriteReport",
]
