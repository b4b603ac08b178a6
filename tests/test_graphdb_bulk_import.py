"""Neo4j 5 bulk-import files: headers, rows and the command round-trip into the same tables."""

from __future__ import annotations

import csv
import shlex

import numpy as np
import pandas as pd
import pytest
from graphdb_fixtures import pbmc_run_tables

from graphdb import RELATIONSHIPS, RunTables, read_bulk_import, write_bulk_import
from graphdb.bulk_import import parse_header


def _same_tables(a: RunTables, b: RunTables) -> None:
    assert a.run == b.run
    for name in RunTables.TABLE_NAMES:
        fa, fb = getattr(a, name), getattr(b, name)
        assert sorted(fa.columns) == sorted(fb.columns), name
        cols = sorted(fa.columns)
        keys = [c for c in cols if fa[c].dtype == object]
        sa = fa[cols].sort_values(keys, ignore_index=True) if keys else fa[cols]
        sb = fb[cols].sort_values(keys, ignore_index=True) if keys else fb[cols]
        assert len(sa) == len(sb), name
        for c in cols:
            if sa[c].dtype == object:
                assert sa[c].tolist() == sb[c].tolist(), (name, c)
            else:
                np.testing.assert_allclose(
                    sa[c].astype(float), sb[c].astype(float), rtol=1e-15, err_msg=f"{name}.{c}"
                )


@pytest.fixture(scope="module")
def two_runs():
    return [
        pbmc_run_tables("pbmc3k-r1", n_cells=600),
        pbmc_run_tables("pbmc3k-r2", created_at="2026-02-01T00:00:00+00:00", n_markers=10, n_cells=600),
    ]


def test_headers_use_neo4j_import_syntax(tmp_path, two_runs):
    out = write_bulk_import(two_runs[0], tmp_path)
    with out.node_files["CellState"].open() as fh:
        header = next(csv.reader(fh))
    assert header == [
        "uid:ID(CellState)",
        "runId:string",
        "stateId:string",
        "kind:string",
        "name:string",
        "nCells:long",
        "description:string",
        ":LABEL",
    ]
    with out.rel_files["REGULATES"].open() as fh:
        assert next(csv.reader(fh)) == [
            ":START_ID(Gene)", ":END_ID(Gene)", "runId:string", "weight:double", "rank:long",
            "treeImportance:double", "treeConsensus:double", "attention:double", "perturbationZ:double",
            "perturbationLogFc:double", "spearman:double", "nEvidence:long", ":TYPE",
        ]
    with out.rel_files["MARKER_OF"].open() as fh:
        header = next(csv.reader(fh))
    assert header == [
        ":START_ID(Gene)",
        ":END_ID(CellState)",
        "runId:string",
        "score:double",
        "rank:long",
        "attention:double",
        "logFc:double",
        ":TYPE",
    ]
    with out.node_files["Cell"].open() as fh:
        assert next(csv.reader(fh)) == [
            "uid:ID(Cell)",
            "cellId:string",
            "datasetId:string",
            "nCounts:double",
            "nGenes:long",
            "umap1:double",
            "umap2:double",
            ":LABEL",
        ]
    cols = parse_header(header)
    assert cols[0] == {"name": None, "type": "STRING", "role": "START_ID", "space": "Gene"}
    assert cols[4] == {"name": "rank", "type": "INT64", "role": None, "space": None}
    # the run is imported complete
    run = pd.read_csv(out.node_files["Run"])
    assert run["status:string"].tolist() == ["complete"]


def test_command_names_every_file(tmp_path, two_runs):
    out = write_bulk_import(two_runs, tmp_path, database="cellvq")
    args = shlex.split(out.command)
    assert args[:6] == ["neo4j-admin", "database", "import", "full", "cellvq", "--overwrite-destination=true"]
    assert "--id-type=string" in args
    nodes = [a.split("=", 1)[1] for a in args if a.startswith("--nodes=")]
    rels = [a.split("=", 1)[1] for a in args if a.startswith("--relationships=")]
    assert sorted(nodes) == sorted(str(p) for p in out.node_files.values())
    assert sorted(rels) == sorted(str(p) for p in out.rel_files.values())
    # the PBMC runs hold no perturbations: rels_SHIFTS.csv is checked in tests/test_graphdb_perturb.py
    assert set(out.rel_files) == set(RELATIONSHIPS) - {"SHIFTS"}
    assert (tmp_path / "import_command.txt").read_text().strip() == out.command
    script = (tmp_path / "import.sh").read_text()
    assert "database import full cellvq" in script and "CREATE DATABASE `cellvq`" in script
    after = (tmp_path / "after_import.cypher").read_text()
    assert "CREATE CONSTRAINT cellvq_gene_key IF NOT EXISTS FOR (n:Gene) REQUIRE n.symbol IS UNIQUE" in after


@pytest.mark.parametrize("name", ["ab", "my db", "x\nrm -rf ~", "1cellvq", "cell`vq"])
def test_bad_database_name_is_refused_before_anything_is_written(tmp_path, two_runs, name):
    """The name goes into a shell script and a Cypher hint: only a valid Neo4j database name is taken."""
    with pytest.raises(ValueError, match="invalid Neo4j database name"):
        write_bulk_import(two_runs, tmp_path / "out", database=name)
    assert not (tmp_path / "out").exists()


def test_files_round_trip_into_the_same_tables(tmp_path, two_runs):
    out = write_bulk_import(two_runs, tmp_path)
    # shared nodes are written once
    assert out.rows["Gene"] == len(set(two_runs[0].genes["symbol"]) | set(two_runs[1].genes["symbol"]))
    assert out.rows["Cell"] == 600
    assert out.rows["CellState"] == len(two_runs[0].states) + len(two_runs[1].states)
    back = {t.run_id: t for t in read_bulk_import(tmp_path)}
    assert set(back) == {"pbmc3k-r1", "pbmc3k-r2"}
    for original in two_runs:
        restored = back[original.run_id]
        # genes are shared by every run of an import; compare the run's own genes
        assert set(original.genes["symbol"]) <= set(restored.genes["symbol"])
        restored.genes = restored.genes[restored.genes["symbol"].isin(original.genes["symbol"])]
        _same_tables(original, restored)
