"""Same answers on both stores: every named query on one real pbmc3k run, LadybugDB vs live Neo4j."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from graphdb_fixtures import pbmc_run_tables

from graphdb import open_store

pytestmark = pytest.mark.neo4j_live

QUERIES = {
    "markers": lambda s, r: s.markers("B", top=25, run_id=r),
    "states_for_gene": lambda s, r: s.states_for_gene("LYZ", run_id=r),
    "subtype_graph": lambda s, r: s.subtype_graph("T cell", run_id=r),
    "gene_network": lambda s, r: s.gene_network("LYZ", depth=2, run_id=r),
    "state_properties": lambda s, r: s.state_properties("Platelet", run_id=r),
    "compare_states": lambda s, r: s.compare_states("Naive CD4 T", "Memory CD4 T", run_id=r, top=None),
    "export_grn": lambda s, r: s.grn_edges(run_id=r, kinds=("REGULATES", "CO_EXPRESSED")),
}


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


def _frames(answer) -> dict[str, pd.DataFrame]:
    if isinstance(answer, pd.DataFrame):
        return {"rows": answer}
    if hasattr(answer, "nodes"):
        return {"nodes": answer.nodes, "edges": answer.edges}
    bridge = pd.DataFrame([answer.bridge]) if answer.bridge else pd.DataFrame()
    return {"markers": answer.markers, "properties": answer.properties, "bridge": bridge}


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(sorted(frame.columns), axis=1)
    frame = frame.apply(lambda c: pd.to_numeric(c) if c.dtype == object and c.map(lambda v: isinstance(v, int | float) or v is None).all() else c)
    return frame.sort_values(list(frame.columns), ignore_index=True, na_position="last")


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_named_query_same_rows_on_both_stores(stores, name):
    by_backend, run_id = stores
    lady = _frames(QUERIES[name](by_backend["ladybug"], run_id))
    neo = _frames(QUERIES[name](by_backend["neo4j"], run_id))
    assert lady.keys() == neo.keys()
    for part in lady:
        a, b = _canonical(lady[part]), _canonical(neo[part])
        assert list(a.columns) == list(b.columns), part
        assert len(a) == len(b) and len(a) > 0, (part, len(a), len(b))
        for col in a.columns:
            if pd.api.types.is_numeric_dtype(a[col]) and pd.api.types.is_numeric_dtype(b[col]):
                np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=1e-12, err_msg=f"{part}.{col}")
            else:
                # a missing value is NaN in one frame and None in the other: compare it as None
                assert [None if pd.isna(v) else v for v in a[col]] == [None if pd.isna(v) else v for v in b[col]], \
                    f"{part}.{col}"


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
