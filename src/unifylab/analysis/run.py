"""One entry for the three analyses, used by `unifylab analyze` and by the study: rows per model, a jsonl and a
PNG of curves over depth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from unifylab.analysis import KINDS
from unifylab.analysis.alignment import alignment
from unifylab.analysis.entropy import response_entropy, trajectories
from unifylab.analysis.gradients import gradient_conflict
from unifylab.analysis.plots import save_depth_figure
from unifylab.errors import UserError
from unifylab.io import write_jsonl
from unifylab.layout import AnalysisFolder, RunFolder
from unifylab.world import WorldConfig, default_config


def run_world(folder: Path | None, default: WorldConfig) -> WorldConfig:
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
    world: WorldConfig,
    *,
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
    folder = AnalysisFolder(Path(out))
    write_jsonl(folder.rows(kind), ({"model": m, **r} for m, rows in rows_by_model.items() for r in rows))
    return folder.rows(kind), save_depth_figure(kind, rows_by_model, folder.plot(kind))


def run_analysis(
    kind: str,
    models: list[str],
    out: Path,
    *,
    n: int | None = None,
    k: int = 10,
    alpha: float = 1.01,
    examples: int = 64,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    save_states: bool = False,
    on_model: Callable[[int, str], None] = lambda done, name: None,
) -> tuple[Path, Path, int]:
    """One analysis over models given as `load_model` specs (n None: 200 scenes for alignment, else 64) into
    out/<kind>.jsonl and out/<kind>.png (an `AnalysisFolder`, locked meanwhile), refusing to overwrite them unless
    `force`; with `save_states`, every sequence's per-layer states too (alignment). `on_model(done, name)` is
    called before each model, with the number of models already analysed. Returns the two paths and the number of
    rows."""
    from unifylab.analysis.capture import save_states as save_shards
    from unifylab.analysis.capture import scene_requests
    from unifylab.eval.models import load_model
    from unifylab.io import guard_output

    folder = AnalysisFolder(Path(out))
    with folder.lock():
        for f in (folder.rows(kind), folder.plot(kind)):
            guard_output(f, force)
        size = n or (200 if kind == "alignment" else 64)
        rows: dict[str, list[dict[str, Any]]] = {}
        for spec in models:
            m = load_model(spec, device=device, seed=seed)
            run = Path(spec) if Path(spec).is_dir() else None
            name = getattr(m, "name", spec)
            if name in rows:
                raise UserError(f"{spec}: two models are named {name!r}; give folders with different names")
            on_model(len(rows), name)
            world = run_world(run, default_config())
            rows[name] = analyze(kind, m, run, world, n=size, k=k, alpha=alpha, examples=examples, seed=seed)
            if save_states:
                for form in ("und", "gen"):
                    requests = scene_requests(form, world, n or 200, seed)
                    save_shards(m, requests, folder.states(name, form), force=force)
        jsonl, png = write(kind, rows, folder.path)
    return jsonl, png, sum(map(len, rows.values()))
