"""Scorers: a task's items and a model's outputs -> (score, reasons), exactly, by the world's parser and checks."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from unifylab.eval import reasoning as R
from unifylab.eval.generators import Item
from unifylab.world import DEFAULT, class_of_dict, world_of, world_of_canvas
from unifylab.world.english import NUMBER_WORDS
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes.parse import parse_batch
from unifylab.world.shapes.scene import Scene

_NUMBERS = {w: str(k) for k, w in enumerate(NUMBER_WORDS)}


def normalise(text: str) -> str:
    """Lower case, no punctuation or articles, number words as digits: 'Three.' -> '3', 'a red' -> 'red'."""
    words = re.sub(r"[^\w\s,]", " ", text.lower()).replace(",", " , ").split()
    words = [_NUMBERS.get(w, w) for w in words if w not in ("a", "an", "the")]
    return " ".join(words).replace(" , ", ", ").strip(" ,")


def parse_letter(text: str) -> str | None:
    """The option letter a reply chooses: a standalone A-D (not the article 'a' inside a sentence) or 'A.'."""
    t = text.strip()
    m = re.match(r"^\(?([A-Da-d])\)?(?:[.:)\s]|$)", t)
    if m and (len(t) <= 3 or t[1:2] in ".:)"):
        return m.group(1).upper()
    m = re.search(r"\b(?:answer|option)\s*(?:is\s*)?:?\s*\(?([A-D])\b", t, re.IGNORECASE)
    return m.group(1).upper() if m else None


def score_exact(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    got, want = normalise(texts[0]), normalise(str(item.target))
    return (1.0, []) if got == want else (0.0, [f"answered {texts[0]!r}, expected {item.target!r}"])


def score_caption(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    verdict = class_of_dict(item.target).check_caption(texts[0], item.target)
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_caption_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the caption's objects against the scene."""
    objs = L.parse_caption(texts[0])
    if objs is None:
        return 0.0, [f"caption {texts[0]!r} names no object in a readable form"]
    return L.cell_credit(objs, Scene.from_dict(item.meta["scene"]).objects)


def score_mc(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    reasons = []
    for k, (t, want) in enumerate(zip(texts, item.target)):
        got = parse_letter(t)
        if got != want:
            reasons.append(f"rotation {k}: answered {t!r} ({got or 'no letter'}), expected {want}")
    return (0.0 if reasons else 1.0), reasons


def score_image(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    req = item.images[0]
    world = world_of(req.world) if req.world is not None else world_of_canvas((DEFAULT, req.size, req.grid))
    parsed = world.parse(np.stack(images[:1]))[0]
    verdict = world.check_target(parsed, item.target)
    item.meta["parsed"] = parsed.to_dict()
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_image_strict(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """GenEval's rules plus one: the image holds no object beyond those the prompt asks for (GenEval ignores extra
    objects, so clutter can pass; here it fails)."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    spec = L.Spec.from_dict(item.target)
    if spec.max_objects is None:
        spec = replace(spec, max_objects=sum(r.count for r in spec.include))
    verdict = L.satisfies(parsed, spec)
    item.meta["parsed"] = parsed.to_dict()
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_image_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the parsed image against the prompted scene."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    return L.cell_credit(parsed.objects, Scene.from_dict(item.meta["scene"]).objects)


def score_verify(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Poll the drawn image with the item's yes/no questions, answered exactly on the parsed scene."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    reasons = [
        f"{q['question']} expected {q['answer']}, the image says {got}"
        for q in item.target
        if (got := R.verify(parsed, q["question"])) != q["answer"]
    ]
    return (0.0 if reasons else 1.0), reasons


def score_described(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """The model's description of its own drawing shows the fact's answer (one object of the thing's shape and
    colour, one object of the mixed colour, as many objects as the sum)."""
    objs = L.parse_caption(texts[0])
    got = None if objs is None else K.FACTS[item.meta["fact"]].read(objs)
    if got == item.target:
        return 1.0, []
    return 0.0, [f"described its image as {texts[0]!r}, which shows {got or 'no answer'}, expected {item.target}"]


def score_consistent(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """The answer about the model's own drawing against the parser's reading of that drawing."""
    parsed = parse_batch(np.stack(images[:1]), item.images[0].grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    truth = R.verify(parsed, item.target)
    got = normalise(texts[0])
    return (1.0, []) if got == truth else (0.0, [f"answered {texts[0]!r}; its drawing says {truth}"])
