""""Does the model know this data?": a per-cell and per-dataset out-of-distribution (OOD) score.

Per cell, the model's reconstruction of the counts it was shown: the ZINB negative log-likelihood of the
cell's own counts over the genes the dataset measured, given its quantised embedding, in nats per count
(``obs["cellvq_nll_per_count"]``). A cell like those the model was trained on is reconstructed about as
well as the training cells were; a cell of an unknown tissue or protocol is not. The score
(``obs["cellvq_ood"]``) is the share of reference cells (training cells of the checkpoint's corpus,
``ood_reference.json`` beside the weights) that the cell's NLL exceeds: 0.5 is a typical training cell,
0.99 worse than 99% of them.

Per dataset (``uns["cellvq_ood"]``): the median score, the share of cells above the reference's 99th
percentile, and the share of counts on genes the model cannot read (unmatched). When the median is above
``far_median`` or most cells are above the 99th percentile an :class:`OutOfDistributionWarning` recommends
``adapt`` (``cellvq adapt``), which recalibrates the reference on the data it adapted to.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_FILE = "ood_reference.json"
QUANTILES = np.linspace(0.0, 1.0, 201)
DEPTH = 1500.0  # counts per cell at which the NLL is compared (about a shallow 10x cell)


class OutOfDistributionWarning(UserWarning):
    """The data are far from what the checkpoint was trained on."""


@dataclass
class OODReference:
    """Quantiles of the per-cell NLL per count over reference (training) cells."""

    quantiles: list[float]
    n_cells: int
    sources: list[str] = field(default_factory=list)
    checkpoint_sha256: str = ""

    def percentile(self, nll: np.ndarray) -> np.ndarray:
        """Share of reference cells below each value (linear between the stored quantiles), in [0, 1]."""
        q = np.asarray(self.quantiles)
        return np.interp(nll, q, QUANTILES[: len(q)], left=0.0, right=1.0)

    @property
    def q99(self) -> float:
        return float(np.interp(0.99, QUANTILES[: len(self.quantiles)], self.quantiles))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / REFERENCE_FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> OODReference | None:
        path = Path(folder) / REFERENCE_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    @classmethod
    def from_values(cls, nll: np.ndarray, sources: Iterable[str], checkpoint_sha256: str = "") -> OODReference:
        nll = np.asarray(nll, dtype=np.float64)
        nll = nll[np.isfinite(nll)]
        if nll.size < 50:
            raise ValueError(f"an OOD reference needs at least 50 cells, got {nll.size}")
        return cls([float(v) for v in np.quantile(nll, QUANTILES)], int(nll.size), sorted(set(sources)),
                    checkpoint_sha256)


def thin_to_depth(counts, depth: float, seed: int = 0):
    """Binomially thin every cell above ``depth`` counts down to about ``depth`` (seeded); others unchanged.

    The NLL per count falls as depth grows (read-count protocols reach 10^6 per cell), so cells are compared
    at one depth."""
    import scipy.sparse as sp

    c = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    lib = np.asarray(c.sum(1)).ravel()
    keep = np.minimum(1.0, depth / np.maximum(lib, 1.0))
    p = np.repeat(keep, np.diff(c.indptr))
    rng = np.random.default_rng(seed)
    c.data = rng.binomial(np.rint(c.data).astype(np.int64), p).astype(np.float32)
    c.eliminate_zeros()
    return c


def nll_per_count(model, adata, layer: str | None = None, var_key: str | None = None,
                  batch_size: int = 256, use_rep: str = "X_cellvq_q", depth: float = DEPTH) -> np.ndarray:
    """Per cell, the ZINB NLL of its counts (measured vocabulary genes, thinned to ``depth`` counts) given
    ``obsm[use_rep]``, per count.

    ``adata`` must have been embedded by ``model`` (``model.embed``), which wrote ``obsm["X_cellvq_q"]``."""
    import torch

    from foundation.data import align_genes, get_counts, to_vocab_csr

    if use_rep not in adata.obsm:
        raise KeyError(f"obsm[{use_rep!r}] is missing: run model.embed(adata) (or `cellvq embed`) first")
    alignment = align_genes(adata, model.vocab, layer=layer, var_key=var_key, warn_below=0.0)
    counts = thin_to_depth(to_vocab_csr(get_counts(adata, layer), alignment, len(model.vocab)), depth)
    measured = torch.from_numpy(alignment.measured)
    zq_all = np.asarray(adata.obsm[use_rep], dtype=np.float32)
    module = model.module.eval()
    dev = model.device
    gene_emb = module.gene_embeddings()
    out = np.empty(adata.n_obs, dtype=np.float64)
    with torch.no_grad():
        for s in range(0, adata.n_obs, batch_size):
            c = counts[s : s + batch_size]
            x = torch.from_numpy(c.toarray()).to(dev)
            lib = x.sum(1)
            dist = module.decoder(torch.from_numpy(zq_all[s : s + batch_size]).to(dev), gene_emb, lib,
                                  measured.to(dev))
            logp = torch.where(measured.to(dev), dist.log_prob(x), torch.zeros_like(x))
            out[s : s + batch_size] = (-logp.sum(1) / lib.clamp_min(1.0)).double().cpu().numpy()
    return out


def reference_for(model) -> OODReference | None:
    folder = model.metadata.get("checkpoint_path")
    return OODReference.load(folder) if folder else None


def calibrate(model, adatas: Iterable, sources: Iterable[str] = (), max_cells: int = 3000,
              seed: int = 0) -> OODReference:
    """An :class:`OODReference` from cells the model was trained on (``adatas``: raw counts; each is
    embedded here, at most ``max_cells`` random cells of each)."""
    rng = np.random.default_rng(seed)
    values = []
    for a in adatas:
        if a.n_obs > max_cells:
            a = a[np.sort(rng.choice(a.n_obs, max_cells, replace=False))].copy()
        else:
            a = a.copy()
        model.embed(a, progress=False)
        values.append(nll_per_count(model, a))
    return OODReference.from_values(np.concatenate(values), sources,
                                    model.metadata.get("checkpoint_sha256", ""))


def score(model, adata, layer: str | None = None, var_key: str | None = None,
          reference: OODReference | None = None, far_median: float = 0.95, far_unmatched: float = 0.3,
          warn: bool = True) -> dict[str, Any]:
    """Write ``obs["cellvq_nll_per_count"]``, ``obs["cellvq_ood"]`` and ``uns["cellvq_ood"]`` (see the module
    docstring); return the ``uns`` summary. Without a reference (a checkpoint saved without one) only the
    NLL is written and the summary says so."""
    reference = reference or reference_for(model)
    nll = nll_per_count(model, adata, layer=layer, var_key=var_key)
    count_match = float(adata.uns.get("cellvq", {}).get("count_match_rate", np.nan))
    summary: dict[str, Any] = {"median_nll_per_count": float(np.median(nll)),
                               "unmatched_count_share": float(1.0 - count_match)}
    adata.obs["cellvq_nll_per_count"] = nll.astype(np.float32)
    if reference is None:
        summary.update(calibrated=False, far=False)
        adata.uns["cellvq_ood"] = summary
        return summary
    pct = reference.percentile(nll)
    above = float(np.mean(nll > reference.q99))
    far = bool(np.median(pct) > far_median or above > 0.5 or summary["unmatched_count_share"] > far_unmatched)
    summary.update(calibrated=True, median_score=float(np.median(pct)), share_above_q99=above,
                   reference_q50=float(np.interp(0.5, QUANTILES, reference.quantiles)),
                   reference_q99=reference.q99, reference_n_cells=reference.n_cells, far=far)
    adata.obs["cellvq_ood"] = pct.astype(np.float32)
    adata.uns["cellvq_ood"] = summary
    if far and warn:
        warnings.warn(describe(summary) + " Adapt the model to these cells first: `cellvq adapt in.h5ad --out "
                      "model_dir` (or `cellvq run --adapt`), or `model.adapt(adata)` in Python.",
                      OutOfDistributionWarning, stacklevel=2)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line for a terminal or a report."""
    if not summary.get("calibrated"):
        return (f"OOD: reconstruction NLL {summary['median_nll_per_count']:.2f} nats/count (median); "
                "the checkpoint has no OOD reference to compare it with.")
    verdict = "FAR from the training data" if summary["far"] else "within the training data's range"
    return (f"OOD: median score {summary['median_score']:.2f} (0.5 = a typical training cell), "
            f"{summary['share_above_q99']:.0%} of cells above the training cells' 99th percentile, "
            f"{summary['unmatched_count_share']:.0%} of counts on genes the model cannot read: {verdict}.")


def calibrate_files(model, paths: Iterable[str | Path], holdout: set[tuple[str, str]] | None = None,
                    max_cells: int = 3000, seed: int = 0) -> OODReference:
    """:func:`calibrate` on h5ad files of the checkpoint's corpus, leaving out its held-out cells."""
    import anndata as ad

    adatas, names = [], []
    for p in map(Path, paths):
        a = ad.read_h5ad(p)
        if holdout:
            keep = np.array([(p.name, str(o)) not in holdout for o in a.obs_names])
            a = a[keep].copy()
        adatas.append(a)
        names.append(p.name)
    return calibrate(model, adatas, names, max_cells=max_cells, seed=seed)


def main(argv: list[str] | None = None) -> None:
    """``python -m foundation.ood MODEL_DIR FILE... [--holdout TSV]``: write MODEL_DIR/ood_reference.json."""
    import argparse

    from foundation.holdout import holdout_set, read_holdout
    from foundation.model import CellVQ

    ap = argparse.ArgumentParser(prog="python -m foundation.ood", description=main.__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("files", nargs="+", help="the h5ad files the checkpoint was trained on")
    ap.add_argument("--holdout", help="TSV of held-out cells (file, obs_name) to leave out")
    args = ap.parse_args(argv)
    model = CellVQ.load(args.model_dir)
    hold = holdout_set(read_holdout(args.holdout)) if args.holdout else None
    ref = calibrate_files(model, args.files, hold)
    print(f"{ref.n_cells} reference cells from {len(ref.sources)} files -> {ref.save(args.model_dir)}")


if __name__ == "__main__":
    main()
