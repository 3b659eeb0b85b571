"""GenEval's schema on the shapes world: a requirement's validation and its line form, and GenEval's six tasks with
a ground-truth scene each (the class is a shape name; a scene fixes the canvas and grid the parser reads with)."""

from __future__ import annotations

from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.world.english import NUMBER_WORDS, article
from unifylab.world.relations import RELATIONS
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.language import Requirement, Spec, plural, relations
from unifylab.world.shapes.scene import Obj, Scene

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
_REQ_KEYS = {"class", "count", "color", "position"}
COUNT_RANGE = (2, 4)  # GenEval counts two to four objects


def req_to_dict(r: Requirement) -> dict[str, Any]:
    d: dict[str, Any] = {"class": r.shape, "count": r.count}
    if r.color is not None:
        d["color"] = r.color
    if r.position is not None:
        d["position"] = list(r.position)
    return d


def requirement(x: Any, where: str, n_before: int | None) -> Requirement:
    """Validate one include/exclude entry; `n_before` is how many includes precede it (None for excludes)."""
    if not isinstance(x, dict):
        raise UserError(f'{where}: expected an object like {{"class": "circle", "count": 1}}, got {x!r}')
    bad = set(x) - _REQ_KEYS
    if bad:
        raise UserError(f"{where}: unknown field(s) {sorted(bad)}; valid fields: {sorted(_REQ_KEYS)}")
    shape = x.get("class")
    if not isinstance(shape, str) or shape not in W.SHAPES:
        raise UserError(f"{where}.class: {shape!r} is not a shape of this world; expected one of {', '.join(W.SHAPES)}")
    count = x.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise UserError(f"{where}.count: expected a positive integer, got {count!r}")
    color = x.get("color")
    if color is not None and (not isinstance(color, str) or color not in W.COLORS):
        raise UserError(f"{where}.color: unknown colour {color!r}; expected one of {', '.join(W.COLORS)}")
    pos = x.get("position")
    position = None
    if pos is not None:
        if n_before is None:
            raise UserError(f"{where}.position: exclude entries cannot carry a position")
        ok = isinstance(pos, list) and len(pos) == 2 and pos[0] in RELATIONS and isinstance(pos[1], int)
        if not ok:
            raise UserError(
                f"{where}.position: expected [relation, include index] with relation one of "
                f"{', '.join(RELATIONS)}, got {pos!r}"
            )
        if not 0 <= pos[1] < n_before:
            raise UserError(f"{where}.position: index {pos[1]} must name an earlier include (0..{n_before - 1})")
        position = (pos[0], pos[1])
    return Requirement(shape=shape, color=color, count=count, position=position)


def spec_from_line(d: dict[str, Any], where: str) -> Spec:
    """A line's include and exclude lists as a spec; errors name `where` and the field."""
    inc, exc = d["include"], d.get("exclude", [])
    for name, val in (("include", inc), ("exclude", exc)):
        if not isinstance(val, list):
            raise UserError(f"{where}.{name}: expected a list of requirements, got {type(val).__name__}")
    include = tuple(requirement(x, f"{where}.include[{i}]", i) for i, x in enumerate(inc))
    exclude = tuple(requirement(x, f"{where}.exclude[{i}]", None) for i, x in enumerate(exc))
    return Spec(include, exclude)


def _objs(phrases: list[str]) -> str:
    return " and ".join(phrases)


def _place(size: int, grid: int, shapes: list[str], colors: list[str], rng: np.random.Generator) -> list[Obj]:
    cells = rng.choice(grid * grid, size=len(shapes), replace=False)
    return [Obj(s, c, int(k) // grid, int(k) % grid) for s, c, k in zip(shapes, colors, cells)]


def _task_item(tag: str, size: int, grid: int, rng: np.random.Generator) -> tuple[str, Spec, list[Obj]]:
    colors = list(W.COLORS)

    def shapes(k: int) -> list[str]:
        return [W.SHAPES[int(i)] for i in rng.choice(len(W.SHAPES), k, replace=False)]

    def palette(k: int) -> list[str]:
        return [colors[int(i)] for i in rng.choice(len(colors), k, replace=False)]

    def any_colors(k: int) -> list[str]:
        return [colors[int(i)] for i in rng.integers(0, len(colors), k)]

    if tag == "single_object":
        s = shapes(1)
        return article(s[0]), Spec((Requirement(s[0]),)), _place(size, grid, s, any_colors(1), rng)
    if tag == "two_object":
        s = shapes(2)
        spec = Spec((Requirement(s[0]), Requirement(s[1])))
        return _objs([article(x) for x in s]), spec, _place(size, grid, s, any_colors(2), rng)
    if tag == "counting":
        s = shapes(1)[0]
        n = int(rng.integers(COUNT_RANGE[0], min(COUNT_RANGE[1], grid * grid - 1) + 1))
        spec = Spec((Requirement(s, count=n),), (Requirement(s, count=n + 1),))
        return f"{NUMBER_WORDS[n]} {plural(s)}", spec, _place(size, grid, [s] * n, any_colors(n), rng)
    if tag == "colors":
        s, c = shapes(1), palette(1)
        return article(f"{c[0]} {s[0]}"), Spec((Requirement(s[0], c[0]),)), _place(size, grid, s, c, rng)
    if tag == "color_attr":
        s, c = shapes(2), palette(2)
        spec = Spec((Requirement(s[0], c[0]), Requirement(s[1], c[1])))
        text = _objs([article(f"{c[i]} {s[i]}") for i in range(2)])
        return text, spec, _place(size, grid, s, c, rng)
    if tag == "position":
        s, rel = shapes(2), RELATIONS[int(rng.integers(len(RELATIONS)))]
        while True:
            ref, obj = _place(size, grid, s, any_colors(2), rng)
            if rel in relations(obj, ref, size, grid):
                break
        spec = Spec((Requirement(s[0]), Requirement(s[1], position=(rel, 0))))
        return f"{article(s[1])} {rel} {article(s[0])}", spec, [ref, obj]
    raise UserError(f"unknown GenEval task {tag!r}; expected one of {', '.join(TAGS)}")


def items(
    n_per_task: int, seed: int, *, size: int, grid: int, tasks: tuple[str, ...] = TAGS
) -> list[tuple[str, str, Spec, Scene]]:
    """`n_per_task` prompts for each GenEval task: (tag, prompt, spec, a ground-truth scene that satisfies it)."""
    try:
        W.check_canvas(size, grid)
    except ValueError as e:
        raise UserError(f"--size/--grid: {e}") from None
    rng = np.random.default_rng(seed)
    out = []
    for tag in tasks:
        for _ in range(n_per_task):
            text, spec, objs = _task_item(tag, size, grid, rng)
            out.append((tag, f"an image of {text}", spec, Scene(size, grid, tuple(objs))))
    return out
