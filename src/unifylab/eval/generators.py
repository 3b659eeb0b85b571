"""Item generators of the scene tasks: captions, questions, drawings, GenEval, the RealUnify-style reasoning tasks
(UEG, GEU) and self-consistency; each turns (spec, index) into an Item holding the protocol requests and the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from unifylab.data.geneval import generate as geneval_generate
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval import reasoning as R
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.world import CAPTION_QUESTION, world_of
from unifylab.world.english import article
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes import language as L
from unifylab.world.shapes.canvas import render
from unifylab.world.shapes.scene import Scene
from unifylab.world.watch import language as WL

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


def gen_mc(spec: TaskSpec, i: int) -> Item:
    """A 4-option question, asked under every rotation of its options (circular evaluation)."""
    scene, rng = reserved_scene(spec, i)
    qa = L.sample_qa(scene, rng, ("count", "color_of", "shape_of", "where"))
    space = [a for a in L.answer_space(qa.kind, scene) if a != qa.answer]
    options = [qa.answer] + [space[int(k)] for k in rng.choice(len(space), 3, replace=False)]
    options = [options[int(k)] for k in rng.permutation(4)]
    image = render(scene)
    reqs = []
    for r in range(4):
        rot = options[r:] + options[:r]
        letter = LETTERS[rot.index(qa.answer)]
        reqs.append(TextRequest(mc_prompt(qa.question, rot), image, choices=list(LETTERS), truth=letter, max_tokens=4))
    return Item(
        f"{spec.name}-{i}",
        text=reqs,
        target=[r.truth for r in reqs],
        chance=(1 / 4) ** 4,
        meta={"question": qa.question, "options": options, "answer": qa.answer, "scene": scene.to_dict()},
    )


def gen_t2i(spec: TaskSpec, i: int) -> Item:
    """Draw a fully specified prompt; the target is the shapes world's spec, or another world's scene itself."""
    scene, rng = reserved_scene(spec, i)
    world = world_of(spec.world)
    prompt = world.prompt(scene, rng)
    target = L.Spec.exact(scene).to_dict() if isinstance(scene, Scene) else scene.to_dict()
    req = ImageRequest.of(spec.world, prompt, truth=scene, seed=i)
    return Item(f"{spec.name}-{i}", images=[req], target=target, meta={"prompt": prompt, "scene": scene.to_dict()})


def gen_geneval(spec: TaskSpec, i: int) -> Item:
    """GenEval's tasks on the task's world (the shapes world's six, or the watch world's; `data.geneval`)."""
    tags = world_of(spec.world).geneval_tags
    per_task = -(-spec.n // len(tags))
    items = _geneval_items(spec, per_task)
    it = items[(i % len(tags)) * per_task + i // len(tags)]  # interleaved, so --limit keeps all tags
    req = ImageRequest.of(spec.world, it.prompt, truth=it.scene, seed=i)
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


def gen_ueg(spec: TaskSpec, i: int) -> Item:
    """Understanding enhances generation: infer the scene from an implicit prompt, then draw it."""
    rng = np.random.default_rng([spec.seed, i])
    kind = R.UEG_KINDS[i % len(R.UEG_KINDS)]
    prompt, scene, wrong = R.ueg_item(kind, spec.world, rng)
    questions = R.questions_for(scene, rng, wrong)
    meta = {"kind": kind, "prompt": prompt, "scene": scene.to_dict(), "mode": task_mode(spec)}
    image = ImageRequest(prompt, scene.size, scene.grid, truth=scene, seed=i)
    if task_mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=questions, meta=meta)
    explicit = L.t2i_prompt(scene, rng)[0]
    rewrite = TextRequest(prompt, mode="rewrite", truth=explicit, max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=questions, meta=meta, chain="text_then_image"
    )


def watch_skills(spec: TaskSpec) -> tuple[str, ...]:
    """The offsets a watch-world task may turn the hands on by; a task not on the watch world is refused."""
    if spec.world.name != "watch":
        raise UserError(f"task {spec.name}: generator {spec.generator} needs a watch world (world: {{name: watch}})")
    return WL.skills(spec.world.minute_step)


def _later_minutes(spec: TaskSpec, rng: np.random.Generator) -> int:
    """How many minutes a watch-world reasoning item turns the hands on: a multiple of the world's step, 5..55."""
    skills = watch_skills(spec)
    return WL.skill_minutes(skills[int(rng.integers(len(skills)))])


def gen_watch_ueg(spec: TaskSpec, i: int) -> Item:
    """Understanding enhances generation on the watch world: draw a face whose time is given as arithmetic ('the
    time 20 minutes after 3:20'); stepwise: rewrite the prompt into an explicit one first, then draw the rewrite."""
    scene, rng = reserved_scene(spec, i)
    prompt = WL.later_prompt(scene, _later_minutes(spec, rng), rng)
    meta = {"kind": "time_arithmetic", "prompt": prompt, "scene": scene.to_dict(), "mode": task_mode(spec)}
    image = ImageRequest.of(spec.world, prompt, truth=scene, seed=i)
    if task_mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=scene.to_dict(), meta=meta)
    rewrite = TextRequest(prompt, mode="rewrite", truth=WL.t2i_prompt(scene, rng), max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=scene.to_dict(), meta=meta, chain="text_then_image"
    )


def gen_geu(spec: TaskSpec, i: int) -> Item:
    """Generation enhances understanding: a 4-option question that an imagined transformed image makes easy."""
    rng = np.random.default_rng([spec.seed, i])
    kind = R.GEU_KINDS[i % len(R.GEU_KINDS)]
    g = R.geu_item(kind, spec.world, rng)
    shown = render(g["shown"])
    meta = {
        "kind": kind,
        "question": g["question"],
        "options": g["options"],
        "shown": g["shown"].to_dict(),
        "target_scene": g["target"].to_dict(),
        "mode": task_mode(spec),
    }
    if task_mode(spec) == "direct":
        req = TextRequest(
            mc_prompt(g["question"], g["options"]), shown, choices=list(LETTERS), truth=g["answer"], max_tokens=4
        )
        return Item(f"{spec.name}-{i}", text=[req], target=[g["answer"]], chance=0.25, meta=meta)
    edit = ImageRequest(g["instruction"], spec.world.size, spec.world.grid, source=shown, truth=g["target"], seed=i)
    ask = TextRequest(
        mc_prompt(g["step_question"], g["options"]), None, choices=list(LETTERS), truth=g["answer"], max_tokens=4
    )
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[edit],
        target=[g["answer"]],
        chance=0.25,
        meta=meta,
        chain="image_then_text",
    )


def gen_self_consistency(spec: TaskSpec, i: int) -> Item:
    """Draw a prompt, then answer a yes/no question about one's own drawing ("is there a red ring?", about a
    prompted object or, every other item, one not prompted); the truth is read from the drawing by the parser, so
    the item asks whether the model understands what it drew, right or wrong."""
    scene, rng = reserved_scene(spec, i)
    prompt, _ = L.t2i_prompt(scene, rng)
    if i % 2 == 0 and scene.objects:
        o = scene.objects[int(rng.integers(len(scene.objects)))]
        shape, color = o.shape, o.color
    else:
        present = {(o.shape, o.color) for o in scene.objects}
        absent = [(sh, c) for sh in W.SHAPES for c in W.COLORS if (sh, c) not in present]
        shape, color = absent[int(rng.integers(len(absent)))]
    question = f"is there {article(color)} {shape}?"
    draw = ImageRequest(prompt, scene.size, scene.grid, truth=scene, seed=i)
    ask = TextRequest(question, None, choices=["yes", "no"], truth=R.verify(scene, question), max_tokens=4)
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[draw],
        target=question,
        chance=0.5,
        meta={"prompt": prompt, "question": question, "scene": scene.to_dict()},
        chain="image_then_text",
    )
