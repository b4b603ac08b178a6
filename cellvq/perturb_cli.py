"""`cellvq perturb evaluate|train|predict|sample`: leave-perturbation-out evaluation of perturbation-effect
predictors; training one on a whole screen (genetic targets or compounds) and predicting new perturbations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellvq.cli_common import check_db_target, check_writable_folder, one_line_errors, out

perturb_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Predict genetic and drug perturbation effects and compare with simple baselines.")


def run_evaluation(input: Path, key: str, control: str, batch_key: str | None, min_cells: int,
                   folds: int, seed: int, model_dir: Path | None, figure: Path | None = None):
    """Read ``input``, compute observed shifts, evaluate every method; returns the tidy table. With
    ``figure``, also plot the CellVQ predictor's held-out predictions vs the observed shifts (PNG)."""
    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.perturb import EvalConfig, PerturbConfig, evaluate, perturbation_shifts

    adata = read_h5ad_checked(input)
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"obs has no column {batch_key!r}; pass an existing column with --batch-key or leave it out.")
    data = perturbation_shifts(adata, PerturbConfig(key=key, control=control, batch_key=batch_key, min_cells=min_cells))
    model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
    cfg = EvalConfig(n_folds=folds, seed=seed)
    table = evaluate(data, model.gene_embedding(), cfg, dataset=input.stem)
    if figure is not None:
        from foundation.perturb.plot import held_out_predictions, plot_held_out

        method = "cellvq_predictor[cellvq]"
        plot_held_out(data, held_out_predictions(data, model.gene_embedding(), method, cfg), figure, method)
    return table


@perturb_app.command("evaluate")
@one_line_errors
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
    figure: Annotated[Path | None, typer.Option("--figure", help="PNG of held-out predicted vs observed shifts (top DE genes).")] = None,
) -> None:
    """Hold out every perturbation once; write per-perturbation metrics and print the mean per method."""
    from foundation.perturb import summarize

    table = run_evaluation(input, key, control, batch_key, min_cells, folds, seed, model_dir, figure)
    write_csv_atomic(table, out_csv)
    out.print(summarize(table).round(3).to_string(index=False), markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {out_csv}" + (f" and {figure}" if figure else ""))


def read_smiles_table(path: Path) -> dict[str, str]:
    """compound -> SMILES from a CSV with columns ``compound,smiles``."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"SMILES table {path} does not exist; pass a CSV with columns compound,smiles (--smiles).")
    tab = pd.read_csv(path)
    if not {"compound", "smiles"} <= set(tab.columns):
        raise ValueError(f"{path} has columns {list(tab.columns)}; it needs columns compound,smiles (--smiles).")
    return dict(zip(tab["compound"].astype(str), tab["smiles"]))


def smiles_for(names: list[str], table: dict[str, str] | None) -> list[str] | None:
    if table is None:
        return None
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"compounds {missing[:8]} have no row in the SMILES table; add them to the --smiles CSV.")
    return [table[n] for n in names]


def train_predictor(input: Path, out_dir: Path, cfg_p, cfg_m, smiles: Path | None, model_dir: Path | None):
    """Observed shifts of every perturbation in ``input``, a predictor fitted on all of them, saved."""
    from tqdm.auto import tqdm

    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.perturb import perturbation_shifts
    from foundation.perturb.data import check_min_cells
    from foundation.perturb.predictor import PerturbPredictor, embedding_for, shift_table

    steps = tqdm(total=4, desc="perturb train", unit="step")
    if cfg_m.kind == "drug" and smiles is None:
        raise ValueError("--kind drug needs --smiles (CSV with columns compound,smiles).")
    table = read_smiles_table(smiles) if smiles else None
    if table is not None:
        from foundation.perturb.molecules import parse_smiles

        parse_smiles(list(table.values()), names=list(table))  # fail before any heavy work
    adata = read_h5ad_checked(input)
    if cfg_p.batch_key is not None and cfg_p.batch_key not in adata.obs:
        raise KeyError(f"obs has no column {cfg_p.batch_key!r}; pass an existing column with --batch-key or leave it out.")
    check_min_cells(adata, cfg_p)
    steps.update()
    data = perturbation_shifts(adata, cfg_p)
    steps.update()
    emb = None
    if cfg_m.kind == "genetic" and cfg_m.embedding != "none":
        model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
        emb = embedding_for(cfg_m.embedding, model.gene_embedding(), cfg_m.seed)
    pred = PerturbPredictor(cfg_m, data.genes, emb).fit(data, smiles_for(data.perturbations, table))
    steps.update()
    pred.save(out_dir, observed=shift_table(data.perturbations, data.genes, data.shift, predicted=False))
    steps.update()
    steps.close()
    return data, pred


@perturb_app.command("train")
@one_line_errors
def train_cmd(
    input: Annotated[Path, typer.Argument(help="h5ad of raw counts with a perturbation column in obs.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the trained predictor to.")],
    kind: Annotated[str, typer.Option("--kind", help="genetic (targets are genes) or drug (compounds).")] = "genetic",
    key: Annotated[str, typer.Option("--key", help="obs column of targets / compounds.")] = "perturbation",
    control: Annotated[str, typer.Option("--control", help="Label of control cells in --key.")] = "non-targeting",
    batch_key: Annotated[str | None, typer.Option("--batch-key", help="obs column of batches.")] = None,
    min_cells: Annotated[int, typer.Option("--min-cells", help="Refuse perturbations with fewer cells.")] = 20,
    smiles: Annotated[Path | None, typer.Option("--smiles", help="CSV compound,smiles (--kind drug).")] = None,
    embedding: Annotated[str, typer.Option("--embedding", help="cellvq, random or none (genetic).")] = "cellvq",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model_dir: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: the shipped one).")] = None,
) -> None:
    """Fit a predictor on every perturbation of a screen; write it with the observed shift table."""
    from foundation.perturb import PerturbConfig
    from foundation.perturb.predictor import PredictorConfig

    data, _ = train_predictor(input, out_dir, PerturbConfig(key=key, control=control, batch_key=batch_key,
                                                            min_cells=min_cells),
                              PredictorConfig(kind=kind, embedding=embedding, seed=seed), smiles, model_dir)
    out.print(f"trained on {len(data.perturbations)} perturbations x {len(data.genes)} genes; wrote {out_dir}")


def write_csv_atomic(table, path: Path) -> None:
    """CSV through a temporary sibling renamed into place (no half-written table on failure)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@perturb_app.command("predict")
@one_line_errors
def predict_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `cellvq perturb train`.")],
    out_csv: Annotated[Path, typer.Option("--out", help="CSV table perturbation,gene,delta,rank,predicted.")],
    perturbations: Annotated[str | None, typer.Option("--perturbations", help="Comma-separated targets ('A+B' combines); genetic.")] = None,
    smiles: Annotated[Path | None, typer.Option("--smiles", help="CSV compound,smiles of compounds to predict; drug.")] = None,
    top: Annotated[int, typer.Option("--top", help="Keep the top-k genes by |delta| per perturbation (0: all).")] = 0,
) -> None:
    """Predict the shift of every measured gene for new perturbations (the plain table of docs/CONTRACTS.md)."""
    from tqdm.auto import tqdm

    from foundation.perturb.predictor import PerturbPredictor, shift_table

    pred = PerturbPredictor.load(model_dir)
    if pred.cfg.kind == "drug":
        if smiles is None:
            raise ValueError("this is a drug predictor: pass the compounds to predict with --smiles (CSV compound,smiles).")
        table = read_smiles_table(smiles)
        names = list(table)
    else:
        if not perturbations:
            raise ValueError("pass the targets to predict with --perturbations, e.g. --perturbations 'IRF1,STAT1+JAK2'.")
        names, table = [p.strip() for p in perturbations.split(",") if p.strip()], None
    shifts = [pred.predict([n], smiles_for([n], table))[0] for n in tqdm(names, desc="perturb predict")]
    result = shift_table(names, pred.genes, shifts, predicted=True, top=top or None)
    write_csv_atomic(result, out_csv)
    out.print(f"predicted {len(names)} perturbations x {len(pred.genes)} genes; wrote {out_csv}")


@perturb_app.command("store")
@one_line_errors
def store_cmd(
    tables: Annotated[list[Path], typer.Argument(help="Shift tables (observed.csv of `train`, --out of `predict`).")],
    db: Annotated[str, typer.Option("--db", help="Store: a LadybugDB file/folder or a bolt:// / neo4j:// URI.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id of the screen the shifts come from.")],
    kind: Annotated[str, typer.Option("--kind", help="knockout, activation, drug or stimulus.")] = "knockout",
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id (default: <dataset>-perturb-<time>).")] = None,
    smiles: Annotated[Path | None, typer.Option("--smiles", help="CSV compound,smiles (--kind drug).")] = None,
) -> None:
    """Write observed and/or predicted shift tables to a store as one run (Perturbation -SHIFTS-> Gene)."""
    import pandas as pd

    from cellvq.perturb_store import ShiftStoreConfig, store_shifts

    check_db_target(db)
    for path in tables:
        if not path.is_file():
            raise FileNotFoundError(f"shift table {path} does not exist; pass CSVs written by `cellvq perturb train|predict`.")
    frames = [pd.read_csv(path) for path in tables]
    cfg = ShiftStoreConfig(dataset_id=dataset, kind=kind, run_id=run_id,
                           smiles=read_smiles_table(smiles) if smiles else None,
                           command="cellvq perturb store " + " ".join(str(p) for p in tables),
                           parameters={"tables": [str(p) for p in tables]})
    report = store_shifts(frames, db, cfg)
    out.print(f"stored run {report.run_id}: {report.rows.get('Perturbation', 0)} perturbations, "
              f"{report.rows.get('SHIFTS', 0)} shifts")


def run_stimulus(input: Path, out_dir: Path, cfg, held_out: list[str], method: str, model_dir: Path | None,
                 max_cells: int):
    """Leave-one-cell-type-out on ``input``: write observed.csv, predicted.csv (``method``) and metrics.csv
    (every method, same held-out types) into ``out_dir``; returns the metrics table."""
    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.perturb.decode import DecodeConfig
    from foundation.perturb.predictor import shift_table
    from foundation.perturb.stimulus import (
        StimulusInputs,
        check_method,
        evaluate_stimulus,
        held_out_types,
        predict_held_out,
        stimulus_label,
        stimulus_shifts,
    )

    adata = read_h5ad_checked(input)
    data = stimulus_shifts(adata, cfg)
    idx = held_out_types(data, held_out)
    check_method(method)  # before the cells are embedded
    model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
    inputs = StimulusInputs(model, adata, data, cfg, DecodeConfig(max_cells=max_cells))
    names = [stimulus_label(t, cfg) for t in data.cell_types]
    observed = shift_table(names, data.genes, data.shift, predicted=False)
    predicted = shift_table([names[i] for i in idx], data.genes, predict_held_out(data, inputs, method, idx),
                            predicted=True)
    metrics = evaluate_stimulus(data, inputs, dataset=input.stem, held_out=idx)
    for name, table in (("observed", observed), ("predicted", predicted), ("metrics", metrics)):
        write_csv_atomic(table, out_dir / f"{name}.csv")
    return metrics


@perturb_app.command("stimulus")
@one_line_errors
def stimulus_cmd(
    input: Annotated[Path, typer.Argument(help="h5ad of raw counts with a condition and a cell-type column in obs.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for observed.csv, predicted.csv, metrics.csv.")],
    key: Annotated[str, typer.Option("--key", help="obs column of the condition (control / stimulus).")] = "condition",
    control: Annotated[str, typer.Option("--control", help="Label of control cells in --key.")] = "CTRL",
    stimulus: Annotated[str, typer.Option("--stimulus", help="Label of stimulated cells in --key.")] = "STIM",
    type_key: Annotated[str, typer.Option("--type-key", help="obs column of cell types.")] = "cell_type",
    held_out: Annotated[list[str] | None, typer.Option("--held-out", help="Cell type to predict from the others (repeat; default: each type in turn).")] = None,
    method: Annotated[str, typer.Option("--method", help="Predictor written to predicted.csv (metrics.csv has every method).")] = "linear[control expr]",
    min_cells: Annotated[int, typer.Option("--min-cells", help="Cells per type in each condition; smaller types are dropped.")] = 20,
    max_cells: Annotated[int, typer.Option("--max-cells", help="Cells embedded per type and condition (seeded subsample).")] = 200,
    model_dir: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: the shipped one).")] = None,
) -> None:
    """Predict a stimulus' shift for held-out cell types from the other types and the held-out type's own
    control cells; write the shift tables of docs/CONTRACTS.md (`cellvq perturb store --kind stimulus`)."""
    from foundation.perturb import summarize
    from foundation.perturb.stimulus import StimulusConfig

    cfg = StimulusConfig(condition_key=key, control=control, stimulus=stimulus, type_key=type_key, min_cells=min_cells)
    metrics = run_stimulus(input, out_dir, cfg, held_out or [], method, model_dir, max_cells)
    out.print(summarize(metrics).round(3).to_string(index=False), markup=False, highlight=False, soft_wrap=True)
    out.print(f"predicted {metrics['perturbation'].nunique()} held-out cell types with {method}; wrote {out_dir}",
              markup=False, highlight=False)


def sample_cells(shifts_csv: Path, control_h5ad: Path, key: str, control: str, cfg, model_dir: Path | None):
    """Simulated control and perturbed cells (AnnData) for every perturbation of a shift table."""
    import pandas as pd

    import foundation
    from cellvq.io import read_h5ad_checked
    from foundation.perturb.samples import PerturbationSampler, check_shifts

    adata = read_h5ad_checked(control_h5ad)
    if key not in adata.obs:
        raise KeyError(f"obs has no column {key!r}; pass the perturbation column with --key.")
    labels = adata.obs[key].astype(str)
    if not (labels == control).any():
        raise ValueError(f"no cell has {key} == {control!r}; pass the control label with --control "
                         f"(labels include {sorted(labels.unique())[:5]}).")
    shifts = check_shifts(pd.read_csv(shifts_csv), adata.var_names)  # before the model loads
    model = foundation.CellVQ.load(model_dir) if model_dir else foundation.load_pretrained()
    return PerturbationSampler(model, adata[(labels == control).to_numpy()], cfg).sample(shifts)


@perturb_app.command("sample")
@one_line_errors
def sample_cmd(
    shifts_csv: Annotated[Path, typer.Argument(help="Shift table (observed.csv of `train`, --out of `predict`).")],
    control_h5ad: Annotated[Path, typer.Option("--control-data", help="h5ad of raw counts holding the control cells.")],
    out_h5ad: Annotated[Path, typer.Option("--out", help="h5ad of sampled raw counts to write.")],
    key: Annotated[str, typer.Option("--key", help="obs column of perturbations in --control-data.")] = "perturbation",
    control: Annotated[str, typer.Option("--control", help="Label of control cells in --key.")] = "non-targeting",
    n_cells: Annotated[int, typer.Option("--cells", help="Cells sampled per perturbation (and as simulated controls).")] = 200,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model_dir: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: the shipped one).")] = None,
) -> None:
    """Draw single cells for each perturbation of a shift table from the ZINB decoder at control cells
    (docs/perturbation.md, "Cell-level samples"); obs `perturbation` = 'simulated control' for the unshifted ones."""
    from cellvq.io import write_h5ad_atomic
    from foundation.perturb.samples import SampleConfig

    if n_cells < 1:
        raise ValueError("--cells must be at least 1.")
    check_writable_folder(out_h5ad.parent, "--out", out_h5ad)
    adata = sample_cells(shifts_csv, control_h5ad, key, control, SampleConfig(n_cells=n_cells, seed=seed), model_dir)
    write_h5ad_atomic(adata, out_h5ad)
    out.print(f"sampled {adata.n_obs} cells ({adata.obs['perturbation'].nunique() - 1} perturbations + simulated "
              f"controls) x {adata.n_vars} genes; wrote {out_h5ad}", markup=False, highlight=False)
