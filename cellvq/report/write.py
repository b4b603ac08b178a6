""":func:`write_report`: a pipeline run's figures and ``report.md``, written atomically into one folder."""

from __future__ import annotations

import os
from pathlib import Path

from cellvq.report import heatmap, markdown, modules, subtype_graph, umaps
from cellvq.report.draw import label_palette
from cellvq.report.folder import write_folder

__all__ = ["DPI", "REPORT_FILES", "TOP_CODES", "write_report"]

#: Every file a report may hold (``umap_cell_type.png`` only when the run had labels).
REPORT_FILES = (
    "umap_cell_code.png",
    "umap_cell_type.png",
    "marker_attention_heatmap.png",
    "subtype_graph.png",
    "gene_modules.png",
    "report.md",
)
DPI = 120
TOP_CODES = 20


def write_report(res, out_dir: str | os.PathLike[str], *, top_codes: int = TOP_CODES, dpi: int = DPI) -> Path:
    """Write the figures and ``report.md`` of a pipeline run into ``out_dir``; returns the report.md path.

    ``res`` is a :class:`cellvq.pipeline.PipelineResult`; it and its AnnData are read, never modified.
    ``top_codes``: codes coloured in the code UMAP.
    """
    folder = write_folder(out_dir, lambda tmp: _build(res, tmp, top_codes=top_codes, dpi=dpi),
                          owned=REPORT_FILES, last="report.md")
    return folder / "report.md"


def figures(res, *, top_codes: int = TOP_CODES) -> dict:
    """``{file name: matplotlib Figure}`` of the report's figures (Agg canvases, pyplot untouched)."""
    adata, label_key = res.adata, res.label_key
    palette = label_palette(adata, label_key)
    figs = {"umap_cell_code.png": umaps.codes_figure(adata, res.umap, top_codes)}
    if label_key:
        figs["umap_cell_type.png"] = umaps.labels_figure(adata, res.umap, label_key, palette)
    figs["marker_attention_heatmap.png"] = heatmap.figure(res)
    figs["subtype_graph.png"] = subtype_graph.figure(res, palette)
    figs["gene_modules.png"] = modules.figure(res.network)
    return figs


def _build(res, folder: Path, *, top_codes: int, dpi: int) -> None:
    figs = figures(res, top_codes=top_codes)
    for name, fig in figs.items():
        fig.savefig(folder / name, dpi=dpi, facecolor="white")
    (folder / "report.md").write_text(markdown.markdown(res, sorted(figs), top_codes), encoding="utf-8")
