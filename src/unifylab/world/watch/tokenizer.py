"""The exact oracle image tokenizer of the watch world: one token per attribute, decoded by rendering.

Tokens, in order: hour, minute, face colour, weather icon, weather corner, battery level, battery corner (the
battery's corner counted among the three the weather leaves free). All seven share one vocabulary as large as the
widest attribute, and code c at a position means that attribute's value c mod its count, so every code sequence
decodes to a valid face. Encoding a clean render and decoding it gives back the same bytes: the watch world's
perfectly aligned image space, as the grid tokenizer is the shapes world's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.tokenize.image import ImageTokenizer
from unifylab.world.watch import face as W
from unifylab.world.watch.parse import parse_faces


class AttributeTokenizer(ImageTokenizer):
    kind = "attributes"
    discrete = True

    def __init__(self, size: int = 32, minute_step: int = 5) -> None:
        try:
            W.check_dial(size, minute_step)
        except ValueError as e:
            raise UserError(f"attribute tokenizer: {e}") from None
        self.size, self.minute_step = size, minute_step
        self.values: tuple[tuple[Any, ...], ...] = (
            tuple(range(1, 13)),
            tuple(range(0, 60, minute_step)),
            tuple(W.FACES),
            tuple(W.WEATHER),
            W.CORNERS,
            tuple(range(1, W.LEVELS + 1)),
            tuple(range(len(W.CORNERS) - 1)),  # index among the corners the weather leaves free
        )

    @property
    def token_grid(self) -> tuple[int, int]:
        return 1, len(self.values)

    @property
    def canvas(self) -> tuple[str, int, int]:
        return W.WORLD, self.size, self.minute_step

    @property
    def vocab_size(self) -> int:
        return max(len(v) for v in self.values)

    def encode_scenes(self, faces: list[W.WatchScene]) -> torch.Tensor:
        """Codes [N, 7] straight from ground-truth faces (no rendering or parsing)."""
        out = torch.zeros(len(faces), len(self.values), dtype=torch.long)
        for i, f in enumerate(faces):
            if f.size != self.size or f.minute % self.minute_step:
                raise UserError(
                    f"face {i} is {f.size} px at {f.time}; this tokenizer is {self.size} px in steps of "
                    f"{self.minute_step} minutes"
                )
            free = [c for c in W.CORNERS if c != f.weather_corner]
            attrs = (f.hour, f.minute, f.face, f.weather, f.weather_corner, f.battery, free.index(f.battery_corner))
            out[i] = torch.tensor([v.index(a) for v, a in zip(self.values, attrs)])
        return out

    def decode_scenes(self, codes: torch.Tensor) -> list[W.WatchScene]:
        """Faces from codes [N, 7]; every code in 0..vocab_size-1 decodes, others are a ValueError."""
        codes = torch.as_tensor(codes).reshape(-1, len(self.values))
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"attribute codes must lie in 0..{self.vocab_size - 1}")
        faces = []
        for row in codes.tolist():
            hour, minute, face, weather, corner, battery, free = (v[c % len(v)] for v, c in zip(self.values, row))
            others = [c for c in W.CORNERS if c != corner]
            faces.append(W.WatchScene(self.size, hour, minute, face, weather, corner, battery, others[free]))
        return faces

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return self.encode_scenes(parse_faces(self.check_images(images), minute_step=self.minute_step))

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        faces = self.decode_scenes(tokens)
        if not faces:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([W.render(f) for f in faces])

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "minute_step": self.minute_step}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> AttributeTokenizer:
        unknown = set(config) - {"size", "minute_step"}
        if unknown:
            raise UserError(f"{folder}/config.json: unknown field(s) {sorted(unknown)} for an attribute tokenizer")
        return cls(int(config.get("size", 32)), int(config.get("minute_step", 5)))
