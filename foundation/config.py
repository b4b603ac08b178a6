"""Model and training configuration (plain dataclasses, serialised as JSON in checkpoints)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

QuantizerKind = Literal["soft_conditional", "ema", "none"]


@dataclass
class CellVQConfig:
    """Architecture of a CellVQ model.

    Presets: :meth:`tiny` (CPU, ~1M parameters), :meth:`small_cpu` (5.2M, CPU), :meth:`small` (~10M), :meth:`medium` (38M in its transformer
    blocks, 1,200 tokens), :meth:`base` (>= 100M), :meth:`large` (302M in its blocks, 2,048 tokens). ``medium``
    and ``large`` match the dense reference transformers of ``benchmarks/foundation_gpu.py``.
    """

    n_genes: int = 0  # vocabulary size, filled from the vocabulary
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    dropout: float = 0.0
    max_tokens: int = 256  # expressed genes per cell fed to the encoder (top by normalised value)
    quantizer: QuantizerKind = "soft_conditional"
    code_bits: int = 12  # soft conditional VQ: 2**code_bits codes
    n_codes_ema: int = 512  # EMA hard VQ codebook size
    code_hidden: int = 128  # MLP width that generates code vectors from code bits
    d_decoder: int = 64
    target_sum: float = 1e4  # library size normalisation of the encoder's value input

    @property
    def n_codes(self) -> int:
        if self.quantizer == "none":
            return 1
        return 2**self.code_bits if self.quantizer == "soft_conditional" else self.n_codes_ema

    @classmethod
    def tiny(cls, **kw: Any) -> CellVQConfig:
        return cls(**{**dict(d_model=64, n_layers=2, n_heads=4, d_ff=128, max_tokens=256), **kw})

    @classmethod
    def small(cls, **kw: Any) -> CellVQConfig:
        return cls(**{**dict(d_model=256, n_layers=6, n_heads=8, d_ff=1024, max_tokens=1024), **kw})

    @classmethod
    def small_cpu(cls, **kw: Any) -> CellVQConfig:
        """~5.2M parameters (most in a 256-wide gene embedding) with the compute of two thin blocks: the size
        one CPU session can pretrain in the background (``make pretrain-small``)."""
        return cls(**{**dict(d_model=256, n_layers=2, n_heads=8, d_ff=512, max_tokens=256, d_decoder=128), **kw})

    @classmethod
    def medium(cls, **kw: Any) -> CellVQConfig:
        return cls(**{**dict(d_model=512, n_layers=12, n_heads=8, d_ff=2048, max_tokens=1200, d_decoder=256), **kw})

    @classmethod
    def large(cls, **kw: Any) -> CellVQConfig:
        base = dict(d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_tokens=2048, d_decoder=256)
        return cls(**{**base, **kw})

    @classmethod
    def base(cls, **kw: Any) -> CellVQConfig:
        base = dict(d_model=768, n_layers=14, n_heads=12, d_ff=3072, max_tokens=2048, d_decoder=256)
        return cls(**{**base, **kw})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellVQConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown CellVQConfig fields {sorted(unknown)}: checkpoint from another version?")
        return cls(**d)


@dataclass
class TrainConfig:
    """Pretraining hyper-parameters."""

    epochs: int = 10
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    mask_ratio: float = 0.3  # share of the encoder's tokens hidden and reconstructed
    masked_weight: float = 1.0  # extra weight of the masked genes' likelihood
    tau_start: float = 0.3  # soft VQ temperature on cosine similarities, annealed geometrically
    tau_end: float = 0.03
    commit_weight: float = 0.25
    diversity_weight: float = 0.1
    # cross-view objective: a second view of each cell (counts binomially thinned to a random share in
    # [thin_min, 1], other genes masked) must map to the same embedding (InfoNCE on the cosine of z)
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.1
    thin_min: float = 0.5
    # share of batches whose second view is also cut to a random gene panel (tokens.random_panel), as a
    # smaller experiment would have measured it; teaches embeddings that do not depend on the gene panel
    panel_prob: float = 0.0
    panel_min_genes: int = 200
    panel_max_genes: int = 4000
    panel_cell_prob: float = 1.0  # share of a panel batch's cells cut to the panel (the rest keep every gene)
    max_cells_per_file: int | None = None  # per epoch; stops one big file from dominating
    # 0: each minibatch comes from one row block (one file). > 0: pool consecutive blocks (shuffled across
    # files by the stream) until at least this many cells, then draw minibatches across them, so that a
    # batch mixes experiments (BatchNorm statistics and contrastive negatives span files)
    mix_cells: int = 0
    block_size: int = 512
    seed: int = 0
    bf16: bool = True  # autocast on CUDA only
    log_every: int = 20

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
