"""What every `cellvq` command shares: one clear line per error (the traceback with `--debug`), and the
checks of `--db` / `--out` that run before any compute."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()
_state = {"debug": False}
F = TypeVar("F", bound=Callable)


def set_debug(debug: bool) -> None:
    """`--debug`: errors print their traceback before the one line."""
    _state["debug"] = debug


def one_line_errors(command: F) -> F:
    """Wrap a command so that any error ends it with one line naming the problem (`fail`); `typer.Exit`
    passes through. Typer reads the wrapped function's signature (`functools.wraps`)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear line per error
            fail(exc)

    return wrapper  # type: ignore[return-value]


# the library's hints name Python arguments; on the command line the same fix is a flag
_CLI_SPELLING = (
    (re.compile(r"CountsStream\(\.\.\., layer=\.\.\.\)"), "--layer NAME"),
    (re.compile(r"\blayer=None (?:for X|to read adata\.X)"), "leave --layer out to read X"),
    (re.compile(r"\b(as |)layer=\.\.\."), r"\1--layer NAME"),
    (re.compile(r"\bvar_key=None to use var_names"), "leave --var-key out to use var_names"),
    (re.compile(r"\bvar_key='<column>'"), "--var-key COLUMN"),
    (re.compile(r"\bvar_key=['\"](\w+)['\"]"), r"--var-key \1"),
    (re.compile(r"\bvar_key=(?![\w'\"])"), "--var-key COLUMN"),
    (re.compile(r"\bvar_key (?='[^']*' not found in adata\.var)"), "--var-key "),
    (re.compile(r"\blayer=['\"](\w+)['\"]"), r"--layer \1"),
    (re.compile(r"\bpass layer=\S*"), "pass --layer NAME"),
    (re.compile(r"adata\.raw\.to_adata\(\)"), "adata.raw.to_adata() (in Python, then save the file)"),
)


def cli_spelling(message: str) -> str:
    """``message`` with the Python spellings of fixes that have a flag replaced by that flag."""
    for pattern, repl in _CLI_SPELLING:
        message = pattern.sub(repl, message)
    return message


def fail(exc: BaseException, code: int = 1) -> None:
    if _state["debug"]:
        console.print_exception()
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(cli_spelling(str(exc)))}", highlight=False,
                  soft_wrap=True)
    raise typer.Exit(code)


_NEO4J_PREFIXES = ("bolt://", "neo4j://", "bolt+s://", "neo4j+s://", "bolt+ssc://", "neo4j+ssc://")


def check_db_target(db: str, *, writable: bool = True) -> None:
    """Refuse a bad `--db` before any compute: a non-Neo4j URI, a file that is not a LadybugDB database,
    a database locked by another writer, a folder that cannot be written; a Neo4j URI must answer."""
    import graphdb
    from graphdb.errors import GraphDBError, redact_uri

    text = str(db)
    db = redact_uri(text) if "://" in text else text  # what messages may show
    if text.lower().startswith(_NEO4J_PREFIXES):
        graphdb.open_store(text, read_only=not writable).close()  # unreachable server / wrong credentials
        return
    if "://" in text:
        raise ValueError(f"--db {redact_uri(text)}: {text.split('://', 1)[0]}:// is not a graph store; pass a "
                         "folder or file path (embedded LadybugDB) or bolt://host:7687 / neo4j://host:7687 (Neo4j)")
    path = Path(text).expanduser()
    target = path / "cellvq_graph.lbug" if path.is_dir() else path
    if target.exists():
        try:
            graphdb.open_store(target, read_only=not writable).close()
        except GraphDBError as exc:
            raise type(exc)(f"--db {db}: {exc}") from exc
    elif not writable:
        raise graphdb.NotFoundError(f"--db {db}: no graph store there; write one with `cellvq run FILE --db {db}`")
    else:
        check_writable_folder(target.parent, "--db", db)


def check_writable_folder(folder: Path, flag: str, given: object = None) -> None:
    """`folder` (or its nearest existing ancestor) is a folder this process can create files in; errors
    name `flag` and the value given to it (default `folder`)."""
    import tempfile

    given = folder if given is None else given
    probe = Path(folder).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{flag} {given}: {probe} is a file, not a folder; pass a folder path to {flag}")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise PermissionError(f"{flag} {given}: cannot write into {probe} ({exc.strerror}); pass a writable "
                              f"folder to {flag}") from None


def check_out_dir(out_dir: Path) -> None:
    """Refuse a bad `--out` (a file, an unwritable place) before any compute."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; pass a folder path to --out (the report folder)")
    check_writable_folder(out_dir if out_dir.exists() else out_dir.parent, "--out", out_dir)
