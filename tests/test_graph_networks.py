"""Regulatory networks with directional evidence, on the Papalexi THP-1 CRISPR screen (real knock-outs).

Observed targets of a knocked-out TF come from one biological replicate (rep_1); the networks are built
from the other two, so a test passes only if the evidence generalises across replicates. Measured
(benchmarks/graph.py --grn): regulatory-score AUROC of held-out observed targets 0.88 (STAT1), 0.92 (IRF1),
0.89 (SMAD4); expression-only trees for STAT1 (no IFN-gamma-axis knock-out cells) 0.66.
"""

from __future__ import annotations

import numpy as np
import pytest

from cellvq_graph import export_network, read_cytoscape_json, read_edge_csv, read_graphml
from cellvq_graph.networks import (
    EVIDENCE_COLUMNS,
    RegulatoryConfig,
    edges_to_networkx,
    grn_benchmark,
    load_tf_target_reference,
    perturbation_response,
    regulatory_network,
    target_rank_auroc,
)

KO_TFS = ("STAT1", "IRF1", "SMAD4")  # knock-outs with a response reproduced across replicates
IFNG_AXIS = {"STAT1", "IRF1", "IFNGR1", "IFNGR2", "JAK2"}
CFG = RegulatoryConfig(max_cells=1500, n_estimators=100, progress=False)


@pytest.fixture(scope="module")
def papalexi():
    from foundation import datasets

    return datasets.papalexi_crispr()


@pytest.fixture(scope="module")
def observed(papalexi):
    """Genes that respond to each knock-out in rep_1 (|Welch t| > 4), the knocked-out gene excluded."""
    rep1 = papalexi[papalexi.obs["bio_rep"].astype(str).to_numpy() == "rep_1"]
    r = perturbation_response(rep1)
    r = r[(r["perturbation_z"].abs() > 4) & (r["source"] != r["target"])]
    return {tf: r.loc[r["source"] == tf, "target"].tolist() for tf in KO_TFS}


@pytest.fixture(scope="module")
def network(papalexi):
    b = papalexi[papalexi.obs["bio_rep"].astype(str).to_numpy() != "rep_1"].copy()
    return regulatory_network(b, CFG, perturbation_response(b))


def test_knocked_out_tf_targets_rank_above_random(network, observed):
    rng = np.random.default_rng(0)
    net = network.assign(_random=rng.random(len(network)))
    for tf in KO_TFS:
        assert len(observed[tf]) >= 5, tf
        auc = target_rank_auroc(net, tf, observed[tf])
        auc_random = target_rank_auroc(net, tf, observed[tf], "_random")
        assert auc > 0.8, (tf, auc)
        assert auc - auc_random > 0.2, (tf, auc, auc_random)


def test_unmeasured_knocked_out_tf_is_a_regulator_from_its_perturbation(network):
    irf1 = network[network["source"] == "IRF1"]  # IRF1 is not among the 299 measured genes
    assert len(irf1) > 200
    assert irf1["tree_importance"].isna().all() and irf1["perturbation_z"].notna().all()
    assert set(EVIDENCE_COLUMNS) <= set(network.columns)
    assert network["rank"].is_monotonic_increasing and network["score"].is_monotonic_decreasing


def test_expression_alone_points_to_stat1_knockout_targets(papalexi, observed):
    """Trees on cells without any IFN-gamma-axis knock-out: STAT1's expression predicts its KO targets."""
    keep = ~papalexi.obs["perturbation"].astype(str).isin(IFNG_AXIS).to_numpy()
    edges = regulatory_network(papalexi[keep].copy(), CFG)
    assert edges["perturbation_z"].isna().all()
    auc = target_rank_auroc(edges, "STAT1", observed["STAT1"], "tree_importance")
    assert auc > 0.58, auc


def test_export_keeps_every_evidence_column(network, tmp_path):
    G = edges_to_networkx(network, top=300)
    paths = export_network(G, tmp_path, "grn", formats=("graphml", "csv", "cyjs"))
    cols = {*EVIDENCE_COLUMNS, "weight", "kind", "rank", "n_evidence", "has_perturbation"}
    u, v = next(iter(G.edges))
    for reader, key in ((read_graphml, "graphml"), (read_edge_csv, "csv"), (read_cytoscape_json, "cyjs")):
        H = reader(paths[key])
        assert H.number_of_edges() == 300, key
        assert cols <= set(H[u][v]), (key, cols - set(H[u][v]))
        assert float(H[u][v]["weight"]) == pytest.approx(G[u][v]["weight"]), key


def test_trrust_benchmark_on_one_candidate_set(network):
    from foundation import datasets

    ref = load_tf_target_reference(datasets.shared_data_dir() / "references" / "trrust_v2_human.tsv.gz")
    assert len(ref) > 8000 and {"STAT1", "IRF1"} <= set(ref["source"])
    net = network.assign(abs_z=network["perturbation_z"].abs())
    table = grn_benchmark(net, ref, {"score": "score", "perturbation": "abs_z"}, ks=(10, 50))
    assert table["n_candidates"].nunique() == 1 and (table["n_positives"] > 0).all()
    assert set(table["method"]) == {"score", "perturbation", "random (mean of 50)"}
    assert ((table["auprc"] > 0) & (table["auprc"] <= 1)).all()


def test_bad_input_names_the_fix(papalexi):
    with pytest.raises(KeyError, match="key="):
        perturbation_response(papalexi, key="guide")
    with pytest.raises(ValueError, match="control="):
        perturbation_response(papalexi, control="NT")
