"""One interface to every world the lab trains on: sampling, rendering, the exact parser, the language (captions,
questions with answer spaces, fully specified prompts, the exact check of a drawing), the compositions a
study can hold out, and the exact oracle image tokenizer. `WorldConfig` is the config of any world (its `name`
picks it; a bare string such as `--set world=watch` means that world's defaults).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field

from unifylab.errors import UserError
from unifylab.world import WORLDS
from unifylab.world import language as L
from unifylab.world import skills as S
from unifylab.world import watch as WA
from unifylab.world import watch_language as WL
from unifylab.world.parse import parse_batch
from unifylab.world.scene import Obj, Scene
from unifylab.world.shapes import Nuisance, ShapesConfig, render, sample_scene
from unifylab.world.watch import WatchConfig, WatchScene


def _named(value: Any) -> Any:
    """'watch' -> {'name': 'watch'}; a mapping without a name is the shapes world's (every older config)."""
    if isinstance(value, str):
        if value not in WORLDS:
            raise ValueError(f"unknown world {value!r}; expected one of {', '.join(WORLDS)}")
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": "shapes", **value}
    return value


WorldConfig = Annotated[ShapesConfig | WatchConfig, BeforeValidator(_named), Field(discriminator="name")]


class WorldChoice(BaseModel):
    """A world config on its own (validated as `world`, so errors name the field)."""

    world: WorldConfig


class World(ABC):
    """What the lab needs of a world, for one config of it."""

    name: ClassVar[str]
    default_holdout: ClassVar[tuple[tuple[str, str], ...]]  # data.holdout_pairs when a config names none

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def size(self) -> int:
        return self.config.size

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One random scene."""

    @abstractmethod
    def render(self, scene: Any, nuisance: Nuisance | None = None) -> np.ndarray:
        """The scene's RGB uint8 image."""

    @abstractmethod
    def parse(self, images: np.ndarray) -> list[Any]:
        """The exact parser over a batch [N, S, S, 3]."""

    @abstractmethod
    def scene_from_dict(self, d: dict[str, Any]) -> Any:
        """A scene from its JSON form (SceneError when invalid)."""

    @abstractmethod
    def caption(self, scene: Any, rng: np.random.Generator) -> str:
        """A complete caption."""

    @abstractmethod
    def sample_qa(self, scene: Any, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> L.QA:
        """A question about the scene with its exact answer."""

    @abstractmethod
    def answer_space(self, kind: str, scene: Any) -> list[str]:
        """Every answer a question of `kind` about such a scene can have."""

    @abstractmethod
    def prompt(self, scene: Any, rng: np.random.Generator) -> str:
        """A fully specified text-to-image prompt of the scene."""

    @abstractmethod
    def check(self, parsed: Any, scene: Any) -> L.Verdict:
        """Whether a parsed drawing is the prompted scene, with reasons."""

    @abstractmethod
    def pairs(self, scene: Any) -> set[tuple[str, str]]:
        """The compositions (pairs of attribute values) a scene holds: what a study can hold out."""

    @abstractmethod
    def with_pair(self, scene: Any, pairs: list[tuple[str, str]], rng: np.random.Generator) -> Any | None:
        """The scene changed to hold one of `pairs` drawn by `rng` (the held-out split's scenes), or None when it
        cannot hold one."""

    @abstractmethod
    def skills(self) -> tuple[str, ...]:
        """The skill words a study can teach on one side (the keys of `data.moves`)."""

    @abstractmethod
    def check_pair(self, pair: tuple[str, str]) -> None:
        """Raise ValueError when `pair` is no composition of this world."""

    @abstractmethod
    def exact_tokenizer(self) -> Any:
        """The oracle image tokenizer: encoding a clean render and decoding it gives back the same bytes."""

    @staticmethod
    @abstractmethod
    def rerender_error(image: np.ndarray) -> float:
        """Mean absolute pixel error between `image` and this world's render of what its parser reads there (the
        config inferred from the image): near 0 for this world's images, large for another world's."""


class ShapesWorld(World):
    name = "shapes"
    default_holdout = (("circle", "red"), ("square", "green"), ("triangle", "blue"), ("ring", "yellow"))

    def sample(self, rng: np.random.Generator) -> Scene:
        return sample_scene(self.config, rng)

    def render(self, scene: Scene, nuisance: Nuisance | None = None) -> np.ndarray:
        return render(scene, nuisance)

    def parse(self, images: np.ndarray) -> list[Scene]:
        return parse_batch(images, self.config.grid)

    def scene_from_dict(self, d: dict[str, Any]) -> Scene:
        return Scene.from_dict(d)

    def caption(self, scene: Scene, rng: np.random.Generator) -> str:
        return L.caption(scene, rng)

    def sample_qa(self, scene: Scene, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> L.QA:
        return L.sample_qa(scene, rng, kinds or L.QA_KINDS)

    def answer_space(self, kind: str, scene: Scene) -> list[str]:
        return L.answer_space(kind, scene)

    def prompt(self, scene: Scene, rng: np.random.Generator) -> str:
        return L.t2i_prompt(scene, rng)[0]

    def check(self, parsed: Scene, scene: Scene) -> L.Verdict:
        return L.satisfies(parsed, L.Spec.exact(scene))

    def pairs(self, scene: Scene) -> set[tuple[str, str]]:
        return {(o.shape, o.color) for o in scene.objects}

    def with_pair(self, scene: Scene, pairs: list[tuple[str, str]], rng: np.random.Generator) -> Scene | None:
        if not scene.objects:
            return None
        k = int(rng.integers(len(scene.objects)))
        shape, color = pairs[int(rng.integers(len(pairs)))]
        objs = list(scene.objects)
        o = objs[k]
        objs[k] = Obj(shape, color, o.row, o.col, o.size)
        return Scene(scene.size, scene.grid, tuple(objs))

    def skills(self) -> tuple[str, ...]:
        return S.SKILLS

    def check_pair(self, pair: tuple[str, str]) -> None:
        from unifylab.world.shapes import COLORS, SHAPES

        if pair[0] not in SHAPES or pair[1] not in COLORS:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (shape, colour) of the shapes world")

    def exact_tokenizer(self) -> Any:
        from unifylab.tokenize.grid import GridTokenizer

        return GridTokenizer(self.size, self.config.grid)

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        from unifylab.world.parse import parse

        return float(np.abs(render(parse(image, None)).astype(np.int16) - image).mean())


class WatchWorld(World):
    name = "watch"
    default_holdout = (("sun", "blue"), ("rain", "red"), ("cloud", "green"))

    def sample(self, rng: np.random.Generator) -> WatchScene:
        return WA.sample_face(self.config, rng)

    def render(self, scene: WatchScene, nuisance: Nuisance | None = None) -> np.ndarray:
        return WA.render(scene, nuisance)

    def parse(self, images: np.ndarray) -> list[WatchScene]:
        return WA.parse_faces(images, minute_step=self.config.minute_step)

    def scene_from_dict(self, d: dict[str, Any]) -> WatchScene:
        return WatchScene.from_dict(d, self.config.minute_step)

    def caption(self, scene: WatchScene, rng: np.random.Generator) -> str:
        return WL.caption(scene, rng)

    def sample_qa(self, scene: WatchScene, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> L.QA:
        return WL.sample_qa(scene, rng, kinds or WL.QA_KINDS)

    def answer_space(self, kind: str, scene: WatchScene) -> list[str]:
        return WL.answer_space(kind, minutes=self.config.minutes)

    def prompt(self, scene: WatchScene, rng: np.random.Generator) -> str:
        return WL.t2i_prompt(scene, rng)

    def check(self, parsed: WatchScene, scene: WatchScene) -> L.Verdict:
        return WL.satisfies(parsed, scene)

    def pairs(self, scene: WatchScene) -> set[tuple[str, str]]:
        return {(scene.weather, scene.face)}

    def with_pair(self, scene: WatchScene, pairs: list[tuple[str, str]], rng: np.random.Generator) -> WatchScene:
        weather, face = pairs[int(rng.integers(len(pairs)))]
        return WatchScene(**{**scene.to_dict(), "weather": weather, "face": face})

    def skills(self) -> tuple[str, ...]:
        return WL.skills(self.config.minute_step)

    def check_pair(self, pair: tuple[str, str]) -> None:
        if pair[0] not in WA.WEATHER or pair[1] not in WA.FACES:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (weather, face colour) of the watch world")

    def exact_tokenizer(self) -> Any:
        from unifylab.tokenize.attributes import AttributeTokenizer

        return AttributeTokenizer(self.size, self.config.minute_step)

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        face = WA.parse_faces(image[None], minute_step=1)[0]
        return float(np.abs(WA.render(face).astype(np.int16) - image).mean())


CLASSES: dict[str, type[World]] = {w.name: w for w in (ShapesWorld, WatchWorld)}


CLEAR_MARGIN = 1.5  # an image is a world's when that world re-renders it this many times better than any other


def recognise(image: np.ndarray) -> tuple[str | None, dict[str, float]]:
    """The world whose exact parser explains `image` clearly best (None when none does), and each world's
    re-render error: how a command tells a watch face from a shapes scene without being told."""
    errors = {name: cls.rerender_error(image) for name, cls in CLASSES.items()}
    best, *others = sorted(errors, key=errors.__getitem__)
    clear = all(errors[o] >= CLEAR_MARGIN * errors[best] + 1.0 for o in others)
    return (best if clear else None), errors


def world_of(config: ShapesConfig | WatchConfig) -> World:
    """The world a config describes."""
    return CLASSES[config.name](config)


def scene_world(scene_dict: dict[str, Any]) -> str:
    """The world a scene's JSON form belongs to."""
    name = scene_dict.get("world", "shapes")
    if name not in WORLDS:
        raise UserError(f"scene of unknown world {name!r}; expected one of {', '.join(WORLDS)}")
    return name


def describe_canvas(canvas: tuple[str, int, int]) -> str:
    """'32 px 3x3 shapes world' for a canvas (world, size, grid or minute step)."""
    name, size, detail = canvas
    if name == "watch":
        return WatchConfig.model_construct(size=size, minute_step=detail).describe()
    return ShapesConfig.model_construct(size=size, grid=detail).describe()


def render_scene(scene: Scene | WatchScene, nuisance: Nuisance | None = None) -> np.ndarray:
    """Draw a scene of any world."""
    return WA.render(scene, nuisance) if isinstance(scene, WatchScene) else render(scene, nuisance)


def scene_pairs(scene_dict: dict[str, Any]) -> set[tuple[str, str]]:
    """The compositions a scene's JSON form holds (see `World.pairs`), without validating it."""
    if scene_world(scene_dict) == "watch":
        return {(scene_dict["weather"], scene_dict["face"])}
    return {(o["shape"], o["color"]) for o in scene_dict.get("objects", [])}
