"""Shipped checkpoints are found by name; an unknown name gets an error that lists the real ones."""

from __future__ import annotations

import pytest

import foundation
from foundation.errors import CheckpointError
from foundation.model import pretrained_names


def test_shipped_checkpoints_load_by_name():
    names = pretrained_names()
    assert "cellvq-tiny-human" in names
    model = foundation.load_pretrained(name="cellvq-tiny-human")
    assert model.metadata["name"] == "cellvq-tiny-human" and model.config.d_model == 64
    with pytest.raises(CheckpointError, match="cellvq-tiny-human"):
        foundation.load_pretrained(name="cellvq-nonexistent")
