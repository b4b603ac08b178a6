"""``report.md`` of a pipeline run: summary, codes, markers, subtypes and bridges, modules, timings and the
commands that reproduce the marker tables from the store. One function per section."""

from __future__ import annotations

import datetime as dt
import shlex
from typing import Any

import numpy as np
import pandas as pd

from cellvq.report.heatmap import heatmap_states
from cellvq.report.modules import module_table
from graphdb.errors import redact_target
from graphdb.queries import REPORT_MARKERS_BY_KIND, REPORT_STATE_MARKERS

__all__ = ["ALL_MARKERS_CYPHER", "MARKERS_CYPHER", "MARKER_SCORE_TEXT", "markdown", "md_table"]

#: Read-only Cypher the report prints (named queries of :mod:`graphdb.queries`): one state's markers
#: (parameters ``runId``, ``state``, ``top``) and the top markers of every state of one kind (``runId``,
#: ``kind``, ``top``).
MARKERS_CYPHER = REPORT_STATE_MARKERS
ALL_MARKERS_CYPHER = REPORT_MARKERS_BY_KIND

#: How the marker tables are ranked: :func:`cellvq_graph.markers` with its default ``contrast="max"``.
MARKER_SCORE_TEXT = (
    "Genes ranked by CellVQ-Graph attention contrasted against the other states (`score` = mean attention "
    "of the state's cells minus the highest mean attention of any other state, `cellvq_graph.markers`' "
    "default `contrast=\"max\"`); the heatmap shows the top 5 per state."
)


def markdown(res, figures: list[str], top_codes: int) -> str:
    """The whole ``report.md`` of ``res`` (a :class:`cellvq.pipeline.PipelineResult`)."""
    lines = _header(res) + _summary(res) + _codes(res, figures, top_codes) + _markers(res)
    lines += _subtypes(res) + _bridges(res) + _modules(res) + _timings(res) + _reproduce(res)
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# formatting


def _md_escape(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (``|`` in cells escaped, newlines flattened)."""
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md_escape(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.{nd}f}" if np.isfinite(v) else "n/a"
    return str(v)


def _dataset_name(ds) -> str | None:
    if isinstance(ds, pd.DataFrame):
        return str(ds["name"].iloc[0]) if "name" in ds and len(ds) else None
    if isinstance(ds, dict):
        return ds.get("name")
    return None


def _top_genes(mk: pd.DataFrame, state: str, n: int) -> list[str]:
    return mk[mk["state"] == state].sort_values("rank").head(n)["gene"].astype(str).tolist()


# ---------------------------------------------------------------------------------------------------------
# sections


def _header(res) -> list[str]:
    dataset = _dataset_name(res.tables.dataset)
    return [
        f"# CellVQ report: {dataset or 'dataset'}", "",
        f"Run `{res.run_id}`, written {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f" to the store `{redact_target(res.db)}`." if res.db else " (not written to a store)."),
    ]


def _summary(res) -> list[str]:
    adata, s, label_key = res.adata, res.summary, res.label_key
    u = adata.uns.get("cellvq", {})
    rows = [
        ["cells", f"{s.get('cells', adata.n_obs):,}"],
        ["genes", f"{s.get('genes', adata.n_vars):,}"],
        ["model", f"{u.get('model', 'cellvq')} (checkpoint sha256 {str(u.get('checkpoint_sha256', ''))[:12]})"],
        ["codes used", f"{s.get('codes_used', u.get('codes_used'))} of {u.get('n_codes', '?')}"],
        ["code perplexity", _fmt(float(s.get("code_perplexity", u.get("code_perplexity", np.nan))), 2)],
        ["gene match rate", f"{float(s.get('gene_match_rate', np.nan)):.1%}"],
        ["count match rate", f"{float(s.get('count_match_rate', np.nan)):.1%}"],
    ]
    if label_key and "code_ari" in s:
        rows += [[f"ARI codes vs {label_key}", _fmt(float(s["code_ari"]))],
                 [f"NMI codes vs {label_key}", _fmt(float(s["code_nmi"]))]]
    rows += [
        ["intermediate cells", f"{s.get('intermediate_cells', len(res.intermediates)):,}"],
        ["gene network", f"{s.get('gene_network_nodes', res.network.number_of_nodes()):,} genes, "
                         f"{s.get('gene_network_edges', res.network.number_of_edges()):,} edges, "
                         f"{s.get('gene_modules', '?')} modules"],
        ["subtyped cell types", ", ".join(s.get("subtyped_cell_types", [])) or "none"],
    ]
    return ["", "## Summary", "", md_table(["", "value"], rows)]


def _codes(res, figures: list[str], top_codes: int) -> list[str]:
    obs, label_key = res.adata.obs, res.label_key
    codes = obs["cellvq_code"].astype(str)
    counts = codes.value_counts()
    lines = ["", "## Cell codes", "", "![UMAP coloured by cell code](umap_cell_code.png)", ""]
    if "umap_cell_type.png" in figures:
        lines += [f"![UMAP coloured by {label_key}](umap_cell_type.png)", ""]
    lines.append(
        f"The UMAP is computed from `obsm[\"X_cellvq\"]` (the foundation model's pooled embedding). "
        f"{counts.size} codes are used; the {min(top_codes, counts.size)} most frequent are coloured"
        + (f", the other {counts.size - top_codes} ({int(counts.iloc[top_codes:].sum()):,} cells) are grey."
           if counts.size > top_codes else ".")
    )
    lines.append("")
    header = ["code", "cells"] + ([f"main {label_key}", "purity"] if label_key else [])
    rows = []
    for c, n in counts.head(12).items():
        r = [c, f"{n:,}"]
        if label_key:
            vc = obs.loc[codes == c, label_key].astype(str).value_counts()
            r += [vc.index[0], f"{vc.iloc[0] / n:.0%}"]
        rows.append(r)
    return lines + ["Largest codes:", "", md_table(header, rows)]


def _markers(res) -> list[str]:
    """The heatmap's grouping (labels, else codes) and, beside labels, the 10 largest codes."""
    obs = res.adata.obs
    groupby, states = heatmap_states(res)
    lines = ["", "## Marker genes per state", "", MARKER_SCORE_TEXT]
    lines += ["", "![marker attention heatmap](marker_attention_heatmap.png)", ""]
    tables = [(groupby, states)]
    if groupby != "cellvq_code":
        counts = obs["cellvq_code"].astype(str).value_counts()
        with_markers = set(res.markers["cellvq_code"]["state"].astype(str))
        tables.append(("cellvq_code", [c for c in counts.index if c in with_markers][:10]))
    for g, sts in tables:
        mk = res.markers[g].copy()
        mk["state"] = mk["state"].astype(str)
        sizes = obs[g].astype(str).value_counts()
        rows = [[st, f"{sizes.get(st, 0):,}", ", ".join(_top_genes(mk, st, 10))] for st in sts]
        title = f"Top 10 markers per {g}" + (" (10 largest codes)" if g == "cellvq_code" else "")
        lines += [f"### {title}", "", md_table(["state", "cells", "markers (best first)"], rows), ""]
    return lines


def _subtypes(res) -> list[str]:
    lines = ["## Subtypes and intermediate states", "", "![subtype graph](subtype_graph.png)", ""]
    if not res.subtypes:
        return lines
    rows = []
    for parent, (labs, smk) in res.subtypes.items():
        vc = labs.dropna().astype(str).value_counts()
        smk = smk.copy()
        smk["state"] = smk["state"].astype(str)
        for sub in sorted(vc.index):
            rows.append([sub, parent, f"{vc[sub]:,}", ", ".join(_top_genes(smk, sub, 5)) or "-"])
    return lines + ["### Subtypes", "", md_table(["subtype", "of", "cells", "top markers"], rows), ""]


def _bridges(res) -> list[str]:
    lines = ["### Bridges (cells whose graph neighbourhood mixes two states)", ""]
    br = res.tables.bridges
    if br is None or not len(br):
        return lines + ["No intermediate cells were found."]
    br = br.sort_values("nCells", ascending=False)
    header = ["state A", "state B", "intermediate cells", "mean score"]
    rows = [[r.stateA, r.stateB, f"{int(r.nCells):,}", f"{float(r.score):.2f}"] for r in br.itertuples(index=False)]
    if "doubletShare" in br.columns:  # the doublet call of the bridge's cells beside it (scrublet)
        share = res.summary.get("doublet_share")
        lines += [f"Beside each bridge, the share of its cells scrublet calls doublets (all cells: {share:.1%}) and "
                  "the one-sided binomial p-value of that share: a bridge of doublets is not an intermediate "
                  "state.", ""] if share is not None else []
        header += ["doublets called", "p (more doublets)"]
        for row, r in zip(rows, br.itertuples(index=False), strict=True):
            row += ["-" if pd.isna(r.doubletShare) else f"{float(r.doubletShare):.0%}",
                    "-" if pd.isna(r.doubletP) else f"{float(r.doubletP):.2g}"]
    return lines + [md_table(header, rows)]


def _modules(res) -> list[str]:
    lines = ["", "## Gene modules", "", "![gene modules](gene_modules.png)", ""]
    lines += ["Leiden modules of the attention/gene-embedding network, the largest by total edge weight; "
              "genes listed by weighted degree (hubs first), TFs in bold.", ""]
    rows = []
    for m in module_table(res.network):
        tfs = set(m["tfs"])
        genes = [f"**{g}**" if g in tfs else g for g in m["genes"][:15]]
        more = f" (+{len(m['genes']) - 15})" if len(m["genes"]) > 15 else ""
        rows.append([m["module"], len(m["genes"]), m["edges"], f"{m['weight']:.1f}", ", ".join(genes) + more,
                     ", ".join(m["tfs"][:8]) or "-"])
    return lines + [md_table(["module", "genes", "edges", "edge weight", "genes (hubs first)", "TFs"], rows)]


def _timings(res) -> list[str]:
    rows = [[k, f"{float(v):.1f}"] for k, v in res.timings.items()]
    rows.append(["**total**", f"**{sum(float(v) for v in res.timings.values()):.1f}**"])
    return ["", "## Timings", "", md_table(["step", "seconds"], rows)]


def _reproduce(res) -> list[str]:
    lines = ["", "## Reproduce the marker tables from the store", ""]
    if not res.db:
        return lines + ["This run was not written to a store; run `cellvq run <file.h5ad> --db <path>` to query it "
                        "with `cellvq query markers -p state=cellType:<name>`."]
    groupby, states = heatmap_states(res)
    kind = "cellType" if groupby != "cellvq_code" else "code"
    pick = "B" if "B" in states else (states[0] if states else "<name>")
    return lines + _named_query_lines(res, kind, states) + _cypher_lines(res, kind, f"{kind}:{pick}")


def _named_query_lines(res, kind: str, states: list[str]) -> list[str]:
    db, run = shlex.quote(redact_target(res.db)), shlex.quote(res.run_id)
    lines = ["Named query, one state at a time (states are `code:<code>`, `cellType:<name>`, "
             "`subtype:<name>`):", "", "```bash"]
    for st in states:
        lines.append(f"cellvq query markers --db {db} -p {shlex.quote('state=' + kind + ':' + st)} "
                     f"-p top=10 -p run_id={run}")
    return lines + ["```", ""]


def _cypher_lines(res, kind: str, example: str) -> list[str]:
    db, run = shlex.quote(redact_target(res.db)), shlex.quote(res.run_id)
    return [
        "The same with hand-written read-only Cypher (values travel as `$parameters`):", "",
        "```cypher", MARKERS_CYPHER.replace(" RETURN", "\nRETURN").replace(" ORDER", "\nORDER"), "```", "",
        "```bash",
        f"cellvq cypher {shlex.quote(MARKERS_CYPHER)} --db {db} -p runId={run} "
        f"-p {shlex.quote('state=' + example)} -p top=10",
        "```", "", "Every state of the table at once:", "", "```bash",
        f"cellvq cypher {shlex.quote(ALL_MARKERS_CYPHER)} --db {db} -p runId={run} -p kind={kind} -p top=10",
        "```", "", "From Python:", "", "```python", "import graphdb", "",
        f"with graphdb.open_store({redact_target(res.db)!r}, read_only=True) as store:",
        f"    print(store.markers({example!r}, top=10, run_id={res.run_id!r}))",
        f"    print(store.query({MARKERS_CYPHER!r},",
        f"                      {{'runId': {res.run_id!r}, 'state': {example!r}, 'top': 10}}))",
        "```",
    ]
