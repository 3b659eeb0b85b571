"""The registry of worlds: every world the lab samples, renders, parses and describes, each a package under
`world/` behind one `World` subclass. Code outside `world/` finds a world here (by config, name, canvas, scene
or image) and talks to it through the `World` interface. To add a world: add its package and list its class in
`CLASSES`, or, from a package of its own, name its class under the `unifylab.worlds` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated, Any, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field

from unifylab.errors import UserError
from unifylab.world.base import MARGIN, QA, Nuisance, SceneError, Verdict, World
from unifylab.world.english import CAPTION_QUESTION
from unifylab.world.shapes import ShapesWorld
from unifylab.world.watch import WatchWorld

PLUGIN_GROUP = "unifylab.worlds"  # entry points `<world name> = <module>:<World subclass>` of other packages


def _plugins(taken: set[str]) -> tuple[list[type[World]], list[str]]:
    """The worlds other installed packages register under `PLUGIN_GROUP`, each a `World` named as its entry point
    is, and why any other entry point was left out (a broken plugin must not stop the lab's other worlds: asking
    for it names the reason)."""
    found, broken = [], []
    for ep in entry_points(group=PLUGIN_GROUP):
        where = f"entry point {ep.name} = {ep.value} ({PLUGIN_GROUP})"
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 (whatever a plugin raises, the other worlds still load)
            broken.append(f"{where} cannot load ({type(e).__name__}: {e})")
            continue
        if not (isinstance(cls, type) and issubclass(cls, World)) or getattr(cls, "name", None) != ep.name:
            broken.append(f"{where} names no World subclass whose name is {ep.name!r}")
        elif ep.name in taken:
            broken.append(f"{where} would replace the {ep.name} world")
        else:
            found.append(cls)
            taken.add(ep.name)
    return found, broken


_BUILT_IN = (ShapesWorld, WatchWorld)
_PLUGINS, BROKEN_PLUGINS = _plugins({w.name for w in _BUILT_IN})
CLASSES: dict[str, type[World]] = {w.name: w for w in (*_BUILT_IN, *_PLUGINS)}
WORLDS: tuple[str, ...] = tuple(CLASSES)
DEFAULT = "shapes"  # the world of a config, scene or canvas that names none (every older file)


def unknown_world(name: str) -> str:
    """Why `name` is no world: the worlds there are, and any plugin that failed to load."""
    broken = f" (not loaded: {'; '.join(BROKEN_PLUGINS)}; fix or uninstall that package)" if BROKEN_PLUGINS else ""
    return f"unknown world {name!r}; expected one of {', '.join(WORLDS)}{broken}"


def check_world(name: str, option: str = "--world") -> str:
    """`name` when it is a known world, else a UserError naming the option and the worlds there are."""
    if name not in WORLDS:
        raise UserError(f"{option}: {unknown_world(name)}")
    return name


def _named(value: Any) -> Any:
    """'watch' -> {'name': 'watch'}; a mapping without a name is the default world's (every older config)."""
    if isinstance(value, str):
        if value not in WORLDS:
            raise ValueError(unknown_world(value))
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": DEFAULT, **value}
    return value


WorldConfig = Annotated[
    Union[tuple(w.config_class for w in CLASSES.values())],  # noqa: UP007 (built from the registry)
    BeforeValidator(_named),
    Field(discriminator="name"),
]


class WorldChoice(BaseModel):
    """A world config on its own (validated as `world`, so errors name the field)."""

    world: WorldConfig


def default_config() -> Any:
    """The default world's default config (what a config that names no world gets)."""
    return CLASSES[DEFAULT].config_class()


def world_of(config: Any) -> World:
    """The world a config describes."""
    return CLASSES[config.name](config)


def world_of_canvas(canvas: tuple[str, int, int]) -> World:
    """The world of a canvas `(name, size, detail)`, as exact tokenizers and models name what they read and draw."""
    name, size, detail = canvas
    return CLASSES[name].of_canvas(size, detail)


def describe_canvas(canvas: tuple[str, int, int]) -> str:
    """'32 px 3x3 shapes world' for a canvas."""
    return world_of_canvas(canvas).config.describe()


def class_of_dict(scene_dict: dict[str, Any]) -> type[World]:
    """The world a scene's JSON form belongs to (its `world` field; none: the default world)."""
    name = scene_dict.get("world", DEFAULT)
    if name not in WORLDS:
        raise UserError(f"a scene of an {unknown_world(name)}")
    return CLASSES[name]


def class_of_scene(scene: Any) -> type[World]:
    """The world a scene object belongs to."""
    for w in CLASSES.values():
        if isinstance(scene, w.scene_class):
            return w
    raise TypeError(f"{type(scene).__name__} is no world's scene")


def render_scene(scene: Any, nuisance: Nuisance | None = None) -> np.ndarray:
    """Draw a scene of any world."""
    return class_of_scene(scene).render(scene, nuisance)


def scene_pairs(scene_dict: dict[str, Any]) -> set[tuple[str, str]]:
    """The compositions a scene's JSON form holds (see `World.pairs`), without validating it."""
    return class_of_dict(scene_dict).pairs_of_dict(scene_dict)


CLEAR_MARGIN = 1.5  # an image is a world's when that world re-renders it this many times better than any other


def recognise(image: np.ndarray) -> tuple[str | None, dict[str, float]]:
    """The world whose exact parser explains `image` clearly best (None when none does), and each world's
    re-render error: how a command tells a watch face from a shapes scene without being told."""
    errors = {name: cls.rerender_error(image) for name, cls in CLASSES.items()}
    best, *others = sorted(errors, key=errors.__getitem__)
    clear = all(errors[o] >= CLEAR_MARGIN * errors[best] + 1.0 for o in others)
    return (best if clear else None), errors


__all__ = [
    "CAPTION_QUESTION",
    "CLASSES",
    "DEFAULT",
    "MARGIN",
    "QA",
    "WORLDS",
    "Nuisance",
    "SceneError",
    "Verdict",
    "World",
    "WorldChoice",
    "WorldConfig",
    "check_world",
    "default_config",
    "class_of_dict",
    "class_of_scene",
    "describe_canvas",
    "recognise",
    "render_scene",
    "scene_pairs",
    "world_of",
    "world_of_canvas",
]
