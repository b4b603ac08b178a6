"""`cellvq perturb evaluate`: leave-perturbation-out evaluation of perturbation-effect predictors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

perturb_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Predict genetic perturbation effects and compare with simple baselines.")


def run_evaluation(input: Path, key: str, control: str, batch_key: str | None, min_cells: int,
                   folds: int, seed: int, model_dir: Path | None):
    """Read ``input``, compute observed shifts, evaluate every method; returns the tidy table."""
    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.perturb import EvalConfig, PerturbConfig, evaluate, perturbation_shifts

    adata = read_h5ad_checked(input)
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"obs has no column {batch_key!r}; pass an existing column with --batch-key or leave it out.")
    data = perturbation_shifts(adata, PerturbConfig(key=key, control=control, batch_key=batch_key, min_cells=min_cells))
    model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
    return evaluate(data, model.gene_embedding(), EvalConfig(n_folds=folds, seed=seed), dataset=input.stem)


@perturb_app.command("evaluate")
def evaluate_cmd(
    input: Annotated[Path, typer.Argument(help="h5ad of raw counts with a perturbation column in obs.")],
    out_csv: Annotated[Path, typer.Option("--out", help="CSV of per-perturbation metrics to write.")],
    key: Annotated[str, typer.Option("--key", help="obs column of targets ('+' or ';' joins several).")] = "perturbation",
    control: Annotated[str, typer.Option("--control", help="Label of control cells in --key.")] = "non-targeting",
    batch_key: Annotated[str | None, typer.Option("--batch-key", help="obs column of batches (centred on their own controls).")] = None,
    min_cells: Annotated[int, typer.Option("--min-cells", help="Drop perturbations with fewer cells.")] = 20,
    folds: Annotated[int, typer.Option("--folds", help="Grouped folds over perturbations.")] = 5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model_dir: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: the shipped one).")] = None,
) -> None:
    """Hold out every perturbation once; write per-perturbation metrics and print the mean per method."""
    from cellvq.cli import fail, out
    from foundation.perturb import summarize

    try:
        table = run_evaluation(input, key, control, batch_key, min_cells, folds, seed, model_dir)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_csv, index=False)
        out.print(summarize(table).round(3).to_string(index=False), markup=False, highlight=False, soft_wrap=True)
        out.print(f"wrote {out_csv}")
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001
        fail(exc)
