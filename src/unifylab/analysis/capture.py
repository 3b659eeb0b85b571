"""Hidden-state capture for any protocol model with `hidden_states`: batched and streamed, so only one batch of
per-layer states is in memory at a time; pooled per-modality features for alignment; optional shards on disk."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.eval.protocol import HiddenRequest, HiddenStates, hidden_states_of
from unifylab.io import guard_output, save_tensors
from unifylab.world import CAPTION_QUESTION, WorldConfig, world_of


def scene_requests(kind: str, world: WorldConfig, n: int, seed: int = 0) -> list[HiddenRequest]:
    """n paired image/text inputs from the world: `und` = image, then the caption question and its true caption;
    `gen` = a t2i prompt, then its true image."""
    rng, w = np.random.default_rng([seed, 3]), world_of(world)
    out = []
    for _ in range(n):
        scene = w.sample(rng)
        if kind == "und":
            out.append(HiddenRequest("und", CAPTION_QUESTION, w.render(scene), w.caption(scene, rng)))
        else:
            out.append(HiddenRequest("gen", w.prompt(scene, rng), w.render(scene)))
    return out


def stream_states(
    model: Any, requests: list[HiddenRequest], batch: int = 64, attention: bool = False
) -> Iterator[tuple[HiddenRequest, HiddenStates]]:
    """(request, states) pairs, computed `batch` requests at a time (with attention outputs where the model gives
    them)."""
    fn = hidden_states_of(model)
    for i in range(0, len(requests), batch):
        chunk = requests[i : i + batch]
        yield from zip(chunk, fn(chunk, attention=True) if attention else fn(chunk))


@dataclass
class Pooled:
    """Mean-pooled states per layer: image [layers, N, D] and text [layers, N, D]."""

    image: torch.Tensor
    text: torch.Tensor


def pooled_part(model: Any, requests: list[HiddenRequest], part: str, batch: int = 64) -> torch.Tensor:
    """Each sequence's `part` ('image' or 'text' content tokens), mean-pooled at every layer: [layers, N, D]."""
    out = []
    for _, s in stream_states(model, requests, batch):
        if not bool(s.masks[part].any()):
            raise ValueError(f"alignment needs {part} content tokens in every sequence")
        out.append(s.layers[:, s.masks[part]].mean(1))
    return torch.stack(out, 1)


def pooled_features(model: Any, requests: list[HiddenRequest], batch: int = 64) -> Pooled:
    """Each sequence's image tokens and content text tokens, mean-pooled separately at every layer."""
    image, text = [], []
    for _, s in stream_states(model, requests, batch):
        if not (bool(s.masks["image"].any()) and bool(s.masks["text"].any())):
            raise ValueError("alignment needs sequences with both image and text content tokens")
        image.append(s.layers[:, s.masks["image"]].mean(1))
        text.append(s.layers[:, s.masks["text"]].mean(1))
    return Pooled(torch.stack(image, 1), torch.stack(text, 1))


def save_states(
    model: Any, requests: list[HiddenRequest], folder: Path, batch: int = 64, force: bool = False
) -> list[Path]:
    """Write every sequence's per-layer states, masks and (for models that give them) attention outputs to
    safetensors shards (one per batch) in a new folder (an existing non-empty one only with `force`)."""
    attention = "attention" in inspect.signature(hidden_states_of(model)).parameters
    folder = Path(folder)
    guard_output(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("states-*.safetensors"):  # a forced re-run replaces the whole set
        old.unlink()
    shards = []
    for b, i in enumerate(range(0, len(requests), batch)):
        tensors: dict[str, torch.Tensor] = {}
        for k, (_, s) in enumerate(stream_states(model, requests[i : i + batch], batch, attention)):
            tensors[f"{i + k}.layers"] = s.layers.contiguous()
            if s.attention is not None:
                tensors[f"{i + k}.attention"] = s.attention.contiguous()
            for name, m in s.masks.items():
                tensors[f"{i + k}.{name}"] = m.contiguous()
        shards.append(folder / f"states-{b:05d}.safetensors")
        save_tensors(tensors, shards[-1])
    return shards
