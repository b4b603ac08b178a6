"""CPU dry run of benchmarks/pretrain_gpu.py (the device call that pretrains a base-size model in <= 8 minutes):
it trains on the manifest's training files only, writes a loadable checkpoint and its throughput report."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

import foundation
from foundation.datasets import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pretrain_gpu", ROOT / "benchmarks" / "pretrain_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pretrain_gpu"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_pretrain_gpu_dry_run_trains_on_train_files_only(tmp_path):
    try:
        shared_data_dir()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"shared data not available: {exc}")
    report = _script().main(["--dry-run", "--out", str(tmp_path)])
    manifest = pd.read_csv(ROOT / "foundation/pretrained/corpus.tsv", sep="\t")
    train = sorted(Path(f).name for f in manifest.loc[manifest["role"] == "train", "file"])
    assert sorted(report["corpus"]) == train  # never a held-out dataset
    assert report["n_holdout_cells"] == 791 and report["epochs"] >= 1 and report["steps"] >= 1
    assert report["train_cells_per_second"] > 0 and report["train_tflops_per_cell"] > 0
    assert report["cells_per_epoch"] > 0 and math.isfinite(report["final_history"]["loss"])
    model = foundation.CellVQ.load(tmp_path / "checkpoint")
    assert model.config.d_model == 32 and sorted(model.metadata["corpus"]) == train
    md = (tmp_path / "pretrain_gpu.md").read_text()
    assert "training cells/s" in md and "MFU" in md
