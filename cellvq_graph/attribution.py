"""Integrated Gradients (captum) as a second explanation beside attention, and their agreement.

What is attributed
------------------
The input is the log-normalised expression on each explained cell's ``cell - gene`` edges (both
directions; the edge attributes ``[expression, z-score]`` are recomputed from it, see
:func:`~cellvq_graph.build.cell_gene_edge_attr`). The baseline is zero expression on those edges (the
genes are still linked, but expressed at zero). The explained cells are read in *identification* mode, as
in training and in the attention read-out: their foundation embedding and label edges are hidden, so their
state must come from their genes.

The score of a state ``s`` for a cell is the model's log-probability of ``s`` under the classification head
of ``groupby`` (a state key or property kind of the model): ``log softmax(logits)[s]``, or for a pooled
state (``groups={"T": [...]}``) the log of the summed probabilities of its members. Log-probabilities are
contrasted by construction (a gene that raises every class's logit gets no credit). One IG run attributes
``sum over explained cells of score(own state)``; each edge's attribution is credited to the state of its
cell, and averaged over that state's explained cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .build import CELL_GENE, GENE_CELL, cell_gene_edge_attr
from .nn import graph_inputs
from .tables import store_table
from .train import deterministic_ops, mask_labels

__all__ = ["integrated_gradients", "attribution_agreement", "plot_agreement"]


@deterministic_ops()
def integrated_gradients(
    model,
    data,
    groupby: str,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    states: Sequence[str] | None = None,
    n_cells: int = 50,
    n_steps: int = 16,
    max_fold_fraction: float = 0.25,
    seed: int = 0,
    adata=None,
) -> pd.DataFrame:
    """Per-state gene attributions by captum's Integrated Gradients.

    Parameters
    ----------
    model, data
        A trained :class:`~cellvq_graph.CellVQGraph` and its graph.
    groupby
        A kind the model predicts (``model.index.kinds``: state keys such as ``cellvq_code`` or property
        kinds such as ``cell_type``).
    groups
        Optional pooling, e.g. ``{"T": ["Naive CD4 T", "Memory CD4 T", "CD8 T"]}``.
    states
        States to explain (default: all).
    n_cells
        Cells explained per state (random, seeded).
    n_steps
        Riemann steps of the path integral.
    adata
        If given, the table is stored with its parameters in ``adata.uns["cellvq_graph"]["ig"][groupby]``.

    Returns
    -------
    DataFrame ``state, gene, attribution, rank, n_cells`` (mean attribution per explained cell; rank 1 =
    strongest evidence for the state).
    """
    from captum.attr import IntegratedGradients

    gi = model.index
    if groupby not in gi.kinds:
        raise KeyError(
            f"{groupby!r} is not predicted by the model, so it has no state score to attribute; "
            f"choose one of {gi.kinds} (or rebuild the graph with it as a property)"
        )
    model._check_graph(data)
    net = model.net
    net.eval()
    j = gi.kinds.index(groupby)
    values = gi.categories[groupby]
    pooled: dict[str, list[int]] = {v: [i] for i, v in enumerate(values)}
    if groups:
        for name, members in groups.items():
            ids = [values.index(m) for m in members if m in values]
            if not ids:
                raise KeyError(f"none of {list(members)} are values of {groupby!r}")
            for m in members:
                pooled.pop(m, None)
            pooled[name] = ids
    wanted = list(pooled) if states is None else [s for s in states]
    missing = [s for s in wanted if s not in pooled]
    if missing:
        raise KeyError(f"states {missing} are not values of {groupby!r} (after pooling)")
    y = data["cell"].y[:, j].numpy()
    rng = np.random.default_rng(seed)
    chosen, chosen_state = [], []
    for si, s in enumerate(wanted):
        cells = np.flatnonzero(np.isin(y, pooled[s]))
        if cells.size == 0:
            continue
        pick = rng.choice(cells, min(n_cells, cells.size), replace=False)
        chosen.append(pick)
        chosen_state.append(np.full(pick.size, si))
    if not chosen:
        raise ValueError("no cells to explain")
    cells_all = np.concatenate(chosen)
    state_all = np.concatenate(chosen_state)
    n_total = int(data["cell"].num_nodes)
    n_folds = max(1, int(np.ceil(cells_all.size / max(1, int(max_fold_fraction * n_total)))))
    order = rng.permutation(cells_all.size)
    gene_mean, gene_std = data["gene"].expr_mean, data["gene"].expr_std
    gc_ei = data[GENE_CELL].edge_index
    same_order = CELL_GENE in data.edge_types and torch.equal(data[CELL_GENE].edge_index, gc_ei.flip(0))
    n_genes = len(gi.genes)
    total = np.zeros((len(wanted), n_genes), np.float64)
    member_idx = torch.zeros(len(wanted), len(values), dtype=torch.bool)
    for si, s in enumerate(wanted):
        member_idx[si, pooled[s]] = True

    for fold in np.array_split(order, n_folds):
        f_cells = torch.from_numpy(cells_all[fold])
        f_state = torch.from_numpy(state_all[fold])
        inp = graph_inputs(data)
        cm = torch.zeros(n_total, dtype=torch.bool)
        cm[f_cells] = True
        mask_labels(inp, cm)
        sel = torch.nonzero(cm[gc_ei[1]]).squeeze(1)
        expr0 = data[GENE_CELL].edge_attr[sel, 0].clone()
        genes_sel = gc_ei[0, sel]

        forward = _FoldScore(
            net,
            groupby,
            inp,
            cm,
            sel,
            genes_sel,
            gene_mean,
            gene_std,
            f_cells,
            f_state,
            member_idx,
            same_order,
        )
        ig = IntegratedGradients(forward)
        attr = (
            ig.attribute(
                expr0.unsqueeze(0),
                baselines=torch.zeros_like(expr0).unsqueeze(0),
                n_steps=n_steps,
                internal_batch_size=1,
            )[0]
            .detach()
            .numpy()
        )
        cell_state = torch.full((n_total,), -1, dtype=torch.long)
        cell_state[f_cells] = f_state
        st = cell_state[gc_ei[1, sel]].numpy()
        np.add.at(total, (st, genes_sel.numpy()), attr)

    counts = np.bincount(state_all, minlength=len(wanted)).astype(np.float64)
    rows = []
    for si, s in enumerate(wanted):
        if counts[si] == 0:
            continue
        mean = total[si] / counts[si]
        idx = np.argsort(-mean, kind="stable")
        idx = idx[mean[idx] != 0]
        rows.append(
            pd.DataFrame(
                {
                    "state": s,
                    "gene": np.asarray(gi.genes, dtype=object)[idx],
                    "attribution": mean[idx],
                    "rank": np.arange(1, idx.size + 1),
                    "n_cells": int(counts[si]),
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    if adata is not None:
        params = dict(groupby=groupby, groups=groups, states=states, n_cells=n_cells, n_steps=n_steps,
                      max_fold_fraction=max_fold_fraction, seed=seed)
        store_table(adata, "ig", groupby, df, params)
    return df


class _FoldScore:
    """``x [batch, E_sel] -> sum of explained cells' state log-probabilities`` for one fold (captum forward)."""

    def __init__(
        self,
        net,
        kind,
        inp,
        cell_mask,
        sel,
        genes_sel,
        gene_mean,
        gene_std,
        cells,
        state,
        members,
        same_order,
    ):
        self.net, self.kind, self.inp, self.cell_mask = net, kind, inp, cell_mask
        self.sel, self.genes_sel, self.gene_mean, self.gene_std = sel, genes_sel, gene_mean, gene_std
        self.cells, self.state, self.members, self.same_order = cells, state, members, same_order
        self.base_gc = inp.edge_attr[GENE_CELL]
        self.base_cg = inp.edge_attr.get(CELL_GENE)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        inp, outs = self.inp, []
        for row in x:
            ea = cell_gene_edge_attr(row, self.genes_sel, self.gene_mean, self.gene_std)
            attr = dict(inp.edge_attr)
            gc = self.base_gc.clone()
            gc[self.sel] = ea
            attr[GENE_CELL] = gc
            if self.same_order and self.base_cg is not None:
                cg = self.base_cg.clone()
                cg[self.sel] = ea
                attr[CELL_GENE] = cg
            h, _ = self.net(replace(inp, edge_attr=attr, cell_mask=self.cell_mask))
            logp = torch.log_softmax(self.net.head(self.kind)(h["cell"][self.cells]), dim=-1)
            own = self.members[self.state]  # [cells, classes] membership of each cell's own state
            outs.append(torch.logsumexp(logp.masked_fill(~own, float("-inf")), dim=1).sum())
        return torch.stack(outs)


def attribution_agreement(
    ig: pd.DataFrame, attention: pd.DataFrame, ks: Sequence[int] = (10, 20), score_col: str = "score"
) -> pd.DataFrame:
    """Agreement per state between the IG ranking and the attention ranking.

    ``overlap@k``: shared genes among the two top-k lists divided by k; ``spearman``: rank correlation of
    IG attribution and attention score over the genes that both tables rank; ``n_shared`` that count.
    """
    rows = []
    for s in sorted(set(ig["state"]) & set(attention["state"])):
        a = ig[ig["state"] == s].sort_values("attribution", ascending=False)
        b = attention[attention["state"] == s].sort_values(score_col, ascending=False)
        row = {"state": s}
        for k in ks:
            row[f"overlap@{k}"] = len(set(a["gene"][:k]) & set(b["gene"][:k])) / k
        shared = a.merge(b, on="gene", suffixes=("_ig", "_att"))
        if len(shared) >= 3:
            row["spearman"] = float(spearmanr(shared["attribution"], shared[score_col]).statistic)
        else:
            row["spearman"] = float("nan")
        row["n_shared"] = int(len(shared))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_agreement(agreement: pd.DataFrame, path=None):
    """Bar chart of overlap@k and Spearman per state; returns the matplotlib Figure (saved if ``path``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = [c for c in agreement.columns if c.startswith("overlap@")] + ["spearman"]
    n = len(agreement)
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * n + 2), 3.2))
    width = 0.8 / len(metrics)
    x = np.arange(n)
    for i, m in enumerate(metrics):
        ax.bar(x + i * width - 0.4 + width / 2, agreement[m].to_numpy(dtype=float), width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(agreement["state"], rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("agreement")
    ax.set_title("Integrated Gradients vs attention ranking")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
