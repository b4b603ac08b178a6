"""Perturbation shifts in the graph stores (issue 14 C): observed and predicted ``SHIFTS`` of the real
Papalexi THP-1 CRISPR KO screen, written to LadybugDB (COPY via ``cellvq perturb store``, and the UNWIND
statements Neo4j uses) and to a live Neo4j, read back by ``perturbation_effects`` / ``perturbations_shifting``.

Observed = pseudobulk shifts of every knockout (``foundation.perturb.perturbation_shifts``); predicted =
STAT1, held out of a predictor fitted on the other 24 knockouts (no gene embedding: it runs in seconds).
"""

from __future__ import annotations

import csv
import uuid

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import graphdb
from cellvq.cli import app
from cellvq.perturb_store import ShiftStoreConfig, shift_run_tables
from foundation import datasets
from foundation.perturb import perturbation_shifts
from foundation.perturb.predictor import PerturbPredictor, PredictorConfig, shift_table
from graphdb import open_store, write_bulk_import
from graphdb.errors import NotFoundError, SchemaError

HELD_OUT = "STAT1"
#: Knockouts whose target is measured (299 genes) and, in this screen, its own most decreased gene.
SELF_DECREASED = ("STAT1", "JAK2", "STAT2", "NFKBIA", "CMTM6")


@pytest.fixture(scope="module")
def shifts():
    """(observed, predicted) shift tables of docs/CONTRACTS.md section 10."""
    data = perturbation_shifts(datasets.papalexi_crispr())
    observed = shift_table(data.perturbations, data.genes, data.shift, predicted=False)
    train = np.array([i for i, p in enumerate(data.perturbations) if p != HELD_OUT])
    pred = PerturbPredictor(PredictorConfig(embedding="none"), data.genes, None).fit(data.subset(train))
    predicted = shift_table([HELD_OUT], pred.genes, pred.predict([HELD_OUT]), predicted=True)
    return observed, predicted


@pytest.fixture(scope="module")
def csvs(shifts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shifts")
    paths = folder / "observed.csv", folder / "predicted.csv"
    for table, path in zip(shifts, paths):
        table.to_csv(path, index=False)
    return paths


def check_answers(store, run_id: str, shifts) -> None:
    observed, predicted = shifts
    assert store.counts(run_id)["SHIFTS"] == len(observed) + len(predicted)
    assert store.counts(run_id)["Perturbation"] == observed["perturbation"].nunique()
    for target in SELF_DECREASED:
        eff = store.perturbation_effects(target, top=10, run_id=run_id, predicted=False)
        assert len(eff) == 10 and not eff["predicted"].any() and set(eff["kind"]) == {"knockout"}
        most_decreased = eff.sort_values("delta")["symbol"].iloc[0]
        assert most_decreased == target, eff
        want = observed[(observed["perturbation"] == target) & (observed["gene"] == target)]["delta"].iloc[0]
        assert eff.set_index("symbol").loc[target, "delta"] == pytest.approx(want, rel=1e-12)
    both = store.perturbation_effects(HELD_OUT, top=5, run_id=run_id)
    assert list(both["predicted"]) == [False] * 5 + [True] * 5
    pred = both[both["predicted"]]
    assert pred.sort_values("delta")["symbol"].iloc[0] == HELD_OUT  # the held-out knockout's own target
    np.testing.assert_allclose(pred["delta"], predicted.head(5)["delta"], rtol=1e-12)  # CSV round trip

    hits = store.perturbations_shifting(HELD_OUT, run_id=run_id, max_rank=3)
    own = hits[hits["perturbation"] == HELD_OUT].set_index("predicted")
    assert set(own.index) == {False, True}
    assert own.loc[False, "rank"] == 1 and own.loc[False, "delta"] < -1.0
    assert own.loc[True, "delta"] < 0 and own.loc[False, "target"] == HELD_OUT
    assert (hits["rank"] <= 3).all() and hits["rank"].is_monotonic_increasing
    with pytest.raises(NotFoundError, match="did you mean"):
        store.perturbation_effects("STAT9", run_id=run_id)


def test_cli_store_ladybug(tmp_path, csvs, shifts):
    db = tmp_path / "perturb.lbug"
    r = CliRunner().invoke(app, ["perturb", "store", *map(str, csvs), "--db", str(db), "--dataset", "papalexi",
                                 "--run-id", "papalexi-shifts"])
    assert r.exit_code == 0, r.output
    assert "25 perturbations" in r.output
    with open_store(db, read_only=True) as store:
        assert store.list_runs(complete_only=True)["runId"].tolist() == ["papalexi-shifts"]
        check_answers(store, "papalexi-shifts", shifts)


def test_unwind_statements_keep_observed_and_predicted(tmp_path, shifts):
    """The Neo4j write path on LadybugDB: MERGE on (runId, predicted) keeps both shifts of a pair."""
    tables = shift_run_tables(list(shifts), ShiftStoreConfig(dataset_id="papalexi", run_id="unwind"))
    with open_store(tmp_path / "u.lbug") as store:
        store.write_run(tables, method="unwind", batch_size=2_000)
        store.write_run(tables, method="unwind", batch_size=2_000)  # idempotent re-write
        check_answers(store, "unwind", shifts)


def test_bulk_import_files(tmp_path, shifts):
    tables = shift_run_tables(list(shifts), ShiftStoreConfig(dataset_id="papalexi", run_id="bulk"))
    out = write_bulk_import(tables, tmp_path)
    with out.rel_files["SHIFTS"].open() as fh:
        assert next(csv.reader(fh)) == [":START_ID(Perturbation)", ":END_ID(Gene)", "runId:string",
                                        "delta:double", "rank:long", "predicted:long", ":TYPE"]
    assert out.rows["SHIFTS"] == sum(len(t) for t in shifts) and out.rows["Perturbation"] == 25


def test_bad_input_writes_nothing(tmp_path, csvs, shifts):
    db = tmp_path / "bad.lbug"
    r = CliRunner().invoke(app, ["perturb", "store", str(csvs[0]), "--db", str(db), "--dataset", "papalexi",
                                 "--kind", "crispr"])
    assert r.exit_code == 1 and "--kind" in r.output and "knockout" in r.output, r.output
    tables = shift_run_tables([shifts[0]], ShiftStoreConfig(dataset_id="papalexi", run_id="bad"))
    genes = tables.genes[tables.genes["symbol"] != "STAT1"]
    with pytest.raises(SchemaError, match=r"'shifts': column 'symbol'.*'STAT1'"):
        graphdb.RunTables(run=tables.run, dataset=tables.dataset, genes=genes,
                          perturbations=tables.perturbations, shifts=tables.shifts)
    with pytest.raises(SchemaError, match="'perturbations': column 'kind'"):
        graphdb.RunTables(run=tables.run, dataset=tables.dataset, genes=tables.genes,
                          perturbations=tables.perturbations.assign(kind="crispr"), shifts=tables.shifts)
    no_col = pd.read_csv(csvs[0]).drop(columns="delta")
    no_col.to_csv(tmp_path / "no_delta.csv", index=False)
    r = CliRunner().invoke(app, ["perturb", "store", str(tmp_path / "no_delta.csv"), "--db", str(db),
                                 "--dataset", "papalexi"])
    assert r.exit_code == 1 and "delta" in r.output, r.output
    names = pd.read_csv(csvs[0])["perturbation"].unique()
    pd.DataFrame({"compound": names, "smiles": ["CCO"] * (len(names) - 1) + ["C1CC("]}).to_csv(
        tmp_path / "smiles.csv", index=False)
    r = CliRunner().invoke(app, ["perturb", "store", str(csvs[0]), "--db", str(db), "--dataset", "papalexi",
                                 "--kind", "drug", "--smiles", str(tmp_path / "smiles.csv")])
    assert r.exit_code == 1 and "RDKit cannot parse" in r.output and "C1CC(" in r.output, r.output
    if db.exists():
        with open_store(db, read_only=True) as store:
            assert store.runs().empty


def test_unknown_gene_symbol_is_named(tmp_path, shifts):
    tables = shift_run_tables(list(shifts), ShiftStoreConfig(dataset_id="papalexi", run_id="genes"))
    with open_store(tmp_path / "g.lbug") as store:
        store.write_run(tables)
        with pytest.raises(NotFoundError, match=r"gene 'stat1' is not in the store.*did you mean \['STAT1'"):
            store.perturbations_shifting("stat1", run_id="genes")


@pytest.mark.neo4j_live
def test_neo4j_live_same_answers(neo4j_live, shifts):
    run_id = f"live-{uuid.uuid4().hex[:8]}"
    tables = shift_run_tables(list(shifts), ShiftStoreConfig(dataset_id="papalexi", run_id=run_id))
    with neo4j_live.open(batch_size=5_000) as store:
        try:
            store.write_run(tables)
            check_answers(store, run_id, shifts)
        finally:
            store.delete_run(run_id)


def test_store_from_before_perturbations_gains_the_tables(tmp_path, shifts):
    """A LadybugDB file written before Perturbation / SHIFTS existed: a read-only open adds the tables
    (one read-write open), and counts / the perturbation queries answer instead of failing."""
    import ladybug

    path = tmp_path / "old.lbug"
    with open_store(path) as store:
        store.write_run(shift_run_tables([shifts[0]], ShiftStoreConfig(dataset_id="papalexi", run_id="old")))
    db = ladybug.Database(str(path))
    conn = ladybug.Connection(db)
    for stmt in ("DROP TABLE SHIFTS", "DROP TABLE Perturbation", "CHECKPOINT"):
        conn.execute(stmt)
    conn.close()
    db.close()
    with open_store(path, read_only=True) as store:
        counts = store.counts("old")
        assert counts["Perturbation"] == 0 and counts["SHIFTS"] == 0
        with pytest.raises(NotFoundError, match="no perturbation 'STAT1'"):
            store.perturbation_effects("STAT1", run_id="old")
