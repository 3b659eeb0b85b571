"""The `watch` world's faces: smartwatch faces (analogue time, face colour, a weather icon and a battery bar in two
of the four corners), their config, sampling and rendering, with exact geometry shared with the parser.

Unlike the shapes world's categorical cells, the time is read by geometry: hands at an angle, to the nearest
allowed minute (`minute_step`). Every part is a binary mask in a palette colour (no anti-aliasing), so a clean
render holds only palette colours and the background, and the parser inverts it exactly: it labels each pixel with
its nearest colour, matches the hand pixels against every allowed time's hand mask at once (one matrix product),
takes the face colour by majority and reads each corner's icon by colour and the battery level by its area.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from numbers import Integral
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.world.base import Nuisance, SceneError

WORLD = "watch"
FACES: dict[str, tuple[int, int, int]] = {
    "red": (180, 40, 40),
    "green": (40, 140, 60),
    "blue": (40, 70, 180),
    "purple": (130, 50, 160),
    "teal": (30, 140, 140),
    "brown": (140, 90, 30),
}
HANDS: tuple[int, int, int] = (245, 245, 245)
WEATHER: dict[str, tuple[int, int, int]] = {"sun": (240, 200, 20), "cloud": (170, 170, 190), "rain": (60, 140, 240)}
BATTERY: tuple[int, int, int] = (60, 220, 90)
BACKGROUND: tuple[int, int, int] = (0, 0, 0)
CORNERS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
LEVELS = 4  # battery segments
MIN_CANVAS, MAX_CANVAS = 32, 128
FACE_RADIUS = 0.28  # of the canvas
MINUTE_HAND, HOUR_HAND = 0.9, 0.55  # of the face radius
ICON = 0.22  # icon box side, of the canvas
EDGE = 0.06  # gap between the canvas edge and an icon box, of the canvas

STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # minute steps that divide the hour


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


@dataclass(frozen=True)
class Dial:
    """Pixel geometry of one canvas size: the face disc, hand widths and the four corner icon boxes."""

    size: int

    @property
    def radius(self) -> float:
        return FACE_RADIUS * self.size

    @property
    def hand_width(self) -> float:
        """Half-width of a hand in pixels."""
        return 0.5 + self.size / 128

    @property
    def icon(self) -> int:
        return _round(ICON * self.size)

    def corner(self, name: str) -> tuple[int, int]:
        """Top-left pixel (y, x) of a corner's icon box."""
        near, far = _round(EDGE * self.size), self.size - _round(EDGE * self.size) - self.icon
        k = CORNERS.index(name)
        return (near if k < 2 else far), (near if k % 2 == 0 else far)

    @property
    def disc(self) -> np.ndarray:
        """Flat indices of the pixels on the face (centre within the radius)."""
        y, x = self.grid()
        return np.flatnonzero(((x * x + y * y) <= self.radius**2).ravel())

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x) relative to the canvas centre, each [size, size]."""
        c = np.arange(self.size) + 0.5 - self.size / 2
        return np.meshgrid(c, c, indexing="ij")

    def hands(self, hour: int, minute: int) -> np.ndarray:
        """Boolean mask [size, size] of both hands at hh:mm."""
        return _hands(self.size, hour, minute)


@lru_cache(maxsize=8192)
def _hands(size: int, hour: int, minute: int) -> np.ndarray:
    dial = Dial(size)
    y, x = dial.grid()
    mask = np.zeros((size, size), bool)
    for angle, length in ((6.0 * minute, MINUTE_HAND), (30.0 * (hour % 12) + 0.5 * minute, HOUR_HAND)):
        dx, dy = np.sin(np.radians(angle)), -np.cos(np.radians(angle))
        t = x * dx + y * dy  # along the hand
        d = np.abs(x * dy - y * dx)  # across it
        mask |= (t >= 0) & (t <= length * dial.radius) & (d <= dial.hand_width)
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=64)
def icon_mask(kind: str, side: int) -> np.ndarray:
    """Binary mask [side, side] of a weather icon ('sun', 'cloud', 'rain') or of one battery segment column set
    ('battery<k>': the first k of LEVELS segments)."""
    c = np.arange(side) + 0.5
    y, x = np.meshgrid(c, c, indexing="ij")
    s = float(side)
    if kind == "sun":
        m = (x - s / 2) ** 2 + (y - s / 2) ** 2 <= (0.45 * s) ** 2
    elif kind == "cloud":
        m = ((x - 0.35 * s) ** 2 + (y - 0.55 * s) ** 2 <= (0.25 * s) ** 2) | (
            (x - 0.6 * s) ** 2 + (y - 0.45 * s) ** 2 <= (0.3 * s) ** 2
        )
        m |= (y >= 0.55 * s) & (y <= 0.8 * s) & (x >= 0.15 * s) & (x <= 0.85 * s)
    elif kind == "rain":
        drops = np.zeros_like(x, bool)
        for cx in (0.2, 0.5, 0.8):
            drops |= (np.abs(x - cx * s) <= max(0.5, 0.06 * s)) & (y >= 0.2 * s) & (y <= 0.8 * s)
        m = drops
    elif kind.startswith("battery"):
        level = int(kind.removeprefix("battery"))
        width = (side - (LEVELS - 1)) // LEVELS  # segments and one-pixel gaps fill the box
        height = max(2, _round(0.4 * s))
        top = (side - height) // 2
        m = np.zeros((side, side), bool)
        for k in range(level):
            m[top : top + height, k * (width + 1) : k * (width + 1) + width] = True
    else:
        raise ValueError(f"unknown icon {kind!r}")
    m.setflags(write=False)
    return m


def segment_pixels(size: int) -> int:
    """Pixels of one battery segment at a canvas size (the parser reads the level as area / this)."""
    return int(icon_mask("battery1", Dial(size).icon).sum())


@dataclass(frozen=True)
class WatchScene:
    """One watch face: the time (hour 1..12, minute 0..59), face colour, weather icon and battery level with the
    corners they sit in (two different corners)."""

    size: int
    hour: int
    minute: int
    face: str
    weather: str
    weather_corner: str
    battery: int
    battery_corner: str
    world: str = WORLD

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise SceneError naming the offending field when the face breaks the world's rules."""
        if self.world != WORLD:
            raise SceneError(f"world: expected {WORLD!r}, got {self.world!r}")
        checks = (
            ("size", self.size, range(MIN_CANVAS, MAX_CANVAS + 1), f"{MIN_CANVAS}..{MAX_CANVAS}"),
            ("hour", self.hour, range(1, 13), "1..12"),
            ("minute", self.minute, range(60), "0..59"),
            ("battery", self.battery, range(1, LEVELS + 1), f"1..{LEVELS}"),
            ("face", self.face, FACES, ", ".join(FACES)),
            ("weather", self.weather, WEATHER, ", ".join(WEATHER)),
            ("weather_corner", self.weather_corner, CORNERS, ", ".join(CORNERS)),
            ("battery_corner", self.battery_corner, CORNERS, ", ".join(CORNERS)),
        )
        for name, value, allowed, says in checks:
            kind = Integral if isinstance(allowed, range) else str  # so neither 32.0 nor ["red"] passes
            if isinstance(value, bool) or not isinstance(value, kind) or value not in allowed:
                raise SceneError(f"{name}: {value!r} is not allowed; expected one of {says}")
        if self.weather_corner == self.battery_corner:
            raise SceneError(
                f"weather_corner and battery_corner are both {self.weather_corner!r}; they sit in different corners"
            )

    @property
    def time(self) -> str:
        """'3:05'."""
        return f"{self.hour}:{self.minute:02d}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"world": d.pop("world"), **d}

    def key(self) -> str:
        """The face's identity: its JSON form."""
        return self.to_json()

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def check_step(self, minute_step: int) -> None:
        """Raise SceneError when the minute is off a world's `minute_step` (it would render, then parse back as
        another time)."""
        if self.minute % minute_step:
            raise SceneError(
                f"minute: {self.minute} is off the {minute_step}-minute steps of this world's dial (it would read "
                f"back as another time); use a multiple of {minute_step}, or a world with a finer minute_step"
            )

    @classmethod
    def from_dict(cls, d: Any, minute_step: int | None = None) -> WatchScene:
        """Build and validate a face from parsed JSON (on a world of `minute_step`-minute hands, when given);
        unknown or missing keys are SceneErrors."""
        if not isinstance(d, dict):
            raise SceneError(f"expected a JSON object for a watch face, got {type(d).__name__}")
        fields = set(cls.__dataclass_fields__)
        if bad := sorted(set(d) - fields):
            raise SceneError(f"unknown watch field(s) {bad}; valid fields: {sorted(fields)}")
        if missing := sorted(fields - {"world"} - set(d)):
            raise SceneError(f"missing watch field(s) {missing}")
        scene = cls(**d)
        if minute_step is not None:
            scene.check_step(minute_step)
        return scene


class WatchConfig(BaseModel):
    """How faces of the watch world are sampled: canvas and the minute resolution of the hands."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["watch"] = "watch"
    size: int = Field(32, description="canvas side in pixels")
    minute_step: int = Field(5, ge=1, le=30, description="the hands show minutes in steps of this many")

    @model_validator(mode="after")
    def _check(self) -> WatchConfig:
        check_dial(self.size, self.minute_step)
        return self

    @property
    def minutes(self) -> tuple[int, ...]:
        return tuple(range(0, 60, self.minute_step))

    @property
    def canvas(self) -> tuple[str, int, int]:
        """(world, size, minute step): what an image of this world is, and what a model of it must read and draw."""
        return WORLD, self.size, self.minute_step

    def describe(self) -> str:
        return f"{self.size} px watch world ({self.minute_step}-minute hands)"


def check_dial(size: int, step: int) -> None:
    """Raise ValueError with the fix when a canvas cannot show every allowed time as distinct hands."""
    if not MIN_CANVAS <= size <= MAX_CANVAS:
        raise ValueError(f"size {size} px is outside {MIN_CANVAS}..{MAX_CANVAS}; pick a canvas in that range")
    if 60 % step:
        raise ValueError(
            f"minute_step {step} does not divide the hour; use one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30"
        )
    if not hand_masks(size, step).distinct:
        finer = min(s for s in STEPS if hand_masks(size, s).distinct)
        raise ValueError(
            f"at {size} px, times {step} minutes apart draw identical hands; use minute_step >= {finer} or a "
            "larger canvas"
        )


@dataclass(frozen=True)
class HandMasks:
    """Every allowed time's hand mask over the face's pixels."""

    times: list[tuple[int, int]]
    masks: np.ndarray  # [T, disc pixels] float32
    areas: np.ndarray  # [T]
    distinct: bool


@lru_cache(maxsize=32)
def hand_masks(size: int, step: int) -> HandMasks:
    dial = Dial(size)
    times = [(h, m) for h in range(1, 13) for m in range(0, 60, step)]
    masks = np.stack([dial.hands(h, m).ravel()[dial.disc] for h, m in times]).astype(np.float32)
    distinct = len(np.unique(masks.astype(bool), axis=0)) == len(times)
    return HandMasks(times, masks, masks.sum(1), distinct)


def render(scene: WatchScene, nuisance: Nuisance | None = None) -> np.ndarray:
    """Draw a face as an RGB uint8 array [size, size, 3]; identical inputs give identical bytes."""
    dial = Dial(scene.size)
    rng = np.random.default_rng(nuisance.seed) if nuisance else None
    bg = np.array(BACKGROUND, np.int64)
    if nuisance and nuisance.tint:
        bg = np.clip(bg + rng.integers(0, nuisance.tint + 1, 3), 0, 255)
    img = np.empty((scene.size, scene.size, 3), np.uint8)
    img[:] = bg
    img.reshape(-1, 3)[dial.disc] = FACES[scene.face]
    img[dial.hands(scene.hour, scene.minute)] = HANDS
    side = dial.icon
    for corner, kind, color in (
        (scene.weather_corner, scene.weather, WEATHER[scene.weather]),
        (scene.battery_corner, f"battery{scene.battery}", BATTERY),
    ):
        y0, x0 = dial.corner(corner)
        if nuisance and nuisance.jitter:
            dy, dx = rng.integers(-nuisance.jitter, nuisance.jitter + 1, 2)
            y0, x0 = y0 + dy, x0 + dx
        img[y0 : y0 + side, x0 : x0 + side][icon_mask(kind, side)] = color
    if nuisance and nuisance.noise:
        noisy = img.astype(np.float32) + rng.normal(0.0, nuisance.noise, img.shape).astype(np.float32)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return img


def sample_face(config: WatchConfig, rng: np.random.Generator) -> WatchScene:
    """One random face: every attribute uniform, the two corners distinct."""
    corners = rng.choice(len(CORNERS), size=2, replace=False)
    return WatchScene(
        size=config.size,
        hour=int(rng.integers(1, 13)),
        minute=int(config.minutes[int(rng.integers(len(config.minutes)))]),
        face=list(FACES)[int(rng.integers(len(FACES)))],
        weather=list(WEATHER)[int(rng.integers(len(WEATHER)))],
        weather_corner=CORNERS[int(corners[0])],
        battery=int(rng.integers(1, LEVELS + 1)),
        battery_corner=CORNERS[int(corners[1])],
    )


def sample_faces(config: WatchConfig, n: int, seed: int) -> list[WatchScene]:
    """`n` faces from one seed; the same seed always gives the same list."""
    rng = np.random.default_rng(seed)
    return [sample_face(config, rng) for _ in range(n)]
