"""Hierarchical cell codes: a coarse level over the SCD codebook, readable as ``"coarse-fine"``.

The SCD quantiser gives each cell one of ``n_codes`` fine codes (4,096 for 12 bits), about one code per
three or four cells: too fine to name a state shared across experiments. A :class:`CoarseCodebook` groups
the fine codes into ``n_coarse`` coarse codes by weighted spherical k-means of the fine code vectors, each
vector weighted by how many pretraining cells it holds (its usage on the ``role=train`` files of the
corpus manifest, at most ``max_cells_per_file`` per file as in pretraining, held-out cells excluded). Every
fine code belongs to exactly one coarse code (unused ones to their nearest coarse centroid), so a cell's
hierarchical code ``f"{coarse}-{fine}"`` is determined by its fine code alone.

It ships beside the checkpoint as ``coarse_codes.safetensors`` (``centroids`` (n_coarse, d) and
``assignment`` (n_codes,)) and ``coarse_codes.json`` (the parent checkpoint's sha256, the settings, the
files whose usage weighted it, and the command that built it)::

    python -m foundation.codes --n-coarse 16

:meth:`foundation.CellVQ.embed` then writes ``obs["cellvq_code_coarse"]`` and ``obs["cellvq_code_hier"]``
(docs/CONTRACTS.md). :func:`code_agreement` measures whether coarse codes mean the same state in two
experiments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("foundation")

WEIGHTS = "coarse_codes.safetensors"
META = "coarse_codes.json"


@dataclass
class CoarseCodeConfig:
    """How the coarse level is fitted."""

    n_coarse: int = 16
    max_cells_per_file: int = 3000  # as in pretraining: a large file does not own the coarse codes
    seed: int = 0
    n_init: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CoarseCodebook:
    """Coarse centroids over a fine codebook and the coarse code of every fine code."""

    centroids: np.ndarray  # (n_coarse, d), L2-normalised
    assignment: np.ndarray  # (n_codes,) int64, coarse code of each fine code
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_coarse(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def n_codes(self) -> int:
        return int(self.assignment.shape[0])

    def coarse_of(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_codes):
            raise ValueError(f"fine codes must lie in [0, {self.n_codes}); got {codes.min()}..{codes.max()}")
        return self.assignment[codes]

    def labels(self, codes: np.ndarray) -> np.ndarray:
        """Readable hierarchical codes ``"coarse-fine"`` (object array)."""
        codes = np.asarray(codes, dtype=np.int64)
        return np.array([f"{c}-{f}" for c, f in zip(self.coarse_of(codes), codes)], dtype=object)

    def reassign(self, codebook: np.ndarray) -> CoarseCodebook:
        """The same coarse centroids over another (e.g. adapted) fine codebook: each code to its nearest."""
        meta = {**self.meta, "reassigned": True}
        return CoarseCodebook(self.centroids, nearest(codebook, self.centroids), meta)

    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        save_file({"centroids": self.centroids.astype(np.float32), "assignment": self.assignment.astype(np.int64)},
                  str(folder / WEIGHTS))
        (folder / META).write_text(json.dumps(self.meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CoarseCodebook | None:
        """The coarse level shipped in a checkpoint folder, or None when it has none."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / WEIGHTS).is_file():
            return None
        t = load_file(str(folder / WEIGHTS))
        meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
        return cls(t["centroids"], t["assignment"].astype(np.int64), meta)


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(codebook: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (normalize(codebook) @ normalize(centroids).T).argmax(1).astype(np.int64)


def fit_coarse(codebook: np.ndarray, usage: np.ndarray, cfg: CoarseCodeConfig) -> CoarseCodebook:
    """Weighted spherical k-means of the fine code vectors (weights: ``usage``, cells per fine code)."""
    from sklearn.cluster import KMeans

    usage = np.asarray(usage, dtype=np.float64)
    if usage.shape[0] != codebook.shape[0]:
        raise ValueError(f"usage has {usage.shape[0]} entries but the codebook {codebook.shape[0]} codes")
    used = np.flatnonzero(usage > 0)
    if len(used) < cfg.n_coarse:
        raise ValueError(
            f"only {len(used)} fine codes are used, fewer than n_coarse={cfg.n_coarse}; lower --n-coarse or "
            "weight the codebook with more cells"
        )
    X = normalize(codebook[used])
    km = KMeans(n_clusters=cfg.n_coarse, n_init=cfg.n_init, random_state=cfg.seed)
    km.fit(X, sample_weight=usage[used])
    centroids = normalize(km.cluster_centers_)
    return CoarseCodebook(centroids.astype(np.float32), nearest(codebook, centroids),
                          {"config": cfg.to_dict(), "n_used_codes": int(len(used))})


def embed_copy(model, adata, **embed_kw):
    """``adata`` embedded in a copy (``adata`` itself is left alone)."""
    a = adata.copy()
    model.embed(a, progress=False, **embed_kw)
    return a


def train_files(manifest: str | os.PathLike, shared: Path) -> list[Path]:
    import pandas as pd

    df = pd.read_csv(manifest, sep="\t")
    files = [shared / f for f in df.loc[df["role"] == "train", "file"]]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"training files of {manifest} not found: {missing}; pass --shared DIR")
    return files


@dataclass
class CodeStatistics:
    """Per fine code: how many cells it holds and the sum of their L2-normalised embeddings."""

    usage: np.ndarray  # (n_codes,) int64
    z_sum: np.ndarray  # (n_codes, d) float64

    def positions(self, codebook: np.ndarray) -> np.ndarray:
        """Where each fine code sits for clustering: the mean direction of its cells where it has any, its
        code vector otherwise."""
        pos = normalize(codebook)
        used = self.usage > 0
        pos[used] = normalize(self.z_sum[used])
        return pos


def code_statistics(model, files: Sequence[Path], holdout: set[tuple[str, str]], cfg: CoarseCodeConfig
                    ) -> CodeStatistics:
    """Cells per fine code over ``files`` (held-out cells dropped, at most ``max_cells_per_file`` each)."""
    import anndata as ad

    usage = np.zeros(model.config.n_codes, dtype=np.int64)
    z_sum = np.zeros((model.config.n_codes, model.config.d_model))
    for p in files:
        a = ad.read_h5ad(p)
        rows = np.flatnonzero([(p.name, str(o)) not in holdout for o in a.obs_names])
        if len(rows) > cfg.max_cells_per_file:
            rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.max_cells_per_file, replace=False))
        e = embed_copy(model, a[rows])
        codes = e.obs["cellvq_code_id"].to_numpy()
        usage += np.bincount(codes, minlength=len(usage))
        np.add.at(z_sum, codes, normalize(e.obsm["X_cellvq"]))
        log.info("%s: %d cells, %d codes", p.name, len(rows), len(np.unique(codes)))
    return CodeStatistics(usage, z_sum)


def code_agreement(codes_a, labels_a, codes_b, labels_b) -> dict[str, float]:
    """Do codes mean the same state in two experiments?

    For each cell of one experiment: the share of the other experiment's cells *of the same label* that carry
    its code (``same``), and the share of the other experiment's cells *of other labels* that do (``other``);
    averaged over the cells of both directions (labels present in both only). ``ratio`` = same / other
    (1 = codes ignore labels). ``same_present`` / ``other_present``: the share of cells whose code occurs at
    all among those cells (a weaker measure that grows with the size of the set)."""
    acc: dict[str, list[float]] = {"same": [], "other": [], "same_present": [], "other_present": []}
    for ca, la, cb, lb in ((codes_a, labels_a, codes_b, labels_b), (codes_b, labels_b, codes_a, labels_a)):
        ca, la, cb, lb = (np.asarray(x).astype(str) for x in (ca, la, cb, lb))
        for lab in np.intersect1d(la, lb):
            in_lab = lb == lab
            if in_lab.all():
                continue
            for code in np.unique(ca[la == lab]):
                n = int(((la == lab) & (ca == code)).sum())
                s, o = np.mean(cb[in_lab] == code), np.mean(cb[~in_lab] == code)
                for key, v in (("same", s), ("other", o), ("same_present", s > 0), ("other_present", o > 0)):
                    acc[key] += [float(v)] * n
    out: dict[str, float] = {k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()}
    out["ratio"] = out["same"] / out["other"] if out["other"] > 0 else float("inf")
    out["n_cells"] = len(acc["same"])
    return out


def nmi(labels, codes) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(labels).astype(str), np.asarray(codes).astype(str)))


@dataclass
class TuneSet:
    """A labelled dataset with two experiments (``batch``) on which the number of coarse codes is chosen."""

    file: str = "corpus/kang2018_ifnb2800_celltypes.h5ad"
    label: str = "cell_type"
    batch: str = "condition"
    grid: tuple[int, ...] = (8, 12, 16, 20, 24, 32, 48)


def tune_n_coarse(model, stats: CodeStatistics, shared: Path, tune: TuneSet, cfg: CoarseCodeConfig
                  ) -> tuple[int, list[dict[str, Any]]]:
    """The grid value with the highest coarse-code NMI vs ``tune.label`` on the tuning dataset (ties: the
    smaller), and every grid value's NMI and cross-``batch`` agreement."""
    import anndata as ad

    e = embed_copy(model, ad.read_h5ad(shared / tune.file))
    fine, labels, batch = e.obs["cellvq_code_id"].to_numpy(), e.obs[tune.label].astype(str).to_numpy(), \
        e.obs[tune.batch].astype(str).to_numpy()
    first = batch == np.unique(batch)[0]
    pos = stats.positions(model.codebook())
    rows = []
    for k in tune.grid:
        coarse = fit_coarse(pos, stats.usage, dataclasses.replace(cfg, n_coarse=k)).coarse_of(fine)
        ag = code_agreement(coarse[first], labels[first], coarse[~first], labels[~first])
        rows.append({"n_coarse": k, "nmi": round(nmi(labels, coarse), 4), "agreement_ratio": round(ag["ratio"], 3)})
        log.info("n_coarse=%d: NMI %.3f, agreement %.2fx", k, rows[-1]["nmi"], ag["ratio"])
    best = max(rows, key=lambda r: (r["nmi"], -r["n_coarse"]))["n_coarse"]
    return best, rows


def build(checkpoint: Path, shared: Path, cfg: CoarseCodeConfig, command: str, tune: TuneSet | None = None
          ) -> CoarseCodebook:
    """Fit the coarse level of ``checkpoint`` on its corpus' training files and write it beside it. With
    ``tune``, ``cfg.n_coarse`` is replaced by the value chosen on the tuning dataset."""
    from foundation.checkpoint import sha256_file
    from foundation.holdout import holdout_set, read_holdout
    from foundation.model import CellVQ

    model = CellVQ.load(checkpoint)
    root = checkpoint.parent
    files = train_files(root / "corpus.tsv", shared)
    held_path = root / "pbmc3k_holdout.tsv"
    held = holdout_set(read_holdout(held_path)) if held_path.is_file() else set()
    stats = code_statistics(model, files, held, cfg)
    tuning = None
    if tune is not None:
        best, rows = tune_n_coarse(model, stats, shared, tune, cfg)
        cfg = dataclasses.replace(cfg, n_coarse=best)
        tuning = {**dataclasses.asdict(tune), "chosen": best, "criterion": "max NMI vs label", "table": rows}
    coarse = fit_coarse(stats.positions(model.codebook()), stats.usage, cfg)
    coarse.meta.update(
        checkpoint_sha256=sha256_file(checkpoint / "model.safetensors"), n_codes=int(model.config.n_codes),
        n_coarse=cfg.n_coarse, usage_files=[p.name for p in files], usage_cells=int(stats.usage.sum()),
        held_out_cells_excluded=len(held), positions="usage-weighted mean direction of each fine code's cells",
        tuning=tuning, command=command,
    )
    coarse.save(checkpoint)
    return coarse


def main(argv: list[str] | None = None) -> None:
    """``python -m foundation.codes [--checkpoint DIR] [--n-coarse K | --tune] [--shared DIR]``: fit and write
    the coarse level of a checkpoint (default: the shipped one) from its corpus manifest's training files."""
    from foundation.datasets import shared_data_dir
    from foundation.model import pretrained_path

    ap = argparse.ArgumentParser(prog="python -m foundation.codes", description=main.__doc__)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--n-coarse", type=int, default=CoarseCodeConfig.n_coarse)
    ap.add_argument("--tune", action="store_true",
                    help=f"choose --n-coarse on {TuneSet.file} ({TuneSet.label}, across {TuneSet.batch})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.n_coarse < 2:
        ap.error(f"--n-coarse must be at least 2, got {args.n_coarse}")
    cfg = CoarseCodeConfig(n_coarse=args.n_coarse, seed=args.seed)
    command = ("python -m foundation.codes " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    coarse = build(args.checkpoint or pretrained_path(), args.shared or shared_data_dir(), cfg, command,
                   TuneSet() if args.tune else None)
    sizes = np.bincount(coarse.assignment, minlength=coarse.n_coarse)
    print(f"{coarse.n_coarse} coarse codes over {coarse.n_codes} fine codes "
          f"({coarse.meta['n_used_codes']} used by {coarse.meta['usage_cells']} training cells); "
          f"fine codes per coarse code: {sizes.min()}..{sizes.max()}")
    for row in (coarse.meta.get("tuning") or {}).get("table", []):
        print(f"  tuning n_coarse={row['n_coarse']}: NMI {row['nmi']:.3f}, agreement {row['agreement_ratio']:.2f}x")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
