"""Run a study: plan its runs (study/plan.py), train and evaluate each on every task through an executor, score
the blind baseline, compare (study/comparisons.py) and write results.json for the report. Finished runs and
scored items are skipped on re-runs."""

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
from unifylab.eval.task_registry import TaskSpec, load_task
from unifylab.layout import StudyFolder
from unifylab.progress import progress
from unifylab.study.comparisons import comparisons
from unifylab.study.execute import Run, Work, carried, train_steps
from unifylab.study.executors import Executor, LocalExecutor, RayExecutor, default_jobs
from unifylab.study.plan import check_runs, check_worlds, finished_only, plan_runs
from unifylab.study.preset import Preset
from unifylab.study.transfer import transfer
from unifylab.train.config import resolve_paths


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
    report_only: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and compare; returns (and writes) results.json's content. `jobs` runs that many trainings
    at once (default: `default_jobs`) on the `executor` ('local', or 'ray' at `ray_address` with `gpus_per_run`
    GPUs each); a run that starts from another waits for it. Work already in `out` is reused only when its
    fingerprint matches; `force` redoes work whose settings changed. `report_only` trains nothing: the study is
    the runs already trained (scored where they are not yet), the others named and left out."""
    console = console or Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = StudyFolder(out)
    vq_folder = study.tokenizers / "vq" if any(v.tokenizer != "grid" for v in preset.variants) else None
    runs = plan_runs(preset, out, seeds, device, list(overrides), vq_folder)
    specs = [load_task(t) for t in preset.tasks]
    check_worlds(runs, specs)
    check_runs(runs, out, force=force)
    if report_only:
        planned = runs
        preset, runs = finished_only(preset, planned, out)
        trained = {r.id for r in runs}
        if left := [r.id for r in planned if r.id not in trained]:
            names = ", ".join(left[:4]) + (" ..." if len(left) > 4 else "")
            console.print(f"--report-only: {len(left)} of {len(planned)} runs are not trained and left out ({names})")
    moved = [r.id for r in runs if carried(study.run(r.id))]
    if moved:
        names = ", ".join(moved[:3]) + (" ..." if len(moved) > 3 else "")
        console.print(f"{len(moved)} finished runs without their weights answer from their records ({names})")
    if vq_folder is not None and not report_only and not (vq_folder / "model.safetensors").is_file():
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
