"""Shared fixtures. Real data only; fixtures that are expensive are session-scoped."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def pbmc3k():
    """The bundled PBMC 3k raw counts (2,638 cells x 13,714 genes, 9 cell types)."""
    from foundation import datasets

    return datasets.pbmc3k()


@pytest.fixture(scope="session")
def pbmc3k_embedded(pbmc3k):
    """pbmc3k embedded by the shipped CellVQ checkpoint (keys of docs/CONTRACTS.md section 1).

    Returns a fresh copy per session; tests that write into it must copy it first.
    """
    import foundation

    adata = pbmc3k.copy()
    foundation.load_pretrained().embed(adata, batch_size=256)
    return adata


# ---- a live Neo4j for the neo4j_live tests ---------------------------------------------------


@pytest.fixture(scope="session")
def neo4j_live():
    """A live Neo4j 5 server: ``NEO4J_URI`` (+ ``NEO4J_USER`` / ``NEO4J_PASSWORD``) if set, else the
    project's test server (``tests/neo4j_server``, Neo4j 5.26 from Maven Central) started for the
    session. While it runs, ``NEO4J_USER`` / ``NEO4J_PASSWORD`` hold its credentials, so child
    processes (``cellvq cypher``, killed writers) reach it too.

    If the server cannot be started the live tests are skipped, unless ``CELLVQ_REQUIRE_NEO4J=1``
    (``make test``, CI): then that is an error.
    """
    from neo4j_server import LiveNeo4j, Neo4jTestServer

    if os.environ.get("NEO4J_URI"):
        yield LiveNeo4j.from_env()
        return
    server = Neo4jTestServer()
    _start_or_skip(server)
    saved = {k: os.environ.get(k) for k in ("NEO4J_USER", "NEO4J_PASSWORD")}
    os.environ.update(NEO4J_USER=server.user, NEO4J_PASSWORD=server.password)
    try:
        yield LiveNeo4j(uri=server.uri, user=server.user, password=server.password, server=server)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_or_skip(server) -> None:
    """Start a test server; skip the test when it cannot start, fail instead under CELLVQ_REQUIRE_NEO4J=1."""
    from neo4j_server import ServerStartError

    try:
        server.start()
    except ServerStartError as exc:
        if os.environ.get("CELLVQ_REQUIRE_NEO4J") == "1":
            pytest.fail(f"CELLVQ_REQUIRE_NEO4J=1 but the Neo4j test server did not start: {exc}", pytrace=False)
        pytest.skip(f"no live Neo4j: {exc} (set NEO4J_URI for an external server)")


@pytest.fixture(scope="session")
def neo4j_server_factory():
    """Start Neo4j test servers of a test's own: ``start(home=DIR)`` returns a started
    :class:`neo4j_server.Neo4jTestServer` on its own ``--home``, which the test may kill and restart
    (``server.restart()``); every server started is stopped at the end of the session. Skips or
    fails like ``neo4j_live`` when the server cannot start. Used by the fault tests even when
    ``NEO4J_URI`` names an external server, since they stop the server they write to.
    """
    from neo4j_server import Neo4jTestServer, ServerConfig

    started = []

    def start(home=None, **config) -> Neo4jTestServer:
        server = Neo4jTestServer(ServerConfig(home=home, **config))
        started.append(server)
        _start_or_skip(server)
        return server

    yield start
    for server in started:
        server.stop()
