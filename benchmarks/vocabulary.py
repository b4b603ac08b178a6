"""Count match of every human raw-count h5ad in the shared data against the full GENCODE v44 vocabulary and
the shipped checkpoint's trained genes (issue 11 item 1).

    python -m benchmarks.vocabulary   ->  benchmarks/results/vocabulary.md / .json

HTSeq-count summary rows (``__no_feature``, ...) are dropped first, as the pipeline does; their share of the
raw counts is listed. Figures do not vary between machines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import foundation
from foundation.data.coverage import file_coverage
from foundation.datasets import shared_data_dir

ROOT = shared_data_dir()
MOUSE = {"pancreas_mouse_bastidas_ponce_counts.h5ad", "bastidas_ponce2019_mouse_pancreas_3696.h5ad"}
OUT = Path(__file__).resolve().parent / "results"


def human_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.h5ad") if p.name not in MOUSE)


def main() -> int:
    vocab = foundation.load_pretrained().vocab
    rows = [file_coverage(p, vocab, root=ROOT) for p in human_files()]
    OUT.mkdir(exist_ok=True)
    (OUT / "vocabulary.json").write_text(json.dumps(rows, indent=2))
    lines = ["# Vocabulary coverage (issue 11 item 1)", "",
             "Share of each file's counts (HTSeq summary rows dropped) on the full GENCODE v44 vocabulary, on the "
             "shipped checkpoint's trained genes, and on untrained genes (in GENCODE, excluded from the encoder). "
             "`python -m benchmarks.vocabulary`.", "",
             "| file | cells | genes | HTSeq rows' share of raw counts | GENCODE v44 | trained | untrained (genes) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['cells']:,} | {r['genes']:,} | {100 * r['counter_share']:.1f}% | "
                     f"{100 * r['full_share']:.2f}% | {100 * r['trained_share']:.1f}% | "
                     f"{100 * r['untrained_share']:.1f}% ({r['n_untrained']:,}) |")
    low = [r["file"] for r in rows if r["full_share"] < 0.95]
    lines += ["", f"Files below 95% on GENCODE v44: {low or 'none'}."]
    (OUT / "vocabulary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
