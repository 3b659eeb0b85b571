"""One entry for the three analyses, used by `unifylab analyze` and by the study: rows per model, a jsonl and a
PNG of curves over depth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unifylab.analysis.alignment import alignment
from unifylab.analysis.entropy import response_entropy, trajectories
from unifylab.analysis.gradients import gradient_conflict
from unifylab.analysis.plots import save_depth_figure
from unifylab.data.io import write_jsonl
from unifylab.errors import UserError
from unifylab.layout import RunFolder
from unifylab.world.shapes import ShapesConfig

KINDS = ("alignment", "entropy", "gradients")


def world_of(folder: Path | None, default: ShapesConfig) -> ShapesConfig:
    """The world a run was trained on (its config.yaml), else `default`."""
    config = RunFolder(Path(folder)).config if folder is not None else None
    if config is not None and config.is_file():
        from unifylab.train.config import load_config

        return load_config(config, []).world
    return default


def analyze(
    kind: str,
    model: Any,
    folder: Path | None,
    world: ShapesConfig,
    n: int = 200,
    k: int = 10,
    alpha: float = 1.01,
    examples: int = 64,
    seed: int = 0,
    batch: int = 64,
) -> list[dict[str, Any]]:
    """Rows of one analysis for one model (`folder`: its run folder, needed by `gradients`)."""
    if kind == "alignment":
        if not 1 <= k < n:
            raise UserError(f"--k {k} must lie in 1..{n - 1} for --n {n} items")
        return alignment(model, world, n, k, seed, batch)
    if kind == "entropy":
        return trajectories(model, world, n, alpha, seed, batch) + response_entropy(model, world, n, alpha, seed, batch)
    if kind == "gradients":
        if folder is None:
            raise UserError(f"{getattr(model, 'name', model)}: gradient conflict needs a `unifylab train` run folder")
        return gradient_conflict(folder, examples, seed)
    raise UserError(f"unknown analysis {kind!r}; expected one of {', '.join(KINDS)}")


def write(kind: str, rows_by_model: dict[str, list[dict[str, Any]]], out: Path) -> tuple[Path, Path]:
    """out/<kind>.jsonl (one row per model x measure x layer) and out/<kind>.png."""
    jsonl = out / f"{kind}.jsonl"
    write_jsonl(jsonl, ({"model": m, **r} for m, rows in rows_by_model.items() for r in rows))
    return jsonl, save_depth_figure(kind, rows_by_model, out / f"{kind}.png")
