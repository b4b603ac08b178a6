"""Label transfer and property prediction from an embedding."""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from foundation.tasks.inputs import get_obs, get_rep

__all__ = ["transfer_labels", "transfer_labels_across", "macro_f1", "predict_property", "GenePanelWarning"]


class GenePanelWarning(UserWarning):
    """Reference and query were embedded from very different numbers of measured genes."""


#: Below this ratio of measured genes (smaller panel / larger panel), transfer_labels warns.
PANEL_RATIO_WARN = 0.5

logger = logging.getLogger(__name__)


def macro_f1(y_true, y_pred) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` (labels compared as strings).

    Classes that occur only in the predictions are not averaged over (a query need not contain every
    reference class), but predicting them still costs recall of the true classes.
    """
    from sklearn.metrics import f1_score

    yt = np.asarray(pd.Series(y_true).astype(str))
    yp = np.asarray(pd.Series(y_pred).astype(str))
    if len(yt) != len(yp):
        raise ValueError(f"y_true has {len(yt)} labels but y_pred {len(yp)}")
    return float(f1_score(yt, yp, labels=np.unique(yt), average="macro", zero_division=0))


def transfer_labels(
    reference: AnnData,
    query: AnnData,
    label_key: str,
    use_rep: str = "X_cellvq",
    method: Literal["knn", "logreg"] = "knn",
    k: int = 15,
    seed: int = 0,
) -> pd.DataFrame:
    """Transfer ``reference.obs[label_key]`` to ``query`` through the shared embedding ``use_rep``.

    ``method="knn"``: distance-weighted vote of the ``k`` nearest reference cells (Euclidean);
    ``method="logreg"``: multinomial logistic regression on standardised embeddings.
    Reference cells with a missing label are ignored.

    Writes ``query.obs[f"{label_key}_cellvq_pred"]`` (categorical) and
    ``query.obs[f"{label_key}_cellvq_conf"]`` (probability of the predicted label).

    Returns a DataFrame indexed by ``query.obs_names`` with columns ``predicted`` and ``confidence``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    R = get_rep(reference, use_rep)
    Q = get_rep(query, use_rep)
    if R.shape[1] != Q.shape[1]:
        raise ValueError(
            f"reference obsm[{use_rep!r}] has {R.shape[1]} dims but query has {Q.shape[1]}; embed both with the "
            "same model."
        )
    _warn_if_panels_differ(reference, query, use_rep)
    lab = get_obs(reference, label_key)
    ok = lab.notna().to_numpy()
    y = lab.astype(str).to_numpy()[ok]
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"reference.obs[{label_key!r}] has {len(np.unique(y))} distinct label(s); label transfer needs at "
            "least two."
        )
    if method == "knn":
        clf = KNeighborsClassifier(n_neighbors=min(k, int(ok.sum())), weights="distance")
    elif method == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    else:
        raise ValueError(f"method must be 'knn' or 'logreg', got {method!r}")
    clf.fit(R[ok], y)
    proba = clf.predict_proba(Q)
    classes = clf.classes_
    pred = classes[proba.argmax(axis=1)]
    conf = proba.max(axis=1)
    query.obs[f"{label_key}_cellvq_pred"] = pd.Categorical(pred, categories=sorted(np.unique(y)))
    query.obs[f"{label_key}_cellvq_conf"] = conf.astype(np.float32)
    return pd.DataFrame({"predicted": pred, "confidence": conf}, index=query.obs_names.copy())


def _warn_if_panels_differ(reference: AnnData, query: AnnData, use_rep: str) -> None:
    if not use_rep.startswith("X_cellvq"):
        return
    n = [a.uns.get("cellvq", {}).get("n_measured_genes") for a in (reference, query)]
    if None in n or max(n) == 0 or min(n) / max(n) >= PANEL_RATIO_WARN:
        return
    warnings.warn(
        f"reference was embedded from {n[0]:,} measured genes and query from {n[1]:,}: embeddings of experiments "
        "with very different gene panels are not directly comparable. Embed both on the genes they share: "
        "foundation.tasks.transfer_labels_across(model, reference, query, label_key).",
        GenePanelWarning,
        stacklevel=3,
    )


def transfer_labels_across(
    model,
    reference: AnnData,
    query: AnnData,
    label_key: str,
    method: Literal["knn", "logreg"] = "knn",
    k: int = 15,
    seed: int = 0,
    reference_layer: str | None = None,
    query_layer: str | None = None,
    min_shared: int = 100,
    progress: bool = False,
) -> pd.DataFrame:
    """Annotate ``query`` from ``reference`` (two experiments, raw counts) through ``model``, on the genes that
    both measured.

    A cell's embedding depends on which genes its experiment measured (a 765-gene panel and a whole
    transcriptome place the same cell apart), so both datasets are embedded again, restricted to the model
    genes measured in both, and labels are transferred in that shared space (:func:`transfer_labels`).
    Neither input's ``obsm["X_cellvq"]`` is touched.

    Writes to ``query``: ``obs[f"{label_key}_cellvq_pred"]``, ``obs[f"{label_key}_cellvq_conf"]``,
    ``obsm["X_cellvq_shared"]`` (its embedding on the shared genes) and ``uns["cellvq_transfer"]`` (label key,
    method, genes measured in the reference, in the query and in both). Returns :func:`transfer_labels`'
    DataFrame. Raises ``ValueError`` when fewer than ``min_shared`` genes are shared.
    """
    from foundation.data import align_genes

    get_obs(reference, label_key)  # a missing label fails here, before anything is embedded
    alignments = [align_genes(a, model.vocab, layer=layer)
                  for a, layer in ((reference, reference_layer), (query, query_layer))]
    shared = alignments[0].measured & alignments[1].measured
    n_shared = int(shared.sum())
    if n_shared < min_shared:
        raise ValueError(
            f"reference and query share only {n_shared} of the model's genes (at least {min_shared} needed); check "
            "that both use the same gene naming (symbols or Ensembl IDs) and species."
        )
    subsets = []
    for a, al, layer in ((reference, alignments[0], reference_layer), (query, alignments[1], query_layer)):
        keep = np.zeros(a.n_vars, dtype=bool)
        vi = al.var_index
        keep[vi >= 0] = shared[vi[vi >= 0]]
        sub = a[:, keep].copy()
        model.embed(sub, layer=layer, progress=progress)
        subsets.append(sub)
    ref_sub, query_sub = subsets
    result = transfer_labels(ref_sub, query_sub, label_key, use_rep="X_cellvq", method=method, k=k, seed=seed)
    for col in (f"{label_key}_cellvq_pred", f"{label_key}_cellvq_conf"):
        query.obs[col] = query_sub.obs[col].values  # same cells, same order; keeps the categories
    query.obsm["X_cellvq_shared"] = query_sub.obsm["X_cellvq"]
    query.uns["cellvq_transfer"] = {
        "label_key": label_key, "method": method, "k": int(k),
        "reference_genes": int(alignments[0].measured.sum()), "query_genes": int(alignments[1].measured.sum()),
        "shared_genes": n_shared,
    }
    return result


def _is_numeric(s: pd.Series) -> bool:
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return False
    if pd.api.types.is_float_dtype(s):
        return True
    return s.nunique() > 20  # integers with few values (cluster ids, batches) are categories


def predict_property(
    adata: AnnData,
    key: str,
    use_rep: str = "X_cellvq",
    cv: int = 5,
    seed: int = 0,
    kind: Literal["auto", "categorical", "numeric"] = "auto",
    min_class_size: int | None = None,
) -> dict:
    """How well the embedding predicts ``adata.obs[key]`` (cross-validated linear probe).

    Categorical keys: stratified ``cv``-fold logistic regression on standardised embeddings; returns
    ``accuracy``, ``macro_f1``, ``balanced_accuracy``, ``n_classes``, ``per_fold`` (list of dicts),
    ``dropped_classes`` (classes with fewer than ``min_class_size`` (default ``cv``) cells, left out with a
    warning). Numeric keys: ``cv``-fold ridge regression; returns ``r2``, ``pearson``, ``per_fold``.
    ``kind="auto"`` treats float columns and integer columns with more than 20 values as numeric.

    Refuses (``ValueError``) keys with a single value, or categorical keys with one value per cell.
    Writes ``adata.uns["cellvq_property"][key]`` (the returned scalars).
    """
    from scipy.stats import pearsonr
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, r2_score
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = get_rep(adata, use_rep)
    s = get_obs(adata, key)
    ok = s.notna().to_numpy()
    s = s[ok]
    X = X[ok]
    n_unique = s.nunique()
    if n_unique < 2:
        raise ValueError(
            f"adata.obs[{key!r}] has a single value ({s.iloc[0] if len(s) else 'all missing'!r}); there is nothing "
            "to predict: pick a column that varies between cells."
        )
    numeric = _is_numeric(s) if kind == "auto" else kind == "numeric"
    result: dict = {"key": key, "use_rep": use_rep, "cv": cv, "n_cells": int(ok.sum())}
    per_fold = []
    if numeric:
        y = s.to_numpy(dtype=np.float64)
        folds = KFold(n_splits=cv, shuffle=True, random_state=seed).split(X)
        pred = np.zeros_like(y)
        for i, (tr, te) in enumerate(folds):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
            model.fit(X[tr], y[tr])
            pred[te] = model.predict(X[te])
            per_fold.append({"fold": i, "r2": float(r2_score(y[te], pred[te])),
                             "pearson": float(pearsonr(y[te], pred[te])[0])})
        result.update(kind="numeric", r2=float(r2_score(y, pred)), pearson=float(pearsonr(y, pred)[0]))
    else:
        y = s.astype(str).to_numpy()
        if n_unique >= 0.5 * len(y):
            raise ValueError(
                f"adata.obs[{key!r}] has {n_unique} distinct values for {len(y)} cells (about one per cell, like an "
                "ID or barcode); a property must group cells: pick a column with a few values per group, or "
                "kind='numeric' if it is a measurement."
            )
        min_size = cv if min_class_size is None else min_class_size
        vc = pd.Series(y).value_counts()
        small = vc[vc < min_size].index.tolist()
        if small:
            warnings.warn(
                f"predict_property: classes {small} of {key!r} have fewer than {min_size} cells and are left out "
                f"of the {cv}-fold evaluation.",
                UserWarning,
                stacklevel=2,
            )
            keep = ~pd.Series(y).isin(small).to_numpy()
            X, y = X[keep], y[keep]
        if len(np.unique(y)) < 2:
            raise ValueError(f"adata.obs[{key!r}] has fewer than two classes with >= {min_size} cells.")
        folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(X, y)
        pred = np.empty_like(y)
        for i, (tr, te) in enumerate(folds):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
            model.fit(X[tr], y[tr])
            pred[te] = model.predict(X[te])
            per_fold.append({"fold": i, "accuracy": float(accuracy_score(y[te], pred[te])),
                             "macro_f1": macro_f1(y[te], pred[te])})
        result.update(
            kind="categorical",
            accuracy=float(accuracy_score(y, pred)),
            macro_f1=macro_f1(y, pred),
            balanced_accuracy=float(balanced_accuracy_score(y, pred)),
            n_classes=int(len(np.unique(y))),
            dropped_classes=small,
        )
    result["per_fold"] = per_fold
    store = adata.uns.setdefault("cellvq_property", {})
    store[key] = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
    logger.info("predict_property %s on %s: %s", key, use_rep,
                {k: v for k, v in result.items() if k in ("accuracy", "macro_f1", "r2", "pearson")})
    return result
