"""Zero-shot tasks on an embedding (``obsm["X_cellvq"]`` or any other representation).

Functions take an AnnData and write documented keys, like scanpy's ``tl`` functions:

- :func:`pca_baseline` - the standard scanpy PCA baseline (``obsm["X_pca_baseline"]``).
- :func:`leiden`, :func:`cluster_scores`, :func:`best_leiden_scores` - clustering and ARI/NMI vs labels.
- :func:`transfer_labels`, :func:`macro_f1` - reference-to-query label transfer;
  :func:`transfer_labels_across` - between two experiments, embedded on the genes both measured.
- :func:`predict_property` - cross-validated linear probe of an obs column.
- :func:`perturbation_effects` - embedding shift and permutation test per perturbation vs control.
- :func:`drug_response_features`, :func:`predict_drug_response`, :func:`compare_drug_response`,
  :func:`random_gene_embedding` - cell-line drug response (GDSC) through the model's gene embeddings
  (``obsm["X_cellvq_drug"]``), with per-drug cross-validated ridge and honest baselines.
"""

from __future__ import annotations

from foundation.tasks.annotate import (
    GenePanelWarning,
    macro_f1,
    predict_property,
    transfer_labels,
    transfer_labels_across,
)
from foundation.tasks.clustering import best_leiden_scores, cluster_scores, leiden, pca_baseline
from foundation.tasks.drug_response import (
    compare_drug_response,
    drug_response_features,
    predict_drug_response,
    random_gene_embedding,
)
from foundation.tasks.perturbation import energy_distance_test, perturbation_effects

__all__ = [
    "pca_baseline",
    "leiden",
    "cluster_scores",
    "best_leiden_scores",
    "transfer_labels",
    "transfer_labels_across",
    "GenePanelWarning",
    "macro_f1",
    "predict_property",
    "perturbation_effects",
    "energy_distance_test",
    "drug_response_features",
    "predict_drug_response",
    "compare_drug_response",
    "random_gene_embedding",
]
