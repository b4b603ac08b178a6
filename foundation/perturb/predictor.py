"""User class of the perturbation predictor (``cellvq perturb train|predict``): fit on every perturbation
of a screen, save as safetensors + JSON, predict the shifts of new genetic targets or new compounds.

Genetic: features = CellVQ (or random / no) gene embeddings of the targets, with the own-target propagation
term of :class:`CellVQPredictor`. Drug: features = unit-normalised Morgan fingerprints (kernel = cosine of
fingerprints), no propagation term. Predictions leave as the plain shift table of :func:`shift_table`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foundation.perturb.data import PerturbData
from foundation.perturb.features import gene_similarity, random_like, target_features, unit_rows
from foundation.perturb.models import CellVQPredictor

TABLE_COLUMNS = ["perturbation", "gene", "delta", "rank", "predicted"]


@dataclass
class PredictorConfig:
    kind: str = "genetic"          # genetic | drug
    embedding: str = "cellvq"      # genetic only: cellvq | random | none
    sim_top: int = 10
    sep: str = r"[+;]"
    seed: int = 0


def shift_table(perturbations: list[str], genes, shifts: np.ndarray, predicted: bool,
                top: int | None = None) -> pd.DataFrame:
    """Long table (perturbation, gene, delta, rank, predicted): ``delta`` = shift of mean log-normalised
    expression from control, ``rank`` = 1 for the gene with the largest |delta| of its perturbation; only
    the ``top`` ranks per perturbation when given."""
    genes = np.asarray(genes)
    parts = []
    for name, row in zip(perturbations, shifts):
        order = np.argsort(-np.abs(row), kind="stable")[: top or len(row)]
        parts.append(pd.DataFrame({"perturbation": name, "gene": genes[order], "delta": row[order],
                                   "rank": np.arange(1, len(order) + 1), "predicted": predicted}))
    return pd.concat(parts, ignore_index=True)[TABLE_COLUMNS]


def unknown_targets(targets: list[list[str]], vocabulary: pd.Index, genes: pd.Index) -> list[str]:
    """Targets neither in the embedding vocabulary nor measured."""
    return sorted({t for ts in targets for t in ts if t not in vocabulary and t not in genes})


class PerturbPredictor:
    def __init__(self, cfg: PredictorConfig, genes: pd.Index, emb: pd.DataFrame | None):
        if cfg.kind not in ("genetic", "drug"):
            raise ValueError(f"kind {cfg.kind!r} must be 'genetic' or 'drug' (--kind).")
        self.cfg, self.genes, self.emb = cfg, pd.Index(genes), emb
        self.model: CellVQPredictor | None = None

    # ---------------------------------------------------------------------------------------- features
    def split_targets(self, names: list[str]) -> list[list[str]]:
        return [[t for t in re.split(self.cfg.sep, n) if t] for n in names]

    def known_genes(self) -> pd.Index:
        """Targets the predictor can read: the embedding vocabulary, the training targets (their own term)."""
        vocab = self.emb.index if self.emb is not None else pd.Index([])
        trained = [t for ts in self.split_targets(getattr(self, "train_names", [])) for t in ts]
        return vocab.union(pd.Index(trained))

    def genetic_inputs(self, names: list[str], fitting: bool = False) -> tuple[np.ndarray, np.ndarray]:
        targets = self.split_targets(names)
        vocab = self.known_genes()
        # without an embedding, training targets need no vocabulary (they carry only their own term)
        bad = [] if fitting and self.emb is None else unknown_targets(targets, vocab, self.genes)
        if bad:
            raise ValueError(f"target genes {bad[:10]} are neither in the model's gene vocabulary "
                             f"({len(vocab)} genes) nor measured (--embedding {self.cfg.embedding}); check the spelling (HGNC symbols), drop "
                             "these perturbations, or use a checkpoint whose vocabulary has them (--model).")
        return target_features(self.emb, targets), gene_similarity(self.emb, targets, self.genes, self.cfg.sim_top)

    @staticmethod
    def drug_inputs(smiles: list[str], names: list[str]) -> np.ndarray:
        """Unit-normalised Morgan fingerprints (their dot product is the cosine kernel of the predictor)."""
        from foundation.perturb.molecules import morgan_fingerprints

        return unit_rows(morgan_fingerprints(smiles, names=names).astype(np.float64))

    def inputs(self, names: list[str], smiles: list[str] | None, fitting: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if self.cfg.kind == "genetic":
            return self.genetic_inputs(names, fitting)
        if smiles is None:
            raise ValueError("a drug predictor needs SMILES for every compound: pass --smiles (CSV with columns "
                             "compound,smiles).")
        return self.drug_inputs(smiles, names), np.zeros((len(names), len(self.genes)))

    # -------------------------------------------------------------------------------------- fit/predict
    def fit(self, data: PerturbData, smiles: list[str] | None = None) -> PerturbPredictor:
        feats, sim = self.inputs(data.perturbations, smiles, fitting=True)
        self.model = CellVQPredictor().fit(feats, data.shift, sim)
        self.train_names = list(data.perturbations)
        return self

    def predict(self, names: list[str], smiles: list[str] | None = None) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("the predictor is not fitted; call fit() or load a trained folder.")
        feats, sim = self.inputs(names, smiles)
        return self.model.predict(feats, sim)

    # ----------------------------------------------------------------------------------------- save/load
    def save(self, out_dir: Path, observed: pd.DataFrame | None = None) -> Path:
        """Write ``predictor.safetensors``, ``config.json`` (and ``observed.csv``) into a temporary sibling
        folder renamed onto ``out_dir``: an existing folder is replaced only once everything is written."""
        from safetensors.numpy import save_file

        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        try:
            m = self.model
            tensors = {"mean": m.mean, "dual": m.dual, "feats": m.feats}
            if self.emb is not None:
                tensors["embedding"] = self.emb.to_numpy(dtype=np.float32)
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "predictor.safetensors"))
            meta = {"config": asdict(self.cfg), "genes": list(self.genes), "train_perturbations": self.train_names,
                    "alpha": m.alpha, "beta": m.beta,
                    "embedding_genes": None if self.emb is None else list(self.emb.index)}
            (tmp / "config.json").write_text(json.dumps(meta))
            if observed is not None:
                observed.to_csv(tmp / "observed.csv", index=False)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return out_dir

    @classmethod
    def load(cls, model_dir: Path) -> PerturbPredictor:
        from safetensors.numpy import load_file

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} holds no trained predictor (config.json); train one with "
                                    "`cellvq perturb train ... --out {model_dir}`.")
        meta = json.loads((model_dir / "config.json").read_text())
        t = load_file(str(model_dir / "predictor.safetensors"))
        emb = None if meta["embedding_genes"] is None else pd.DataFrame(t["embedding"], index=meta["embedding_genes"])
        self = cls(PredictorConfig(**meta["config"]), pd.Index(meta["genes"]), emb)
        self.model = CellVQPredictor()
        self.model.mean, self.model.dual, self.model.feats = t["mean"], t["dual"], t["feats"]
        self.model.alpha, self.model.beta = meta["alpha"], meta["beta"]
        self.train_names = meta["train_perturbations"]
        return self


def embedding_for(source: str, gene_embedding: pd.DataFrame | None, seed: int = 0) -> pd.DataFrame | None:
    """The gene table a genetic predictor uses: CellVQ's, a Gaussian one of the same shape, or none."""
    if source not in ("cellvq", "random", "none"):
        raise ValueError(f"embedding {source!r} must be cellvq, random or none (--embedding).")
    if source == "none":
        return None
    return gene_embedding if source == "cellvq" else random_like(gene_embedding, seed)
