"""Controlled worlds with exact ground truth: scenes, deterministic rendering and the exact parser."""

from unifylab.world.parse import parse, parse_batch
from unifylab.world.scene import Obj, Scene, SceneError
from unifylab.world.shapes import COLORS, SHAPES, SIZES, Nuisance, ShapesConfig, render, sample_scene, sample_scenes

__all__ = [
    "COLORS",
    "SHAPES",
    "SIZES",
    "Nuisance",
    "Obj",
    "Scene",
    "SceneError",
    "ShapesConfig",
    "parse",
    "parse_batch",
    "render",
    "sample_scene",
    "sample_scenes",
]
