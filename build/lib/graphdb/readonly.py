"""Refuse write clauses in user queries before they reach a database.

:meth:`GraphStore.query` is read-only. Both stores also enforce it in the database (Neo4j: a
READ-access-mode transaction; LadybugDB: ``BEGIN TRANSACTION READ ONLY``); this check comes
first so the user gets one clear message naming the offending clause, whatever the backend.

The scan is token-based, not a substring search: string literals, back-quoted names, comments,
``$parameters``, property keys (``n.set``), labels (``:Create``) and map keys (``{delete: 1}``)
are skipped, so ``MATCH (g:Gene {symbol: 'SET'}) RETURN g.merge`` is allowed.
"""

from __future__ import annotations

import re

from .errors import ReadOnlyViolation

__all__ = ["WRITE_KEYWORDS", "check_read_only", "cypher_keywords"]

#: Clauses that change data, schema, configuration or the transaction, in either dialect.
WRITE_KEYWORDS: frozenset[str] = frozenset(
    {
        "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "FOREACH",
        "COPY", "ALTER", "INSTALL", "LOAD", "ATTACH", "IMPORT", "EXPORT", "CHECKPOINT",
        "BEGIN", "COMMIT", "ROLLBACK", "GRANT", "REVOKE", "DENY", "TERMINATE", "START", "STOP",
        "RENAME", "ENABLE",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^'\\]|\\.)*(?:'|\Z)|"(?:[^"\\]|\\.)*(?:"|\Z))
  | (?P<quoted>`(?:[^`]|``)*(?:`|\Z))
  | (?P<param>\$[A-Za-z_][A-Za-z0-9_]*|\$`[^`]*`|\$\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(query: str) -> list[tuple[str, str]]:
    out = []
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup or "punct"
        if kind in ("ws", "line_comment", "block_comment"):
            continue
        out.append((kind, match.group()))
    return out


def cypher_keywords(query: str) -> list[str]:
    """Upper-cased bare words of ``query`` that can be clause keywords.

    Words inside strings, comments or back-quotes, parameters, property keys after ``.``,
    labels/types after ``:``, map keys before ``:`` and aliases after ``AS`` are left out
    (variable names stay in).
    """
    toks = _tokens(query)
    words = []
    for i, (kind, text) in enumerate(toks):
        if kind != "word":
            continue
        prev = toks[i - 1][1] if i > 0 else ""
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if prev in (".", ":", "|", "&", "!") or nxt == ":" or (i > 0 and prev.upper() == "AS"):
            continue
        words.append(text.upper())
    return words


def check_read_only(query: str) -> None:
    """Raise :class:`ReadOnlyViolation` if ``query`` writes or holds several statements."""
    if not isinstance(query, str) or not query.strip():
        raise ReadOnlyViolation("the query is empty; pass one read-only Cypher statement")
    toks = _tokens(query)
    semicolons = [i for i, (kind, text) in enumerate(toks) if kind == "punct" and text == ";"]
    if semicolons and (len(semicolons) > 1 or semicolons[0] != len(toks) - 1):
        raise ReadOnlyViolation(
            "store.query() runs exactly one statement; split the text at ';' and call query() once per statement"
        )
    words = cypher_keywords(query)
    found = [w for w in words if w in WRITE_KEYWORDS]
    # ``CALL ... IN TRANSACTIONS`` writes in batches (Neo4j).
    if "CALL" in words and "TRANSACTIONS" in words:
        found.append("CALL ... IN TRANSACTIONS")
    if found:
        clauses = ", ".join(dict.fromkeys(found))
        raise ReadOnlyViolation(
            f"store.query() is read-only, but the query contains the write clause(s) {clauses}. "
            "Use store.write_run(...) to write a run, or run maintenance statements with the database's "
            "own tools (Neo4j Browser / cypher-shell, the LadybugDB CLI)."
        )
