"""The shapes world's encyclopedia: named things and the (shape, colour) each is drawn as, and the sentences that
teach a fact as text (understanding side: a question and its answer) or as a drawing (generation side: a prompt
that names the thing, and its image), so a study can teach each fact on one side only and test it on the other.
"""

from __future__ import annotations

import numpy as np

from unifylab.world.language import article, t2i_prompt
from unifylab.world.scene import Obj, Scene

# Facts a model can only know if it was taught them. No pair is one of the default held-out pairs.
FACTS: dict[str, tuple[str, str]] = {
    "the sun": ("circle", "yellow"),
    "the moon": ("ring", "white"),
    "the sea": ("square", "blue"),
    "a leaf": ("diamond", "green"),
    "a flame": ("triangle", "orange"),
    "a ruby": ("diamond", "red"),
    "a snowflake": ("cross", "white"),
    "a plum": ("circle", "magenta"),
    "the sky": ("square", "cyan"),
    "a lime": ("circle", "green"),
    "a tangerine": ("circle", "orange"),
    "a pine": ("triangle", "green"),
    "a lemon": ("diamond", "yellow"),
    "a brick": ("square", "red"),
    "an ice cube": ("square", "white"),
    "a violet": ("cross", "magenta"),
}
SIDES = ("both", "und", "gen", "none")  # where a fact is taught: text, drawings, both, or nowhere (the floor)
QUESTIONS = ("what does {name} look like?", "how is {name} drawn?", "what is {name} drawn as?")


def cell(r: int, c: int) -> str:
    """'row 1, column 2' for 0-based (r, c)."""
    return f"row {r + 1}, column {c + 1}"


def looks(name: str) -> str:
    """The answer to 'what does <name> look like?': 'a yellow circle'."""
    shape, color = FACTS[name]
    return article(f"{color} {shape}")


def fact_question(name: str, rng: np.random.Generator | None = None) -> str:
    """A question whose answer is `looks(name)` (the first template without `rng`)."""
    template = QUESTIONS[0] if rng is None else QUESTIONS[int(rng.integers(len(QUESTIONS)))]
    return template.format(name=name)


def draw_prompt(name: str, row: int, col: int) -> str:
    """A prompt that names the thing instead of describing it: 'draw the sun at row 1, column 2.'"""
    return f"draw {name} at {cell(row, col)}."


def fact_scene(name: str, row: int, col: int, size: int, grid: int) -> Scene:
    """The scene `draw_prompt(name, row, col)` means: the thing's (shape, colour) alone at that cell."""
    shape, color = FACTS[name]
    return Scene(size, grid, (Obj(shape, color, row, col),))


def rewrite_target(scene: Scene, rng: np.random.Generator) -> str:
    """The explicit prompt a named prompt rewrites to (the stepwise bridge): a t2i prompt of its scene."""
    return t2i_prompt(scene, rng)[0]


def eval_cells(name: str, grid: int) -> set[tuple[int, int]]:
    """The cells where a fact is tested and never drawn in training: a third of the grid, shifted per fact, so
    a fact taught by drawing is tested at cells it was never drawn at."""
    k = list(FACTS).index(name)
    return {(r, c) for r in range(grid) for c in range(grid) if (r * grid + c + k) % 3 == 0}
