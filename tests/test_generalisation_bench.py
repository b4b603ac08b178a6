"""Smoke test of benchmarks/generalisation.py on two small held-out PBMC sets, without the optional
``[bench]`` packages (scib-metrics, scvi-tools, harmonypy): the script runs end to end and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generalisation_benchmark_runs_on_small_held_out_sets(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--datasets", "pbmc3k_heldout",
           "zheng_sorted", "--max-cells", "300", "--adapt-epochs", "0", "--no-optional", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "generalisation.json").read_text())
    rows = {r["dataset"]: r for r in report["datasets"]}
    assert set(rows) == {"pbmc3k_heldout", "zheng_sorted"} and rows["zheng_sorted"]["cells"] == 300
    pca = rows["pbmc3k_heldout"]["methods"]["PCA (HVG)"]
    assert pca["ari"] > 0.3 and 0 < pca["asw"] < 1  # PBMC types separate in a PCA of HVGs
    assert rows["pbmc3k_heldout"]["skipped"] == {"CellVQ adapted": "--adapt-epochs 0", "scVI": "--no-optional"}
    assert rows["pbmc3k_heldout"]["codes"]["coarse_nmi"] > 0.4  # the shipped coarse codes mark PBMC types
    (pair,) = report["pairs"]
    assert pair["lineages"] == ["B", "Mono", "NK", "T"]
    assert pair["f1_joint_pca"] > 0.5 and pair["code_agreement"]["ratio"] > 2
    md = (tmp_path / "generalisation.md").read_text()
    assert "| zheng_sorted | 300 | 9 |" in md
    assert "scikit-learn fallback" in md and "skipped: --no-optional" in md
