"""Matrix-based Renyi entropy of token states (how spread a sequence's representations are), its trajectory over
depth for text-only, image-only and mixed inputs, and the response-entropy proxy H(prompt + response) - H(prompt)
that separates text answers from drawn images ("pseudo-unification")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from unifylab.analysis.capture import stream_states
from unifylab.eval.protocol import HiddenRequest, ImageRequest, TextRequest
from unifylab.world import CAPTION_QUESTION, WorldConfig, world_of


def renyi_entropy(states: torch.Tensor, alpha: float = 1.01) -> float:
    """S_alpha = log(sum_i lambda_i^alpha) / (1 - alpha), natural log, over the eigenvalues of the trace-normalised
    Gram matrix of L2-normalised token states [n, D]: 0 when all tokens point the same way, log n when orthogonal."""
    if alpha <= 0 or alpha == 1:
        raise ValueError(f"alpha must be positive and not 1 (use 1.01 for the Shannon limit), got {alpha}")
    z = torch.nn.functional.normalize(states.double(), dim=1)
    gram = z @ z.T
    lam = torch.linalg.eigvalsh(gram / gram.trace()).clamp_min(0)
    return float(torch.log((lam**alpha).sum()) / (1 - alpha))


def _masked(layers: torch.Tensor, mask: torch.Tensor, alpha: float) -> list[float]:
    return [renyi_entropy(layers[j][mask], alpha) for j in range(layers.shape[0])]


def _inputs(world: WorldConfig, n: int, seed: int) -> dict[str, list[HiddenRequest]]:
    rng, w = np.random.default_rng([seed, 7]), world_of(world)
    text_only, image_only, mixed = [], [], []
    for _ in range(n):
        scene = w.sample(rng)
        image = w.render(scene)
        text_only.append(HiddenRequest("gen", w.prompt(scene, rng)))
        image_only.append(HiddenRequest("und", "", image))
        mixed.append(HiddenRequest("und", CAPTION_QUESTION, image, w.caption(scene, rng)))
    return {"text": text_only, "image": image_only, "mixed": mixed}


def trajectories(
    model: Any, world: WorldConfig, n: int = 64, alpha: float = 1.01, seed: int = 0, batch: int = 64
) -> list[dict[str, Any]]:
    """Rows {input: text|image|mixed, layer, entropy, normalised, items}: mean entropy of each sequence's content
    tokens per layer; `normalised` divides by log(tokens), the value for orthogonal tokens, so inputs of different
    length compare; `items` holds each sequence's normalised value (one per scene, the same scenes per input)."""
    out = []
    for name, reqs in _inputs(world, n, seed).items():
        per_layer: list[list[float]] = []
        norm: list[list[float]] = []
        for _, s in stream_states(model, reqs, batch):
            mask = s.masks["text"] | s.masks["image"]
            h = _masked(s.layers, mask, alpha)
            per_layer.append(h)
            norm.append([x / math.log(int(mask.sum())) for x in h])
        items = np.asarray(norm).T  # [layers, sequences]
        for j, (m, z) in enumerate(zip(np.mean(per_layer, 0), np.mean(norm, 0))):
            row = {"input": name, "layer": j, "entropy": float(m), "normalised": float(z)}
            out.append({**row, "items": [round(float(x), 5) for x in items[j]]})
    return out


def response_entropy(
    model: Any, world: WorldConfig, n: int = 64, alpha: float = 1.01, seed: int = 0, batch: int = 64
) -> list[dict[str, Any]]:
    """Rows {response: text|image, layer, delta, n, items}: mean H(prompt + response) - H(prompt) over the model's
    own answers to the caption question and its own drawings of t2i prompts, and per scene (None: an empty
    answer)."""
    rng, w = np.random.default_rng([seed, 11]), world_of(world)
    scenes = [w.sample(rng) for _ in range(n)]
    images = [w.render(s) for s in scenes]
    prompts = [w.prompt(s, rng) for s in scenes]
    answers = model.generate_text([TextRequest(CAPTION_QUESTION, im) for im in images])
    drawn = model.generate_images([ImageRequest(p, world, seed=i) for i, p in enumerate(prompts)])
    reqs = {
        "text": [HiddenRequest("und", CAPTION_QUESTION, im, a) for im, a in zip(images, answers)],
        "image": [HiddenRequest("gen", p, im) for p, im in zip(prompts, drawn)],
    }
    out = []
    for name, rs in reqs.items():
        deltas: list[list[float] | None] = []  # per scene; None: an empty answer has no response entropy
        for _, s in stream_states(model, rs, batch):
            prompt = s.masks["prompt"]
            full = prompt | s.masks["response"]
            if not bool(s.masks["response"].any()):
                deltas.append(None)
                continue
            deltas.append([a - b for a, b in zip(_masked(s.layers, full, alpha), _masked(s.layers, prompt, alpha))])
        kept = [d for d in deltas if d is not None]
        for j, d in enumerate(np.mean(kept, 0) if kept else []):
            items = [None if x is None else round(float(x[j]), 5) for x in deltas]
            out.append({"response": name, "layer": j, "delta": float(d), "n": len(kept), "items": items})
    return out
