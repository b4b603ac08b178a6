"""The corpus manifest shipped with the checkpoint agrees with the checkpoint and with the data on disk."""

from __future__ import annotations

import pandas as pd

import foundation
from foundation.checkpoint import sha256_file
from foundation.corpus import MANIFEST
from foundation.datasets import shared_data_dir


def test_manifest_names_the_training_files_and_their_bytes():
    model = foundation.load_pretrained()
    df = pd.read_csv(foundation.model.pretrained_path().parent / MANIFEST, sep="\t", keep_default_na=False)
    train = df[df["role"] == "train"]
    assert sorted(train["file"].map(lambda f: f.split("/")[-1])) == sorted(model.metadata["corpus"])
    shared = shared_data_dir()
    for row in train.itertuples():
        assert sha256_file(shared / row.file) == row.sha256, f"{row.file} changed since the manifest was written"
    held = df[df["role"] == "held-out"]
    # the minimum: whole held-out datasets from outside blood and from another technology
    assert (~held["tissue"].str.contains("blood")).sum() >= 2
    assert (~held["technology"].str.startswith("10x")).sum() >= 2
    assert "corpus/moncada2020_pdac_card.h5ad" in set(held["file"])
    # files sharing cells with a training file (Kang 2018) are never offered as held-out sets
    assert (df[df["file"].str.contains("kang2018")]["role"] == "overlaps-train").all()
    assert not df["file"].str.contains("holdout/").any()
