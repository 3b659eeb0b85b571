"""Scene <-> language for the shapes world: captions (and their inverse), questions, prompts, and `satisfies`.

Rows and columns are 0-based in scenes and 1-based in language ("row 1" is the top row). Spatial relations use
GenEval's meaning: object-box centres, offsets shrunk by 0.1 x the summed box sides, and a relation holds when the
normalised offset exceeds 0.5 along its axis (so a diagonal neighbour is both "left of" and "above").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.world.base import QA, Verdict
from unifylab.world.english import article
from unifylab.world.relations import RELATIONS, geneval_relations
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.scene import Obj, Scene


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x")) else "s")


def _box(obj: Obj, lay: W.Layout) -> tuple[np.ndarray, float]:
    side = W.box_side(lay.size, lay.grid, obj.size)
    o = lay.origins()
    off = lay.offset(obj.size)
    centre = np.array([o[obj.col] + off + side / 2, o[obj.row] + off + side / 2], dtype=np.float64)
    return centre, float(side)


def relations(a: Obj, b: Obj, size: int, grid: int) -> set[str]:
    """Relations of `a` relative to `b` ("left of" means a is left of b), with GenEval's geometry."""
    lay = W.Layout(size, grid)
    (ca, da), (cb, db) = _box(a, lay), _box(b, lay)
    return geneval_relations(ca, cb, da + db)


# ---------------------------------------------------------------------------------------------- specs and checks


@dataclass(frozen=True)
class Requirement:
    """At least `count` objects with the given attributes (None = any); `position` = (relation, include index)."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None
    row: int | None = None
    col: int | None = None
    count: int = 1
    position: tuple[str, int] | None = None

    def matches(self, o: Obj) -> bool:
        return all(
            want is None or want == got
            for want, got in (
                (self.shape, o.shape),
                (self.color, o.color),
                (self.size, o.size),
                (self.row, o.row),
                (self.col, o.col),
            )
        )

    def describe(self) -> str:
        """Human form, e.g. '2 red circles' or 'small blue square at row 1, column 2'."""
        words = [w for w in (self.size if self.size == "small" else None, self.color) if w]
        noun = self.shape or "object"
        noun = noun if self.count == 1 else plural(noun)
        text = " ".join([str(self.count), *words, noun]) if self.count != 1 else article(" ".join([*words, noun]))
        if self.row is not None or self.col is not None:
            r = "any row" if self.row is None else f"row {self.row + 1}"
            c = "any column" if self.col is None else f"column {self.col + 1}"
            text += f" at {r}, {c}"
        return text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in ("shape", "color", "size", "row", "col")}
        d = {k: v for k, v in d.items() if v is not None}
        d["count"] = self.count
        if self.position is not None:
            d["position"] = list(self.position)
        return d


@dataclass(frozen=True)
class Spec:
    """What a prompt asks for: all `include` requirements hold, no `exclude` one does (GenEval semantics),
    and, when `max_objects` is set, nothing beyond that many objects is drawn."""

    include: tuple[Requirement, ...] = ()
    exclude: tuple[Requirement, ...] = ()
    max_objects: int | None = None

    @classmethod
    def exact(cls, scene: Scene) -> Spec:
        """The spec of a fully specified prompt: exactly these objects in exactly these cells."""
        inc = tuple(Requirement(o.shape, o.color, o.size, o.row, o.col) for o in scene.objects)
        return cls(include=inc, max_objects=len(scene.objects))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "include": [r.to_dict() for r in self.include],
            "exclude": [r.to_dict() for r in self.exclude],
        }
        if self.max_objects is not None:
            d["max_objects"] = self.max_objects
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        def req(x: dict[str, Any]) -> Requirement:
            pos = x.get("position")
            return Requirement(
                x.get("shape"),
                x.get("color"),
                x.get("size"),
                x.get("row"),
                x.get("col"),
                int(x.get("count", 1)),
                (str(pos[0]), int(pos[1])) if pos else None,
            )

        return cls(
            tuple(req(x) for x in d.get("include", [])),
            tuple(req(x) for x in d.get("exclude", [])),
            d.get("max_objects"),
        )


def _listing(objs: list[Obj]) -> str:
    return "; ".join(o.describe() for o in objs) if objs else "nothing"


def cell_credit(got: list[Obj] | tuple[Obj, ...], want: list[Obj] | tuple[Obj, ...]) -> tuple[float, list[str]]:
    """Graded agreement of two object layouts: over every cell either side fills, a wanted object earns a third
    each for its cell being filled, its colour and its shape (size counts with shape); an invented object earns 0.
    1.0 only for an exact match; gives partial learning (right places and colours, wrong shapes) a score."""
    g = {(o.row, o.col): o for o in got}
    w = {(o.row, o.col): o for o in want}
    cells = sorted(set(g) | set(w))
    if not cells:
        return 1.0, []
    total, reasons = 0.0, []
    for cell in cells:
        a, b = g.get(cell), w.get(cell)
        where = f"row {cell[0] + 1}, column {cell[1] + 1}"
        if b is None:
            reasons.append(f"invented {a.describe()}")
        elif a is None:
            reasons.append(f"missed {b.describe()}")
        else:
            colour, shape = a.color == b.color, (a.shape, a.size) == (b.shape, b.size)
            total += (1 + colour + shape) / 3
            if not (colour and shape):
                reasons.append(f"{where}: {a.describe()} instead of {b.describe()}")
    return total / len(cells), reasons


def satisfies(scene: Scene, spec: Spec) -> Verdict:
    """Check a (parsed) scene against a spec, returning every reason it fails.

    Includes are checked in order; a `position` requirement needs `count` matching objects that each stand in the
    relation to at least one object matched by the referenced include (order-independent, unlike GenEval's
    detector-ranked matching).
    """
    reasons: list[str] = []
    groups: list[list[Obj] | None] = []
    for req in spec.include:
        found = [o for o in scene.objects if req.matches(o)]
        if req.position is not None:
            rel, j = req.position
            if rel not in RELATIONS:
                raise UserError(f"unknown relation {rel!r}; expected one of {', '.join(RELATIONS)}")
            if not 0 <= j < len(groups):
                raise UserError(f"position refers to include[{j}], but only {len(groups)} come before it")
            targets = groups[j]
            if targets is None:
                reasons.append(f"no target for {req.describe()} to be {rel}")
                groups.append(None)
                continue
            placed = [o for o in found if any(rel in relations(o, t, scene.size, scene.grid) for t in targets)]
            if len(placed) < req.count:
                where = _listing(found)
                reasons.append(f"expected {req.describe()} {rel} {_listing(targets)}; found {where}")
                groups.append(None)
                continue
            found = placed
        if len(found) < req.count:
            reasons.append(
                f"expected {req.describe()}, found {len(found)}; the image holds {_listing(list(scene.objects))}"
            )
            groups.append(None)
        else:
            groups.append(found)
    for req in spec.exclude:
        found = [o for o in scene.objects if req.matches(o)]
        if len(found) >= req.count:
            reasons.append(f"expected fewer than {req.describe()}, found {len(found)}")
    if spec.max_objects is not None and len(scene.objects) > spec.max_objects:
        found = _listing(list(scene.objects))
        reasons.append(f"expected at most {spec.max_objects} object(s), found {len(scene.objects)}: {found}")
    return Verdict(not reasons, reasons)


# ---------------------------------------------------------------------------------------------- captions

_OBJ_TEMPLATES = (
    "{desc} at row {r}, column {c}",
    "{desc} in row {r}, column {c}",
    "{desc} in column {c}, row {r}",
)
_CAPTION_PREFIXES = ("", "there is ", "the image shows ", "we see ")
_EMPTY_CAPTIONS = ("an empty grid.", "there is nothing in the image.", "the image shows nothing.")
_JOINERS = ("; ", ", ")


def _desc(o: Obj) -> str:
    return f"{'small ' if o.size == 'small' else ''}{o.color} {o.shape}"


def _object_list(objs: tuple[Obj, ...], rng: np.random.Generator) -> str:
    tpl = _OBJ_TEMPLATES[int(rng.integers(len(_OBJ_TEMPLATES)))]
    parts = [tpl.format(desc=article(_desc(o)), r=o.row + 1, c=o.col + 1) for o in objs]
    if len(parts) == 1:
        return parts[0]
    joiner = _JOINERS[int(rng.integers(len(_JOINERS)))]
    return joiner.join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A complete caption (every object with its cell) from a seeded choice of templates; see `parse_caption`."""
    if not scene.objects:
        return _EMPTY_CAPTIONS[int(rng.integers(len(_EMPTY_CAPTIONS)))]
    prefix = _CAPTION_PREFIXES[int(rng.integers(len(_CAPTION_PREFIXES)))]
    return prefix + _object_list(scene.objects, rng) + "."


_COLOR_RE = "|".join(W.COLORS)
_SHAPE_RE = "|".join(W.SHAPES)
_OBJ_RE = re.compile(
    rf"(?:(small|large) )?({_COLOR_RE}) ({_SHAPE_RE})\s+(?:at|in)\s+"
    rf"(?:row (\d+),? (?:and )?column (\d+)|column (\d+),? (?:and )?row (\d+))"
)
_EMPTY_RE = re.compile(r"\b(nothing|empty)\b")


def parse_caption(text: str) -> list[Obj] | None:
    """Read the objects a caption states (0-based cells); [] for an explicit empty caption, None if unreadable."""
    t = " ".join(text.lower().split())
    objs = []
    for m in _OBJ_RE.finditer(t):
        size, color, shape = m.group(1) or "large", m.group(2), m.group(3)
        r, c = (m.group(4), m.group(5)) if m.group(4) else (m.group(7), m.group(6))
        objs.append(Obj(shape, color, int(r) - 1, int(c) - 1, size))
    if objs:
        return objs
    return [] if _EMPTY_RE.search(t) else None


# ---------------------------------------------------------------------------------------------- prompts

_PROMPT_TEMPLATES = ("draw {objs}.", "an image of {objs}.", "generate {objs}.")


def t2i_prompt(scene: Scene, rng: np.random.Generator) -> tuple[str, Spec]:
    """A fully specified text-to-image prompt for `scene` and the spec a generation must satisfy."""
    tpl = _PROMPT_TEMPLATES[int(rng.integers(len(_PROMPT_TEMPLATES)))]
    objs = _object_list(scene.objects, rng) if scene.objects else "an empty grid"
    return tpl.format(objs=objs), Spec.exact(scene)


# ---------------------------------------------------------------------------------------------- questions

QA_KINDS: tuple[str, ...] = ("exist", "count", "color_of", "shape_of", "relation", "where")


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def unique(scene: Scene, key: Any) -> list[Obj]:
    """Objects whose key (e.g. shape) no other object shares."""
    keys = [key(o) for o in scene.objects]
    return [o for o, k in zip(scene.objects, keys) if keys.count(k) == 1]


def ask(scene: Scene, kind: str, rng: np.random.Generator) -> QA | None:
    """One question of `kind` about the scene with its answer, or None when the scene cannot support it."""
    objs = list(scene.objects)
    colors, shapes = list(W.COLORS), list(W.SHAPES)
    if kind == "exist":
        if objs and rng.random() < 0.5:
            o = _pick(rng, objs)
            return QA(f"is there {article(o.color)} {o.shape}?", "yes", kind)
        present = {(o.color, o.shape) for o in objs}
        absent = [(c, s) for c in colors for s in shapes if (c, s) not in present]
        c, s = _pick(rng, absent)
        return QA(f"is there {article(c)} {s}?", "no", kind)
    if kind == "count":
        if rng.random() < 0.5:
            s = _pick(rng, [o.shape for o in objs] or shapes)
            n = sum(o.shape == s for o in objs)
            return QA(f"how many {plural(s)} are there?", str(n), kind)
        c = _pick(rng, [o.color for o in objs] or colors)
        n = sum(o.color == c for o in objs)
        return QA(f"how many {c} objects are there?", str(n), kind)
    if kind in ("color_of", "shape_of"):  # name an object by its one unique attribute, ask for the other
        by_shape = kind == "color_of"
        cands = unique(scene, (lambda o: o.shape) if by_shape else (lambda o: o.color))
        if not cands:
            return None
        o = _pick(rng, cands)
        if by_shape:
            return QA(f"what color is the {o.shape}?", o.color, kind)
        return QA(f"what shape is the {o.color} object?", o.shape, kind)
    if kind == "where":
        cands = unique(scene, lambda o: (o.color, o.shape))
        if not cands:
            return None
        o = _pick(rng, cands)
        return QA(f"where is the {o.color} {o.shape}?", f"row {o.row + 1}, column {o.col + 1}", kind)
    if kind == "relation":
        cands = unique(scene, lambda o: (o.color, o.shape))
        if len(cands) < 2:
            return None
        i, j = rng.choice(len(cands), 2, replace=False)
        a, b = cands[int(i)], cands[int(j)]
        true = relations(a, b, scene.size, scene.grid)
        want_yes = bool(true) and rng.random() < 0.5
        rel = _pick(rng, sorted(true)) if want_yes else _pick(rng, [r for r in RELATIONS if r not in true])
        answer = "yes" if rel in true else "no"
        return QA(f"is the {a.color} {a.shape} {rel} the {b.color} {b.shape}?", answer, kind)
    raise ValueError(f"unknown question kind {kind!r}; expected one of {', '.join(QA_KINDS)}")


_ANSWER_SPACE: dict[str, Any] = {
    "exist": lambda s: ["yes", "no"],
    "relation": lambda s: ["yes", "no"],
    "count": lambda s: [str(k) for k in range(s.grid * s.grid + 1)],
    "color_of": lambda s: list(W.COLORS),
    "shape_of": lambda s: list(W.SHAPES),
    "where": lambda s: [f"row {r}, column {c}" for r in range(1, s.grid + 1) for c in range(1, s.grid + 1)],
}


def answer_space(kind: str, scene: Scene) -> list[str]:
    """Every answer a question of `kind` about a scene of this canvas can have (chance levels, the random
    baseline, multiple-choice distractors)."""
    return _ANSWER_SPACE[kind](scene)


def sample_qa(scene: Scene, rng: np.random.Generator, kinds: tuple[str, ...] = QA_KINDS) -> QA:
    """A question of a random kind that the scene supports (`exist` and `count` always are)."""
    for k in rng.permutation(len(kinds)):
        qa = ask(scene, kinds[int(k)], rng)
        if qa is not None:
            return qa
    raise ValueError(f"the scene supports none of the question kinds {list(kinds)}; include 'exist' or 'count'")
