"""Drugs (issue 14 B) and `cellvq perturb train|predict` (C, interface) on real data: GDSC SMILES, Morgan
fingerprints, the molecular graph network, bulk ln IC50 prediction against the per-drug mean, the
trametinib cells, and the bad-input errors of the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from foundation import datasets
from foundation.perturb.gdsc import gdsc_drug_table
from foundation.perturb.molecules import (
    MoleculeGNN,
    molecular_graphs,
    morgan_fingerprints,
    parse_smiles,
    tanimoto,
)


@pytest.fixture(scope="module")
def drug_table():
    return gdsc_drug_table(list(datasets.gdsc().obsm["gdsc_ln_ic50"].columns))


def _by_name(table, name):
    return table.loc[table["name"] == name, "smiles"].iloc[0]


def test_gdsc_drugs_map_to_smiles(drug_table):
    mapped = drug_table.dropna(subset=["smiles"])
    # 238 of the 266 GDSC ids are in the GDSC drug list; all 238 CIDs are in the 223-drug SMILES file
    assert len(drug_table) == 266 and len(mapped) == 238 and mapped["pubchem_cid"].nunique() == 223
    assert (mapped["smiles_source"] == "deepcdr_cid").all()
    assert drug_table.loc["GDSC:1372", "name"] == "Trametinib" and drug_table.loc["GDSC:1007@", "name"] == "Docetaxel"
    # the two SMILES sources agree on every compound they share (59; first InChIKey block = skeleton)
    from rdkit import Chem

    from foundation.perturb.gdsc import read_smiles_sources

    deepcdr, tgsa, _ = read_smiles_sources(datasets.shared_data_dir() / "gdsc")
    shared = sorted(set(deepcdr.index) & set(tgsa.index))
    key = lambda s: Chem.MolToInchiKey(Chem.MolFromSmiles(s)).split("-")[0]  # noqa: E731
    assert len(shared) == 59 and all(key(deepcdr[c]) == key(tgsa[c]) for c in shared)


def test_fingerprints_of_gdsc_smiles(drug_table):
    mapped = drug_table.dropna(subset=["smiles"])
    fp = morgan_fingerprints(mapped["smiles"].tolist(), names=mapped.index.tolist())
    assert fp.shape == (238, 1024) and fp.dtype == np.uint8 and (fp.sum(axis=1) > 0).all()
    # one compound under two GDSC ids (Olaparib 1017 / 1495) gets one fingerprint
    pos = {d: i for i, d in enumerate(mapped.index)}
    assert (fp[pos["GDSC:1017"]] == fp[pos["GDSC:1495"]]).all()
    # chemistry: the two anilinoquinazoline EGFR inhibitors are closer to each other than to cisplatin;
    # the MEK inhibitors PD0325901 and selumetinib (both benzhydroxamate / benzimidazole diarylamines) too
    names = ["Gefitinib", "Erlotinib", "Cisplatin", "PD0325901", "Selumetinib"]
    sim = tanimoto(*(2 * [morgan_fingerprints([_by_name(drug_table, n) for n in names])]))
    assert np.allclose(np.diag(sim), 1.0)
    assert sim[0, 1] > 0.3 > sim[0, 2] and sim[3, 4] > sim[3, 2] + 0.2


def test_molecule_gnn_embeds_real_molecules(drug_table):
    from torch_geometric.data import Batch

    smiles = [_by_name(drug_table, n) for n in ("Trametinib", "Cisplatin", "Docetaxel")]
    graphs = molecular_graphs(smiles)
    assert graphs[0].x.shape[1] == 9 and graphs[0].num_nodes == 35  # trametinib C26H23FIN5O4: 35 heavy atoms
    torch.manual_seed(0)
    out = MoleculeGNN()(Batch.from_data_list(graphs))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    assert torch.cdist(out, out)[np.triu_indices(3, 1)].min() > 1e-3  # different molecules, different vectors


def test_unparseable_smiles_named():
    with pytest.raises(ValueError, match=r"RDKit cannot parse .*'broken': 'C1CC\(' .*--smiles"):
        parse_smiles(["CCO", "C1CC("], names=["ethanol", "broken"])
    with pytest.raises(ValueError, match="cannot parse"):
        morgan_fingerprints([""], names=["empty"])
