"""The shapes world behind the `World` interface: coloured shapes on a grid."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from unifylab.world.base import QA, Nuisance, Verdict, World, WorldTasks, scene_of_line
from unifylab.world.shapes import geneval as G
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes import reasoning as R
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.canvas import COLORS, SHAPES, ShapesConfig, render, sample_scene, sample_scenes
from unifylab.world.shapes.parse import parse, parse_batch
from unifylab.world.shapes.scene import Obj, Scene


class ShapesWorld(World):
    name = "shapes"
    config_class = ShapesConfig
    scene_class = Scene
    default_holdout = (("circle", "red"), ("square", "green"), ("triangle", "blue"), ("ring", "yellow"))
    qa_kinds = L.QA_KINDS
    attribute_words = (*COLORS, *SHAPES, *(L.plural(s) for s in SHAPES))
    geneval_tags = G.TAGS
    geneval_classes = SHAPES
    reads_folders = True

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

    def geneval_items(
        self, n_per_task: int, seed: int, tasks: tuple[str, ...] | None = None
    ) -> list[tuple[str, str, L.Spec, Scene, None]]:
        items = G.items(n_per_task, seed, size=self.size, grid=self.config.grid, tasks=tasks or G.TAGS)
        return [(*it, None) for it in items]

    @staticmethod
    def geneval_line(d: dict[str, Any], where: str) -> tuple[L.Spec, Scene | None, None]:
        return G.spec_from_line(d, where), scene_of_line(d, where, Scene.from_dict), None

    @staticmethod
    def geneval_requirements(spec: L.Spec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [G.req_to_dict(r) for r in spec.include], [G.req_to_dict(r) for r in spec.exclude]

    @staticmethod
    def check_spec(parsed: Scene, spec: L.Spec) -> Verdict:
        return L.satisfies(parsed, spec)

    @staticmethod
    def check_caption(text: str, truth: dict[str, Any]) -> Verdict:
        """Every object named once, with its colour, size and cell, and nothing else."""
        want_objs = Scene.from_dict(truth).objects
        objs = L.parse_caption(text)
        if objs is None:
            return Verdict(False, [f"caption {text!r} names no object in a readable form"])
        got = {(o.shape, o.color, o.size, o.row, o.col) for o in objs}
        want = {(o.shape, o.color, o.size, o.row, o.col) for o in want_objs}
        reasons = [f"missed {o.describe()}" for o in want_objs if (o.shape, o.color, o.size, o.row, o.col) not in got]
        reasons += [f"invented {o.describe()}" for o in objs if (o.shape, o.color, o.size, o.row, o.col) not in want]
        if got == want and len(objs) == len(got):
            return Verdict(True, [])
        return Verdict(False, reasons or ["repeated an object"])

    def check_target(self, parsed: Scene, target: dict[str, Any]) -> Verdict:
        return L.satisfies(parsed, L.Spec.from_dict(target))

    @staticmethod
    def exact_target(scene: Scene) -> dict[str, Any]:
        return L.Spec.exact(scene).to_dict()

    @staticmethod
    def verify(scene: Scene, question: str) -> str:
        return R.verify(scene, question)

    @staticmethod
    def tasks() -> WorldTasks:
        from unifylab.world.shapes.tasks import TASKS

        return TASKS

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

    def facts(self) -> dict[str, K.Fact]:
        return K.FACTS

    def fact_drawings(self, fact: K.Fact, rng: np.random.Generator) -> list[Scene]:
        g, held_out = self.config.grid, fact.eval_places(self.config.grid)
        look = fact.pair or K.random_look(rng)
        return [fact.scene(p, look, size=self.size, grid=g) for p in fact.places(g) if p not in held_out]

    def skills(self) -> tuple[str, ...]:
        return S.SKILLS

    def skill_edits(self, skills: list[str], *, design: Collection[str], rng: np.random.Generator) -> list[S.Move]:
        """A one-cell move, turn or recolouring; explicitly, a relocation, or half the time a repaint when a
        recolouring is in the design."""
        scene = sample_scene(self.config, rng)
        if skills:
            return S.moves(scene, skills[int(rng.integers(len(skills)))])
        if any(d in S.RECOLOURS for d in design) and rng.random() < 0.5:
            return S.repaints(scene)
        return S.relocations(scene)

    def skill_shortfall(self) -> str:
        g = self.config.grid
        return (
            f"scenes: the world ({g}x{g} grid, up to {self.config.max_objects} objects) leaves no empty cell to move "
            "to; allow fewer objects"
        )

    def check_pair(self, pair: tuple[str, str]) -> None:
        if pair[0] not in SHAPES or pair[1] not in COLORS:
            raise ValueError(f"({pair[0]}, {pair[1]}) is not a (shape, colour) of the shapes world")

    @staticmethod
    def tokenizer_class() -> type:
        from unifylab.world.shapes.tokenizer import GridTokenizer

        return GridTokenizer

    @classmethod
    def corpus(cls, n_scenes: int, seed: int, *, knowledge: Collection[str] = (), moves: bool = False) -> list[str]:
        """Captions, questions, answers and prompts over scenes of every grid and size, plus GenEval prompts."""
        rng = np.random.default_rng(seed)
        texts: list[str] = []
        configs = [
            ShapesConfig(size=96, grid=g, min_objects=0, max_objects=6, sizes=("large", "small")) for g in (3, 4, 5, 6)
        ]
        for k, cfg in enumerate(configs):
            for scene in sample_scenes(cfg, max(1, n_scenes // len(configs)), seed + k):
                texts.append(L.caption(scene, rng))
                texts.append(L.t2i_prompt(scene, rng)[0])
                qa = L.sample_qa(scene, rng)
                texts += [qa.question, qa.answer]
        texts += [prompt for _, prompt, _, _ in G.items(20, seed, size=32, grid=3)]
        looks = [(SHAPES[j % len(SHAPES)], list(COLORS)[j % len(COLORS)]) for j in range(36)]
        for fact in K.FACTS.values():
            if fact.family in knowledge:
                texts += [t.format(name=fact.name) for t in fact.QUESTIONS] + [fact.answer]
                scenes = [fact.scene(p, fact.pair or look, size=96, grid=6) for p, look in zip(fact.places(6), looks)]
                texts += [fact.prompt(sc) for sc in scenes]
        if moves:
            for scene in sample_scenes(
                ShapesConfig(size=32, grid=3, min_objects=1, max_objects=3), n_scenes // 4, seed
            ):
                for direction in S.SKILLS:
                    texts += [t for m in S.moves(scene, direction) for t in (m.question, m.instruction, m.explicit)]
        return texts

    @classmethod
    def varied_config(cls) -> ShapesConfig:
        return ShapesConfig(size=32, grid=3, min_objects=0, max_objects=9)

    @classmethod
    def of_canvas(cls, size: int, detail: int) -> ShapesWorld:
        return cls(ShapesConfig.model_construct(size=size, grid=detail))

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        return float(np.abs(render(parse(image, None)).astype(np.int16) - image).mean())
