"""One short device call: pretrain a ``base``-size CellVQ on the whole training corpus within a time budget.

    python benchmarks/pretrain_gpu.py --out "$OUT"                 # on a CUDA machine: base preset, <= 8 min
    python benchmarks/pretrain_gpu.py --dry-run --out /tmp/pg      # CPU, tiny sizes, a minute: checks the code

The training files are the ``role = train`` rows of ``foundation/pretrained/corpus.tsv`` (read from the shared
data folder, ``CELLVQ_SHARED_DATA``), with the pbmc3k cells of ``pbmc3k_holdout.tsv`` held out; held-out
datasets are never read. The call has two phases inside ``--budget-s`` (default 420 s of the 8 minutes):

1. a probe: one short epoch (``--probe-cells`` per file) measures training cells/s on this device;
2. the run: as many whole epochs (``--max-cells-per-file`` per file per epoch) as fit the time left at the
   probe's speed, with the checkpoint written to ``OUT/checkpoint`` (safetensors + config + vocab) after
   every epoch, so an interrupted call still brings one back.

It records cells/s (probe and run), model FLOPs per trained cell (the encoder's matrix products over the real
token counts of the training cells, x3 for backward, x2 for the cross-view second pass, plus the ZINB
decoder's projection over the vocabulary), MFU against the device's bf16 peak, and peak GPU memory, to
``OUT/pretrain_gpu.json`` and ``.md``. A ``base`` checkpoint (>= 100M parameters, ~0.4 GB) is larger than a
device call can bring back (16 MiB per file): score it on the device with
``python benchmarks/generalisation.py --checkpoint "$OUT/checkpoint" --no-optional --adapt-epochs 0
--out "$OUT"`` in the same call, and keep the weights only where a store can take them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from foundation import CellVQ, CellVQConfig  # noqa: E402
from foundation.config import TrainConfig  # noqa: E402
from foundation.datasets import shared_data_dir  # noqa: E402
from foundation.holdout import holdout_set, read_holdout  # noqa: E402
from foundation.model import build_vocab_from_files  # noqa: E402

PRETRAINED = ROOT / "foundation" / "pretrained"
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0}
DRY = CellVQConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_tokens=64, d_decoder=16)


@dataclass
class RunConfig:
    preset: str = "base"
    budget_s: float = 420.0
    batch_size: int = 64
    lr: float = 3e-4
    probe_cells: int = 512  # per file, in the probe epoch
    max_cells_per_file: int = 20000  # per file per epoch in the run (the screen's 20k cells at most once)
    device: str = "cuda"
    dry_run: bool = False
    seed: int = 0


def train_files(shared: Path) -> list[Path]:
    """The corpus manifest's training files, all of them present (never a held-out file)."""
    m = pd.read_csv(PRETRAINED / "corpus.tsv", sep="\t")
    files = [shared / f for f in m.loc[m["role"] == "train", "file"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"training files missing: {missing}; set CELLVQ_SHARED_DATA to the shared data folder")
    return files


def token_lengths(files: list[Path], vocab, cfg: CellVQConfig, n: int = 2000) -> np.ndarray:
    """Encoder tokens (CLS + expressed genes up to max_tokens) of up to ``n`` cells of each training file."""
    from foundation.data import CountsStream

    out = []
    for f in files:
        stream = CountsStream([f], vocab, block_size=n, shuffle=False)
        block = next(iter(stream))
        out.append(np.minimum(np.diff(block.counts.indptr), cfg.max_tokens) + 1)
    return np.concatenate(out)


def train_flops_per_cell(cfg: CellVQConfig, lengths: np.ndarray) -> float:
    layer = 2 * (4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_ff)  # qkv, out, feed-forward, per token
    enc = cfg.n_layers * (lengths.mean() * layer + 4.0 * cfg.d_model * (lengths**2).mean())
    dec = 2.0 * cfg.n_genes * cfg.d_decoder * 3  # mean, dispersion and dropout over the vocabulary
    return 3.0 * (2 * enc + dec)  # forward + backward; both views through the encoder


def model_config(rc: RunConfig) -> CellVQConfig:
    if rc.dry_run:
        return DRY
    presets = {"tiny": CellVQConfig.tiny, "small-cpu": CellVQConfig.small_cpu, "small": CellVQConfig.small,
               "medium": CellVQConfig.medium, "base": CellVQConfig.base, "large": CellVQConfig.large}
    return presets[rc.preset]()


def pretrain(files, vocab, cfg, rc: RunConfig, hold, epochs: int, per_file: int, out: Path | None):
    tc = TrainConfig(epochs=epochs, batch_size=rc.batch_size, lr=rc.lr, contrastive_weight=1.0,
                     max_cells_per_file=per_file, seed=rc.seed, bf16=not rc.dry_run)
    t0 = time.perf_counter()
    model = CellVQ.pretrain(files, config=cfg, train=tc, out=out, vocab=vocab, holdout=hold, device=rc.device,
                            name=f"cellvq-{rc.preset}-human-gpu", keep_train_state=False)
    return model, time.perf_counter() - t0


def peak_tflops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run(rc: RunConfig, out: Path) -> dict:
    t_start = time.perf_counter()
    files = train_files(shared_data_dir())
    hold = holdout_set(read_holdout(PRETRAINED / "pbmc3k_holdout.tsv"))
    vocab = build_vocab_from_files(files)
    cfg = model_config(rc)
    probe, probe_s = pretrain(files, vocab, cfg, rc, hold, 1, rc.probe_cells, None)
    probe_cps = float(probe.metadata["train_cells_per_second"])
    cfg = probe.config  # n_genes filled in
    per_epoch = epoch_cells(files, vocab, hold, rc.max_cells_per_file)
    left = rc.budget_s - (time.perf_counter() - t_start) - 30.0  # init, SVD start and the last save
    epochs = max(1, int(left * probe_cps * 0.9 // per_epoch))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model, run_s = pretrain(files, vocab, cfg, rc, hold, epochs, rc.max_cells_per_file, out / "checkpoint")
    cps = float(model.metadata["train_cells_per_second"])
    flops = train_flops_per_cell(cfg, token_lengths(files, vocab, cfg))
    peak = peak_tflops(rc.device)
    report = {
        "device": torch.cuda.get_device_name() if rc.device.startswith("cuda") else platform.processor() or "cpu",
        "run_config": asdict(rc), "model_config": cfg.to_dict(), "corpus": [f.name for f in files],
        "n_holdout_cells": len(hold), "parameters": sum(p.numel() for p in model.module.parameters()),
        "probe": {"cells_per_second": probe_cps, "seconds": round(probe_s, 1)},
        "epochs": epochs, "cells_per_epoch": per_epoch, "steps": model.metadata["steps"],
        "train_seconds": model.metadata["train_seconds"], "wall_seconds": round(run_s, 1),
        "train_cells_per_second": cps, "train_tflops_per_cell": flops / 1e12,
        "achieved_tflops": cps * flops / 1e12, "mfu": (cps * flops / 1e12 / peak) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "final_history": model.metadata.get("final_history", {}),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "pretrain_gpu.json").write_text(json.dumps(report, indent=2))
    (out / "pretrain_gpu.md").write_text(markdown(report))
    return report


def epoch_cells(files, vocab, hold: set[tuple[str, str]], cap: int) -> int:
    """Training cells per epoch, counted as the trainer draws them (:func:`foundation.train.trainer.cells_per_epoch`)."""
    from foundation.data import CountsStream
    from foundation.train.trainer import cells_per_epoch

    return cells_per_epoch(CountsStream(files, vocab, shuffle=False), cap, hold)


def markdown(r: dict) -> str:
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (no bf16 peak for this device)"
    mem = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "n/a (CPU)"
    return "\n".join([
        f"# Pretraining `{r['run_config']['preset']}` on the training corpus ({r['device']})", "",
        f"{r['parameters'] / 1e6:.1f}M parameters, {r['epochs']} epochs x {r['cells_per_epoch']} cells "
        f"({r['steps']} steps), corpus: {', '.join(r['corpus'])} ({r['n_holdout_cells']} pbmc3k cells held out).", "",
        "| figure | value |", "|---|---:|",
        f"| probe cells/s | {r['probe']['cells_per_second']:.1f} |",
        f"| training cells/s | {r['train_cells_per_second']:.1f} |",
        f"| model TFLOP per trained cell | {r['train_tflops_per_cell']:.4f} |",
        f"| achieved TFLOP/s | {r['achieved_tflops']:.2f} |",
        f"| MFU (bf16 peak) | {mfu} |",
        f"| peak GPU memory | {mem} |",
        f"| training s / whole call s | {r['train_seconds']} / {r['total_seconds']} |",
        f"| final loss | {r['final_history'].get('loss', float('nan')):.3f} |", ""])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the report and checkpoint/ (e.g. $OUT)")
    ap.add_argument("--preset", default="base")
    ap.add_argument("--budget-s", type=float, default=None, help="whole call, seconds (default 420; dry run 40)")
    ap.add_argument("--max-cells-per-file", type=int, default=None)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, few cells: checks the code paths")
    a = ap.parse_args(argv)
    rc = RunConfig(preset=a.preset, dry_run=a.dry_run)
    if a.dry_run:
        rc.preset, rc.device, rc.budget_s, rc.probe_cells, rc.max_cells_per_file, rc.batch_size = "dry-run", "cpu", 40.0, 64, 96, 32
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU check")
    rc.budget_s = a.budget_s or rc.budget_s
    rc.max_cells_per_file = a.max_cells_per_file or rc.max_cells_per_file
    report = run(rc, a.out)
    print(json.dumps({k: report[k] for k in ("train_cells_per_second", "mfu", "peak_memory_gib", "epochs")}))
    return report


if __name__ == "__main__":
    main()
