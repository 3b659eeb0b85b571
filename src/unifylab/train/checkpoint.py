"""Atomic checkpoints: `checkpoints/step-N/` holds the model (safetensors), optimiser + scheduler + RNG states
(their tensors in `state.safetensors`, their structure in `state.json`: no pickle anywhere) and `trainer.json`;
written to a temp folder and renamed, keep-last-k, and a damaged latest checkpoint falls back to the one before it."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from unifylab.errors import UserError
from unifylab.io import save_tensors, write_text_atomic
from unifylab.layout import CHECKPOINTS as CKPT_DIR

MODEL, STATE, STATE_TREE, META = "model.safetensors", "state.safetensors", "state.json", "trainer.json"
LEGACY_STATE = "state.pt"  # pickle-format state of checkpoints before unifylab stored none


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    """A JSON-able tree for nested dicts / lists / tuples / scalars, with every tensor moved to `tensors` (saved as
    safetensors) and referenced by name; dict keys keep their types (optimizer state is keyed by int)."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone().contiguous()
        return {"tensor": name}, tensors
    if isinstance(obj, dict):
        return {"dict": [[flatten_state(k, tensors)[0], flatten_state(v, tensors)[0]] for k, v in obj.items()]}, tensors
    if isinstance(obj, (list, tuple)):
        return {"tuple" if isinstance(obj, tuple) else "list": [flatten_state(v, tensors)[0] for v in obj]}, tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}, tensors
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `flatten_state`."""
    ((kind, value),) = tree.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in value}
    if kind in ("list", "tuple"):
        items = [unflatten_state(v, tensors) for v in value]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return value
    raise ValueError(f"unknown node {kind!r} in {STATE_TREE}")


def rng_state() -> dict[str, Any]:
    """All RNG states as weights-only-loadable values (tensors, lists, ints, strings)."""
    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            *map(int, np_state[2:4]),
            float(np_state[4]),
        ],
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = s["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(
    run: Path, step: int, model_state: dict[str, torch.Tensor], state: dict[str, Any], meta: dict[str, Any], keep: int
) -> Path:
    """Write step-N atomically and prune all but the newest `keep`."""
    root = Path(run) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".step-{step}.", suffix=".tmp"))
    try:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, tmp / MODEL)
        tree, tensors = flatten_state(state)
        save_tensors(tensors, tmp / STATE)
        write_text_atomic(tmp / STATE_TREE, json.dumps(tree))
        write_text_atomic(tmp / META, json.dumps({**meta, "step": step}, indent=2) + "\n")
        final = root / f"step-{step}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for old in list_checkpoints(run)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders of interrupted writes are ignored)."""
    root = Path(run) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model state, optimiser/scheduler/RNG state, trainer meta); raises on any damage."""
    meta = json.loads((path / META).read_text())
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), int) for k in ("step", "tokens_seen")):
        raise ValueError(f"{META} lacks integer 'step' and 'tokens_seen'")
    model_state = load_file(str(path / MODEL))
    state = unflatten_state(json.loads((path / STATE_TREE).read_text()), load_file(str(path / STATE)))
    return model_state, state, meta


def latest_checkpoint(run: Path, warn: Any) -> tuple[Path, tuple[dict, dict, dict]] | None:
    """The newest checkpoint that loads; damaged newer ones are reported through `warn` and skipped. Checkpoints
    of an older unifylab (pickle state) are refused, not silently skipped (that would restart the run)."""
    for path in reversed(list_checkpoints(run)):
        if (path / LEGACY_STATE).is_file() and not (path / STATE).is_file():
            raise UserError(
                f"{path}: written by an older unifylab (pickle {LEGACY_STATE}, which this version never "
                "loads); finish the run with that version, or train again into a new --out"
            )
        try:
            return path, load_checkpoint(path)
        except Exception as e:  # truncated safetensors, bad JSON, corrupt zip: all mean "unusable"
            warn(
                f"checkpoint {path} is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                "falling back to the previous one"
            )
    return None
