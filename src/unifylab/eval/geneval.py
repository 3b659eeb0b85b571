"""Score a folder of generated images against GenEval-schema metadata with the exact parser.

Layouts: `<index>.png` per metadata line (any zero padding), or GenEval's `<index>/samples/*.png` (several
samples per prompt). Per-task accuracy is over images; overall is the mean of the task accuracies, as in GenEval.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.data.geneval import GenevalItem
from unifylab.errors import UserError
from unifylab.eval.stats import Estimate, bootstrap_mean, bootstrap_mean_of_groups
from unifylab.io import load_rgb
from unifylab.world.language import satisfies
from unifylab.world.parse import parse_batch

_INDEX = re.compile(r"^\d+$")


def find_images(folder: Path, items: list[GenevalItem]) -> tuple[list[tuple[GenevalItem, Path]], list[Path]]:
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
    """Per-image records (with failure reasons) and the headline numbers."""

    records: list[dict[str, Any]]
    tasks: dict[str, Estimate]
    overall: Estimate

    def summary(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "images": len(self.records),
        }


def score(
    pairs: list[tuple[GenevalItem, Path]],
    grid: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = 256,
) -> GenevalResult:
    """Parse every image (grid from the item's scene, else `grid`, else inferred) and check it against its spec."""
    records: list[dict[str, Any]] = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        images = []
        for item, path in chunk:
            size = item.scene.size if item.scene is not None else None
            images.append(load_rgb(path, size))
        groups: dict[tuple[int, int | None], list[int]] = defaultdict(list)
        for k, (item, _) in enumerate(chunk):
            g = item.scene.grid if item.scene is not None else grid
            groups[images[k].shape[0], g].append(k)
        parsed: dict[int, Any] = {}
        for (_, g), ks in groups.items():
            for k, scene in zip(ks, parse_batch(np.stack([images[k] for k in ks]), g)):
                parsed[k] = scene
        for k, (item, path) in enumerate(chunk):
            verdict = satisfies(parsed[k], item.spec)
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
    by_task: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_task[r["tag"]].append(float(r["correct"]))
    tasks = {t: bootstrap_mean(v) for t, v in by_task.items()}
    return GenevalResult(records, tasks, bootstrap_mean_of_groups(by_task))
