"""Issue 15 item 6: --groupby / --properties columns checked before any compute; integer and missing labels."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellvq.cli import app
from cellvq.obs_checks import UNLABELLED, normalize_labels, resolve_obs_keys


@pytest.mark.parametrize("flags, expect", [
    (["--groupby", "celltype"], "Did you mean --groupby cell_type?"),
    (["--properties", "cell_typ"], "Did you mean --properties cell_type?"),
])
def test_misspelt_columns_fail_at_once_with_a_suggestion(pbmc3k, tmp_path, flags, expect):
    path = tmp_path / "pbmc.h5ad"
    pbmc3k[:300].copy().write_h5ad(path)
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["run", str(path), "--db", str(tmp_path / "db"), *flags])
    assert res.exit_code != 0
    assert expect in res.output.replace("\n", " "), res.output
    assert time.perf_counter() - t0 < 10  # refused before the model loads or anything is embedded
    assert not (tmp_path / "db").exists()


def test_default_groupby_is_cell_type_only_when_present(pbmc3k):
    assert resolve_obs_keys(pbmc3k, None, None) == "cell_type"
    other = pbmc3k[:50].copy()
    del other.obs["cell_type"]
    assert resolve_obs_keys(other, None, None) is None


def test_integer_and_missing_labels_become_named_string_states(pbmc3k):
    a = pbmc3k[:400].copy()
    codes = a.obs["cell_type"].cat.codes.to_numpy()
    a.obs["cluster"] = codes.astype(np.int64)  # integer labels, as from a clustering
    normalize_labels(a, "cluster")
    assert set(a.obs["cluster"].cat.categories) == {str(c) for c in np.unique(codes)}
    b = pbmc3k[:400].copy()
    b.obs["cell_type"] = b.obs["cell_type"].astype(object)
    b.obs.iloc[:7, b.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.warns(UserWarning, match="7 cells have no label"):
        assert normalize_labels(b, "cell_type") == 7
    assert (b.obs["cell_type"] == UNLABELLED).sum() == 7 and "nan" not in set(b.obs["cell_type"])


def test_integer_groupby_runs_through_subtypes(pbmc3k, tmp_path):
    from cellvq import pipeline

    a = pbmc3k[:600].copy()
    a.obs["cluster"] = pd.Series(a.obs["cell_type"].cat.codes.to_numpy(), index=a.obs_names).astype(int)
    res = pipeline.run(a, db=str(tmp_path / "db"), label_key="cluster", graph_epochs=3, subtype_types=[0])
    assert any(s.startswith("cellType:") for s in res.tables.states["stateId"])


def test_cli_errors_name_the_flag_not_the_python_argument(pbmc3k, tmp_path):
    """Issue 15 item 11: log-normalised data through the CLI: the fix is spelt `--layer NAME`."""
    import scanpy as sc

    a = pbmc3k[:300].copy()
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    path = tmp_path / "lognorm.h5ad"
    a.write_h5ad(path)
    res = CliRunner().invoke(app, ["embed", str(path), "--out", str(tmp_path / "o.h5ad")])
    text = res.output.replace("\n", " ")
    assert res.exit_code != 0 and "--layer" in text and "layer='" not in text, res.output
    assert "'counts'" in text  # the layer that holds the counts is named


def test_run_without_a_terminal_logs_each_step(pbmc3k, tmp_path):
    """Issue 15 item 12: with output to a pipe (no live progress bar) every step still prints a line."""
    path = tmp_path / "pbmc.h5ad"
    pbmc3k[:400].copy().write_h5ad(path)
    res = CliRunner().invoke(app, ["run", str(path), "--db", str(tmp_path / "db"), "--graph-epochs", "2",
                                   "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    steps = ["embed", "doublets", "graph", "markers", "subtypes", "gene_network", "tables", "store"]
    for k, name in enumerate(steps):
        assert f"step {k + 1}/{len(steps)}: {name}" in res.output
    assert "writing the report" in res.output
