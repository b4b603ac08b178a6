"""`cellvq.report.write_report` on a real pipeline run (a stratified ~600-cell subset of pbmc3k)."""

from __future__ import annotations

import re
import shlex

import matplotlib.image as mpimg
import numpy as np
import pytest

from cellvq import pipeline
from cellvq.report import REPORT_FILES, write_report

PNGS = [f for f in REPORT_FILES if f.endswith(".png")]


def stratified_subset(adata, n: int, seed: int = 0, key: str = "cell_type"):
    """About ``n`` cells with every label kept in proportion (at least 5 cells of each)."""
    rng = np.random.default_rng(seed)
    frac = n / adata.n_obs
    keep = []
    for _, idx in adata.obs.groupby(key, observed=True).indices.items():
        k = min(len(idx), max(5, round(len(idx) * frac)))
        keep.extend(rng.choice(idx, size=k, replace=False))
    return adata[np.sort(keep)].copy()


@pytest.fixture(scope="module")
def run_and_copy(pbmc3k, tmp_path_factory):
    """The pipeline result and a copy of its AnnData taken before any report is written."""
    sub = stratified_subset(pbmc3k, 600)
    db = tmp_path_factory.mktemp("report_db") / "db"
    res = pipeline.run(sub, db=db, dataset_id="pbmc3k_sub600", graph_epochs=30)
    return res, res.adata.copy()


@pytest.fixture(scope="module")
def result(run_and_copy):
    return run_and_copy[0]


@pytest.fixture(scope="module")
def report_dir(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    path = write_report(result, out)
    assert path == out / "report.md"
    return out


def _top(result, state: str, n: int = 10, groupby: str = "cell_type") -> list[str]:
    mk = result.markers[groupby]
    mk = mk[mk["state"].astype(str) == state].sort_values("rank")
    return mk["gene"].astype(str).head(n).tolist()


def test_every_file_is_written(report_dir):
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(REPORT_FILES)
    # nothing half-built is left beside the folder
    assert [p.name for p in report_dir.parent.iterdir()] == ["report"]


@pytest.mark.parametrize("name", PNGS)
def test_figures_are_real_images(report_dir, name):
    img = mpimg.imread(report_dir / name)
    h, w = img.shape[:2]
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert 500 <= h <= 3000 and 800 <= w <= 4000, (name, img.shape)
    rgb = img[..., :3]
    # not blank: a real share of the pixels is drawn (not white) and there is colour
    drawn = (rgb < 0.95).any(axis=2).mean()
    assert drawn > 0.03, (name, drawn)
    assert rgb.std(axis=(0, 1)).max() > 0.05


def test_figures_leave_pyplot_alone(result, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    write_report(result, tmp_path / "again")
    assert plt.get_fignums() == before


def test_umap_is_computed_once(result, report_dir):
    xy = result.umap
    assert xy.shape == (result.adata.n_obs, 2) and np.isfinite(xy).all()
    assert result.umap is xy  # kept on the result: a second report reuses it
    # the layout separates the labelled types: a cell's nearest UMAP neighbour mostly shares its label
    from sklearn.neighbors import NearestNeighbors

    labels = result.adata.obs["cell_type"].astype(str).to_numpy()
    nn = NearestNeighbors(n_neighbors=2).fit(xy).kneighbors(xy, return_distance=False)[:, 1]
    assert (labels[nn] == labels).mean() > 0.7


def test_report_leaves_the_result_alone(run_and_copy, report_dir, tmp_path):
    """The report reads the run's label key and UMAP from the result and writes nothing into its AnnData."""
    result, before = run_and_copy
    write_report(result, tmp_path / "again")
    after = result.adata
    assert result.label_key == "cell_type"
    assert after.obs.equals(before.obs) and after.var.equals(before.var)
    for slot in ("obsm", "layers", "uns", "varm", "obsp", "varp"):
        assert set(getattr(after, slot).keys()) == set(getattr(before, slot).keys()), slot
    assert np.array_equal(after.obsm["X_cellvq"], before.obsm["X_cellvq"])


def test_report_md_mentions_the_run(result, report_dir):
    md = (report_dir / "report.md").read_text()
    s = result.summary
    assert result.run_id in md and str(result.db) in md
    assert f"| cells | {s['cells']:,} |" in md
    assert f"{s['codes_used']} of " in md and f"{s['code_perplexity']:.2f}" in md
    assert f"{s['code_ari']:.3f}" in md and f"{s['code_nmi']:.3f}" in md
    for name in PNGS:
        assert f"]({name})" in md, name
    for step in result.timings:
        assert f"| {step} |" in md


def test_report_md_marker_tables_are_the_results(result, report_dir):
    md = (report_dir / "report.md").read_text()
    for state in ("B", "NK", "CD14+ Mono"):
        genes = _top(result, state)
        row = next(line for line in md.splitlines() if line.startswith(f"| {state} |"))
        assert ", ".join(genes) in row, (state, row)
    # real biology, not only self-consistency: canonical markers lead these states
    assert {"MS4A1", "CD79A", "CD79B"} & set(_top(result, "B"))
    assert {"GNLY", "NKG7", "GZMB"} & set(_top(result, "NK"))
    assert {"LYZ", "S100A8", "S100A9", "CD14"} & set(_top(result, "CD14+ Mono"))


def test_report_md_describes_the_marker_score_it_shows(result, report_dir):
    """The text says score = state mean attention minus the highest other state's, and that is what the
    ranked table holds (recomputed here from the attention layer)."""
    import scipy.sparse as sp

    md = (report_dir / "report.md").read_text()
    assert "minus the highest mean attention of any other state" in md
    assert "minus mean attention elsewhere" not in md
    adata = result.adata
    A = sp.csr_matrix(adata.layers["cellvq_graph_attention"])
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    states = [s for s in np.unique(labels) if (labels == s).sum() >= 3]
    mk = result.markers["cell_type"]
    gaps = []
    for state in ("B", "NK", "CD14+ Mono"):
        for row in mk[(mk["state"].astype(str) == state) & (mk["rank"] <= 10)].itertuples(index=False):
            j = adata.var_names.get_loc(row.gene)
            mean = {s: A[labels == s, j].mean() for s in states}
            highest_other = max(v for s, v in mean.items() if s != state)
            assert row.score == pytest.approx(mean[state] - highest_other, rel=1e-4, abs=1e-7), (state, row.gene)
            gaps.append(abs(row.score - (mean[state] - A[labels != state, j].mean())))
    assert max(gaps) > 1e-3  # the mean over all other cells would give other scores


def test_report_md_bridges_and_modules(result, report_dir):
    md = (report_dir / "report.md").read_text()
    br = result.tables.bridges.sort_values("nCells", ascending=False).iloc[0]
    assert f"| {br.stateA} | {br.stateB} | {int(br.nCells):,} |" in md
    for sub in result.tables.subtype_of["stateId"].str.removeprefix("subtype:"):
        assert f"| {sub} |" in md
    # the strongest module (largest total edge weight), computed here independently, leads the modules table
    assert "## Gene modules" in md
    G = result.network.to_undirected()
    members = {}
    for n, m in result.network.nodes(data="module"):
        members.setdefault(m, []).append(n)
    strength = {m: G.subgraph(g).size(weight="weight") for m, g in members.items()}
    best = max(strength, key=strength.get)
    deg = dict(G.subgraph(members[best]).degree(weight="weight"))
    hubs = sorted(deg, key=lambda g: (-deg[g], g))[:3]
    table = md.split("## Gene modules", 1)[1].split("## Timings", 1)[0]
    first = next(line for line in table.splitlines() if re.match(r"^\| \d+ \|", line))
    assert first.startswith(f"| {best} | {len(members[best])} |"), first
    for g in hubs:
        assert re.search(rf"(^|[ *]){re.escape(g)}([*,]| \()", first.split("|")[5]), (g, first)


def test_report_commands_reproduce_the_marker_table(result, report_dir):
    """The `cellvq cypher` command printed in report.md, run as written, gives the report's B markers."""
    from typer.testing import CliRunner

    from cellvq.cli import app

    md = (report_dir / "report.md").read_text()
    cmds = [line for line in md.splitlines() if line.startswith("cellvq ")]
    every = next(c for c in cmds if "kind=cellType" in c)
    got = CliRunner().invoke(app, ["cypher", *shlex.split(every)[2:], "--json"])
    assert got.exit_code == 0, got.output
    import json

    rows = json.loads(got.stdout)
    b = [r["symbol"] for r in sorted(rows, key=lambda r: r["rank"]) if r["state"] == "B"]
    assert b == _top(result, "B")
    named = next(c for c in cmds if c.startswith("cellvq query markers") and "state=cellType:B " in c)
    got = CliRunner().invoke(app, shlex.split(named)[1:] + ["--json"])
    assert got.exit_code == 0, got.output
    assert [r["symbol"] for r in json.loads(got.stdout)] == _top(result, "B")


def test_rewrite_replaces_and_keeps_foreign_files(result, tmp_path):
    out = tmp_path / "rep"
    write_report(result, out)
    (out / "umap_cell_type.png").write_bytes(b"stale")
    write_report(result, out)  # only report files inside: the folder is swapped whole
    assert mpimg.imread(out / "umap_cell_type.png").ndim == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    # a folder that also holds other things (e.g. the run's database) keeps them
    (out / "db").mkdir()
    (out / "db" / "keep.txt").write_text("mine")
    write_report(result, out)
    assert (out / "db" / "keep.txt").read_text() == "mine"
    assert set(REPORT_FILES) <= {p.name for p in out.iterdir()}


def test_failure_leaves_nothing_behind(result, tmp_path, monkeypatch):
    from cellvq.report import modules

    def boom(*a, **k):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(modules, "figure", boom)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(result, tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []


def test_report_without_labels(pbmc3k, tmp_path):
    """No label column: states are codes; no cell-type UMAP; heatmap and bridges use codes."""
    sub = stratified_subset(pbmc3k, 300, seed=1)
    del sub.obs["cell_type"]
    with pytest.warns(UserWarning, match="no labelled states"):
        res = pipeline.run(sub, db=None, dataset_id="nolabels", graph_epochs=10)
    out = tmp_path / "rep"
    write_report(res, out)
    names = {p.name for p in out.iterdir()}
    assert names == set(REPORT_FILES) - {"umap_cell_type.png"}
    for name in names - {"report.md"}:
        assert mpimg.imread(out / name).shape[0] >= 500
    md = (out / "report.md").read_text()
    assert "| ARI codes vs" not in md and "not written to a store" in md
    biggest = sub.obs["cellvq_code"].astype(str).value_counts().index[0]
    assert re.search(rf"^\| {re.escape(biggest)} \| ", md, flags=re.M)


def test_module_layout_does_not_depend_on_the_hash_seed(result):
    """A module's graph lists its genes in table order (hubs first) and its edges sorted, whatever the
    string hash seed, so the gene-module figure is the same in every process."""
    from cellvq.report.modules import module_graph, module_table

    und = result.network.to_undirected()
    row = module_table(result.network)[0]
    sub = module_graph(und, row["genes"])
    assert list(sub) == row["genes"]
    edges = [tuple(sorted(e)) for e in sub.edges()]
    assert sub.number_of_edges() == und.subgraph(row["genes"]).number_of_edges() == row["edges"] > 0
    assert set(edges) == {tuple(sorted(e)) for e in und.subgraph(row["genes"]).edges()}
