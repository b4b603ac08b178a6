"""`cellvq` command line: composes foundation, cellvq_graph and graphdb.

Every command prints one clear line on error (exit code non-zero); `--debug` shows the traceback.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cellvq.cli_common import check_db_target, check_out_dir, console, one_line_errors, out, set_debug

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CellVQ: counts -> cell codes -> graph -> Cypher.")


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    set_debug(debug)
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("foundation").setLevel(logging.INFO)


@app.command()
@one_line_errors
def pretrain(
    data: Annotated[list[Path], typer.Argument(help="h5ad files of raw counts, or folders of them.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Checkpoint folder to write.")],
    preset: Annotated[str, typer.Option(help="tiny | small-cpu | small | medium | base | large")] = "tiny",
    quantizer: Annotated[str, typer.Option(help="soft_conditional | ema")] = "soft_conditional",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    grad_accum: int = 1,
    contrastive_weight: Annotated[float, typer.Option(
        help="Weight of the cross-view objective (thinned, re-masked view of each cell; 0 turns it off).")] = 1.0,
    panel_prob: Annotated[float, typer.Option(
        help="Share of batches whose second view keeps only a random gene panel (200-4,000 genes), so that "
        "embeddings do not depend on how many genes an experiment measured.")] = 0.0,
    panel_cell_prob: Annotated[float, typer.Option(
        help="Within a panel batch, the share of cells cut to the panel (the others keep every gene).")] = 1.0,
    mix_cells: Annotated[int, typer.Option(
        help="Pool row blocks of several files until this many cells and draw minibatches across them "
        "(0: each minibatch from one file).")] = 0,
    max_tokens: Annotated[int | None, typer.Option(help="Expressed genes per cell fed to the encoder.")] = None,
    max_genes: Annotated[int | None, typer.Option(help="Cap on the vocabulary size.")] = None,
    max_cells_per_file: Annotated[int | None, typer.Option(help="Per epoch, so one big file cannot dominate.")] = None,
    holdout: Annotated[Path | None, typer.Option(help="TSV (file, obs_name) of cells never trained on.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Checkpoint folder to resume from.")] = None,
    seed: int = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")] = None,
    name: str = "cellvq",
    train_state: Annotated[bool, typer.Option("--train-state/--no-train-state",
                                              help="Keep optimizer state in --out (for --resume).")] = True,
) -> None:
    """Pretrain a CellVQ model (single process, or every rank under `torchrun`)."""
    from foundation import CellVQ, CellVQConfig
    from foundation.config import TrainConfig
    from foundation.holdout import holdout_set, read_holdout

    presets = {"tiny": CellVQConfig.tiny, "small-cpu": CellVQConfig.small_cpu, "small": CellVQConfig.small,
               "medium": CellVQConfig.medium, "base": CellVQConfig.base, "large": CellVQConfig.large}
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}: use one of {sorted(presets)}")
    kw = {"quantizer": quantizer}
    if max_tokens:
        kw["max_tokens"] = max_tokens
    cfg = presets[preset](**kw)
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, grad_accum=grad_accum,
                     contrastive_weight=contrastive_weight, panel_prob=panel_prob,
                     panel_cell_prob=panel_cell_prob, mix_cells=mix_cells,
                     max_cells_per_file=max_cells_per_file, seed=seed)
    hold = holdout_set(read_holdout(holdout)) if holdout else None
    model = CellVQ.pretrain(data, config=cfg, train=tc, out=out_dir, max_genes=max_genes, holdout=hold,
                            device=device, resume=resume, name=name,
                            keep_train_state=train_state)
    meta = {k: model.metadata.get(k) for k in ("steps", "train_seconds", "train_cells_per_second", "final_history")}
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary (rank 0 wrote the checkpoint)
        out.print(f"saved {model!r} to {out_dir}")
        out.print(json.dumps(meta, indent=2))


@app.command()
@one_line_errors
def embed(
    input: Annotated[Path, typer.Argument(help="h5ad file of raw counts.")],
    output: Annotated[Path, typer.Option("--out", help="Where to write the embedded h5ad.")],
    model_dir: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: shipped).")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer holding raw counts (default: X).")] = None,
    batch_size: int = 256,
    device: Annotated[str | None, typer.Option(
        help="cpu | cuda (default: cuda when available; bf16 and packed flash attention there).")] = None,
    backed: Annotated[bool, typer.Option(
        "--backed", help="Leave X on disk: stream it in blocks of --chunk-rows cells (for files larger than "
        "memory); the output's X is copied by HDF5 without loading it.")] = False,
    chunk_rows: Annotated[int, typer.Option(help="Cells per block read from disk with --backed.")] = 8192,
    var_key: Annotated[str | None, typer.Option(
        "--var-key", help="var column holding gene symbols or Ensembl IDs (default: var_names).")] = None,
) -> None:
    """Embed cells: writes obsm['X_cellvq'], obs['cellvq_code'], varm['cellvq_gene'], ..."""
    import torch

    import foundation
    from cellvq.io import read_h5ad_checked, write_h5ad_atomic

    if backed and output.resolve() == input.resolve():
        raise ValueError(f"--out {output} is the backed input itself; write to another path")
    adata = read_h5ad_checked(input, backed=backed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = foundation.CellVQ.load(model_dir, device) if model_dir else foundation.load_pretrained(device)
    model.embed(adata, batch_size=batch_size, layer=layer, chunk_rows=chunk_rows, var_key=var_key)
    if not backed:
        from foundation import ood

        out.print(ood.describe(ood.score(model, adata, layer=layer)), highlight=False)
    write_h5ad_atomic(adata, output)
    u = adata.uns["cellvq"]
    out.print(f"embedded {adata.n_obs} cells: {u['codes_used']} codes used (perplexity {u['code_perplexity']:.1f}), "
              f"gene match {u['gene_match_rate']:.1%}, count match {u['count_match_rate']:.1%} -> {output}")


def _parse_params(params: list[str]) -> dict:
    out_params: dict = {}
    for kv in params:
        if "=" not in kv:
            raise ValueError(f"--param {kv!r} must look like key=value")
        k, v = kv.split("=", 1)
        try:
            out_params[k] = json.loads(v)
        except json.JSONDecodeError:
            out_params[k] = v
    return out_params


def _print_table(df, title: str | None = None, max_rows: int = 40) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in df.columns:
        t.add_column(str(c))
    for row in df.head(max_rows).itertuples(index=False):
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    out.print(t)
    if len(df) > max_rows:
        out.print(f"... {len(df) - max_rows} more rows")


@dataclass
class RunRequest:
    """One `cellvq run` (or `cellvq demo`): what to read, where to write, and the settings of each step."""

    input: Path
    db: str = "cellvq_db"
    out_dir: Path | None = None
    model_dir: Path | None = None
    properties: list[str] | None = None
    groupby: str | None = None
    layer: str | None = None
    var_key: str | None = None
    graph_epochs: int = 100
    dataset_id: str | None = None
    seed: int = 0
    top: int = 10
    replace: bool = False
    adapt: AdaptRequest | None = None
    regulatory: bool = False

    def command(self) -> str:
        """The `cellvq run` command line that reproduces this run (its Run node's `command`; credentials
        redacted)."""
        from graphdb.errors import redact_target

        args = ["cellvq", "run", str(self.input), "--db", redact_target(self.db), "--graph-epochs",
                str(self.graph_epochs), "--seed", str(self.seed)]
        for flag, value in (("--out", self.out_dir), ("--model", self.model_dir), ("--groupby", self.groupby),
                            ("--layer", self.layer), ("--var-key", self.var_key), ("--dataset-id", self.dataset_id)):
            if value is not None:
                args += [flag, str(value)]
        for p in self.properties or []:
            args += ["--properties", p]
        if self.regulatory:
            args.append("--regulatory")
        if self.adapt is not None:
            args += ["--adapt", "--adapt-epochs", str(self.adapt.epochs), "--adapt-out", str(self.adapt.out)]
        return shlex.join(args)


def _run_job(req: RunRequest) -> None:
    import foundation
    from cellvq.io import read_h5ad_checked
    from cellvq.obs_checks import resolve_obs_keys

    check_db_target(req.db)  # fail fast: before reading data or loading the model
    if req.out_dir is not None:
        check_out_dir(req.out_dir)
    adata = read_h5ad_checked(req.input)
    req.groupby = resolve_obs_keys(adata, req.groupby, req.properties)  # before the model loads
    _check_counts_first(adata, req.layer, req.var_key)
    model = foundation.CellVQ.load(req.model_dir) if req.model_dir else None
    if req.adapt is not None:
        model = _adapt_for_run(adata, model or foundation.load_pretrained(), req.input, req.layer, req.seed, req.adapt)
    res = _run_pipeline(adata, model, req)
    from cellvq.runs_cmd import finish_run

    with finish_run(req.db, res.run_id, replace=req.replace):
        if req.out_dir is not None:
            from cellvq.report import write_report

            console.print(f"writing the report (figures and tables) to {req.out_dir} ...", highlight=False)
            t_report = time.perf_counter()
            write_report(res, req.out_dir)
            console.print(f"report written in {time.perf_counter() - t_report:.1f} s", highlight=False)
        _print_markers(res, req.db, req.top)
    out.print(json.dumps({"runId": res.run_id, "db": res.db, **res.summary, "seconds": res.timings}, indent=2))
    if req.out_dir is not None:
        out.print(f"report: {req.out_dir / 'report.md'}")


def _run_pipeline(adata, model, req: RunRequest):
    """`pipeline.run` with one progress line per step (a live bar on a terminal, plain lines otherwise)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cellvq import pipeline
    from cellvq.progress import PIPELINE_STEPS

    steps = list(PIPELINE_STEPS)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("starting", total=len(steps))

        def on_step(name: str) -> None:
            k = steps.index(name)
            prog.update(task, description=f"{name} ({k + 1}/{len(steps)})", completed=k)
            if not console.is_terminal:  # a log file or a pipe: no live bar, so one plain line per step
                console.print(f"step {k + 1}/{len(steps)}: {name}", highlight=False)

        regulatory = None
        if req.regulatory:
            from cellvq_graph import RegulatoryConfig

            regulatory = RegulatoryConfig(seed=req.seed)
        res = pipeline.run(adata, db=req.db, model=model, layer=req.layer, command=req.command(),
                           properties=tuple(req.properties) if req.properties else pipeline.DEFAULT_PROPERTIES,
                           label_key=req.groupby, graph_epochs=req.graph_epochs,
                           dataset_id=req.dataset_id or req.input.stem.replace(":", "_"),
                           dataset_name=req.input.name, seed=req.seed, on_step=on_step, regulatory=regulatory)
        prog.update(task, completed=len(steps), description="done")
    return res


def _check_counts_first(adata, layer: str | None, var_key: str | None) -> None:
    """--var-key, then the counts (layer, unique genes, raw integer counts, no empty cell): before the model
    loads, so that bad input fails in seconds."""
    from cellvq.io import use_var_column
    from foundation.data import validate_anndata

    if var_key:
        use_var_column(adata, var_key)
    validate_anndata(adata, layer)


@dataclass
class AdaptRequest:
    """`cellvq run --adapt`: adapt the model to the input's counts first (see `cellvq adapt`)."""

    epochs: int = 4
    out: Path = Path("cellvq_adapted_model")


def _adapt_for_run(adata, model, input: Path, layer: str | None, seed: int, req: AdaptRequest):
    from cellvq.adapt_cli import adapt_and_save
    from foundation.adapt import AdaptConfig, check_adapt_input

    cfg = AdaptConfig(epochs=req.epochs, seed=seed, layer=layer)
    check_adapt_input(adata, cfg)
    console.print(f"adapting the model to {input.name} ({req.epochs} epochs) -> {req.out}")
    return adapt_and_save(model, adata, input, cfg, req.out)


def _print_markers(res, db: str, top: int) -> None:
    import graphdb
    from graphdb import queries

    with graphdb.open_store(db, read_only=True) as store:
        states = res.tables.states
        kinds = ["cellType"] if (states["kind"] == "cellType").any() else ["code"]
        names = states.loc[states["kind"].isin(kinds), "stateId"].tolist()
        out.print(f"[bold]Top {top} marker genes per state[/] (named query `markers`; Cypher below)")
        rows = []
        for sid in names[:30]:
            mk = store.markers(sid, top=top, run_id=res.run_id)
            rows.append((sid, ", ".join(mk["symbol"].astype(str))))
        import pandas as pd

        _print_table(pd.DataFrame(rows, columns=["state", "markers (best first)"]))
        text = getattr(queries, "MARKERS", None)
        if text is not None:
            out.print(getattr(text, "text", text), markup=False, highlight=False)


_DB_HELP = "Graph store: a folder/file path (embedded LadybugDB) or bolt:// / neo4j:// URI (Neo4j)."
_RUN_HELP = "Run to read (default: the newest complete run; `cellvq runs list` shows them)."


def _fill_run_param(store, statement: str, params: dict, run_id: str | None) -> None:
    """Give a user statement `$runId` (the newest complete run or `--run`); warn when it reads every run."""
    if "runId" not in params and (run_id is not None or "$runId" in statement):
        params["runId"] = store.resolve_run(run_id)
    elif "$runId" not in statement:
        n = int((store.runs()["status"] == "complete").sum())
        if n > 1:
            console.print(f"note: the store holds {n} complete runs and this statement does not filter on $runId, "
                          "so its rows may come from several runs; add e.g. {runId: $runId} to a relationship "
                          "pattern (filled with the newest run, or --run)", highlight=False, soft_wrap=True)


_REGULATORY_HELP = ("Score TF -> target edges from directional evidence (tree ensembles conditional on other TFs, "
                    "attention, knock-out response where present) and store the strongest as REGULATES with their "
                    "evidence columns (about a minute on pbmc3k); without it REGULATES are attention-similar pairs "
                    "oriented from a TF.")


@app.command("run")
@one_line_errors
def run_cmd(
    input: Annotated[Path, typer.Argument(help="h5ad file of raw counts.")],
    db: Annotated[str, typer.Option("--db", help=_DB_HELP)] = "cellvq_db",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Report folder (PNG figures + report.md).")] = None,
    model_dir: Annotated[Path | None, typer.Option("--model", help="Foundation checkpoint (default: shipped).")] = None,
    properties: Annotated[list[str] | None, typer.Option("--properties", help="obs columns used as property nodes.")] = None,
    groupby: Annotated[str | None, typer.Option(
        help="obs column of known labels (cell types); default: cell_type when the file has it.")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer holding raw counts (default: X).")] = None,
    var_key: Annotated[str | None, typer.Option(
        "--var-key", help="var column holding gene symbols or Ensembl IDs (default: var_names).")] = None,
    graph_epochs: int = 100,
    dataset_id: Annotated[str | None, typer.Option(help="Dataset id in the store (default: file stem).")] = None,
    seed: int = 0,
    top: int = 10,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Once this run is complete, delete the store's older runs of the same dataset and "
        "model (a re-run). Without it the older runs stay and queries read the newest complete run.")] = False,
    adapt: Annotated[bool, typer.Option(
        "--adapt", help="First adapt the model to this file's counts (self-supervised, see `cellvq adapt`); the "
        "adapted checkpoint is written to --adapt-out and used for the run.")] = False,
    adapt_epochs: Annotated[int, typer.Option(help="Epochs of --adapt.")] = 4,
    adapt_out: Annotated[Path | None, typer.Option(
        help="Folder for the --adapt checkpoint (default: <input stem>_cellvq_adapted beside the input).")] = None,
    regulatory: Annotated[bool, typer.Option(
        "--regulatory", help=_REGULATORY_HELP)] = False,
) -> None:
    """The main job: validate, embed, build + train CellVQ-Graph, read out, write to the store, report."""
    request = (AdaptRequest(adapt_epochs, adapt_out or input.with_name(f"{input.stem}_cellvq_adapted"))
               if adapt else None)
    _run_job(RunRequest(input, db, out_dir, model_dir, properties, groupby, layer, var_key, graph_epochs,
                        dataset_id, seed, top, replace, request, regulatory))


@app.command()
@one_line_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the database and the report.")] = Path("cellvq_demo"),
    graph_epochs: int = 100,
    regulatory: Annotated[bool, typer.Option("--regulatory/--no-regulatory", help=_REGULATORY_HELP)] = True,
) -> None:
    """`run` on the bundled real PBMCs (pbmc3k) with the embedded store in OUT/db."""
    from foundation import datasets

    out_dir.mkdir(parents=True, exist_ok=True)
    path = datasets.dataset_path("pbmc3k")
    _run_job(RunRequest(path, str(out_dir / "db"), out_dir / "report", groupby="cell_type",
                        graph_epochs=graph_epochs, dataset_id="pbmc3k", regulatory=regulatory))


@app.command()
@one_line_errors
def query(
    name: Annotated[str, typer.Argument(help="markers | states_for_gene | subtype_graph | gene_network | "
                                            "state_properties | compare_states")],
    db: Annotated[str, typer.Option("--db", help=_DB_HELP)] = "cellvq_db",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    run_id: Annotated[str | None, typer.Option("--run", help=_RUN_HELP)] = None,
) -> None:
    """Run a named Cypher query on one run, e.g. `cellvq query markers -p state=B -p top=10`.

    Reads the newest complete run of the store unless `--run` names one (`cellvq runs list`)."""
    import graphdb

    named = {"markers", "states_for_gene", "subtype_graph", "gene_network", "state_properties", "compare_states"}
    if name not in named:
        raise ValueError(f"unknown query {name!r}; choose one of {sorted(named)}")
    params = _parse_params(param or [])
    if run_id is not None:
        params.setdefault("run_id", run_id)
    check_db_target(db, writable=False)
    with graphdb.open_store(db, read_only=True) as store:
        method = getattr(store, name)
        try:
            inspect.signature(method).bind(**params)
        except TypeError as exc:
            raise ValueError(f"bad parameters for {name}: {exc}; see `cellvq query --help`") from None
        res = method(**params)
    frames = {"result": res} if hasattr(res, "columns") else {k: v for k, v in vars(res).items() if hasattr(v, "columns")}
    for key, df in frames.items():
        if as_json:
            out.print_json(df.to_json(orient="records"))
        else:
            _print_table(df, title=f"{name} {key}")


@app.command()
@one_line_errors
def cypher(
    statement: Annotated[str, typer.Argument(help="A read-only Cypher statement; values as $parameters.")],
    db: Annotated[str, typer.Option("--db", help=_DB_HELP)] = "cellvq_db",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    run_id: Annotated[str | None, typer.Option("--run", help=_RUN_HELP + " Passed to the statement as $runId.")] = None,
) -> None:
    """Run one read-only Cypher statement against the store (only read clauses are accepted).

    `$runId` is filled with the newest complete run (or `--run`) unless `-p runId=...` is given: filter on it
    (`MATCH ()-[m:MARKER_OF {runId: $runId}]->()`) to read one run of a store that holds several."""
    import graphdb

    check_db_target(db, writable=False)
    with graphdb.open_store(db, read_only=True) as store:
        params = _parse_params(param or [])
        _fill_run_param(store, statement, params, run_id)
        df = store.query(statement, params)
    if as_json:
        out.print_json(df.to_json(orient="records"))
    else:
        _print_table(df)


@app.command("export-grn")
@one_line_errors
def export_grn(
    output: Annotated[Path, typer.Argument(help="File to write.")],
    db: Annotated[str, typer.Option("--db", help=_DB_HELP)] = "cellvq_db",
    fmt: Annotated[str | None, typer.Option("--format", help="graphml | csv | cytoscape | sif (default: by suffix).")] = None,
    run_id: Annotated[str | None, typer.Option("--run", "--run-id", help=_RUN_HELP)] = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="regulates | co_expressed (repeatable; default both, each edge with its `kind`).")] = None,
) -> None:
    """Export the gene network of a run: REGULATES and CO_EXPRESSED edges with a `kind` column (GraphML, CSV,
    Cytoscape JSON, SIF), the same edges the run summary counts."""
    import graphdb

    check_db_target(db, writable=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    with graphdb.open_store(db, read_only=True) as store:
        kw = {"run_id": run_id} if run_id else {}
        if kind:
            kw["kinds"] = [k.upper() for k in kind]
        path = store.export_grn(output, format=fmt, **kw)
        per_kind = store.grn_edges(**kw)["kind"].value_counts()
    detail = ", ".join(f"{k} {n:,}" for k, n in sorted(per_kind.items()))
    out.print(f"wrote {path or output}: {int(per_kind.sum()):,} edges ({detail})")


from cellvq.runs_cmd import runs_app  # noqa: E402 - the `runs` sub-commands

app.add_typer(runs_app, name="runs")

from cellvq.adapt_cli import adapt_cmd  # noqa: E402

app.command("adapt")(adapt_cmd)

from cellvq.perturb_cli import perturb_app  # noqa: E402

app.add_typer(perturb_app, name="perturb")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
