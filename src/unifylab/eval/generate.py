"""Draw a benchmark's prompts with any protocol model into the benchmark's own folder layout, with the sampling
recipe beside the images, so published numbers can be reproduced and scored by the benchmark's judge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.config import file_digest
from unifylab.data.geneval import GenevalItem, OfficialLine, metadata_world, read_metadata, read_official
from unifylab.errors import UserError
from unifylab.eval.protocol import ImageRequest, UnifiedModel
from unifylab.io import read_json, save_png, write_text_atomic
from unifylab.world import DEFAULT, world_of_canvas

RECIPE = "recipe.json"


def geneval_lines(metadata: Path) -> list[tuple[int, str, dict[str, Any], Any, Any]]:
    """(index, prompt, metadata line, ground-truth scene or None, watch-world config or None) per line of a GenEval
    metadata file, on a lab world or GenEval's own."""
    if metadata_world(metadata) != "coco":
        items: list[GenevalItem] = read_metadata(metadata)
        return [(it.index, it.prompt, it.to_dict(), it.scene, it.world) for it in items]
    lines: list[OfficialLine] = read_official(metadata)
    return [(it.index, it.prompt, it.line, None, None) for it in lines]


def generate_geneval(
    model: UnifiedModel,
    metadata: Path,
    out: Path,
    *,
    samples: int = 4,
    size: int = 512,
    grid: int = 3,
    batch: int = 16,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Draw `samples` images of every metadata line into GenEval's layout: out/<index:05d>/metadata.jsonl (the line)
    and out/<index:05d>/samples/<k:04d>.png, sample k of line i requested with seed i x samples + k;
    out/recipe.json records the model, its sampling recipe and the metadata's digest. Samples already drawn with
    the same recipe are kept (a re-run draws the rest); another recipe is refused unless `force`.
    `progress(done, to_draw)` follows the drawing. Returns the recipe."""
    if samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}")
    lines = geneval_lines(metadata)
    canvas = world_of_canvas((DEFAULT, size, grid)).config  # a line of no lab world is drawn on the default's canvas
    recipe = {
        "model": getattr(model, "name", type(model).__name__),
        "sampling": getattr(model, "fingerprint", {}),
        "samples": samples,
        "size": size,
        "metadata": file_digest(metadata),  # the prompts' content, wherever the file lies
    }
    out = Path(out)
    if (out / RECIPE).is_file() and read_json(out / RECIPE) != recipe and not force:
        raise UserError(
            f"{out / RECIPE}: these images were drawn with another model or recipe; choose another --out, or --force "
            "to draw the missing samples with this one (existing samples are kept: remove them to redraw)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RECIPE, json.dumps(recipe, indent=2) + "\n")
    todo: list[tuple[Path, ImageRequest]] = []
    for index, prompt, line, scene, world in lines:
        folder = out / f"{index:05d}"
        write_text_atomic(folder / "metadata.jsonl", json.dumps(line) + "\n")
        for k in range(samples):
            path = folder / "samples" / f"{k:04d}.png"
            if not path.is_file():
                seed = index * samples + k
                request = ImageRequest(prompt, world or canvas, truth=scene, seed=seed)
                todo.append((path, request))
    for start in range(0, len(todo), batch):
        if progress is not None:
            progress(start, len(todo))
        chunk = todo[start : start + batch]
        for (path, _), image in zip(chunk, model.generate_images([r for _, r in chunk])):
            save_png(path, np.asarray(image, np.uint8))
    if progress is not None:
        progress(len(todo), len(todo))
    return recipe
