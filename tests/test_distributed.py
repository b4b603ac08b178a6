"""torch.distributed on CPU: two ranks under torchrun (gloo), as on a multi-GPU node.

These start real processes (about 20 s each on 2 cores). A hang is the typical failure of distributed code,
so every launch has a timeout and a hang fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foundation import CellVQ, datasets

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun hung for {TIMEOUT} s (ranks out of step?): {exc.stdout}\n{exc.stderr}"[-4000:])


def test_ddp_pretraining_keeps_ranks_in_step_and_learns(tmp_path):
    """Two ranks pretrain on real pbmc3k counts with the EMA quantiser. Ranks get different numbers of cells
    from their row blocks (the last block is short); each must still take the same number of steps, or the
    run hangs. At the end both ranks hold identical weights and one identical codebook learnt from the global
    batch, the loss has fallen, and rank 0's checkpoint loads and embeds."""
    r = torchrun([str(ROOT / "tests/scripts/ddp_worker.py"), str(tmp_path)], tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]
    for res in ranks:  # the EMA update under DDP equals one process's update on the concatenated batch
        assert all(res["ema_matches_global_batch"].values()), res["ema_matches_global_batch"]
    s0, s1 = ranks[0]["state"], ranks[1]["state"]
    assert s0.keys() == s1.keys()
    for key in s0:
        if "running_" in key or "num_batches_tracked" in key:
            continue  # BatchNorm statistics are per rank (DDP broadcasts rank 0's before each forward)
        assert torch.equal(s0[key], s1[key]), key
    h0, h1 = ranks[0]["history"], ranks[1]["history"]
    assert len(h0) == len(h1) >= 20
    assert h0[-1]["loss"] == h1[-1]["loss"]  # logged values are averaged over ranks
    assert h0[-1]["loss"] < 0.9 * h0[0]["loss"], (h0[0]["loss"], h0[-1]["loss"])
    model = CellVQ.load(tmp_path / "ckpt")
    for key in ("encoder.gene_embedding.weight", "quantizer.embedding"):
        assert torch.equal(model.module.state_dict()[key], s0[key])
    a = datasets.pbmc3k()[:300].copy()
    model.embed(a, progress=False)
    assert a.uns["cellvq"]["codes_used"] > 5


def test_cli_pretrain_under_torchrun_writes_one_checkpoint_and_one_summary(tmp_path):
    data = datasets.dataset_path("pbmc3k")
    r = torchrun(["-m", "cellvq.cli", "pretrain", str(data), "--epochs", "1", "--max-cells-per-file", "512",
                  "--device", "cpu", "--out", str(tmp_path / "run"), "--no-train-state"], tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert r.stdout.count("saved CellVQ") == 1, r.stdout[-3000:]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    CellVQ.load(tmp_path / "run")
