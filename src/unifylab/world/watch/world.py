"""The watch world behind the `World` interface: smartwatch faces."""

from __future__ import annotations

from typing import Any

import numpy as np

from unifylab.world.base import QA, Nuisance, Verdict, World
from unifylab.world.watch import face as F
from unifylab.world.watch import geneval as WS
from unifylab.world.watch import language as WL
from unifylab.world.watch.face import WatchConfig, WatchScene
from unifylab.world.watch.parse import parse_faces


class WatchWorld(World):
    name = "watch"
    config_class = WatchConfig
    scene_class = WatchScene
    default_holdout = (("sun", "blue"), ("rain", "red"), ("cloud", "green"))

    def sample(self, rng: np.random.Generator) -> WatchScene:
        return F.sample_face(self.config, rng)

    @staticmethod
    def render(scene: WatchScene, nuisance: Nuisance | None = None) -> np.ndarray:
        return F.render(scene, nuisance)

    def parse(self, images: np.ndarray) -> list[WatchScene]:
        return parse_faces(images, minute_step=self.config.minute_step)

    def scene_from_dict(self, d: dict[str, Any]) -> WatchScene:
        return WatchScene.from_dict(d, self.config.minute_step)

    def caption(self, scene: WatchScene, rng: np.random.Generator) -> str:
        return WL.caption(scene, rng)

    def sample_qa(self, scene: WatchScene, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> QA:
        return WL.sample_qa(scene, rng, kinds or WL.QA_KINDS)

    def answer_space(self, kind: str, scene: WatchScene) -> list[str]:
        return WL.answer_space(kind, minutes=self.config.minutes)

    def prompt(self, scene: WatchScene, rng: np.random.Generator) -> str:
        return WL.t2i_prompt(scene, rng)

    def check(self, parsed: WatchScene, scene: WatchScene) -> Verdict:
        return WL.satisfies(parsed, scene)

    @staticmethod
    def check_spec(parsed: WatchScene, spec: WS.WatchSpec) -> Verdict:
        return WS.satisfies(parsed, spec)

    def pairs(self, scene: WatchScene) -> set[tuple[str, str]]:
        return {(scene.weather, scene.face)}

    @staticmethod
    def scene_from_json(d: dict[str, Any], *, settings: dict[str, Any]) -> WatchScene:
        return WatchScene.from_dict(d, settings.get("minute_step"))

    @staticmethod
    def parse_image(image: np.ndarray, *, settings: dict[str, Any], confidence: bool = False) -> WatchScene:
        return parse_faces(image[None], minute_step=settings.get("minute_step", 5))[0]

    @staticmethod
    def pairs_of_dict(d: dict[str, Any]) -> set[tuple[str, str]]:
        return {(d["weather"], d["face"])}

    def with_pair(self, scene: WatchScene, pairs: list[tuple[str, str]], rng: np.random.Generator) -> WatchScene:
        weather, face = pairs[int(rng.integers(len(pairs)))]
        return WatchScene(**{**scene.to_dict(), "weather": weather, "face": face})

    def skills(self) -> tuple[str, ...]:
        return WL.skills(self.config.minute_step)

    def check_pair(self, pair: tuple[str, str]) -> None:
        if pair[0] not in F.WEATHER or pair[1] not in F.FACES:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (weather, face colour) of the watch world")

    def exact_tokenizer(self) -> Any:
        return self.tokenizer_class()(self.size, self.config.minute_step)

    @staticmethod
    def tokenizer_class() -> type:
        from unifylab.world.watch.tokenizer import AttributeTokenizer

        return AttributeTokenizer

    @classmethod
    def of_canvas(cls, size: int, detail: int) -> WatchWorld:
        return cls(WatchConfig.model_construct(size=size, minute_step=detail))

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        face = parse_faces(image[None], minute_step=1)[0]
        return float(np.abs(F.render(face).astype(np.int16) - image).mean())
