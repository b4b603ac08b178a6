"""CellVQ-Graph on real data: PBMC 3k embedded by the shipped CellVQ checkpoint (fixture ``pbmc3k_embedded``).

One model is trained per module (full batch) and every read-out is checked against biology: canonical
markers (curated list with literature sources, ``cellvq_graph/resources/pbmc_canonical_markers.csv``)
measured beside scanpy's Wilcoxon test, naive/memory CD4 T subtypes, intermediate cells between related
states, non-trivial gene modules, TF -> target orientation, export round trips and checkpoints.
"""

from __future__ import annotations

import json
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import cellvq_graph as cg
from cellvq_graph.build import GENE_CELL

T_POOL = {"T": ["Naive CD4 T", "Memory CD4 T", "CD8 T"]}
EVAL = ["B", "NK", "CD14+ Mono", "T"]

# Floors set just below what was measured with the shipped checkpoint over three training seeds
# (attention precision@10 0.475-0.625 with the default contrast; Wilcoxon 0.40; benchmarks/graph.py).
ATT_FLOOR = 0.4
ATT_VS_WILCOXON = 0.05


@pytest.fixture(scope="module")
def run(pbmc3k_embedded):
    adata = pbmc3k_embedded.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tissue/disease/age/sex are not in pbmc3k
        model = cg.tl.fit(adata, train=cg.GraphTrainConfig(seed=0), progress=False)
    return adata, model


@pytest.fixture(scope="module")
def wilcoxon_top10(pbmc3k_embedded):
    import scanpy as sc

    b = pbmc3k_embedded.copy()
    with cg.keep_torch_threads():  # scanpy's numba/OpenMP kernels reset torch's thread count
        sc.pp.normalize_total(b, target_sum=1e4)
        sc.pp.log1p(b)
        b.obs["group"] = (
            b.obs["cell_type"].astype(str).replace({m: "T" for m in T_POOL["T"]}).astype("category")
        )
        sc.tl.rank_genes_groups(b, "group", method="wilcoxon")
    names = b.uns["rank_genes_groups"]["names"]
    return pd.DataFrame(
        [(s, names[s][i], i + 1) for s in EVAL for i in range(10)], columns=["state", "gene", "rank"]
    )


def test_graph_has_all_node_and_edge_types(run):
    adata, model = run
    data = model.graph
    assert set(data.node_types) == {"cell", "gene", "property", "state"}
    for et in data.edge_types:
        assert data[et].edge_index.size(1) > 0, et
    gi = data.graph_index
    assert gi.state_keys == ["cellvq_code"] and gi.property_kinds == ["cell_type"]
    assert len(gi.categories["cellvq_code"]) == adata.obs["cellvq_code"].nunique()
    assert data["cell"].x.shape == adata.obsm["X_cellvq"].shape
    # genes are in the foundation vocabulary and carry its embedding
    pos = adata.var_names.get_indexer(gi.genes)
    assert adata.var["cellvq_in_vocab"].to_numpy()[pos].all()
    assert np.allclose(data["gene"].x.numpy(), adata.varm["cellvq_gene"][pos])
    assert 500 <= len(gi.genes) <= 5000


def test_training_learns_to_identify_masked_cells(run):
    _, model = run
    first, last = model.history[0], model.history[-1]
    assert last["loss"] < first["loss"]
    # a masked cell's type is recovered from its genes far above chance (9 types; largest is 26%)
    assert last["acc/cell_type"] > 0.6
    proba = model.predict(model.graph, "cell_type")
    acc = (proba.idxmax(1).to_numpy() == run[0].obs["cell_type"].astype(str).to_numpy()).mean()
    assert acc > 0.6


def test_attention_rows_are_distributions(run):
    adata, _ = run
    A = adata.layers["cellvq_graph_attention"]
    sums = np.asarray(A.sum(1)).ravel()
    assert np.allclose(sums[sums > 0], 1.0, atol=1e-3)
    assert adata.obsm["X_cellvq_graph"].shape[0] == adata.n_obs


def test_markers_find_canonical_genes_next_to_wilcoxon(run, wilcoxon_top10):
    adata, _ = run
    mk = cg.markers(adata, "cell_type", groups=T_POOL)
    assert {"state", "gene", "score", "rank", "attention", "frac_cells", "logfc"} <= set(mk.columns)
    att = cg.marker_precision(mk, k=10, states=EVAL)
    wil = cg.marker_precision(wilcoxon_top10, k=10, states=EVAL)
    att_mean, wil_mean = float(np.mean(list(att.values()))), float(np.mean(list(wil.values())))
    print(f"\nprecision@10 attention {att_mean:.3f} {att}\nprecision@10 wilcoxon  {wil_mean:.3f} {wil}")
    assert att_mean >= ATT_FLOOR
    assert att_mean >= wil_mean - ATT_VS_WILCOXON
    # each evaluated type has at least one canonical marker in its attention top 10
    assert min(att.values()) > 0
    top = mk[mk["rank"] <= 10]
    # markers are up in their state
    assert (top["logfc"] > 0).mean() > 0.9
    stored = cg.read_table(adata, "markers", "cell_type")
    assert len(stored) == len(mk)


def test_paper_readouts_code_markers_and_code_gene_network(run):
    adata, _ = run
    cm = cg.code_markers(adata, n_top=10)
    assert set(cm["state"]) == set(adata.obs["cellvq_code"].astype(str))
    assert (cm.groupby("state")["attention"].apply(lambda s: s.is_monotonic_decreasing)).all()
    code = adata.obs["cellvq_code"].value_counts().index[0]
    G = cg.code_gene_network(adata, code, n_edges=100)
    assert 0 < G.number_of_edges() <= 100
    assert all(d["weight"] > 0 for *_, d in G.edges(data=True))


def test_property_importance_follows_the_codes(run):
    adata, _ = run
    pi = cg.property_importance(adata, "cellvq_code")
    assert {"state", "property_kind", "property_value", "attention"} <= set(pi.columns)
    top = (
        pi.sort_values("attention", ascending=False)
        .groupby("state")
        .head(1)
        .set_index("state")["property_value"]
    )
    majority = adata.obs.groupby("cellvq_code", observed=True)["cell_type"].agg(
        lambda s: s.astype(str).value_counts().index[0]
    )
    agree = (top.reindex(majority.index.astype(str)).to_numpy() == majority.to_numpy()).mean()
    assert agree > 0.9


def test_subtypes_separate_naive_and_memory_cd4(run):
    from sklearn.metrics import adjusted_rand_score

    adata, _ = run
    labels, mk = cg.subtypes(adata, ["Naive CD4 T", "Memory CD4 T"], n_subtypes=2)
    truth = adata.obs.loc[labels.index, "cell_type"].astype(str)
    ari = adjusted_rand_score(truth, labels)
    print(f"\nsubtypes of CD4 T: {labels.value_counts().to_dict()} ARI vs naive/memory {ari:.3f}")
    assert labels.nunique() == 2
    assert ari > 0.5  # measured 0.74-0.83 over three seeds
    assert len(mk) > 0 and set(mk["state"]) <= set(labels)
    assert adata.obs["cellvq_graph_subtype"].notna().sum() == len(labels)


def test_intermediate_cells_bridge_related_states(run):
    adata, _ = run
    inter = cg.intermediate_states(adata, "cell_type")
    assert {"cell", "state_a", "state_b", "score"} <= set(inter.columns)
    assert inter["score"].between(0, 1).all()
    pairs = inter.apply(lambda r: frozenset((r.state_a, r.state_b)), axis=1).value_counts()
    naive_memory = int(pairs.get(frozenset(("Naive CD4 T", "Memory CD4 T")), 0))
    b_mono = int(pairs.get(frozenset(("B", "CD14+ Mono")), 0))
    print(f"\nintermediate cells: {len(inter)}; Naive-Memory CD4 {naive_memory}; B-CD14+ Mono {b_mono}")
    assert naive_memory >= 30
    assert naive_memory >= 10 * max(b_mono, 1)


def test_gene_network_modules_and_tf_orientation(run):
    adata, _ = run
    G = cg.gene_network(adata)
    assert isinstance(G, nx.DiGraph) and G.number_of_edges() > 100
    modules = pd.Series(dict(G.nodes(data="module")))
    print(
        f"\ngene network: {G.number_of_nodes()} genes, {G.number_of_edges()} edges, {modules.nunique()} modules"
    )
    assert modules.nunique() > 1
    assert modules.value_counts().max() < G.number_of_nodes()
    tfs = cg.load_tf_list()
    assert len(tfs) == 1639
    kinds = {d["kind"] for *_, d in G.edges(data=True)}
    assert kinds <= {"regulates", "co_expressed"}
    n_tf_edges = 0
    for u, v, d in G.edges(data=True):
        if (u in tfs) != (v in tfs):
            n_tf_edges += 1
            assert u in tfs and d["kind"] == "regulates", (u, v)
        if u not in tfs and v not in tfs:
            assert d["kind"] == "co_expressed"
    assert n_tf_edges > 0


def test_gene_network_exports_round_trip(run, tmp_path):
    adata, _ = run
    G = cg.gene_network(adata)
    paths = cg.export_network(G, tmp_path)

    def edges_w(H):
        return {(u, v): round(float(d["weight"]), 6) for u, v, d in H.edges(data=True)}

    gml = nx.read_graphml(paths["graphml"])
    assert set(gml.nodes) == set(G.nodes) and edges_w(gml) == edges_w(G)
    assert all(gml.nodes[n]["module"] == G.nodes[n]["module"] for n in G.nodes)
    df = pd.read_csv(paths["csv"])
    csv = nx.from_pandas_edgelist(df, "source", "target", edge_attr=True, create_using=nx.DiGraph)
    assert set(csv.nodes) == set(G.nodes) and edges_w(csv) == edges_w(G)
    sif = nx.DiGraph()
    for line in paths["sif"].read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            sif.add_edge(parts[0], parts[2], kind=parts[1])
        else:
            sif.add_node(parts[0])
    assert set(sif.nodes) == set(G.nodes) and set(sif.edges) == set(G.edges)
    assert all(sif[u][v]["kind"] == G[u][v]["kind"] for u, v in G.edges)
    cy = nx.cytoscape_graph(json.loads(paths["cyjs"].read_text()))
    assert set(cy.nodes) == set(G.nodes) and edges_w(cy) == edges_w(G)


def test_integrated_gradients_and_agreement_with_attention(run, tmp_path):
    adata, model = run
    ig = cg.integrated_gradients(
        model, model.graph, "cell_type", groups=T_POOL, states=EVAL, n_cells=40, n_steps=8, adata=adata
    )
    assert {"state", "gene", "attribution", "rank"} <= set(ig.columns)
    prec = cg.marker_precision(ig, k=10, states=EVAL)
    att = cg.markers(adata, "cell_type", groups=T_POOL, n_top=None)
    agree = cg.attribution_agreement(ig, att)
    print(f"\nIG precision@10 {np.mean(list(prec.values())):.3f} {prec}\n{agree.to_string()}")
    assert np.mean(list(prec.values())) >= 0.3  # measured 0.375-0.475
    # the two explanations agree beyond chance: positive rank correlation in every evaluated state
    assert (agree["spearman"] > 0).all()
    assert agree["overlap@20"].mean() > 0.2
    fig = cg.plot_agreement(agree, tmp_path / "agreement.png")
    assert (tmp_path / "agreement.png").stat().st_size > 0
    assert len(fig.axes[0].patches) == len(agree) * 3
    with pytest.raises(KeyError, match="not predicted"):
        cg.integrated_gradients(model, model.graph, "seurat_clusters")


def test_save_load_round_trip_and_bad_checkpoints(run, tmp_path):
    adata, model = run
    path = model.save(tmp_path / "m")
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json", "index.json"}
    loaded = cg.CellVQGraph.load(path)
    a1 = model.attention(model.graph, mode="full", embedding="full")
    a2 = loaded.attention(model.graph, mode="full", embedding="full")
    assert np.allclose(a1.mean(GENE_CELL), a2.mean(GENE_CELL), atol=1e-6)
    with pytest.raises(FileExistsError):
        model.save(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["hidden"] = cfg["hidden"] * 2
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("model.safetensors", "index.json"):
        (bad / f).write_bytes((path / f).read_bytes())
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        cg.CellVQGraph.load(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        cg.CellVQGraph.load(bad)


def test_minibatch_training_and_readout(run):
    adata, model = run
    data = model.graph
    small = cg.CellVQGraph.from_graph(data, hidden=16, heads=2, seed=1)
    small.fit(data, cg.GraphTrainConfig(epochs=2, batch_size=512), progress=False)
    assert len(small.history) == 2 and np.isfinite(small.history[-1]["loss"])
    ro = small.attention(data, batch_size=512)
    att = ro.mean(GENE_CELL)
    assert np.isfinite(att).all()
    sums = np.bincount(data[GENE_CELL].edge_index[1].numpy(), weights=att, minlength=adata.n_obs)
    assert np.allclose(sums[sums > 0], 1.0, atol=1e-3)  # every seed cell read out over all its genes


def test_annotated_anndata_writes_to_h5ad(run, tmp_path):
    import anndata as ad

    adata, _ = run
    cg.markers(adata, "cellvq_code")
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert "cellvq_graph" in back.uns and "markers" in back.uns["cellvq_graph"]
    assert back.layers["cellvq_graph_attention"].nnz == adata.layers["cellvq_graph_attention"].nnz


def test_seeded_training_is_reproducible_on_several_threads(pbmc3k_embedded):
    """Two seeded trainings on 2 threads give bit-identical graph embeddings. Before message passing ran
    with deterministic kernels they differed by ~2e-6, and the demo's intermediate cells and gene-network
    edges moved between runs. The caller's torch setting is left as it was."""
    import torch

    a = pbmc3k_embedded[:800].copy()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outs = []
        for _ in range(2):
            b = a.copy()
            cg.tl.fit(b, properties=["cell_type"], train=cg.GraphTrainConfig(epochs=10, seed=0), progress=False)
            outs.append(b.obsm["X_cellvq_graph"])
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(outs[0], outs[1])
    assert not torch.are_deterministic_algorithms_enabled()


def test_subtypes_get_names_from_their_markers(run):
    adata, _ = run
    labels, mk = cg.subtypes(adata, ["Naive CD4 T", "Memory CD4 T"], n_subtypes=2)
    names = mk.groupby("state")["state_name"].first()
    print(f"\nsubtype names: {names.to_dict()}")
    assert sorted(n.split(" · ")[0] for n in names) == ["Memory CD4 T", "Naive CD4 T"]
    naive = next(n for n in names if n.startswith("Naive"))
    assert {"CCR7hi", "LEF1hi", "SELLhi", "TCF7hi"} & set(naive.split(" · ")[1].split())
    desc = cg.read_table(adata, "subtype_descriptions", "Naive CD4 T+Memory CD4 T")
    assert set(desc["name"]) == set(names) and desc["description"].str.contains("log2FC").all()
    named = adata.obs["cellvq_graph_subtype_name"].dropna().astype(str)
    assert len(named) == len(labels) and set(named) == set(names)


def test_states_named_from_curated_markers_without_labels(run):
    adata, _ = run
    mk = cg.markers(adata, "cell_type", key_added="names")
    desc = cg.describe_states(adata, mk, "cell_type", cg.DescribeConfig(reference_key=None))
    expect = {"B": "B", "NK": "NK", "CD14+ Mono": "CD14+ Mono", "FCGR3A+ Mono": "FCGR3A+ Mono", "DC": "DC",
              "Platelet": "Platelet", "Naive CD4 T": "T", "Memory CD4 T": "T", "CD8 T": "T"}
    got = dict(zip(desc["state"], desc["nearest_type"]))
    print(f"\nnames without labels: {dict(zip(desc['state'], desc['name']))}")
    assert sum(got[s] == t for s, t in expect.items()) >= 7, got


def test_bridges_described_by_both_sides_markers(run):
    adata, _ = run
    mk = cg.markers(adata, "cell_type", key_added="bridges")
    br = cg.describe_bridges(adata, cg.intermediate_states(adata, "cell_type"), mk)
    top = br.iloc[0]
    assert {top["state_a"], top["state_b"]} == {"Memory CD4 T", "Naive CD4 T"}
    assert "bridge" in top["name"] and "Naive CD4 T markers:" in top["description"]
    assert br["n_cells"].is_monotonic_decreasing


def test_bridges_scored_against_scrublet_doublets(run):
    """The Naive/Memory CD4 bridge is biology, not doublets: scrublet scores it like cells in no bridge."""
    import scanpy as sc

    adata, _ = run
    b = adata.copy()
    with cg.keep_torch_threads():
        sc.pp.scrublet(b, threshold=0.25, random_state=0)  # fixed threshold: no scikit-image
    adata.obs["doublet_score"] = b.obs["doublet_score"].to_numpy()
    mk = cg.markers(adata, "cell_type", key_added="doublets")
    br = cg.describe_bridges(adata, cg.intermediate_states(adata, "cell_type"), mk).set_index("bridge")
    cd4 = br.loc["Memory CD4 T|Naive CD4 T"]
    print(f"\nbridge doublet scores: {br[['n_cells', 'doublet_score', 'doublet_score_rest']].to_dict('index')}")
    assert "doublet score" in cd4["description"]
    assert cd4["doublet_score"] < 1.5 * cd4["doublet_score_rest"]
