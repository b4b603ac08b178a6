"""Grow a checkpoint's vocabulary by the GENCODE genes a dataset expresses and the model never saw.

A gene outside the checkpoint's vocabulary is *untrained* (:mod:`foundation.data.coverage`): the encoder
cannot read it. ``adapt`` is the place to learn such genes, because it trains on the very counts that hold
them. :func:`grow_vocabulary` appends the most widely detected untrained genes of the data to the vocabulary
(with their GENCODE symbol and Ensembl ID) and widens the four per-gene tensors of the module:

- ``encoder.gene_embedding``: new rows start small and random (std 0.02, the encoder's own init) and are
  marked weak, so ``adapt``'s SVD start places them in the parent's embedding space through the genes both
  know (:func:`foundation.adapt.init_weak_genes`);
- ``decoder.bias_mu``: the new gene's log share of the data's counts, shifted by the median offset between
  the parent's biases and the data's log shares on the genes both know;
- ``decoder.bias_pi`` and ``decoder.log_theta``: the parent's medians.

The parent is never changed; the new genes are listed in the child's metadata (``adapt.genes_added``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["GrowConfig", "NewGenes", "untrained_candidates", "grow_vocabulary"]


@dataclass
class GrowConfig:
    """Which untrained genes ``adapt`` adds: at most ``max_new_genes`` (0: none), each detected in at least
    ``min_cells`` cells (and in ``min_cell_share`` of them), the most widely detected first."""

    max_new_genes: int = 2000
    min_cells: int = 10
    min_cell_share: float = 0.005


@dataclass(frozen=True)
class NewGenes:
    """Untrained genes chosen from a dataset: their symbols, Ensembl IDs and var positions."""

    symbols: list[str]
    ensembl_ids: list[str]
    var_index: np.ndarray

    def __len__(self) -> int:
        return len(self.symbols)


def gencode_symbol_and_id(name: str) -> tuple[str, str]:
    """``(symbol, ensembl_id)`` of a var name (symbol, Ensembl ID or composite) from GENCODE v44."""
    from foundation.data.symbols import id_of
    from foundation.data.vocab import gencode_maps

    id2sym, sym2id = gencode_maps()
    eid = id_of(name)
    return (id2sym.get(eid, name), eid) if eid else (name, sym2id.get(name, ""))


def untrained_candidates(adata, vocab, counts, cfg: GrowConfig, var_key: str | None = None) -> NewGenes:
    """The untrained GENCODE genes of ``adata`` worth learning, given its raw ``counts`` (cells x vars)."""
    from foundation.data.coverage import gene_coverage

    names = [str(n) for n in (adata.var[var_key] if var_key else adata.var_names)]
    _, untrained = gene_coverage(names, vocab)
    detected = np.asarray((counts > 0).sum(axis=0)).ravel()
    floor = max(cfg.min_cells, int(np.ceil(cfg.min_cell_share * counts.shape[0])))
    pool = np.flatnonzero(untrained & (detected >= floor))
    pool = pool[np.lexsort((pool, -detected[pool]))][: max(cfg.max_new_genes, 0)]
    symbols, ids, keep, seen = [], [], [], set()
    for j in pool:
        sym, eid = gencode_symbol_and_id(names[j])
        if sym in vocab or sym in seen or (eid and eid in vocab):
            continue  # a duplicated symbol or an ID the model already holds under another name
        seen.add(sym)
        symbols.append(sym)
        ids.append(eid)
        keep.append(j)
    return NewGenes(symbols, ids, np.asarray(keep, dtype=np.int64))


def widened_state(module, new: NewGenes, counts, known_var: np.ndarray, known_vocab: np.ndarray, seed: int):
    """The module's state dict with ``len(new)`` genes appended (see the module docstring for the starts).

    ``known_var`` / ``known_vocab``: var and vocabulary positions of the genes both the data and the parent
    know, used to put the new mean biases on the parent's scale."""
    import torch

    state = {k: v.clone() for k, v in module.state_dict().items()}
    n, k = module.config.n_genes, len(new)
    emb = state["encoder.gene_embedding.weight"]
    rows = torch.randn(k, emb.shape[1], generator=torch.Generator().manual_seed(seed), dtype=emb.dtype) * 0.02
    state["encoder.gene_embedding.weight"] = torch.cat([emb[:n], rows, emb[n:]])  # padding row stays last
    share = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel() / max(float(counts.sum()), 1.0)
    log_share = np.log(share + 1e-7)
    bias_mu = state["decoder.bias_mu"].double().numpy()
    offset = float(np.median(bias_mu[known_vocab] - log_share[known_var])) if len(known_var) else 0.0
    new_mu = torch.from_numpy(log_share[new.var_index] + offset)
    state["decoder.bias_mu"] = torch.cat([state["decoder.bias_mu"], new_mu.to(state["decoder.bias_mu"])])
    for key in ("decoder.bias_pi", "decoder.log_theta"):
        old = state[key]
        state[key] = torch.cat([old, old.median().expand(k)])
    return state


def grow_vocabulary(model, adata, cfg: GrowConfig, layer: str | None = None, var_key: str | None = None,
                    seed: int = 0):
    """A copy of ``model`` whose vocabulary also holds the data's chosen untrained genes, and those genes.

    Returns ``(child, new_genes)``; with no gene worth adding, the child is a plain copy."""
    from foundation.data import GeneVocab, align_genes, get_counts
    from foundation.nn import CellVQModule

    counts = get_counts(adata, layer)
    new = untrained_candidates(adata, model.vocab, counts, cfg, var_key)
    if not len(new):
        return type(model)(copy.deepcopy(model.module), model.vocab, copy.deepcopy(model.metadata)), new
    al = align_genes(adata, model.vocab, var_key=var_key, min_match=0.0, warn_below=0.0,
                     col_sums=np.asarray(counts.sum(axis=0)).ravel())
    known_var = np.flatnonzero(al.var_index >= 0)
    state = widened_state(model.module, new, counts, known_var, al.var_index[known_var], seed)
    vocab = GeneVocab(model.vocab.symbols + new.symbols, model.vocab.ensembl_ids + new.ensembl_ids)
    config = dataclasses.replace(model.module.config, n_genes=len(vocab))
    module = CellVQModule(config)
    module.load_state_dict(state, strict=True)
    module.to(model.device)
    return type(model)(module, vocab, copy.deepcopy(model.metadata)), new
