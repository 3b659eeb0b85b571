"""`unifylab study`: train, evaluate and report a whole study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unifylab.cli.common import _device, _ints, _out, err
from unifylab.config import SEED_MAX
from unifylab.errors import UserError
from unifylab.layout import StudyFolder


def _seeds(text: str) -> list[int]:
    """--seeds: distinct seeds in 0..SEED_MAX (each names run folders)."""
    seeds = list(_ints(text, "--seeds"))
    if bad := [s for s in seeds if not 0 <= s <= SEED_MAX]:
        raise UserError(f"--seeds: seed {bad[0]} is out of range; use seeds 0..{SEED_MAX}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: {text!r} repeats a seed; give each seed once")
    return seeds


def study_cmd(
    preset: Annotated[str, typer.Option(help="quick, standard, scaling, alignment, or a preset YAML file.")] = "quick",
    out: Annotated[Path | None, _out("Study folder (default: study-<preset>); re-running resumes.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the preset's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training key for every run.")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Trainings run at once (default: one per physical CPU core; 1 on a GPU)."),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (this machine) or ray (a Ray cluster; pip install -e '.\\[ray]').")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="ray: the cluster ('auto', ray://host:10001); default RAY_ADDRESS, else local.")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(min=0, help="ray: GPUs per run, fractions share one (default: 1 on cuda, else 0).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Redo runs, scores and analyses in --out whose settings changed (default: refuse)."
        ),
    ] = False,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="Report from the runs already trained: train nothing, name and leave out the runs not finished.",
        ),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(help="A side-by-side preset (claims, worlds): run only these of its studies (comma-separated)."),
    ] = None,
) -> None:
    """Does unification help? Train unified and specialist models, evaluate all tasks, write the report."""
    from unifylab.study.preset import load_preset
    from unifylab.study.report import write_report
    from unifylab.study.report_answer import answer
    from unifylab.study.runner import run_study

    if executor not in ("local", "ray"):
        raise UserError(f"--executor: unknown executor {executor!r}; expected local or ray")
    if executor != "ray" and (ray_address is not None or gpus_per_run is not None):
        raise UserError("--ray-address and --gpus-per-run need --executor ray")
    p = load_preset(preset)
    folder = out or Path(f"study-{p.name}")
    how = {
        "seeds": _seeds(seeds) if seeds else None,
        "device": _device(device),
        "overrides": set_ or [],
        "console": err,
        "jobs": jobs,
        "executor": executor,
        "ray_address": ray_address,
        "gpus_per_run": gpus_per_run,
        "force": force,
        "report_only": report_only,
    }
    if only is not None and not p.studies:
        raise UserError(f"--only: preset {p.name} runs no studies of its own; drop --only")
    if p.studies:
        from unifylab.study.claims_report import verdict_lines
        from unifylab.study.side_by_side import run_side_by_side, side_by_side_lines

        with StudyFolder(folder).lock(force=force):
            combined = run_side_by_side(p, folder, only=[x.strip() for x in only.split(",")] if only else None, **how)
        lines = verdict_lines(combined["claims"]) if combined.get("claims") else side_by_side_lines(combined)
        for line in lines:
            err.print(line)
        err.print(f"report: {StudyFolder(folder).report_html} ({combined['wall_seconds']:.0f} s)")
        return
    with StudyFolder(folder).lock(force=force):
        results = run_study(p, folder, **how)
        md, html_path = write_report(folder, results)
    for line in answer(results):
        err.print(line)
    err.print(f"report: {html_path} and {md} ({results['wall_seconds']:.0f} s)")
