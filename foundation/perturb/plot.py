"""Figure of held-out predictions: predicted vs observed shift over each perturbation's top DE genes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from foundation.perturb.data import PerturbData
from foundation.perturb.evaluate import EvalConfig, fit_predict, folds, method_inputs


def held_out_predictions(data: PerturbData, emb: pd.DataFrame | None, method: str,
                         cfg: EvalConfig | None = None) -> np.ndarray:
    """(P, G) prediction of every perturbation by ``method`` fitted on the folds that hold it out."""
    cfg = cfg or EvalConfig()
    inputs, preds = method_inputs(data, emb, cfg), np.zeros_like(data.shift)
    for test in folds(len(data.perturbations), cfg.n_folds, cfg.seed):
        train = np.setdiff1d(np.arange(len(data.perturbations)), test)
        preds[test] = fit_predict(method, inputs, train, test, data.shift)
    return preds


def plot_held_out(data: PerturbData, preds: np.ndarray, path: Path, method: str, n_panels: int = 6) -> Path:
    """PNG: one panel per perturbation (the ``n_panels`` with the largest observed shifts), predicted vs
    observed over its top DE genes, the five largest labelled; Pearson in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foundation.perturb.metrics import pearson

    order = np.argsort(-np.abs(data.shift).max(axis=1))[:n_panels]
    cols = min(3, len(order))
    fig, axes = plt.subplots(-(-len(order) // cols), cols, figsize=(4 * cols, 3.6 * -(-len(order) // cols)),
                             squeeze=False)
    for ax, i in zip(axes.ravel(), order):
        de = data.de[i]
        obs, pred = data.shift[i, de], preds[i, de]
        ax.scatter(obs, pred, s=14)
        lim = float(np.abs(np.concatenate([obs, pred])).max()) * 1.1 or 1.0
        ax.plot([-lim, lim], [-lim, lim], lw=0.6, color="grey")
        for j in range(min(5, len(de))):
            ax.annotate(str(data.genes[de[j]]), (obs[j], pred[j]), fontsize=7)
        ax.set_title(f"{data.perturbations[i]} (held out)  r = {pearson(pred, obs):.2f}", fontsize=9)
        ax.set_xlabel("observed shift")
        ax.set_ylabel("predicted shift")
    for ax in axes.ravel()[len(order):]:
        ax.axis("off")
    fig.suptitle(f"{method}: top-{data.de.shape[1]} DE genes of held-out perturbations", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
