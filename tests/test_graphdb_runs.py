"""Runs in a store that already holds runs: kill -9 of a writer, recovery, `cellvq runs list|delete|recover`,
and reading one run by default (`--run`). Real PBMC 3k tables, a real LadybugDB in a temporary folder,
a real child process killed with SIGKILL.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from graphdb_fixtures import ROOT, expected_run_counts, pbmc_run_tables
from typer.testing import CliRunner

import graphdb
from cellvq.cli import app

runner = CliRunner()

CHILD = r"""
import pickle, sys, time
import graphdb
target, pickle_path, pause_at = sys.argv[1:4]
tables = pickle.load(open(pickle_path, "rb"))
store = graphdb.open_store(target)

def hook(step, rows):
    print("STEP", step, flush=True)
    if step == pause_at:
        time.sleep(600)

store.write_run(tables, on_step=hook)
print("FINISHED", flush=True)
"""


@pytest.fixture(scope="module")
def old_run():
    return pbmc_run_tables("pbmc3k-old", created_at="2026-01-01T00:00:00+00:00")


@pytest.fixture(scope="module")
def new_run():
    return pbmc_run_tables("pbmc3k-new", created_at="2026-02-01T00:00:00+00:00", n_markers=20)


@pytest.fixture(scope="module")
def template(old_run, tmp_path_factory):
    """A LadybugDB file that already holds one complete run (copied by each test)."""
    path = tmp_path_factory.mktemp("template") / "store.lbug"
    with graphdb.open_store(path) as store:
        store.write_run(old_run)
    assert not Path(f"{path}.wal").exists() or Path(f"{path}.wal").stat().st_size == 0
    return path


@pytest.fixture
def store_path(template, tmp_path):
    path = tmp_path / "store.lbug"
    shutil.copy(template, path)
    return path


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def start_writer(path: Path, tables, tmp_path: Path, pause_at: str) -> subprocess.Popen:
    pk = tmp_path / "tables.pkl"
    pk.write_bytes(pickle.dumps(tables))
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(path), str(pk), pause_at], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for_step(child: subprocess.Popen, step: str) -> list[str]:
    seen = []
    for line in child.stdout:
        seen.append(line.strip())
        if line.strip() == f"STEP {step}":
            return seen
    raise AssertionError(f"the writer never reached {step!r}: {seen} {child.stderr.read()[-2000:]}")


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def check_old_run_intact(store, old_run) -> None:
    runs = store.runs().set_index("runId")
    assert runs.loc[old_run.run_id, "status"] == "complete"
    assert store.counts(old_run.run_id) == expected_run_counts(old_run)
    want = old_run.markers[old_run.markers["stateId"] == "cellType:B"].sort_values("rank").head(10)
    assert store.markers("B", top=10, run_id=old_run.run_id)["symbol"].tolist() == want["symbol"].tolist()


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_kill_during_commit_never_leaves_a_partial_complete_run(store_path, old_run, new_run, tmp_path, delay):
    """Item 1 as reported: kill -9 while the run's transaction commits and checkpoints (after the last COPY).

    Before: every read-only open failed with "checkpoint recovery is pending", and the killed run came back
    `complete`. Now read-only opens recover by themselves, and the killed run is `writing` (invisible)
    unless every one of its facts is there.
    """
    child = start_writer(store_path, new_run, tmp_path, pause_at="never")
    wait_for_step(child, "SHIFTS")  # the last COPY (no rows here): the commit and checkpoints follow
    time.sleep(delay)
    kill(child)
    with graphdb.open_store(store_path, read_only=True) as store:  # recovers instead of failing
        check_old_run_intact(store, old_run)
        status = store.runs().set_index("runId").loc[new_run.run_id, "status"]
        if status == "complete":  # only if the kill came after the run was durable and checked
            assert store.counts(new_run.run_id) == expected_run_counts(new_run)
        else:
            assert status == "writing"
            assert store.resolve_run() == old_run.run_id
            assert store.markers("B", top=5)["symbol"].tolist() == store.markers(
                "B", top=5, run_id=old_run.run_id)["symbol"].tolist()
    # the CLI lists the run, and deleting it removes exactly its facts
    listed = cli("runs", "list", "--db", store_path, "--json")
    assert listed.exit_code == 0, listed.output
    assert new_run.run_id in listed.stdout and old_run.run_id in listed.stdout
    res = cli("runs", "delete", new_run.run_id, "--db", store_path)
    assert res.exit_code == 0, res.output
    with graphdb.open_store(store_path, read_only=True) as store:
        assert store.runs()["runId"].tolist() == [old_run.run_id]
        assert store.counts(new_run.run_id) == dict.fromkeys(expected_run_counts(new_run), 0)
        check_old_run_intact(store, old_run)


def test_committed_but_not_checked_run_stays_writing(store_path, old_run, new_run, tmp_path):
    """Killed after its facts committed but before they were checkpointed and counted: still invisible."""
    child = start_writer(store_path, new_run, tmp_path, pause_at="commit")
    steps = wait_for_step(child, "commit")
    assert "STEP complete" not in steps
    kill(child)
    with graphdb.open_store(store_path, read_only=True) as store:
        assert store.runs().set_index("runId").loc[new_run.run_id, "status"] == "writing"
        assert store.resolve_run() == old_run.run_id
        assert store.incomplete_runs()["runId"].tolist() == [new_run.run_id]
        check_old_run_intact(store, old_run)


def test_runs_list_and_recover_after_a_kill_mid_copy(store_path, old_run, new_run, tmp_path):
    child = start_writer(store_path, new_run, tmp_path, pause_at="MARKER_OF")
    wait_for_step(child, "MARKER_OF")
    kill(child)
    listed = cli("runs", "list", "--db", store_path)
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.stdout.split())
    assert "writing" in text and "1 run(s) are incomplete" in text and "cellvq runs recover" in text
    res = cli("runs", "recover", "--db", store_path)
    assert res.exit_code == 0, res.output
    assert f"removed 1 incomplete run(s): {new_run.run_id}" in res.stdout
    with graphdb.open_store(store_path, read_only=True) as store:
        assert store.runs()["runId"].tolist() == [old_run.run_id]
        check_old_run_intact(store, old_run)
    assert "no incomplete runs" in cli("runs", "recover", "--db", store_path).stdout
    # deleting an unknown run is a clear error naming `cellvq runs list`
    bad = cli("runs", "delete", "pbmc3k-nope", "--db", store_path)
    assert bad.exit_code != 0 and "cellvq runs list" in bad.output


def test_queries_read_one_run_by_default(store_path, old_run, new_run):
    """Item 2: with two complete runs, the CLI reads the newest one unless --run names another."""
    with graphdb.open_store(store_path) as store:
        store.write_run(new_run)
    db = store_path
    stmt = "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {name: 'B'}) RETURN g.symbol AS symbol"
    newest = cli("cypher", stmt, "--db", db, "--json")
    assert newest.exit_code == 0, newest.output
    n_new = int((new_run.markers["stateId"] == "cellType:B").sum())
    n_old = int((old_run.markers["stateId"] == "cellType:B").sum())
    assert n_new != n_old and newest.stdout.count('"symbol"') == n_new
    older = cli("cypher", stmt, "--db", db, "--json", "--run", old_run.run_id)
    assert older.stdout.count('"symbol"') == n_old
    # a statement that reads every run is answered, with a note saying so
    every = cli("cypher", "MATCH (g:Gene)-[m:MARKER_OF]->(s:CellState {name: 'B'}) RETURN g.symbol AS symbol",
                "--db", db, "--json")
    assert every.stdout.count('"symbol"') == n_new + n_old
    assert "2 complete runs" in " ".join(every.output.split())
    # named queries: newest by default, --run for another
    top = cli("query", "markers", "--db", db, "-p", "state=B", "-p", "top=50", "--json")
    assert top.stdout.count('"symbol"') == n_new
    top_old = cli("query", "markers", "--db", db, "-p", "state=B", "-p", "top=50", "--json", "--run", old_run.run_id)
    assert top_old.stdout.count('"symbol"') == n_old
