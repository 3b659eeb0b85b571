"""The shapes world: coloured shapes in the cells of a grid (scene, canvas and rendering, the exact parser, its
language, knowledge and skills, and the exact grid tokenizer)."""

from unifylab.world.shapes.world import ShapesWorld

__all__ = ["ShapesWorld"]
