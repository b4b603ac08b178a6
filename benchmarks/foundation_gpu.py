"""GPU throughput of the CellVQ encoder beside the issue's dense reference transformers (run on demand).

    python benchmarks/foundation_gpu.py                 # on a CUDA machine: bf16, both sizes
    python benchmarks/foundation_gpu.py --smoke --device cpu   # a few seconds: checks the code paths

Issue 2 quotes a generic dense PyTorch transformer on an H100 in bf16: 38M parameters over 1,200 gene tokens
at 1,700 cells/s embedding and 560 cells/s training (27 % of peak FLOPs), 302M over 2,048 tokens at 203 and
63 cells/s (~40 %). For each of the two sizes this script measures, in one process:

* ``dense``: that reference, rebuilt (``nn.TransformerEncoder``, pre-norm, no dropout), every cell the same
  fixed window of genes, zeros included;
* ``cellvq packed``: the CellVQ encoder of the same width, depth and token cap over real cells (the bundled
  pbmc3k counts, read with h5py), each cell only its expressed genes, cells packed back to back and attended
  with variable-length flash attention (``foundation.nn.attention``);
* ``cellvq padded``: the same encoder on length-sorted padded batches (SDPA with a padding mask);
* ``cellvq full step``: a whole pretraining step (two views, ZINB decoder over the vocabulary, quantiser,
  InfoNCE, AdamW).

Cells/s are medians over timed iterations after warm-up (CUDA synchronised). Model FLOPs count the matrix
products actually needed (linear layers 2*params per token, attention 4*n^2*d per cell and layer, x3 for
training) over the real tokens: padding is not counted as useful work, so padded paths show a lower MFU.
The script needs only torch, numpy, scipy and h5py (no anndata), so it runs on a bare CUDA image.
Writes ``foundation_gpu.json`` and ``foundation_gpu.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from foundation.config import CellVQConfig  # noqa: E402
from foundation.nn.attention import varlen_available  # noqa: E402
from foundation.nn.module import CellVQModule, LossWeights  # noqa: E402
from foundation.tokens import make_batch, thin_counts, to_device  # noqa: E402

# (architecture, train batch, embed batch); the presets CellVQConfig.medium / .large are the two sizes
SIZES = {"38M": (CellVQConfig.medium(), 64, 256), "302M": (CellVQConfig.large(), 32, 128)}
SMOKE = {"smoke": (CellVQConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_tokens=128), 8, 16)}
# the dense figures, H100, bf16 (cells/s)
REFERENCE = {"38M": {"embed": 1700.0, "train": 560.0}, "302M": {"embed": 203.0, "train": 63.0}}
# dense bf16 tensor-core peaks (TFLOP/s) by device name; --peak-tflops overrides
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def load_cells(n_cells: int, seed: int = 0):
    """The bundled pbmc3k counts in the shipped checkpoint's vocabulary, read with h5py (no anndata)."""
    import h5py
    import scipy.sparse as sp

    vocab = json.loads((ROOT / "foundation/pretrained/cellvq-tiny-human/vocab.json").read_text())["symbols"]
    index = {s: i for i, s in enumerate(vocab)}
    with h5py.File(ROOT / "foundation/datasets/files/pbmc3k_counts.h5ad", "r") as f:
        x = f["X"]
        counts = sp.csr_matrix((x["data"][:], x["indices"][:], x["indptr"][:]), shape=tuple(x.attrs["shape"]))
        genes = [g.decode() if isinstance(g, bytes) else str(g) for g in f["var"][f["var"].attrs["_index"]][:]]
    col = np.array([index.get(g, -1) for g in genes])
    keep = np.flatnonzero(col >= 0)
    m = counts[:, keep].tocoo()
    vc = sp.csr_matrix((m.data, (m.row, col[keep][m.col])), shape=(counts.shape[0], len(vocab)))
    measured = np.zeros(len(vocab), bool)
    measured[col[keep]] = True
    rows = np.random.default_rng(seed).choice(vc.shape[0], size=n_cells, replace=n_cells > vc.shape[0])
    return vc[rows], measured


def layer_flops(d: int, d_ff: int) -> int:
    """Forward FLOPs of one block's linear layers per token (qkv, out, two feed-forward matrices)."""
    return 2 * (4 * d * d + 2 * d * d_ff)


def encoder_flops(lengths: np.ndarray, d: int, n_layers: int, d_ff: int) -> float:
    """Forward FLOPs of the transformer over cells of the given token counts."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return n_layers * (lengths.sum() * layer_flops(d, d_ff) + 4.0 * d * (lengths**2).sum())


class DenseReference(torch.nn.Module):
    """The issue's generic dense transformer: a fixed window of genes per cell, zeros included."""

    def __init__(self, n_genes: int, d: int, layers: int, heads: int, d_ff: int):
        super().__init__()
        self.gene = torch.nn.Embedding(n_genes, d)
        self.value = torch.nn.Linear(1, d)
        layer = torch.nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids, vals):
        return self.enc(self.gene(ids) + self.value(vals.unsqueeze(-1))).mean(1)


def timed(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds per call after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, fn, cells: int, flops: float | None, device, warmup: int, iters: int, peak: float | None) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        sec = timed(fn, device, warmup, iters)
    except Exception as exc:  # one path failing must not lose the other figures of a short GPU lease
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    out = {"cells_per_s": round(cells / sec, 1), "seconds_per_batch": round(sec, 5)}
    if flops is not None:
        out["tflops"] = round(float(flops) / sec / 1e12, 2)
        if peak:
            out["mfu"] = round(float(flops) / sec / (peak * 1e12), 3)
    if device.type == "cuda":
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(f"  {name:<28} {out}", flush=True)
    return out


def set_variant(module, variant: str) -> None:
    """``packed`` / ``padded`` / ``packed+compile`` (the packed blocks through ``torch.compile``, dynamic shapes)."""
    module.encoder.attention = variant.split("+")[0]
    for block in module.encoder.blocks:
        if variant.endswith("+compile"):
            if "forward_packed" not in vars(block):
                block.forward_packed = torch.compile(block.forward_packed, dynamic=True)
        else:
            vars(block).pop("forward_packed", None)


def bench_size(label: str, size: tuple[CellVQConfig, int, int], counts, measured, device, dtype, warmup: int,
               iters: int, peak, compile_blocks: bool = False) -> dict:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_genes = counts.shape[1]
    cfg, tb, eb = dataclasses.replace(size[0], n_genes=n_genes), size[1], size[2]
    d, nl, nh, dff, window = cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.max_tokens
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    res: dict = {"d_model": d, "n_layers": nl, "n_heads": nh, "d_ff": dff, "token_window": window}
    res["block_parameters"] = nl * (4 * d * d + 2 * d * dff)

    # ---- real cells as tokens (tokenisation is host work; its own rate is reported)
    t = time.perf_counter()
    lengths_all = np.minimum(np.diff(counts.indptr), window)
    order = np.argsort(lengths_all, kind="stable")
    embed_batches = [make_batch(counts[order[i : i + eb]], measured, window, with_targets=False)
                     for i in range(0, len(order) - eb + 1, eb)]
    res["tokenise_cells_per_s_one_cpu_thread"] = round(len(embed_batches) * eb / (time.perf_counter() - t), 1)
    embed_batches = [to_device(b, device) for b in embed_batches]
    res["tokens_per_cell_median"] = float(np.median(lengths_all))
    res["tokens_per_cell_mean"] = float(np.mean(lengths_all))
    res["padding_share_sorted_batches"] = round(
        1 - sum(int((~b.pad_mask).sum()) for b in embed_batches) / sum(b.pad_mask.numel() for b in embed_batches), 4)

    module = CellVQModule(cfg).to(device)
    res["cellvq_parameters"] = sum(p.numel() for p in module.parameters())

    def n_tokens(b):  # + CLS
        return (~b.pad_mask).sum(1).cpu().numpy() + 1

    embed_flops = [encoder_flops(n_tokens(b), d, nl, dff) for b in embed_batches]
    it = {"i": 0}

    def next_embed():
        b = embed_batches[it["i"] % len(embed_batches)]
        it["i"] += 1
        return b

    # ---- agreement of the packed and padded paths on real cells in this precision
    module.eval()
    with torch.no_grad(), autocast:
        b = embed_batches[len(embed_batches) // 2]
        z = {}
        for impl in ("packed", "padded"):
            module.encoder.attention = impl
            z[impl] = module.cell_embedding(b.gene_ids, b.values, b.pad_mask)[0].float()
        res["packed_vs_padded_rel_err"] = float((z["packed"] - z["padded"]).norm() / z["padded"].norm())
        res["packed_uses_varlen_flash"] = varlen_available(torch.empty(1, nh, d // nh, device=device, dtype=dtype))

    variants = ["packed", "padded"] + (["packed+compile"] if compile_blocks else [])
    # ---- embedding
    for impl in variants:
        set_variant(module, impl)

        def run_embed():
            bb = next_embed()
            with torch.no_grad(), autocast:
                module.encode(bb.gene_ids, bb.values, bb.pad_mask)

        res[f"cellvq_{impl}_embed"] = measure(f"{label} cellvq {impl} embed", run_embed, eb,
                                              float(np.median(embed_flops)), device, warmup, iters, peak)

    # ---- dense reference over a fixed window of the most expressed genes
    dense = DenseReference(n_genes, d, nl, nh, dff).to(device)
    top = torch.from_numpy(np.argsort(-np.asarray(counts.sum(0)).ravel())[:window].copy()).to(device)
    dense_ids_e = top.expand(eb, -1).contiguous()
    dense_vals_e = torch.rand(eb, window, device=device)
    flops_dense_e = encoder_flops(np.full(eb, window), d, nl, dff)
    dense.eval()

    def run_dense_embed():
        with torch.no_grad(), autocast:
            dense(dense_ids_e, dense_vals_e)

    res["dense_embed"] = measure(f"{label} dense embed", run_dense_embed, eb, flops_dense_e, device, warmup, iters, peak)
    dense.train()
    opt_d = torch.optim.AdamW(dense.parameters(), 1e-4, fused=device.type == "cuda")
    dense_ids_t, dense_vals_t = top.expand(tb, -1).contiguous(), torch.rand(tb, window, device=device)

    def run_dense_train():
        with autocast:
            loss = dense(dense_ids_t, dense_vals_t).float().square().mean()
        loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    res["dense_train"] = measure(f"{label} dense train", run_dense_train, tb,
                                 3 * encoder_flops(np.full(tb, window), d, nl, dff), device, warmup, iters, peak)

    # ---- training batches as the trainer makes them (30 % of tokens masked; a thinned second view)
    train = []
    for _ in range(max(4, warmup + 1)):
        rows = counts[rng.choice(counts.shape[0], size=tb, replace=False)]
        b1 = make_batch(rows, measured, window, mask_ratio=0.3, rng=rng)
        b2 = make_batch(thin_counts(rows, rng, 0.5), measured, window, mask_ratio=0.3, rng=rng, with_targets=False)
        train.append((to_device(b1, device), to_device(b2, device)))
    enc_flops_t = float(np.median([encoder_flops(n_tokens(b1), d, nl, dff) for b1, _ in train]))
    two_view_flops = float(np.median([encoder_flops(n_tokens(b1), d, nl, dff) + encoder_flops(n_tokens(b2), d, nl, dff)
                                      for b1, b2 in train]))
    dd = cfg.d_decoder
    decoder_flops = 4.0 * tb * n_genes * dd + 4.0 * n_genes * d * dd
    module.train()
    opt = torch.optim.AdamW(module.parameters(), 1e-4, fused=device.type == "cuda")
    jt = {"i": 0}

    def next_train():
        pair = train[jt["i"] % len(train)]
        jt["i"] += 1
        return pair

    for impl in variants:
        set_variant(module, impl)

        def run_encoder_train():
            b1, _ = next_train()
            with autocast:
                pooled, _, _ = module.encoder(b1.gene_ids, b1.values, b1.pad_mask)
                loss = pooled.float().square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        res[f"cellvq_{impl}_encoder_train"] = measure(f"{label} cellvq {impl} enc train", run_encoder_train, tb,
                                                      3 * enc_flops_t, device, warmup, iters, peak)
    set_variant(module, "packed")

    def run_full_step():
        b1, b2 = next_train()
        with autocast:
            out = module.loss(b1, LossWeights(contrastive=1.0), view2=b2)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    res["cellvq_full_pretrain_step"] = measure(f"{label} cellvq full step", run_full_step, tb,
                                               3 * (two_view_flops + decoder_flops), device, warmup, iters, peak)
    ref = REFERENCE.get(label)
    for key, dense_key, kind in (("cellvq_packed_embed", "dense_embed", "embed"),
                                 ("cellvq_packed_encoder_train", "dense_train", "train")):
        a, b = res[key].get("cells_per_s"), res[dense_key].get("cells_per_s")
        if a and b:
            res[f"{kind}_speedup_vs_dense_same_process"] = round(a / b, 2)
        if a and ref:
            res[f"{kind}_ratio_to_issue_h100_figure"] = round(a / ref[kind], 2)
    return res


def _ratio(r: dict, key: str) -> str:
    return "n/a" if r.get(key) is None else f"{r[key]}x"


def markdown(report: dict) -> str:
    lines = ["# Foundation GPU benchmark", "",
             f"Device: {report['device']}; torch {report['torch']}; {report['dtype']}; "
             f"peak used for MFU: {report['peak_tflops']} TFLOP/s.", ""]
    for label, r in report["sizes"].items():
        lines += [f"## {label}: d {r['d_model']}, {r['n_layers']} layers, window {r['token_window']} "
                  f"(pbmc3k: median {r['tokens_per_cell_median']:.0f} expressed genes per cell)", "",
                  "| path | cells/s | TFLOP/s | MFU | peak GB |", "|---|---:|---:|---:|---:|"]
        for key in ("dense_embed", "cellvq_packed_embed", "cellvq_padded_embed", "cellvq_packed+compile_embed",
                    "dense_train", "cellvq_packed_encoder_train", "cellvq_padded_encoder_train",
                    "cellvq_packed+compile_encoder_train", "cellvq_full_pretrain_step"):
            if key not in r:
                continue
            m = r.get(key, {})
            if "error" in m:
                lines.append(f"| {key} | error: {m['error'][:120]} | | | |")
            else:
                lines.append(f"| {key} | {m.get('cells_per_s')} | {m.get('tflops', '')} | {m.get('mfu', '')} | "
                             f"{m.get('peak_mem_gb', '')} |")
        lines += ["", f"Embedding vs dense (same process): {_ratio(r, 'embed_speedup_vs_dense_same_process')}; "
                  f"training: {_ratio(r, 'train_speedup_vs_dense_same_process')}. Against the issue's H100 figures: "
                  f"{_ratio(r, 'embed_ratio_to_issue_h100_figure')} / {_ratio(r, 'train_ratio_to_issue_h100_figure')}. "
                  f"Packed vs padded relative difference of the embedding: {r['packed_vs_padded_rel_err']:.2e}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), help=f"of {list(SIZES)}")
    ap.add_argument("--smoke", action="store_true", help="one tiny size, few iterations: checks the code paths")
    ap.add_argument("--cells", type=int, default=2048, help="real cells to draw the batches from")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time the packed blocks through torch.compile")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float32 if (args.fp32 or device.type == "cpu") else torch.bfloat16
    sizes = SMOKE if args.smoke else {k: SIZES[k] for k in args.sizes}
    if args.smoke:
        args.cells, args.warmup, args.iters = min(args.cells, 256), 1, 2
    counts, measured = load_cells(args.cells)
    peak = peak_tflops(device, args.peak_tflops)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "dtype": str(dtype).replace("torch.", ""),
              "peak_tflops": peak, "cells": args.cells, "iters": args.iters, "reference_h100_dense": REFERENCE,
              "sizes": {}}
    for label, s in sizes.items():
        print(f"{label} ...", flush=True)
        report["sizes"][label] = bench_size(label, s, counts, measured, device, dtype, args.warmup, args.iters, peak,
                                            args.compile)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "foundation_gpu_smoke" if args.smoke else "foundation_gpu"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (args.out / f"{stem}.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
