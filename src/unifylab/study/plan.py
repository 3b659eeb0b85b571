"""A study's plan: its runs (sweep value x seed x variant) with their configs, in training order, and the checks
made before any training (every task on its runs' world; a finished run folder holds this very config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from unifylab.errors import UserError
from unifylab.eval.task_registry import TaskSpec
from unifylab.layout import StudyFolder
from unifylab.study.execute import Run
from unifylab.study.preset import Preset, dotted, merge
from unifylab.train.config import load_tree
from unifylab.train.resume import config_change


def _run_id(preset: Preset, name: str, label: str | None, seed: int) -> str:
    return name + ("" if label is None else f"-{preset.sweep.key.split('.')[-1]}{label}") + f"-s{seed}"


def plan_runs(
    preset: Preset, out: Path, seeds: list[int] | None, device: str, overrides: list[str], vq_folder: Path | None
) -> list[Run]:
    """Runs in training order (a variant that starts from another comes after it). Budget contrasts run at the
    first seed only unless the preset asks for all (they feed the budget table, not the headline); folder paths in
    the configs are relative to the study folder (`out`), so they hold on any machine that mounts it."""
    runs = []
    seeds = seeds or preset.seeds
    sweep = list(zip(preset.sweep.values, preset.sweep.names())) if preset.sweep else [(None, None)]
    for value, label in sweep:
        for seed in seeds:
            for v in preset.variants:
                if v.contrast and preset.contrast_seeds == "first" and seed != seeds[0]:
                    continue
                tree = merge(preset.base, v.set)
                if value is not None:
                    tree = merge(tree, dotted(preset.sweep.key, value))
                tree = merge(tree, {"seed": seed, "data": {"seed": seed}, "device": device})
                if v.tokenizer != "grid":
                    tree = merge(tree, {"tokenizers": {"image": str(vq_folder.relative_to(out))}})
                if v.tokenizer == "patch+vq":
                    tree = merge(tree, {"tokenizers": {"und_image": "patch"}})
                if v.init_from is not None:
                    parent = StudyFolder(out).run(_run_id(preset, v.init_from, label, seed))
                    tree = merge(tree, {"init_from": str(parent.path.relative_to(out))})
                rid = _run_id(preset, v.name, label, seed)
                runs.append(
                    Run(rid, v, seed, value, load_tree(tree, overrides, f"preset {preset.name} ({rid})"), label)
                )
    return runs


def check_worlds(runs: list[Run], specs: list[TaskSpec]) -> None:
    """Every task must be built on its models' world (world, image size and grid), else one clear error before
    training."""
    for r in runs:
        w = r.cfg.world
        for s in specs:
            if s.world.canvas != w.canvas:
                raise UserError(
                    f"task {s.name} is built on the {s.world.describe()} but run {r.id} trains on the "
                    f"{w.describe()} (world); drop the task from the preset's tasks or train on its world"
                )


def check_runs(runs: list[Run], out: Path, *, force: bool) -> None:
    """A run folder already in the study must hold this very config: otherwise refuse (naming the changed field),
    or with `force` delete it and everything derived from it so it is trained and scored again."""
    study = StudyFolder(out)
    for r in runs:
        if not (diff := config_change(study.run(r.id), r.cfg)):
            continue
        if not force:
            raise UserError(
                f"{study.run(r.id).path}: trained under another config ({diff}); re-run with --force to "
                "train it again (its scores and analyses are recomputed), or choose another --out"
            )
        study.forget_run(r.id)


def finished_only(preset: Preset, runs: list[Run], out: Path) -> tuple[Preset, list[Run]]:
    """`--report-only`: the runs that finished training, and the preset narrowed to the variants with at least one
    (a kept variant whose parent has none keeps its start in its runs' configs, not in the preset)."""
    study = StudyFolder(out)
    done = [r for r in runs if study.run(r.id).finished]
    if not done:
        raise UserError(
            f"--report-only: no run of study {preset.name} has finished in {out}; run it without --report-only to "
            "train its runs"
        )
    kept = {r.variant.name for r in done}
    variants = [
        {**v.model_dump(), "init_from": v.init_from if v.init_from in kept else None}
        for v in preset.variants
        if v.name in kept
    ]
    try:
        return Preset.model_validate({**preset.model_dump(), "variants": variants}), done
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise UserError(
            f"--report-only: the finished runs of study {preset.name} ({', '.join(sorted(kept))}) do not make a "
            f"study ({msg}); train the missing runs first (run it without --report-only)"
        ) from None
