"""GenEval-schema metadata on the lab's worlds: read and validate it, generate each world's six tasks.

A line is GenEval's `{"tag", "prompt", "include": [{"class", "count", "color"?, "position"?: [relation, index]}],
"exclude": [{"class", "count"}]}` with `class` a shape name (shapes world) or a watch-world class (`world.
watch_specs.CLASSES`; the watch's `color` is its face colour and it may carry a `time`). unifylab adds an optional
`"scene"`: a ground-truth scene that satisfies the prompt, which fixes the canvas and grid the parser reads images
with; a watch-world line also names its `"world"` (`{"name": "watch", "size", "minute_step"}`), the step the
parser reads hands to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.config import build
from unifylab.errors import UserError
from unifylab.io import iter_jsonl, save_png, write_jsonl
from unifylab.world import WorldChoice, render_scene
from unifylab.world.base import SceneError
from unifylab.world.english import NUMBER_WORDS, article
from unifylab.world.relations import RELATIONS
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.language import Requirement, Spec, plural, relations
from unifylab.world.shapes.scene import Obj, Scene
from unifylab.world.watch import WatchWorld
from unifylab.world.watch import geneval as WS
from unifylab.world.watch.face import WatchConfig, WatchScene

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
_REQ_KEYS = {"class", "count", "color", "position"}
COUNT_RANGE = (2, 4)  # GenEval counts two to four objects


def class_key(name: str) -> str:
    """A class name as detectors and metadata files may both spell it: lower case, words split by one space
    ('Hair_Drier', 'hair-drier' and 'hair drier' are one class)."""
    return " ".join(re.split(r"[\s_-]+", name.lower().strip()))


OFFICIAL_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


@dataclass(frozen=True)
class GenevalItem:
    """One metadata line: task tag, prompt, the spec a generated image must satisfy, an optional GT scene, and the
    watch world's config on that world (None: the shapes world)."""

    index: int
    tag: str
    prompt: str
    spec: Spec | WS.WatchSpec
    scene: Scene | WatchScene | None = None
    world: WatchConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The GenEval-schema line (plus `scene` when known, and `world` on the watch world)."""
        if isinstance(self.spec, WS.WatchSpec):
            reqs = self.spec.to_dict()
            include, exclude = reqs["include"], reqs["exclude"]
        else:
            include = [_req_to_geneval(r) for r in self.spec.include]
            exclude = [_req_to_geneval(r) for r in self.spec.exclude]
        d: dict[str, Any] = {"tag": self.tag, "prompt": self.prompt, "include": include, "exclude": exclude}
        if self.scene is not None:
            d["scene"] = self.scene.to_dict()
        if self.world is not None:
            d["world"] = self.world.model_dump(mode="json")
        return d


def _req_to_geneval(r: Requirement) -> dict[str, Any]:
    d: dict[str, Any] = {"class": r.shape, "count": r.count}
    if r.color is not None:
        d["color"] = r.color
    if r.position is not None:
        d["position"] = list(r.position)
    return d


def _requirement(x: Any, where: str, n_before: int | None) -> Requirement:
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


def item_from_dict(d: Any, index: int, where: str) -> GenevalItem:
    """Validate one metadata line; errors name `where` (file:line) and the field. Unknown top-level keys are kept
    out of the way (GenEval derivatives add their own), unknown requirement keys are errors (they change meaning)."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a JSON object per line, got {type(d).__name__}")
    for key in ("prompt", "include"):
        if key not in d:
            raise UserError(f"{where}: missing field {key!r}")
    if not isinstance(d["prompt"], str):
        raise UserError(f"{where}.prompt: expected a string")
    tag = d.get("tag", "untagged")
    if not isinstance(tag, str):
        raise UserError(f"{where}.tag: expected a string, got {tag!r}")
    if _world([d]) == "watch":
        return _watch_item(d, index, tag, where)
    inc, exc = d["include"], d.get("exclude", [])
    for name, val in (("include", inc), ("exclude", exc)):
        if not isinstance(val, list):
            raise UserError(f"{where}.{name}: expected a list of requirements, got {type(val).__name__}")
    include = tuple(_requirement(x, f"{where}.include[{i}]", i) for i, x in enumerate(inc))
    exclude = tuple(_requirement(x, f"{where}.exclude[{i}]", None) for i, x in enumerate(exc))
    return GenevalItem(index, tag, d["prompt"], Spec(include, exclude), _line_scene(d, where, Scene.from_dict))


def _line_scene(d: dict[str, Any], where: str, parse: Callable[[Any], Any]) -> Any:
    """The line's ground-truth `scene` read by `parse` (None when absent); a bad one names the line."""
    if d.get("scene") is None:
        return None
    try:
        return parse(d["scene"])
    except SceneError as e:
        raise UserError(f"{where}.scene: {e}") from None


def _watch_item(d: dict[str, Any], index: int, tag: str, where: str) -> GenevalItem:
    """A watch-world line: its `world` (required: the parser reads hands to its minute step), spec and scene."""
    world = d.get("world")
    if not isinstance(world, dict) or world.get("name") != "watch":
        raise UserError(
            f'{where}.world: a line with watch-world classes needs "world": {{"name": "watch", "size": 32, '
            f'"minute_step": 5}} (the canvas and the minute step the parser reads hands to), got {world!r}'
        )
    config = build(WorldChoice, {"world": world}, where).world
    spec = WS.WatchSpec.from_dict(d, where)
    WS.check_time_step(spec, config, where)
    scene = _line_scene(d, where, lambda x: WatchScene.from_dict(x, config.minute_step))
    if scene is not None and scene.size != config.size:
        raise UserError(f"{where}.scene.size: {scene.size} px, but the line's world is {config.size} px")
    return GenevalItem(index, tag, d["prompt"], spec, scene, config)


def read_metadata(path: Path) -> list[GenevalItem]:
    """Read and validate a GenEval-schema metadata jsonl; item index = position among non-blank lines."""
    items = [item_from_dict(d, i, f"{path}:{n}") for i, (n, d) in enumerate(iter_jsonl(path))]
    if not items:
        raise UserError(f"{path}: no metadata lines; expected one JSON object per line")
    return items


@dataclass(frozen=True)
class OfficialLine:
    """A line of GenEval's own metadata (COCO classes, its ten colours), judged by a detector and CLIP."""

    index: int
    tag: str
    prompt: str
    line: dict[str, Any]
    where: str  # file:line, for errors that name it


def _world(lines: list[Any]) -> str:
    """'watch' when a line names the watch world or every class is a watch-world class, 'shapes' when every class
    is a shape, else 'coco' (GenEval's own metadata)."""
    named = {d["world"].get("name") for d in lines if isinstance(d, dict) and isinstance(d.get("world"), dict)}
    classes = {
        req.get("class")
        for d in lines
        if isinstance(d, dict)
        for part in ("include", "exclude")
        if isinstance(d.get(part), list)
        for req in d[part]
        if isinstance(req, dict) and isinstance(req.get("class"), str)  # other values are refused line by line
    }
    if "watch" in named or (classes and classes <= set(WS.CLASSES)):
        return "watch"
    return "shapes" if classes and classes <= set(W.SHAPES) else "coco"


def metadata_world(path: Path) -> str:
    """The world a metadata file is drawn on: 'shapes' or 'watch' (the exact parser judges it), else 'coco'
    (GenEval's own metadata: a detector judges it)."""
    return _world([d for _, d in iter_jsonl(path)])


def read_official(path: Path) -> list[OfficialLine]:
    """Read and validate GenEval's metadata jsonl; item index = position among non-blank lines."""
    lines = []
    for i, (n, d) in enumerate(iter_jsonl(path)):
        line = check_official_line(d, f"{path}:{n}")
        tag = line.get("tag", "untagged")
        lines.append(OfficialLine(i, tag if isinstance(tag, str) else str(tag), line["prompt"], line, f"{path}:{n}"))
    if not lines:
        raise UserError(f"{path}: no metadata lines; expected one JSON object per line")
    return lines


def check_classes(lines: list[OfficialLine], classes: Sequence[str]) -> None:
    """Refuse a class the detector's labels (`classes`) do not hold, before any image is judged."""
    known = {class_key(c) for c in classes}
    for it in lines:
        for part in ("include", "exclude"):
            for i, req in enumerate(it.line.get(part, [])):
                if class_key(req["class"]) not in known:
                    raise UserError(f"{it.where}.{part}[{i}].class: {req['class']!r} is not a class the detector knows")


# ---------------------------------------------------------------------------------------------- generation


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


def generate(
    n_per_task: int, seed: int, size: int = 32, grid: int = 3, tasks: tuple[str, ...] = TAGS
) -> list[GenevalItem]:
    """`n_per_task` prompts for each GenEval task, each with a ground-truth scene that satisfies it."""
    try:
        W.check_canvas(size, grid)
    except ValueError as e:
        raise UserError(f"--size/--grid: {e}") from None
    if n_per_task < 1:
        raise UserError(f"--n-per-task must be >= 1, got {n_per_task}")
    rng = np.random.default_rng(seed)
    items: list[GenevalItem] = []
    for tag in tasks:
        for _ in range(n_per_task):
            text, spec, objs = _task_item(tag, size, grid, rng)
            items.append(GenevalItem(len(items), tag, f"an image of {text}", spec, Scene(size, grid, tuple(objs))))
    return items


def generate_watch(
    n_per_task: int, seed: int, config: WatchConfig, tasks: tuple[str, ...] = WS.TAGS
) -> list[GenevalItem]:
    """`n_per_task` prompts for each of the watch world's GenEval-style tasks, each with a ground-truth face; faces
    hold a held-out (weather, face colour) pair only where the prompt names both."""
    if n_per_task < 1:
        raise UserError(f"--n-per-task must be >= 1, got {n_per_task}")
    rng, barred = np.random.default_rng(seed), frozenset(WatchWorld.default_holdout)
    items: list[GenevalItem] = []
    for tag in tasks:
        for _ in range(n_per_task):
            prompt, spec, face = WS.task_item(tag, config, rng, barred=barred)
            items.append(GenevalItem(len(items), tag, prompt, spec, face, config))
    return items


def write_geneval(out: Path, items: list[GenevalItem], *, render_images: bool = False) -> None:
    """Write `items` as out/metadata.jsonl and, with `render_images`, each ground-truth scene as
    out/images/<index>.png (GenEval's five-digit names)."""
    write_jsonl(out / "metadata.jsonl", (it.to_dict() for it in items))
    if render_images:
        for it in items:
            save_png(out / "images" / f"{it.index:05d}.png", render_scene(it.scene))


def check_official_line(line: Any, where: str) -> dict[str, Any]:
    """Validate one metadata line of GenEval's format; the line."""
    if not isinstance(line, dict):
        raise UserError(f"{where}: expected a JSON object per line, got {type(line).__name__}")
    for key in ("prompt", "include"):
        if key not in line:
            raise UserError(f"{where}: missing field {key!r}")
    for part in ("include", "exclude"):
        reqs = line.get(part, [])
        if not isinstance(reqs, list):
            raise UserError(f"{where}.{part}: expected a list of requirements, got {type(reqs).__name__}")
        for i, req in enumerate(reqs):
            at = f"{where}.{part}[{i}]"
            if not isinstance(req, dict) or not isinstance(req.get("class"), str):
                raise UserError(f'{at}: expected an object like {{"class": "dog", "count": 1}}, got {req!r}')
            count = req.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise UserError(f"{at}.count: expected a positive integer, got {count!r}")
            if "color" in req and req["color"] not in OFFICIAL_COLORS:
                raise UserError(f"{at}.color: {req['color']!r}; expected one of {', '.join(OFFICIAL_COLORS)}")
            if "position" in req:
                pos = req["position"]
                ok = part == "include" and isinstance(pos, list) and len(pos) == 2 and pos[0] in RELATIONS
                if not ok or not isinstance(pos[1], int) or not 0 <= pos[1] < i:
                    raise UserError(
                        f"{at}.position: expected [relation, index of an earlier include] with relation one of "
                        f"{', '.join(RELATIONS)}, got {pos!r}"
                    )
    return line
