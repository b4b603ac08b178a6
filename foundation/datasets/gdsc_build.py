"""Rebuild the bundled GDSC files (``foundation/datasets/files/gdsc_*``) from the shared data folder.

Not needed at run time: :func:`foundation.datasets.gdsc` reads the bundled files. This module records how
they were made, and ``tests/test_drug_response.py`` checks that rebuilding from ``../shared/data/gdsc``
gives the shipped content back.

Sources (``<shared>/gdsc/``, from the ``violet-sto/TGSA`` / DeepCDR data; GDSC terms of use):

- ``ccle_census706_expression.csv.gz``: CCLE expression of 706 COSMIC cancer-census genes, z-scored per
  gene, 580 lines (rows, DepMap ``ACH-`` ids) x 706 genes (columns, NCBI Entrez Gene ids). Shipped
  unchanged (byte copy) as ``gdsc_ccle_census706_expression.csv.gz``.
- ``GDSC_IC50.csv``: ln(IC50) of 266 GDSC drugs (rows, ``GDSC:<drug id>``) x 969 lines (columns). Shipped
  restricted to the 568 lines that also have expression, ``NA`` where a pair was not tested, values rounded
  to 6 decimals (largest change 5e-7): ``gdsc_ln_ic50.csv.gz``.
- ``Cell_lines_annotations_20181226.txt``: CCLE line annotations (1,461 rows, 33 columns). Shipped for the 580
  expression lines, 10 columns renamed to snake case: ``gdsc_cell_lines.csv.gz``. 53 of the 580 lines lack
  ``Site_Primary`` (and name, histology, sex, age); their ``tissue`` is taken from the CCLE name
  (``NAME_TISSUE``), whose suffix equals ``Site_Primary`` for all 527 other lines.

Entrez id -> symbol for the 706 genes (``gdsc_census706_genes.csv``) was transcribed from the COSMIC Cancer
Gene Census CSV export (``Gene Symbol`` and ``Entrez GeneId`` columns; 723 genes, 713 with an Entrez id); each of
the 706 Entrez ids is found there exactly once. Symbols are the census's (HGNC as of that export, e.g. ``H3F3A``,
``SEPT9``, not the newer ``H3-3A``, ``SEPTIN9``). That file is the source of truth and is not rebuilt here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

EXPRESSION = "gdsc_ccle_census706_expression.csv.gz"
IC50 = "gdsc_ln_ic50.csv.gz"
LINES = "gdsc_cell_lines.csv.gz"
GENES = "gdsc_census706_genes.csv"

#: annotation columns kept, source name -> shipped name
ANNOTATION_COLUMNS = {
    "Name": "name",
    "CCLE_ID": "ccle_name",
    "Site_Primary": "tissue",
    "Histology": "histology",
    "Hist_Subtype1": "histology_subtype",
    "type_refined": "disease",
    "tcga_code": "tcga_code",
    "Pathology": "pathology",
    "Gender": "sex",
    "Age": "age",
}


def build_gdsc_files(source_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write the three derived GDSC files from ``source_dir`` (``<shared>/gdsc``) into ``out_dir``."""
    import gzip

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expr_src = source_dir / "ccle_census706_expression.csv.gz"
    expr = pd.read_csv(expr_src, index_col=0)
    lines = list(expr.index)

    out = {"expression": out_dir / EXPRESSION, "ic50": out_dir / IC50, "lines": out_dir / LINES}
    shutil.copyfile(expr_src, out["expression"])

    ic50 = pd.read_csv(source_dir / "GDSC_IC50.csv", index_col=0)
    keep = [c for c in ic50.columns if c in set(lines)]
    ic50 = ic50[keep]
    ic50.index.name = "drug"
    # mtime=0 keeps the gzip bytes reproducible
    with gzip.GzipFile(out["ic50"], "wb", compresslevel=9, mtime=0) as fh:
        fh.write(ic50.to_csv(float_format="%.6f", na_rep="NA").encode())

    ann = pd.read_csv(source_dir / "Cell_lines_annotations_20181226.txt", sep="\t")
    ann = ann.dropna(subset=["depMapID"]).drop_duplicates("depMapID").set_index("depMapID")
    ann = ann.reindex(lines)[list(ANNOTATION_COLUMNS)].rename(columns=ANNOTATION_COLUMNS)
    ann.index.name = "depmap_id"
    # the CCLE name is NAME_TISSUE; its suffix equals Site_Primary wherever both exist (527 of these 580 lines)
    suffix = ann["ccle_name"].str.split("_", n=1).str[1].str.lower()
    ann["tissue"] = ann["tissue"].fillna(suffix)
    with gzip.GzipFile(out["lines"], "wb", compresslevel=9, mtime=0) as fh:
        fh.write(ann.to_csv().encode())
    return out
