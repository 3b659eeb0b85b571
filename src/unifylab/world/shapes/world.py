"""The shapes world behind the `World` interface: coloured shapes on a grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from unifylab.world.base import QA, Nuisance, Verdict, World
from unifylab.world.shapes import language as L
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.canvas import COLORS, SHAPES, ShapesConfig, render, sample_scene
from unifylab.world.shapes.parse import parse, parse_batch
from unifylab.world.shapes.scene import Obj, Scene


class ShapesWorld(World):
    name = "shapes"
    config_class = ShapesConfig
    scene_class = Scene
    default_holdout = (("circle", "red"), ("square", "green"), ("triangle", "blue"), ("ring", "yellow"))

    def sample(self, rng: np.random.Generator) -> Scene:
        return sample_scene(self.config, rng)

    @staticmethod
    def render(scene: Scene, nuisance: Nuisance | None = None) -> np.ndarray:
        return render(scene, nuisance)

    def parse(self, images: np.ndarray) -> list[Scene]:
        return parse_batch(images, self.config.grid)

    def scene_from_dict(self, d: dict[str, Any]) -> Scene:
        return Scene.from_dict(d)

    def caption(self, scene: Scene, rng: np.random.Generator) -> str:
        return L.caption(scene, rng)

    def sample_qa(self, scene: Scene, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> QA:
        return L.sample_qa(scene, rng, kinds or L.QA_KINDS)

    def answer_space(self, kind: str, scene: Scene) -> list[str]:
        return L.answer_space(kind, scene)

    def prompt(self, scene: Scene, rng: np.random.Generator) -> str:
        return L.t2i_prompt(scene, rng)[0]

    def check(self, parsed: Scene, scene: Scene) -> Verdict:
        return L.satisfies(parsed, L.Spec.exact(scene))

    @staticmethod
    def check_spec(parsed: Scene, spec: L.Spec) -> Verdict:
        return L.satisfies(parsed, spec)

    def pairs(self, scene: Scene) -> set[tuple[str, str]]:
        return {(o.shape, o.color) for o in scene.objects}

    @staticmethod
    def scene_from_json(d: dict[str, Any], *, settings: dict[str, Any]) -> Scene:
        return Scene.from_dict(d)

    @staticmethod
    def parse_image(image: np.ndarray, *, settings: dict[str, Any], confidence: bool = False) -> Scene:
        scene = parse(image, settings.get("grid"))
        return scene if confidence else scene.without_confidence()

    @staticmethod
    def pairs_of_dict(d: dict[str, Any]) -> set[tuple[str, str]]:
        return {(o["shape"], o["color"]) for o in d.get("objects", [])}

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
        if pair[0] not in SHAPES or pair[1] not in COLORS:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (shape, colour) of the shapes world")

    def exact_tokenizer(self) -> Any:
        return self.tokenizer_class()(self.size, self.config.grid)

    @staticmethod
    def tokenizer_class() -> type:
        from unifylab.world.shapes.tokenizer import GridTokenizer

        return GridTokenizer

    @classmethod
    def of_canvas(cls, size: int, detail: int) -> ShapesWorld:
        return cls(ShapesConfig.model_construct(size=size, grid=detail))

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        return float(np.abs(render(parse(image, None)).astype(np.int16) - image).mean())
