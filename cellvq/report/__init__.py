"""Figures and a markdown report of one pipeline run (``cellvq run --out``, ``cellvq demo``).

:func:`write_report` turns a :class:`cellvq.pipeline.PipelineResult` into a folder of PNG figures and a
``report.md`` that ties them together:

==============================  ==========================================================================
file                            content
==============================  ==========================================================================
``umap_cell_code.png``          UMAP of ``obsm["X_cellvq"]`` coloured by cell code (the 20 most frequent
                                codes in colour, the rest grey)
``umap_cell_type.png``          the same UMAP coloured by the label column (only when labels were given)
``marker_attention_heatmap.png``  states x their top-5 attention markers: mean attention of the state's
                                cells, z-scored per gene
``subtype_graph.png``           cell types, their subtypes (``SUBTYPE_OF``) and the ``BRIDGES`` between
                                states, edge width proportional to the number of intermediate cells
``gene_modules.png``            the largest modules of the gene network, TFs marked, hub genes labelled
``report.md``                   summary, marker tables, bridges, modules, timings and the Cypher /
                                ``cellvq`` commands that reproduce the marker tables from the store
==============================  ==========================================================================

The report reads the result and never modifies it nor its AnnData: the label column is the result's
``label_key`` and the UMAP its :attr:`~cellvq.pipeline.PipelineResult.umap` (computed once per result).
Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, so writing a report never
touches the pyplot state or backend of the caller (a notebook keeps its inline figures).

Modules: :mod:`~cellvq.report.umaps`, :mod:`~cellvq.report.heatmap`, :mod:`~cellvq.report.subtype_graph`,
:mod:`~cellvq.report.modules` (one figure each; :mod:`~cellvq.report.draw` and :mod:`~cellvq.report.labels`
are their shared drawing helpers), :mod:`~cellvq.report.markdown` (``report.md``),
:mod:`~cellvq.report.folder` (the atomic folder write) and :mod:`~cellvq.report.write` (the entry point).

The folder is written atomically: everything is built in a temporary sibling folder which then replaces
``out_dir``. When ``out_dir`` already holds files that are not part of a report (say the run's database),
those are left alone and each report file is moved in by an atomic rename, ``report.md`` last.
"""

from __future__ import annotations

from cellvq.report.markdown import ALL_MARKERS_CYPHER, MARKERS_CYPHER
from cellvq.report.write import REPORT_FILES, figures, write_report

__all__ = ["ALL_MARKERS_CYPHER", "MARKERS_CYPHER", "REPORT_FILES", "figures", "write_report"]
