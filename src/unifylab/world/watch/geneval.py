"""GenEval's schema on the watch world: a face as the instances a detector would report (the watch, its weather
icon, its battery and the battery's bars, each with a box), requirements on them, the check, and the world's six
GenEval-style tasks.

The exact parser reads a face; its instances carry boxes from the dial's geometry, so GenEval's rules apply
unchanged: an include needs at least `count` matching instances, an exclude fewer than `count`, and a position is
GenEval's relation between box centres (`language.geneval_relations`). The watch's colour is its face colour and
its `time` ("4:35") the hands; no other class has a colour or a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.world.base import Verdict
from unifylab.world.english import NUMBER_WORDS, article
from unifylab.world.relations import RELATIONS, geneval_relations
from unifylab.world.watch.face import FACES, LEVELS, WEATHER, Dial, WatchConfig, WatchScene, sample_face

CLASSES: tuple[str, ...] = ("watch", *WEATHER, "battery", "bar")
# GenEval's tasks on faces: two_object has no counterpart (every face holds exactly one weather icon and one
# battery), so `time` (the hands) takes its place; color_attr binds the face colour to the weather icon, the
# composition the watch world holds out.
TAGS: tuple[str, ...] = ("single_object", "counting", "colors", "position", "color_attr", "time")
_KEYS = {"class", "count", "color", "time", "position"}
_TIME = re.compile(r"^(1[0-2]|[1-9]):([0-5]\d)$")


@dataclass(frozen=True)
class Instance:
    """One thing on a face as a detector would report it: class, box centre (x, y) and side in pixels, and the
    watch's colour and time."""

    cls: str
    centre: tuple[float, float]
    side: float
    color: str | None = None
    time: str | None = None


def instances(face: WatchScene) -> list[Instance]:
    """The watch, its weather icon, its battery and one `bar` per battery level (each in the battery's box)."""
    dial = Dial(face.size)

    def box(corner: str) -> tuple[tuple[float, float], float]:
        y, x = dial.corner(corner)
        return (x + dial.icon / 2, y + dial.icon / 2), float(dial.icon)

    battery = box(face.battery_corner)
    return [
        Instance("watch", (face.size / 2, face.size / 2), 2 * dial.radius, color=face.face, time=face.time),
        Instance(face.weather, *box(face.weather_corner)),
        Instance("battery", *battery),
        *[Instance("bar", *battery) for _ in range(face.battery)],
    ]


@dataclass(frozen=True)
class WatchRequirement:
    """At least `count` instances of `cls` (with the watch's colour and time when given); `position` = (relation,
    include index)."""

    cls: str
    count: int = 1
    color: str | None = None
    time: str | None = None
    position: tuple[str, int] | None = None

    def matches(self, inst: Instance) -> bool:
        return inst.cls == self.cls and self.color in (None, inst.color) and self.time in (None, inst.time)

    def describe(self) -> str:
        """'a teal watch showing 4:35', '3 bars'."""
        noun = " ".join(w for w in (self.color, self.cls) if w)
        text = article(noun) if self.count == 1 else f"{self.count} {noun}s"
        return text + (f" showing {self.time}" if self.time else "")

    def to_dict(self) -> dict[str, Any]:
        """The requirement in GenEval's schema (plus `time`, the watch world's own field)."""
        d: dict[str, Any] = {"class": self.cls, "count": self.count}
        for key in ("color", "time"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.position is not None:
            d["position"] = list(self.position)
        return d


@dataclass(frozen=True)
class WatchSpec:
    """What a drawing of a (partial) prompt must show."""

    include: tuple[WatchRequirement, ...]
    exclude: tuple[WatchRequirement, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": "watch",
            "include": [r.to_dict() for r in self.include],
            "exclude": [r.to_dict() for r in self.exclude],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "spec") -> WatchSpec:
        """Validate `include` / `exclude` lists of GenEval-schema requirements; errors name `where` and the field."""
        parts = []
        for name in ("include", "exclude"):
            reqs = d.get(name, [])
            if not isinstance(reqs, list):
                raise UserError(f"{where}.{name}: expected a list of requirements, got {type(reqs).__name__}")
            parts.append(
                tuple(
                    requirement(x, f"{where}.{name}[{i}]", i if name == "include" else None) for i, x in enumerate(reqs)
                )
            )
        return cls(*parts)


def requirement(x: Any, where: str, n_before: int | None) -> WatchRequirement:
    """Validate one include/exclude entry; `n_before` is how many includes precede it (None for excludes)."""
    if not isinstance(x, dict):
        raise UserError(f'{where}: expected an object like {{"class": "sun", "count": 1}}, got {x!r}')
    if bad := set(x) - _KEYS:
        raise UserError(f"{where}: unknown field(s) {sorted(bad)}; valid fields: {sorted(_KEYS)}")
    cls = x.get("class")
    if not isinstance(cls, str) or cls not in CLASSES:
        raise UserError(
            f"{where}.class: {cls!r} is not a class of the watch world; expected one of {', '.join(CLASSES)}"
        )
    count = x.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise UserError(f"{where}.count: expected a positive integer, got {count!r}")
    color, time = x.get("color"), x.get("time")
    for key, value in (("color", color), ("time", time)):
        if value is not None and cls != "watch":
            raise UserError(f"{where}.{key}: only the watch has a {key} on this world, not a {cls}")
    if color is not None and (not isinstance(color, str) or color not in FACES):
        raise UserError(f"{where}.color: unknown face colour {color!r}; expected one of {', '.join(FACES)}")
    if time is not None and not (isinstance(time, str) and _TIME.match(time)):
        raise UserError(f"{where}.time: expected a time like '4:35' (hour 1..12, two-digit minutes), got {time!r}")
    pos, position = x.get("position"), None
    if pos is not None:
        if n_before is None:
            raise UserError(f"{where}.position: exclude entries cannot carry a position")
        ok = isinstance(pos, list) and len(pos) == 2 and pos[0] in RELATIONS and isinstance(pos[1], int)
        if not ok or not 0 <= pos[1] < n_before:
            raise UserError(
                f"{where}.position: expected [relation, index of an earlier include] with relation one of "
                f"{', '.join(RELATIONS)}, got {pos!r}"
            )
        position = (pos[0], pos[1])
    return WatchRequirement(cls, count, color, time, position)


def _relations(a: Instance, b: Instance) -> set[str]:
    return geneval_relations(np.array(a.centre), np.array(b.centre), a.side + b.side)


def satisfies(face: WatchScene, spec: WatchSpec) -> Verdict:
    """Check a (parsed) face against a spec with GenEval's rules, returning every reason it fails."""
    found_all = instances(face)
    reasons: list[str] = []
    groups: list[list[Instance] | None] = []
    for req in spec.include:
        found = [i for i in found_all if req.matches(i)]
        if req.position is not None:
            rel, j = req.position
            targets = groups[j]
            placed = [i for i in found if targets and any(rel in _relations(i, t) for t in targets)]
            if len(placed) < req.count:
                reasons.append(f"expected {req.describe()} {rel} the {spec.include[j].cls}; {_where(face)}")
                groups.append(None)
                continue
            found = placed
        if len(found) < req.count:
            reasons.append(f"expected {req.describe()}, found {len(found)}; the face is {_summary(face)}")
            groups.append(None)
        else:
            groups.append(found)
    for req in spec.exclude:
        found = [i for i in found_all if req.matches(i)]
        if len(found) >= req.count:
            reasons.append(f"expected fewer than {req.describe()}, found {len(found)}")
    return Verdict(not reasons, reasons)


def _where(face: WatchScene) -> str:
    return f"the {face.weather} is in the {face.weather_corner} corner, the battery in the {face.battery_corner}"


def _summary(face: WatchScene) -> str:
    return f"{face.face} at {face.time} with {face.weather} and {face.battery} bar(s)"


# ---------------------------------------------------------------------------------------------- the six tasks


def _bars(n: int) -> str:
    return f"{NUMBER_WORDS[n]} bar{'s' if n != 1 else ''}"


_NOUN = {"sun": "a sun", "cloud": "a cloud", "rain": "rain", "battery": "a battery"}


def _corner_pair(rel: str, rng: np.random.Generator) -> tuple[str, str]:
    """Corners (reference, other) for an icon `rel` the reference: left/right share a row, above/below a column."""
    pairs = {
        "left of": [("top right", "top left"), ("bottom right", "bottom left")],
        "right of": [("top left", "top right"), ("bottom left", "bottom right")],
        "above": [("bottom left", "top left"), ("bottom right", "top right")],
        "below": [("top left", "bottom left"), ("top right", "bottom right")],
    }[rel]
    return pairs[int(rng.integers(len(pairs)))]


def task_item(
    tag: str,
    config: WatchConfig,
    rng: np.random.Generator,
    *,
    barred: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[str, WatchSpec, WatchScene]:
    """One prompt of GenEval-style task `tag`, its spec and a ground-truth face that satisfies it. Attributes the
    prompt leaves free are drawn so the face holds no (weather, face colour) pair in `barred` (the held-out ones),
    so only a prompt that names both can ask for a held-out composition."""
    face = sample_face(config, rng)
    while (face.weather, face.face) in barred:
        face = sample_face(config, rng)
    d = face.to_dict()
    weathers, faces = list(WEATHER), list(FACES)
    if tag == "single_object":
        w = weathers[int(rng.integers(len(weathers)))]
        while (w, d["face"]) in barred:
            d["face"] = faces[int(rng.integers(len(faces)))]
        d["weather"] = w
        return f"draw a watch with {_NOUN[w]}.", WatchSpec((WatchRequirement(w),)), WatchScene(**d)
    if tag == "counting":
        n = int(rng.integers(1, LEVELS + 1))
        d["battery"] = n
        exclude = (WatchRequirement("bar", n + 1),) if n < LEVELS else ()
        spec = WatchSpec((WatchRequirement("bar", n),), exclude)
        return f"draw a watch with a battery of {_bars(n)}.", spec, WatchScene(**d)
    if tag == "colors":
        c = faces[int(rng.integers(len(faces)))]
        while (d["weather"], c) in barred:
            d["weather"] = weathers[int(rng.integers(len(weathers)))]
        d["face"] = c
        return f"draw a {c} watch.", WatchSpec((WatchRequirement("watch", color=c),)), WatchScene(**d)
    if tag == "position":
        rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
        battery_is_ref = bool(rng.random() < 0.5)
        ref, other = _corner_pair(rel, rng)
        (first, second) = ("battery", d["weather"]) if battery_is_ref else (d["weather"], "battery")
        d["battery_corner" if battery_is_ref else "weather_corner"] = ref
        d["weather_corner" if battery_is_ref else "battery_corner"] = other
        spec = WatchSpec((WatchRequirement(first), WatchRequirement(second, position=(rel, 0))))
        return f"draw a watch with {_NOUN[second]} {rel} {_NOUN[first]}.", spec, WatchScene(**d)
    if tag == "color_attr":
        w, c = weathers[int(rng.integers(len(weathers)))], faces[int(rng.integers(len(faces)))]
        d["weather"], d["face"] = w, c
        spec = WatchSpec((WatchRequirement("watch", color=c), WatchRequirement(w)))
        return f"draw a {c} watch with {_NOUN[w]}.", spec, WatchScene(**d)
    if tag == "time":
        spec = WatchSpec((WatchRequirement("watch", time=face.time),))
        return f"draw a watch showing {face.time}.", spec, face
    raise UserError(f"unknown GenEval task {tag!r} on the watch world; expected one of {', '.join(TAGS)}")


def check_time_step(spec: WatchSpec, config: WatchConfig, where: str) -> None:
    """Refuse a time the world's hands cannot show (a minute off its `minute_step`)."""
    for k, req in enumerate(spec.include):
        if req.time is not None and int(req.time.split(":")[1]) % config.minute_step:
            raise UserError(
                f"{where}.include[{k}].time: {req.time} is off the {config.minute_step}-minute steps of this "
                f"line's world; use a multiple of {config.minute_step} minutes, or a finer world.minute_step"
            )
