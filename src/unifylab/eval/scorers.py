"""The generic scorers: a task's items and a model's outputs -> (score, reasons), exactly, by the world's parser and
checks (a world's own scorers live with its tasks, `World.tasks`)."""

from __future__ import annotations

import re

import numpy as np

from unifylab.eval.generators import Item
from unifylab.world import class_of_dict, world_of
from unifylab.world.english import NUMBER_WORDS

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


def score_mc(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    reasons = []
    for k, (t, want) in enumerate(zip(texts, item.target)):
        got = parse_letter(t)
        if got != want:
            reasons.append(f"rotation {k}: answered {t!r} ({got or 'no letter'}), expected {want}")
    return (0.0 if reasons else 1.0), reasons


def score_image(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    world = world_of(item.images[0].world)
    parsed = world.parse(np.stack(images[:1]))[0]
    verdict = world.check_target(parsed, item.target)
    item.meta["parsed"] = parsed.to_dict()
    return (1.0 if verdict.ok else 0.0), verdict.reasons
