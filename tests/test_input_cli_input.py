"""Issue 15 item 11 (beyond the --groupby checks of tests/test_input_labels.py): counts are checked before the
model loads, fixes are spelt as CLI flags (--layer, --var-key), the mouse hint only for mouse-like names
(real pbmc3k)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellvq.cli import app
from foundation.data import align_genes
from foundation.errors import VocabularyMismatchError

runner = CliRunner()


@pytest.fixture(scope="module")
def small(pbmc3k):
    rng = np.random.default_rng(0)
    return pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, 600, replace=False))].copy()


def _cli_error(tmp_path, adata, *flags, before_model: bool = True):
    """`cellvq run` with a checkpoint that does not exist: an error about the input proves it came first."""
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    model = ["--model", str(tmp_path / "no_model")] if before_model else []
    res = runner.invoke(app, ["run", str(path), "--db", str(tmp_path / "db"), *model, *flags])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert not before_model or "checkpoint" not in text.lower(), text  # failed before the model was looked at
    return text


def test_log_counts_refused_before_model_with_cli_flag(tmp_path, small):
    import scanpy as sc

    a = small.copy()
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    text = _cli_error(tmp_path, a)
    assert "CountsValidationError" in text and "--layer counts" in text and "layer='counts'" not in text


def test_var_key_flag_and_its_errors(tmp_path, small):
    a = small.copy()
    a.var["symbol"] = a.var_names.astype(str)
    a.var_names = [f"g{i}" for i in range(a.n_vars)]
    text = _cli_error(tmp_path, a, "--var-key", "symbl")
    assert "--var-key symbl: var has no column 'symbl'. Did you mean --var-key symbol?" in text
    text = _cli_error(tmp_path, a, before_model=False)  # 'g0', 'g1', ... match nothing: the fix names the flag
    assert "--var-key COLUMN" in text and "var_key=" not in text and "mouse" not in text
    from cellvq.io import use_var_column

    use_var_column(a, "symbol")
    assert "LYZ" in a.var_names and a.var["original_var_names"].iloc[0] == "g0"


def test_mouse_hint_only_for_mouse_like_names(small, pbmc3k):
    from foundation import datasets, load_pretrained

    vocab = load_pretrained().vocab
    a = small.copy()
    rng = np.random.default_rng(1)
    a.var_names = pd.Index([f"Zq{''.join(rng.choice(list('bcdfghkmnp'), 4))}{i}" for i in range(a.n_vars)])
    with pytest.raises(VocabularyMismatchError) as err:
        align_genes(a, vocab)
    assert "mouse" not in str(err.value)
    with pytest.raises(VocabularyMismatchError, match="look like mouse symbols"):
        align_genes(datasets.pancreas_mouse(), vocab)
