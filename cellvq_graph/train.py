"""Self-supervised training loop of CellVQ-Graph (full batch or NeighborLoader mini-batches).

Objective (per step, on the seed cells of the batch; all cells in full-batch mode)
-------------------------------------------------------------------------------
1. **Masked state / property prediction.** A random ``mask_rate`` of the seed cells is *masked*: their
   ``cell-in-state`` and ``cell-has-property`` edges are removed in both directions and their foundation
   embedding is replaced by a learned mask token. Each categorical kind (the cell code, cluster columns,
   cell type, tissue, disease, ...) is then predicted from the masked cell's final representation with a
   linear head (cross-entropy, missing labels ignored).

   Why: the foundation embedding alone already determines the code (the code *is* its quantisation), so
   without hiding it the network would not need its genes at all and cell->gene attention would stay
   uninformative. With embedding and labels hidden, the only evidence about a masked cell is which genes it
   expresses and how much; attention over those genes is trained to find the genes that identify its state
   and properties -- which is what the marker read-outs ask of it. Unmasked cells keep embedding and label
   edges, so gene, state and property nodes still learn from labelled neighbours (as in masked-label
   training of graph transformers). A further ``label_drop_rate`` of the seed cells lose only their label
   edges (embedding kept) and are classified too (loss weight 0.5): that is the regime in which the cell
   embedding ``obsm["X_cellvq_graph"]`` is read out (own labels withheld, so subtypes and intermediate
   states computed from it are not circular with the annotation), and it keeps that embedding
   label-predictive.
2. **Cell-gene edge reconstruction.** A random ``edge_mask_rate`` of the seed cells' cell-gene edges are
   removed from message passing and scored against ``neg_ratio`` random genes per hidden edge with a
   bilinear decoder (binary cross-entropy). Why: it keeps gene representations tied to expression
   (otherwise genes would only carry label information) and gives every cell, masked or not, a gradient
   through its gene neighbourhood.

3. Optional **attention bottleneck** (``net.bottleneck``, :class:`~cellvq_graph.nn.BottleneckConfig`): every
   kind is also predicted, for every seed cell, from a sparsemax attention pool over the cell's gene edges
   queried by its final representation (:class:`~cellvq_graph.nn.conv.GeneAttentionPool`); the pooled values
   carry only gene identity and expression, so this attention has to pick the genes that tell states apart.
   Its coefficients are what the marker read-outs use when the bottleneck is on.

4. Optional **attention sparsity** (``GraphTrainConfig.entropy_weight``): mean normalised entropy of each seed cell's
   attention over its genes, so that a few genes carry a cell's attention when that suffices.

``loss = CE_masked + 0.5 CE_label_only (summed over kinds / n_kinds) + edge_loss_weight * BCE +
entropy_weight * H (+ bottleneck.weight * CE_pool)``; AdamW with cosine decay; seeds fix masks, negatives,
neighbour sampling and initialisation.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from .build import CELL_GENE, CELL_PROP, CELL_STATE, GENE_CELL, PROP_CELL, STATE_CELL
from .nn import CellVQGraphNet, GraphInputs, graph_inputs
from .sampler import make_loader

__all__ = [
    "GraphTrainConfig",
    "mask_labels",
    "training_loss",
    "train_net",
    "default_num_neighbors",
    "seed_everything",
]


@dataclass
class GraphTrainConfig:
    """Parameters of self-supervised training (:func:`train_net`, :meth:`CellVQGraph.fit`, :func:`tl.fit`).

    ``batch_size=None`` trains full-batch (one step per epoch); an integer trains on ``NeighborLoader``
    mini-batches of that many seed cells with ``num_neighbors`` (default :func:`default_num_neighbors`).
    The loss terms are described in the module docstring. Defaults were chosen by measurement on PBMC 3k
    (shipped checkpoint, one CPU thread): 80 epochs of 512-cell mini-batches (400 steps, ~70 s) identified
    masked cells' types at 0.95 and gave attention markers precision@10 0.53 (0.63 with ``contrast="max"``);
    100 full-batch epochs (100 steps, ~60 s) reached 0.75 and 0.43; 200 full-batch epochs (~130 s) 0.91 and
    0.45. ``seed`` also seeds graph building and initialisation in :func:`cellvq_graph.tl.fit`.
    """

    epochs: int = 80
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0
    batch_size: int | None = 512
    num_neighbors: dict | None = None
    mask_rate: float = 0.3
    label_drop_rate: float = 0.2
    edge_mask_rate: float = 0.15
    neg_ratio: int = 1
    edge_loss_weight: float = 0.5
    entropy_weight: float = 0.0


def mask_labels(inp: GraphInputs, cell_mask: Tensor) -> None:
    """Remove the state and property edges of masked cells, in both directions (in place)."""
    for et, side in ((CELL_STATE, 0), (CELL_PROP, 0), (STATE_CELL, 1), (PROP_CELL, 1)):
        if et in inp.edge_index and inp.edge_index[et].numel():
            inp.replace_edges(et, ~cell_mask[inp.edge_index[et][side]])


def default_num_neighbors(
    edge_types, num_layers: int, *, cells_per_node: int = 10, inference: bool = False
) -> dict:
    """Neighbours per relation and hop for NeighborLoader.

    Hop 0 (into the seed cells): all of their genes, states and properties (bounded by ``top_k`` and the
    number of kinds). Later hops: ``cells_per_node`` cells into each gene/state/property node, up to 16
    gene neighbours per gene, 16 genes into any cell reached at hop >= 2.
    """
    out = {}
    for et in edge_types:
        src, _, dst = et
        hops = []
        for h in range(num_layers):
            if dst == "cell":
                hops.append(-1 if h == 0 else 16)
            elif src == "gene" and dst == "gene":
                hops.append(16)
            else:
                hops.append(cells_per_node if h > 0 else 0)
        out[et] = hops
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_ops():
    """Run torch's deterministic kernels inside (restoring the caller's setting after); also a decorator.

    Message passing sums messages with scatter/index_add, whose multi-threaded CPU kernels add in a
    varying order: two seeded trainings on 2 threads differed by ~2e-6, enough to move a few intermediate
    cells and gene-network edges of the demo between runs. With deterministic kernels they are identical,
    at no measured cost (1,500 cells, 15 epochs: 6.7-7.2 s either way)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def training_loss(
    net: CellVQGraphNet, inp: GraphInputs, y: Tensor, n_seed: int, cfg: GraphTrainConfig, gen: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one step on the first ``n_seed`` cells of ``inp`` (masks ``inp`` in place) and its terms."""
    mask_rate, label_drop_rate, entropy_weight = cfg.mask_rate, cfg.label_drop_rate, cfg.entropy_weight
    nc = inp.num_nodes["cell"]
    ng = inp.num_nodes["gene"]
    r = torch.rand(n_seed, generator=gen)
    m = r < mask_rate
    if not m.any():
        m[torch.randint(n_seed, (1,), generator=gen)] = True
    cell_mask = torch.zeros(nc, dtype=torch.bool)
    cell_mask[:n_seed] = m
    label_only = torch.zeros(nc, dtype=torch.bool)
    label_only[:n_seed] = (r >= mask_rate) & (r < mask_rate + label_drop_rate)
    mask_labels(inp, cell_mask | label_only)

    gc = inp.edge_index[GENE_CELL]
    hide = (gc[1] < n_seed) & (torch.rand(gc.size(1), generator=gen) < cfg.edge_mask_rate)
    pos_cell, pos_gene = gc[1][hide], gc[0][hide]
    inp.replace_edges(GENE_CELL, ~hide)
    if CELL_GENE in inp.edge_index and inp.edge_index[CELL_GENE].numel():
        cg = inp.edge_index[CELL_GENE]
        hidden_keys = pos_cell * ng + pos_gene
        inp.replace_edges(CELL_GENE, ~torch.isin(cg[0] * ng + cg[1], hidden_keys))

    inp.cell_mask = cell_mask
    h, att = net(inp, return_attention=entropy_weight > 0)
    z = h["cell"]
    stats: dict[str, float] = {}
    loss_ent = z.sum() * 0.0
    if entropy_weight > 0:
        dst = inp.edge_index[GENE_CELL][1]
        deg = torch.bincount(dst, minlength=nc).clamp_min(2).float()
        seed_edge = dst < n_seed
        ents = []
        for (et, _layer), (_, alpha) in att.items():
            if et != GENE_CELL:
                continue
            a = alpha[seed_edge]
            e = torch.zeros(nc, a.size(1)).index_add_(0, dst[seed_edge], -(a * torch.log(a.clamp_min(1e-12))))
            ents.append((e[:n_seed] / torch.log(deg[:n_seed]).unsqueeze(1)).mean())
        if ents:
            loss_ent = torch.stack(ents).mean()
        stats["attn_entropy"] = float(loss_ent)
    cls_losses = []
    for group, weight in ((cell_mask, 1.0), (label_only, 0.5)):
        idx = torch.nonzero(group).squeeze(1)
        for j, kind in enumerate(net.kinds):
            target = y[idx, j]
            ok = target >= 0
            if ok.any():
                logits = net.head(kind)(z[idx[ok]])
                cls_losses.append(weight * F.cross_entropy(logits, target[ok]))
                if weight == 1.0:
                    stats[f"acc/{kind}"] = float((logits.argmax(1) == target[ok]).float().mean())
    loss_cls = torch.stack(cls_losses).sum() / max(len(net.kinds), 1) if cls_losses else z.sum() * 0.0
    if pos_cell.numel():
        neg_cell = pos_cell.repeat(cfg.neg_ratio)
        neg_gene = torch.randint(ng, (neg_cell.numel(),), generator=gen)
        zg = h["gene"]
        pos = net.decode(z[pos_cell], zg[pos_gene])
        neg = net.decode(z[neg_cell], zg[neg_gene])
        loss_edge = F.binary_cross_entropy_with_logits(
            pos, torch.ones_like(pos)
        ) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
    else:
        loss_edge = z.sum() * 0.0
    loss_pool = _pool_loss(net, h, inp, y, n_seed, stats) if net.bottleneck is not None else z.sum() * 0.0
    loss = loss_cls + cfg.edge_loss_weight * loss_edge + entropy_weight * loss_ent
    if net.bottleneck is not None:
        loss = loss + net.bottleneck.weight * loss_pool
        stats["loss_pool"] = float(loss_pool.detach())
    stats.update(loss=float(loss.detach()), loss_cls=float(loss_cls.detach()), loss_edge=float(loss_edge.detach()))
    return loss, stats


def _pool_loss(net: CellVQGraphNet, h: dict, inp: GraphInputs, y: Tensor, n_seed: int, stats: dict) -> Tensor:
    """Cross-entropy of every kind predicted from the attention bottleneck alone, over all seed cells."""
    zp, _ = net.pool_cells(h, inp.edge_index, inp.edge_attr)
    losses = []
    for j, kind in enumerate(net.kinds):
        target = y[:n_seed, j]
        ok = target >= 0
        if ok.any():
            logits = net.pool_head(kind)(zp[:n_seed][ok])
            losses.append(F.cross_entropy(logits, target[ok]))
            stats[f"pool_acc/{kind}"] = float((logits.argmax(1) == target[ok]).float().mean())
    return torch.stack(losses).mean() if losses else zp.sum() * 0.0


@deterministic_ops()
def train_net(
    net: CellVQGraphNet, data: HeteroData, config: GraphTrainConfig | None = None, *, progress: bool = True
) -> list[dict[str, float]]:
    """Train ``net`` on ``data``; returns per-epoch mean statistics (loss terms, masked accuracies).

    Full batch or ``NeighborLoader`` mini-batches (``config.batch_size``), so memory is bounded by the
    batch, not by the number of cells.
    """
    cfg = config or GraphTrainConfig()
    seed, epochs, batch_size = cfg.seed, cfg.epochs, cfg.batch_size
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_cells = data["cell"].num_nodes
    if batch_size is None or batch_size >= n_cells:
        loader = None
        steps_per_epoch = 1
    else:
        nn_ = cfg.num_neighbors or default_num_neighbors(data.edge_types, net.encoder.num_layers)
        loader = make_loader(data, nn_, torch.arange(n_cells), batch_size, shuffle=True)
        steps_per_epoch = math.ceil(n_cells / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(1, total // 20)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        ),
    )
    history: list[dict[str, float]] = []
    bar = tqdm(range(epochs), desc="CellVQ-Graph", disable=not progress, leave=False)
    for _epoch in bar:
        acc: dict[str, list[float]] = {}
        batches = [data] if loader is None else loader
        for g in batches:
            n_seed = int(g["cell"].batch_size) if loader is not None else n_cells
            inp = graph_inputs(g)
            loss, stats = training_loss(net, inp, g["cell"].y, n_seed, cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
        row = {k: float(np.mean(v)) for k, v in acc.items()}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    net.eval()
    return history
