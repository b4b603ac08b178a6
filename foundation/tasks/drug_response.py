"""Drug response of cancer cell lines, zero-shot through the foundation model's gene embeddings.

Bulk, z-scored expression (:func:`foundation.datasets.gdsc`) is not counts, so the cell encoder cannot
embed it. What carries over is the model's *gene* embedding: a line's representation is its expression
profile projected onto the embeddings of the genes it measures,

    F = X[:, G] @ E[G] / sqrt(|G|)

with ``X`` (lines x genes, z-scored per gene), ``E`` (genes x d, e.g. ``CellVQ.gene_embedding()``) and ``G``
the genes found in both. :func:`drug_response_features` writes ``F`` to ``obsm["X_cellvq_drug"]``;
:func:`predict_drug_response` fits one ridge model per drug on any representation, holding cell lines out
by K-fold cross-validation; :func:`compare_drug_response` runs CellVQ features next to honest baselines
(raw expression of the same genes, a PCA of the same size, random gene embeddings of the same shape, and
label-shuffled IC50). Line properties (tissue, sex) are predicted from the same features with
:func:`foundation.tasks.predict_property` (``use_rep="X_cellvq_drug"``).

The functions take the gene embedding as data (a DataFrame or a ``varm`` key) and never load a model.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData

from foundation.errors import MissingKeyError
from foundation.tasks.inputs import get_rep

__all__ = [
    "drug_response_features",
    "random_gene_embedding",
    "predict_drug_response",
    "compare_drug_response",
    "IC50_KEY",
]

logger = logging.getLogger(__name__)

#: obsm key of the ln(IC50) table written by :func:`foundation.datasets.gdsc`.
IC50_KEY = "gdsc_ln_ic50"
#: ridge penalties tried by the inner (leave-one-out) cross-validation, on standardised features.
DEFAULT_ALPHAS = np.logspace(-1, 5, 13)


# ----------------------------------------------------------------------------------------------- features
def _expression(adata: AnnData, layer: str | None) -> np.ndarray:
    import scipy.sparse as sp

    if layer is None:
        X = adata.X
    elif layer not in adata.layers:
        raise MissingKeyError(
            f"layer {layer!r} not found in adata.layers (available: {sorted(adata.layers) or 'none'}); pass "
            "layer=None to use adata.X or name an existing layer."
        )
    else:
        X = adata.layers[layer]
    X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        raise ValueError(
            f"the expression matrix has {int(bad.sum())} NaN/inf values (in {int(bad.any(axis=0).sum())} genes); "
            "impute or drop those genes before computing drug-response features."
        )
    return X


def _var_symbols(adata: AnnData, gene_key: str | None) -> np.ndarray:
    if gene_key is None:
        return np.asarray(adata.var_names.astype(str))
    if gene_key not in adata.var.columns:
        raise MissingKeyError(
            f"gene_key {gene_key!r} is not a column of adata.var (columns: {list(adata.var.columns) or 'none'}); "
            "pass the column holding gene symbols, or gene_key=None to use var_names."
        )
    return np.asarray(adata.var[gene_key].astype(str))


def _match_embedding(adata: AnnData, gene_embedding, gene_key: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(var positions of the matched genes, their embedding rows, a description of the source)."""
    if isinstance(gene_embedding, str):
        if gene_embedding not in adata.varm:
            raise MissingKeyError(
                f"gene embedding {gene_embedding!r} not found in adata.varm (available: "
                f"{sorted(adata.varm.keys()) or 'none'}); pass the DataFrame of CellVQ.gene_embedding() instead, "
                "or name an existing varm key."
            )
        E = np.asarray(adata.varm[gene_embedding], dtype=np.float64)
        # varm["cellvq_gene"] holds zero rows for genes outside the model vocabulary
        ok = np.isfinite(E).all(axis=1) & (np.abs(E).sum(axis=1) > 0)
        idx = np.flatnonzero(ok)
        return idx, E[idx], f"varm[{gene_embedding!r}]"
    if not isinstance(gene_embedding, pd.DataFrame):
        raise TypeError(
            f"gene_embedding must be a DataFrame indexed by gene symbol (CellVQ.gene_embedding()) or the name of "
            f"an adata.varm key, got {type(gene_embedding).__name__}; a bare array has no gene names to match."
        )
    emb = gene_embedding[~gene_embedding.index.duplicated(keep="first")]
    if not np.isfinite(emb.to_numpy(dtype=np.float64)).all():
        raise ValueError("gene_embedding contains NaN/inf values; recompute it or drop those genes.")
    symbols = _var_symbols(adata, gene_key)
    pos = emb.index.get_indexer(pd.Index(symbols))
    idx = np.flatnonzero(pos >= 0)
    return idx, emb.to_numpy(dtype=np.float64)[pos[idx]], f"DataFrame ({emb.shape[0]} genes x {emb.shape[1]})"


def drug_response_features(
    adata: AnnData,
    gene_embedding: pd.DataFrame | str,
    *,
    gene_key: str | None = None,
    layer: str | None = None,
    min_genes: int = 10,
    key_added: str = "X_cellvq_drug",
) -> np.ndarray:
    """Project each line's expression onto the gene embeddings: ``X[:, G] @ E[G] / sqrt(|G|)``.

    Parameters
    ----------
    adata
        Lines (or samples) x genes; ``X`` (or ``layer``) is used as given, so z-score genes first (the GDSC
        data of :func:`foundation.datasets.gdsc` already are).
    gene_embedding
        A DataFrame indexed by gene symbol, one row per gene (``CellVQ.gene_embedding()``; duplicated symbols
        keep their first row), or the name of an ``adata.varm`` key aligned to the vars (e.g.
        ``"cellvq_gene"``; all-zero rows count as unmatched).
    gene_key
        ``adata.var`` column holding the symbols to match (default: ``var_names``).
    min_genes
        Fewer matched genes raise ``ValueError``.

    Writes ``adata.obsm[key_added]`` (float32, n_obs x d) and ``adata.uns[key_added + "_params"]`` (``n_genes``,
    ``n_vars``, ``n_dims``, ``genes`` (the matched var names), ``source``, ``scale``). Returns the features.
    """
    idx, E, source = _match_embedding(adata, gene_embedding, gene_key)
    if len(idx) < min_genes:
        if isinstance(gene_embedding, pd.DataFrame):
            names = list(_var_symbols(adata, gene_key)[:5])
            hint = (f"adata genes look like {names}, the embedding's like {list(gene_embedding.index[:5])}; pass "
                    "gene_key= naming an adata.var column of gene symbols, or an embedding of the same species")
        else:
            hint = "embed the data with the model first (it fills varm) or pass CellVQ.gene_embedding() instead"
        raise ValueError(
            f"only {len(idx)} of {adata.n_vars} genes of adata match the gene embedding {source} (need at least "
            f"{min_genes}); {hint}."
        )
    X = _expression(adata, layer)
    F = X[:, idx] @ E / np.sqrt(len(idx))
    adata.obsm[key_added] = F.astype(np.float32)
    adata.uns[key_added + "_params"] = {
        "n_genes": int(len(idx)),
        "n_vars": int(adata.n_vars),
        "n_dims": int(E.shape[1]),
        "genes": [str(g) for g in adata.var_names[idx]],
        "source": source,
        "scale": "1/sqrt(n_genes)",
    }
    logger.info("drug_response_features: %d of %d genes matched %s; %d dims -> obsm[%r]", len(idx), adata.n_vars,
                source, E.shape[1], key_added)
    return adata.obsm[key_added]


def random_gene_embedding(gene_embedding: pd.DataFrame, seed: int = 0, method: str = "gaussian") -> pd.DataFrame:
    """A control embedding with the same index and shape as ``gene_embedding`` but no gene-specific meaning.

    ``method="gaussian"``: independent normal draws with each dimension's mean and standard deviation;
    ``method="permuted"``: the real embedding vectors, shuffled across genes (same set of vectors, wrong genes).
    """
    if not isinstance(gene_embedding, pd.DataFrame):
        raise TypeError("gene_embedding must be a DataFrame indexed by gene symbol (CellVQ.gene_embedding()).")
    rng = np.random.default_rng(seed)
    E = gene_embedding.to_numpy(dtype=np.float64)
    if method == "gaussian":
        R = rng.normal(E.mean(axis=0), E.std(axis=0) + 1e-12, size=E.shape)
    elif method == "permuted":
        R = E[rng.permutation(E.shape[0])]
    else:
        raise ValueError(f"method must be 'gaussian' or 'permuted', got {method!r}")
    return pd.DataFrame(R.astype(np.float32), index=gene_embedding.index.copy(), columns=gene_embedding.columns)


# --------------------------------------------------------------------------------------------- prediction
def _ic50_table(adata: AnnData, ic50_key: str) -> pd.DataFrame:
    if ic50_key not in adata.obsm:
        raise MissingKeyError(
            f"drug-response table {ic50_key!r} not found in adata.obsm (available: {sorted(adata.obsm.keys()) or 'none'}); "
            "load the data with foundation.datasets.gdsc() (obsm['gdsc_ln_ic50']) or store a lines x drugs "
            "DataFrame there and pass ic50_key=."
        )
    tab = adata.obsm[ic50_key]
    if not isinstance(tab, pd.DataFrame):
        raise TypeError(
            f"adata.obsm[{ic50_key!r}] must be a DataFrame (lines x drugs, NaN = not tested) so drugs have names; "
            f"got {type(tab).__name__}."
        )
    return tab


def _select_drugs(tab: pd.DataFrame, drugs, min_lines: int, top_drugs: int | None) -> list[str]:
    n_tested = tab.notna().sum(axis=0)
    if drugs is not None:
        drugs = [drugs] if isinstance(drugs, str) else list(drugs)
        unknown = [d for d in drugs if d not in tab.columns]
        if unknown:
            raise ValueError(
                f"drug(s) {unknown[:10]} not in the response table ({tab.shape[1]} drugs, e.g. "
                f"{list(tab.columns[:5])}); pass names from adata.obsm[...].columns."
            )
        few = {d: int(n_tested[d]) for d in drugs if n_tested[d] < min_lines}
        if few:
            raise ValueError(
                f"drug(s) {few} have fewer than min_lines={min_lines} tested cell lines (count shown); a {min_lines}"
                "-line minimum keeps the cross-validated correlation meaningful: drop them or lower min_lines."
            )
        return drugs
    eligible = n_tested[n_tested >= min_lines]
    if eligible.empty:
        raise ValueError(
            f"no drug has at least min_lines={min_lines} tested cell lines (most: {int(n_tested.max()) if len(n_tested) else 0}); "
            "lower min_lines."
        )
    # most tested lines first; drug name breaks ties, so the choice is deterministic
    order = sorted(eligible.index, key=lambda d: (-int(eligible[d]), str(d)))
    return order[:top_drugs] if top_drugs is not None else order


def predict_drug_response(
    adata: AnnData,
    use_rep: str = "X_cellvq_drug",
    drugs: str | list[str] | None = None,
    cv: int = 5,
    seed: int = 0,
    *,
    ic50_key: str = IC50_KEY,
    min_lines: int = 30,
    top_drugs: int | None = None,
    alphas=DEFAULT_ALPHAS,
    shuffle: bool = False,
    key_added: str = "cellvq_drug_response",
) -> tuple[pd.DataFrame, dict]:
    """Cross-validated prediction of each drug's response from the representation ``use_rep``.

    For each drug, the lines tested with it are split into ``cv`` folds (``KFold``, shuffled with ``seed``);
    on each training part a ridge regression on standardised features is fit, its penalty chosen among
    ``alphas`` by efficient leave-one-out CV inside the training part (``RidgeCV``), and the held-out lines
    are predicted. Metrics use the pooled out-of-fold predictions.

    Parameters
    ----------
    use_rep
        ``adata.obsm`` key, or ``"X"`` for the expression matrix itself.
    drugs
        Drug names (columns of ``obsm[ic50_key]``); unknown names or drugs with fewer than ``min_lines``
        tested lines raise ``ValueError``. ``None``: every drug with at least ``min_lines`` tested lines,
        most-tested first, the first ``top_drugs`` of them if given (ties broken by name).
    shuffle
        Label-shuffled control: each drug's responses are permuted across its tested lines (with ``seed``)
        before fitting, so any correlation left is chance.

    Returns
    -------
    (table, summary)
        ``table``: DataFrame indexed by drug, columns ``n_lines``, ``pearson``, ``spearman``, ``rmse``,
        ``rmse_null`` (predicting the training-fold mean), ``r2`` (pooled out-of-fold), ``alpha`` (median chosen
        penalty). ``summary``: ``use_rep``, ``n_dims``, ``n_drugs``, ``median_pearson``, ``mean_pearson``,
        ``median_spearman``, ``median_rmse``, ``median_rmse_null``, ``median_r2``, ``frac_pearson_above_0.3``,
        ``cv``, ``seed``, ``shuffled``.

    Writes ``adata.uns[key_added][name]`` = ``{"summary": summary, "table": table}`` with ``name`` = ``use_rep``
    (``use_rep + "_shuffled"`` for the control).
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if cv < 2:
        raise ValueError(f"cv must be at least 2 folds, got {cv}.")
    R = get_rep(adata, use_rep)
    tab = _ic50_table(adata, ic50_key)  # AnnData keeps an obsm DataFrame aligned to obs_names
    chosen = _select_drugs(tab, drugs, max(min_lines, cv), top_drugs)
    rng = np.random.default_rng(seed)
    rows = []
    for drug in chosen:
        y_all = tab[drug].to_numpy(dtype=np.float64)
        ok = np.isfinite(y_all)
        X, y = R[ok], y_all[ok]
        if shuffle:
            y = rng.permutation(y)
        pred = np.empty_like(y)
        null = np.empty_like(y)
        chosen_alpha = []
        for tr, te in KFold(n_splits=cv, shuffle=True, random_state=seed).split(X):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
            model.fit(X[tr], y[tr])
            pred[te] = model.predict(X[te])
            null[te] = y[tr].mean()
            chosen_alpha.append(float(model[-1].alpha_))
        const = np.ptp(pred) == 0
        rows.append({
            "drug": drug,
            "n_lines": int(ok.sum()),
            "pearson": np.nan if const else float(pearsonr(y, pred)[0]),
            "spearman": np.nan if const else float(spearmanr(y, pred)[0]),
            "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
            "rmse_null": float(np.sqrt(np.mean((y - null) ** 2))),
            "r2": float(r2_score(y, pred)),
            "alpha": float(np.median(chosen_alpha)),
        })
    table = pd.DataFrame(rows).set_index("drug")
    summary = {
        "use_rep": use_rep,
        "n_dims": int(R.shape[1]),
        "n_drugs": int(len(table)),
        "median_pearson": float(table["pearson"].median()),
        "mean_pearson": float(table["pearson"].mean()),
        "median_spearman": float(table["spearman"].median()),
        "median_rmse": float(table["rmse"].median()),
        "median_rmse_null": float(table["rmse_null"].median()),
        "median_r2": float(table["r2"].median()),
        "frac_pearson_above_0.3": float((table["pearson"] > 0.3).mean()),
        "cv": int(cv),
        "seed": int(seed),
        "shuffled": bool(shuffle),
    }
    name = use_rep + ("_shuffled" if shuffle else "")
    adata.uns.setdefault(key_added, {})[name] = {"summary": summary, "table": table}
    logger.info("predict_drug_response %s: %d drugs, median Pearson %.3f", name, len(table), summary["median_pearson"])
    return table, summary


def compare_drug_response(
    adata: AnnData,
    gene_embedding: pd.DataFrame,
    *,
    gene_key: str | None = None,
    layer: str | None = None,
    drugs: str | list[str] | None = None,
    top_drugs: int | None = None,
    cv: int = 5,
    seed: int = 0,
    ic50_key: str = IC50_KEY,
    min_lines: int = 30,
    key_added: str = "cellvq_drug_response",
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """CellVQ gene-embedding features against baselines and controls, on the same drugs, folds and seed.

    Representations (each written to ``adata.obsm``):

    - ``cellvq``: :func:`drug_response_features` with ``gene_embedding`` (``X_cellvq_drug``);
    - ``expression``: the z-scored expression of the same matched genes (``X_drug_expression``);
    - ``pca``: PCA of that expression with as many components as the embedding has dimensions (fit on all
      lines, unsupervised; ``X_drug_pca``);
    - ``random``: features from :func:`random_gene_embedding` (``"gaussian"``, same shape; ``X_drug_random``);
    - ``permuted``: features from the real embedding vectors shuffled across genes (``X_drug_permuted``);
    - ``shuffled``: ``cellvq`` features with each drug's responses permuted across lines (chance level).

    Returns ``(summary, tables)``: ``summary`` is a DataFrame indexed by representation (the
    :func:`predict_drug_response` summary fields); ``tables`` maps each representation to its per-drug table.
    Also written to ``adata.uns[key_added + "_comparison"]``.
    """
    from sklearn.decomposition import PCA

    if not isinstance(gene_embedding, pd.DataFrame):
        raise TypeError("compare_drug_response needs the gene embedding as a DataFrame indexed by gene symbol "
                        "(CellVQ.gene_embedding()) to build the random controls of the same shape.")
    F = drug_response_features(adata, gene_embedding, gene_key=gene_key, layer=layer, key_added="X_cellvq_drug")
    genes = adata.uns["X_cellvq_drug_params"]["genes"]
    d = F.shape[1]
    Xg = _expression(adata, layer)[:, adata.var_names.get_indexer(genes)]
    adata.obsm["X_drug_expression"] = Xg.astype(np.float32)
    k = min(d, Xg.shape[0] - 1, Xg.shape[1])
    adata.obsm["X_drug_pca"] = PCA(n_components=k, random_state=seed).fit_transform(Xg).astype(np.float32)
    for name, method in (("X_drug_random", "gaussian"), ("X_drug_permuted", "permuted")):
        ctrl = random_gene_embedding(gene_embedding, seed=seed, method=method)
        drug_response_features(adata, ctrl, gene_key=gene_key, layer=layer, key_added=name)
    runs = {
        "cellvq": ("X_cellvq_drug", False),
        "expression": ("X_drug_expression", False),
        "pca": ("X_drug_pca", False),
        "random": ("X_drug_random", False),
        "permuted": ("X_drug_permuted", False),
        "shuffled": ("X_cellvq_drug", True),
    }
    summaries, tables = {}, {}
    for label, (rep, shuffled) in runs.items():
        table, summ = predict_drug_response(
            adata, use_rep=rep, drugs=drugs, cv=cv, seed=seed, ic50_key=ic50_key, min_lines=min_lines,
            top_drugs=top_drugs, shuffle=shuffled, key_added=key_added,
        )
        summaries[label], tables[label] = summ, table
    summary = pd.DataFrame.from_dict(summaries, orient="index")
    summary.index.name = "representation"
    adata.uns[key_added + "_comparison"] = {"summary": summary, "tables": tables}
    return summary, tables
