"""Faults against a live Neo4j 5.26 (issue 12 item 3): a server killed in the middle of a write, two
writers at once, write clauses sent through `cellvq cypher`, and transient errors (a real deadlock)
retried by the store's managed transactions.

The module starts a test server of its own (``neo4j_server_factory``, own ``--home``) because one
test kills and restarts it; the runs are real PBMC 3k runs (tests/graphdb_fixtures.py) over the
same 150 cells, two parameter sets, so they share genes and cells. ``baseline`` writes both runs,
one after the other, into the freshly started database: the counts every fault must end with.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from graphdb_fixtures import check_round_trip, check_run_invisible, expected_run_counts, pbmc_run_tables
from typer.testing import CliRunner

import graphdb
import graphdb.stores.base
from cellvq.cli import app
from graphdb.schema import graph_frames

pytestmark = pytest.mark.neo4j_live

N_CELLS = 150
#: Deletes every node of the database (the fault tests' own server), 5,000 per transaction.
WIPE = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"


@pytest.fixture(scope="module")
def run_a():
    return pbmc_run_tables("faults-a", n_cells=N_CELLS, n_markers=12, co_min_r=0.45)


@pytest.fixture(scope="module")
def run_b():
    return pbmc_run_tables("faults-b", n_cells=N_CELLS, n_markers=10, co_min_r=0.5, grn_min_r=0.3)


@pytest.fixture(scope="module")
def server(neo4j_server_factory, tmp_path_factory):
    return neo4j_server_factory(home=tmp_path_factory.mktemp("neo4j-faults") / "home")


def open_on(server, **options) -> graphdb.GraphStore:
    return graphdb.open_store(server.uri, user=server.user, password=server.password, **options)


@pytest.fixture(scope="module")
def baseline(server, run_a, run_b):
    """Whole-store counts of clean sequential writes into the fresh database: run A, then A + B."""
    with open_on(server) as store:
        assert store.counts()["Gene"] == 0, "the fault tests need a fresh database"
        store.write_run(run_a)
        only_a = store.counts()
        store.write_run(run_b)
        both = store.counts()
    shared = set(run_a.genes["symbol"]) & set(run_b.genes["symbol"])
    assert shared and both["Gene"] == len(set(run_a.genes["symbol"]) | set(run_b.genes["symbol"]))
    return {"a": only_a, "ab": both}


def wipe(store) -> None:
    with store._session(read=False) as session:
        session.run(WIPE).consume()
    assert sum(store.counts().values()) == 0


#: Keys held by more than one node, per label (the unique constraints forbid them; check anyway).
DUPLICATE_KEYS = {
    "Gene": "MATCH (n:Gene) WITH n.symbol AS k, count(*) AS n WHERE n > 1 RETURN count(*) AS d",
    "Cell": "MATCH (n:Cell) WITH n.uid AS k, count(*) AS n WHERE n > 1 RETURN count(*) AS d",
    "CellState": "MATCH (n:CellState) WITH n.uid AS k, count(*) AS n WHERE n > 1 RETURN count(*) AS d",
    "Run": "MATCH (n:Run) WITH n.runId AS k, count(*) AS n WHERE n > 1 RETURN count(*) AS d",
}


def assert_no_duplicates(store) -> None:
    for label, statement in DUPLICATE_KEYS.items():
        assert store.query(statement)["d"].iloc[0] == 0, f"duplicate {label} nodes"


# ---- 1. the server killed in the middle of a write -------------------------------------------


def test_server_killed_mid_write_then_restarted(server, baseline, run_a):
    with open_on(server) as store:
        wipe(store)
    writer = open_on(server, batch_size=100, max_transaction_retry_time=2.0)
    killed_at = {}

    def kill_soon(step, rows):
        if step == "IN_STATE":  # Cell/state nodes and IN_STATE written; 9 relationship types to go
            killed_at["timer"] = threading.Timer(0.2, server.kill)
            killed_at["timer"].start()

    with pytest.raises(graphdb.StoreConnectionError) as err:
        writer.write_run(run_a, on_step=kill_soon)
    msg = str(err.value)
    killed_at["timer"].join()
    assert not server.running, msg
    assert "faults-a" in msg and "incomplete" in msg and "write_run" in msg and server.password not in msg

    server.restart()  # same --home, same Bolt port: Neo4j recovers its transaction log
    with open_on(server) as store:
        assert store.runs().set_index("runId").loc["faults-a", "status"] == "writing"
        left = store.counts("faults-a")
        assert 0 < sum(left.values()) < sum(expected_run_counts(run_a).values()), left
        check_run_invisible(store, run_a)
        with pytest.raises(graphdb.NotFoundError, match="no complete run"):
            store.markers("B")  # the default run is the latest complete one: there is none
    # the long-lived store that lost its server writes the run again through fresh connections
    writer.write_run(run_a)
    writer.close()
    with open_on(server) as store:
        assert store.counts() == baseline["a"]
        check_round_trip(store, run_a)
        assert len(store.markers("B", top=5)) == 5


# ---- 2. two writers into one database at once ------------------------------------------------


def write_concurrently(server, runs) -> list[tuple[float, float]]:
    """Write ``runs`` at once, one thread and one store (driver) each; returns each write's (start, end)."""
    stores = [open_on(server, batch_size=200) for _ in runs]
    gate = threading.Barrier(len(runs))
    spans: list[tuple[float, float] | None] = [None] * len(runs)
    errors: list[BaseException] = []

    def write(i):
        try:
            gate.wait()
            t0 = time.perf_counter()
            stores[i].write_run(runs[i])
            spans[i] = (t0, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for s in stores:
        s.close()
    assert not errors, errors
    assert max(s[0] for s in spans) < min(s[1] for s in spans), f"the writes did not overlap: {spans}"
    return spans


def test_two_runs_written_at_once(server, baseline, run_a, run_b):
    with open_on(server) as store:
        wipe(store)
    write_concurrently(server, [run_a, run_b])
    with open_on(server) as store:
        assert store.counts() == baseline["ab"]
        assert store.counts("faults-a") == expected_run_counts(run_a)
        assert store.counts("faults-b") == expected_run_counts(run_b)
        assert set(store.list_runs(complete_only=True)["runId"]) == {"faults-a", "faults-b"}
        assert_no_duplicates(store)
        check_round_trip(store, run_b)


def test_same_run_written_twice_at_once(server, baseline, run_a):
    with open_on(server) as store:
        wipe(store)
    write_concurrently(server, [run_a, run_a])
    with open_on(server) as store:
        assert store.counts() == baseline["a"]
        assert_no_duplicates(store)
        check_round_trip(store, run_a)



def test_run_never_complete_while_a_second_writer_rewrites_it(server, baseline, run_a):
    """Writer A has written every fact of the run; writer B begins the same run (deleting A's facts)
    and pauses; A finishes. A run marked complete must then hold all its facts."""
    with open_on(server) as store:
        wipe(store)
    a_written, b_began, b_may_go = threading.Event(), threading.Event(), threading.Event()

    def hook_a(step, rows):
        if step == "SHIFTS":  # the last relationship type (no rows here): all of A's facts are written
            a_written.set()
            assert b_began.wait(120)

    def hook_b(step, rows):
        if step == "begin":
            b_began.set()
            assert b_may_go.wait(120)

    writers = [open_on(server, batch_size=200) for _ in range(2)]
    thread_a = threading.Thread(target=writers[0].write_run, args=(run_a,), kwargs={"on_step": hook_a})
    thread_b = threading.Thread(target=writers[1].write_run, args=(run_a,), kwargs={"on_step": hook_b})
    thread_a.start()
    assert a_written.wait(120)
    thread_b.start()
    thread_a.join(timeout=120)
    with open_on(server) as store:
        status = store.runs().set_index("runId").loc["faults-a", "status"]
        facts = store.counts("faults-a")
    b_may_go.set()
    thread_b.join(timeout=300)
    for w in writers:
        w.close()
    assert status != "complete" or facts == expected_run_counts(run_a), (status, facts)

# ---- 3. write clauses through `cellvq cypher` on bolt:// -------------------------------------

WRITES = [
    "CREATE (:Gene {symbol: 'EVIL'})",
    "MERGE (g:Gene {symbol: 'EVIL'}) RETURN g",
    "MATCH (g:Gene {symbol: 'LYZ'}) SET g.ensemblId = 'EVIL'",
    "MATCH (g:Gene {symbol: 'LYZ'}) REMOVE g.ensemblId",
    "MATCH (r:Run) DETACH DELETE r",
    "MATCH (s:CellState) CALL { WITH s SET s.name = 'EVIL' } RETURN count(s) AS n",
    "FOREACH (x IN [1] | CREATE (:Evil))",
    "CALL db.createLabel('Evil')",
    "CALL db.createProperty('evil')",
    "CREATE INDEX evil FOR (n:Gene) ON (n.evil)",
]


def error_line(res) -> str:
    """The one `error:` line of a failed command (no traceback)."""
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def store_snapshot(store) -> tuple:
    schema = store._read("SHOW INDEXES YIELD name RETURN collect(name) AS names")["names"].iloc[0]
    return (store.counts(), sorted(store.query("CALL db.labels()")["label"]),
            sorted(store.query("CALL db.propertyKeys()")["propertyKey"]), sorted(schema),
            store.query("MATCH (g:Gene {symbol: 'LYZ'}) RETURN g.ensemblId AS e")["e"].tolist())


def test_cypher_cli_refuses_writes_twice(server, baseline, run_a, monkeypatch):
    monkeypatch.setenv("NEO4J_USER", server.user)
    monkeypatch.setenv("NEO4J_PASSWORD", server.password)
    with open_on(server) as store:
        if "faults-a" not in set(store.list_runs(complete_only=True)["runId"]):
            store.write_run(run_a)
        before = store_snapshot(store)
    runner = CliRunner()
    ok = runner.invoke(app, ["cypher", "MATCH (g:Gene {symbol: $s}) RETURN g.symbol AS s", "--db", server.uri,
                             "-p", "s=LYZ", "--json"])
    assert ok.exit_code == 0 and '"LYZ"' in ok.output, ok.output
    for stmt in WRITES:  # the allow-list refuses them before they are sent
        line = error_line(runner.invoke(app, ["cypher", stmt, "--db", server.uri]))
        assert "ReadOnlyViolation" in line and "read statements only" in line, line
        assert server.password not in line
    # with the allow-list bypassed, every one reaches Neo4j and the READ access mode session refuses it
    monkeypatch.setattr(graphdb.stores.base, "check_read_only", lambda query: None)
    for stmt in WRITES:
        line = error_line(runner.invoke(app, ["cypher", stmt, "--db", server.uri]))
        assert "ReadOnlyViolation" in line and "Neo4j refused a write" in line, (stmt, line)
        assert server.password not in line
    with open_on(server) as store:
        assert store_snapshot(store) == before


# ---- 4. transient errors retried -------------------------------------------------------------

BLOCKER_LOCK_GENE = "MATCH (g:Gene {symbol: $symbol}) SET g.faultBlocker = true"
BLOCKER_MANY_LOCKS = "UNWIND range(1, $n) AS i CREATE (:FaultBlocker {i: i})"
WAITING_WRITES = "SHOW TRANSACTIONS YIELD currentQuery, status RETURN currentQuery, status"


def await_blocked(server, fragment: str, timeout: float = 60.0) -> None:
    """Wait until a transaction running a statement containing ``fragment`` waits for a lock."""
    with open_on(server, read_only=True) as watcher, watcher._session(read=False) as session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = session.run(WAITING_WRITES).data()
            if any(fragment in r["currentQuery"] and r["status"].startswith("Blocked") for r in rows):
                return
            time.sleep(0.1)
    raise AssertionError(f"no transaction running {fragment!r} waited for a lock within {timeout:.0f} s")


def test_deadlock_is_retried_by_the_store(server, baseline, run_a, run_b, caplog):
    """A real deadlock: another transaction holds gene X and many locks; the store's gene batch
    locks gene Y, then waits for X; the other transaction asks for Y. Neo4j aborts the transaction
    holding fewer locks -- the store's -- with DeadlockDetected (transient); the driver retries it
    once the other transaction is gone and the run completes with the right counts."""
    with open_on(server) as store:
        if "faults-a" not in set(store.list_runs(complete_only=True)["runId"]):
            store.write_run(run_a)
        store.delete_run("faults-b")
    genes = list(graph_frames(run_b)[0]["Gene"]["symbol"])  # the order the store's batch locks them in
    existing = [g for g in genes if g in set(run_a.genes["symbol"])]
    y, x = existing[0], existing[5]
    writer = open_on(server)
    done: list[BaseException | None] = []

    def write():
        try:
            writer.write_run(run_b)
            done.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked in the main thread
            done.append(exc)

    other = open_on(server)
    with caplog.at_level(logging.WARNING, logger="neo4j"), other._session(read=False) as session:
        tx = session.begin_transaction()
        tx.run(BLOCKER_LOCK_GENE, symbol=x).consume()
        tx.run(BLOCKER_MANY_LOCKS, n=200).consume()
        thread = threading.Thread(target=write)
        thread.start()
        await_blocked(server, "MERGE (n:Gene")
        tx.run(BLOCKER_LOCK_GENE, symbol=y).consume()  # closes the cycle; the store's side is aborted
        tx.rollback()
        thread.join(timeout=120)
    other.close()
    writer.close()
    assert done == [None], done
    retried = [r.getMessage() for r in caplog.records if "will be retried" in r.getMessage()]
    assert any("DeadlockDetected" in m for m in retried), retried
    with open_on(server) as store:
        assert store.counts() == baseline["ab"]
        assert store.counts("faults-b") == expected_run_counts(run_b)
        assert store.query("MATCH (n) WHERE n.faultBlocker OR n:FaultBlocker RETURN count(n) AS n")["n"].iloc[0] == 0
        check_round_trip(store, run_b)

