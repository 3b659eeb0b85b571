"""Gradient conflict: per layer, the cosine between the understanding-loss gradient and the generation-loss
gradient on fixed batches, at every saved checkpoint of a run. Negative cosines mean the tasks pull a shared layer
in opposite directions, the argument for forking deep layers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from unifylab.data.forms import TASKS
from unifylab.errors import UserError
from unifylab.layout import RunFolder
from unifylab.models.hub import from_pretrained, load_tokenizers
from unifylab.tokenize.sequence import Packer
from unifylab.train.checkpoint import MODEL, list_checkpoints
from unifylab.train.config import load_config
from unifylab.train.data import Batches, SceneSource


def layer_of(name: str) -> str | None:
    """The depth group a parameter belongs to: 'embed', 'layer i' (trunk block i; branch block j of a fork counts
    at depth fork_layer + j) or 'head'; None for final norms."""
    if m := re.match(r"trunk\.(\d+)\.", name):
        return f"layer {int(m.group(1))}"
    if m := re.match(r"branches\.\d+\.(\d+)\.", name):
        return f"branch {int(m.group(1))}"
    if name.startswith(("embed", "patch_proj")):
        return "embed"
    if name.startswith(("head", "text_head", "image_head")):
        return "head"
    return None


def _cosines(
    model: torch.nn.Module, und: dict[str, torch.Tensor], gen: dict[str, torch.Tensor], fork: int
) -> dict[str, float | None]:
    grads = []
    for batch in (und, gen):
        model.zero_grad(set_to_none=True)
        out = model.loss(batch)
        (out.sum / out.count).backward()
        grads.append(
            {
                n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                for n, p in model.named_parameters()
            }
        )
    groups: dict[str, list[str]] = {}
    out: dict[str, float | None] = {}
    for name in grads[0]:
        g = layer_of(name)
        if g is not None and g.startswith("branch"):
            out[f"layer {fork + int(g.split()[1])}"] = None  # forked depth: each task has its own weights
        elif g is not None:
            groups.setdefault(g, []).append(name)
    for g, names in groups.items():
        a = torch.cat([grads[0][n].flatten() for n in names]).double()
        b = torch.cat([grads[1][n].flatten() for n in names]).double()
        na, nb = a.norm(), b.norm()
        out[g] = float(a @ b / (na * nb)) if na > 0 and nb > 0 else None  # None: a frozen or unused group
    return out


def gradient_conflict(run: Path, examples: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Rows {step, layer, depth, cosine} for every checkpoint of a `unifylab train` run and its final model."""
    folder = RunFolder(Path(run))
    run = folder.path
    if not folder.config.is_file():
        raise UserError(f"{run}: gradient conflict needs a `unifylab train` run folder (config.yaml and checkpoints)")
    cfg = load_config(folder.config, [])
    text, und, gen = load_tokenizers(run)
    model = from_pretrained(run)
    batches = Batches(cfg, Packer(text, und, gen, loss_on=cfg.data.loss_on), SceneSource(cfg))
    idx = np.arange(examples)
    und_tasks = [TASKS.index(t) for t in ("caption", "vqa")]  # about a scene's image, as t2i draws one
    und_batch = batches.collate(batches.samples("val", idx, np.array([und_tasks[i % len(und_tasks)] for i in idx])))
    gen_batch = batches.collate(batches.samples("val", idx, np.full(examples, TASKS.index("t2i"))))
    fork = model.cfg.trunk_layers
    points = [(int(p.name.split("-")[1]), load_file(str(p / MODEL))) for p in list_checkpoints(run)]
    final = int(folder.read_summary()["steps"]) if folder.finished else None
    if final is not None and all(s != final for s, _ in points):
        points.append((final, dict(model.state_dict())))
    rows = []
    for step, state in sorted(points, key=lambda x: x[0]):
        model.load_state_dict(state)
        model.train()
        for g, c in _cosines(model, und_batch, gen_batch, fork).items():
            depth = -1 if g == "embed" else (model.cfg.layers if g == "head" else int(g.split()[1]))
            rows.append({"step": step, "layer": g, "depth": depth, "cosine": c})
    rows.sort(key=lambda r: (r["step"], r["depth"]))
    return rows
