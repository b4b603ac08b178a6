"""Bulk drug response (GDSC ln IC50 of line-drug pairs): data assembly, the three splits (random pairs,
unseen lines, unseen drugs), every method in one run, Pearson overall and median per drug."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from foundation.perturb.drug_models import DrugMean, PairMLP, PairRidge
from foundation.perturb.metrics import pearson

# method -> (model, line features, drug features)
METHODS = {
    "drug_mean": ("drug_mean", None, None),
    "drug_mean+line_mean": ("additive", None, None),
    "ridge[expr+fp]": ("ridge", "expr", "fp"),
    "ridge[cellvq+fp]": ("ridge", "cellvq", "fp"),
    "ridge[random+fp]": ("ridge", "random", "fp"),
    "ridge[pca+fp]": ("ridge", "pca", "fp"),
    "mlp[expr+fp]": ("mlp", "expr", "fp"),
    "mlp[cellvq+fp]": ("mlp", "cellvq", "fp"),
    "mlp[random+fp]": ("mlp", "random", "fp"),
    "mlp[pca+fp]": ("mlp", "pca", "fp"),
    "mlp[expr+gnn]": ("mlp", "expr", "gnn"),
    "mlp[cellvq+gnn]": ("mlp", "cellvq", "gnn"),
}
SPLITS = ("random", "unseen_lines", "unseen_drugs")
GROUP = {"random": None, "unseen_lines": "line", "unseen_drugs": "compound"}


@dataclass
class BulkConfig:
    n_folds: int = 5
    seed: int = 0
    splits: tuple[str, ...] = SPLITS
    methods: tuple[str, ...] = tuple(METHODS)
    max_folds: int | None = None       # evaluate only the first k of the n_folds folds (time)
    min_pairs: int = 10                # a drug enters the per-drug median with at least this many test pairs
    epochs: int = 6                    # MLP / GNN epochs (batches of 2048 pairs)
    alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4)  # ridge, chosen on an inner split of train
    progress: bool = True


@dataclass
class BulkData:
    pairs: pd.DataFrame                 # line, drug, compound, ln_ic50 (+ integer li, di)
    lines: list[str]
    drugs: pd.DataFrame                 # per drug (rows aligned with di): name, pubchem_cid, smiles
    line_features: dict[str, np.ndarray]
    fingerprints: np.ndarray
    graphs: list = field(repr=False, default_factory=list)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def gdsc_bulk(gene_embedding: pd.DataFrame | None, seed: int = 0, gdsc_dir=None) -> BulkData:
    """GDSC pairs whose drug maps to SMILES, with line features ``expr`` (706 z-scored census genes),
    ``pca`` (64 PCs of them), and, given a gene embedding, ``cellvq`` (expression x CellVQ gene embedding,
    :func:`foundation.tasks.drug_response_features`) and ``random`` (the same with Gaussian embeddings)."""
    from foundation import datasets, tasks
    from foundation.perturb.gdsc import gdsc_drug_table, response_pairs
    from foundation.perturb.molecules import molecular_graphs, morgan_fingerprints

    adata = datasets.gdsc()
    ic50 = adata.obsm["gdsc_ln_ic50"]
    drugs = gdsc_drug_table(list(ic50.columns), gdsc_dir)
    pairs = response_pairs(ic50, drugs)
    lines = sorted(pairs["line"].unique())
    mapped = drugs[drugs["smiles"].notna()]
    pairs["li"] = pd.Index(lines).get_indexer(pairs["line"])
    pairs["di"] = mapped.index.get_indexer(pairs["drug"])
    sub = adata[lines].copy()
    x = np.asarray(sub.X, dtype=np.float64)
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    feats = {"expr": x, "pca": u[:, :64] * s[:64]}
    if gene_embedding is not None:
        feats["cellvq"] = tasks.drug_response_features(sub, gene_embedding)
        feats["random"] = tasks.drug_response_features(sub, tasks.random_gene_embedding(gene_embedding, seed=seed))
    feats = {k: _standardise(np.asarray(v, dtype=np.float64)) for k, v in feats.items()}
    smiles, names = mapped["smiles"].tolist(), mapped.index.tolist()
    return BulkData(pairs, lines, mapped, feats, morgan_fingerprints(smiles, names=names).astype(np.float64),
                    molecular_graphs(smiles, names))


def split_folds(pairs: pd.DataFrame, split: str, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test-pair indices of each fold: random pairs, or whole lines / whole compounds held out."""
    if split not in GROUP:
        raise ValueError(f"unknown split {split!r}; choose from {list(GROUP)}.")
    rng = np.random.default_rng(seed)
    if GROUP[split] is None:
        return np.array_split(rng.permutation(len(pairs)), n_folds)
    groups = pairs[GROUP[split]].to_numpy()
    uniq = rng.permutation(np.unique(groups))
    return [np.flatnonzero(np.isin(groups, g)) for g in np.array_split(uniq, n_folds)]


def pair_metrics(pairs: pd.DataFrame, pred: np.ndarray, min_pairs: int) -> dict[str, float]:
    """Pearson over all test pairs, median per-drug Pearson (drugs with >= ``min_pairs`` test pairs), RMSE."""
    y = pairs["ln_ic50"].to_numpy()
    per_drug = [pearson(pred[idx], y[idx]) for idx in pairs.groupby("drug").indices.values() if len(idx) >= min_pairs]
    return {"pearson": pearson(pred, y), "median_drug_pearson": float(np.median(per_drug)) if per_drug else np.nan,
            "n_drugs": len(per_drug), "rmse": float(np.sqrt(np.mean((pred - y) ** 2)))}


def _ridge(data: BulkData, line_src: str, train: pd.DataFrame, split: str, cfg: BulkConfig) -> PairRidge:
    """Ridge with the penalty that predicts an inner held-out fold (same kind of split) of ``train`` best."""
    L, D = data.line_features[line_src], data.fingerprints
    inner = split_folds(train.reset_index(drop=True), split, 5, cfg.seed + 1)[0]
    fit_part = np.setdiff1d(np.arange(len(train)), inner)
    a, b = train.iloc[fit_part], train.iloc[inner]
    errs = [np.mean((PairRidge(al).fit(L, D, a.li.to_numpy(), a.di.to_numpy(), a.ln_ic50.to_numpy())
                     .predict(b.li.to_numpy(), b.di.to_numpy()) - b.ln_ic50.to_numpy()) ** 2) for al in cfg.alphas]
    best = cfg.alphas[int(np.argmin(errs))]
    return PairRidge(best).fit(L, D, train.li.to_numpy(), train.di.to_numpy(), train.ln_ic50.to_numpy())


def fit_predict(data: BulkData, name: str, train: pd.DataFrame, test: pd.DataFrame, split: str,
                cfg: BulkConfig) -> np.ndarray:
    """Fit method ``name`` on the ``train`` pairs and predict the ``test`` pairs."""
    kind, line_src, drug_src = METHODS[name]
    li, di, y = train.li.to_numpy(), train.di.to_numpy(), train.ln_ic50.to_numpy()
    if kind in ("drug_mean", "additive"):
        model = DrugMean(with_line=kind == "additive").fit(li, di, y)
    elif kind == "ridge":
        model = _ridge(data, line_src, train, split, cfg)
    else:
        D = data.fingerprints if drug_src == "fp" else None
        model = PairMLP(epochs=cfg.epochs, seed=cfg.seed).fit(data.line_features[line_src], D, li, di, y,
                                                               graphs=data.graphs)
    return model.predict(test.li.to_numpy(), test.di.to_numpy())


def evaluate_bulk(data: BulkData, cfg: BulkConfig | None = None) -> pd.DataFrame:
    """Tidy table: one row per split x method x fold with the metrics and fit+predict seconds."""
    cfg = cfg or BulkConfig()
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}.")
    missing = {METHODS[m][1] for m in cfg.methods} - set(data.line_features) - {None}
    if missing:
        raise ValueError(f"line features {sorted(missing)} missing: pass a gene embedding to gdsc_bulk or drop "
                         "the [cellvq]/[random] methods.")
    rows, jobs = [], [(s, k) for s in cfg.splits for k in range(cfg.max_folds or cfg.n_folds)]
    for split, k in tqdm(jobs, desc="drug response folds", disable=not cfg.progress):
        test_idx = split_folds(data.pairs, split, cfg.n_folds, cfg.seed)[k]
        test = data.pairs.iloc[test_idx]
        train = data.pairs.drop(index=data.pairs.index[test_idx])
        for name in cfg.methods:
            t0 = time.perf_counter()
            pred = fit_predict(data, name, train, test, split, cfg)
            rows.append({"split": split, "method": name, "fold": k, "seed": cfg.seed,
                         **pair_metrics(test, pred, cfg.min_pairs), "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def summarize_bulk(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over folds (and seeds) of each metric, per split and method; median fold seconds."""
    g = table.groupby(["split", "method"], sort=False)
    out = g[["pearson", "median_drug_pearson", "rmse"]].mean()
    out["fold_seconds"] = g["seconds"].median()
    out["folds"] = g.size()
    return out.reset_index()
