"""`cellvq runs list|delete|recover`: the runs a graph store holds, and the remains of killed writes.

A run becomes `complete` only after its facts are durable (see `graphdb.stores.ladybug_store`); a write
that was killed leaves a run in status `writing`, which no query sees. `list` shows every run with its
status, `delete` removes exactly one run's facts, `recover` finishes an interrupted checkpoint
(LadybugDB) and removes every run left `writing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from cellvq.cli_common import check_db_target, one_line_errors
from graphdb.errors import redact_target

runs_app = typer.Typer(no_args_is_help=True, help="List, delete and recover the runs of a graph store.")
_out = Console()
_err = Console(stderr=True)

_DB = Annotated[str, typer.Option("--db", help="Graph store: a LadybugDB path or a bolt:// / neo4j:// URI.")]
_LIST_COLUMNS = ["runId", "status", "datasetId", "nCells", "createdAt", "completedAt", "packageVersion"]


def _open(db: str, read_only: bool):
    import graphdb

    check_db_target(db, writable=not read_only)
    return graphdb.open_store(db, read_only=read_only)


@runs_app.command("list")
@one_line_errors
def list_cmd(db: _DB = "cellvq_db",
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False) -> None:
    """Every run in the store, newest first, with its status (`writing` = incomplete, invisible to queries)."""
    shown = redact_target(db)
    with _open(db, read_only=True) as store:
        runs = store.runs()
    if as_json:  # everything, provenance included
        _out.print_json(runs.to_json(orient="records"))
        return
    runs = runs.reindex(columns=_LIST_COLUMNS)
    _table(runs.fillna(""), title=f"runs in {shown}")
    n_bad = int((runs["status"] != "complete").sum())
    if n_bad:
        _out.print(f"{n_bad} run(s) are incomplete (a write was killed or is in progress); remove them with "
                   f"`cellvq runs recover --db {shown}` or `cellvq runs delete RUN_ID --db {shown}`.")


@runs_app.command("delete")
@one_line_errors
def delete_cmd(run_ids: Annotated[list[str], typer.Argument(help="Run id(s) to remove (see `cellvq runs list`).")],
               db: _DB = "cellvq_db") -> None:
    """Remove exactly these runs' facts (states, markers, networks, ...); genes, cells and other runs stay."""
    shown = redact_target(db)
    from graphdb import NotFoundError

    with _open(db, read_only=False) as store:
        known = set(store.runs()["runId"].astype(str))
        unknown = [r for r in run_ids if r not in known]
        if unknown:
            raise NotFoundError(f"no run {unknown} in {shown}; `cellvq runs list --db {shown}` shows its runs: "
                                f"{sorted(known)[:10]}")
        for run_id in run_ids:
            store.delete_run(run_id)
            _out.print(f"deleted run {run_id}")


@runs_app.command("recover")
@one_line_errors
def recover_cmd(db: _DB = "cellvq_db") -> None:
    """Finish an interrupted checkpoint and delete every run left `writing` by a killed write.

    Run it when no `cellvq run` is writing into the store (LadybugDB's lock refuses it otherwise).
    """
    shown = redact_target(db)
    with _open(db, read_only=False) as store:
        removed = store.recover()
        complete = int((store.runs()["status"] == "complete").sum())
    if removed:
        _out.print(f"removed {len(removed)} incomplete run(s): {', '.join(removed)}")
    else:
        _out.print("no incomplete runs")
    _out.print(f"{complete} complete run(s) remain in {shown}")


def _table(df, title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    for c in df.columns:
        t.add_column(str(c))
    for row in df.itertuples(index=False):
        t.add_row(*[str(v) for v in row])
    _out.print(t)


def same_input_runs(store, run_id: str):
    """Complete runs other than ``run_id`` on the same dataset with the same model checkpoint."""
    runs = store.runs()
    me = runs[runs["runId"] == run_id]
    if me.empty:
        return runs.iloc[0:0]
    same = (runs["datasetId"] == me["datasetId"].iloc[0]) & (runs["checkpointHash"] == me["checkpointHash"].iloc[0])
    return runs[same & (runs["status"] == "complete") & (runs["runId"] != run_id)]


@contextmanager
def finish_run(db: str, run_id: str, *, replace: bool) -> Iterator[None]:
    """Around the steps after the store write (report, printing): if they fail, the new run is deleted
    (a failed command leaves no complete run); once they succeed, ``replace`` deletes the older runs
    of the same dataset and model -- only now, so a failed re-run never loses the old one."""
    import graphdb

    try:
        yield
    except BaseException:
        try:
            with graphdb.open_store(db) as store:
                store.delete_run(run_id)
            _err.print(f"the command failed after writing run {run_id}: the run was removed from the store")
        except Exception as exc:  # noqa: BLE001 - report the original error, say what is left
            _err.print(f"the command failed and run {run_id} could not be removed ({exc}); "
                       f"remove it with `cellvq runs delete {run_id} --db {redact_target(db)}`")
        raise
    with graphdb.open_store(db) as store:
        older = same_input_runs(store, run_id)
        if replace:
            for old in older["runId"]:
                store.delete_run(str(old))
                _err.print(f"--replace: deleted the older run {old} of the same dataset and model")
        elif len(older):
            _err.print(f"note: the store also holds {len(older)} older run(s) of this dataset and model "
                       f"({', '.join(map(str, older['runId']))}); queries read the newest complete run ({run_id}) "
                       "unless given --run; pass --replace to a re-run to delete the older ones")
