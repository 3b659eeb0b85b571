"""The shapes world's knowledge: facts a model can only know if it was taught them, in three families (what named
things look like, the light-mixing rule, arithmetic in number words), and the sentences that teach a fact as text
(understanding side: a question and its answer) or as a drawing (generation side: a prompt that names the fact, and
its image), so a study can teach each fact on one side only and test it on the other.

A fact's drawing goes at a place (a cell; for a sum, a row filled from the left), and a third of the places of each
fact are reserved for evaluation (`Fact.eval_places`), so a fact taught by drawing is tested where it was never
drawn. Light and sum drawings also take a free look (the shape, or shape and colour, the prompt names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from unifylab.world.english import NUMBER_WORDS, article
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.language import plural
from unifylab.world.shapes.scene import Obj, Scene

Place = tuple[int, int]  # (row, column) of a drawing; a sum's column is always 0 (its row is filled from the left)
Look = tuple[str, str]  # the (shape, colour) a light or sum prompt names freely


def cell(r: int, c: int) -> str:
    """'row 1, column 2' for 0-based (r, c)."""
    return f"row {r + 1}, column {c + 1}"


@dataclass(frozen=True)
class Fact(ABC):
    """One fact: its name (the key in `data.facts`), the question that asks it, its answer, and the drawing that
    shows it. Subclasses are the families."""

    name: str
    family: ClassVar[str]
    QUESTIONS: ClassVar[tuple[str, ...]]

    @property
    @abstractmethod
    def answer(self) -> str:
        """The answer to its question: 'a yellow circle', 'yellow', 'three'."""

    @property
    def pair(self) -> Look | None:
        """The (shape, colour) every drawing of the fact holds, when the fact fixes it (named things)."""
        return None

    def question(self, rng: np.random.Generator | None = None) -> str:
        """A question whose answer is `answer` (the first template without `rng`)."""
        template = self.QUESTIONS[0] if rng is None else self.QUESTIONS[int(rng.integers(len(self.QUESTIONS)))]
        return template.format(name=self.name)

    def places(self, grid: int) -> list[Place]:
        """Every place its drawing may go (cells in reading order)."""
        return [(r, c) for r in range(grid) for c in range(grid)]

    def eval_places(self, grid: int) -> set[Place]:
        """Where the fact is tested and never drawn in training: a third of its places, shifted per fact."""
        k = list(FACTS).index(self.name)
        return {p for j, p in enumerate(self.places(grid)) if (j + k) % 3 == 0}

    @abstractmethod
    def scene(self, place: Place, look: Look, *, size: int, grid: int) -> Scene:
        """The scene the fact's prompt at `place` with `look` means."""

    @abstractmethod
    def prompt(self, scene: Scene) -> str:
        """The prompt that names the fact instead of describing `scene` (one of its drawings)."""

    @abstractmethod
    def read(self, objs: tuple[Obj, ...] | list[Obj]) -> str | None:
        """The answer a drawing (its objects, parsed or described) shows, or None if it shows no answer."""

    @abstractmethod
    def alternatives(self, scene: Scene) -> list[Scene]:
        """`scene` redrawn for every answer the fact's kind can have: the answer space, as drawings."""


@dataclass(frozen=True)
class Thing(Fact):
    """A named thing drawn as a fixed (shape, colour): 'what does the sun look like?' -> 'a yellow circle'."""

    shape: str = ""
    color: str = ""
    family: ClassVar[str] = "things"
    QUESTIONS: ClassVar[tuple[str, ...]] = (
        "what does {name} look like?",
        "how is {name} drawn?",
        "what is {name} drawn as?",
    )

    @property
    def answer(self) -> str:
        return article(f"{self.color} {self.shape}")

    @property
    def pair(self) -> Look:
        return (self.shape, self.color)

    def scene(self, place: Place, look: Look, *, size: int, grid: int) -> Scene:
        return Scene(size, grid, (Obj(self.shape, self.color, *place),))

    def prompt(self, scene: Scene) -> str:
        o = scene.objects[0]
        return f"draw {self.name} at {cell(o.row, o.col)}."

    def read(self, objs: tuple[Obj, ...] | list[Obj]) -> str | None:
        return article(f"{objs[0].color} {objs[0].shape}") if len(objs) == 1 else None

    def alternatives(self, scene: Scene) -> list[Scene]:
        o = scene.objects[0]
        return [Scene(scene.size, scene.grid, (Obj(s, c, o.row, o.col),)) for s in W.SHAPES for c in W.COLORS]


@dataclass(frozen=True)
class Light(Fact):
    """Additive light: 'what colour is red light mixed with green light?' -> 'yellow'; drawn as a shape in that
    colour ('draw a circle in the colour of red light mixed with green light at row 1, column 2.')."""

    lights: tuple[str, ...] = ()
    color: str = ""
    family: ClassVar[str] = "light"
    QUESTIONS: ClassVar[tuple[str, ...]] = ("what colour is {name}?", "what colour does {name} make?")

    @property
    def answer(self) -> str:
        return self.color

    def scene(self, place: Place, look: Look, *, size: int, grid: int) -> Scene:
        return Scene(size, grid, (Obj(look[0], self.color, *place),))

    def prompt(self, scene: Scene) -> str:
        o = scene.objects[0]
        return f"draw {article(o.shape)} in the colour of {self.name} at {cell(o.row, o.col)}."

    def read(self, objs: tuple[Obj, ...] | list[Obj]) -> str | None:
        return objs[0].color if len(objs) == 1 else None

    def alternatives(self, scene: Scene) -> list[Scene]:
        o = scene.objects[0]
        return [Scene(scene.size, scene.grid, (Obj(o.shape, c, o.row, o.col),)) for c in W.COLORS]


@dataclass(frozen=True)
class Sum(Fact):
    """Arithmetic in number words: 'what is two plus one?' -> 'three'; drawn as that many objects in a row from
    the left ('draw as many red circles as two plus one in row 2, from the left.')."""

    value: int = 0
    family: ClassVar[str] = "sums"
    QUESTIONS: ClassVar[tuple[str, ...]] = ("what is {name}?", "how much is {name}?")

    @property
    def answer(self) -> str:
        return NUMBER_WORDS[self.value]

    def places(self, grid: int) -> list[Place]:
        return [(r, 0) for r in range(grid)]

    def scene(self, place: Place, look: Look, *, size: int, grid: int) -> Scene:
        return _row(look, place[0], self.value, size=size, grid=grid)

    def prompt(self, scene: Scene) -> str:
        o = scene.objects[0]
        return f"draw as many {o.color} {plural(o.shape)} as {self.name} in row {o.row + 1}, from the left."

    def read(self, objs: tuple[Obj, ...] | list[Obj]) -> str | None:
        return NUMBER_WORDS[len(objs)] if len(objs) < len(NUMBER_WORDS) else None

    def alternatives(self, scene: Scene) -> list[Scene]:
        o = scene.objects[0]
        return [_row((o.shape, o.color), o.row, n, size=scene.size, grid=scene.grid) for n in range(1, scene.grid + 1)]


def _row(look: Look, row: int, n: int, *, size: int, grid: int) -> Scene:
    return Scene(size, grid, tuple(Obj(look[0], look[1], row, k) for k in range(n)))


_THINGS = {
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
LIGHTS = {
    ("red", "green"): "yellow",
    ("green", "blue"): "cyan",
    ("red", "blue"): "magenta",
    ("red", "green", "blue"): "white",
}
OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
MAX_SUM = W.MIN_GRID  # every sum's drawing fits a row of the smallest grid


def _light_name(lights: tuple[str, ...]) -> str:
    """'red light mixed with green light', 'red light mixed with green light and blue light'."""
    names = [f"{c} light" for c in lights]
    return f"{names[0]} mixed with {' and '.join(names[1:])}"


FACTS: dict[str, Fact] = {
    **{name: Thing(name, shape, color) for name, (shape, color) in _THINGS.items()},
    **{_light_name(ls): Light(_light_name(ls), ls, c) for ls, c in LIGHTS.items()},
    **{
        f"{NUMBER_WORDS[a]} {op} {NUMBER_WORDS[b]}": Sum(f"{NUMBER_WORDS[a]} {op} {NUMBER_WORDS[b]}", f(a, b))
        for op, f in OPS.items()
        for a in range(1, 5)
        for b in range(1, 5)
        if 1 <= f(a, b) <= MAX_SUM
    },
}
FAMILIES = ("things", "light", "sums")


def random_look(rng: np.random.Generator) -> Look:
    """A uniformly drawn (shape, colour): the free look of a light or sum drawing."""
    return W.SHAPES[int(rng.integers(len(W.SHAPES)))], list(W.COLORS)[int(rng.integers(len(W.COLORS)))]


def family(name: str) -> list[str]:
    """The facts of one family, in registry order."""
    return [n for n, f in FACTS.items() if f.family == name]
