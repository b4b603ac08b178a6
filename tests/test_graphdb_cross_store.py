"""Same answers on both stores: every named query on one real pbmc3k run, LadybugDB vs live Neo4j."""

from __future__ import annotations

import uuid

import pytest
from graphdb_fixtures import NAMED_QUERIES, assert_same_answers, pbmc_run_tables

from graphdb import open_store

pytestmark = pytest.mark.neo4j_live


@pytest.fixture(scope="module")
def stores(neo4j_live, tmp_path_factory):
    tables = pbmc_run_tables(f"xstore-{uuid.uuid4().hex[:8]}")
    lady = open_store(tmp_path_factory.mktemp("xstore") / "db")
    neo = neo4j_live.open(batch_size=5_000)
    for store in (lady, neo):
        store.write_run(tables)
    yield {"ladybug": lady, "neo4j": neo}, tables.run_id
    neo.delete_run(tables.run_id)
    neo.close()
    lady.close()


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_named_query_same_rows_on_both_stores(stores, name):
    by_backend, run_id = stores
    query = NAMED_QUERIES[name]
    assert_same_answers(query(by_backend["ladybug"], run_id), query(by_backend["neo4j"], run_id))
