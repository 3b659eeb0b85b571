"""Score a folder of generated images against GenEval-schema metadata: the lab's worlds' metadata with their exact
parsers (`score`), GenEval's own COCO metadata with its detector and colour rules (`score_official`).

Layouts: `<index>.png` per metadata line (any zero padding), or GenEval's `<index>/samples/*.png` (several
samples per prompt). Per-task accuracy is over images; overall is the mean of the task accuracies, as in GenEval.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from unifylab.data.geneval import GenevalItem, OfficialLine
from unifylab.errors import UserError
from unifylab.eval.geneval_rules import GENEVAL, ColorFn, Detection, Rules, judge, keep
from unifylab.eval.stats import Estimate, bootstrap_mean, bootstrap_mean_of_groups
from unifylab.io import load_rgb
from unifylab.world import DEFAULT, World, world_of_canvas

_INDEX = re.compile(r"^\d+$")
Item = TypeVar("Item", GenevalItem, OfficialLine)


def find_images(folder: Path, items: Sequence[Item]) -> tuple[list[tuple[Item, Path]], list[Path]]:
    """Pair each metadata item with its image(s); return the pairs and the images no line refers to."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: images folder not found")
    files: dict[int, list[Path]] = defaultdict(list)
    samples: dict[int, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() == ".png" and _INDEX.match(p.stem):
            files[int(p.stem)].append(p)
        elif p.is_dir() and _INDEX.match(p.name) and (p / "samples").is_dir():
            samples[int(p.name)] = sorted(q for q in (p / "samples").iterdir() if q.suffix.lower() == ".png")
    for i, paths in files.items():
        if len(paths) > 1 or i in samples:
            claims = [str(q) for q in paths] + ([str(folder / f"{i}")] if i in samples else [])
            raise UserError(f"{folder}: several entries claim index {i} ({', '.join(claims)}); keep one")
    by_index = {**files, **samples}
    if not any(by_index.values()):
        raise UserError(f"{folder}: no images found; expected <index>.png files or <index>/samples/*.png folders")
    missing = [it.index for it in items if not by_index.get(it.index)]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise UserError(
            f"{folder}: no image for {len(missing)} metadata line(s) (indices {shown}); expected "
            f"<index>.png or <index>/samples/*.png for every line"
        )
    known = {it.index for it in items}
    extra = [p for i, ps in sorted(by_index.items()) if i not in known for p in ps]
    return [(it, p) for it in items for p in by_index[it.index]], extra


@dataclass
class GenevalResult:
    """Per-image records (with failure reasons) and GenEval's summary: per-task accuracy over images, overall (the
    mean of the tasks, its headline), the share of prompts with at least one correct image and of correct images."""

    records: list[dict[str, Any]]
    tasks: dict[str, Estimate]
    overall: Estimate
    prompts: Estimate
    images: Estimate

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> GenevalResult:
        """The summary of per-image records. Intervals resample prompts, a prompt's samples together (they share
        its difficulty); with as many samples per prompt as GenEval draws, the mean over prompts is the mean over
        images."""
        samples: dict[int, list[float]] = defaultdict(list)
        tag: dict[int, str] = {}
        for r in records:
            samples[r["index"]].append(float(r["correct"]))
            tag[r["index"]] = r["tag"]
        by_task: dict[str, list[float]] = defaultdict(list)
        images: dict[str, int] = defaultdict(int)
        for index, scores in samples.items():
            by_task[tag[index]].append(float(np.mean(scores)))
            images[tag[index]] += len(scores)
        tasks = {t: replace(bootstrap_mean(v), n=images[t]) for t, v in by_task.items()}
        overall = replace(bootstrap_mean_of_groups(by_task), n=len(records))
        prompts = bootstrap_mean([float(max(v)) for v in samples.values()])
        correct = replace(bootstrap_mean([m for v in by_task.values() for m in v]), n=len(records))
        return cls(records, tasks, overall, prompts, correct)

    def summary(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "prompts_with_a_correct_image": self.prompts.to_dict(),
            "correct_images": self.images.to_dict(),
            "images": len(self.records),
        }


def score(
    pairs: list[tuple[GenevalItem, Path]],
    grid: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = 256,
) -> GenevalResult:
    """Parse every image with its world's exact parser (shapes: the grid from the item's scene, else `grid`, else
    inferred; watch: the line's world) and check it against its spec."""
    records: list[dict[str, Any]] = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        images = []
        for item, path in chunk:
            size = item.world.size if item.world is not None else item.scene.size if item.scene is not None else None
            images.append(load_rgb(path, size))
        groups: dict[tuple[str, int, int | None], list[int]] = defaultdict(list)
        for k, (item, _) in enumerate(chunk):
            g = getattr(item.scene, "grid", grid)  # a line without a world: its scene's grid, else `grid`
            groups[item.world.canvas if item.world is not None else (DEFAULT, images[k].shape[0], g)].append(k)
        parsed: dict[int, Any] = {}
        judge_of: dict[int, World] = {}
        for canvas, ks in groups.items():
            world = world_of_canvas(canvas)
            parsed.update(zip(ks, world.parse(np.stack([images[k] for k in ks]))))
            judge_of.update(dict.fromkeys(ks, world))
        for k, (item, path) in enumerate(chunk):
            verdict = judge_of[k].check_spec(parsed[k], item.spec)
            records.append(
                {
                    "index": item.index,
                    "tag": item.tag,
                    "prompt": item.prompt,
                    "image": str(path),
                    "correct": verdict.ok,
                    "reasons": verdict.reasons,
                    "parsed": parsed[k].to_dict(),
                }
            )
        if progress is not None:
            progress(len(chunk))
    return GenevalResult.of(records)


def score_official(
    pairs: list[tuple[OfficialLine, Path]],
    *,
    detector: Callable[[np.ndarray], dict[str, list[Detection]]],
    colours: ColorFn,
    rules: Rules = GENEVAL,
    progress: Callable[[int], None] | None = None,
) -> GenevalResult:
    """Judge every image of GenEval's own metadata as its released evaluator does (`eval.geneval_rules`): the
    detector's instances, kept by the line's thresholds, checked against the line; records keep the kept boxes."""
    records: list[dict[str, Any]] = []
    for item, path in pairs:
        image = load_rgb(path)
        kept = keep(detector(image), tag=item.tag, rules=rules)
        correct, reasons = judge(image, kept, item.line, colours=colours, rules=rules)
        records.append(
            {
                "index": item.index,
                "tag": item.tag,
                "prompt": item.prompt,
                "image": str(path),
                "correct": correct,
                "reasons": reasons,
                "metadata": item.line,
                "detections": {
                    name: [[*map(float, d.box), round(float(d.score), 4)] for d in dets] for name, dets in kept.items()
                },
            }
        )
        if progress is not None:
            progress(1)
    return GenevalResult.of(records)
