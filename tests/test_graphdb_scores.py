"""Named queries and exports as a biologist reads them, on a real pipeline run over pbmc3k cells written to a
real LadybugDB. Issue 15 item 8: marker lists hold enriched genes (positive scores) unless asked otherwise,
and compare_states never ranks a gene depleted in B among A's differences. Item 14: export-grn exports
both edge kinds with a `kind` column, as many edges as the run summary counts.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphdb


@pytest.fixture(scope="module")
def run(pbmc3k, tmp_path_factory):
    from cellvq import pipeline

    rng = np.random.default_rng(1)
    keep = []
    for _, idx in pbmc3k.obs.groupby("cell_type", observed=True).indices.items():
        keep.extend(rng.choice(idx, size=min(len(idx), max(5, len(idx) // 8)), replace=False))
    db = tmp_path_factory.mktemp("scores") / "db"
    res = pipeline.run(pbmc3k[np.sort(keep)].copy(), db=db, graph_epochs=3, dataset_id="pbmc3k_sub")
    return res, db


@pytest.fixture(scope="module")
def written(run):
    res, db = run
    store = graphdb.open_store(db, read_only=True)
    yield store, res.tables.markers
    store.close()


def test_the_run_has_negative_marker_scores(written):
    _, markers = written
    assert (markers["score"] < 0).sum() > 0  # the case of the issue: depleted genes in the marker table


def test_states_for_gene_lists_enriched_states_only(written):
    store, markers = written
    lyz = markers[markers["symbol"] == "LYZ"]
    got = store.states_for_gene("LYZ")
    assert (got["score"] > 0).all()
    assert set(got["stateId"]) == set(lyz.loc[lyz["score"] > 0, "stateId"])
    every = store.states_for_gene("LYZ", include_negative=True)
    assert set(every["stateId"]) == set(lyz["stateId"]) and len(every) > len(got)
    annotated = got[got["kind"] == "cellType"]
    assert annotated["name"].iloc[0] in {"CD14+ Mono", "FCGR3A+ Mono", "DC"}


def test_marker_lists_exclude_negative_scores(written):
    store, markers = written
    for state in ("cellType:B", "cellType:NK", "cellType:Platelet"):
        table = markers[markers["stateId"] == state]
        got = store.markers(state, top=200)
        assert (got["score"] > 0).all()
        assert len(got) == int((table["score"] > 0).sum())
        assert len(store.markers(state, top=200, include_negative=True)) == len(table)


def test_compare_states_puts_a_differences_first(written):
    store, markers = written
    cmp = store.compare_states("cellType:B", "cellType:NK", top=None)
    m = cmp.markers
    pos = markers[markers["score"] > 0]
    a = set(pos.loc[pos["stateId"] == "cellType:B", "symbol"])
    b = set(pos.loc[pos["stateId"] == "cellType:NK", "symbol"])
    assert set(m["symbol"]) == a | b
    # genes depleted in NK (negative score there) and absent from B's list are not B's differences
    depleted_in_b = set(markers.loc[(markers["stateId"] == "cellType:NK") & (markers["score"] < 0), "symbol"]) - a
    head = m.head(20)
    assert not (set(head["symbol"]) & depleted_in_b)
    assert (head["scoreA"] > 0).all() and ((head["group"] == "A only") | (head["deltaScore"] > 0)).all()
    assert m["deltaScore"].isna().tolist() == (m["group"] != "shared").tolist()
    assert m["group"].iloc[-1] == "B only" or m["deltaScore"].iloc[-1] < 0
    # B's strongest genes lead when the comparison is turned around
    rev = store.compare_states("cellType:NK", "cellType:B", top=None).markers
    assert {"NKG7", "GNLY", "GZMB", "PRF1", "CST7", "GZMA"} & set(rev.head(10)["symbol"])


def test_export_grn_exports_both_kinds_as_counted_by_the_summary(run, tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from cellvq.cli import app

    res, db = run
    path = tmp_path / "grn.csv"
    out = CliRunner().invoke(app, ["export-grn", str(path), "--db", str(db)])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(path)
    n_reg, n_co = len(res.tables.regulates), len(res.tables.co_expressed)
    assert n_reg > 0 and n_co > 0
    assert len(table) == res.summary["gene_network_edges"] == n_reg + n_co
    assert table["kind"].value_counts().to_dict() == {"REGULATES": n_reg, "CO_EXPRESSED": n_co}
    assert f"{n_reg + n_co:,} edges (CO_EXPRESSED {n_co:,}, REGULATES {n_reg:,})" in " ".join(out.stdout.split())
    only = tmp_path / "reg.graphml"
    out = CliRunner().invoke(app, ["export-grn", str(only), "--db", str(db), "--kind", "regulates"])
    assert out.exit_code == 0, out.output
    back = graphdb.read_grn(only)
    assert len(back) == n_reg and set(back["kind"]) == {"REGULATES"}
