"""Controlled worlds with exact ground truth: scenes, deterministic rendering and the exact parser."""

from unifylab.errors import UserError
from unifylab.world.parse import parse, parse_batch
from unifylab.world.scene import Obj, Scene, SceneError
from unifylab.world.shapes import (
    COLORS,
    SHAPES,
    SIZES,
    WORLD,
    Nuisance,
    ShapesConfig,
    render,
    sample_scene,
    sample_scenes,
)

WORLDS: tuple[str, ...] = (WORLD, "watch")  # the worlds the lab samples, renders, parses and describes


def check_world(name: str, option: str = "--world") -> str:
    """`name` when it is a known world, else a UserError naming the option and the worlds there are."""
    if name not in WORLDS:
        raise UserError(f"{option}: unknown world {name!r}; expected one of {', '.join(WORLDS)}")
    return name


__all__ = [
    "COLORS",
    "SHAPES",
    "SIZES",
    "WORLDS",
    "Nuisance",
    "Obj",
    "Scene",
    "SceneError",
    "ShapesConfig",
    "check_world",
    "parse",
    "parse_batch",
    "render",
    "sample_scene",
    "sample_scenes",
]
