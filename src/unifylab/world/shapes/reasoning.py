"""RealUnify-style reasoning tasks inside the shapes world, with hidden ground truth.

UEG (understanding enhances generation): an implicit prompt (world knowledge, commonsense, logic, arithmetic, a
colour-mixing rule, or code) whose scene must be inferred before drawing; the drawing is polled with yes/no
verification questions answered exactly on the parsed image, and is correct only if every answer matches.
GEU (generation enhances understanding): a 4-option question that is easier after imagining a transformed image
(restored quadrants, tracked moves, a focused region, a walked maze).
Both run `direct` or `stepwise` (UEG: rewrite the prompt, then draw the rewrite; GEU: draw the transformed image,
then answer about one's own image).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np

from unifylab.world.english import article
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes import language as L
from unifylab.world.shapes.canvas import ShapesConfig, sample_scene
from unifylab.world.shapes.knowledge import FACTS, LIGHTS, OPS, cell, family
from unifylab.world.shapes.scene import Obj, Scene

UEG_KINDS = ("world_knowledge", "commonsense", "logical", "mathematical", "scientific", "code")
GEU_KINDS = ("mental_reconstruction", "mental_tracking", "attentional_focusing", "cognitive_navigation")

# Additive light of two colours: the rule a scientific prompt applies.
LIGHT = {frozenset(lights): color for lights, color in LIGHTS.items() if len(lights) == 2}


# ---------------------------------------------------------------------------------------------- verification


Rule = tuple[re.Pattern[str], Callable[..., str]]


def _yes(holds: bool) -> str:
    return "yes" if holds else "no"


def _answer(rules: tuple[Rule, ...], scene: Scene, question: str, what: str) -> str:
    """Answer `question` with the first rule whose pattern matches it (the rule gets the pattern's groups)."""
    q = question.strip().lower()
    for pattern, rule in rules:
        if m := pattern.match(q):
            return rule(scene, *m.groups())
    raise ValueError(f"not a {what} this world can answer: {question!r}")


def _one_at(scene: Scene, row: str, col: str) -> Obj | None:
    return scene.at(int(row) - 1, int(col) - 1)


VERIFY_RULES: tuple[Rule, ...] = (
    (
        re.compile(r"^is there an? (\w+) (\w+) at row (\d+), column (\d+)\?$"),
        lambda s, color, shape, r, c: _yes(
            (o := _one_at(s, r, c)) is not None and (o.color, o.shape) == (color, shape)
        ),
    ),
    (
        re.compile(r"^is there anything at row (\d+), column (\d+)\?$"),
        lambda s, r, c: _yes(_one_at(s, r, c) is not None),
    ),
    (re.compile(r"^are there exactly (\d+) objects\?$"), lambda s, n: _yes(len(s.objects) == int(n))),
    (
        re.compile(r"^is there an? (\w+) (\w+)\?$"),
        lambda s, color, shape: _yes(any((o.color, o.shape) == (color, shape) for o in s.objects)),
    ),
)


def verify(scene: Scene, question: str) -> str:
    """The exact yes/no answer of a verification question on a (parsed) scene."""
    return _answer(VERIFY_RULES, scene, question, "verification question")


def questions_for(scene: Scene, rng: np.random.Generator, negatives: list[Obj] = ()) -> list[dict[str, str]]:
    """Every object at its cell (yes), the object count (yes), and each negative object at its cell (no)."""
    qs = [
        {"question": f"is there {article(o.color)} {o.shape} at {cell(o.row, o.col)}?", "answer": "yes"}
        for o in scene.objects
    ]
    qs.append({"question": f"are there exactly {len(scene.objects)} objects?", "answer": "yes"})
    qs += [
        {"question": f"is there {article(o.color)} {o.shape} at {cell(o.row, o.col)}?", "answer": "no"}
        for o in negatives
    ]
    empty = [(r, c) for r in range(scene.grid) for c in range(scene.grid) if scene.at(r, c) is None]
    if empty:
        r, c = empty[int(rng.integers(len(empty)))]
        qs.append({"question": f"is there anything at {cell(r, c)}?", "answer": "no"})
    return qs


def _where(scene: Scene, color: str, shape: str) -> str:
    found = [o for o in scene.objects if (o.color, o.shape) == (color, shape)]
    return cell(found[0].row, found[0].col) if len(found) == 1 else "ambiguous"


STEP_RULES: tuple[Rule, ...] = (
    (re.compile(r"^what is at row (\d+), column (\d+)\?$"), lambda s, r, c: _describe(_one_at(s, r, c))),
    (re.compile(r"^where is the (\w+) (\w+)\?$"), _where),
    (
        re.compile(r"^how many (\w+) objects are there\?$"),
        lambda s, color: str(sum(o.color == color for o in s.objects)),
    ),
)


def answer_on(scene: Scene, question: str) -> str:
    """The exact answer of a GEU step question about a scene (an option's text)."""
    return _answer(STEP_RULES, scene, question, "step question")


# ---------------------------------------------------------------------------------------------- UEG


def ueg_item(kind: str, world: ShapesConfig, rng: np.random.Generator) -> tuple[str, Scene, list[Obj]]:
    """(implicit prompt, the scene it means, wrong objects a careless reading would draw)."""
    g, size = world.grid, world.size
    colors = list(W.COLORS)

    def pick(seq: list) -> object:
        return seq[int(rng.integers(len(seq)))]

    r, c = int(rng.integers(g)), int(rng.integers(g))
    if kind == "world_knowledge":
        thing = FACTS[pick(sorted(family("things")))]
        scene = thing.scene((r, c), thing.pair, size=size, grid=g)
        wrong = [Obj(thing.shape, pick([x for x in colors if x != thing.color]), r, c)]
        return thing.prompt(scene), scene, wrong
    if kind == "commonsense":
        col = int(rng.integers(g))
        objs = (Obj("circle", "red", 0, col), Obj("circle", "yellow", 1, col), Obj("circle", "green", 2, col))
        return f"draw a traffic light in column {col + 1}.", Scene(size, g, objs), [Obj("circle", "green", 0, col)]
    if kind == "logical":
        s1, s2 = pick(list(W.SHAPES)), pick(list(W.SHAPES))
        c1, c2 = pick(colors), pick(colors)
        r0, c0 = int(rng.integers(g - 1)), int(rng.integers(g))
        objs = (Obj(s1, c1, r0, c0), Obj(s2, c2, r0 + 1, c0))
        prompt = f"draw {article(c1)} {s1} at {cell(r0, c0)} and {article(c2)} {s2} directly below it."
        return prompt, Scene(size, g, objs), [Obj(s2, c2, r0, min(c0 + 1, g - 1))] if c0 + 1 < g else []
    if kind == "mathematical":
        while True:
            op = pick(sorted(OPS))
            a, b = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            n = OPS[op](a, b)
            if 1 <= n <= g:
                break
        shape, color, row = pick(list(W.SHAPES)), pick(colors), int(rng.integers(g))
        objs = tuple(Obj(shape, color, row, k) for k in range(n))
        prompt = f"draw as many {color} {L.plural(shape)} as {a} {op} {b}, in row {row + 1} from the left."
        wrong = [Obj(shape, color, row, n)] if n < g else []
        return prompt, Scene(size, g, objs), wrong
    if kind == "scientific":
        pair = pick(sorted(LIGHT, key=sorted))
        c1, c2 = sorted(pair)
        shape = pick(list(W.SHAPES))
        prompt = f"draw a {shape} in the colour of {c1} light mixed with {c2} light at {cell(r, c)}."
        return prompt, Scene(size, g, (Obj(shape, LIGHT[pair], r, c),)), [Obj(shape, c1, r, c), Obj(shape, c2, r, c)]
    if kind == "code":
        shape, color, row = pick(list(W.SHAPES)), pick(colors), int(rng.integers(g))
        cols = sorted(int(x) for x in rng.choice(g, size=int(rng.integers(1, g + 1)), replace=False))
        objs = tuple(Obj(shape, color, row, k) for k in cols)
        if rng.random() < 0.5:
            spec = [{"shape": shape, "color": color, "row": row + 1, "column": k + 1} for k in cols]
            prompt = f"render this scene: {json.dumps(spec)}"
        else:
            prompt = f"run: for col in {tuple(k + 1 for k in cols)}: draw('{shape}', '{color}', row={row + 1}, col=col)"
        return prompt, Scene(size, g, objs), []
    raise ValueError(f"unknown UEG kind {kind!r}; expected one of {', '.join(UEG_KINDS)}")


# ---------------------------------------------------------------------------------------------- GEU


def _options(
    answer: str, space: list[str], rng: np.random.Generator, first: tuple[str, ...] = ()
) -> tuple[list[str], str]:
    """The answer and three distractors in random order: the `first` ones that differ from the answer (always
    offered, so an answer that is common a priori is a distractor as often as it is right), then random ones from
    `space`."""
    fixed = [x for x in first if x != answer][:3]
    others = [x for x in space if x != answer and x not in fixed]
    opts = [answer, *fixed] + [others[int(k)] for k in rng.choice(len(others), 3 - len(fixed), replace=False)]
    opts = [opts[int(k)] for k in rng.permutation(4)]
    return opts, "ABCD"[opts.index(answer)]


def _describe(o: Obj | None) -> str:
    return "nothing" if o is None else f"{o.color} {o.shape}"


_ALL_OBJECTS = ["nothing"] + [f"{c} {s}" for c in W.COLORS for s in W.SHAPES]


def geu_item(kind: str, world: ShapesConfig, rng: np.random.Generator) -> dict:
    """{shown: Scene, instruction, question, options, answer (letter), target: Scene, step_question}.

    `target` is the image that makes the question easy; `step_question` asks the same about `target` directly.
    """
    size, g = world.size, world.grid
    if kind == "mental_reconstruction":
        if g % 2:
            raise ValueError("mental_reconstruction needs an even grid (quadrants of whole cells)")
        original = sample_scene(ShapesConfig(size=size, grid=g, min_objects=3, max_objects=min(6, g * g)), rng)
        k = int(rng.integers(1, 4))
        h = g // 2
        order = [(0, 0), (0, 1), (1, 1), (1, 0)]  # clockwise quadrants

        def moved(o: Obj) -> Obj:
            q = order.index((o.row // h, o.col // h))
            qr, qc = order[(q + k) % 4]
            return Obj(o.shape, o.color, qr * h + o.row % h, qc * h + o.col % h, o.size)

        shown = Scene(size, g, tuple(moved(o) for o in original.objects))
        empty = rng.random() < 0.25  # "nothing" is right a quarter of the time, and always offered
        cells = [(i, j) for i in range(g) for j in range(g) if (original.at(i, j) is None) == empty]
        r, c = cells[int(rng.integers(len(cells)))]
        answer = _describe(original.at(r, c))
        opts, letter = _options(answer, _ALL_OBJECTS, rng, first=("nothing",))
        plural = "s" if k > 1 else ""
        instruction = f"rotate the quadrants of this image counter-clockwise by {k} place{plural}."
        q = (
            f"this image's quadrants were rotated clockwise by {k} place{plural}; in the original, "
            f"what is at {cell(r, c)}?"
        )
        return {
            "shown": shown,
            "instruction": instruction,
            "question": q,
            "options": opts,
            "answer": letter,
            "target": original,
            "step_question": f"what is at {cell(r, c)}?",
        }
    if kind == "mental_tracking":
        while True:
            scene = sample_scene(ShapesConfig(size=size, grid=g, min_objects=2, max_objects=min(4, g * g)), rng)
            o = scene.objects[int(rng.integers(len(scene.objects)))]
            moves = [("right", 0, 1), ("left", 0, -1), ("down", 1, 0), ("up", -1, 0)]
            r, c, steps, ok = o.row, o.col, [], True
            for _ in range(2):
                name, dr, dc = moves[int(rng.integers(4))]
                nr, nc = r + dr, c + dc
                if not (0 <= nr < g and 0 <= nc < g) or (scene.at(nr, nc) not in (None, o)):
                    ok = False
                    break
                r, c = nr, nc
                steps.append(name)
            if ok and (r, c) != (o.row, o.col):
                break
        taken = {x.color for x in scene.objects if x != o and x.shape == o.shape}  # keep "the <colour> <shape>" unique
        free_colors = [col for col in W.COLORS if col not in taken]
        new_color = free_colors[int(rng.integers(len(free_colors)))]
        final = Scene(size, g, tuple(x for x in scene.objects if x != o) + (Obj(o.shape, new_color, r, c, o.size),))
        answer = cell(r, c)
        # distractors: other cells two unit moves away (as the answer is), so "an empty cell two steps away" is no
        # shortcut
        two = sorted({(o.row + a + b, o.col + x + y) for _, a, x in moves for _, b, y in moves})
        near = [cell(i, j) for i, j in two if 0 <= i < g and 0 <= j < g]
        near = [near[int(k)] for k in rng.permutation(len(near))]
        opts, letter = _options(answer, [cell(i, j) for i in range(g) for j in range(g)], rng, first=tuple(near))
        instruction = (
            f"move the {o.color} {o.shape} one cell {steps[0]}, then one cell {steps[1]}, then recolour it {new_color}."
        )
        return {
            "shown": scene,
            "instruction": instruction,
            "question": f"{instruction} where is it now?",
            "options": opts,
            "answer": letter,
            "target": final,
            "step_question": f"where is the {new_color} {o.shape}?",
        }
    if kind == "attentional_focusing":
        if g % 2:
            raise ValueError("attentional_focusing needs an even grid (quarters of whole cells)")
        h = g // 2
        names = ["top-left", "top-right", "bottom-left", "bottom-right"]
        want = int(rng.integers(min(4, h * h + 1)))  # the count is uniform over the four offered answers
        while True:
            scene = sample_scene(ShapesConfig(size=size, grid=g, min_objects=g * g // 2, max_objects=g * g - 2), rng)
            qi = int(rng.integers(4))
            inside = tuple(o for o in scene.objects if (o.row // h, o.col // h) == divmod(qi, 2))
            fits = [c for c in W.COLORS if sum(o.color == c for o in inside) == want]
            if fits:
                break
        color = fits[int(rng.integers(len(fits)))]
        answer = str(want)
        opts, letter = _options(
            answer, [str(k) for k in range(h * h + 1)], rng, first=tuple(str(k) for k in range(min(4, h * h + 1)))
        )
        return {
            "shown": scene,
            "instruction": f"keep only the {names[qi]} quarter of this image.",
            "question": f"how many {color} objects are in the {names[qi]} quarter?",
            "options": opts,
            "answer": letter,
            "target": Scene(size, g, inside),
            "step_question": f"how many {color} objects are there?",
        }
    if kind == "cognitive_navigation":
        walls = [(int(k) // g, int(k) % g) for k in rng.choice(g * g, size=g, replace=False)]
        free = [(i, j) for i in range(g) for j in range(g) if (i, j) not in walls]
        sr, sc = free[int(rng.integers(len(free)))]
        moves = [("right", 0, 1), ("left", 0, -1), ("down", 1, 0), ("up", -1, 0)]
        r, c, names = sr, sc, []
        for _ in range(3):
            name, dr, dc = moves[int(rng.integers(4))]
            names.append(name)
            if 0 <= r + dr < g and 0 <= c + dc < g and (r + dr, c + dc) not in walls:
                r, c = r + dr, c + dc
        wall_objs = tuple(Obj("square", "white", i, j) for i, j in walls)
        shown = Scene(size, g, wall_objs + (Obj("circle", "green", sr, sc),))
        answer = cell(r, c)
        opts, letter = _options(answer, [cell(i, j) for i, j in free], rng)
        instruction = (
            f"white squares are walls; walk the green circle {', '.join(names)}, one cell per step, "
            "skipping any step into a wall or off the grid."
        )
        return {
            "shown": shown,
            "instruction": instruction,
            "question": f"{instruction} where does it end?",
            "options": opts,
            "answer": letter,
            "target": Scene(size, g, wall_objs + (Obj("circle", "green", r, c),)),
            "step_question": "where is the green circle?",
        }
    raise ValueError(f"unknown GEU kind {kind!r}; expected one of {', '.join(GEU_KINDS)}")
