"""Issue 15 item 7: an edited config.json is caught at load (shipped checkpoint and a fresh save)."""

import json
import shutil
from pathlib import Path

import pytest

import foundation
from foundation.errors import CheckpointError
from foundation.model import CellVQ

SHIPPED = Path(foundation.__file__).parent / "pretrained" / "cellvq-tiny-human"


def _edit(path: Path, key: str, value) -> None:
    meta = json.loads((path / "config.json").read_text())
    meta["config"][key] = value
    (path / "config.json").write_text(json.dumps(meta, indent=2))


def test_shipped_edited_max_tokens_is_caught(tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    shutil.copytree(SHIPPED, ok)
    shutil.copytree(SHIPPED, bad)
    assert CellVQ.load(ok).config.max_tokens == 256
    _edit(bad, "max_tokens", 1024)
    with pytest.raises(CheckpointError, match="config_sha256.*restore the original config.json"):
        CellVQ.load(bad)


def test_fresh_save_names_the_changed_field(tmp_path):
    CellVQ.load(SHIPPED).save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["config_sha256"]
    CellVQ.load(tmp_path / "m")
    _edit(tmp_path / "m", "max_tokens", 1024)
    with pytest.raises(CheckpointError, match=r"max_tokens \(trained 256, now 1024\)"):
        CellVQ.load(tmp_path / "m")


def test_old_checkpoint_without_hash_still_loads(tmp_path):
    shutil.copytree(SHIPPED, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config_sha256"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    assert CellVQ.load(tmp_path / "old").config.max_tokens == 256
