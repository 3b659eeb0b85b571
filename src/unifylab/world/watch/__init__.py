"""The watch world: smartwatch faces (face, config and rendering, the exact parser, its language, GenEval-style
specs, and the exact attribute tokenizer)."""

from unifylab.world.watch.world import WatchWorld

__all__ = ["WatchWorld"]
