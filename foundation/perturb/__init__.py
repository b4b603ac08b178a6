"""Perturbation prediction (issue 14, part A): per-perturbation expression shifts, baselines, a CellVQ
gene-embedding predictor, metrics and leave-perturbation-out evaluation."""

from foundation.perturb.data import PerturbConfig, PerturbData, perturbation_shifts
from foundation.perturb.evaluate import EvalConfig, evaluate, summarize

__all__ = ["PerturbConfig", "PerturbData", "perturbation_shifts", "EvalConfig", "evaluate", "summarize"]
