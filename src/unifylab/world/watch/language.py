"""Language of the watch world: captions (and reading them back), questions with exact answers, text-to-image
prompts and the check that a parsed face satisfies one.

A prompt fixes every attribute, so a face satisfies it exactly when the parser reads back the prompted face.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from unifylab.world.base import QA, SceneError, Verdict
from unifylab.world.english import NUMBER_WORDS
from unifylab.world.watch.face import CORNERS, FACES, WEATHER, WatchScene

QA_KINDS: tuple[str, ...] = ("time", "hour", "minute", "face", "weather", "weather_corner", "battery", "battery_corner")
ATTRIBUTES = ("hour", "minute", "face", "weather", "weather_corner", "battery", "battery_corner")
_WEATHER = {"sun": "a sun", "cloud": "a cloud", "rain": "rain"}


def _bars(n: int) -> str:
    return f"{NUMBER_WORDS[n]} bar{'s' if n != 1 else ''}"


def _parts(face: WatchScene) -> dict[str, str]:
    return {
        "face": face.face,
        "time": face.time,
        "weather": f"{_WEATHER[face.weather]} in the {face.weather_corner} corner",
        "battery": f"a battery of {_bars(face.battery)} in the {face.battery_corner} corner",
    }


_CAPTIONS = (
    "a {face} watch showing {time}, with {first} and {second}.",
    "the watch face is {face} and shows {time}; {first}, {second}.",
    "a {face} watch at {time}: {first} and {second}.",
)
_PROMPTS = (
    "draw a {face} watch showing {time}, with {first} and {second}.",
    "a {face} watch face at {time} with {first} and {second}.",
)


def _fill(templates: tuple[str, ...], face: WatchScene, rng: np.random.Generator) -> str:
    p = _parts(face)
    first, second = (p["weather"], p["battery"]) if rng.random() < 0.5 else (p["battery"], p["weather"])
    template = templates[int(rng.integers(len(templates)))]
    return template.format(face=p["face"], time=p["time"], first=first, second=second)


def caption(face: WatchScene, rng: np.random.Generator) -> str:
    """A complete caption (every attribute) from a seeded choice of templates and orders; see `parse_caption`."""
    return _fill(_CAPTIONS, face, rng)


def t2i_prompt(face: WatchScene, rng: np.random.Generator) -> str:
    """A fully specified prompt for `face` (every attribute)."""
    return _fill(_PROMPTS, face, rng)


def shifted(face: WatchScene, minutes: int) -> WatchScene:
    """The same face `minutes` later (negative: earlier), round the 12-hour dial."""
    hour, minute = divmod(((face.hour % 12) * 60 + face.minute + minutes) % 720, 60)
    return replace(face, hour=hour or 12, minute=minute)


def later_prompt(face: WatchScene, minutes: int, rng: np.random.Generator) -> str:
    """A prompt whose time must be worked out: 'draw a blue watch showing the time 20 minutes after 3:20, ...'
    means `face` (its time is `minutes` after the one named)."""
    earlier = shifted(face, -minutes).time
    return t2i_prompt(face, rng).replace(f"{face.time}", f"the time {minutes} minutes after {earlier}", 1)


def later_question(face: WatchScene, minutes: int) -> QA:
    """A question whose answer needs the hands turned on: 'what time will the watch show 20 minutes later?'."""
    return QA(f"what time will the watch show {minutes} minutes later?", shifted(face, minutes).time, "later")


def later_instruction(minutes: int) -> str:
    """The edit that turns the question into reading a face: draw the hands `minutes` on."""
    return f"draw this watch {minutes} minutes later."


def set_instruction(time: str) -> str:
    """The explicit edit that names the time to draw ('draw this watch showing 4:35.'): the bridge of both stepwise
    routes, which names no offset."""
    return f"draw this watch showing {time}."


# Skills of the watch world (the keys of data.moves on it): turning the hands on by an offset, "10 minutes".
@dataclass(frozen=True)
class Shift:
    """The hands of `before` turned on by `minutes`: the skill's question and edit, and the explicit edit."""

    before: WatchScene
    minutes: int

    @property
    def after(self) -> WatchScene:
        return shifted(self.before, self.minutes)

    @property
    def question(self) -> str:
        return later_question(self.before, self.minutes).question

    @property
    def answer(self) -> str:
        return later_question(self.before, self.minutes).answer

    @property
    def instruction(self) -> str:
        return later_instruction(self.minutes)

    @property
    def explicit(self) -> str:
        return set_instruction(self.after.time)


def skills(minute_step: int) -> tuple[str, ...]:
    """Every offset a face of `minute_step`-minute hands can be turned on by, 5 to 55 minutes."""
    return tuple(f"{m} minutes" for m in range(minute_step, 60, minute_step) if m >= 5)


def skill_minutes(skill: str) -> int:
    """'20 minutes' -> 20."""
    return int(skill.split()[0])


_CORNER_RE = "|".join(CORNERS)
_FACE_RE = re.compile(rf"\b({'|'.join(FACES)})\b (?:watch|and shows)|watch face is ({'|'.join(FACES)})\b")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_WEATHER_RE = re.compile(rf"\b(a sun|a cloud|rain) in the ({_CORNER_RE}) corner")
_BATTERY_RE = re.compile(rf"battery of (\w+) bars? in the ({_CORNER_RE}) corner")


def parse_caption(text: str, size: int) -> WatchScene | None:
    """The face a caption states, or None when it misses an attribute or states an impossible face."""
    t = " ".join(text.lower().split())
    found = [r.search(t) for r in (_FACE_RE, _TIME_RE, _WEATHER_RE, _BATTERY_RE)]
    if not all(found):
        return None
    face, time, weather, battery = found
    bars = battery.group(1)
    level = NUMBER_WORDS.index(bars) if bars in NUMBER_WORDS else int(bars) if bars.isdigit() else -1
    try:
        return WatchScene(
            size=size,
            hour=int(time.group(1)),
            minute=int(time.group(2)),
            face=face.group(1) or face.group(2),
            weather={v: k for k, v in _WEATHER.items()}[weather.group(1)],
            weather_corner=weather.group(2),
            battery=level,
            battery_corner=battery.group(2),
        )
    except SceneError:  # an hour of 13, two icons in one corner, ...
        return None


def ask(face: WatchScene, kind: str) -> QA:
    """The question of `kind` about a face with its exact answer."""
    questions = {
        "time": ("what time does the watch show?", face.time),
        "hour": ("which hour does the hour hand point to?", str(face.hour)),
        "minute": ("how many minutes past the hour is it?", str(face.minute)),
        "face": ("what colour is the watch face?", face.face),
        "weather": ("what is the weather?", face.weather),
        "weather_corner": ("in which corner is the weather?", face.weather_corner),
        "battery": ("how full is the battery?", _bars(face.battery)),
        "battery_corner": ("in which corner is the battery?", face.battery_corner),
    }
    if kind not in questions:
        raise ValueError(f"unknown question kind {kind!r}; expected one of {', '.join(QA_KINDS)}")
    question, answer = questions[kind]
    return QA(question, answer, kind)


def sample_qa(face: WatchScene, rng: np.random.Generator, kinds: tuple[str, ...] = QA_KINDS) -> QA:
    """A question of a random kind (every face supports every kind)."""
    return ask(face, kinds[int(rng.integers(len(kinds)))])


def answer_space(kind: str, *, minutes: tuple[int, ...]) -> list[str]:
    """Every answer a question of `kind` can have (for chance levels and the random baseline)."""
    return {
        "time": [f"{h}:{m:02d}" for h in range(1, 13) for m in minutes],
        "hour": [str(h) for h in range(1, 13)],
        "minute": [str(m) for m in minutes],
        "face": list(FACES),
        "weather": list(WEATHER),
        "weather_corner": list(CORNERS),
        "battery": [_bars(n) for n in range(1, 5)],
        "battery_corner": list(CORNERS),
    }[kind]


def satisfies(parsed: WatchScene, want: WatchScene) -> Verdict:
    """Whether a parsed face is the prompted one, with one reason per attribute it gets wrong."""
    reasons = [
        f"{a}: drew {getattr(parsed, a)!r}, asked for {getattr(want, a)!r}"
        for a in ATTRIBUTES
        if getattr(parsed, a) != getattr(want, a)
    ]
    return Verdict(not reasons, reasons)
