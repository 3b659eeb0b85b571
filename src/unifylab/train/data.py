"""Deterministic task mixtures: example i of a split is a pure function of (seed, split, i), so a run's data
position is just its step, specialists can see exactly the unified run's examples of their kind, and neither
held-out compositions ((shape, colour) pairs, the `heldout` split) nor the reserved evaluation scenes (the `val`
split, `data.splits`) ever reach training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.data.forms import EDIT_TASKS, FACT_TASKS, GEN_TASKS, MODE_TASKS, MOVE_TASKS, TASKS, TEXT_TASKS, UND_TASKS
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.io import iter_jsonl, load_rgb
from unifylab.tokenize.image import ImageTokenizer
from unifylab.tokenize.sequence import Example, Packed, Packer
from unifylab.train.config import TrainConfig
from unifylab.world import CAPTION_QUESTION, World, render_scene, world_of
from unifylab.world.base import SceneError

SPLITS = {"train": 0, "val": 1, "heldout": 2, "pool": 3}  # pool: the fixed scenes of a finite training set


@dataclass
class Sample:
    """One training sample before image tokenization: its task, texts, and the image it is about or must produce
    (None: the clean render of `scene`, drawn only when a tokenizer needs pixels)."""

    task: str
    text: str
    answer: str
    image: np.ndarray | None
    scene: Any | None  # None: a text-only example (knowledge)
    source: Any | None = None  # an edit's input image (clean render); `scene` is then its output


class SceneSource:
    """Scenes (and their images) by split and index, from the world generator or a `world sample` folder."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.world = world_of(cfg.world)
        self.pairs = {tuple(p) for p in cfg.data.holdout_pairs}
        # pairs a side never sees: the other side's own pairs
        self.barred = {
            "und": {tuple(p) for p in cfg.data.gen_only_pairs},
            "gen": {tuple(p) for p in cfg.data.und_only_pairs},
        }
        self.folder: dict[str, list[tuple[Any, Path]]] | None = None
        if cfg.data.source == "folder":
            self.folder = self._read_folder(Path(cfg.data.folder))

    def held(self, scene: Any) -> bool:
        return bool(self.world.pairs(scene) & self.pairs)

    def fits(self, scene: Any, split: str, side: str | None) -> bool:
        """Whether a generated scene may be a `train` or `val` scene of `side`: it holds no held-out pair and no
        pair the side is barred from, and is reserved for evaluation exactly when the split is `val`."""
        return not self.held(scene) and is_eval_scene(scene) == (split == "val") and self.allowed(scene, side)

    def allowed(self, scene: Any, side: str | None) -> bool:
        """Whether a scene may teach `side` ('und', 'gen'; None: either): it holds no pair the side is barred from."""
        return side is None or not self.world.pairs(scene) & self.barred[side]

    def _read_folder(self, folder: Path) -> dict[str, list[tuple[Any, Path]]]:
        splits: dict[str, list[tuple[Any, Path]]] = {"train": [], "val": [], "heldout": []}
        for k, (n, d) in enumerate(iter_jsonl(folder / "scenes.jsonl")):
            try:
                scene = self.world.scene_from_dict(d)
            except SceneError as e:
                raise UserError(f"{folder / 'scenes.jsonl'}:{n}: {e}") from None
            if (scene.world, scene.size, scene.grid) != self.cfg.world.canvas:
                raise UserError(
                    f"{folder / 'scenes.jsonl'}:{n}: scene is {scene.size} px / grid {scene.grid}, but "
                    f"world is {self.cfg.world.size} px / grid {self.cfg.world.grid}; set world.size and "
                    "world.grid to match the folder"
                )
            image = folder / "images" / f"{k:06d}.png"
            split = "heldout" if self.held(scene) else ("val" if is_eval_scene(scene) else "train")
            splits[split].append((scene, image))
        if not splits["train"]:
            raise UserError(f"{folder}: no training scenes (all hold a held-out pair, or scenes.jsonl is empty)")
        return splits

    def rng(self, split: str, i: int) -> np.random.Generator:
        """Example i's RNG: a pure function of (data seed, split, i)."""
        return np.random.default_rng([self.cfg.data.seed, SPLITS[split], i])

    def get(self, split: str, i: int, side: str | None = None) -> tuple[Any, np.ndarray | None, np.random.Generator]:
        """Scene i of a split that may teach `side` (see `allowed`), its image (None for a generated scene: its clean
        render, drawn on demand), and the example's RNG (training scenes cycle through data.n_scenes; a pool or
        folder scene the side is barred from gives way to the next one)."""
        rng = self.rng(split, i)
        if split == "train" and self.cfg.data.n_scenes is not None:
            n = self.cfg.data.n_scenes
            for k in range(n):
                scene, image, _ = self.get("pool", (i + k) % n)
                if self.allowed(scene, side):
                    return scene, image, rng
            raise UserError(
                f"every one of the {n} training scenes (data.n_scenes) holds a pair barred from {side} "
                "tasks; list fewer data.und_only_pairs / data.gen_only_pairs or use more scenes"
            )
        if self.folder is not None:
            entries = self.folder.get(split) or self.folder["train"]
            for k in range(len(entries)):
                scene, path = entries[(i + k) % len(entries)]
                if self.allowed(scene, side):
                    return scene, load_rgb(path, scene.size), rng
            raise UserError(
                f"{self.cfg.data.folder}: every {split} scene holds a pair barred from {side} tasks; list "
                "fewer data.und_only_pairs / data.gen_only_pairs"
            )
        for _ in range(1000):
            scene = self.world.sample(rng)
            if split == "heldout":  # force the scene to hold a held-out composition
                if (held := self.world.with_pair(scene, sorted(self.pairs), rng)) is not None:
                    return held, None, rng
                continue
            if self.fits(scene, split, side):
                return scene, None, rng
        raise UserError(
            f"no {split} scene found in 1000 draws: data.holdout_pairs exclude almost every scene, or the "
            "world has too few distinct scenes to reserve some for evaluation; hold out fewer (shape, "
            "colour) pairs or allow more objects per scene"
        )


def make_sample(
    task: str, scene: Any, image: np.ndarray | None, rng: np.random.Generator, cfg_dropout: float, *, world: World
) -> Sample:
    """A caption, vqa or t2i sample of a scene of `world` (its wording drawn from `rng`)."""
    if task == "caption":
        return Sample(task, CAPTION_QUESTION, world.caption(scene, rng), image, scene)
    if task == "vqa":
        qa = world.sample_qa(scene, rng)
        return Sample(task, qa.question, qa.answer, image, scene)
    prompt = world.prompt(scene, rng)
    if rng.random() < cfg_dropout:
        prompt = ""
    return Sample(task, prompt, "", image, scene)


def fact_sample(
    task: str, cfg: TrainConfig, source: SceneSource, rng: np.random.Generator, cfg_dropout: float
) -> Sample:
    """An example that teaches a fact (`data.facts`): as a knowledge question (text), as a rewrite of a prompt that
    names it into one that describes it, or as a drawing from a prompt that names it. Drawings and rewrites never
    use a fact's evaluation places (`World.fact_drawings`), a scene reserved for evaluation, a held-out pair or a pair
    the task's side is barred from."""
    names = sorted(n for n, side in cfg.data.facts.items() if side in FACT_TASKS[task])
    fact = source.world.facts()[names[int(rng.integers(len(names)))]]
    if task == "knowledge":
        return Sample(task, fact.question(rng), fact.answer, None, None)
    side = "und" if task in UND_TASKS else "gen"
    for _ in range(1000):
        scenes = [sc for sc in source.world.fact_drawings(fact, rng) if source.fits(sc, "train", side)]
        if scenes:
            break
    else:
        raise UserError(f"{task}: no training drawing of {fact.name!r} found in 1000 draws; hold out fewer pairs")
    scene = scenes[int(rng.integers(len(scenes)))]
    prompt = fact.prompt(scene)
    if task == "rewrite":
        return Sample(task, prompt, source.world.prompt(scene, rng), None, scene)
    return Sample(task, "" if rng.random() < cfg_dropout else prompt, "", None, scene)


def move_sample(task: str, cfg: TrainConfig, source: SceneSource, split: str, rng: np.random.Generator) -> Sample:
    """An example of a skill (`World.skills`, `World.skill_edits`): a question about a skill's edit (move_ask), the
    edit that names the skill (move_draw), each only in the skills `data.moves` teaches on its side, or the explicit
    edit that names the result (move_to). Its scenes, before and after, hold no held-out pair and no pair the side
    is barred from; in training neither is reserved for evaluation, in `val` the scene before is."""
    side = "und" if task in UND_TASKS else "gen"
    skills = sorted(d for d, s in cfg.data.moves.items() if s in MOVE_TASKS.get(task, ()))
    if task in MOVE_TASKS and not skills:
        raise UserError(f"{task}: data.moves teaches no skill on the {side} side; set data.moves")
    for _ in range(1000):
        options = [
            m
            for m in source.world.skill_edits(skills, design=cfg.data.moves, rng=rng)
            if source.fits(m.before, split, side)
            and source.allowed(m.after, side)
            and not source.held(m.after)
            and (split != "train" or not is_eval_scene(m.after))
        ]
        if options:
            m = options[int(rng.integers(len(options)))]
            if task == "move_ask":
                return Sample(task, m.question, m.answer, None, m.before)
            return Sample(task, m.instruction if task == "move_draw" else m.explicit, "", None, m.after, m.before)
    raise UserError(f"no {task} example found in 1000 {source.world.skill_shortfall()}")


class Plan:
    """Which global example indices a run consumes, in order, and for how many steps (the budget rules)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        weights = np.array([cfg.data.mixture.get(t, 0.0) for t in TASKS], dtype=np.float64)
        self.p = weights / weights.sum()
        self.unified_examples = cfg.optim.steps * cfg.optim.batch
        allowed = MODE_TASKS[cfg.data.mode]
        if not any(self.p[TASKS.index(t)] > 0 for t in allowed):
            raise UserError(
                f"data.mode {cfg.data.mode!r} trains {list(allowed)}, but data.mixture gives them no weight"
            )

    def tasks(self, n: int) -> np.ndarray:
        """Task ids (indices into TASKS) of the unified stream's first n examples."""
        rng = np.random.default_rng([self.cfg.data.seed, 99])
        return rng.choice(len(TASKS), size=n, p=self.p)

    def stream(self, lengths: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, int]:
        """(global example indices, steps) for this run's mode and budget.

        equal-task-data: a specialist gets exactly the unified run's first steps*batch examples of its tasks.
        equal-steps: the same examples, each at the step where the unified run saw it: the unified stream with the
        other tasks' examples marked -1 (skipped), so steps, schedule and example timing all match.
        equal-compute: a specialist continues its filtered stream until it has seen as many tokens as the unified
        run (`lengths(indices)` gives tokens per example).
        """
        b = self.cfg.optim.batch
        if self.unified_examples == 0:  # optim.steps 0: the initial model, whatever the mode and budget
            return np.empty(0, dtype=np.int64), 0
        allowed = [TASKS.index(t) for t in MODE_TASKS[self.cfg.data.mode]]
        if self.cfg.data.mode == "unified":
            return np.arange(self.unified_examples), self.cfg.optim.steps
        if self.cfg.data.budget in ("equal-task-data", "equal-steps"):
            keep = np.isin(self.tasks(self.unified_examples), allowed)
            if self.cfg.data.budget == "equal-steps":
                return np.where(keep, np.arange(self.unified_examples), -1), self.cfg.optim.steps
            idx = np.flatnonzero(keep)
            return idx, max(1, math.ceil(len(idx) / b))
        if lengths is None:
            raise ValueError("equal-compute needs example lengths")
        budget = int(lengths(np.arange(self.unified_examples)).sum())
        n = self.unified_examples
        while True:
            idx = np.flatnonzero(np.isin(self.tasks(4 * n), allowed))
            seen, chunk = 0, max(b, n // 8)  # lengths in chunks: stop at the one that reaches the budget
            for start in range(0, len(idx), chunk):
                cum = seen + np.cumsum(lengths(idx[start : start + chunk]))
                if cum[-1] >= budget:
                    take = start + int(np.searchsorted(cum, budget)) + 1
                    steps = math.ceil(take / b)
                    return idx[: steps * b] if steps * b <= len(idx) else idx, steps
                seen = int(cum[-1])
            n *= 4


class Batches:
    """Packs the examples of a step (or of an eval set) into model batches, tokenizing their images."""

    def __init__(self, cfg: TrainConfig, packer: Packer, source: SceneSource) -> None:
        self.cfg, self.packer, self.source = cfg, packer, source
        self.plan = Plan(cfg)
        self._task_ids = self.plan.tasks(self.plan.unified_examples)

    def task_of(self, indices: np.ndarray) -> np.ndarray:
        n = int(indices.max()) + 1 if len(indices) else 0
        if n > len(self._task_ids):
            self._task_ids = self.plan.tasks(max(n, 2 * len(self._task_ids)))
        return self._task_ids[indices]

    def samples(self, split: str, indices: np.ndarray, tasks: np.ndarray) -> list[Sample]:
        out = []
        dropout = self.cfg.data.cfg_dropout if split == "train" else 0.0
        for i, t in zip(indices.tolist(), tasks.tolist()):
            task = TASKS[t]
            if task in FACT_TASKS:
                out.append(fact_sample(task, self.cfg, self.source, self.source.rng(split, i), dropout))
                continue
            if task in MOVE_TASKS or task in EDIT_TASKS:
                out.append(move_sample(task, self.cfg, self.source, split, self.source.rng(split, i)))
                continue
            scene, image, rng = self.source.get(split, i, "und" if task in UND_TASKS else "gen")
            out.append(make_sample(task, scene, image, rng, dropout, world=self.source.world))
        return out

    def pack(self, items: list[Sample]) -> list[Packed]:
        """Each item in its sequence form: und (image question answer), rewrite (text only: knowledge questions
        and rewrites), edit (source image, instruction, edited image) or gen. Understanding images and edit sources
        go through the understanding tokenizer in one call."""
        if not items:
            return []
        und_items = [it for it in items if it.task in UND_TASKS and it.task not in TEXT_TASKS]
        sources = [Sample(it.task, "", "", None, it.source) for it in items if it.task in EDIT_TASKS]
        gen_items = [it for it in items if it.task in GEN_TASKS]
        und_codes = self.image_tokens(self.packer.und_image, und_items + sources) if und_items or sources else []
        und_own, edit_sources = iter(und_codes[: len(und_items)]), iter(und_codes[len(und_items) :])
        gen_tok = iter(self.image_tokens(self.packer.gen_image, gen_items)) if gen_items else None
        packed = []
        for it in items:
            if it.task in TEXT_TASKS:
                packed.append(self.packer.pack(Example("rewrite", it.text, it.answer)))
            elif it.task in UND_TASKS:
                packed.append(self.packer.pack(Example("und", it.text, it.answer, image=next(und_own))))
            elif it.task in EDIT_TASKS:
                packed.append(
                    self.packer.pack(Example("edit", it.text, image=next(gen_tok), source=next(edit_sources)))
                )
            else:
                packed.append(self.packer.pack(Example("gen", it.text, image=next(gen_tok))))
        return packed

    @staticmethod
    def image_tokens(tok: ImageTokenizer, items: list[Sample]) -> torch.Tensor:
        """The items' images through `tok`. The exact grid tokenizer reads generated scenes directly (it parses a
        clean render back to its scene, tests/test_tokenize.py), so they are drawn only for tokenizers that need
        pixels."""
        if tok.canvas is not None and all(it.image is None for it in items):
            return tok.encode_scenes([it.scene for it in items])
        return tok.encode(np.stack([render_scene(it.scene) if it.image is None else it.image for it in items]))

    def collate(self, items: list[Sample], pack: bool = False) -> dict[str, torch.Tensor]:
        batch = self.packer.collate(self.pack(items), pack=pack)
        batch["task"] = torch.tensor([TASKS.index(it.task) for it in items], dtype=torch.long)
        return batch

    def lengths(self, indices: np.ndarray) -> np.ndarray:
        """Tokens per example (text tokenized for real; images count their fixed token number)."""
        tasks = self.task_of(indices)
        items = self.samples("train", indices, tasks)
        und_n, gen_n = self.packer.und_image.num_tokens, self.packer.gen_image.num_tokens
        words = self.packer.text.encode_batch([t for it in items for t in (it.text, it.answer)])
        image = np.array(
            [
                3
                if it.task in TEXT_TASKS
                else und_n + 5
                if it.task in UND_TASKS
                else und_n + gen_n + 7
                if it.task in EDIT_TASKS
                else gen_n + 5
                for it in items
            ],
            dtype=np.int64,
        )
        return np.array([len(w) for w in words], dtype=np.int64).reshape(-1, 2).sum(1) + image
