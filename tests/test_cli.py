"""Every `cellvq` command run for real on bundled real data (pbmc3k, Kang IFN-beta PBMCs).

One `cellvq run` on a stratified 500-cell subset of pbmc3k (module fixture) feeds the `query`, `cypher` and
`export-grn` tests; `demo` runs once on the full pbmc3k with few graph epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

import graphdb
from cellvq.cli import app
from cellvq.report import REPORT_FILES
from foundation import datasets

KANG = datasets.dataset_path("kang_ifnb")
runner = CliRunner()


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    # the command ended through its own exit path, never through an uncaught exception
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def ok(*args):
    res = cli(*args)
    assert res.exit_code == 0, res.output
    return res


def clean_error(res, *needles: str) -> str:
    """A failed command: non-zero exit, exactly one `error:` line naming the problem, no traceback."""
    assert res.exit_code != 0, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "Traceback" not in res.output, res.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def json_docs(text: str) -> list:
    """Every JSON document printed one after another (`--json` prints one per table)."""
    dec, docs, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        doc, i = dec.raw_decode(text, i)
        docs.append(doc)
        while i < len(text) and text[i].isspace():
            i += 1
    return docs


def stratified_subset(adata, n: int, seed: int = 0, key: str = "cell_type"):
    rng = np.random.default_rng(seed)
    frac = n / adata.n_obs
    keep = []
    for _, idx in adata.obs.groupby(key, observed=True).indices.items():
        keep.extend(rng.choice(idx, size=min(len(idx), max(5, round(len(idx) * frac))), replace=False))
    return adata[np.sort(keep)].copy()


# ---------------------------------------------------------------------------------------------------------
# pretrain / embed


def test_pretrain_then_load_and_embed(tmp_path):
    from foundation import CellVQ

    out = tmp_path / "ckpt"
    res = ok("pretrain", KANG, "--out", out, "--epochs", 1, "--panel-prob", 0.5, "--mix-cells", 256)
    assert f"to {out}" in res.stdout.replace("\n", "")
    meta = json.loads(res.stdout[res.stdout.index("{"):])
    assert meta["steps"] > 0 and np.isfinite(meta["final_history"]["loss"])
    model = CellVQ.load(out)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "vocab.json"}
    assert len(model.vocab) > 200  # Kang's 249 genes, a few not in GENCODE
    # the new checkpoint works through the CLI too
    emb = tmp_path / "kang_own.h5ad"
    ok("embed", KANG, "--out", emb, "--model", out)
    import anndata as ad

    a = ad.read_h5ad(emb)
    assert a.obsm["X_cellvq"].shape == (600, model.config.d_model)


def test_embed(tmp_path):
    import anndata as ad

    out = tmp_path / "sub" / "kang_cellvq.h5ad"
    res = ok("embed", KANG, "--out", out)
    assert "embedded 600 cells" in res.stdout and str(out) in res.stdout.replace("\n", "")
    a = ad.read_h5ad(out)
    assert a.obsm["X_cellvq"].shape[0] == 600 and np.isfinite(a.obsm["X_cellvq"]).all()
    assert a.obs["cellvq_code"].notna().all() and a.varm["cellvq_gene"].shape[0] == a.n_vars
    u = a.uns["cellvq"]
    assert u["gene_match_rate"] > 0.9 and u["codes_used"] >= 1
    assert not out.with_name(out.name + ".tmp").exists()


def test_embed_backed_streams_and_keeps_counts(tmp_path):
    """`--backed` leaves X on disk while embedding; the output holds the input's counts (copied by HDF5) and
    the same embedding as the in-memory command."""
    import anndata as ad

    ok("embed", KANG, "--out", tmp_path / "mem.h5ad", "--device", "cpu")
    ok("embed", KANG, "--out", tmp_path / "bk.h5ad", "--backed", "--chunk-rows", "128", "--device", "cpu")
    mem, bk, src = ad.read_h5ad(tmp_path / "mem.h5ad"), ad.read_h5ad(tmp_path / "bk.h5ad"), ad.read_h5ad(KANG)
    assert (bk.X != src.X).nnz == 0 and bk.X.dtype == src.X.dtype
    np.testing.assert_allclose(bk.obsm["X_cellvq"], mem.obsm["X_cellvq"], atol=1e-5)
    assert (bk.obs["cellvq_code"] == mem.obs["cellvq_code"]).all()
    assert (bk.obs["cellvq_code_hier"] == mem.obs["cellvq_code_hier"]).all()
    ours = [c for c in bk.obs.columns if c.startswith("cellvq_")]
    assert bk.obs.drop(columns=ours).equals(src.obs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk.h5ad", "mem.h5ad"]
    # writing over the backed input itself is refused, and the input is untouched
    copy = tmp_path / "in.h5ad"
    shutil.copy(KANG, copy)
    clean_error(cli("embed", copy, "--out", copy, "--backed", "--device", "cpu"), "backed input itself")
    assert (ad.read_h5ad(copy).X != src.X).nnz == 0


# ---------------------------------------------------------------------------------------------------------
# run (one shared run for the query / cypher / export tests)


@pytest.fixture(scope="module")
def run_out(pbmc3k, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_run")
    h5ad = root / "pbmc3k_sub500.h5ad"
    sub = stratified_subset(pbmc3k, 500)
    sub.write_h5ad(h5ad)
    db, report = root / "db", root / "report"
    res = ok("run", h5ad, "--db", db, "--out", report, "--graph-epochs", 20)
    return {"res": res, "db": db, "report": report, "h5ad": h5ad, "n": sub.n_obs}


def test_run(run_out):
    res, db, report = run_out["res"], run_out["db"], run_out["report"]
    out = res.stdout
    assert "Top 10 marker genes per state" in out and "cellType:B" in out
    summary = json.loads(out[out.index('{\n  "runId"'): out.index("\n}", out.index('"runId"')) + 2])
    assert summary["cells"] == run_out["n"] and summary["runId"].startswith("pbmc3k_sub500-")
    assert set(summary["seconds"]) >= {"embed", "graph", "markers", "store"}
    assert f"report: {report / 'report.md'}" in out.replace("\n", "")
    assert {p.name for p in report.iterdir()} == set(REPORT_FILES)
    with graphdb.open_store(db, read_only=True) as store:
        assert store.runs()["runId"].tolist() == [summary["runId"]]
        b = store.markers("cellType:B", top=10)["symbol"].tolist()
        assert {"MS4A1", "CD79A", "CD79B"} & set(b)
        # the printed table is the store's answer
        row = next(line for line in out.splitlines() if "cellType:B " in line)
        assert b[0] in row


def _query(db, name, *params, as_json=True):
    args = ["query", name, "--db", db] + [x for p in params for x in ("-p", p)]
    return ok(*args, *(["--json"] if as_json else []))


def test_query_markers(run_out):
    rows = json_docs(_query(run_out["db"], "markers", "state=cellType:NK", "top=5").stdout)[0]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert {"GNLY", "NKG7", "GZMB", "PRF1", "GZMA", "CST7"} & {r["symbol"] for r in rows}
    # states are found by name too, and the table form prints
    text = _query(run_out["db"], "markers", "state=B", "top=3", as_json=False).stdout
    assert "symbol" in text and "rank" in text


def test_query_states_for_gene(run_out):
    rows = json_docs(_query(run_out["db"], "states_for_gene", "symbol=MS4A1").stdout)[0]
    assert "cellType:B" in {r["stateId"] for r in rows}
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_query_subtype_graph(run_out):
    nodes, edges = json_docs(_query(run_out["db"], "subtype_graph", "cell_type=Naive CD4 T").stdout)
    assert nodes[0]["stateId"] == "cellType:Naive CD4 T" and nodes[0]["depth"] == 0
    subs = {n["stateId"] for n in nodes[1:]}
    assert len(subs) >= 2 and all(s.startswith("subtype:Naive CD4 T:") for s in subs)
    assert {(e["source"], e["type"]) for e in edges if e["type"] == "SUBTYPE_OF"} == {(s, "SUBTYPE_OF") for s in subs}


def test_query_gene_network(run_out):
    with graphdb.open_store(run_out["db"], read_only=True) as store:
        e = store.grn_edges(kinds=("REGULATES", "CO_EXPRESSED"))
    hub = e["source"].value_counts().index[0]
    nodes, edges = json_docs(_query(run_out["db"], "gene_network", f"symbol={hub}", "depth=1").stdout)
    assert hub in {n["symbol"] for n in nodes} and len(edges) >= 1
    assert all(hub in (x["source"], x["target"]) or x["source"] in {n["symbol"] for n in nodes} for x in edges)


def test_query_state_properties(run_out):
    rows = json_docs(_query(run_out["db"], "state_properties", "state=cellType:B").stdout)[0]
    top = rows[0]
    assert top["propertyId"] == "cell_type=B" and top["fraction"] == pytest.approx(1.0)


def test_query_compare_states(run_out):
    text = _query(run_out["db"], "compare_states", "a=cellType:B", "b=cellType:NK", as_json=False).stdout
    assert "compare_states markers" in text and "compare_states properties" in text
    docs = json_docs(_query(run_out["db"], "compare_states", "a=cellType:B", "b=cellType:NK").stdout)
    markers = docs[0]
    assert {m["group"] for m in markers} <= {"A only", "B only", "shared"}
    # A's differences first (A only, then shared by deltaScore), B's last; missing scores are not 0
    first, last = markers[0], markers[-1]
    assert first["group"] == "A only" or first["deltaScore"] > 0
    assert last["group"] == "B only" or last["deltaScore"] < 0
    assert all(m["deltaScore"] is None for m in markers if m["group"] != "shared")
    assert all(m["scoreA"] is None or m["scoreA"] > 0 for m in markers)


def test_query_errors(run_out):
    clean_error(cli("query", "nope", "--db", run_out["db"]), "unknown query 'nope'")
    clean_error(cli("query", "markers", "--db", run_out["db"], "-p", "bogus=1"), "bad parameters for markers")
    clean_error(cli("query", "markers", "--db", run_out["db"], "-p", "state=Bcell"), "no state 'Bcell'")
    clean_error(cli("query", "markers", "--db", run_out["db"], "-p", "stateB"), "key=value")


def test_cypher_read(run_out):
    stmt = "MATCH (s:CellState {kind: $kind}) RETURN s.name AS name, s.nCells AS n ORDER BY name"
    rows = json_docs(ok("cypher", stmt, "--db", run_out["db"], "-p", "kind=cellType", "--json").stdout)[0]
    assert [r["name"] for r in rows] == sorted(
        ["B", "CD14+ Mono", "CD8 T", "DC", "FCGR3A+ Mono", "Memory CD4 T", "NK", "Naive CD4 T", "Platelet"]
    )
    assert sum(r["n"] for r in rows) == run_out["n"]
    text = ok("cypher", stmt, "--db", run_out["db"], "-p", "kind=cellType").stdout
    assert "Naive CD4 T" in text


def test_cypher_write_is_refused(run_out):
    db = run_out["db"]
    for stmt in ("CREATE (g:Gene {symbol: $s})", "MATCH (g:Gene {symbol: $s}) DETACH DELETE g",
                 "MATCH (g:Gene {symbol: $s}) SET g.symbol = 'X'"):
        line = clean_error(cli("cypher", stmt, "--db", db, "-p", "s=MS4A1"), "ReadOnlyViolation", "read-only")
        assert len(line) < 400
    with graphdb.open_store(db, read_only=True) as store:
        assert len(store.query("MATCH (g:Gene {symbol: $s}) RETURN g.symbol AS s", {"s": "MS4A1"})) == 1
        assert store.markers("cellType:B", top=50)["symbol"].isin(["MS4A1"]).any()


@pytest.mark.parametrize(
    "name, fmt",
    [("grn.graphml", None), ("grn.csv", None), ("grn.cyjs", None), ("grn.json", "cytoscape"),
     ("grn.sif", None), ("grn.txt", "sif")],
)
def test_export_grn(run_out, tmp_path, name, fmt):
    path = tmp_path / "out" / name
    args = ["export-grn", path, "--db", run_out["db"]] + (["--format", fmt] if fmt else [])
    res = ok(*args)
    assert f"wrote {path}" in res.stdout.replace("\n", "")
    with graphdb.open_store(run_out["db"], read_only=True) as store:
        want = store.grn_edges()
    assert len(want) > 0
    got = graphdb.read_grn(path, format=fmt)
    assert len(got) == len(want)
    assert set(zip(got["source"], got["target"])) == set(zip(want["source"], want["target"]))
    if path.suffix == ".graphml":
        g = nx.read_graphml(path)
        assert g.number_of_edges() == len(want) and g.is_directed()
        u, v = want.iloc[0][["source", "target"]]
        assert g[u][v]["weight"] == pytest.approx(want.iloc[0]["weight"])
    elif fmt == "cytoscape" or path.suffix == ".cyjs":
        g = nx.cytoscape_graph(json.loads(path.read_text()))
        assert g.number_of_edges() == len(want)
    elif path.suffix == ".csv":
        assert got["weight"].to_numpy() == pytest.approx(want.sort_values(["kind", "source", "target"])["weight"].to_numpy())
    else:
        assert len(path.read_text().splitlines()) == len(want)


def test_export_grn_errors(run_out, tmp_path):
    clean_error(cli("export-grn", tmp_path / "grn.xyz", "--db", run_out["db"]), "cannot tell the format")
    clean_error(cli("export-grn", tmp_path / "g.csv", "--db", run_out["db"], "--format", "dot"), "unknown GRN format")
    clean_error(cli("export-grn", tmp_path / "g.csv", "--db", run_out["db"], "--run-id", "nope"), "run 'nope'")


# ---------------------------------------------------------------------------------------------------------
# demo: the README's main command, once, with few graph epochs


def test_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = ok("demo", "--out", "demo", "--graph-epochs", 30)
    out = res.stdout
    assert "Top 10 marker genes per state" in out
    row = next(line for line in out.splitlines() if "cellType:B " in line)
    assert "MS4A1" in row or "CD79A" in row, row
    summary = json.loads(out[out.index('{\n  "runId"'): out.index("\n}", out.index('"runId"')) + 2])
    assert summary["cells"] == 2638 and summary["runId"].startswith("pbmc3k-")
    demo = tmp_path / "demo"
    assert {p.name for p in (demo / "report").iterdir()} == set(REPORT_FILES)
    with graphdb.open_store(demo / "db", read_only=True) as store:
        top = store.markers("cellType:B", top=10)["symbol"].tolist()
        assert {"MS4A1", "CD79A"} & set(top), top
        assert len(store.states_for_gene("NKG7")) >= 1
        # the demo scores REGULATES from directional evidence (--regulatory is on for it)
        reg = store.grn_edges(kinds=("REGULATES",))
        assert len(reg) > 100 and reg["treeImportance"].notna().all() and (reg["nEvidence"] >= 1).all()


# ---------------------------------------------------------------------------------------------------------
# bad input: one clear `error:` line, non-zero exit, no traceback unless --debug, nothing half-written


def test_missing_file(tmp_path):
    clean_error(cli("run", tmp_path / "nope.h5ad", "--db", tmp_path / "db"), "nope.h5ad", "does not exist")
    clean_error(cli("embed", tmp_path / "nope.h5ad", "--out", tmp_path / "x.h5ad"), "does not exist")
    clean_error(cli("pretrain", tmp_path / "nope.h5ad", "--out", tmp_path / "ck", "--epochs", 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_corrupt_h5ad(tmp_path):
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    clean_error(cli("embed", bad, "--out", tmp_path / "x.h5ad"), "broken.h5ad", "cannot be read as an h5ad")
    clean_error(cli("run", bad, "--db", tmp_path / "db", "--out", tmp_path / "rep"), "cannot be read as an h5ad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.h5ad"]


def test_log_normalised_counts(pbmc3k, tmp_path):
    import scanpy as sc

    a = pbmc3k[:200].copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    path = tmp_path / "lognorm.h5ad"
    a.write_h5ad(path)
    clean_error(cli("embed", path, "--out", tmp_path / "x.h5ad"), "log-normalised")
    clean_error(cli("run", path, "--db", tmp_path / "db", "--out", tmp_path / "rep"), "log-normalised")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lognorm.h5ad"]


def test_unreachable_neo4j():
    line = clean_error(cli("query", "markers", "--db", "bolt://127.0.0.1:1", "-p", "state=B"),
                       "bolt://127.0.0.1:1")
    assert "StoreConnectionError" in line and "running" in line
    clean_error(cli("cypher", "MATCH (n) RETURN count(n) AS n", "--db", "bolt://127.0.0.1:1"), "cannot reach")
    clean_error(cli("export-grn", "grn.csv", "--db", "bolt://127.0.0.1:1"), "cannot reach")


def test_debug_shows_the_traceback():
    res = cli("--debug", "query", "markers", "--db", "bolt://127.0.0.1:1", "-p", "state=B")
    assert res.exit_code != 0 and "Traceback" in res.output
    assert any(line.startswith("error:") for line in res.output.splitlines())


def test_console_script_exit_code(tmp_path):
    """The installed `cellvq` entry point: non-zero exit status and the error on stderr only."""
    exe = Path(sys.executable).with_name("cellvq")
    exe = str(exe) if exe.exists() else shutil.which("cellvq")
    if exe is None:
        pytest.fail("the cellvq console script is not installed; run `pip install -e .`")
    p = subprocess.run([exe, "embed", str(tmp_path / "nope.h5ad"), "--out", str(tmp_path / "x.h5ad")],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 1 and p.stdout == ""
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not exist" in errors[0] and "Traceback" not in p.stderr
    help_ = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0
    for cmd in ("pretrain", "embed", "run", "demo", "query", "cypher", "export-grn"):
        assert cmd in help_.stdout
