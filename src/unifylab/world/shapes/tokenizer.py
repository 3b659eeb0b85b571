"""The exact oracle image tokenizer of the shapes world: one token per cell, decoded by rendering.

Code 0 is an empty cell; code 1 + (size * n_shapes + shape) * n_colors + color is an object, where `size` indexes
the size variants this canvas can draw (only 'large' when small objects would be too coarse), so every code
decodes. Encoding a clean render and decoding it gives back the same bytes, so this is the perfectly aligned
image space for ablations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.tokenize.image import ImageTokenizer
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.parse import parse_batch
from unifylab.world.shapes.scene import Obj, Scene

_COLORS = list(W.COLORS)


class GridTokenizer(ImageTokenizer):
    kind = "grid"
    discrete = True

    def __init__(self, size: int = 32, grid: int = 3) -> None:
        try:
            W.check_canvas(size, grid)
        except ValueError as e:
            raise UserError(f"grid tokenizer: {e}") from None
        self.size, self.grid = size, grid
        try:
            W.check_canvas(size, grid, ("large", "small"))
            self.sizes: tuple[str, ...] = ("large", "small")
        except ValueError:
            self.sizes = ("large",)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.grid, self.grid

    @property
    def canvas(self) -> tuple[str, int, int]:
        return W.WORLD, self.size, self.grid

    @property
    def vocab_size(self) -> int:
        return 1 + len(self.sizes) * len(W.SHAPES) * len(W.COLORS)

    def encode_scenes(self, scenes: list[Scene]) -> torch.Tensor:
        """Codes [N, grid*grid] straight from ground-truth scenes (no rendering or parsing)."""
        out = torch.zeros(len(scenes), self.grid * self.grid, dtype=torch.long)
        for i, s in enumerate(scenes):
            if (s.size, s.grid) != (self.size, self.grid):
                raise UserError(
                    f"scene {i} is {s.size} px / grid {s.grid}; this tokenizer is {self.size} px / grid {self.grid}"
                )
            for o in s.objects:
                z, sh, c = self.sizes.index(o.size), W.SHAPES.index(o.shape), _COLORS.index(o.color)
                out[i, o.row * self.grid + o.col] = 1 + (z * len(W.SHAPES) + sh) * len(W.COLORS) + c
        return out

    def decode_scenes(self, codes: torch.Tensor) -> list[Scene]:
        """Scenes from codes [N, grid*grid]; codes outside the vocabulary are a ValueError."""
        codes = torch.as_tensor(codes).reshape(-1, self.grid * self.grid)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"grid codes must lie in 0..{self.vocab_size - 1}")
        scenes = []
        for row in codes.tolist():
            objs = []
            for cell, code in enumerate(row):
                if code:
                    rest, c = divmod(code - 1, len(W.COLORS))
                    z, sh = divmod(rest, len(W.SHAPES))
                    objs.append(Obj(W.SHAPES[sh], _COLORS[c], cell // self.grid, cell % self.grid, self.sizes[z]))
            scenes.append(Scene(self.size, self.grid, tuple(objs)))
        return scenes

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return self.encode_scenes(parse_batch(self.check_images(images), self.grid))

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        scenes = self.decode_scenes(tokens)
        if not scenes:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([W.render(s) for s in scenes])

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "grid": self.grid}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> GridTokenizer:
        unknown = set(config) - {"size", "grid"}
        if unknown:
            raise UserError(f"{folder}/config.json: unknown field(s) {sorted(unknown)} for a grid tokenizer")
        return cls(int(config.get("size", 32)), int(config.get("grid", 3)))
