"""The evaluation item and the generic item generators every world answers (captions, questions, drawings,
GenEval), with what a world's own generators share (reserved scenes, the mode option, the multiple-choice prompt);
each generator turns (spec, index) into an Item holding the protocol requests and the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from unifylab.data.geneval import generate as geneval_generate
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.world import CAPTION_QUESTION, world_of

if TYPE_CHECKING:
    from unifylab.eval.task_registry import TaskSpec

LETTERS = "ABCD"


@dataclass
class Item:
    """One evaluation item: its requests (text or image), the target, and what to log about it."""

    id: str
    text: list[TextRequest] = field(default_factory=list)
    images: list[ImageRequest] = field(default_factory=list)
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    chance: float = 0.0  # probability that a uniform guess over the answer space scores 1
    chain: str | None = None  # "text_then_image" (draw from the model's text) or "image_then_text" (answer about it)
    chain_prompt: str = "{}"  # text_then_image: the drawing's prompt, with the model's text at {}


def reserved_scene(spec: TaskSpec, i: int, *, free: bool = False) -> tuple[Any, np.random.Generator]:
    """Item i's scene, drawn only from the scenes reserved for evaluation (never trained on), and its RNG; `free`:
    holding none of the world's default held-out pairs (a skill probe asks about the skill, not the pair)."""
    rng, world = np.random.default_rng([spec.seed, i]), world_of(spec.world)
    barred = set(world.default_holdout) if free else set()
    for _ in range(10_000):
        if is_eval_scene(scene := world.sample(rng)) and not world.pairs(scene) & barred:
            return scene, rng
    raise UserError(
        f"task {spec.name}: its world ({spec.world.describe()}) has too few distinct scenes to hold some out for "
        "evaluation; allow more objects per scene"
    )


def gen_caption(spec: TaskSpec, i: int) -> Item:
    scene, _ = reserved_scene(spec, i)
    world = world_of(spec.world)
    req = TextRequest(CAPTION_QUESTION, world.render(scene), truth=world.caption(scene, np.random.default_rng(i)))
    return Item(f"{spec.name}-{i}", text=[req], target=scene.to_dict(), meta={"scene": scene.to_dict()})


def gen_vqa(spec: TaskSpec, i: int) -> Item:
    scene, rng = reserved_scene(spec, i)
    world = world_of(spec.world)
    kinds = spec.options.get("kinds")
    qa = world.sample_qa(scene, rng, tuple(kinds) if kinds else None)
    space = world.answer_space(qa.kind, scene)
    req = TextRequest(qa.question, world.render(scene), choices=space, truth=qa.answer)
    return Item(
        f"{spec.name}-{i}",
        text=[req],
        target=qa.answer,
        chance=1 / len(space),
        meta={"kind": qa.kind, "question": qa.question, "scene": scene.to_dict()},
    )


def mc_prompt(question: str, options: list[str]) -> str:
    return question + " " + " ".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(options)) + " answer with a letter."


def gen_t2i(spec: TaskSpec, i: int) -> Item:
    """Draw a fully specified prompt; the target is what the world checks to pass exactly that scene."""
    scene, rng = reserved_scene(spec, i)
    world = world_of(spec.world)
    prompt = world.prompt(scene, rng)
    target = world.exact_target(scene)
    req = ImageRequest(prompt, spec.world, truth=scene, seed=i)
    return Item(f"{spec.name}-{i}", images=[req], target=target, meta={"prompt": prompt, "scene": scene.to_dict()})


def gen_geneval(spec: TaskSpec, i: int) -> Item:
    """GenEval's tasks on the task's world (the shapes world's six, or the watch world's; `data.geneval`)."""
    tags = world_of(spec.world).geneval_tags
    per_task = -(-spec.n // len(tags))
    items = _geneval_items(spec, per_task)
    it = items[(i % len(tags)) * per_task + i // len(tags)]  # interleaved, so --limit keeps all tags
    req = ImageRequest(it.prompt, spec.world, truth=it.scene, seed=i)
    return Item(
        f"{spec.name}-{i}",
        images=[req],
        target=it.spec.to_dict(),
        meta={"tag": it.tag, "prompt": it.prompt, "scene": it.scene.to_dict()},
    )


_GENEVAL_CACHE: dict[tuple[int, int, tuple[str, int, int]], list] = {}


def _geneval_items(spec: TaskSpec, per_task: int) -> list:
    key = (spec.seed, per_task, spec.world.canvas)
    if key not in _GENEVAL_CACHE:
        _GENEVAL_CACHE[key] = geneval_generate(world_of(spec.world), per_task, spec.seed)
    return _GENEVAL_CACHE[key]


def task_mode(spec: TaskSpec) -> str:
    """`options.mode`: 'direct' (the default) or 'stepwise'."""
    mode = spec.options.get("mode", "direct")
    if mode not in ("direct", "stepwise"):
        raise UserError(f"task {spec.name}: options.mode must be 'direct' or 'stepwise', got {mode!r}")
    return mode
