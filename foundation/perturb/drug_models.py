"""Line-drug response models: each ``fit(pairs)`` / ``predict(pairs)`` on integer (line, drug) index pairs
into a line-feature table ``L`` (lines x p) and a drug-feature table ``D`` (drugs x q) or drug graphs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class DrugMean:
    """Per-drug mean of the training pairs; the global mean for a drug never seen in training."""
    with_line: bool = False   # additive: + the line's mean residual (line sensitivity)

    def fit(self, li: np.ndarray, di: np.ndarray, y: np.ndarray) -> DrugMean:
        self.mu = float(y.mean())
        self.drug = _group_mean(di, y - self.mu)
        resid = y - self.mu - np.array([self.drug.get(d, 0.0) for d in di])
        self.line = _group_mean(li, resid) if self.with_line else {}
        return self

    def predict(self, li: np.ndarray, di: np.ndarray) -> np.ndarray:
        return self.mu + np.array([self.drug.get(d, 0.0) + self.line.get(l_, 0.0) for l_, d in zip(li, di)])


def _group_mean(keys: np.ndarray, v: np.ndarray) -> dict:
    uniq, inv = np.unique(keys, return_inverse=True)
    return dict(zip(uniq.tolist(), (np.bincount(inv, v) / np.bincount(inv)).tolist()))


@dataclass
class PairRidge:
    """Ridge on [line features, drug features] (an additive line score + drug score), solved exactly from
    the normal equations assembled per line and per drug (never the pairs x features matrix)."""
    alpha: float = 10.0

    def fit(self, L: np.ndarray, D: np.ndarray, li, di, y) -> PairRidge:
        A = np.hstack([np.ones((len(L), 1)), L])
        C = np.zeros((len(L), len(D)))
        np.add.at(C, (li, di), 1.0)
        ys = np.zeros_like(C)
        np.add.at(ys, (li, di), y)
        top = np.hstack([A.T @ (C.sum(1)[:, None] * A), A.T @ C @ D])
        bottom = np.hstack([D.T @ C.T @ A, D.T @ (C.sum(0)[:, None] * D)])
        xtx = np.vstack([top, bottom])
        pen = self.alpha * np.eye(len(xtx))
        pen[0, 0] = 0.0  # intercept unpenalised
        w = np.linalg.solve(xtx + pen, np.concatenate([A.T @ ys.sum(1), D.T @ ys.sum(0)]))
        self.w_line, self.w_drug = w[: A.shape[1]], w[A.shape[1]:]
        self.L, self.D = A, D
        return self

    def predict(self, li, di) -> np.ndarray:
        return self.L[li] @ self.w_line + self.D[di] @ self.w_drug


def mlp(sizes: list[int], dropout: float = 0.1) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers[:-2])  # no activation / dropout after the last layer


class PairNet(nn.Module):
    """Line tower and drug tower (an MLP over fingerprints, or a :class:`MoleculeGNN` over graphs), their
    concatenation through an MLP head to one ln IC50."""

    def __init__(self, line_dim: int, drug_dim: int | None, hidden: int = 128):
        super().__init__()
        from foundation.perturb.molecules import MoleculeGNN

        self.line = mlp([line_dim, hidden, 64])
        self.drug = mlp([drug_dim, hidden, 64]) if drug_dim else MoleculeGNN(out_dim=64)
        self.head = mlp([128, hidden, 1])

    def forward(self, lines: torch.Tensor, drugs: torch.Tensor, di: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.line(lines), self.drug(drugs)[di]], dim=1)).squeeze(1)


@dataclass
class PairMLP:
    """:class:`PairNet` trained with Adam on MSE of standardised ln IC50. ``D`` is a fingerprint matrix, or
    None with ``graphs`` (a list of PyG ``Data``, one per drug) for the graph network."""
    epochs: int = 6
    batch: int = 2048
    lr: float = 3e-3
    seed: int = 0
    progress: bool = False

    def fit(self, L: np.ndarray, D: np.ndarray | None, li, di, y, graphs: list | None = None) -> PairMLP:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.mu, self.sd = float(y.mean()), float(y.std() or 1.0)
        self.L = torch.as_tensor(L, dtype=torch.float32)
        self.drugs = self._drug_input(D, graphs)
        self.net = PairNet(L.shape[1], None if D is None else D.shape[1])
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=1e-5)
        yt = torch.as_tensor((y - self.mu) / self.sd, dtype=torch.float32)
        li_t, di_t = torch.as_tensor(li), torch.as_tensor(di)
        self.net.train()
        for _ in tqdm(range(self.epochs), desc="train pairs", disable=not self.progress, leave=False):
            for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // self.batch)):
                idx = torch.as_tensor(idx)
                loss = nn.functional.mse_loss(self.net(self.L[li_t[idx]], self.drugs, di_t[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @staticmethod
    def _drug_input(D, graphs):
        if D is not None:
            return torch.as_tensor(D, dtype=torch.float32)
        from torch_geometric.data import Batch

        return Batch.from_data_list(graphs)

    @torch.no_grad()
    def predict(self, li, di) -> np.ndarray:
        self.net.eval()
        out = self.net(self.L[torch.as_tensor(li)], self.drugs, torch.as_tensor(di))
        return out.numpy().astype(np.float64) * self.sd + self.mu
