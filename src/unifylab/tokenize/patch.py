"""Continuous image tokens for understanding inputs (Janus-style decoupling: continuous in, discrete out).

`source="pixels"`: non-overlapping p x p patches flattened to p*p*3 values in [-1, 1] (the model's linear patch
embedding projects them); decoding un-patchifies exactly. `source="vq"`: the trained VQ encoder's
pre-quantisation features; decoding quantises them and runs the VQ decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.tokenize.image import ImageTokenizer, read_config
from unifylab.tokenize.vq import VQTokenizer, to_uint8, to_unit

SOURCES = ("pixels", "vq")
VQ_FOLDER = "vq"


class PatchTokenizer(ImageTokenizer):
    kind = "patch"
    discrete = False

    def __init__(self, size: int = 32, patch: int = 4, source: str = "pixels", vq: VQTokenizer | None = None) -> None:
        if source not in SOURCES:
            raise UserError(f"patch tokenizer: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        if source == "vq":
            if vq is None:
                raise UserError("patch tokenizer with source 'vq' needs a trained vq tokenizer")
            size, patch = vq.size, vq.cfg.downsample
        if patch < 1 or size % patch:
            raise UserError(f"patch tokenizer: size {size} must be a multiple of patch {patch}")
        self.size, self.patch, self.source, self.vq = size, patch, source, vq

    @property
    def token_grid(self) -> tuple[int, int]:
        n = self.size // self.patch
        return n, n

    @property
    def feature_dim(self) -> int:
        return len(self.vq.cfg.levels) if self.vq is not None else self.patch * self.patch * 3

    def encode(self, images: np.ndarray) -> torch.Tensor:
        images = self.check_images(images)
        if self.vq is not None:
            return self.vq.features(images)
        n, p, g = images.shape[0], self.patch, self.size // self.patch
        x = to_unit(images).reshape(n, 3, g, p, g, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * 3)

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        tokens = torch.as_tensor(tokens, dtype=torch.float32)
        if tokens.ndim != 3 or tokens.shape[1:] != (self.num_tokens, self.feature_dim):
            raise UserError(
                f"patch tokenizer decodes features [N, {self.num_tokens}, {self.feature_dim}], got {list(tokens.shape)}"
            )
        g, p = self.size // self.patch, self.patch
        if self.vq is not None:
            with torch.no_grad():
                q, _ = self.vq.model.fsq(tokens.to(self.vq.device).reshape(-1, g, g, self.feature_dim))
                return to_uint8(self.vq.model.decode_values(q))
        x = tokens.reshape(-1, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(-1, 3, self.size, self.size)
        return to_uint8(x)

    def config(self) -> dict[str, Any]:
        return {"source": self.source, "size": self.size, "patch": self.patch}

    def save_pretrained(self, folder: Path) -> None:
        super().save_pretrained(folder)
        if self.vq is not None:
            self.vq.save_pretrained(Path(folder) / VQ_FOLDER)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> PatchTokenizer:
        unknown = set(config) - {"source", "size", "patch"}
        if unknown:
            raise UserError(f"{folder}/config.json: unknown field(s) {sorted(unknown)} for a patch tokenizer")
        source = config.get("source", "pixels")
        vq = None
        if source == "vq":
            sub = Path(folder) / VQ_FOLDER
            cfg = read_config(sub)
            if cfg.pop("kind") != "vq":
                raise UserError(f"{sub}/config.json: kind must be 'vq' for a patch tokenizer with source 'vq'")
            vq = VQTokenizer.load(sub, cfg)
        return cls(int(config.get("size", 32)), int(config.get("patch", 4)), source, vq)
