"""GenEval-schema metadata on the lab's worlds (read, validate, generate each world's GenEval-style tasks, write)
and on GenEval's own COCO classes (read, validate).

A line is GenEval's `{"tag", "prompt", "include": [{"class", "count", "color"?, "position"?: [relation, index]}],
"exclude": [{"class", "count"}]}` with `class` one of a world's GenEval classes (`World.geneval_classes`: the
shapes world's shape names; the watch world's watch, weather icons, battery and bars, where the watch's `color` is
its face colour and it may carry a `time`). unifylab adds an optional `"scene"`: a ground-truth scene that
satisfies the prompt, which fixes the canvas and grid the parser reads images with; a line may also name its
`"world"` (the watch world's lines must: `{"name": "watch", "size", "minute_step"}`, the step the parser reads
hands to). Each world validates its own lines (`World.geneval_line`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unifylab.errors import UserError
from unifylab.io import iter_jsonl, save_png, write_jsonl
from unifylab.world import CLASSES, DEFAULT, World, render_scene
from unifylab.world.relations import RELATIONS


def class_key(name: str) -> str:
    """A class name as detectors and metadata files may both spell it: lower case, words split by one space
    ('Hair_Drier', 'hair-drier' and 'hair drier' are one class)."""
    return " ".join(re.split(r"[\s_-]+", name.lower().strip()))


OFFICIAL_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


@dataclass(frozen=True)
class GenevalItem:
    """One metadata line: task tag, prompt, the spec a generated image must satisfy, an optional GT scene, and the
    world config the line names (None: a line whose scene fixes its canvas, of the default world)."""

    index: int
    tag: str
    prompt: str
    spec: Any
    scene: Any = None
    world: Any = None

    @property
    def world_class(self) -> type[World]:
        return CLASSES[self.world.name] if self.world is not None else CLASSES[DEFAULT]

    def to_dict(self) -> dict[str, Any]:
        """The GenEval-schema line (plus `scene` when known, and the `world` it names)."""
        include, exclude = self.world_class.geneval_requirements(self.spec)
        d: dict[str, Any] = {"tag": self.tag, "prompt": self.prompt, "include": include, "exclude": exclude}
        if self.scene is not None:
            d["scene"] = self.scene.to_dict()
        if self.world is not None:
            d["world"] = self.world.model_dump(mode="json")
        return d


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
    spec, scene, config = CLASSES.get(_world([d]), CLASSES[DEFAULT]).geneval_line(d, where)
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
    """The world a line names, else the world whose GenEval classes hold every class named, else 'coco' (GenEval's
    own metadata)."""
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
    for name in CLASSES:
        if name in named:
            return name
    for name, world in CLASSES.items():
        if classes and classes <= set(world.geneval_classes):
            return name
    return "coco"


def metadata_world(path: Path) -> str:
    """The world a metadata file is drawn on (its exact parser judges it), else 'coco' (GenEval's own metadata: a
    detector judges it)."""
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


def generate(world: World, n_per_task: int, seed: int, tasks: tuple[str, ...] | None = None) -> list[GenevalItem]:
    """`n_per_task` prompts for each of a world's GenEval-style tasks (all by default), each with a ground-truth
    scene that satisfies it."""
    if n_per_task < 1:
        raise UserError(f"--n-per-task must be >= 1, got {n_per_task}")
    items = world.geneval_items(n_per_task, seed, tasks)
    return [
        GenevalItem(k, tag, prompt, spec, scene, config) for k, (tag, prompt, spec, scene, config) in enumerate(items)
    ]


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
