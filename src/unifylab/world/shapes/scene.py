"""`Scene` and `Obj`: the exact ground truth of a world image, with validation and a stable JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from unifylab.world.base import SceneError
from unifylab.world.shapes import canvas as W


@dataclass(frozen=True)
class Obj:
    """One object in a grid cell. `confidence` is set by the parser and ignored by equality."""

    shape: str
    color: str
    row: int
    col: int
    size: str = "large"
    confidence: float | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"shape": self.shape, "color": self.color, "row": self.row, "col": self.col}
        if self.size != "large":
            d["size"] = self.size
        if self.confidence is not None:
            d["confidence"] = round(self.confidence, 4)
        return d

    def describe(self) -> str:
        """Short human form, e.g. 'small red circle at row 1, column 3' (rows/columns count from 1)."""
        size = "small " if self.size == "small" else ""
        return f"{size}{self.color} {self.shape} at row {self.row + 1}, column {self.col + 1}"


_OBJ_KEYS = {"shape", "color", "row", "col", "size", "confidence"}
_SCENE_KEYS = {"world", "size", "grid", "objects"}


@dataclass(frozen=True)
class Scene:
    """A canvas of `size` px split into `grid` x `grid` cells with at most one object per cell.

    Objects are kept sorted by (row, col) so equal scenes have equal JSON.
    """

    size: int
    grid: int
    objects: tuple[Obj, ...] = ()
    world: str = W.WORLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(sorted(self.objects, key=lambda o: (o.row, o.col))))
        self.validate()

    def validate(self) -> None:
        """Raise SceneError naming the offending field when the scene breaks the world's rules."""
        if self.world != W.WORLD:
            raise SceneError(f"world: unknown world {self.world!r}; expected {W.WORLD!r}")
        for name, value in (("size", self.size), ("grid", self.grid)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise SceneError(f"{name}: expected an integer, got {value!r}")
        try:
            W.check_canvas(self.size, self.grid)
        except ValueError as e:
            raise SceneError(str(e)) from None
        seen: dict[tuple[int, int], int] = {}
        for i, o in enumerate(self.objects):
            where = f"objects[{i}]"
            for name, what, allowed in (
                ("shape", "shape", W.SHAPES),
                ("color", "colour", W.COLORS),
                ("size", "size", W.SIZES),
            ):
                v = getattr(o, name)
                if not isinstance(v, str) or v not in allowed:
                    raise SceneError(f"{where}.{name}: unknown {what} {v!r}; expected one of {', '.join(allowed)}")
            for name in ("row", "col"):
                v = getattr(o, name)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < self.grid:
                    raise SceneError(f"{where}.{name}: {v!r} is outside the grid; expected 0..{self.grid - 1}")
            if (o.row, o.col) in seen:
                raise SceneError(
                    f"{where}: cell (row {o.row}, col {o.col}) already holds objects[{seen[o.row, o.col]}]; "
                    "at most one object per cell"
                )
            seen[o.row, o.col] = i
        if any(o.size == "small" for o in self.objects):
            try:
                W.check_canvas(self.size, self.grid, ("large", "small"))
            except ValueError as e:
                raise SceneError(str(e)) from None

    def at(self, row: int, col: int) -> Obj | None:
        """The object in a cell, or None."""
        return next((o for o in self.objects if o.row == row and o.col == col), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": self.world,
            "size": self.size,
            "grid": self.grid,
            "objects": [o.to_dict() for o in self.objects],
        }

    def to_json(self) -> str:
        """One-line JSON in the contract's key order (the form written to scenes.jsonl)."""
        return json.dumps(self.to_dict())

    def key(self) -> str:
        """The scene's identity: canvas, grid and the sorted objects (confidences ignored)."""
        objs = ";".join(f"{o.row},{o.col},{o.shape},{o.color},{o.size}" for o in self.objects)
        return f"{self.world}:{self.size}:{self.grid}:{objs}"

    def without_confidence(self) -> Scene:
        """The same scene with parser confidences dropped (for printing ground-truth-shaped JSON)."""
        objs = tuple(Obj(o.shape, o.color, o.row, o.col, o.size) for o in self.objects)
        return Scene(self.size, self.grid, objs, self.world)

    @classmethod
    def from_dict(cls, d: Any) -> Scene:
        """Build and validate a scene from parsed JSON; unknown keys and wrong types are SceneErrors."""
        if not isinstance(d, dict):
            raise SceneError(f"expected a JSON object for a scene, got {type(d).__name__}")
        unknown = set(d) - _SCENE_KEYS
        if unknown:
            raise SceneError(f"unknown scene field(s) {sorted(unknown)}; valid fields: {sorted(_SCENE_KEYS)}")
        missing = {"size", "grid"} - set(d)
        if missing:
            raise SceneError(f"missing scene field(s) {sorted(missing)}")
        raw = d.get("objects", [])
        if not isinstance(raw, list):
            raise SceneError(f"objects: expected a list, got {type(raw).__name__}")
        objs = []
        for i, o in enumerate(raw):
            if not isinstance(o, dict):
                raise SceneError(f"objects[{i}]: expected a JSON object, got {type(o).__name__}")
            bad = set(o) - _OBJ_KEYS
            if bad:
                raise SceneError(f"objects[{i}]: unknown field(s) {sorted(bad)}; valid fields: {sorted(_OBJ_KEYS)}")
            need = {"shape", "color", "row", "col"} - set(o)
            if need:
                raise SceneError(f"objects[{i}]: missing field(s) {sorted(need)}")
            objs.append(Obj(o["shape"], o["color"], o["row"], o["col"], o.get("size", "large"), o.get("confidence")))
        return cls(size=d["size"], grid=d["grid"], objects=tuple(objs), world=d.get("world", W.WORLD))

    @classmethod
    def from_json(cls, text: str) -> Scene:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SceneError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(d)
