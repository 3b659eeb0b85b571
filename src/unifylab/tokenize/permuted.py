"""A discrete image tokenizer under a fixed random permutation of its codes: the same information as its base,
in a space misaligned with it. A model that reads images with the base and draws them with the permuted twin sees
every fact in both spaces, but no input code means what the same output code means (claim C3's control: the
effect of alignment, isolated from the information in the tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.tokenize.image import ImageTokenizer


class PermutedTokenizer(ImageTokenizer):
    kind = "permuted"
    discrete = True

    def __init__(self, base: ImageTokenizer, seed: int) -> None:
        if base.canvas is None or not base.discrete:
            raise UserError(
                f"tokenizers.permute_output: permutes a world's exact tokenizer (grid, attributes), not {base.kind}"
            )
        self.base, self.seed, self.size = base, int(seed), base.size
        self.perm = torch.from_numpy(np.random.default_rng([self.seed, 31]).permutation(base.vocab_size))
        self.inverse = torch.argsort(self.perm)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.base.token_grid

    @property
    def canvas(self) -> tuple[str, int, int] | None:
        return self.base.canvas

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    def encode_scenes(self, scenes: list[Any]) -> torch.Tensor:
        """The base's codes straight from ground-truth scenes, permuted."""
        return self.perm[self.base.encode_scenes(scenes)]

    def decode_scenes(self, codes: torch.Tensor) -> list[Any]:
        codes = torch.as_tensor(codes)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"permuted codes must lie in 0..{self.vocab_size - 1}")
        return self.base.decode_scenes(self.inverse[codes])

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return self.perm[self.base.encode(images)]

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        tokens = torch.as_tensor(tokens)
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"permuted codes must lie in 0..{self.vocab_size - 1}")
        return self.base.decode(self.inverse[tokens])

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "base": {"kind": self.base.kind, **self.base.config()}}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> PermutedTokenizer:
        from unifylab.tokenize.image import tokenizer_kinds

        base = dict(config.get("base") or {})
        kinds = tokenizer_kinds()
        kind = base.pop("kind", None)
        if set(config) != {"seed", "base"} or kind not in kinds or kind == cls.kind:
            raise UserError(
                f"{folder}/config.json: a permuted tokenizer needs 'seed' and 'base' (an exact tokenizer's config "
                f"with its 'kind'), got {sorted(config)}"
            )
        return cls(kinds[kind].load(Path(folder), base), int(config["seed"]))
