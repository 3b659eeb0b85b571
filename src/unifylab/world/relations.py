"""GenEval's spatial relations between two boxes, the one rule every world's positions are judged by."""

from __future__ import annotations

from typing import Any

import numpy as np

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
POSITION_THRESHOLD = 0.1


def geneval_relations(
    centre_a: np.ndarray, centre_b: np.ndarray, sizes: Any, margin: float = POSITION_THRESHOLD
) -> set[str]:
    """GenEval's relation rule for two boxes by their centres (x, y; y grows downwards) and summed sizes (a number,
    or per axis): the offset beyond `margin` x the summed size must carry over half of the offset's direction."""
    offset = np.asarray(centre_a, dtype=np.float64) - np.asarray(centre_b, dtype=np.float64)
    beyond = np.maximum(np.abs(offset) - margin * np.asarray(sizes, dtype=np.float64), 0) * np.sign(offset)
    if np.all(np.abs(beyond) < 1e-3):
        return set()
    dx, dy = beyond / np.linalg.norm(offset)
    out = set()
    if dx < -0.5:
        out.add("left of")
    if dx > 0.5:
        out.add("right of")
    if dy < -0.5:
        out.add("above")
    if dy > 0.5:
        out.add("below")
    return out
