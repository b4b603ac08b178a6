"""`cellvq.run_tables`: each store table of a real pipeline run (pbmc3k subset) holds what the read-outs say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellvq import pipeline, run_tables


@pytest.fixture(scope="module")
def res(pbmc3k):
    rng = np.random.default_rng(3)
    sub = pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, 500, replace=False))].copy()
    return pipeline.run(sub, dataset_id="pbmc3k_sub500", graph_epochs=10, subtype_types=["Naive CD4 T"], quiet=True)


def test_the_result_is_composed_of_the_per_table_functions(res):
    t = res.tables
    same = dict(check_dtype=False)  # RunTables casts columns to the schema's types
    pd.testing.assert_frame_equal(t.cells, run_tables.cells_table(res.adata), **same)
    pd.testing.assert_frame_equal(t.cell_state, run_tables.cell_state_table(res.adata, res.subtypes, res.label_key),
                                  **same)
    pd.testing.assert_frame_equal(t.markers, run_tables.markers_table(res.markers, res.subtypes, res.label_key),
                                  **same)
    dbl = pipeline.bridge_doublet_table(res.adata, res.intermediates)
    pd.testing.assert_frame_equal(t.bridges, run_tables.bridges_table(res.intermediates, res.label_key, dbl), **same)
    assert res.label_key == "cell_type" and '"labelKey": "cell_type"' in t.run["parameters"]


def test_every_cell_has_one_code_one_type_and_its_subtype(res):
    cs = res.tables.cell_state
    kind = cs["stateId"].str.split(":", n=1).str[0]
    per_cell = cs.assign(kind=kind).groupby(["cellId", "kind"]).size().unstack(fill_value=0)
    assert (per_cell["code"] == 1).all() and (per_cell["cellType"] == 1).all()
    labels, _ = res.subtypes["Naive CD4 T"]
    assert per_cell["subtype"].sum() == labels.notna().sum() > 0
    cd4 = res.adata.obs_names[res.adata.obs["cell_type"].astype(str) == "Naive CD4 T"].astype(str)
    assert set(cs.loc[kind == "subtype", "cellId"]) <= set(cd4)  # subtypes only split their parent's cells


def test_subtypes_hang_under_their_parent_and_have_markers(res):
    t = res.tables
    assert set(t.subtype_of["parentStateId"]) == {"cellType:Naive CD4 T"}
    subs = set(t.subtype_of["stateId"])
    assert subs == set(t.states.loc[t.states["kind"] == "subtype", "stateId"])
    assert subs <= set(t.markers["stateId"])


def test_bridges_count_every_intermediate_cell_once_per_unordered_pair(res):
    br = res.tables.bridges
    assert br["nCells"].sum() == len(res.intermediates) > 0
    assert (br["stateA"] < br["stateB"]).all() and not br.duplicated(["stateA", "stateB"]).any()
    types = {f"cellType:{t}" for t in res.adata.obs["cell_type"].astype(str)}
    assert set(br["stateA"]) | set(br["stateB"]) <= types


def test_genes_cover_every_gene_a_table_mentions(res):
    t = res.tables
    genes = set(t.genes["symbol"])
    assert set(t.markers["symbol"]) <= genes and set(t.expresses["symbol"]) <= genes
    assert set(t.co_expressed["source"]) | set(t.regulates["target"]) <= genes
    ensembl = t.genes.set_index("symbol")["ensemblId"]
    assert ensembl.loc["LYZ"] == "ENSG00000090382"  # GENCODE v44, for a monocyte marker
    assert ensembl.notna().mean() > 0.8  # pbmc3k (2016) symbols: some renamed since GENCODE v44
    # the cells' top attended genes: expresses_top_k (5) per cell, the highest attention first
    per_cell = t.expresses.groupby("cellId")["attention"]
    assert per_cell.size().max() == 5
    first = t.expresses.groupby("cellId").head(1).set_index("cellId")["attention"]
    assert (first >= per_cell.max().loc[first.index] - 1e-9).all()


def test_every_bridge_carries_the_doublet_call_of_its_cells(res, tmp_path):
    """The run scores doublets (scrublet on the raw counts) and each BRIDGES row carries its cells' call:
    the share called equals the share of its intermediate cells with predicted_doublet, the mean score
    theirs; the figures reach the store and the summary."""
    import graphdb

    obs, br, inter = res.adata.obs, res.tables.bridges, res.intermediates
    assert {"doublet_score", "predicted_doublet"} <= set(obs) and obs["doublet_score"].between(0, 1).all()
    assert 0 < res.summary["doublet_share"] < 0.2  # PBMCs from one 10x lane: a few percent
    assert len(br) and br["doubletShare"].between(0, 1).all() and br["doubletP"].between(0, 1).all()
    pair = inter.apply(lambda r: "|".join(sorted((str(r.state_a), str(r.state_b)))), axis=1)
    kind = br["stateA"].str.split(":", n=1).str[0].iloc[0]
    for r in br.itertuples(index=False):
        cells = inter.loc[pair == f"{r.stateA.split(':', 1)[1]}|{r.stateB.split(':', 1)[1]}", "cell"].astype(str)
        assert len(cells) == r.nCells and r.stateA.startswith(kind)
        assert r.doubletShare == pytest.approx(obs.loc[cells, "predicted_doublet"].astype(bool).mean())
        assert r.doubletScore == pytest.approx(obs.loc[cells, "doublet_score"].astype(float).mean(), rel=1e-5)
    called = obs.loc[inter["cell"].astype(str), "predicted_doublet"].astype(bool).mean()
    assert res.summary["intermediate_doublet_share"] == pytest.approx(called, abs=1e-4)
    with graphdb.open_store(tmp_path / "s.lbug") as store:
        store.write_run(res.tables)
        back = store.query("MATCH (a:CellState)-[b:BRIDGES]->(c:CellState) RETURN a.stateId AS stateA, "
                           "c.stateId AS stateB, b.doubletShare AS doubletShare ORDER BY stateA, stateB")
    want = br.sort_values(["stateA", "stateB"], ignore_index=True)
    np.testing.assert_allclose(back["doubletShare"].astype(float), want["doubletShare"].astype(float))
