"""Build an image tokenizer of any kind for a world, measure it on held-out renders and save it whole
(`unifylab tokenizer train-image`): vq is trained, grid and patch need no training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unifylab.config import build
from unifylab.errors import UserError
from unifylab.io import atomic_folder, write_text_atomic
from unifylab.tokenize.image import image_tokenizer, tokenizer_kinds
from unifylab.train.vq import METRICS, VQTrainConfig, oracle_metrics, save_trained, train_vq
from unifylab.world import WorldChoice

CONTEXT = "tokenizer train-image options"


def build_image_tokenizer(
    out: Path,
    *,
    kind: str,
    world: dict[str, Any],
    n_val: int,
    seed: int,
    vq: dict[str, Any] | None = None,
    patch: int = 4,
    source: str = "pixels",
    vq_folder: Path | None = None,
    device: str = "cpu",
    force: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Write the tokenizer of `kind` for the `world` settings (a world config's fields) into `out` (atomically: a
    failure leaves any earlier folder as it was) with its metrics.json, and return the metrics. `vq` holds
    VQTrainConfig's model and optimisation fields; `progress(step, loss)` follows vq training."""
    buildable = [k for k in tokenizer_kinds() if k != "permuted"]  # permuted: a training option, not a folder kind
    if kind not in buildable:
        raise UserError(f"--kind: unknown image tokenizer {kind!r}; expected one of {', '.join(buildable)}")
    if kind == "vq":
        cfg = build(VQTrainConfig, {**(vq or {}), "world": world, "n_val": n_val, "seed": seed}, CONTEXT)
        with atomic_folder(out, force) as tmp:
            tok, metrics = train_vq(cfg, device, progress=progress)
            save_trained(tok, cfg, metrics, tmp)
        return metrics
    world_cfg = build(WorldChoice, {"world": world}, CONTEXT).world
    tok = image_tokenizer(kind, world=world_cfg, patch=patch, source=source, vq=vq_folder)
    metrics = oracle_metrics(tok, world_cfg, n_val, seed)
    with atomic_folder(out, force) as tmp:
        tok.save_pretrained(tmp)
        write_text_atomic(tmp / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics
