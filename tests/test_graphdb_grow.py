"""A store that grows (issue 12 item 6): two datasets' runs in one real LadybugDB, written by the real
pipeline on two disjoint halves of pbmc3k (two datasets, the same cell types): the second write leaves
the first run untouched, genes are shared, cross-run queries answer, delete_run removes exactly one run,
and every Run node carries its provenance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphdb


@pytest.fixture(scope="module")
def grown(pbmc3k, tmp_path_factory):
    from cellvq import pipeline

    rng = np.random.default_rng(2)
    order = rng.permutation(pbmc3k.n_obs)
    halves = {"pbmc3k_a": np.sort(order[:450]), "pbmc3k_b": np.sort(order[450:900])}
    db = tmp_path_factory.mktemp("grow") / "db"
    results, counts_after_first = {}, None
    for i, (name, idx) in enumerate(halves.items()):
        cmd = f"cellvq run {name}.h5ad --db bolt://alice:s3cret@lab:7687 --graph-epochs 3"
        results[name] = pipeline.run(pbmc3k[idx].copy(), db=db, graph_epochs=3, dataset_id=name,
                                     run_id=f"{name}-run", command=cmd)
        if i == 0:
            with graphdb.open_store(db, read_only=True) as store:
                counts_after_first = store.counts(f"{name}-run")
    return db, results, counts_after_first


def test_second_dataset_leaves_the_first_run_alone_and_shares_genes(grown):
    db, results, first = grown
    a, b = (results[k].tables for k in ("pbmc3k_a", "pbmc3k_b"))
    with graphdb.open_store(db, read_only=True) as store:
        assert store.counts(a.run_id) == first
        total = store.counts()
        genes_a, genes_b = set(a.genes["symbol"]), set(b.genes["symbol"])
        assert genes_a & genes_b and total["Gene"] == len(genes_a | genes_b)
        assert total["Dataset"] == 2 and total["Cell"] == 900
        runs = store.list_runs().set_index("runId")
        assert set(runs.index) == {a.run_id, b.run_id}
        assert runs.loc[a.run_id, "datasetId"] == "pbmc3k_a" and runs.loc[b.run_id, "nCells"] == 450


def test_provenance_on_every_run(grown):
    db, results, _ = grown
    import cellvq.pipeline as pl

    with graphdb.open_store(db, read_only=True) as store:
        runs = store.list_runs().set_index("runId")
    for name, res in results.items():
        row = runs.loc[res.run_id]
        assert row["command"] == f"cellvq run {name}.h5ad --db bolt://lab:7687 --graph-epochs 3"  # no password
        assert row["packageVersion"] == pl.package_version() != "unknown"
        assert row["checkpointHash"] == res.adata.uns["cellvq"]["checkpoint_sha256"]
        assert len(row["checkpointHash"]) == 64 and int(row["checkpointHash"], 16) >= 0
        params = json.loads(row["parameters"])
        assert params["graphEpochs"] == 3 and params["labelKey"] == "cell_type"


def test_runs_with_marker_and_compare_runs(grown):
    db, results, _ = grown
    a, b = (results[k].tables for k in ("pbmc3k_a", "pbmc3k_b"))
    with graphdb.open_store(db, read_only=True) as store:
        hits = store.runs_with_marker("MS4A1", max_rank=10)
        b_cells = hits[hits["stateId"] == "cellType:B"]
        assert set(b_cells["runId"]) == {a.run_id, b.run_id}
        assert set(b_cells["datasetId"]) == {"pbmc3k_a", "pbmc3k_b"} and (hits["rank"] <= 10).all()
        for t in (a, b):  # exactly the table's rows
            mk = t.markers[(t.markers["symbol"] == "MS4A1") & (t.markers["rank"] <= 10) & (t.markers["score"] > 0)]
            assert set(hits.loc[hits["runId"] == t.run_id, "stateId"]) == set(mk["stateId"])
        cmp = store.compare_runs("B", a.run_id, b.run_id)
        ma = set(a.markers.loc[(a.markers["stateId"] == "cellType:B") & (a.markers["score"] > 0), "symbol"])
        mb = set(b.markers.loc[(b.markers["stateId"] == "cellType:B") & (b.markers["score"] > 0), "symbol"])
        groups = cmp.groupby("group")["symbol"].apply(set).to_dict()
        assert groups.get("shared", set()) == ma & mb and groups.get("A only", set()) == ma - mb
        assert {"MS4A1", "CD79A", "CD79B"} & groups["shared"]


def test_delete_run_removes_exactly_one_run(grown, tmp_path):
    import shutil

    db, results, first = grown
    copy = tmp_path / "db"
    shutil.copy(db, copy)
    a, b = (results[k].tables for k in ("pbmc3k_a", "pbmc3k_b"))
    with graphdb.open_store(copy) as store:
        before = store.counts()
        assert store.delete_run(b.run_id) is True
        assert store.delete_run("no-such-run") is False
        assert store.counts(a.run_id) == first
        assert store.counts(b.run_id) == dict.fromkeys(first, 0)
        after = store.counts()
        assert after["Gene"] == before["Gene"] and after["Cell"] == before["Cell"]
        assert store.list_runs()["runId"].tolist() == [a.run_id]
        assert store.runs_with_marker("MS4A1", max_rank=10)["runId"].unique().tolist() == [a.run_id]
