"""The production store: Neo4j 5 through the official ``neo4j`` Python driver.

* Credentials come from the arguments or ``NEO4J_USER`` / ``NEO4J_PASSWORD`` (user defaults to
  ``neo4j``); they are passed to the driver and never logged or put into a message. A URI of the
  form ``bolt://user:pass@host`` is accepted, its credentials are moved into ``auth``.
* Opening verifies connectivity, then creates the constraints and indexes idempotently
  (``CREATE ... IF NOT EXISTS``).
* Runs are written online in batches (:mod:`.unwind_writer`): ``UNWIND $rows ... MERGE``, one
  managed transaction (``session.execute_write``, retried by the driver on transient errors)
  per ``batch_size`` rows. For large runs write bulk-import files instead
  (:func:`graphdb.bulk_import.write_bulk_import`).
* A named query runs all its reads (run, state, gene lookups and the answer) in one
  ``execute_read`` transaction (:func:`graphdb.stores.base.one_read`): one session and one commit
  per question, one snapshot, the whole question retried on transient errors. Its sessions ask the
  server for no notifications (optional evidence columns a run did not record would each draw
  "property key does not exist"). User queries run in a READ-access-mode session, after the
  client-side write-clause check, with the server's notifications on.

Every statement sent is a constant in :mod:`graphdb.queries` (``NEO4J_STATEMENTS``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd

from .. import queries as q
from ..errors import (
    AuthError,
    GraphDBError,
    QueryError,
    ReadOnlyViolation,
    SchemaError,
    StoreConnectionError,
    redact_uri,
)
from ..schema import RunTables
from .base import DEFAULT_BATCH_SIZE, StepHook, WriteReport
from .unwind_writer import UnwindWriter, cell_property_rows

log = logging.getLogger("graphdb")

NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


class Neo4jStore(UnwindWriter):
    """A :class:`GraphStore` on a Neo4j 5 server.

    Parameters
    ----------
    uri
        ``bolt://host:7687`` or ``neo4j://host:7687`` (``+s`` / ``+ssc`` variants for TLS).
    user, password
        Credentials; default to ``NEO4J_USER`` (else ``neo4j``) and ``NEO4J_PASSWORD``. With no
        password at all the driver connects without authentication.
    database
        Database name (default: the server's default database); also ``NEO4J_DATABASE``.
    batch_size
        Rows per write transaction.
    read_only
        Skip creating constraints and refuse writes.
    connection_timeout, max_transaction_retry_time
        Seconds, passed to the driver.
    """

    backend = "neo4j"

    def __init__(
        self,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        read_only: bool = False,
        connection_timeout: float = 15.0,
        max_transaction_retry_time: float = 30.0,
    ) -> None:
        super().__init__(batch_size=batch_size, read_only=read_only)
        import neo4j

        self._neo4j = neo4j
        parts = urlsplit(uri)
        if parts.scheme not in NEO4J_SCHEMES:
            raise ValueError(
                f"{redact_uri(uri)!r} is not a Neo4j URI; use one of {', '.join(s + '://' for s in NEO4J_SCHEMES)}"
            )
        if parts.username or parts.password:
            user = user or unquote(parts.username or "")
            password = password or unquote(parts.password or "")
        self._uri = redact_uri(uri)
        user = user or os.environ.get("NEO4J_USER") or "neo4j"
        if password is None:
            password = os.environ.get("NEO4J_PASSWORD")
        self.database = database or os.environ.get("NEO4J_DATABASE") or None
        auth = (user, password) if password is not None else None
        log.info("opening Neo4j store at %s (database %s)", self._uri, self.database or "<default>")
        self._driver = neo4j.GraphDatabase.driver(
            self._uri,
            auth=auth,
            connection_timeout=connection_timeout,
            max_transaction_retry_time=max_transaction_retry_time,
        )
        del auth, password
        self._closed = False
        self._local = threading.local()  # .tx: the read transaction of the named query running in this thread
        try:
            self._driver.verify_connectivity()
            if not read_only:
                for stmt in (*q.NEO4J_CONSTRAINTS.values(), *q.NEO4J_INDEXES.values()):
                    self._write(stmt)
        except Exception as exc:
            self.close()
            raise self._translate(exc) from None

    # ---- primitives -----------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return self._uri

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._driver.close()

    def _session(self, read: bool, named: bool = False):
        """A session; ``named``: for the project's own statements, whose optional columns (evidence a run
        did not record) would otherwise draw a "property key does not exist" notification per query."""
        if self._closed:
            raise GraphDBError(f"the store at {self.target} is closed; open it again with open_store()")
        mode = self._neo4j.READ_ACCESS if read else self._neo4j.WRITE_ACCESS
        quiet = {"notifications_min_severity": "OFF"} if named else {}
        return self._driver.session(database=self.database, default_access_mode=mode, **quiet)

    @staticmethod
    def _frame(tx, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
        result = tx.run(statement, dict(params))
        keys = list(result.keys())
        rows = result.data()
        return pd.DataFrame(rows, columns=keys)

    @staticmethod
    def _values(tx, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
        """A named statement's rows (scalars and lists only, so no conversion of graph types is needed)."""
        result = tx.run(statement, dict(params))
        keys = list(result.keys())
        return pd.DataFrame(result.values(), columns=keys)

    def _reading(self, work: Callable[[], Any]) -> Any:
        if getattr(self._local, "tx", None) is not None:
            return work()  # a named query inside another: same transaction

        def in_transaction(tx):
            self._local.tx = tx
            try:
                return work()
            finally:
                self._local.tx = None

        try:
            with self._session(read=True, named=True) as session:
                return session.execute_read(in_transaction)
        except GraphDBError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _read(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        tx = getattr(self._local, "tx", None)
        if tx is not None:  # driver errors go to execute_read, which retries transient ones and rolls back
            return self._values(tx, statement, params or {})
        try:
            with self._session(read=True, named=True) as session:
                return session.execute_read(self._values, statement, params or {})
        except GraphDBError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _write(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        self._require_writable()
        try:
            with self._session(read=False) as session:
                return session.execute_write(self._frame, statement, params or {})
        except GraphDBError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _read_user(self, cypher: str, params: Mapping[str, Any]) -> pd.DataFrame:
        try:
            with self._session(read=True) as session:
                return session.execute_read(self._frame, cypher, params)
        except GraphDBError:
            raise
        except Exception as exc:
            raise self._translate(exc, user_query=True) from exc

    def _translate(self, exc: BaseException, user_query: bool = False) -> BaseException:
        """Map driver errors onto graphdb errors whose messages carry no credentials."""
        ex = self._neo4j.exceptions
        if isinstance(exc, ex.AuthError):
            return AuthError(
                f"Neo4j at {self._uri} refused the credentials (wrong user name or password). Pass "
                "user=/password= to open_store() or set NEO4J_USER / NEO4J_PASSWORD."
            )
        if isinstance(exc, ex.ServiceUnavailable | ex.SessionExpired):
            reason = " ".join(str(exc).split())[:400] or type(exc).__name__
            return StoreConnectionError(
                f"cannot reach Neo4j at {self._uri}: {reason}. Check that the server is running and that the "
                "URI, port (Bolt default 7687) and TLS scheme are right; set NEO4J_URI to point elsewhere."
            )
        if isinstance(exc, ex.Neo4jError):
            code = getattr(exc, "code", "") or ""
            message = getattr(exc, "message", None) or str(exc)
            if "AccessMode" in code or "ForbiddenOnReadOnlyDatabase" in code or "WriteOnReadOnlyAccess" in code:
                return ReadOnlyViolation(f"store.query() is read-only and Neo4j refused a write: {message}")
            if user_query and isinstance(exc, ex.ClientError):
                return QueryError(f"Neo4j rejected the query ({code}): {message}")
            return GraphDBError(f"Neo4j error {code}: {message}")
        if isinstance(exc, ex.DriverError):
            return GraphDBError(f"Neo4j driver error talking to {self._uri}: {exc}")
        return exc

    # ---- writing --------------------------------------------------------------------------------

    def write_run(
        self,
        tables: RunTables,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        on_step: StepHook | None = None,
    ) -> WriteReport:
        """Write one run online in ``UNWIND`` batches (see :mod:`graphdb.stores.unwind_writer`).

        Each batch is a managed transaction: the driver retries it on transient errors (a deadlock
        with another writer, a lost leader) for up to ``max_transaction_retry_time`` seconds. When a
        write stops part-way (the server went away, a non-transient error), the error says that the
        run was left incomplete -- invisible to queries -- and that writing it again completes it.
        """
        self._require_writable()
        size = int(batch_size or self.batch_size)
        try:
            return self._write_unwind(tables, batch_size=size, progress=progress, on_step=on_step)
        except (AuthError, ReadOnlyViolation, SchemaError):
            raise
        except GraphDBError as exc:
            raise type(exc)(f"{exc} {interrupted_write_hint(tables.run_id)}") from exc

    def _set_cell_properties(self, frame: pd.DataFrame, types: Mapping[str, str], batch_size: int) -> int:
        rows = cell_property_rows(frame, types)
        for start in range(0, len(rows), batch_size):
            self._write(q.SET_CELL_PROPERTIES, {"rows": rows[start : start + batch_size]})
        return len(rows)


def interrupted_write_hint(run_id: str) -> str:
    """What a failed online write leaves behind and how to finish it (appended to the error)."""
    return (
        f"Writing run {run_id!r} stopped part-way: the run is left incomplete (status 'writing'), so queries "
        "do not see it. Once Neo4j answers again, write the run again (store.write_run(tables), or rerun "
        "`cellvq run`) to complete it, or remove its remains with store.recover()."
    )
