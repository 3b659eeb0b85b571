"""The watch world's own evaluation tasks: time arithmetic to draw (UEG) and the hands-turning probes in
understanding and generation, each direct or stepwise. The task registry merges them with the generic tasks
(`World.tasks`); they are imported only when the registry asks, since they build on eval's items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unifylab.errors import UserError
from unifylab.eval.generators import Item, reserved_scene, task_mode
from unifylab.eval.protocol import ImageRequest, TextRequest
from unifylab.world import world_of
from unifylab.world.base import WorldTasks
from unifylab.world.watch import language as WL
from unifylab.world.watch.face import WatchScene

if TYPE_CHECKING:
    from unifylab.eval.task_registry import TaskSpec


def gen_watch_ueg(spec: TaskSpec, i: int) -> Item:
    """Understanding enhances generation on the watch world: draw a face whose time is given as arithmetic ('the
    time 20 minutes after 3:20'); stepwise: rewrite the prompt into an explicit one first, then draw the rewrite."""
    scene, rng = reserved_scene(spec, i)
    skills = WL.skills(spec.world.minute_step)
    prompt = WL.later_prompt(scene, WL.skill_minutes(skills[int(rng.integers(len(skills)))]), rng)
    meta = {"kind": "time_arithmetic", "prompt": prompt, "scene": scene.to_dict(), "mode": task_mode(spec)}
    image = ImageRequest(prompt, spec.world, truth=scene, seed=i)
    if task_mode(spec) == "direct":
        return Item(f"{spec.name}-{i}", images=[image], target=scene.to_dict(), meta=meta)
    rewrite = TextRequest(prompt, mode="rewrite", truth=WL.t2i_prompt(scene, rng), max_tokens=96)
    return Item(
        f"{spec.name}-{i}", text=[rewrite], images=[image], target=scene.to_dict(), meta=meta, chain="text_then_image"
    )


def _later_case(spec: TaskSpec, i: int) -> tuple[WatchScene, int]:
    """A reserved face and the offset item i turns its hands on by: the offsets `options.moves` lists (default:
    every offset of the world's step), in turn, so each is asked equally often."""
    known = WL.skills(spec.world.minute_step)
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
    edit = ImageRequest(WL.later_instruction(minutes), spec.world, source=shown, truth=later, seed=i)
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
    edit = ImageRequest(WL.later_instruction(minutes), spec.world, source=shown, truth=later, seed=i)
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


TASKS = WorldTasks(
    generators={
        "watch_ueg": gen_watch_ueg,
        "watch_later_ask": gen_watch_later_ask,
        "watch_later_draw": gen_watch_later_draw,
    },
    scorers={},
    fits={"watch_ueg": ("image",), "watch_later_ask": ("exact",), "watch_later_draw": ("image",)},
)
