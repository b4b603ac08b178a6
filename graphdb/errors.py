"""Exceptions raised by :mod:`graphdb`.

Every error names the problem *and* the fix. They all derive from :class:`GraphDBError`, so callers
can catch one type. None of them ever carries a password: connection errors are built from the
scheme, host and port of the target only (see :func:`redact_uri`).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AmbiguousStateError",
    "AuthError",
    "CorruptStoreError",
    "GraphDBError",
    "NotFoundError",
    "QueryError",
    "ReadOnlyViolation",
    "RecoveryPendingError",
    "SchemaError",
    "StoreConnectionError",
    "StoreLockedError",
    "redact_command",
    "redact_target",
    "redact_uri",
]


class GraphDBError(Exception):
    """Base class of every error raised by graphdb."""


class SchemaError(GraphDBError, ValueError):
    """A :class:`graphdb.RunTables` table is missing a column, has a wrong type or a dangling key."""


class StoreLockedError(GraphDBError):
    """The embedded database file is held read-write by another process."""


class CorruptStoreError(GraphDBError):
    """The embedded database path holds something that is not a readable LadybugDB database."""


class RecoveryPendingError(GraphDBError):
    """The embedded database needs checkpoint recovery (a writer was killed) and cannot be recovered now."""


class NotFoundError(GraphDBError, LookupError):
    """A run, state or gene asked for does not exist (or belongs to an incomplete run)."""


class AmbiguousStateError(NotFoundError):
    """A state reference matches the names of several states; address it by its ``stateId``."""


class ReadOnlyViolation(GraphDBError, PermissionError):
    """A user query tried to write; :meth:`GraphStore.query` is read-only."""


class QueryError(GraphDBError):
    """The database rejected a user query (syntax error, unknown function, ...)."""


class AuthError(GraphDBError, PermissionError):
    """Neo4j refused the credentials."""


class StoreConnectionError(GraphDBError, ConnectionError):
    """The Neo4j server could not be reached."""


def redact_uri(uri: str) -> str:
    """Return ``uri`` without any ``user:password@`` part, safe to show in messages and logs.

    >>> redact_uri("neo4j://alice:secret@db.example.org:7687/x")
    'neo4j://db.example.org:7687/x'
    """
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<unparseable URI>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_target(target: object) -> str:
    """A store target safe to print or write (reports, logs, provenance): URIs lose their credentials,
    paths are returned unchanged.

    >>> redact_target("bolt://neo4j:pw@localhost:7687"), redact_target("runs/db")
    ('bolt://localhost:7687', 'runs/db')
    """
    text = str(target)
    return redact_uri(text) if "://" in text else text


def redact_command(args: list[str]) -> list[str]:
    """Command-line arguments with the credentials of every URI (``--db bolt://u:p@h``, ``--db=...``) removed."""
    out = []
    for arg in args:
        if "://" in arg and "@" in arg:
            key, sep, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
            out.append(key + sep + redact_target(value))
        else:
            out.append(arg)
    return out
