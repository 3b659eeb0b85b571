"""Item generators of the transfer probes: knowledge (facts, rules), skills (moves, turns, recolourings) and the
watch world's hands-turning, each asked in understanding and in generation, directly or in two steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval.generators import Item, reserved_scene, task_mode, watch_skills
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.world import CAPTION_QUESTION, world_of
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.canvas import render, sample_scene
from unifylab.world.shapes.scene import Scene
from unifylab.world.watch import language as WL
from unifylab.world.watch.face import WatchScene

if TYPE_CHECKING:
    from unifylab.eval.task_registry import TaskSpec


def _later_case(spec: TaskSpec, i: int) -> tuple[WatchScene, int]:
    """A reserved face and the offset item i turns its hands on by: the offsets `options.moves` lists (default:
    every offset of the world's step), in turn, so each is asked equally often."""
    known = watch_skills(spec)
    skills = spec.options.get("moves") or list(known)
    if any(k not in known for k in skills):
        raise UserError(f"task {spec.name}: options.moves must list offsets among {', '.join(known)}, got {skills!r}")
    scene, _ = reserved_scene(spec, i, free=True)
    return scene, WL.skill_minutes(skills[i % len(skills)])


def _later_meta(spec: TaskSpec, scene: WatchScene, minutes: int) -> dict[str, Any]:
    after = WL.shifted(scene, minutes)
    return {"move": f"{minutes} minutes", "scene": scene.to_dict(), "after": after.to_dict(), "mode": task_mode(spec)}


def gen_watch_later_ask(spec: TaskSpec, i: int) -> Item:
    """'What time will the watch show 20 minutes later?' about a face: the hands-turning skill in understanding (a
    GEU probe). Stepwise: draw the face 20 minutes later (generation), then read the time off that drawing."""
    scene, minutes = _later_case(spec, i)
    qa, world = WL.later_question(scene, minutes), world_of(spec.world)
    shown, space = world.render(scene), world.answer_space("time", scene)
    meta = {**_later_meta(spec, scene, minutes), "question": qa.question}
    if task_mode(spec) == "direct":
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
    if task_mode(spec) == "direct":
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
    image = ImageRequest(prompt, scene.size, scene.grid, truth=scene, seed=i)
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
