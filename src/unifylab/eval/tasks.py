"""Evaluation tasks: YAML specs in `eval/tasks/` (one registry), item generators from the world, exact scorers.

A task YAML names its `generator`, `scorer`, item count `n`, `seed` and `world`; the generator turns (spec, index)
into an Item holding the protocol requests and the target; the scorer turns model outputs into (score, reasons).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from unifylab.config import FileName, Seed, load_named, packaged_yaml
from unifylab.data.geneval import generate as geneval_generate
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval import reasoning as R
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.train.config import TASKS as TRAINING_TASKS
from unifylab.world import CAPTION_QUESTION, WorldConfig, class_of_dict, world_of
from unifylab.world.english import NUMBER_WORDS, article
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scene
from unifylab.world.shapes.parse import parse_batch
from unifylab.world.shapes.scene import Scene
from unifylab.world.watch import geneval as WS
from unifylab.world.watch import language as WL
from unifylab.world.watch.face import WatchScene

LETTERS = "ABCD"


class TaskOptions(TypedDict, total=False):
    """A task's `options` (each generator reads those it needs); unknown keys and wrong types are errors."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    mode: Literal["direct", "stepwise"]  # stepwise: split into an understanding step and a generation step
    kinds: list[str]  # vqa: the question kinds asked (default: all of the world's)
    moves: list[str]  # moves_* and watch_later_*: the skills asked, in turn
    family: list[str]  # facts_*: the fact families asked, in turn


class TaskSpec(BaseModel):
    """One task YAML."""

    model_config = ConfigDict(extra="forbid")

    name: FileName = Field(description="names its files in an eval folder")
    description: str = ""
    generator: str
    scorer: str
    kind: Literal["und", "gen"] | None = Field(
        None,
        description="what the task scores: 'und' (answers about images) or 'gen' (images); a study pools "
        "each kind's tasks into its understanding / generation comparison (None: into neither)",
    )
    n: int = Field(200, ge=1, le=1_000_000)
    seed: Seed = 12345
    world: WorldConfig = ShapesConfig()
    options: TaskOptions = Field(default_factory=dict)
    outputs_of: FileName | None = Field(
        None,
        description="a task with the same items whose model outputs, when already "
        "in the eval folder, are re-scored instead of generated again",
    )
    probe: bool = Field(
        False,
        description="a transfer probe (its items split by where the study taught what they "
        "need): reported in the report's transfer section, never pooled into a "
        "headline comparison",
    )
    trained_by: Literal[TRAINING_TASKS] | None = Field(
        None, description="the training task whose examples teach this task; None when no training form does"
    )

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator {self.generator!r} unknown; expected one of {', '.join(GENERATORS)}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer {self.scorer!r} unknown; expected one of {', '.join(SCORERS)}")
        if self.scorer not in FITS[self.generator]:
            raise ValueError(
                f"scorer {self.scorer!r} cannot score the items of generator {self.generator!r}; use "
                f"{' or '.join(repr(s) for s in FITS[self.generator])}"
            )
        known = WL.QA_KINDS if self.world.name == "watch" else L.QA_KINDS
        if bad := [k for k in self.options.get("kinds", []) if k not in known]:
            raise ValueError(f"options.kinds: unknown question kind(s) {bad}; expected some of {', '.join(known)}")
        return self


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


# ---------------------------------------------------------------------------------------------- generators


def _scene(spec: TaskSpec, i: int, *, free: bool = False) -> tuple[Any, np.random.Generator]:
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
    scene, _ = _scene(spec, i)
    world = world_of(spec.world)
    req = TextRequest(CAPTION_QUESTION, world.render(scene), truth=world.caption(scene, np.random.default_rng(i)))
    return Item(f"{spec.name}-{i}", text=[req], target=scene.to_dict(), meta={"scene": scene.to_dict()})


def gen_vqa(spec: TaskSpec, i: int) -> Item:
    scene, rng = _scene(spec, i)
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
    scene, rng = _scene(spec, i)
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
    scene, rng = _scene(spec, i)
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


def _mode(spec: TaskSpec) -> str:
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
    meta = {"kind": kind, "prompt": prompt, "scene": scene.to_dict(), "mode": _mode(spec)}
    image = ImageRequest(prompt, scene.size, scene.grid, truth=scene, seed=i)
    if _mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=questions, meta=meta)
    explicit = L.t2i_prompt(scene, rng)[0]
    rewrite = TextRequest(prompt, mode="rewrite", truth=explicit, max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=questions, meta=meta, chain="text_then_image"
    )


def _watch_skills(spec: TaskSpec) -> tuple[str, ...]:
    """The offsets a watch-world task may turn the hands on by; a task not on the watch world is refused."""
    if spec.world.name != "watch":
        raise UserError(f"task {spec.name}: generator {spec.generator} needs a watch world (world: {{name: watch}})")
    return WL.skills(spec.world.minute_step)


def _later_minutes(spec: TaskSpec, rng: np.random.Generator) -> int:
    """How many minutes a watch-world reasoning item turns the hands on: a multiple of the world's step, 5..55."""
    skills = _watch_skills(spec)
    return WL.skill_minutes(skills[int(rng.integers(len(skills)))])


def gen_watch_ueg(spec: TaskSpec, i: int) -> Item:
    """Understanding enhances generation on the watch world: draw a face whose time is given as arithmetic ('the
    time 20 minutes after 3:20'); stepwise: rewrite the prompt into an explicit one first, then draw the rewrite."""
    scene, rng = _scene(spec, i)
    prompt = WL.later_prompt(scene, _later_minutes(spec, rng), rng)
    meta = {"kind": "time_arithmetic", "prompt": prompt, "scene": scene.to_dict(), "mode": _mode(spec)}
    image = ImageRequest.of(spec.world, prompt, truth=scene, seed=i)
    if _mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=scene.to_dict(), meta=meta)
    rewrite = TextRequest(prompt, mode="rewrite", truth=WL.t2i_prompt(scene, rng), max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=scene.to_dict(), meta=meta, chain="text_then_image"
    )


def _later_case(spec: TaskSpec, i: int) -> tuple[WatchScene, int]:
    """A reserved face and the offset item i turns its hands on by: the offsets `options.moves` lists (default:
    every offset of the world's step), in turn, so each is asked equally often."""
    known = _watch_skills(spec)
    skills = spec.options.get("moves") or list(known)
    if any(k not in known for k in skills):
        raise UserError(f"task {spec.name}: options.moves must list offsets among {', '.join(known)}, got {skills!r}")
    scene, _ = _scene(spec, i, free=True)
    return scene, WL.skill_minutes(skills[i % len(skills)])


def _later_meta(spec: TaskSpec, scene: WatchScene, minutes: int) -> dict[str, Any]:
    after = WL.shifted(scene, minutes)
    return {"move": f"{minutes} minutes", "scene": scene.to_dict(), "after": after.to_dict(), "mode": _mode(spec)}


def gen_watch_later_ask(spec: TaskSpec, i: int) -> Item:
    """'What time will the watch show 20 minutes later?' about a face: the hands-turning skill in understanding (a
    GEU probe). Stepwise: draw the face 20 minutes later (generation), then read the time off that drawing."""
    scene, minutes = _later_case(spec, i)
    qa, world = WL.later_question(scene, minutes), world_of(spec.world)
    shown, space = world.render(scene), world.answer_space("time", scene)
    meta = {**_later_meta(spec, scene, minutes), "question": qa.question}
    if _mode(spec) == "direct":
        req = TextRequest(qa.question, shown, choices=space, truth=qa.answer)
        return Item(f"{spec.name}-{i}", text=[req], target=qa.answer, chance=1 / len(space), meta=meta)
    later = WL.shifted(scene, minutes)
    edit = ImageRequest.of(spec.world, WL.later_instruction(minutes), source=shown, truth=later, seed=i)
    ask = TextRequest(WL.ask(later, "time").question, None, choices=space, truth=qa.answer)
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[edit],
        target=qa.answer,
        chance=1 / len(space),
        meta=meta,
        chain="image_then_text",
    )


def gen_watch_later_draw(spec: TaskSpec, i: int) -> Item:
    """'Draw this watch 20 minutes later.' as an edit of a face: the hands-turning skill in generation (a UEG
    probe); the drawing must be the whole face with the hands turned on. Stepwise: say the time it will show
    (understanding), then make the explicit edit that names it ('draw this watch showing <the answer>.')."""
    scene, minutes = _later_case(spec, i)
    later, shown = WL.shifted(scene, minutes), world_of(spec.world).render(scene)
    edit = ImageRequest.of(spec.world, WL.later_instruction(minutes), source=shown, truth=later, seed=i)
    meta = {**_later_meta(spec, scene, minutes), "instruction": edit.prompt}
    if _mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[edit], target=later.to_dict(), meta=meta)
    qa = WL.later_question(scene, minutes)
    ask = TextRequest(qa.question, shown, truth=qa.answer)
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[edit],
        target=later.to_dict(),
        meta=meta,
        chain="text_then_image",
        chain_prompt=WL.set_instruction("{}"),
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
        "mode": _mode(spec),
    }
    if _mode(spec) == "direct":
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


def _families(spec: TaskSpec) -> list[str]:
    families = spec.options.get("family", ["things"])
    if not families or any(f not in K.FAMILIES for f in families):
        raise UserError(
            f"task {spec.name}: options.family must name fact families among {', '.join(K.FAMILIES)}, got {families!r}"
        )
    return families


def _fact_case(spec: TaskSpec, i: int) -> tuple[K.Fact, Scene]:
    """Item i's fact (every fact of the task's families, `options.family`, in turn) and its drawing at one of the
    fact's evaluation places (never drawn in training, `Fact.eval_places`), in a seeded look where the fact leaves
    one free."""
    names = [n for f in _families(spec) for n in K.family(f)]
    fact = K.FACTS[names[i % len(names)]]
    places = sorted(fact.eval_places(spec.world.grid))
    rng = np.random.default_rng([spec.seed, i, 1])
    look = fact.pair or K.random_look(rng)
    place = places[(i // len(names)) % len(places)]
    return fact, fact.scene(place, look, size=spec.world.size, grid=spec.world.grid)


def gen_facts_draw(spec: TaskSpec, i: int) -> Item:
    """Draw a fact named, not described ('draw the moon at row 1, column 2.', 'draw as many red circles as two plus
    one in row 2, from the left.'): the transfer probe of knowledge into generation. Stepwise: rewrite the prompt
    into an explicit one first, then draw the rewrite."""
    fact, scene = _fact_case(spec, i)
    prompt = fact.prompt(scene)
    meta = {"fact": fact.name, "prompt": prompt, "scene": scene.to_dict(), "mode": _mode(spec)}
    image = ImageRequest(prompt, scene.size, scene.grid, truth=scene, seed=i)
    target = L.Spec.exact(scene).to_dict()
    if _mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=target, meta=meta)
    rng = np.random.default_rng([spec.seed, i])
    rewrite = TextRequest(prompt, mode="rewrite", truth=K.rewrite_target(scene, rng), max_tokens=48)
    return Item(f"{spec.name}-{i}", text=[rewrite], images=[image], target=target, meta=meta, chain="text_then_image")


def gen_facts_ask(spec: TaskSpec, i: int) -> Item:
    """Ask a fact ('what does the moon look like?', 'what is two plus one?'): the transfer probe of knowledge into
    understanding. Stepwise: draw the fact from its named prompt, then describe one's own image (right when the
    description shows the answer)."""
    fact, scene = _fact_case(spec, i)
    meta = {"fact": fact.name, "question": fact.question(), "mode": _mode(spec)}
    alternatives = fact.alternatives(scene)
    chance = 1 / len(alternatives)
    if _mode(spec) == "direct":
        space = [fact.read(alt.objects) for alt in alternatives]
        req = TextRequest(fact.question(), None, mode="rewrite", choices=space, truth=fact.answer, max_tokens=12)
        return Item(f"{spec.name}-{i}", text=[req], target=fact.answer, chance=chance, meta=meta)
    draw = ImageRequest(fact.prompt(scene), scene.size, scene.grid, truth=scene, seed=i)
    rng = np.random.default_rng(i)
    describe = TextRequest(
        CAPTION_QUESTION,
        None,
        choices=[L.caption(alt, rng) for alt in alternatives],
        truth=L.caption(scene, np.random.default_rng(i)),
    )
    return Item(
        f"{spec.name}-{i}",
        text=[describe],
        images=[draw],
        target=fact.answer,
        chance=chance,
        meta=meta,
        chain="image_then_text",
    )


def _move_case(spec: TaskSpec, i: int) -> S.Move:
    """Item i's move: the task's skills (`options.moves`, default the four directions) in turn, each a move of a
    named object (one-cell, or by turning the picture) on a scene reserved for evaluation (no training move starts
    or ends on one). A turn's scene holds one object, so the explicit edit of the stepwise route can make it."""
    skills = spec.options.get("moves", list(S.DIRECTIONS))
    if not skills or any(k not in S.SKILLS for k in skills):
        raise UserError(f"task {spec.name}: options.moves must list skills among {', '.join(S.SKILLS)}, got {skills!r}")
    direction = skills[i % len(skills)]
    rng = np.random.default_rng([spec.seed, i])
    for _ in range(10_000):
        scene = sample_scene(spec.world, rng)
        if direction in S.TURNS and len(scene.objects) != 1:
            continue
        if is_eval_scene(scene) and (options := S.moves(scene, direction)):
            return options[int(rng.integers(len(options)))]
    raise UserError(
        f"task {spec.name}: its world ({spec.world.grid}x{spec.world.grid} grid, up to "
        f"{spec.world.max_objects} objects) leaves too few reserved scenes with a free cell to move to; "
        "allow fewer objects per scene"
    )


def _move_meta(spec: TaskSpec, m: S.Move) -> dict[str, Any]:
    return {
        "move": m.direction,
        "instruction": m.instruction,
        "scene": m.before.to_dict(),
        "after": m.after.to_dict(),
        "mode": _mode(spec),
    }


def gen_moves_ask(spec: TaskSpec, i: int) -> Item:
    """Where does an object end after a move or turn, or what colour is it after a recolouring ('the red ring moves
    one cell left. where is it now?', 'the red ring fades. what colour is it now?'): the transfer probe of a skill
    into understanding. Stepwise: make the edit, then ask one's own image (where is it? what colour is it?)."""
    m = _move_case(spec, i)
    shown = render(m.before)
    space = L.answer_space("color_of" if m.color is not None else "where", m.before)
    chance = 1 / len(space)
    if _mode(spec) == "direct":
        req = TextRequest(m.question, shown, choices=space, truth=m.answer, max_tokens=12)
        return Item(f"{spec.name}-{i}", text=[req], target=m.answer, chance=chance, meta=_move_meta(spec, m))
    edit = ImageRequest(m.instruction, m.before.size, m.before.grid, source=shown, truth=m.after, seed=i)
    ask = TextRequest(m.follow_up, None, choices=space, truth=m.answer, max_tokens=12)
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[edit],
        target=m.answer,
        chance=chance,
        meta=_move_meta(spec, m),
        chain="image_then_text",
    )


def gen_moves_draw(spec: TaskSpec, i: int) -> Item:
    """Edit an image by a one-cell move ('move the red ring one cell left.'): the transfer probe of the move skill
    into generation. Stepwise: say where the object ends (understanding), then make the explicit edit that names
    that cell ('move the red ring to <the answer>.')."""
    m = _move_case(spec, i)
    shown = render(m.before)
    target = L.Spec.exact(m.after).to_dict()
    edit = ImageRequest(m.instruction, m.before.size, m.before.grid, source=shown, truth=m.after, seed=i)
    if _mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[edit], target=target, meta=_move_meta(spec, m))
    ask = TextRequest(m.question, shown, truth=m.answer, max_tokens=12)
    return Item(
        f"{spec.name}-{i}",
        text=[ask],
        images=[edit],
        target=target,
        meta=_move_meta(spec, m),
        chain="text_then_image",
        chain_prompt=S.explicit_edit(m.name, "{}", repaint=m.color is not None),
    )


def gen_self_consistency(spec: TaskSpec, i: int) -> Item:
    """Draw a prompt, then answer a yes/no question about one's own drawing ("is there a red ring?", about a
    prompted object or, every other item, one not prompted); the truth is read from the drawing by the parser, so
    the item asks whether the model understands what it drew, right or wrong."""
    scene, rng = _scene(spec, i)
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


GENERATORS: dict[str, Callable[[TaskSpec, int], Item]] = {
    "caption": gen_caption,
    "vqa": gen_vqa,
    "mc": gen_mc,
    "t2i": gen_t2i,
    "geneval": gen_geneval,
    "ueg": gen_ueg,
    "watch_ueg": gen_watch_ueg,
    "watch_later_ask": gen_watch_later_ask,
    "watch_later_draw": gen_watch_later_draw,
    "geu": gen_geu,
    "facts_draw": gen_facts_draw,
    "facts_ask": gen_facts_ask,
    "self_consistency": gen_self_consistency,
    "moves_ask": gen_moves_ask,
    "moves_draw": gen_moves_draw,
}


# ---------------------------------------------------------------------------------------------- scorers

_NUMBERS = {w: str(k) for k, w in enumerate(NUMBER_WORDS)}


def normalise(text: str) -> str:
    """Lower case, no punctuation or articles, number words as digits: 'Three.' -> '3', 'a red' -> 'red'."""
    words = re.sub(r"[^\w\s,]", " ", text.lower()).replace(",", " , ").split()
    words = [_NUMBERS.get(w, w) for w in words if w not in ("a", "an", "the")]
    return " ".join(words).replace(" , ", ", ").strip(" ,")


def parse_letter(text: str) -> str | None:
    """The option letter a reply chooses: a standalone A-D (not the article 'a' inside a sentence) or 'A.'."""
    t = text.strip()
    m = re.match(r"^\(?([A-Da-d])\)?(?:[.:)\s]|$)", t)
    if m and (len(t) <= 3 or t[1:2] in ".:)"):
        return m.group(1).upper()
    m = re.search(r"\b(?:answer|option)\s*(?:is\s*)?:?\s*\(?([A-D])\b", t, re.IGNORECASE)
    return m.group(1).upper() if m else None


def score_exact(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    got, want = normalise(texts[0]), normalise(str(item.target))
    return (1.0, []) if got == want else (0.0, [f"answered {texts[0]!r}, expected {item.target!r}"])


def score_caption(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    if class_of_dict(item.target).name != "shapes":
        want = WatchScene.from_dict(item.target)
        got = WL.parse_caption(texts[0], want.size)
        if got is None:
            return 0.0, [f"caption {texts[0]!r} does not state a whole face"]
        verdict = WL.satisfies(got, want)
        return (1.0 if verdict.ok else 0.0), [r.replace("drew", "said") for r in verdict.reasons]
    truth = Scene.from_dict(item.target)
    objs = L.parse_caption(texts[0])
    if objs is None:
        return 0.0, [f"caption {texts[0]!r} names no object in a readable form"]
    got = {(o.shape, o.color, o.size, o.row, o.col) for o in objs}
    want = {(o.shape, o.color, o.size, o.row, o.col) for o in truth.objects}
    reasons = [f"missed {o.describe()}" for o in truth.objects if (o.shape, o.color, o.size, o.row, o.col) not in got]
    reasons += [f"invented {o.describe()}" for o in objs if (o.shape, o.color, o.size, o.row, o.col) not in want]
    return (1.0, []) if got == want and len(objs) == len(got) else (0.0, reasons or ["repeated an object"])


def score_caption_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the caption's objects against the scene."""
    objs = L.parse_caption(texts[0])
    if objs is None:
        return 0.0, [f"caption {texts[0]!r} names no object in a readable form"]
    return L.cell_credit(objs, Scene.from_dict(item.meta["scene"]).objects)


def score_mc(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    reasons = []
    for k, (t, want) in enumerate(zip(texts, item.target)):
        got = parse_letter(t)
        if got != want:
            reasons.append(f"rotation {k}: answered {t!r} ({got or 'no letter'}), expected {want}")
    return (0.0 if reasons else 1.0), reasons


def score_image(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    req = item.images[0]
    if req.world is not None and req.world.name != "shapes":
        world = world_of(req.world)
        parsed = world.parse(np.stack(images[:1]))[0]
        if "include" in item.target:  # a GenEval-style spec rather than a whole face
            verdict = WS.satisfies(parsed, WS.WatchSpec.from_dict(item.target))
        else:
            verdict = world.check(parsed, world.scene_from_dict(item.target))
        item.meta["parsed"] = parsed.to_dict()
        return (1.0 if verdict.ok else 0.0), verdict.reasons
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    verdict = L.satisfies(parsed, L.Spec.from_dict(item.target))
    item.meta["parsed"] = parsed.to_dict()
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_image_strict(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """GenEval's rules plus one: the image holds no object beyond those the prompt asks for (GenEval ignores extra
    objects, so clutter can pass; here it fails)."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    spec = L.Spec.from_dict(item.target)
    if spec.max_objects is None:
        spec = replace(spec, max_objects=sum(r.count for r in spec.include))
    verdict = L.satisfies(parsed, spec)
    item.meta["parsed"] = parsed.to_dict()
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_image_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the parsed image against the prompted scene."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    return L.cell_credit(parsed.objects, Scene.from_dict(item.meta["scene"]).objects)


def score_verify(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Poll the drawn image with the item's yes/no questions, answered exactly on the parsed scene."""
    req = item.images[0]
    parsed = parse_batch(np.stack(images[:1]), req.grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    reasons = [
        f"{q['question']} expected {q['answer']}, the image says {got}"
        for q in item.target
        if (got := R.verify(parsed, q["question"])) != q["answer"]
    ]
    return (0.0 if reasons else 1.0), reasons


def score_described(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """The model's description of its own drawing shows the fact's answer (one object of the thing's shape and
    colour, one object of the mixed colour, as many objects as the sum)."""
    objs = L.parse_caption(texts[0])
    got = None if objs is None else K.FACTS[item.meta["fact"]].read(objs)
    if got == item.target:
        return 1.0, []
    return 0.0, [f"described its image as {texts[0]!r}, which shows {got or 'no answer'}, expected {item.target}"]


def score_consistent(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """The answer about the model's own drawing against the parser's reading of that drawing."""
    parsed = parse_batch(np.stack(images[:1]), item.images[0].grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    truth = R.verify(parsed, item.target)
    got = normalise(texts[0])
    return (1.0, []) if got == truth else (0.0, [f"answered {texts[0]!r}; its drawing says {truth}"])


SCORERS: dict[str, Callable[[Item, list[str], list[np.ndarray]], tuple[float, list[str]]]] = {
    "exact": score_exact,
    "caption": score_caption,
    "mc": score_mc,
    "image": score_image,
    "verify": score_verify,
    "caption_cells": score_caption_cells,
    "image_cells": score_image_cells,
    "image_strict": score_image_strict,
    "described": score_described,
    "consistent": score_consistent,
}
# generator -> the scorers that read what its items hold (their targets, requests and meta)
FITS: dict[str, tuple[str, ...]] = {
    "caption": ("caption", "caption_cells"),
    "vqa": ("exact",),
    "mc": ("mc",),
    "t2i": ("image", "image_strict", "image_cells"),
    "geneval": ("image", "image_strict"),
    "ueg": ("verify",),
    "watch_ueg": ("image",),
    "watch_later_ask": ("exact",),
    "watch_later_draw": ("image",),
    "geu": ("mc",),
    "facts_draw": ("image", "image_strict", "image_cells"),
    "facts_ask": ("exact", "described"),
    "self_consistency": ("consistent",),
    "moves_ask": ("exact",),
    "moves_draw": ("image", "image_strict"),
}
GRADED = frozenset({"caption_cells", "image_cells"})  # partial-credit scorers: no chance level from answer spaces


# ---------------------------------------------------------------------------------------------- registry


def task_files() -> dict[str, Path]:
    """Built-in task YAMLs by name."""
    return packaged_yaml("unifylab.eval", "tasks")


def tasks_of_kind(kind: str) -> list[str]:
    """Built-in tasks that score `kind` ('und' or 'gen'), by name."""
    return [name for name in sorted(task_files()) if load_task(name).kind == kind]


def resolve_tasks(tasks: str, *, world: tuple[str, int, int] | None = None) -> tuple[list[TaskSpec], list[str]]:
    """The tasks `tasks` names (comma-separated built-in names or YAML files), or for 'all' every built-in task
    (understanding, then generation, then the rest) built on `world` (its canvas) when given; returns them and the
    names 'all' left out for another world."""
    if tasks == "all":
        order = {"und": 0, "gen": 1}
        specs = sorted((load_task(t) for t in sorted(task_files())), key=lambda s: order.get(s.kind, 2))
        skipped = [s.name for s in specs if world is not None and s.world.canvas != world]
        return [s for s in specs if s.name not in skipped], skipped
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise UserError(f"--tasks {tasks!r}: no task named; give task names or YAML files separated by commas, or all")
    return [load_task(t) for t in names], []


def load_task(name_or_path: str, _via: tuple[str, ...] = ()) -> TaskSpec:
    """A built-in task by name, or a task YAML file (`_via`: the names and files of the tasks whose `outputs_of`
    led here)."""
    files = task_files()
    spec = load_named(TaskSpec, name_or_path, files, "task", "--tasks")
    path = files.get(name_or_path) or Path(name_or_path)
    if spec.outputs_of is not None:
        via = (*_via, name_or_path, spec.name)
        if spec.outputs_of in via:
            raise UserError(
                f"{path}: outputs_of {spec.outputs_of!r} leads back to itself (a cycle of tasks re-scoring each "
                "other's outputs); name a task that generates its own outputs"
            )
        other = load_task(spec.outputs_of, via)
        same = ("generator", "seed", "world", "options")
        if any(getattr(other, k) != getattr(spec, k) for k in same):
            raise UserError(f"{path}: outputs_of {spec.outputs_of!r} must have the same {', '.join(same)}")
    return spec


def items(spec: TaskSpec, limit: int | None = None) -> list[Item]:
    n = spec.n if limit is None else min(spec.n, limit)
    return [GENERATORS[spec.generator](spec, i) for i in range(n)]
