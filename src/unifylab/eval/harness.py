"""Run tasks on any protocol model: batched requests, per-item jsonl with reasons, resume, results.json with CIs."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unifylab.data.forms import UND_TASKS as UND_TRAINING
from unifylab.errors import UserError
from unifylab.eval.generators import Item
from unifylab.eval.protocol import UnifiedModel
from unifylab.eval.stats import Estimate, bootstrap_mean, bootstrap_mean_of_groups
from unifylab.eval.task_registry import GRADED, SCORERS, TaskSpec, items
from unifylab.io import load_rgb, read_json, save_png
from unifylab.layout import EvalFolder
from unifylab.world import describe_canvas, scene_pairs, world_of


def _record(
    item: Item, texts: list[str], image_paths: list[str], score: float, reasons: list[str], graded: bool
) -> dict[str, Any]:
    return {
        "id": item.id,
        "input": {"prompts": [r.prompt for r in item.text] + [r.prompt for r in item.images]},
        "output": {"texts": texts, "images": image_paths},
        "target": item.target,
        "score": score,
        "reasons": reasons,
        "chance": item.chance if not graded and (item.chance or not item.images) else None,
        "meta": item.meta,
    }


def _run_chunk(model: UnifiedModel, chunk: list[Item]) -> tuple[dict[str, list[str]], dict[str, list[np.ndarray]]]:
    """Texts and images per item, batched per stage: free text, then images (drawn from the model's own text for
    `text_then_image` items), then the questions of `image_then_text` items about the model's own images."""
    texts: dict[str, list[str]] = {it.id: [] for it in chunk}
    images: dict[str, list[np.ndarray]] = {it.id: [] for it in chunk}

    def ask(items: list[Item]) -> None:
        reqs = [r for it in items for r in it.text]
        outs = iter(model.generate_text(reqs) if reqs else [])
        for it in items:
            texts[it.id] = [next(outs) for _ in it.text]

    ask([it for it in chunk if it.chain != "image_then_text"])
    for it in chunk:
        if it.chain == "text_then_image":
            it.images = [replace(r, prompt=it.chain_prompt.format(texts[it.id][0])) for r in it.images]
    reqs = [r for it in chunk for r in it.images]
    outs = iter(model.generate_images(reqs) if reqs else [])
    for it in chunk:
        images[it.id] = [np.asarray(next(outs), dtype=np.uint8) for _ in it.images]
        if it.chain == "image_then_text":
            it.text = [replace(r, image=images[it.id][0]) for r in it.text]
    ask([it for it in chunk if it.chain == "image_then_text"])
    return texts, images


def _index(item_id: str) -> str:
    return item_id.rsplit("-", 1)[1]


def _sibling_outputs(spec: TaskSpec, folder: EvalFolder) -> dict[str, dict[str, Any]]:
    """Records of `spec.outputs_of` already in this eval folder, by item index (same items, same requests)."""
    if spec.outputs_of is None:
        return {}
    return {_index(k): rec for k, rec in folder.read_records(spec.outputs_of).items()}


def fingerprint(model: UnifiedModel, spec: TaskSpec) -> dict[str, Any]:
    """Everything that determines a task's records: the model (weights' hash, sampling settings) and the task spec."""
    return {
        "model": getattr(model, "fingerprint", {"name": getattr(model, "name", type(model).__name__)}),
        "task": spec.model_dump(mode="json"),
    }


def run_task(
    model: UnifiedModel,
    spec: TaskSpec,
    out: Path,
    *,
    limit: int | None = None,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Score every item of `spec` not already in out/<task>.jsonl; returns all records. A model whose `world`
    (size, grid) differs from the task's is refused; records made by another model or task version
    (out/<task>.fingerprint.json) are refused, or with `force` recomputed."""
    world = getattr(model, "world", None)
    if world is not None and world != spec.world.canvas:
        raise UserError(
            f"task {spec.name} is built on the {spec.world.describe()} but {getattr(model, 'name', 'the model')} "
            f"reads and draws images of the {describe_canvas(world)}; evaluate it on tasks of its world"
        )
    folder = EvalFolder(out)
    try:
        done = (
            folder.resume_records(spec.name)
            if folder.reusable(spec.name, fingerprint(model, spec), force=force)
            else {}
        )
    except UserError:  # lines this program did not write
        if not force:
            raise
        folder.forget(spec.name)
        done = {}
    wanted = items(spec, limit)
    todo = [it for it in wanted if it.id not in done]
    if progress is not None and len(wanted) > len(todo):
        progress(len(wanted) - len(todo))
    score_fn = SCORERS[spec.scorer]
    reuse = _sibling_outputs(spec, folder)
    with folder.appending(spec.name) as f:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            fresh = [it for it in chunk if _index(it.id) not in reuse]
            texts, images = _run_chunk(model, fresh)
            for it in chunk:
                if it.id in texts:
                    t, ims = texts[it.id], images[it.id]
                    paths = []
                    for k, im in enumerate(ims):
                        p = folder.images(spec.name) / f"{it.id}-{k}.png"
                        save_png(p, im)
                        paths.append(str(p.relative_to(out)))
                else:  # the sibling task already asked the model exactly this
                    rec = reuse[_index(it.id)]
                    t, paths = rec["output"]["texts"], rec["output"]["images"]
                    ims = [load_rgb(out / q) for q in paths]
                score, reasons = score_fn(it, t, ims)
                rec = _record(it, t, paths, score, reasons, spec.scorer in GRADED)
                done[it.id] = rec
                f.write(json.dumps(rec) + "\n")
            f.flush()
            if progress is not None:
                progress(len(chunk))
    return [done[it.id] for it in wanted]


def previous_results(folder: EvalFolder, model: str, *, force: bool) -> dict[str, Any]:
    """The task summaries an eval folder already holds for `model` ({} when it has none); a folder holding another
    model's results is refused unless `force` (then none of them is kept: results.json never mixes two models)."""
    if not folder.results.is_file():
        return {}
    previous = read_json(folder.results)
    if previous.get("model") != model and not force:
        raise UserError(
            f"{folder.path}: holds results of model {previous.get('model')!r}, not {model!r}; "
            "choose another --out, or --force to score this model there instead"
        )
    return previous.get("tasks", {}) if previous.get("model") == model else {}


def evaluate(
    folder: EvalFolder,
    model: UnifiedModel,
    specs: list[TaskSpec],
    *,
    name: str,
    limit: int | None = None,
    force: bool = False,
    progress: Callable[[TaskSpec, int], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Score `specs` into `folder` (resuming what it holds), write its results.json (with the model's sampling
    recipe, its `fingerprint`) and return every task summary it now holds for `name`; `progress(spec, n)` gives the
    callback that follows one task's n items."""
    results = previous_results(folder, name, force=force)
    for spec in specs:
        n = spec.n if limit is None else min(spec.n, limit)
        step = progress(spec, n) if progress is not None else None
        records = run_task(model, spec, folder.path, limit=limit, progress=step, force=force)
        results[spec.name] = summarise(spec, records)
    folder.write_results({"model": name, "recipe": getattr(model, "fingerprint", {}), "tasks": results})
    return results


class TrainingData(Protocol):
    """What the splits read of a model's training data (its config's `data:`, a `train.config.DataConfig`): the
    held-out and one-side (shape, colour) pairs, and the side each fact and skill was taught on."""

    @property
    def holdout_pairs(self) -> Sequence[Sequence[str]] | None: ...
    @property
    def und_only_pairs(self) -> Sequence[Sequence[str]]: ...
    @property
    def gen_only_pairs(self) -> Sequence[Sequence[str]]: ...
    @property
    def facts(self) -> Mapping[str, str]: ...
    @property
    def moves(self) -> Mapping[str, str]: ...


SPLITS = ("new_scenes", "heldout_pairs", "all")
FACT_SPLITS = ("both", "here", "transfer", "none")  # where a fact was taught, seen from the task's side


def task_side(spec: TaskSpec) -> str | None:
    """'und' or 'gen': the side of the training task that teaches `spec` (None: no training task does)."""
    if spec.trained_by is None:
        return None
    return "und" if spec.trained_by in UND_TRAINING else "gen"


def split_of(record: dict[str, Any], spec: TaskSpec, data: TrainingData) -> str:
    """Where an item stands against its model's training data.

    A fact item ('fact' in its meta) or a move item ('move': its direction): 'both' (its fact or direction was
    taught on both sides), 'here' (only on the task's side), 'transfer' (only on the other side) or 'none' (never);
    a move item, or a fact item drawn in a free look (light, sums), whose scene holds a held-out or one-side pair is
    'other_pairs' (kept out of the comparison). A scene
    item: 'heldout_pairs' when its scene holds a (shape, colour) pair never trained, 'transfer' when it holds a pair
    taught only on the other side, 'other_pairs' when it holds both (kept out: a held-out item on which only a
    unified model saw one of the pairs), else 'new_scenes' (eval scenes are never training scenes, see
    `unifylab.data.splits`)."""
    side, meta = task_side(spec), record["meta"]
    scene = meta.get("scene") or meta.get("shown") or {}
    pairs = scene_pairs(scene) | scene_pairs(meta.get("after") or {})
    free = "move" in meta or ("fact" in meta and world_of(spec.world).facts()[meta["fact"]].pair is None)
    if free and pairs & {tuple(p) for p in [*data.holdout_pairs, *data.und_only_pairs, *data.gen_only_pairs]}:
        return "other_pairs"
    if "fact" in meta or "move" in meta:
        taught = data.facts.get(meta["fact"], "none") if "fact" in meta else data.moves.get(meta["move"], "none")
        return taught if taught in ("both", "none") else ("here" if taught == side else "transfer")
    held = pairs & {tuple(p) for p in data.holdout_pairs}
    other = pairs & {tuple(p) for p in {"und": data.gen_only_pairs, "gen": data.und_only_pairs}.get(side or "", [])}
    if held and other:  # a unified model saw one of its pairs on the other side, a specialist never did
        return "other_pairs"
    return "heldout_pairs" if held else "transfer" if other else "new_scenes"


def summarise(
    spec: TaskSpec,
    records: list[dict[str, Any]],
    data: TrainingData | None = None,
    *,
    splits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Accuracy with a 95 % bootstrap CI (GenEval: mean of per-tag accuracies), chance, per-group accuracies and,
    with the model's training `data`, accuracy per split (`split_of`: new scenes of trained compositions,
    held-out pairs, transfer items; or, for fact items, by where each fact was taught) and all. `splits`: each
    record's split by id, when the caller has them already."""
    scores = [r["score"] for r in records]
    groups: dict[str, list[float]] = defaultdict(list)
    key = "tag" if spec.generator == "geneval" else "kind"
    for r in records:
        if key in r["meta"]:
            groups[r["meta"][key]].append(r["score"])
    acc: Estimate = bootstrap_mean_of_groups(groups) if spec.generator == "geneval" else bootstrap_mean(scores)
    chances = [r["chance"] for r in records if r["chance"] is not None]
    out = {
        "accuracy": acc.to_dict(),
        "chance": float(np.mean(chances)) if chances else None,
        "groups": {g: bootstrap_mean(v).to_dict() for g, v in sorted(groups.items())},
        "n": len(records),
    }
    if data is not None:
        by: dict[str, list[float]] = defaultdict(list)
        for r in records:
            by[splits[r["id"]] if splits is not None else split_of(r, spec, data)].append(r["score"])
        sided = ("transfer",) if data.und_only_pairs or data.gen_only_pairs else ()
        taught = any("fact" in r["meta"] or "move" in r["meta"] for r in records)
        names = FACT_SPLITS if taught else ("new_scenes", "heldout_pairs", *sided)
        out["splits"] = {
            **{k: bootstrap_mean(by[k]).to_dict() if by[k] else None for k in names},
            "all": out["accuracy"],
        }
    return out
