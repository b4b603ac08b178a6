"""Accept only read statements in user queries, before they reach a database.

:meth:`GraphStore.query` is read-only. Both stores also enforce it in the database (Neo4j: a
READ-access-mode transaction; LadybugDB: ``BEGIN TRANSACTION READ ONLY``); this check comes
first so the user gets one clear message, whatever the backend.

It is an **allow-list**, not a list of write keywords: LadybugDB and Neo4j keep growing statements
that change things without writing data (``UPDATE httpfs`` downloads an extension, ``UNINSTALL``,
``CALL threads=1`` sets an option, ``CALL dbms.security...``), so a statement is accepted only when

* it starts with a read clause (:data:`READ_STARTS`: ``MATCH``, ``OPTIONAL MATCH``, ``WITH``,
  ``RETURN``, ``UNWIND``, ``CALL``),
* every bare word is a read keyword (:data:`READ_KEYWORDS`), a function name (a word before
  ``(`` that is no clause of either dialect), or a variable the statement binds (in a pattern,
  after ``AS`` / ``YIELD``, before ``=`` or ``IN``) -- never a name in :data:`CLAUSE_WORDS`,
* every ``CALL`` opens a subquery (``CALL {``, checked by the same rules) or calls a procedure of
  :data:`READ_PROCEDURES`, and nothing runs ``IN TRANSACTIONS``.

The scan is token-based, not a substring search: string literals, back-quoted names, comments,
``$parameters``, property keys (``n.set``), labels (``:Create``) and map keys (``{delete: 1}``)
are skipped, so ``MATCH (g:Gene {symbol: 'SET'}) RETURN g.merge`` is allowed.
"""

from __future__ import annotations

import re

from .errors import ReadOnlyViolation

__all__ = ["CLAUSE_WORDS", "READ_KEYWORDS", "READ_PROCEDURES", "READ_STARTS", "WRITE_KEYWORDS",
           "check_read_only", "cypher_keywords"]

#: Clauses that change data, schema, configuration or the transaction, in either dialect (named in errors).
WRITE_KEYWORDS: frozenset[str] = frozenset(
    {
        "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "FOREACH",
        "COPY", "ALTER", "INSTALL", "UNINSTALL", "UPDATE", "LOAD", "ATTACH", "USE", "IMPORT", "EXPORT",
        "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK", "GRANT", "REVOKE", "DENY", "TERMINATE", "START", "STOP",
        "RENAME", "ENABLE", "INSERT", "FINISH", "SHOW", "PROFILE", "EXPLAIN", "TRANSACTIONS", "FORCE",
    }
)

#: Words a statement may start with.
READ_STARTS: frozenset[str] = frozenset({"MATCH", "OPTIONAL", "WITH", "RETURN", "UNWIND", "CALL"})

#: Read clauses and expression keywords (either dialect).
READ_KEYWORDS: frozenset[str] = frozenset(
    {
        "MATCH", "OPTIONAL", "WITH", "RETURN", "UNWIND", "CALL", "YIELD", "WHERE", "ORDER", "BY", "ASC",
        "ASCENDING", "DESC", "DESCENDING", "SKIP", "LIMIT", "DISTINCT", "AS", "UNION", "ALL", "AND", "OR", "XOR",
        "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "CASE", "WHEN", "THEN", "ELSE", "END", "STARTS", "ENDS",
        "CONTAINS", "ANY", "NONE", "SINGLE", "EXISTS", "COUNT", "COLLECT", "SHORTEST", "NAN", "INFINITY",
    }
)

#: Every clause word of either dialect: never accepted as a variable or function name.
CLAUSE_WORDS: frozenset[str] = WRITE_KEYWORDS | {
    "MATCH", "OPTIONAL", "WITH", "RETURN", "UNWIND", "CALL", "YIELD", "WHERE", "ORDER", "SKIP", "LIMIT", "UNION",
}

#: Procedures ``CALL`` may name (lower case): schema and metadata reads of LadybugDB and Neo4j.
READ_PROCEDURES: frozenset[str] = frozenset(
    {
        # LadybugDB
        "table_info", "show_tables", "show_connection", "show_functions", "show_indexes", "db_version",
        "current_setting", "show_attached_databases",
        # Neo4j
        "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization",
        "db.schema.nodetypeproperties", "db.schema.reltypeproperties", "dbms.components",
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
    skipped = set(cypher_keywords_positions(toks))
    return [text.upper() for i, (kind, text) in enumerate(toks) if kind == "word" and i not in skipped]


def _bound_names(toks: list[tuple[str, str]]) -> set[str]:
    """Variables a statement binds: first word of a pattern (``(n``, ``[r``), words after ``AS`` /
    ``YIELD`` (and the comma list after ``YIELD``), words before ``=`` or ``IN``."""
    bound: set[str] = set()
    in_yield = False
    for i, (kind, text) in enumerate(toks):
        prev = toks[i - 1][1].upper() if i > 0 else ""
        nxt = toks[i + 1][1].upper() if i + 1 < len(toks) else ""
        if kind != "word":
            in_yield = in_yield and text == ","
            continue
        up = text.upper()
        if prev in ("(", "[", "AS", "YIELD") or nxt in ("=", "IN") or (in_yield and prev == ","):
            bound.add(up)
        in_yield = up == "YIELD" or (in_yield and prev == ",")
    return bound - CLAUSE_WORDS


def _procedure(toks: list[tuple[str, str]], i: int) -> str | None:
    """The dotted name called by the ``CALL`` at ``toks[i]``; ``None`` for a subquery ``CALL {``."""
    j, parts = i + 1, []
    if j < len(toks) and toks[j][1] == "{":
        return None
    while j < len(toks) and toks[j][0] in ("word", "quoted"):
        parts.append(toks[j][1].strip("`"))
        if j + 1 < len(toks) and toks[j + 1][1] == ".":
            j += 2
            continue
        break
    return ".".join(parts).lower()


def _refuse(what: str) -> None:
    raise ReadOnlyViolation(
        f"store.query() / `cellvq cypher` are read-only: they accept read statements only, and {what}. Read with MATCH, OPTIONAL "
        "MATCH, WITH, UNWIND, RETURN (and CALL of the schema procedures); write runs with store.write_run(...) "
        "or `cellvq run`, and run maintenance statements with the database's own tools."
    )


def check_read_only(query: str) -> None:
    """Raise :class:`ReadOnlyViolation` unless ``query`` is one read statement (see the module docs)."""
    if not isinstance(query, str) or not query.strip():
        raise ReadOnlyViolation("the query is empty; pass one read-only Cypher statement")
    toks = _tokens(query)
    semicolons = [i for i, (kind, text) in enumerate(toks) if kind == "punct" and text == ";"]
    if semicolons and (len(semicolons) > 1 or semicolons[0] != len(toks) - 1):
        raise ReadOnlyViolation(
            "store.query() runs exactly one statement; split the text at ';' and call query() once per statement"
        )
    words = cypher_keywords(query)
    writes = [w for w in words if w in WRITE_KEYWORDS]
    if writes:
        _refuse(f"this one contains {', '.join(dict.fromkeys(writes))}")
    if not toks or toks[0][0] != "word" or toks[0][1].upper() not in READ_STARTS:
        _refuse(f"this one starts with {toks[0][1]!r}" if toks else "this one is empty")
    bound = _bound_names(toks)
    skipped = set(cypher_keywords_positions(toks))
    called = False  # after a procedure call its output columns may be used without YIELD (LadybugDB)
    for i, (kind, text) in enumerate(toks):
        if kind != "word" or i in skipped:
            continue
        up = text.upper()
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if up == "CALL":
            name = _procedure(toks, i)
            if name is not None and name not in READ_PROCEDURES:
                _refuse(f"CALL {name} is not one of the read procedures {sorted(READ_PROCEDURES)}")
            called = called or name is not None
        elif up in READ_KEYWORDS or up in bound or (called and up not in CLAUSE_WORDS):
            continue
        elif nxt in ("(", ".") and up not in CLAUSE_WORDS:
            continue  # a function call, or a procedure namespace / property access
        elif i > 0 and toks[i - 1][1].upper() == "CALL" or (i > 1 and toks[i - 1][1] == "." and toks[i - 2][0] == "word"):
            continue  # part of a procedure name, checked with its CALL
        else:
            _refuse(f"{text!r} is neither a read keyword, a function nor a variable bound by the statement")


def cypher_keywords_positions(toks: list[tuple[str, str]]) -> list[int]:
    """Indexes of the word tokens :func:`cypher_keywords` leaves out (keys, labels, aliases)."""
    out = []
    for i, (kind, _) in enumerate(toks):
        if kind != "word":
            continue
        prev = toks[i - 1][1] if i > 0 else ""
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if prev in (".", ":", "|", "&", "!") or nxt == ":" or (i > 0 and prev.upper() == "AS"):
            out.append(i)
    return out
