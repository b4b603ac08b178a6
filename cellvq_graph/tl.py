"""One-call workflow on an AnnData: build the graph, train, write the read-outs into the AnnData."""

from __future__ import annotations

from collections.abc import Sequence

from .build import DEFAULT_PROPERTIES, build_graph
from .model import CellVQGraph
from .nn import BottleneckConfig
from .train import GraphTrainConfig

__all__ = ["fit"]


def fit(
    adata,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    *,
    states: str | Sequence[str] = "cellvq_code",
    train: GraphTrainConfig | None = None,
    readout_batch_size: int | None = None,
    hidden: int = 32,
    heads: int = 4,
    num_layers: int = 2,
    mode: str = "identify",
    bottleneck: BottleneckConfig | None = None,
    build_kwargs: dict | None = None,
    progress: bool = True,
) -> CellVQGraph:
    """Build the CellVQ-Graph of ``adata``, train it and annotate ``adata``.

    Writes ``obsm["X_cellvq_graph"]``, ``layers["cellvq_graph_attention"]``,
    ``varp["cellvq_graph_gene_attention"]``, ``obsm["cellvq_graph_property_attention"]`` and
    ``uns["cellvq_graph"]`` (see :mod:`cellvq_graph.model`). Returns the trained model; the graph it was
    trained on is ``model.graph`` (needed for :func:`~cellvq_graph.integrated_gradients`).

    ``train`` holds the training parameters (default :class:`GraphTrainConfig`: 80 epochs of 512-cell
    NeighborLoader mini-batches, chosen by measurement, see there); its ``seed`` also seeds graph building
    and initialisation. ``readout_batch_size`` reads out in mini-batches of that many cells (default: full
    graph up to 50,000 cells, 2,048-cell mini-batches above).
    """
    train = train or GraphTrainConfig()
    data = build_graph(adata, properties=properties, states=states, seed=train.seed, **(build_kwargs or {}))
    model = CellVQGraph.from_graph(
        data, hidden=hidden, heads=heads, num_layers=num_layers, bottleneck=bottleneck, seed=train.seed
    )
    model.fit(data, train, progress=progress)
    if readout_batch_size is None and adata.n_obs > 50000:
        readout_batch_size = 2048
    model.annotate(adata, data, mode=mode, batch_size=readout_batch_size)
    model.graph = data
    return model
