"""The model protocol every evaluation and analysis takes (lmms-eval's, extended with image generation), and the
reference adapters: `oracle` (answers from ground truth) and `random` (chance), which validate every task.

Requests carry what a real model may see (`prompt`, `image`) and, apart, `truth`: ground truth that only the
oracle reads. `choices`, when set, is the answer space (the random adapter draws from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from unifylab.errors import UserError
from unifylab.world import WorldConfig, render_scene, world_of


@dataclass
class TextRequest:
    """Answer `prompt` about `image` (None: text only); `mode` 'und' answers, 'rewrite' rewrites a prompt."""

    prompt: str
    image: np.ndarray | None = None
    mode: str = "und"
    max_tokens: int = 48
    choices: list[str] | None = None
    truth: Any = None


@dataclass
class LoglikelihoodRequest:
    """Log-probability of `continuation` after `prompt` (and `image`)."""

    prompt: str
    continuation: str
    image: np.ndarray | None = None
    truth: Any = None


@dataclass
class ImageRequest:
    """Draw `prompt` as an image of `world` (a world config: its canvas and what its parser reads), editing `source`
    when given; `truth` satisfies it (oracle only)."""

    prompt: str
    world: WorldConfig
    source: np.ndarray | None = None
    truth: Any = None
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """The canvas side in pixels."""
        return self.world.size


@dataclass
class HiddenRequest:
    """A sequence to look inside: `und` reads `image`, then `text`, then `answer`; `gen` reads `text`, then draws
    `image`. Leaving parts out gives text-only (gen without image) or image-only (und without text) inputs."""

    kind: str
    text: str = ""
    image: np.ndarray | None = None
    answer: str = ""


@dataclass
class HiddenStates:
    """Residual-stream states [layers + 1, L, D] (the embedding output first) with boolean masks [L] over content
    tokens: `text`, `image`, `prompt` (what conditions the response) and `response` (the answer, or the image drawn);
    `attention` [layers, L, D], when asked for and cheap, holds each block's attention-sublayer output."""

    layers: Any
    masks: dict[str, Any]
    attention: Any = None


def hidden_states_of(model: Any) -> Any:
    """The model's `hidden_states` method, or a clear error for adapters that do not expose internals."""
    fn = getattr(model, "hidden_states", None)
    if fn is None:
        raise UserError(
            f"model {getattr(model, 'name', model)!r} does not expose hidden states; analyses need a run "
            "folder, a save_pretrained folder or an hf-janus/hf-emu3 model"
        )
    return fn


@runtime_checkable
class UnifiedModel(Protocol):
    name: str

    def generate_text(self, requests: list[TextRequest]) -> list[str]: ...

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]: ...

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]: ...


class OracleModel:
    """Gives the true answer and renders the true scene: every task must score 100 % with it."""

    name = "oracle"

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        return [str(r.truth) for r in requests]

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        return [0.0 if r.continuation == r.truth else -1e9 for r in requests]

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        if any(r.truth is None for r in requests):
            raise UserError(
                "oracle: it draws only prompts that carry their ground-truth scene (the lab's own tasks); these "
                "prompts carry none (e.g. RealUnify's): evaluate a trained model or 'random' instead"
            )
        return [render_scene(r.truth) for r in requests]


class RandomModel:
    """Answers uniformly from `choices` (or 'yes'/'no') and draws a random scene: the chance baseline."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.fingerprint = {"name": self.name, "seed": seed}

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        return [str(self.rng.choice(r.choices or ["yes", "no"])) for r in requests]

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        return [float(self.rng.normal()) for _ in requests]

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        out = []
        for r in requests:
            world = world_of(r.world)
            out.append(world.render(world.sample(self.rng)))
        return out


class ParserJudge:
    """An exact yes/no judge for a world's images: parses the image and answers the verification questions the
    world reads (`World.verify`), so it can judge RealUnify-format UEG files built on that world; questions it
    cannot read get 'unknown'."""

    name = "parser"

    def __init__(self, world: WorldConfig) -> None:
        self.world = world_of(world)

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        out = []
        for r in requests:
            if r.image is None:
                out.append("unknown")
                continue
            try:
                out.append(self.world.verify(self.world.parse(r.image[None])[0], r.prompt))
            except ValueError:
                out.append("unknown")
        return out

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        raise UserError("the parser judge only answers yes/no questions about images; use it as --judge")

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        raise UserError("the parser judge does not draw; use it as --judge, not as the model")
