"""Real-data RunTables for the graphdb tests, built from the bundled PBMC 3k counts.

Nothing here is invented: states are the annotated PBMC cell types (coarse cell types, their
subtypes) and k-means clusters; markers are the genes with the largest difference in mean
log-normalised expression between a state and all other cells; co-expression and regulator
edges are Pearson correlations across cells (regulators = Lambert 2018 human TFs); bridges are
cells whose nearest neighbours (PCA space) fall in another cell type; properties are library-size
and mitochondrial-fraction tertiles. "attention" columns stand in for CellVQ-Graph attention:
the share of a state's marker score (markers), of its cells (properties) or of a cell's top
expression (expresses).

Build time is a few seconds; results are cached per process.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphdb import RunTables

ROOT = Path(__file__).resolve().parents[1]
PBMC3K = ROOT / "foundation" / "datasets" / "files" / "pbmc3k_counts.h5ad"
GENCODE = ROOT / "foundation" / "datasets" / "files" / "gencode_v44_gene_id2name.csv.gz"
TFS_CANDIDATES = (
    ROOT / "cellvq_graph" / "resources" / "human_tfs_lambert2018.txt",
    ROOT.parent / "shared" / "data" / "human_tfs_lambert2018.txt",
)

COARSE = {
    "Naive CD4 T": "T cell",
    "Memory CD4 T": "T cell",
    "CD8 T": "T cell",
    "CD14+ Mono": "Monocyte",
    "FCGR3A+ Mono": "Monocyte",
    "B": "B",
    "NK": "NK",
    "DC": "DC",
    "Platelet": "Platelet",
}
N_CLUSTERS = 8
SEED = 0


@functools.lru_cache(maxsize=1)
def _analysis() -> dict:
    """Everything derived from the counts (cached): log-normalised matrix, labels, correlations."""
    adata = ad.read_h5ad(PBMC3K)
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    lib = np.asarray(x.sum(axis=1)).ravel()
    norm = sp.diags(1e4 / lib) @ x
    logn = norm.copy()
    logn.data = np.log1p(logn.data)
    genes = np.asarray(adata.var_names, dtype=object)
    frac_expr = np.asarray((x > 0).mean(axis=0)).ravel()
    keep = frac_expr >= 0.01  # genes detected in >= 1 % of cells
    obs = adata.obs
    fine = obs["cell_type"].astype(str).to_numpy()

    # PCA space (for k-means clusters and neighbour-based bridges) on the 500 most variable genes
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    mean = np.asarray(logn.mean(axis=0)).ravel()
    sq = np.asarray(logn.multiply(logn).mean(axis=0)).ravel()
    var = sq - mean**2
    hv = np.argsort(-var * keep)[:500]
    sub = logn[:, hv].toarray()
    sub = (sub - sub.mean(0)) / (sub.std(0) + 1e-8)
    evals, evecs = np.linalg.eigh(sub.T @ sub)
    pcs = sub @ evecs[:, ::-1][:, :20]
    clusters = KMeans(n_clusters=N_CLUSTERS, n_init=1, random_state=SEED).fit_predict(pcs)
    nn = NearestNeighbors(n_neighbors=16).fit(pcs)
    _, idx = nn.kneighbors(pcs)
    return {
        "obs": obs,
        "obs_names": np.asarray(adata.obs_names, dtype=object),
        "logn": logn.tocsr(),
        "norm": norm.tocsr(),
        "genes": genes,
        "keep": keep,
        "fine": fine,
        "clusters": clusters,
        "neighbours": idx[:, 1:],
    }


def _group_stats(
    logn: sp.csr_matrix, norm: sp.csr_matrix, members: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group: mean log-normalised expression in / out, and log2 fold change of normalised means."""
    names = list(members)
    ind = sp.csr_matrix(np.vstack([members[n] for n in names]).astype(np.float64))
    n_in = np.asarray(ind.sum(axis=1)).ravel()[:, None]
    n_out = logn.shape[0] - n_in
    sum_in = np.asarray((ind @ logn).todense())
    sum_all = np.asarray(logn.sum(axis=0)).ravel()[None, :]
    nsum_in = np.asarray((ind @ norm).todense())
    nsum_all = np.asarray(norm.sum(axis=0)).ravel()[None, :]
    mean_in, mean_out = sum_in / n_in, (sum_all - sum_in) / n_out
    logfc = np.log2((nsum_in / n_in + 0.01) / ((nsum_all - nsum_in) / n_out + 0.01))
    return {n: (mean_in[i], mean_out[i], logfc[i]) for i, n in enumerate(names)}


def _ensembl_ids() -> dict[str, str]:
    table = pd.read_csv(GENCODE)
    table = table.drop_duplicates("symbol", keep="first")
    return dict(zip(table["symbol"], table["ensembl_id"]))


def _tfs() -> set[str]:
    for path in TFS_CANDIDATES:
        if path.exists():
            return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    raise FileNotFoundError(f"human_tfs_lambert2018.txt not found in {[str(p) for p in TFS_CANDIDATES]}")


def _describe(name: str, n_cells: int, markers: pd.DataFrame) -> str:
    """A state's description from its evidence: size and strongest markers (with log2 fold change)."""
    top = markers.sort_values("rank").head(3)
    genes = ", ".join(f"{g} (log2FC {fc:.1f})" for g, fc in zip(top["symbol"], top["logFc"]))
    return f"{name}: {n_cells} cells; top markers {genes or 'none'}"


def _regulatory_evidence(
    reg: pd.DataFrame, tf_expr: np.ndarray, tfs: list[str], target_expr: np.ndarray, targets: list[str]
) -> pd.DataFrame:
    """REGULATES evidence columns as cellvq_graph.regulatory_network names them (camelCase): the
    Spearman correlation of TF and target across cells and the edge's rank by weight; the fixture has
    no trees, attention or perturbation, so those columns are missing (null) and nEvidence is 0."""
    from scipy.stats import rankdata

    tr = rankdata(tf_expr, axis=0)
    gr = rankdata(target_expr, axis=0)
    tz = (tr - tr.mean(0)) / (tr.std(0) + 1e-12)
    gz = (gr - gr.mean(0)) / (gr.std(0) + 1e-12)
    ti = reg["source"].map({g: i for i, g in enumerate(tfs)}).to_numpy()
    gi = reg["target"].map({g: j for j, g in enumerate(targets)}).to_numpy()
    out = reg.copy()
    out["spearman"] = (tz[:, ti] * gz[:, gi]).mean(axis=0)
    out["rank"] = out["weight"].rank(ascending=False, method="first").astype(np.int64)
    for col in ("treeImportance", "treeConsensus", "attention", "perturbationZ", "perturbationLogFc"):
        out[col] = np.nan
    out["nEvidence"] = 0
    return out


def pbmc_run_tables(
    run_id: str = "pbmc3k-r1",
    *,
    created_at: str = "2026-01-01T00:00:00+00:00",
    n_markers: int = 25,
    co_min_r: float = 0.3,
    grn_min_r: float = 0.25,
    expresses_top_k: int = 5,
    n_cells: int | None = None,
) -> RunTables:
    """A RunTables of PBMC 3k with real markers, networks, subtypes, bridges and properties.

    ``n_cells`` keeps only the first cells (for quick tests); states and markers still come from
    all cells.
    """
    a = _analysis()
    obs, fine, clusters = a["obs"], a["fine"], a["clusters"]
    logn, norm, genes, keep = a["logn"], a["norm"], a["genes"], a["keep"]
    cell_ids = a["obs_names"]
    coarse = np.array([COARSE[f] for f in fine], dtype=object)

    # ---- states and memberships
    state_rows, members = [], {}
    for name in sorted(set(coarse)):
        sid = f"cellType:{name}"
        state_rows.append({"stateId": sid, "kind": "cellType", "name": name})
        members[sid] = coarse == name
    for name in sorted(f for f in set(fine) if COARSE[f] != f):
        sid = f"subtype:{name}"
        state_rows.append({"stateId": sid, "kind": "subtype", "name": name})
        members[sid] = fine == name
    for k in range(N_CLUSTERS):
        sid = f"cluster:{k}"
        state_rows.append({"stateId": sid, "kind": "cluster", "name": f"k-means {k}"})
        members[sid] = clusters == k
    states = pd.DataFrame(state_rows)
    states["nCells"] = [int(members[s].sum()) for s in states["stateId"]]

    # ---- markers: top mean-difference genes per state
    marker_rows = []
    stats = _group_stats(logn, norm, members)
    for sid in members:
        mean_in, mean_out, logfc = stats[sid]
        score = np.where(keep, mean_in - mean_out, -np.inf)
        top = np.argsort(-score)[:n_markers]
        top = top[score[top] > 0]
        total = score[top].sum()
        for rank, g in enumerate(top, start=1):
            marker_rows.append(
                {
                    "stateId": sid,
                    "symbol": genes[g],
                    "score": float(score[g]),
                    "rank": rank,
                    "attention": float(score[g] / total),
                    "logFc": float(logfc[g]),
                }
            )
    markers = pd.DataFrame(marker_rows)
    marker_genes = sorted(set(markers["symbol"]))
    states["description"] = [_describe(r.name, r.nCells, markers[markers["stateId"] == r.stateId])
                             for r in states.itertuples()]

    # ---- co-expression among marker genes; regulator (TF) -> marker edges
    gidx = {g: i for i, g in enumerate(genes)}
    mcols = np.array([gidx[g] for g in marker_genes])
    m = logn[:, mcols].toarray()  # cells x marker genes
    corr = np.corrcoef(m, rowvar=False)
    iu, ju = np.triu_indices(len(marker_genes), k=1)
    sel = corr[iu, ju] >= co_min_r
    co = pd.DataFrame(
        {
            "source": np.array(marker_genes, dtype=object)[iu[sel]],
            "target": np.array(marker_genes, dtype=object)[ju[sel]],
            "weight": corr[iu, ju][sel],
        }
    )
    tfs = sorted(g for g in _tfs() if g in gidx and keep[gidx[g]])
    t = logn[:, [gidx[g] for g in tfs]].toarray()
    tz = (t - t.mean(0)) / (t.std(0) + 1e-12)
    mz = (m - m.mean(0)) / (m.std(0) + 1e-12)
    tcorr = tz.T @ mz / len(tz)
    ti, mi = np.nonzero(tcorr >= grn_min_r)
    reg = pd.DataFrame(
        {
            "source": np.array(tfs, dtype=object)[ti],
            "target": np.array(marker_genes, dtype=object)[mi],
            "weight": tcorr[ti, mi],
        }
    )
    reg = reg[reg["source"] != reg["target"]].reset_index(drop=True)
    reg = _regulatory_evidence(reg, t, tfs, m, marker_genes)

    # ---- genes
    used = sorted(set(marker_genes) | set(reg["source"]) | set(reg["target"]))
    ens = _ensembl_ids()
    gene_table = pd.DataFrame({"symbol": used, "ensemblId": [ens.get(g) for g in used]})

    # ---- subtypes and bridges (neighbours in another fine cell type)
    subtype_of = pd.DataFrame(
        [{"stateId": f"subtype:{f}", "parentStateId": f"cellType:{c}"} for f, c in COARSE.items() if f != c]
    )
    fine_state = np.array([f"subtype:{f}" if COARSE[f] != f else f"cellType:{f}" for f in fine], dtype=object)
    nb = fine_state[a["neighbours"]]
    other = nb != fine_state[:, None]
    bridge_counts: dict[tuple[str, str], int] = {}
    for i in np.nonzero(other.mean(axis=1) >= 0.3)[0]:
        labels, counts = np.unique(nb[i][other[i]], return_counts=True)
        target = labels[np.argmax(counts)]
        pair = tuple(sorted((fine_state[i], target)))
        bridge_counts[pair] = bridge_counts.get(pair, 0) + 1
    sizes = pd.Series(fine_state).value_counts()
    bridges = pd.DataFrame(
        [
            {"stateA": s1, "stateB": s2, "score": n / min(sizes[s1], sizes[s2]), "nCells": n}
            for (s1, s2), n in sorted(bridge_counts.items())
            if n >= 2
        ]
    )

    # ---- cell properties: library size and mitochondrial fraction tertiles
    lib_bin = pd.qcut(obs["nCount_RNA"], 3, labels=["low", "mid", "high"]).astype(str).to_numpy()
    mt_bin = pd.qcut(obs["percent.mt"], 3, labels=["low", "mid", "high"]).astype(str).to_numpy()
    properties = pd.DataFrame(
        [{"propertyId": f"{k}:{v}", "kind": k, "value": v} for k in ("libSize", "mitoFraction") for v in ("low", "mid", "high")]
    )
    cell_property = pd.DataFrame(
        {
            "cellId": np.concatenate([cell_ids, cell_ids]),
            "propertyId": np.concatenate(
                [np.char.add("libSize:", lib_bin.astype(str)), np.char.add("mitoFraction:", mt_bin.astype(str))]
            ).astype(object),
        }
    )
    assoc_rows = []
    for sid, member in members.items():
        for kind, bins in (("libSize", lib_bin), ("mitoFraction", mt_bin)):
            values, counts = np.unique(bins[member], return_counts=True)
            for v, c in zip(values, counts):
                assoc_rows.append({"stateId": sid, "propertyId": f"{kind}:{v}", "attention": c / member.sum()})
    associated = pd.DataFrame(assoc_rows)

    # ---- cell -> top-k expressed marker genes
    top_k = np.argsort(-m, axis=1)[:, :expresses_top_k]
    vals = np.take_along_axis(m, top_k, axis=1)
    att = vals / np.maximum(vals.sum(axis=1, keepdims=True), 1e-12)
    expresses = pd.DataFrame(
        {
            "cellId": np.repeat(cell_ids, expresses_top_k),
            "symbol": np.array(marker_genes, dtype=object)[top_k.ravel()],
            "attention": att.ravel(),
        }
    )
    expresses = expresses[vals.ravel() > 0].reset_index(drop=True)

    cells = pd.DataFrame(
        {
            "cellId": cell_ids,
            "nCounts": obs["nCount_RNA"].to_numpy(dtype=float),
            "nGenes": obs["nFeature_RNA"].to_numpy(dtype=np.int64),
            "umap1": obs["UMAP_1"].to_numpy(dtype=float),
            "umap2": obs["UMAP_2"].to_numpy(dtype=float),
        }
    )
    cell_state = pd.DataFrame(
        {
            "cellId": np.concatenate([cell_ids[mem] for mem in members.values()]),
            "stateId": np.concatenate([[sid] * int(mem.sum()) for sid, mem in members.items()]).astype(object),
        }
    )
    if n_cells is not None:
        kept = set(cell_ids[:n_cells])
        cells = cells[cells["cellId"].isin(kept)]
        cell_state = cell_state[cell_state["cellId"].isin(kept)]
        cell_property = cell_property[cell_property["cellId"].isin(kept)]
        expresses = expresses[expresses["cellId"].isin(kept)]

    return RunTables(
        run={
            "runId": run_id,
            "model": "mean-difference markers on log-normalised counts (graphdb test fixture)",
            "checkpointHash": "none",
            "parameters": {"nMarkers": n_markers, "coExpressionMinR": co_min_r, "grnMinR": grn_min_r, "seed": SEED},
            "createdAt": created_at,
        },
        dataset={"datasetId": "pbmc3k", "name": "10x PBMC 3k (Seurat tutorial cells)", "nCells": len(cell_ids)},
        cells=cells,
        genes=gene_table,
        states=states,
        properties=properties,
        cell_state=cell_state,
        cell_property=cell_property,
        markers=markers,
        co_expressed=co,
        regulates=reg,
        subtype_of=subtype_of,
        bridges=bridges,
        associated_with=associated,
        expresses=expresses,
    )


# ============================================================================================
# Assertions shared by the embedded suite and the live Neo4j suite: both stores must pass the
# very same checks.

MONOCYTE_STATES = {"CD14+ Mono", "FCGR3A+ Mono", "Monocyte"}


def expected_run_counts(tables: RunTables) -> dict[str, int]:
    """The per-run node / relationship counts a store must hold after writing ``tables``."""
    return {
        "CellState": len(tables.states),
        "Property": len(tables.properties),
        "ON_DATASET": 1,
        "IN_STATE": len(tables.cell_state),
        "HAS_PROPERTY": len(tables.cell_property),
        "MARKER_OF": len(tables.markers),
        "CO_EXPRESSED": len(tables.co_expressed),
        "REGULATES": len(tables.regulates),
        "SUBTYPE_OF": len(tables.subtype_of),
        "BRIDGES": len(tables.bridges),
        "ASSOCIATED_WITH": len(tables.associated_with),
        "EXPRESSES": len(tables.expresses),
        "Perturbation": len(tables.perturbations),
        "SHIFTS": len(tables.shifts),
    }


def check_round_trip(store, tables: RunTables) -> None:
    """Everything written comes back: counts, run metadata, markers, cells, genes."""
    run_id = tables.run_id
    assert store.counts(run_id) == expected_run_counts(tables)
    runs = store.runs().set_index("runId")
    assert runs.loc[run_id, "status"] == "complete"
    assert runs.loc[run_id, "model"] == tables.run["model"]
    assert runs.loc[run_id, "parameters"] == tables.run["parameters"]
    assert runs.loc[run_id, "createdAt"] == tables.run["createdAt"]
    assert runs.loc[run_id, "datasetId"] == tables.dataset_id
    # every marker of every state, exactly
    got = store.query(
        "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState) "
        "RETURN s.stateId AS stateId, g.symbol AS symbol, m.score AS score, m.rank AS rank, "
        "m.attention AS attention, m.logFc AS logFc",
        {"runId": run_id},
    )
    want = tables.markers
    key = ["stateId", "symbol"]
    got = got.sort_values(key, ignore_index=True)
    want = want.sort_values(key, ignore_index=True)
    assert list(got["symbol"]) == list(want["symbol"])
    for col in ("score", "rank", "attention", "logFc"):
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-12)
    # cell properties and gene identifiers
    cell = tables.cells.iloc[7]
    row = store.query(
        "MATCH (c:Cell {uid: $uid}) RETURN c.cellId AS cellId, c.nCounts AS nCounts, c.nGenes AS nGenes",
        {"uid": f"{tables.dataset_id}:{cell['cellId']}"},
    )
    assert row["cellId"].iloc[0] == cell["cellId"]
    assert float(row["nCounts"].iloc[0]) == float(cell["nCounts"])
    assert int(row["nGenes"].iloc[0]) == int(cell["nGenes"])
    genes = store.query("MATCH (g:Gene) WHERE g.symbol IN $s RETURN g.symbol AS symbol, g.ensemblId AS e",
                        {"s": ["LYZ", "MS4A1", "NKG7"]})
    assert dict(zip(genes["symbol"], genes["e"])) == {
        "LYZ": "ENSG00000090382", "MS4A1": "ENSG00000156738", "NKG7": "ENSG00000105374"}


def _ego_symbols(tables: RunTables, symbol: str, depth: int, kinds: tuple[str, ...]) -> set[str]:
    import networkx as nx

    g = nx.Graph()
    g.add_node(symbol)
    for kind in kinds:
        frame = tables.regulates if kind == "REGULATES" else tables.co_expressed
        g.add_edges_from(zip(frame["source"], frame["target"]))
    return set(nx.ego_graph(g, symbol, radius=depth).nodes)


def check_named_queries(store, tables: RunTables) -> None:
    """The named queries return the biologically expected rows, equal to the tables."""
    run_id = tables.run_id
    # markers: B cells are marked by MS4A1 / CD79A; order and values match the table
    b = store.markers("B", top=10, run_id=run_id)
    assert len(b) == 10 and list(b["rank"]) == list(range(1, 11))
    assert {"MS4A1", "CD79A"} & set(b["symbol"])
    want = tables.markers[tables.markers["stateId"] == "cellType:B"].sort_values("rank").head(10)
    assert list(b["symbol"]) == list(want["symbol"])
    assert store.markers("cellType:B", top=10, run_id=run_id).equals(b)
    nk = store.markers("NK", top=5, run_id=run_id)
    assert {"NKG7", "GNLY"} <= set(nk["symbol"])
    # states_for_gene: LYZ is a monocyte gene; scores descending; Ensembl IDs work too
    lyz = store.states_for_gene("LYZ", run_id=run_id)
    annotated = lyz[lyz["kind"].isin(["cellType", "subtype"])]
    assert annotated["name"].iloc[0] in MONOCYTE_STATES
    assert list(lyz["score"]) == sorted(lyz["score"], reverse=True)
    expected = tables.markers[tables.markers["symbol"] == "LYZ"]
    assert set(lyz["stateId"]) == set(expected["stateId"])
    assert store.states_for_gene("ENSG00000090382", run_id=run_id).equals(lyz)
    nkg7 = store.states_for_gene("NKG7", run_id=run_id)
    assert nkg7[nkg7["kind"].isin(["cellType", "subtype"])]["name"].iloc[0] == "NK"
    # subtype graph: T cells split into naive CD4, memory CD4 and CD8; naive<->memory CD4 bridge most
    t = store.subtype_graph("T cell", run_id=run_id)
    assert set(t.nodes["name"]) == {"T cell", "Naive CD4 T", "Memory CD4 T", "CD8 T"}
    assert (t.edges["type"] == "SUBTYPE_OF").sum() == 3
    br = t.edges[t.edges["type"] == "BRIDGES"].sort_values("nCells", ascending=False)
    assert {br["source"].iloc[0], br["target"].iloc[0]} == {"subtype:Naive CD4 T", "subtype:Memory CD4 T"}
    g = t.to_networkx()
    assert g.has_edge("subtype:CD8 T", "cellType:T cell", key="SUBTYPE_OF")
    mono = store.subtype_graph("Monocyte", run_id=run_id)
    assert set(mono.nodes["name"]) == {"Monocyte", "CD14+ Mono", "FCGR3A+ Mono"}
    # gene network: exactly the ego network of the tables; S100A8/9 sit next to LYZ
    for depth, kinds in ((1, ("CO_EXPRESSED", "REGULATES")), (2, ("REGULATES",)), (1, ("CO_EXPRESSED",))):
        net = store.gene_network("LYZ", depth=depth, kinds=kinds, run_id=run_id)
        assert set(net.nodes["symbol"]) == _ego_symbols(tables, "LYZ", depth, kinds)
        assert set(net.edges["type"]) <= set(kinds)
        nodes = set(net.nodes["symbol"])
        assert set(net.edges["source"]) <= nodes and set(net.edges["target"]) <= nodes
    net1 = store.gene_network("LYZ", depth=1, run_id=run_id)
    assert {"S100A8", "S100A9"} <= set(net1.nodes["symbol"])
    co = tables.co_expressed.set_index(["source", "target"])["weight"]
    e = net1.edges[net1.edges["type"] == "CO_EXPRESSED"].set_index(["source", "target"])["weight"]
    np.testing.assert_allclose(e.to_numpy(), co.loc[e.index].to_numpy())
    strong = store.gene_network("LYZ", depth=1, run_id=run_id, min_weight=0.7)
    assert len(strong.edges) < len(net1.edges) and (strong.edges["weight"] >= 0.7).all()
    # state properties: platelets have small libraries, dendritic cells large ones
    pl = store.state_properties("Platelet", run_id=run_id)
    assert (pl["kind"].iloc[0], pl["value"].iloc[0]) == ("libSize", "low")
    np.testing.assert_allclose(pl["fraction"], pl["attention"])  # fixture attention = fraction of cells
    dc = store.state_properties("DC", run_id=run_id)
    assert (dc["kind"].iloc[0], dc["value"].iloc[0]) == ("libSize", "high")
    # compare: naive vs memory CD4 T
    cmp = store.compare_states("Naive CD4 T", "Memory CD4 T", run_id=run_id, top=None)
    ma = set(tables.markers[tables.markers["stateId"] == "subtype:Naive CD4 T"]["symbol"])
    mb = set(tables.markers[tables.markers["stateId"] == "subtype:Memory CD4 T"]["symbol"])
    groups = cmp.markers.groupby("group")["symbol"].apply(set).to_dict()
    assert groups.get("A only", set()) == ma - mb
    assert groups.get("B only", set()) == mb - ma
    assert groups.get("shared", set()) == ma & mb
    pair = ["subtype:Naive CD4 T", "subtype:Memory CD4 T"]
    want_bridge = tables.bridges[tables.bridges["stateA"].isin(pair) & tables.bridges["stateB"].isin(pair)]
    assert cmp.bridge is not None and cmp.bridge["nCells"] == int(want_bridge["nCells"].iloc[0])
    assert {"kind", "value", "attentionA", "attentionB", "deltaAttention"} <= set(cmp.properties.columns)
    # user query with parameters
    q = store.query(
        "MATCH (g:Gene)-[m:MARKER_OF {runId: $runId}]->(s:CellState {name: $name}) "
        "RETURN g.symbol AS symbol ORDER BY m.rank LIMIT 3",
        {"runId": run_id, "name": "NK"},
    )
    assert list(q["symbol"]) == list(nk["symbol"].head(3))
    check_names_and_evidence(store, tables)


def check_names_and_evidence(store, tables: RunTables) -> None:
    """State names and descriptions, and the REGULATES evidence columns, come back as written."""
    run_id = tables.run_id
    described = tables.states.set_index("stateId")
    assert (store.markers("cellType:B", top=3, run_id=run_id)["stateName"] == "B").all()
    t = store.subtype_graph("T cell", run_id=run_id).nodes.set_index("stateId")
    assert t["description"].to_dict() == described.loc[t.index, "description"].to_dict()
    n_cd8 = int(described.loc["subtype:CD8 T", "nCells"])
    assert t.loc["subtype:CD8 T", "description"].startswith(f"CD8 T: {n_cd8} cells; top markers ")
    key = ["source", "target"]
    want = tables.regulates.sort_values(key, ignore_index=True)
    got = store.grn_edges(run_id=run_id, kinds=("REGULATES",)).sort_values(key, ignore_index=True)
    assert got[key].equals(want[key])
    np.testing.assert_allclose(got["spearman"].astype(float), want["spearman"], rtol=1e-12)
    assert got["rank"].astype(int).tolist() == want["rank"].astype(int).tolist()
    assert got["nEvidence"].astype(int).eq(0).all()
    assert got["perturbationZ"].isna().all() and got["treeImportance"].isna().all()
    net = store.gene_network("LYZ", depth=1, kinds=("REGULATES",), run_id=run_id).edges
    assert len(net) > 0
    ref = want.set_index(key)["spearman"]
    np.testing.assert_allclose(net["spearman"].astype(float), ref.loc[list(zip(net["source"], net["target"]))])


def check_idempotent_rewrite(store, tables: RunTables, **write_kwargs) -> None:
    """Writing the same run again leaves every count of the store unchanged."""
    before = store.counts()
    store.write_run(tables, **write_kwargs)
    assert store.counts() == before
    assert store.counts(tables.run_id) == expected_run_counts(tables)


KILL_CHILD = r"""
import os, pickle, sys, time
import graphdb
target, pickle_path, stop_at, method = sys.argv[1:5]
with open(pickle_path, "rb") as fh:
    tables = pickle.load(fh)
store = graphdb.open_store(target)

def hook(step, rows):
    if step == stop_at:
        print("PAUSED", step, flush=True)
        time.sleep(600)

kwargs = {"method": method} if method != "-" else {}
store.write_run(tables, on_step=hook, batch_size=500, **kwargs)
print("FINISHED", flush=True)
"""


def kill_mid_write(target: str, tables: RunTables, tmp_dir: Path, stop_at: str, method: str = "-") -> None:
    """Start writing ``tables`` to ``target`` in a child process and SIGKILL it at step ``stop_at``."""
    import pickle
    import signal
    import subprocess
    import sys

    pickle_path = Path(tmp_dir) / "tables.pkl"
    with open(pickle_path, "wb") as fh:
        pickle.dump(tables, fh)
    script = Path(tmp_dir) / "kill_child.py"
    script.write_text(KILL_CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), target, str(pickle_path), stop_at, method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("PAUSED"), f"child did not reach {stop_at!r}: {line!r} {child.stderr.read()[-2000:]}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def check_run_invisible(store, tables: RunTables) -> None:
    """Named queries refuse the (incomplete) run ``tables.run_id``, and the default run is never it."""
    from graphdb import NotFoundError

    for call in (
        lambda: store.markers("B", run_id=tables.run_id),
        lambda: store.states_for_gene("LYZ", run_id=tables.run_id),
        lambda: store.gene_network("LYZ", run_id=tables.run_id),
    ):
        try:
            call()
        except NotFoundError as exc:
            assert "incomplete" in str(exc) and "write_run" in str(exc)
        else:
            raise AssertionError("a partially written run was visible to a named query")
    try:  # the default (latest complete) run is never the partial one
        assert store.resolve_run() != tables.run_id
    except NotFoundError as exc:
        assert "no complete run" in str(exc) and tables.run_id in str(exc)


def check_interrupted_write(store_factory, target: str, tables: RunTables, tmp_dir: Path, stop_at: str,
                            method: str = "-", atomic: bool = False) -> None:
    """A write killed at ``stop_at`` leaves no visible run; writing the run again completes it.

    ``atomic``: the backend writes the facts in one transaction, so none may survive the kill.
    """
    kill_mid_write(target, tables, tmp_dir, stop_at, method)
    with store_factory() as store:
        runs = store.runs().set_index("runId")
        assert runs.loc[tables.run_id, "status"] == "writing"
        left = store.counts(tables.run_id)
        if atomic:
            assert sum(left.values()) == 1, left  # only the ON_DATASET link, written before the transaction
        else:
            assert 0 < sum(left.values()) < sum(expected_run_counts(tables).values()), left
        check_run_invisible(store, tables)
        store.write_run(tables)
        check_round_trip(store, tables)
        assert len(store.markers("B", top=10, run_id=tables.run_id)) == 10


# ============================================================================================
# Same answers from two stores: every named query, compared row by row (cross-store and
# bulk-import tests).

#: One call of each named query on the pbmc3k run, ``(store, run_id) -> answer``.
NAMED_QUERIES = {
    "markers": lambda s, r: s.markers("B", top=25, run_id=r),
    "states_for_gene": lambda s, r: s.states_for_gene("LYZ", run_id=r),
    "subtype_graph": lambda s, r: s.subtype_graph("T cell", run_id=r),
    "gene_network": lambda s, r: s.gene_network("LYZ", depth=2, run_id=r),
    "state_properties": lambda s, r: s.state_properties("Platelet", run_id=r),
    "compare_states": lambda s, r: s.compare_states("Naive CD4 T", "Memory CD4 T", run_id=r, top=None),
    "export_grn": lambda s, r: s.grn_edges(run_id=r, kinds=("REGULATES", "CO_EXPRESSED")),
}


def answer_frames(answer) -> dict[str, pd.DataFrame]:
    """A named query's answer as named DataFrames (a frame, a subgraph's nodes/edges, a comparison)."""
    if isinstance(answer, pd.DataFrame):
        return {"rows": answer}
    if hasattr(answer, "nodes"):
        return {"nodes": answer.nodes, "edges": answer.edges}
    bridge = pd.DataFrame([answer.bridge]) if answer.bridge else pd.DataFrame()
    return {"markers": answer.markers, "properties": answer.properties, "bridge": bridge}


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns sorted, numeric object columns made numeric, rows sorted: order-free comparison."""
    frame = frame.reindex(sorted(frame.columns), axis=1)
    frame = frame.apply(lambda c: pd.to_numeric(c) if c.dtype == object and c.map(
        lambda v: isinstance(v, int | float) or v is None).all() else c)
    return frame.sort_values(list(frame.columns), ignore_index=True, na_position="last")


def assert_same_answers(answer_a, answer_b, rtol: float = 1e-12) -> None:
    """Two answers of one named query hold the same non-empty rows (numbers to ``rtol``)."""
    a_parts, b_parts = answer_frames(answer_a), answer_frames(answer_b)
    assert a_parts.keys() == b_parts.keys()
    for part in a_parts:
        a, b = canonical_frame(a_parts[part]), canonical_frame(b_parts[part])
        assert list(a.columns) == list(b.columns), part
        assert len(a) == len(b) and len(a) > 0, (part, len(a), len(b))
        for col in a.columns:
            if pd.api.types.is_numeric_dtype(a[col]) and pd.api.types.is_numeric_dtype(b[col]):
                np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=rtol,
                                           err_msg=f"{part}.{col}")
            else:  # a missing value is NaN in one frame and None in the other: compare it as None
                assert [None if pd.isna(v) else v for v in a[col]] == [None if pd.isna(v) else v for v in b[col]], \
                    f"{part}.{col}"
