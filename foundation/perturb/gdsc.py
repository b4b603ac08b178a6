"""GDSC drugs as molecules and line-drug pairs for bulk drug-response prediction (issue 14 B).

The ln IC50 table (:func:`foundation.datasets.gdsc`) names drugs only by GDSC drug id (``GDSC:1001``).
``files/gdsc_drug_ids.csv`` maps ids to PubChem CIDs and names (the GDSC drug list, 238 ids, as used by
DeepCDR's ``anti_drug.info``). SMILES come from the shared folder (``<shared>/gdsc``): the DeepCDR
``223drugs_pubchem_smiles.txt`` (CID -> SMILES) first, then the TGSA ``drug_smiles.csv`` (name, CID ->
canonical SMILES) by CID, then by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ID_TABLE = Path(__file__).parent / "files" / "gdsc_drug_ids.csv"


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def read_smiles_sources(gdsc_dir: Path) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(CID -> SMILES of the 223-drug file, CID -> SMILES of drug_smiles.csv, normalised name -> SMILES)."""
    gdsc_dir = Path(gdsc_dir)
    deepcdr = pd.read_csv(gdsc_dir / "223drugs_pubchem_smiles.txt", sep="\t", header=None, names=["cid", "smiles"])
    tgsa = pd.read_csv(gdsc_dir / "drug_smiles.csv")
    by_name = pd.Series(tgsa["CanonicalSMILES"].to_numpy(), index=tgsa["drug_name"].map(_norm))
    return (deepcdr.drop_duplicates("cid").set_index("cid")["smiles"],
            tgsa.drop_duplicates("CID").set_index("CID")["CanonicalSMILES"],
            by_name[~by_name.index.duplicated()])


def gdsc_drug_table(drug_ids: list[str], gdsc_dir: Path | None = None) -> pd.DataFrame:
    """One row per GDSC drug column (``GDSC:<id>``, a trailing ``@`` tolerated): ``name``, ``pubchem_cid``,
    ``smiles`` (NaN where none maps) and ``smiles_source`` (``deepcdr_cid`` | ``tgsa_cid`` | ``tgsa_name``)."""
    if gdsc_dir is None:
        from foundation import datasets

        gdsc_dir = datasets.shared_data_dir() / "gdsc"
    ids = pd.read_csv(ID_TABLE, dtype={"gdsc_id": str}).set_index("gdsc_id")
    by_cid, tgsa_cid, tgsa_name = read_smiles_sources(gdsc_dir)
    rows = []
    for drug in drug_ids:
        key = drug.split(":", 1)[-1].rstrip("@")
        name, cid = (ids.loc[key, "name"], int(ids.loc[key, "pubchem_cid"])) if key in ids.index else (None, None)
        smiles, source = None, None
        for src, table, k in (("deepcdr_cid", by_cid, cid), ("tgsa_cid", tgsa_cid, cid),
                              ("tgsa_name", tgsa_name, _norm(name) if name else None)):
            if k is not None and k in table.index:
                smiles, source = table[k], src
                break
        rows.append({"drug": drug, "name": name, "pubchem_cid": cid, "smiles": smiles, "smiles_source": source})
    return pd.DataFrame(rows).set_index("drug")


def response_pairs(ic50: pd.DataFrame, drugs: pd.DataFrame) -> pd.DataFrame:
    """Long table of tested (line, drug) pairs whose drug has SMILES: ``line``, ``drug``, ``compound``
    (PubChem CID, the grouping for unseen-drug splits: several GDSC ids share a compound), ``ln_ic50``."""
    mapped = drugs.index[drugs["smiles"].notna()]
    long = ic50[[d for d in ic50.columns if d in set(mapped)]].stack().rename("ln_ic50").reset_index()
    long.columns = ["line", "drug", "ln_ic50"]
    long["compound"] = drugs.loc[long["drug"], "pubchem_cid"].to_numpy().astype(np.int64)
    return long
