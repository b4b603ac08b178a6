"""Same answers on both stores: every named query on one real pbmc3k run, LadybugDB vs live Neo4j."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
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


def test_names_descriptions_and_evidence_same_on_both_stores(stores):
    """Issue 13 items 2-3 (store): state names/descriptions and REGULATES evidence, identical on both."""
    from graphdb_fixtures import check_names_and_evidence

    by_backend, run_id = stores
    tables = pbmc_run_tables(run_id)
    answers = {}
    for backend, store in by_backend.items():
        check_names_and_evidence(store, tables)  # each store returns what was written
        nodes = store.subtype_graph("Monocyte", run_id=run_id).nodes.sort_values("stateId", ignore_index=True)
        edges = store.grn_edges(run_id=run_id, kinds=("REGULATES",)).sort_values(["source", "target"], ignore_index=True)
        answers[backend] = (nodes[["stateId", "name", "description"]], edges)
    (ln, le), (nn, ne) = answers["ladybug"], answers["neo4j"]
    assert ln.equals(nn) and ln["description"].str.contains("top markers").all()
    assert list(le.columns) == list(ne.columns) and len(le) == len(ne) > 0
    for col in ("rank", "treeImportance", "treeConsensus", "attention", "perturbationZ", "perturbationLogFc",
                "spearman", "nEvidence"):
        np.testing.assert_allclose(pd.to_numeric(le[col]).astype(float), pd.to_numeric(ne[col]).astype(float),
                                   rtol=1e-12, err_msg=col)
