"""The shapes world's own evaluation tasks: item generators (multiple choice, RealUnify-style UEG and GEU,
self-consistency, and the transfer probes of facts and moves) and the scorers only its grammar can read (cell
credit, strict GenEval, verification questions, descriptions of facts). The task registry merges them with the
generic tasks (`World.tasks`); they are imported only when the registry asks, since they build on eval's items.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval.generators import LETTERS, Item, mc_prompt, reserved_scene, task_mode
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.eval.scorers import normalise
from unifylab.world import CAPTION_QUESTION, world_of
from unifylab.world.base import WorldTasks
from unifylab.world.english import article
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes import reasoning as R
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.canvas import render, sample_scene
from unifylab.world.shapes.parse import parse_batch
from unifylab.world.shapes.scene import Scene

if TYPE_CHECKING:
    from unifylab.eval.task_registry import TaskSpec


# ---------------------------------------------------------------------------------------------- generators


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


def gen_ueg(spec: TaskSpec, i: int) -> Item:
    """Understanding enhances generation: infer the scene from an implicit prompt, then draw it."""
    rng = np.random.default_rng([spec.seed, i])
    kind = R.UEG_KINDS[i % len(R.UEG_KINDS)]
    prompt, scene, wrong = R.ueg_item(kind, spec.world, rng)
    questions = R.questions_for(scene, rng, wrong)
    meta = {"kind": kind, "prompt": prompt, "scene": scene.to_dict(), "mode": task_mode(spec)}
    image = ImageRequest(prompt, spec.world, truth=scene, seed=i)
    if task_mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=questions, meta=meta)
    explicit = L.t2i_prompt(scene, rng)[0]
    rewrite = TextRequest(prompt, mode="rewrite", truth=explicit, max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=questions, meta=meta, chain="text_then_image"
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
    edit = ImageRequest(g["instruction"], spec.world, source=shown, truth=g["target"], seed=i)
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
    draw = ImageRequest(prompt, spec.world, truth=scene, seed=i)
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
    meta = {"fact": fact.name, "prompt": prompt, "scene": scene.to_dict(), "mode": task_mode(spec)}
    image = ImageRequest(prompt, spec.world, truth=scene, seed=i)
    target = L.Spec.exact(scene).to_dict()
    if task_mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=target, meta=meta)
    rng = np.random.default_rng([spec.seed, i])
    rewrite = TextRequest(prompt, mode="rewrite", truth=world_of(spec.world).prompt(scene, rng), max_tokens=48)
    return Item(f"{spec.name}-{i}", text=[rewrite], images=[image], target=target, meta=meta, chain="text_then_image")


def gen_facts_ask(spec: TaskSpec, i: int) -> Item:
    """Ask a fact ('what does the moon look like?', 'what is two plus one?'): the transfer probe of knowledge into
    understanding. Stepwise: draw the fact from its named prompt, then describe one's own image (right when the
    description shows the answer)."""
    fact, scene = _fact_case(spec, i)
    meta = {"fact": fact.name, "question": fact.question(), "mode": task_mode(spec)}
    alternatives = fact.alternatives(scene)
    chance = 1 / len(alternatives)
    if task_mode(spec) == "direct":
        space = [fact.read(alt.objects) for alt in alternatives]
        req = TextRequest(fact.question(), None, mode="rewrite", choices=space, truth=fact.answer, max_tokens=12)
        return Item(f"{spec.name}-{i}", text=[req], target=fact.answer, chance=chance, meta=meta)
    draw = ImageRequest(fact.prompt(scene), spec.world, truth=scene, seed=i)
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
        "mode": task_mode(spec),
    }


def gen_moves_ask(spec: TaskSpec, i: int) -> Item:
    """Where does an object end after a move or turn, or what colour is it after a recolouring ('the red ring moves
    one cell left. where is it now?', 'the red ring fades. what colour is it now?'): the transfer probe of a skill
    into understanding. Stepwise: make the edit, then ask one's own image (where is it? what colour is it?)."""
    m = _move_case(spec, i)
    shown = render(m.before)
    space = L.answer_space("color_of" if m.color is not None else "where", m.before)
    chance = 1 / len(space)
    if task_mode(spec) == "direct":
        req = TextRequest(m.question, shown, choices=space, truth=m.answer, max_tokens=12)
        return Item(f"{spec.name}-{i}", text=[req], target=m.answer, chance=chance, meta=_move_meta(spec, m))
    edit = ImageRequest(m.instruction, spec.world, source=shown, truth=m.after, seed=i)
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
    edit = ImageRequest(m.instruction, spec.world, source=shown, truth=m.after, seed=i)
    if task_mode(spec) == "direct":
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


# ---------------------------------------------------------------------------------------------- scorers


def _parsed(item: Item, images: list[np.ndarray]) -> Scene:
    """The item's (first) drawing read by the parser on its request's grid, logged in the item's meta."""
    parsed = parse_batch(np.stack(images[:1]), item.images[0].world.grid)[0]
    item.meta["parsed"] = parsed.to_dict()
    return parsed


def score_caption_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the caption's objects against the scene."""
    objs = L.parse_caption(texts[0])
    if objs is None:
        return 0.0, [f"caption {texts[0]!r} names no object in a readable form"]
    return L.cell_credit(objs, Scene.from_dict(item.meta["scene"]).objects)


def score_image_strict(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """GenEval's rules plus one: the image holds no object beyond those the prompt asks for (GenEval ignores extra
    objects, so clutter can pass; here it fails)."""
    parsed = _parsed(item, images)
    spec = L.Spec.from_dict(item.target)
    if spec.max_objects is None:
        spec = replace(spec, max_objects=sum(r.count for r in spec.include))
    verdict = L.satisfies(parsed, spec)
    return (1.0 if verdict.ok else 0.0), verdict.reasons


def score_image_cells(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Partial credit per cell (filled, colour, shape) for the parsed image against the prompted scene."""
    parsed = _parsed(item, images)
    return L.cell_credit(parsed.objects, Scene.from_dict(item.meta["scene"]).objects)


def score_verify(item: Item, texts: list[str], images: list[np.ndarray]) -> tuple[float, list[str]]:
    """Poll the drawn image with the item's yes/no questions, answered exactly on the parsed scene."""
    parsed = _parsed(item, images)
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
    truth = R.verify(_parsed(item, images), item.target)
    got = normalise(texts[0])
    return (1.0, []) if got == truth else (0.0, [f"answered {texts[0]!r}; its drawing says {truth}"])


TASKS = WorldTasks(
    generators={
        "mc": gen_mc,
        "ueg": gen_ueg,
        "geu": gen_geu,
        "self_consistency": gen_self_consistency,
        "facts_draw": gen_facts_draw,
        "facts_ask": gen_facts_ask,
        "moves_ask": gen_moves_ask,
        "moves_draw": gen_moves_draw,
    },
    scorers={
        "caption_cells": score_caption_cells,
        "image_cells": score_image_cells,
        "image_strict": score_image_strict,
        "verify": score_verify,
        "described": score_described,
        "consistent": score_consistent,
    },
    fits={
        "mc": ("mc",),
        "ueg": ("verify",),
        "geu": ("mc",),
        "self_consistency": ("consistent",),
        "facts_draw": ("image", "image_strict", "image_cells"),
        "facts_ask": ("exact", "described"),
        "moves_ask": ("exact",),
        "moves_draw": ("image", "image_strict"),
        "caption": ("caption_cells",),
        "t2i": ("image_strict", "image_cells"),
        "geneval": ("image_strict",),
    },
    graded=frozenset({"caption_cells", "image_cells"}),
)
