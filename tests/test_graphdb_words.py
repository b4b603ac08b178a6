"""Issue 13 items 2 and 3, store part, on a real pipeline run over pbmc3k cells written to a real LadybugDB:
subtype nodes carry CellVQ-Graph's generated one-line names and descriptions, cell-type states their
descriptions, and REGULATES edges the evidence columns of ``cellvq_graph.regulatory_network`` (camelCase),
all returned by the named queries and the GRN export.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import graphdb

SUBTYPED = ("Naive CD4 T", "CD14+ Mono")


@pytest.fixture(scope="module")
def run(pbmc3k, tmp_path_factory):
    import cellvq_graph as cg
    from cellvq import pipeline

    rng = np.random.default_rng(2)
    keep = []
    for _, idx in pbmc3k.obs.groupby("cell_type", observed=True).indices.items():
        keep.extend(rng.choice(idx, size=min(len(idx), max(8, len(idx) // 4)), replace=False))
    adata = pbmc3k[np.sort(keep)].copy()
    targets = ["LYZ", "S100A8", "S100A9", "CD14", "FCGR3A", "MS4A1", "CD79A", "NKG7", "GNLY", "CCR7", "IL7R",
               "CD3E", "PPBP", "FCER1A", "CST3", "HLA-DRA", "GZMB", "CD8A",
               # transcription factors (Lambert 2018): the candidate regulators are the TFs among the targets
               "LEF1", "TCF7", "SPI1", "CEBPB", "CEBPD", "IRF8", "PAX5", "TBX21", "EOMES", "KLF2", "FOS", "JUNB",
               "IRF1", "STAT1", "RUNX3", "MAFB"]
    cfg = cg.RegulatoryConfig(targets=targets, max_cells=400, n_estimators=40, progress=False, seed=0)
    db = tmp_path_factory.mktemp("words") / "db"
    res = pipeline.run(adata, db=db, graph_epochs=3, dataset_id="pbmc3k_words", subtype_types=SUBTYPED,
                       regulatory=cfg, quiet=True)
    store = graphdb.open_store(db, read_only=True)
    yield res, store
    store.close()


def test_subtype_nodes_carry_generated_names_and_descriptions(run):
    import cellvq_graph as cg

    res, store = run
    for parent in SUBTYPED:
        desc = cg.read_table(res.adata, "subtype_descriptions", parent).set_index("state")
        nodes = store.subtype_graph(parent).nodes.set_index("stateId")
        subs = nodes[nodes["depth"] > 0]
        assert len(subs) == len(desc) >= 2
        labels = subs.index.str.removeprefix("subtype:")
        assert subs["name"].tolist() == desc.loc[labels, "name"].tolist()
        assert subs["description"].tolist() == desc.loc[labels, "description"].tolist()
        assert all(n.startswith(parent) for n in subs["name"])  # "<nearest type> · <GENE>hi ..."
        assert any(" · " in n and n.endswith("hi") for n in subs["name"])
        # markers of a subtype say whose they are
        first = subs.index[0]
        assert (store.markers(first, top=5)["stateName"] == subs.loc[first, "name"]).all()
    # cell-type states keep their label as name (users address them by it) and gain a description
    b = store.subtype_graph("B").nodes.iloc[0]
    assert b["name"] == "B" and b["description"].startswith("B") and " cells (" in b["description"]


def test_regulates_edges_carry_the_regulatory_evidence(run):
    res, store = run
    want = res.tables.regulates
    assert len(want) > 100 and want["weight"].between(0, 1).all()
    got = store.grn_edges(kinds=("REGULATES",))
    key = ["source", "target"]
    merged = want.merge(got, on=key, suffixes=("", "_db"), validate="one_to_one")
    assert len(merged) == len(want) == len(got)
    for col in ("weight", "treeImportance", "treeConsensus", "attention", "spearman"):
        np.testing.assert_allclose(merged[col + "_db"].astype(float), merged[col].astype(float), rtol=1e-12)
    for col in ("rank", "nEvidence"):
        assert merged[col + "_db"].astype(int).tolist() == merged[col].astype(int).tolist()
    assert got["perturbationZ"].isna().all()  # pbmc3k has no perturbation: no observed response
    # the strongest edge is the tree evidence's, and a TF's regulation is readable from the store
    top = got.sort_values("rank").iloc[0]
    assert top["treeImportance"] > 0 and top["nEvidence"] >= 1
    net = store.gene_network(top["source"], kinds=("REGULATES",)).edges
    row = net[(net["source"] == top["source"]) & (net["target"] == top["target"])].iloc[0]
    assert row["spearman"] == pytest.approx(top["spearman"]) and row["rank"] == top["rank"]


def test_grn_export_writes_the_evidence(run, tmp_path):
    _, store = run
    path = store.export_grn(tmp_path / "grn.csv", kinds=("REGULATES",))
    table = pd.read_csv(path)
    assert {"treeImportance", "spearman", "rank", "nEvidence"} <= set(table.columns)
    graphml = store.export_grn(tmp_path / "grn.graphml", kinds=("REGULATES",))
    import networkx as nx

    g = nx.read_graphml(graphml)
    u, v, data = next(iter(g.edges(data=True)))
    assert {"weight", "treeImportance", "spearman"} <= set(data)
