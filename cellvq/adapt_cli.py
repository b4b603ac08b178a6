"""`cellvq adapt`: continual self-supervised pretraining of a checkpoint on the user's own counts."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from cellvq.cli_common import one_line_errors, out


def adapt_model(input: Path, model_dir: Path | None, cfg, out_dir: Path | None = None, command: str | None = None):
    """Read ``input``, adapt the checkpoint (shipped by default) to it with ``cfg`` (an
    :class:`~foundation.adapt.AdaptConfig`); write to ``out_dir`` when given. Returns ``(adata, adapted_model)``."""
    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.adapt import check_adapt_input

    adata = read_h5ad_checked(input)
    check_adapt_input(adata, cfg)  # before the model loads: bad counts or too few cells fail at once
    model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
    return adata, adapt_and_save(model, adata, input, cfg, out_dir, command)


def adapt_and_save(model, adata, input: Path, cfg, out_dir: Path | None, command: str | None = None):
    """``model.adapt`` on ``adata`` (read from ``input``); with ``out_dir``, the checkpoint and its OOD
    reference (recalibrated on these cells) are written there."""
    adata.uns["cellvq_source_file"] = str(input)
    command = command or shlex.join(["cellvq", *sys.argv[1:]])
    try:
        child = model.adapt(adata, cfg, out=out_dir, command=command)
    finally:  # the file name is only for the provenance record: never left in the user's AnnData
        adata.uns.pop("cellvq_source_file", None)
    if out_dir is not None:
        from foundation import ood

        ood.OODReference.from_values(ood_values(child, adata, cfg.layer), [input.name],
                                     child.metadata.get("checkpoint_sha256", "")).save(out_dir)
    return child


def ood_values(model, adata, layer: str | None):
    """Per-cell NLL of the adapted model on (up to 3,000 of) the cells it adapted to: its new reference."""
    import numpy as np

    from foundation import ood

    a = adata if adata.n_obs <= 3000 else adata[np.random.default_rng(0).choice(adata.n_obs, 3000, replace=False)]
    a = a.copy()
    model.embed(a, layer=layer, progress=False)
    return ood.nll_per_count(model, a, layer=layer)


@one_line_errors
def adapt_cmd(
    input: Annotated[Path, typer.Argument(help="h5ad file of raw counts to adapt the model to.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the adapted checkpoint.")],
    model_dir: Annotated[Path | None, typer.Option("--model", help="Parent checkpoint (default: shipped).")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer holding raw counts (default: X).")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the cells.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    max_cells: Annotated[int | None, typer.Option(help="Adapt on a random subset of this many cells.")] = 20_000,
    max_new_genes: Annotated[int, typer.Option(
        help="Learn up to this many of the data's genes the parent never saw (GENCODE genes detected in at "
        "least 10 cells and 0.5% of them); 0 keeps the parent's vocabulary.")] = 2000,
    seed: int = 0,
) -> None:
    """Continue pretraining a checkpoint (self-supervised, no labels) on your counts; writes a new checkpoint
    whose config records its parent (sha256), the data it saw and this command."""
    from foundation.adapt import AdaptConfig
    from foundation.grow import GrowConfig

    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder for the adapted checkpoint")
    args = ["cellvq", "adapt", str(input), "--out", str(out_dir), "--epochs", str(epochs), "--lr", str(lr),
            "--max-new-genes", str(max_new_genes), "--seed", str(seed)]
    for flag, value in (("--model", model_dir), ("--layer", layer), ("--max-cells", max_cells)):
        if value is not None:
            args += [flag, str(value)]
    cfg = AdaptConfig(epochs=epochs, lr=lr, max_cells=max_cells, seed=seed, layer=layer,
                      grow=GrowConfig(max_new_genes=max_new_genes))
    _, child = adapt_model(input, model_dir, cfg, out_dir, shlex.join(args))
    a = child.metadata["adapt"]
    out.print(f"adapted {a['data']['n_cells']} cells x {a['config']['epochs']} epochs in {a['seconds']:.0f} s "
              f"({len(a['genes_added'])} new genes learnt, {a['n_genes_initialised']} given a data-driven "
              f"start) -> {out_dir}")
