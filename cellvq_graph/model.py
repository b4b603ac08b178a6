"""CellVQGraph: the user-facing model (fit / save / load / attention / embeddings).

The model is transductive over genes, property values and states (it keeps their id tables,
:class:`~cellvq_graph.build.GraphIndex`) and inductive over cells: a new AnnData built with
``build_graph(adata, index=model.index)`` can be read out without retraining.

Checkpoints are a folder with ``model.safetensors`` (weights), ``config.json`` (architecture) and
``index.json`` (id tables); loading never unpickles anything and checks every tensor shape.

AnnData keys written by :meth:`CellVQGraph.annotate`
----------------------------------------------------
``obsm["X_cellvq_graph"]``                 float32 (n_obs, hidden): cell representation after message passing,
                                           inferred from the cell's genes with its own foundation embedding
                                           and state/property edges withheld (``embedding="identify"``).
``layers["cellvq_graph_attention"]``       sparse (n_obs, n_vars): the cell's attention over its top-k genes
                                           (mean over heads and layers; each row sums to ~1). With the
                                           attention bottleneck (``CellVQGraphConfig.bottleneck``) the
                                           bottleneck's coefficients instead (sparsemax: exact zeros kept);
                                           ``uns["cellvq_graph"]["readout"]["source"]`` says which.
``varp["cellvq_graph_gene_attention"]``    sparse (n_vars, n_vars): gene-gene attention, entry [s, t] = how much
                                           gene t attends to gene s (mean of the embedding-kNN and co-expression
                                           relations, heads and layers).
``obsm["cellvq_graph_property_attention"]`` DataFrame (n_obs, n_property_values): the cell's attention over its
                                           property values, columns ``"kind=value"``.
``uns["cellvq_graph"]``                    dict: ``genes``, ``state_keys``, ``property_kinds``, ``readout`` and
                                           ``params``; the interpretation functions add their tables here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import HeteroData

from .build import GENE_CELL, GENE_COEXPR, GENE_SIM, PROP_CELL, GraphIndex
from .nn import BottleneckConfig, CellVQGraphNet, graph_inputs, legacy_state_dict
from .sampler import make_loader
from .train import (
    GraphTrainConfig,
    default_num_neighbors,
    deterministic_ops,
    mask_labels,
    seed_everything,
    train_net,
)

__all__ = ["CellVQGraph", "CellVQGraphConfig", "AttentionReadout"]

WEIGHTS, CONFIG, INDEX = "model.safetensors", "config.json", "index.json"
# 2: convolutions keyed by edge-type tuples (PyG ModuleDict), edge_dims a list beside edge_types.
# 1: "src__rel__dst" strings in both; still loads (CellVQGraphConfig.from_json, legacy_state_dict).
FORMAT_VERSION = 2


@dataclass
class CellVQGraphConfig:
    """Architecture of a CellVQ-Graph network (JSON-serialisable)."""

    node_dims: dict[str, int | None]
    num_nodes: dict[str, int]
    edge_types: list[list[str]]
    edge_dims: list[int | None]  # edge-attribute size of each of edge_types (None: no attributes)
    kinds: dict[str, int]
    hidden: int = 64
    heads: int = 4
    num_layers: int = 2
    dropout: float = 0.1
    attn_dropout: float = 0.0
    bottleneck: dict | None = None  # BottleneckConfig fields; None: no attention bottleneck
    format_version: int = FORMAT_VERSION
    history_tail: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict) -> CellVQGraphConfig:
        """A config from ``config.json``; format 1 keyed ``edge_dims`` by ``"src__rel__dst"`` strings."""
        d = dict(d)
        if isinstance(d.get("edge_dims"), dict):
            dims = d["edge_dims"]
            d["edge_dims"] = [dims.get("__".join(et)) for et in d["edge_types"]]
        return cls(**d)

    def build(self) -> CellVQGraphNet:
        ets = [tuple(e) for e in self.edge_types]
        return CellVQGraphNet(
            self.node_dims,
            self.num_nodes,
            ets,
            dict(zip(ets, self.edge_dims)),
            self.kinds,
            hidden=self.hidden,
            heads=self.heads,
            num_layers=self.num_layers,
            dropout=self.dropout,
            attn_dropout=self.attn_dropout,
            bottleneck=BottleneckConfig(**self.bottleneck) if self.bottleneck is not None else None,
        )


@dataclass
class AttentionReadout:
    """Attention coefficients on the edges of one graph, averaged over heads.

    ``edges[et]`` is the graph's ``edge_index`` of relation ``et``; ``alpha[et]`` is ``[E, num_layers]``
    (NaN where an edge was never read out). ``mode`` is ``"identify"`` (cell -> gene attention read while the
    cell's embedding and labels are hidden, as in training) or ``"full"``. ``pool`` is the attention
    bottleneck's coefficient on each gene -> cell edge (mean over its heads) when the model has one; the
    cell -> gene read-out then uses it instead of the message-passing attention.
    """

    edges: dict[tuple, torch.Tensor]
    alpha: dict[tuple, np.ndarray]
    mode: str
    embedding: np.ndarray
    pool: np.ndarray | None = None

    @property
    def source(self) -> str:
        return "bottleneck" if self.pool is not None else "message passing"

    def mean(self, et: tuple, layers: list[int] | None = None) -> np.ndarray:
        a = self.alpha[et] if layers is None else self.alpha[et][:, layers]
        with np.errstate(invalid="ignore"):
            return (
                np.nan_to_num(np.nanmean(a, axis=1)).astype(np.float32) if a.size else np.zeros(0, np.float32)
            )

    def cell_gene(self, n_cells: int, n_genes: int, layers: list[int] | None = None) -> sp.csr_matrix:
        """Cells x graph genes matrix of each cell's attention over its genes."""
        ei = self.edges[GENE_CELL].numpy()
        a = self.pool if self.pool is not None and layers is None else self.mean(GENE_CELL, layers)
        return sp.csr_matrix((a, (ei[1], ei[0])), shape=(n_cells, n_genes))


class CellVQGraph:
    """Heterogeneous graph attention model over cells, genes, properties and states.

    Examples
    --------
    >>> data = cellvq_graph.build_graph(adata, properties=("cell_type", "tissue"))
    >>> model = cellvq_graph.CellVQGraph.from_graph(data).fit(data, epochs=100)
    >>> model.annotate(adata, data)          # embedding + attention into adata
    >>> cellvq_graph.markers(adata, groupby="cell_type")
    """

    def __init__(
        self, index: GraphIndex, config: CellVQGraphConfig, net: CellVQGraphNet | None = None
    ) -> None:
        self.index = index
        self.config = config
        self.net = net if net is not None else config.build()
        self.history: list[dict[str, float]] = []
        self.graph: HeteroData | None = None  # set by cellvq_graph.tl.fit to the graph it trained on

    # ---------------------------------------------------------------------------------------------- create
    @classmethod
    def from_graph(
        cls,
        data: HeteroData,
        *,
        hidden: int = 32,
        heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        bottleneck: BottleneckConfig | None = None,
        seed: int = 0,
    ) -> CellVQGraph:
        """A fresh (untrained) model sized for ``data`` (from :func:`~cellvq_graph.build_graph`).

        ``bottleneck`` adds the attention bottleneck (see :mod:`cellvq_graph.train`)."""
        if not hasattr(data, "graph_index"):
            raise ValueError("data has no graph_index; build it with cellvq_graph.build_graph(adata)")
        gi: GraphIndex = data.graph_index
        node_dims = {nt: (int(data[nt].x.size(1)) if "x" in data[nt] else None) for nt in data.node_types}
        num_nodes = {nt: int(data[nt].num_nodes) for nt in data.node_types}
        edge_dims = [
            int(data[et].edge_attr.size(1)) if "edge_attr" in data[et] else None for et in data.edge_types
        ]
        kinds = {k: len(gi.categories[k]) for k in gi.kinds}
        config = CellVQGraphConfig(
            node_dims=node_dims,
            num_nodes=num_nodes,
            edge_types=[list(et) for et in data.edge_types],
            edge_dims=edge_dims,
            kinds=kinds,
            hidden=hidden,
            heads=heads,
            num_layers=num_layers,
            dropout=dropout,
            attn_dropout=attn_dropout,
            bottleneck=asdict(bottleneck) if bottleneck is not None else None,
        )
        seed_everything(seed)
        return cls(gi, config)

    def _check_graph(self, data: HeteroData) -> None:
        gi = getattr(data, "graph_index", None)
        if gi is None:
            raise ValueError("data has no graph_index; build it with cellvq_graph.build_graph")
        if gi.genes != self.index.genes or gi.categories != self.index.categories:
            raise ValueError(
                "this graph's genes or property/state values differ from the model's; rebuild it with "
                "build_graph(adata, index=model.index)"
            )
        for nt, d in self.config.node_dims.items():
            got = int(data[nt].x.size(1)) if "x" in data[nt] else None
            if got != d:
                raise ValueError(f"node type {nt!r} has feature size {got}, the model expects {d}")

    # ---------------------------------------------------------------------------------------------- train
    def fit(
        self, data: HeteroData, config: GraphTrainConfig | None = None, *, progress: bool = True
    ) -> CellVQGraph:
        """Self-supervised training (see :mod:`cellvq_graph.train`; parameters :class:`GraphTrainConfig`)."""
        self._check_graph(data)
        self.history = train_net(self.net, data, config or GraphTrainConfig(), progress=progress)
        self.config.history_tail = self.history[-3:]
        return self

    # ---------------------------------------------------------------------------------------------- save
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``model.safetensors``, ``config.json`` and ``index.json`` into folder ``path``."""
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it")
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(path / WEIGHTS), metadata={"format": "cellvq_graph", "version": "1"})
        (path / CONFIG).write_text(json.dumps(asdict(self.config), indent=1))
        self.index.to_json(path / INDEX)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CellVQGraph:
        """Load a folder written by :meth:`save`; raises ``ValueError`` if the weights do not fit."""
        path = Path(path)
        for f in (WEIGHTS, CONFIG, INDEX):
            if not (path / f).is_file():
                raise FileNotFoundError(f"{path / f} is missing; is {path} a CellVQ-Graph checkpoint folder?")
        try:
            raw = json.loads((path / CONFIG).read_text())
            config = CellVQGraphConfig.from_json(raw)
        except (TypeError, KeyError) as err:
            raise ValueError(f"{path / CONFIG} is not a CellVQ-Graph config: {err}") from err
        index = GraphIndex.from_json(path / INDEX)
        net = config.build()
        state = load_file(str(path / WEIGHTS))
        if raw.get("format_version", 1) < 2:
            state = legacy_state_dict(state, config.edge_types)
        config.format_version = FORMAT_VERSION
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or bad:
            detail = "; ".join(
                s
                for s in (
                    f"missing {missing[:5]}" if missing else "",
                    f"unexpected {unexpected[:5]}" if unexpected else "",
                    ", ".join(
                        f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
                        for k in bad[:5]
                    ),
                )
                if s
            )
            raise ValueError(f"{path} does not match its config (wrong or corrupted checkpoint): {detail}")
        net.load_state_dict(state, strict=True)
        net.eval()
        return cls(index, config, net)

    # ---------------------------------------------------------------------------------------------- read out
    @torch.no_grad()
    @deterministic_ops()
    def attention(
        self,
        data: HeteroData,
        mode: str = "identify",
        batch_size: int | None = None,
        embedding: str = "identify",
        mask_fraction: float = 0.2,
        seed: int = 0,
    ) -> AttentionReadout:
        """Attention coefficients on every edge of ``data`` plus the cell embedding.

        ``mode="identify"`` reads each cell's attention over its genes while that cell's embedding and
        labels are hidden -- the situation the model was trained to resolve, so the coefficients say which
        genes it uses to recognise the cell. ``mode="full"`` reads everything with all inputs present. Other
        relations are always read with all inputs present.

        ``embedding="identify"`` returns each cell's representation inferred through the graph from the genes
        it expresses while its own foundation embedding and state/property edges are withheld (what the
        graph says about the cell; trained by the masked-prediction task); ``"unlabelled"`` withholds only
        the state/property edges; ``"full"`` withholds nothing. Cells are withheld ``mask_fraction`` at a
        time (as in training);
        ``batch_size`` switches to NeighborLoader mini-batches (large graphs), withholding the seed cells.
        """
        if mode not in ("identify", "full"):
            raise ValueError("mode must be 'identify' or 'full'")
        if embedding not in ("identify", "unlabelled", "full"):
            raise ValueError("embedding must be 'identify', 'unlabelled' or 'full'")
        self._check_graph(data)
        self.net.eval()
        L = self.config.num_layers
        alpha_sum = {et: np.zeros((data[et].edge_index.size(1), L), np.float64) for et in data.edge_types}
        alpha_cnt = {et: np.zeros((data[et].edge_index.size(1), 1), np.float64) for et in data.edge_types}
        n_cells = int(data["cell"].num_nodes)
        emb = np.zeros((n_cells, self.config.hidden), np.float32)
        net = self.net
        n_gc = data[GENE_CELL].edge_index.size(1)
        pool_sum, pool_cnt = np.zeros(n_gc, np.float64), np.zeros(n_gc, np.float64)

        def collect_pool(inp, h, only_cells_dst: torch.Tensor | None) -> None:
            if net.bottleneck is None:
                return
            a = net.pool_cells(h, inp.edge_index, inp.edge_attr)[1].mean(1).numpy()
            eid = inp.e_id[GENE_CELL].numpy()
            if only_cells_dst is not None:
                keep = only_cells_dst[inp.edge_index[GENE_CELL][1]].numpy()
                a, eid = a[keep], eid[keep]
            np.add.at(pool_sum, eid, a)
            np.add.at(pool_cnt, eid, 1.0)

        def run(inp, cell_mask=None, attention=True):
            inp.cell_mask = cell_mask
            return net(inp, return_attention=attention)

        def collect(inp, att, only_cells_dst: torch.Tensor | None, relations) -> None:
            for et in relations:
                per_layer = [att[(et, layer)][1].mean(1) for layer in range(L) if (et, layer) in att]
                if not per_layer:
                    continue
                a = torch.stack(per_layer, 1).numpy()
                eid = inp.e_id[et].numpy()
                if only_cells_dst is not None:
                    keep = only_cells_dst[inp.edge_index[et][1]].numpy()
                    a, eid = a[keep], eid[keep]
                np.add.at(alpha_sum[et], eid, a)
                np.add.at(alpha_cnt[et], eid, 1.0)

        def withheld_passes(graph, held: torch.Tensor, cell_ids: torch.Tensor) -> None:
            """Embedding and/or identify-mode attention for the ``held`` cells of ``graph``."""
            if embedding == "unlabelled":
                inp = graph_inputs(graph)
                mask_labels(inp, held)
                h, _ = run(inp, attention=False)
                emb[cell_ids.numpy()] = h["cell"][held].numpy()
            if mode == "identify" or embedding == "identify":
                inp = graph_inputs(graph)
                mask_labels(inp, held)
                h, att = run(inp, cell_mask=held, attention=mode == "identify")
                if mode == "identify":
                    collect(inp, att, held, [GENE_CELL])
                    collect_pool(inp, h, held)
                if embedding == "identify":
                    emb[cell_ids.numpy()] = h["cell"][held].numpy()

        all_rel = list(data.edge_types)
        if batch_size is None or batch_size >= n_cells:
            inp = graph_inputs(data)
            h, att = run(inp)
            if embedding == "full":
                emb[:] = h["cell"].numpy()
            collect(inp, att, None, [et for et in all_rel if mode == "full" or et != GENE_CELL])
            if mode == "full":
                collect_pool(inp, h, None)
            if mode == "identify" or embedding != "full":
                perm = np.random.default_rng(seed).permutation(n_cells)
                for fold in np.array_split(perm, max(1, math.ceil(1.0 / mask_fraction))):
                    held = torch.zeros(n_cells, dtype=torch.bool)
                    held[torch.from_numpy(fold)] = True
                    withheld_passes(data, held, torch.nonzero(held).squeeze(1))
        else:
            seed_everything(seed)
            nn_ = default_num_neighbors(data.edge_types, L)
            loader = make_loader(data, nn_, torch.arange(n_cells), batch_size, shuffle=False)
            for g in loader:
                n_seed = int(g["cell"].batch_size)
                is_seed = torch.zeros(g["cell"].num_nodes, dtype=torch.bool)
                is_seed[:n_seed] = True
                inp = graph_inputs(g)
                h, att = run(inp)
                if embedding == "full":
                    emb[g["cell"].n_id[:n_seed].numpy()] = h["cell"][:n_seed].numpy()
                collect(inp, att, None, [et for et in all_rel if et[2] != "cell"])
                collect(
                    inp,
                    att,
                    is_seed,
                    [et for et in all_rel if et[2] == "cell" and (mode == "full" or et != GENE_CELL)],
                )
                if mode == "full":
                    collect_pool(inp, h, is_seed)
                withheld_passes(g, is_seed, g["cell"].n_id[:n_seed])
        alpha = {}
        for et in data.edge_types:
            with np.errstate(invalid="ignore", divide="ignore"):
                alpha[et] = (alpha_sum[et] / alpha_cnt[et]).astype(np.float32)
        edges = {et: data[et].edge_index for et in data.edge_types}
        pool = None
        if net.bottleneck is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                pool = np.nan_to_num(pool_sum / pool_cnt).astype(np.float32)
        return AttentionReadout(edges=edges, alpha=alpha, mode=mode, embedding=emb, pool=pool)

    @torch.no_grad()
    @deterministic_ops()
    def cell_embedding(
        self, data: HeteroData, batch_size: int | None = None, embedding: str = "identify"
    ) -> np.ndarray:
        """Cell representations after message passing, ``(n_cells, hidden)`` (see :meth:`attention`)."""
        return self.attention(data, mode="full", batch_size=batch_size, embedding=embedding).embedding

    @torch.no_grad()
    @deterministic_ops()
    def predict(self, data: HeteroData, kind: str, mask: bool = True) -> pd.DataFrame:
        """Class probabilities of ``kind`` per cell; with ``mask`` each cell is identified from its genes."""
        self._check_graph(data)
        if kind not in self.index.kinds:
            raise KeyError(f"{kind!r} is not predicted by this model; kinds: {self.index.kinds}")
        n = int(data["cell"].num_nodes)
        out = np.zeros((n, len(self.index.categories[kind])), np.float32)
        folds = np.array_split(np.random.default_rng(0).permutation(n), 5 if mask else 1)
        for fold in folds:
            inp = graph_inputs(data)
            cm = torch.zeros(n, dtype=torch.bool)
            if mask:
                cm[torch.from_numpy(fold)] = True
                mask_labels(inp, cm)
            inp.cell_mask = cm if mask else None
            h, _ = self.net(inp)
            p = torch.softmax(self.net.head(kind)(h["cell"][torch.from_numpy(fold)]), -1)
            out[fold] = p.numpy()
        return pd.DataFrame(out, index=self.index.cells, columns=self.index.categories[kind])

    # ---------------------------------------------------------------------------------------------- annotate
    def annotate(
        self,
        adata,
        data: HeteroData,
        readout: AttentionReadout | None = None,
        mode: str = "identify",
        batch_size: int | None = None,
        embedding: str = "identify",
    ):
        """Write embedding and attention into ``adata`` (keys in the module docstring); returns ``adata``."""
        if (
            list(map(str, adata.obs_names)) != self.index.cells
            and list(map(str, adata.obs_names)) != data.graph_index.cells
        ):
            raise ValueError(
                "adata.obs_names differ from the graph's cells; annotate the AnnData the graph was built from"
            )
        gi: GraphIndex = data.graph_index
        ro = readout or self.attention(data, mode=mode, batch_size=batch_size, embedding=embedding)
        var_pos = pd.Index(adata.var_names.astype(str)).get_indexer(gi.genes)
        if (var_pos < 0).any():
            raise ValueError("some graph genes are not in adata.var_names")
        n_obs, n_vars = adata.n_obs, adata.n_vars
        cg = ro.cell_gene(n_obs, len(gi.genes)).tocoo()
        adata.layers["cellvq_graph_attention"] = sp.csr_matrix(
            (cg.data, (cg.row, var_pos[cg.col])), shape=(n_obs, n_vars), dtype=np.float32
        )
        rows, cols, vals = [], [], []
        rels = [et for et in (GENE_SIM, GENE_COEXPR) if et in data.edge_types and data[et].edge_index.numel()]
        for et in rels:
            ei = data[et].edge_index.numpy()
            rows.append(var_pos[ei[0]])
            cols.append(var_pos[ei[1]])
            vals.append(ro.mean(et) / max(len(rels), 1))
        if rels:
            adata.varp["cellvq_graph_gene_attention"] = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n_vars, n_vars),
                dtype=np.float32,
            )
        adata.obsm["X_cellvq_graph"] = ro.embedding.astype(np.float32)
        cols_p = [f"{k}={v}" for k, v in gi.property_nodes]
        P = np.zeros((n_obs, len(cols_p)), np.float32)
        if PROP_CELL in data.edge_types and data[PROP_CELL].edge_index.numel():
            ei = data[PROP_CELL].edge_index.numpy()
            P[ei[1], ei[0]] = ro.mean(PROP_CELL)
        adata.obsm["cellvq_graph_property_attention"] = pd.DataFrame(P, index=adata.obs_names, columns=cols_p)
        uns = adata.uns.setdefault("cellvq_graph", {})
        uns["genes"] = list(gi.genes)
        uns["state_keys"] = list(gi.state_keys)
        uns["property_kinds"] = list(gi.property_kinds)
        uns["readout"] = {
            "mode": ro.mode,
            "embedding": embedding,
            "top_k": int(gi.top_k),
            "n_genes": len(gi.genes),
            "source": ro.source,
        }
        uns["params"] = {
            k: v
            for k, v in asdict(self.config).items()
            if k in ("hidden", "heads", "num_layers", "dropout", "kinds")
        }
        if self.config.bottleneck is not None:
            uns["params"]["bottleneck"] = dict(self.config.bottleneck)
        return adata

    def __repr__(self) -> str:
        n_par = sum(p.numel() for p in self.net.parameters())
        return (
            f"CellVQGraph({self.index!r}, hidden={self.config.hidden}, heads={self.config.heads}, "
            f"layers={self.config.num_layers}, parameters={n_par})"
        )
