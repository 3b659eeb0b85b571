"""What every image tokenizer shares: input checks, token-grid positions, the folder format and the registry.

A tokenizer folder holds `config.json` with `"kind"` (`vq`, `patch`, `permuted` or a world's exact kind: `grid`,
`attributes`) and whatever weights that kind needs.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.io import read_folder_config, write_text_atomic

CONFIG = "config.json"


class ImageTokenizer(ABC):
    """Images (uint8 [N, H, W, 3]) <-> tokens: discrete codes [N, T] or continuous features [N, T, D]."""

    kind: ClassVar[str]
    discrete: ClassVar[bool]
    size: int  # canvas side in px the tokenizer accepts

    @property
    @abstractmethod
    def token_grid(self) -> tuple[int, int]:
        """Tokens per image as (rows, cols), in row-major order."""

    @property
    def canvas(self) -> tuple[str, int, int] | None:
        """The world canvas (world, size, detail) an exact tokenizer reads and draws; None for the others."""
        return None

    @property
    def num_tokens(self) -> int:
        h, w = self.token_grid
        return h * w

    @property
    def vocab_size(self) -> int:
        """Number of distinct codes (discrete tokenizers)."""
        raise TypeError(f"{self.kind} tokenizer is continuous and has no vocabulary")

    @property
    def feature_dim(self) -> int:
        """Width of each feature vector (continuous tokenizers)."""
        raise TypeError(f"{self.kind} tokenizer is discrete; it has a vocabulary, not features")

    def positions(self) -> torch.Tensor:
        """(row, col) of every token, [T, 2]: the 2-D positions used for image tokens."""
        return _grid_positions(*self.token_grid).clone()

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """Accept uint8 [H, W, 3] or [N, H, W, 3] at this tokenizer's size; anything else is one clear UserError."""
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise UserError(
                f"{self.kind} tokenizer expects uint8 RGB images, got {getattr(images, 'dtype', type(images))}"
            )
        if images.ndim == 3:
            images = images[None]
        want = (self.size, self.size, 3)
        if images.ndim != 4 or images.shape[1:] != want:
            raise UserError(
                f"{self.kind} tokenizer expects images of shape [N, {self.size}, {self.size}, 3], got "
                f"{list(images.shape)}; resize to {self.size} px RGB or train a tokenizer for this size"
            )
        return images

    @abstractmethod
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """Tokens of a batch of images: long [N, T] if discrete, float [N, T, D] if continuous."""

    @abstractmethod
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Images uint8 [N, H, W, 3] from tokens."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What config.json holds (besides `kind`)."""

    def save_pretrained(self, folder: Path) -> None:
        write_text_atomic(Path(folder) / CONFIG, json.dumps({"kind": self.kind, **self.config()}, indent=2) + "\n")

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> ImageTokenizer:
        """Build from a folder whose config.json has been read."""


def read_config(folder: Path) -> dict[str, Any]:
    file = Path(folder) / CONFIG
    cfg = read_folder_config(
        folder, "tokenizer", "an image tokenizer folder needs config.json (see `unifylab tokenizer train-image`)"
    )
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise UserError(f"{file}: missing field 'kind'; expected one of {', '.join(tokenizer_kinds())}")
    return cfg


def image_tokenizer(
    spec: str, *, world: Any, patch: int = 4, source: str = "pixels", vq: Path | None = None
) -> ImageTokenizer:
    """The one factory of image tokenizers for a world config: its exact oracle (by its kind: 'grid' on the
    shapes world, 'attributes' on the watch world), 'patch' (continuous `patch` px patches of the pixels, or with
    source 'vq' the features of the vq tokenizer saved in `vq`) or a folder saved with `save_pretrained`, which
    must be for the world's image size."""
    from unifylab.tokenize.patch import PatchTokenizer
    from unifylab.tokenize.vq import VQTokenizer
    from unifylab.world import world_of

    size = world.size
    if spec in exact_kinds():
        exact = world_of(world).exact_tokenizer()
        if exact.kind != spec:
            raise UserError(
                f"tokenizers: {spec!r} is another world's exact tokenizer; the {world.name} world's is {exact.kind!r}"
            )
        return exact
    if spec == "patch":
        base = None
        if source == "vq":
            if vq is None:
                raise UserError("--source vq needs --vq DIR, a folder written by `unifylab tokenizer train-image`")
            base = load_image_tokenizer(vq)
            if not isinstance(base, VQTokenizer):
                raise UserError(f"--vq {vq}: holds a {base.kind} tokenizer; a vq one is needed")
        return PatchTokenizer(size, patch, source, base)
    tok = load_image_tokenizer(Path(spec))
    if tok.size != size:
        raise UserError(f"tokenizers: {spec} is for {tok.size} px images but world.size is {size}")
    return tok


def _exact_classes() -> list[type[ImageTokenizer]]:
    """Each registered world's exact tokenizer class (it lives with its world)."""
    from unifylab.world import CLASSES

    return [w.tokenizer_class() for w in CLASSES.values()]


def exact_kinds() -> set[str]:
    """The kinds of the registered worlds' exact tokenizers (a config names them, not a folder)."""
    return {c.kind for c in _exact_classes()}


def tokenizer_kinds() -> dict[str, type[ImageTokenizer]]:
    """Every image tokenizer class by its kind (config.json's `kind`, `tokenizer train-image --kind`): the general
    ones here and each world's exact one."""
    from unifylab.tokenize.patch import PatchTokenizer
    from unifylab.tokenize.permuted import PermutedTokenizer
    from unifylab.tokenize.vq import VQTokenizer

    return {c.kind: c for c in (VQTokenizer, *_exact_classes(), PatchTokenizer, PermutedTokenizer)}


def load_image_tokenizer(folder: Path) -> ImageTokenizer:
    """Load any image tokenizer saved with `save_pretrained`, dispatching on config.json's `kind`."""
    kinds = tokenizer_kinds()
    cfg = read_config(folder)
    kind = cfg.pop("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise UserError(
            f"{Path(folder) / CONFIG}: kind: unknown tokenizer kind {kind!r}; expected one of {', '.join(kinds)}"
        )
    return kinds[kind].load(Path(folder), cfg)


@lru_cache(maxsize=16)
def _grid_positions(h: int, w: int) -> torch.Tensor:
    return torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2)
