"""Checkpoints: a folder holding ``model.safetensors`` (weights), ``config.json`` (architecture and
metadata) and ``vocab.json`` (the gene vocabulary); optionally ``train_state.safetensors`` +
``train_state.json`` (optimizer, scheduler, step) for resuming. Loading reads tensors and JSON only —
nothing is ever unpickled. Writes go to a temporary sibling folder that replaces the target in one
rename, so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from foundation.errors import CheckpointError

FORMAT = "cellvq-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("model.safetensors", "config.json", "vocab.json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a model's ``config`` dict."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify_config_hash(path: Path, meta: dict[str, Any], trained: dict[str, Any] | None = None) -> None:
    """Raise CheckpointError when config.json's ``config`` no longer matches its recorded ``config_sha256``."""
    recorded = meta.get("config_sha256")
    if recorded is None or "config" not in meta or config_sha256(meta["config"]) == recorded:
        return  # checkpoints saved before the hash existed still load
    diff = ""
    if trained is not None:
        changed = sorted(k for k in set(trained) | set(meta["config"]) if trained.get(k) != meta["config"].get(k))
        diff = " Changed: " + ", ".join(f"{k} (trained {trained.get(k)!r}, now {meta['config'].get(k)!r})" for k in changed) + "."
    raise CheckpointError(
        f"checkpoint {path}: config.json was edited after training (its config no longer matches config_sha256).{diff} "
        "The weights only work with the configuration they were trained with: restore the original config.json "
        "(re-download or re-save the model) instead of editing it."
    )


def write_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    vocab_json: dict[str, Any],
    train_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Atomically write a checkpoint folder at ``path`` (replacing an existing one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        st_meta = {"format": FORMAT}
        if "config" in config:
            st_meta["config"] = json.dumps(config["config"], sort_keys=True)
        save_file(tensors, str(tmp / "model.safetensors"), metadata=st_meta)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
        if "config" in config:
            meta["config_sha256"] = config_sha256(config["config"])
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        (tmp / "vocab.json").write_text(json.dumps(vocab_json))
        if train_state is not None:
            t_tensors, t_meta = train_state
            save_file({k: v.detach().cpu().contiguous() for k, v in t_tensors.items()}, str(tmp / "train_state.safetensors"))
            (tmp / "train_state.json").write_text(json.dumps(t_meta, indent=2))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read (state_dict, config, vocab_json); raise CheckpointError with the fix on any problem."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a CellVQ checkpoint folder (expected a folder with {', '.join(REQUIRED)}); "
            "pass the folder written by CellVQ.save() or `cellvq pretrain --out`."
        )
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is incomplete: missing {', '.join(missing)}. Re-save the model or point at "
            "a complete checkpoint folder."
        )
    try:
        config = json.loads((path / "config.json").read_text())
        vocab = json.loads((path / "vocab.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: config.json or vocab.json is not valid JSON ({exc}); the file is corrupt — re-save or re-download it.") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a CellVQ checkpoint (config.json format={config.get('format')!r}, expected {FORMAT!r}). "
            "Is this a checkpoint of another model (e.g. CellVQ-Graph)?"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {config['format_version']}, newer than this CellVQ ({FORMAT_VERSION}); upgrade cellvq.")
    try:
        state = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: model.safetensors cannot be read ({exc}); the file is corrupt or truncated — re-save or re-download it.") from exc
    verify_config_hash(path, config, _trained_config(path / "model.safetensors"))
    return state, config, vocab


def _trained_config(weights: Path) -> dict[str, Any] | None:
    """The config recorded inside model.safetensors' metadata at save (None for older checkpoints)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        raw = (f.metadata() or {}).get("config")
    return json.loads(raw) if raw else None


def read_train_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    path = Path(path)
    if not (path / "train_state.safetensors").is_file():
        return None
    return load_file(str(path / "train_state.safetensors")), json.loads((path / "train_state.json").read_text())


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer's state into tensors + JSON (no pickling)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
