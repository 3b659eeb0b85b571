"""The watch world behind the `World` interface: smartwatch faces."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.world.base import QA, Nuisance, Verdict, World, WorldTasks, scene_of_line
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
    qa_kinds = WL.QA_KINDS
    attribute_words = (*F.FACES, *F.WEATHER)
    geneval_tags = WS.TAGS
    geneval_classes = WS.CLASSES
    reads_folders = False

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

    def geneval_items(
        self, n_per_task: int, seed: int, tasks: tuple[str, ...] | None = None
    ) -> list[tuple[str, str, WS.WatchSpec, WatchScene, WatchConfig]]:
        """Faces hold a held-out (weather, face colour) pair only where the prompt names both."""
        rng, barred = np.random.default_rng(seed), frozenset(self.default_holdout)
        out = []
        for tag in tasks or WS.TAGS:
            for _ in range(n_per_task):
                prompt, spec, face = WS.task_item(tag, self.config, rng, barred=barred)
                out.append((tag, prompt, spec, face, self.config))
        return out

    @staticmethod
    def geneval_line(d: dict[str, Any], where: str) -> tuple[WS.WatchSpec, WatchScene | None, WatchConfig]:
        """The line must name its `world` (the parser reads hands to its minute step)."""
        from unifylab.config import build
        from unifylab.world import WorldChoice

        world = d.get("world")
        if not isinstance(world, dict) or world.get("name") != "watch":
            raise UserError(
                f'{where}.world: a line with watch-world classes needs "world": {{"name": "watch", "size": 32, '
                f'"minute_step": 5}} (the canvas and the minute step the parser reads hands to), got {world!r}'
            )
        config = build(WorldChoice, {"world": world}, where).world
        spec = WS.WatchSpec.from_dict(d, where)
        WS.check_time_step(spec, config, where)
        scene = scene_of_line(d, where, lambda x: WatchScene.from_dict(x, config.minute_step))
        if scene is not None and scene.size != config.size:
            raise UserError(f"{where}.scene.size: {scene.size} px, but the line's world is {config.size} px")
        return spec, scene, config

    @staticmethod
    def geneval_requirements(spec: WS.WatchSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        reqs = spec.to_dict()
        return reqs["include"], reqs["exclude"]

    @staticmethod
    def check_spec(parsed: WatchScene, spec: WS.WatchSpec) -> Verdict:
        return WS.satisfies(parsed, spec)

    @staticmethod
    def check_caption(text: str, truth: dict[str, Any]) -> Verdict:
        want = WatchScene.from_dict(truth)
        got = WL.parse_caption(text, want.size)
        if got is None:
            return Verdict(False, [f"caption {text!r} does not state a whole face"])
        verdict = WL.satisfies(got, want)
        return Verdict(verdict.ok, [r.replace("drew", "said") for r in verdict.reasons])

    def check_target(self, parsed: WatchScene, target: dict[str, Any]) -> Verdict:
        """A GenEval-style spec (it has `include`) or a whole face."""
        if "include" in target:
            return WS.satisfies(parsed, WS.WatchSpec.from_dict(target))
        return self.check(parsed, self.scene_from_dict(target))

    @staticmethod
    def tasks() -> WorldTasks:
        from unifylab.world.watch.tasks import TASKS

        return TASKS

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

    def skill_edits(self, skills: list[str], *, design: Collection[str], rng: np.random.Generator) -> list[WL.Shift]:
        """The hands turned on by a taught offset; explicitly, to any other time."""
        before = self.sample(rng)
        if skills:
            minutes = WL.skill_minutes(skills[int(rng.integers(len(skills)))])
        else:
            minutes = int(rng.integers(1, 720 // self.config.minute_step)) * self.config.minute_step
        return [WL.Shift(before, minutes)]

    def skill_shortfall(self) -> str:
        return "faces: hold out fewer (weather, face colour) pairs"

    def check_pair(self, pair: tuple[str, str]) -> None:
        if pair[0] not in F.WEATHER or pair[1] not in F.FACES:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (weather, face colour) of the watch world")

    @staticmethod
    def tokenizer_class() -> type:
        from unifylab.world.watch.tokenizer import AttributeTokenizer

        return AttributeTokenizer

    @classmethod
    def corpus(cls, n_scenes: int, seed: int, *, knowledge: Collection[str] = (), moves: bool = False) -> list[str]:
        """Captions, every question with its answer, and prompts over faces of every minute step; with `moves` the
        hands-turning skill's questions and edits (the watch world has no facts: `knowledge` is ignored)."""
        rng = np.random.default_rng(seed)
        texts: list[str] = []
        for k, step in enumerate((1, 5)):
            for face in F.sample_faces(WatchConfig(size=128, minute_step=step), max(1, n_scenes // 2), seed + k):
                texts += [WL.caption(face, rng), WL.t2i_prompt(face, rng)]
                texts += [t for qa in (WL.ask(face, kind) for kind in WL.QA_KINDS) for t in (qa.question, qa.answer)]
        if moves:  # each offset's question and edit, and the explicit edit
            offsets = [WL.skill_minutes(k) for k in WL.skills(5)]
            for j, face in enumerate(F.sample_faces(WatchConfig(size=128), max(1, n_scenes // 4), seed)):
                m = offsets[j % len(offsets)]
                texts += [WL.later_question(face, m).question, WL.later_instruction(m), WL.set_instruction(face.time)]
        return texts

    @classmethod
    def varied_config(cls) -> WatchConfig:
        return WatchConfig()

    @classmethod
    def of_canvas(cls, size: int, detail: int) -> WatchWorld:
        return cls(WatchConfig.model_construct(size=size, minute_step=detail))

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        face = parse_faces(image[None], minute_step=1)[0]
        return float(np.abs(F.render(face).astype(np.int16) - image).mean())
