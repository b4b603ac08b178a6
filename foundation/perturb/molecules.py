"""Molecule encoders from SMILES (issue 14 B): RDKit Morgan fingerprints and a small graph network over the
molecular graph (atoms = nodes with PyG's nine categorical atom features, bonds = edges)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class FingerprintConfig:
    radius: int = 2       # Morgan radius (2 = ECFP4)
    n_bits: int = 1024    # folded bit-vector length


def parse_smiles(smiles: Sequence[str], names: Sequence[str] | None = None) -> list:
    """RDKit molecules of ``smiles``; one error naming every entry RDKit cannot parse."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # the error below names the failures; RDKit's own log is noise
    names = list(names) if names is not None else [str(i) for i in range(len(smiles))]
    mols = [Chem.MolFromSmiles(s) if isinstance(s, str) and s else None for s in smiles]
    bad = [f"{n!r}: {s!r}" for n, s, m in zip(names, smiles, mols) if m is None]
    if bad:
        raise ValueError(f"RDKit cannot parse the SMILES of {len(bad)} compound(s) ({'; '.join(bad[:5])}); "
                         "fix or drop them in the SMILES table (--smiles), e.g. check brackets, ring closures, "
                         "and that salts are written with '.'.")
    return mols


def morgan_fingerprints(smiles: Sequence[str], cfg: FingerprintConfig | None = None,
                        names: Sequence[str] | None = None) -> np.ndarray:
    """(n, n_bits) uint8 Morgan bit vectors of ``smiles``."""
    from rdkit.Chem import rdFingerprintGenerator

    cfg = cfg or FingerprintConfig()
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=cfg.radius, fpSize=cfg.n_bits)
    return np.stack([gen.GetFingerprintAsNumPy(m).astype(np.uint8) for m in parse_smiles(smiles, names)])


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Tanimoto similarity of binary fingerprints."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def molecular_graphs(smiles: Sequence[str], names: Sequence[str] | None = None) -> list:
    """PyG ``Data`` of each molecule (``torch_geometric.utils.from_smiles``), checked by RDKit first."""
    from torch_geometric.utils import from_smiles

    parse_smiles(smiles, names)
    return [from_smiles(s) for s in smiles]


class AtomEncoder(nn.Module):
    """Sum of one embedding per categorical atom feature of ``from_smiles`` (atomic number, chirality, ...)."""

    def __init__(self, dim: int):
        super().__init__()
        from torch_geometric.utils.smiles import x_map

        self.embs = nn.ModuleList(nn.Embedding(len(v), dim) for v in x_map.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(emb(x[:, i]) for i, emb in enumerate(self.embs))


class MoleculeGNN(nn.Module):
    """Small GIN over the molecular graph: atom embeddings, ``n_layers`` GIN convolutions with residuals,
    mean + max pooling to one ``out_dim`` vector per molecule."""

    def __init__(self, dim: int = 64, n_layers: int = 3, out_dim: int = 64):
        super().__init__()
        from torch_geometric.nn import GINConv

        self.atoms = AtomEncoder(dim)
        self.convs = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))) for _ in range(n_layers))
        self.out = nn.Linear(2 * dim, out_dim)

    def forward(self, batch) -> torch.Tensor:
        from torch_geometric.nn import global_max_pool, global_mean_pool

        h = self.atoms(batch.x)
        for conv in self.convs:
            h = h + torch.relu(conv(h, batch.edge_index))
        pooled = torch.cat([global_mean_pool(h, batch.batch), global_max_pool(h, batch.batch)], dim=1)
        return self.out(pooled)
