"""`cellvq run` and the store: bad --db / --out refused before any compute, a failed command leaves no
complete run, `--replace` re-runs the same input and model. Real pbmc3k cells, a real LadybugDB in tmp.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from graphdb_fixtures import ROOT
from typer.testing import CliRunner

import graphdb
from cellvq.cli import app

runner = CliRunner()


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def error_line(res) -> str:
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return " ".join(res.output[res.output.index("error:"):].split())


@pytest.fixture(scope="module")
def small_h5ad(pbmc3k, tmp_path_factory):
    rng = np.random.default_rng(0)
    keep = []
    for _, idx in pbmc3k.obs.groupby("cell_type", observed=True).indices.items():
        keep.extend(rng.choice(idx, size=min(len(idx), max(5, len(idx) // 9)), replace=False))
    path = tmp_path_factory.mktemp("cli_runs") / "pbmc3k_small.h5ad"
    pbmc3k[np.sort(keep)].copy().write_h5ad(path)
    return path


# A --model that does not exist: before the fix the command read the data and failed on the model
# (or computed for minutes and failed on the store); now the --db / --out error comes first.
NO_MODEL = "/nonexistent/cellvq_model"


def test_db_that_is_not_a_database_is_refused_first(small_h5ad, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my lab notes\n")
    line = error_line(cli("run", small_h5ad, "--db", notes, "--model", NO_MODEL))
    assert "--db" in line and "not a readable LadybugDB database" in line
    assert notes.read_text() == "my lab notes\n"


def test_http_db_uri_is_refused_without_the_password(small_h5ad):
    line = error_line(cli("run", small_h5ad, "--db", "http://alice:s3cret@db.example.org/x", "--model", NO_MODEL))
    assert "--db" in line and "http:// is not a graph store" in line and "bolt://" in line
    assert "s3cret" not in line


def test_db_locked_by_another_writer_is_refused_first(small_h5ad, tmp_path):
    path = tmp_path / "locked.lbug"
    graphdb.open_store(path).close()
    code = "import sys, time, graphdb; s = graphdb.open_store(sys.argv[1]); print('READY', flush=True); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "READY"
        line = error_line(cli("run", small_h5ad, "--db", path, "--model", NO_MODEL))
        assert "--db" in line and "locked" in line and f"process {child.pid}" in line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


@pytest.mark.parametrize("where", ["file", "under_file", "unwritable"])
def test_bad_out_is_refused_before_compute_and_leaves_no_run(small_h5ad, tmp_path, where):
    afile = tmp_path / "report.txt"
    afile.write_text("x")
    out = {"file": afile, "under_file": afile / "report", "unwritable": "/proc/cellvq_report"}[where]
    db = tmp_path / "db"
    line = error_line(cli("run", small_h5ad, "--db", db, "--out", out, "--model", NO_MODEL))
    assert f"--out {out}" in line and ("is a file" in line or "cannot write" in line)
    assert not db.exists()  # nothing computed, nothing written


def test_failed_report_removes_the_run_and_replace_keeps_old_until_new_is_complete(small_h5ad, tmp_path):
    db = tmp_path / "db"
    args = ("run", small_h5ad, "--db", db, "--graph-epochs", 5, "--top", 3)
    first = cli(*args)
    assert first.exit_code == 0, first.output
    with graphdb.open_store(db, read_only=True) as store:
        (run_a,) = store.runs()["runId"].tolist()
        counts_a, store_a = store.counts(run_a), store.counts()
    # the report step fails after the store write (report.md is a folder): no complete run is left,
    # and --replace has not touched the older run
    out = tmp_path / "report"
    (out / "report.md").mkdir(parents=True)
    (out / "report.md" / "keep").write_text("x")
    (out / "notes.txt").write_text("x")
    failed = cli(*args, "--out", out, "--replace")
    assert failed.exit_code != 0
    assert "the run was removed from the store" in " ".join(failed.output.split())
    with graphdb.open_store(db, read_only=True) as store:
        assert store.runs()["runId"].tolist() == [run_a]
        assert store.counts() == store_a
    # the same input and model again without --replace: two runs, queries read the newest
    second = cli(*args)
    assert second.exit_code == 0, second.output
    assert "--replace" in " ".join(second.output.split())
    with graphdb.open_store(db, read_only=True) as store:
        runs = store.runs()
        assert len(runs) == 2 and (runs["status"] == "complete").all()
        run_b = runs["runId"].iloc[0]
        assert store.resolve_run() == run_b != run_a
    # --replace: the re-run replaces both, and the store's counts are those of one run
    third = cli(*args, "--replace")
    assert third.exit_code == 0, third.output
    with graphdb.open_store(db, read_only=True) as store:
        (run_c,) = store.runs()["runId"].tolist()
        assert run_c not in (run_a, run_b)
        assert store.counts(run_c) == counts_a
        assert store.counts() == store_a


# ---------------------------------------------------------------------------------------------------------
# item 10: a password in the --db URI is never printed or written

SECRET_URI = "bolt://alice:s3cret-pw@127.0.0.1:1"  # nothing listens on port 1: the connection is refused


@pytest.mark.parametrize("command", [("run", "SMALL"), ("runs", "list"), ("query", "markers", "-p", "state=B"),
                                     ("cypher", "MATCH (n) RETURN count(n)"), ("export-grn", "g.csv")])
def test_password_in_db_uri_is_never_printed(small_h5ad, tmp_path, command):
    args = [small_h5ad if a == "SMALL" else tmp_path / a if a == "g.csv" else a for a in command]
    res = cli(*args, "--db", SECRET_URI)
    assert res.exit_code != 0
    assert "s3cret" not in res.output and "127.0.0.1:1" in " ".join(res.output.split())


def test_password_in_db_uri_is_not_written_into_the_report(small_h5ad, tmp_path):
    import dataclasses

    import anndata as ad

    from cellvq import pipeline
    from cellvq.report import write_report

    res = pipeline.run(ad.read_h5ad(small_h5ad), graph_epochs=3)
    res = dataclasses.replace(res, db=SECRET_URI)
    report = write_report(res, tmp_path / "report")
    text = report.read_text()
    assert "bolt://127.0.0.1:1" in text and "cellvq query markers --db bolt://127.0.0.1:1" in text
    for path in report.parent.iterdir():
        assert b"s3cret" not in path.read_bytes(), path
    from graphdb.errors import redact_command

    assert redact_command(["cellvq", "run", "x.h5ad", "--db", SECRET_URI, f"--db={SECRET_URI}"]) == [
        "cellvq", "run", "x.h5ad", "--db", "bolt://127.0.0.1:1", "--db=bolt://127.0.0.1:1"]
