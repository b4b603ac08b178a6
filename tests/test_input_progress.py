"""Issue 15 item 12: pipeline.run prints its phases as plain lines by default (quiet=True silences it), and
`cellvq run` off a terminal announces and times the report phase (real pbmc3k)."""

from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from cellvq import pipeline
from cellvq.cli import app


def _subset(pbmc3k, n=300):
    rng = np.random.default_rng(0)
    return pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, n, replace=False))].copy()


def test_pipeline_prints_phases_unless_quiet(pbmc3k, capsys):
    pipeline.run(_subset(pbmc3k), graph_epochs=2)
    err = capsys.readouterr().err
    for i, step in enumerate(["embed", "doublets", "graph", "markers", "subtypes", "gene_network", "tables"], 1):
        assert f"cellvq: {step} ({i}/8) ..." in err, err
    assert re.search(r"cellvq: done in \d+\.\d s \[tables \d+\.\d s\]", err), err
    pipeline.run(_subset(pbmc3k), graph_epochs=2, quiet=True)
    assert "cellvq:" not in capsys.readouterr().err


def test_cli_run_off_terminal_times_the_report(pbmc3k, tmp_path):
    path = tmp_path / "in.h5ad"
    _subset(pbmc3k).write_h5ad(path)
    res = CliRunner().invoke(app, ["run", str(path), "--db", str(tmp_path / "db"), "--out", str(tmp_path / "rep"),
                                   "--graph-epochs", "2"])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "step 1/8: embed" in text and "step 2/8: doublets" in text and "cellvq: embed" not in text  # the CLI's own lines, not twice
    assert re.search(r"writing the report .* \.\.\.\s+report written in \d+\.\d s", text, re.S), text
