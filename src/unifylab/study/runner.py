"""Run a study: train every (sweep value x seed x variant), evaluate each on every task, measure synergy
(unified minus specialist, paired by item) and the architecture effect (each other unified variant minus the
first), and write results.json for the report. Finished runs and scored items are skipped on re-runs."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unifylab import __version__
from unifylab.data.forms import MODE_TASKS
from unifylab.errors import UserError
from unifylab.eval.stats import hierarchical_paired_difference, holm
from unifylab.eval.task_registry import TaskSpec, load_task
from unifylab.layout import StudyFolder
from unifylab.progress import progress
from unifylab.study.execute import Run, Work, train_steps
from unifylab.study.executors import Executor, LocalExecutor, RayExecutor, default_jobs
from unifylab.study.preset import Preset, dotted, merge
from unifylab.study.transfer import transfer
from unifylab.train.config import TrainConfig, load_tree, resolve_paths
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


def _paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    """b - a over the items both scored (keys 's<seed>/<item>'), with a seeds-then-items bootstrap CI."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diff, p = hierarchical_paired_difference([a[i] for i in ids], [b[i] for i in ids], [i.split("/")[0] for i in ids])
    return {"diff": diff.to_dict(), "p_value": p}


def _scores(
    evals: dict[str, dict[str, dict[str, float]]], runs: list[Run], tasks: tuple[str, ...] | list[str]
) -> dict[str, float]:
    """Item scores of several runs (seeds) and tasks, keyed seed/task/item so pairs line up across variants."""
    out = {}
    for r in runs:
        for t in tasks:
            for item, s in evals.get(r.id, {}).get(t, {}).items():
                out[f"s{r.seed}/{item}"] = s
    return out


def trained_tasks(cfg: TrainConfig) -> set[str]:
    """The training tasks a run's examples include (its mode's tasks with mixture weight > 0)."""
    return {t for t in MODE_TASKS[cfg.data.mode] if cfg.data.mixture.get(t, 0) > 0}


def pooled_tasks(specs: dict[str, TaskSpec], kind: str, configs: list[TrainConfig]) -> list[str]:
    """Tasks of a kind that enter a pooled headline: taught by training data that every compared run (its config)
    saw, scored on their own outputs (a partial-credit re-scoring of a sibling's outputs is reported, never pooled),
    and not a transfer probe (reported in its own section). No configs: none."""
    taught = set.intersection(*(trained_tasks(c) for c in configs)) if configs else set()
    return [
        t
        for t, s in specs.items()
        if s.kind == kind and s.trained_by in taught and s.outputs_of is None and not s.probe
    ]


def _compare(
    evals: dict[str, dict[str, dict[str, float]]], base: list[Run], other: list[Run], tasks: list[str]
) -> dict[str, Any] | None:
    """`other` minus `base` over the items of `tasks`, paired by seed and item."""
    return _paired(_scores(evals, base, tasks), _scores(evals, other, tasks))


def comparisons(
    preset: Preset, runs: list[Run], evals: dict[str, dict[str, dict[str, float]]], specs: dict[str, TaskSpec]
) -> dict[str, Any]:
    """Per group: synergy of each unified variant against each specialist, and each other unified variant against
    the first (e.g. UniFork vs shared), pooled over the trained tasks of a kind and per task; p-values are then
    Holm-adjusted (`p_adjusted`) within each family of `comparison_families`."""
    out: dict[str, Any] = {}
    for group in sorted({r.group for r in runs}):
        g = [r for r in runs if r.group == group]
        by_variant = {v.name: [r for r in g if r.variant.name == v.name] for v in preset.variants}
        unified = [v for v in preset.variants if v.role == "unified"]
        res: dict[str, Any] = {"synergy": {}, "architecture": {}, "budgets": {}}
        for u in unified:
            syn: dict[str, Any] = {}
            budgets: dict[str, dict[str, Any]] = {}
            for spec_v in [v for v in preset.variants if v.role in ("und", "gen")]:
                kind = spec_v.role
                key = "understanding" if kind == "und" else "generation"
                base, other = by_variant[spec_v.name], by_variant[u.name]
                pool = pooled_tasks(specs, kind, [r.cfg for r in base + other])
                pooled = _compare(evals, base, other, pool)
                budget = base[0].cfg.data.budget if base else None
                budgets.setdefault(key, {})[budget] = {"vs": spec_v.name, "pooled": pooled, "contrast": spec_v.contrast}
                if not spec_v.contrast:
                    syn[key] = {
                        "vs": spec_v.name,
                        "pooled": pooled,
                        "pooled_tasks": pool,
                        "tasks": {t: _compare(evals, base, other, [t]) for t, s in specs.items() if s.kind == kind},
                    }
            res["synergy"][u.name] = syn
            if any(b["contrast"] for per in budgets.values() for b in per.values()):
                res["budgets"][u.name] = budgets
        first = unified[0]  # a preset always has one (validated)
        for u in unified[1:]:
            base, other = by_variant[first.name], by_variant[u.name]
            arch = {}
            for key, kind in (("understanding", "und"), ("generation", "gen")):
                pool = pooled_tasks(specs, kind, [r.cfg for r in base + other])
                arch[key] = _compare(evals, base, other, pool)
                if arch[key] is not None:
                    arch[key]["pooled_tasks"] = pool
            res["architecture"][f"{u.name} - {first.name}"] = arch
        out[group] = res
    for family in comparison_families(out):
        tests = [r for r in family if r is not None]
        for r, p in zip(tests, holm([r["p_value"] for r in tests])):
            r["p_adjusted"] = p
    return out


def comparison_families(comps: dict[str, Any]) -> tuple[list[dict[str, Any] | None], ...]:
    """The three families of paired comparisons, each Holm-adjusted on its own: the headline claims (pooled synergy
    and architecture per kind, every sweep group), the per-task breakdown shown beside them, and the synergy
    against specialists at other budgets (the budget table)."""
    headline: list[dict[str, Any] | None] = []
    per_task: list[dict[str, Any] | None] = []
    budgets = [
        b["pooled"]
        for res in comps.values()
        for per_u in res.get("budgets", {}).values()
        for per in per_u.values()
        for b in per.values()
        if b["contrast"]
    ]
    for res in comps.values():
        for syn in res["synergy"].values():
            for s in syn.values():
                headline.append(s["pooled"])
                per_task += list(s["tasks"].values())
        for arch in res["architecture"].values():
            headline += list(arch.values())
    return headline, per_task, budgets


def environment(device: str) -> dict[str, Any]:
    return {
        "unifylab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
    }


def baselines(
    runs: list[Run], specs: list[TaskSpec], out: Path, limit: int | None, *, force: bool
) -> dict[str, dict[str, Any]]:
    """Per comparison group: the blind baseline (answers from the question alone, the modal training image)
    estimated on the group's unified training data and scored on every task (records in DIR/baselines/)."""
    from unifylab.study.blind import blind_summaries

    out_b: dict[str, dict[str, Any]] = {}
    for group in sorted({r.group for r in runs}):
        first = next(r for r in runs if r.group == group and r.variant.role == "unified")
        out_b[group] = blind_summaries(
            resolve_paths(first.cfg, out), specs, StudyFolder(out).baseline(f"blind-{group}").path, limit, force=force
        )
    return out_b


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


def run_study(
    preset: Preset,
    out: Path,
    *,
    seeds: list[int] | None = None,
    device: str = "cpu",
    overrides: list[str] = (),
    console: Console | None = None,
    jobs: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_run: float | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and compare; returns (and writes) results.json's content. `jobs` runs that many trainings
    at once (default: `default_jobs`) on the `executor` ('local', or 'ray' at `ray_address` with `gpus_per_run`
    GPUs each); a run that starts from another waits for it. Work already in `out` is reused only when its
    fingerprint matches; `force` redoes work whose settings changed."""
    console = console or Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = StudyFolder(out)
    vq_folder = study.tokenizers / "vq" if any(v.tokenizer != "grid" for v in preset.variants) else None
    runs = plan_runs(preset, out, seeds, device, list(overrides), vq_folder)
    specs = [load_task(t) for t in preset.tasks]
    check_worlds(runs, specs)
    check_runs(runs, out, force=force)
    if vq_folder is not None and not (vq_folder / "model.safetensors").is_file():
        from unifylab.config import build
        from unifylab.train.vq import VQTrainConfig, save_trained, train_vq

        console.print("training the vq image tokenizer")
        vcfg = build(VQTrainConfig, preset.vq, f"preset {preset.name}: vq")
        tok, metrics = train_vq(vcfg, device)
        save_trained(tok, vcfg, metrics, vq_folder)
    items_of = {s.name: min(s.n, preset.limit or s.n) for s in specs}
    total = sum(train_steps(r) + sum(items_of[s.name] for s in r.variant.scored_on(specs)) for r in runs)
    jobs = max(1, min(jobs or default_jobs(device), len(runs)))
    threads = max(1, torch.get_num_threads() // jobs) if jobs > 1 or executor == "ray" else 0
    if executor == "ray":
        gpus = gpus_per_run if gpus_per_run is not None else (1.0 if device.startswith("cuda") else 0.0)
        runner: Executor = RayExecutor(jobs, address=ray_address, gpus=gpus)
    else:
        runner = LocalExecutor(jobs)
    work = Work(
        out,
        device,
        specs,
        preset.limit,
        (list(preset.analyses), preset.analysis_n),
        threads,
        force,
        preset.image_temperature,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with progress(console, columns=columns) as bar:
        task = bar.add_task(f"study {preset.name}", total=total)

        def report(what: str, units: int) -> None:
            bar.update(task, advance=units, description=f"study {preset.name}: {what}")

        done = runner.run_all(runs, work, report)
    results = {
        "preset": preset.model_dump(mode="json"),
        "task_kinds": {s.name: s.kind for s in specs},
        "runs": {
            r.id: {
                "variant": r.variant.name,
                "role": r.variant.role,
                "seed": r.seed,
                "sweep": r.sweep,
                "sweep_label": r.label,
                "train": study.run(r.id).read_summary(),
                "eval": done[r.id].summaries,
                "analysis": done[r.id].analysis,
            }
            for r in runs
        },
        "comparisons": comparisons(
            preset, runs, {rid: d.scores for rid, d in done.items()}, {s.name: s for s in specs}
        ),
        "transfer": {
            group: transfer(
                {
                    v.name: [
                        (r.seed, done[r.id].scores, done[r.id].labels)
                        for r in runs
                        if r.group == group and r.variant.name == v.name
                    ]
                    for v in preset.variants
                    if not v.contrast and v.role != "control"
                },
                {s.name: s for s in specs},
            )
            for group in sorted({r.group for r in runs})
        },
        "baselines": baselines(runs, specs, out, preset.limit, force=force),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "environment": {**environment(device), "parallel_runs": jobs, "executor": executor},
        "overrides": list(overrides),
    }
    study.write_results(results)
    return results
