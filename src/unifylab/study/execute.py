"""One run of a study, wherever it executes: what it is (`Run`), what every run does after training (`Work`), and
`train_and_eval`, which trains it (resuming), scores it on the study's tasks and looks inside it, every result
written to the study folder first, so a run can execute in any process or on any machine that mounts the folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from unifylab.eval.harness import run_task, split_of, summarise
from unifylab.eval.task_registry import TaskSpec
from unifylab.io import read_json
from unifylab.layout import RunFolder, StudyFolder, check_fingerprint, write_json
from unifylab.runtime import single_thread_blas
from unifylab.study.preset import Variant
from unifylab.study.transfer import Labels, item_labels
from unifylab.train.config import TrainConfig
from unifylab.train.data import Plan


@dataclass
class Run:
    id: str
    variant: Variant
    seed: int
    sweep: Any
    cfg: TrainConfig
    label: str | None = None  # the sweep value's name

    @property
    def group(self) -> str:
        """Runs compared with each other share a group (one per sweep value)."""
        return "all" if self.label is None else self.label


@dataclass
class RunResult:
    """What a run brings back: item scores and summaries per task, and the analyses' rows per analysis."""

    scores: dict[str, dict[str, float]]
    summaries: dict[str, Any]
    analysis: dict[str, list[dict[str, Any]]]
    labels: Labels  # per task and item: its split against the run's training data, and its cluster


@dataclass(frozen=True)
class Work:
    """What each run of a study does after training, the same for every run: the study folder, the device, the
    tasks (at most `limit` items each), the analyses (kinds, items), torch threads per run (0: as they are),
    whether to redo what changed, and the image sampling temperature (0: greedy)."""

    out: Path
    device: str
    specs: list[TaskSpec]
    limit: int | None
    analyses: tuple[list[str], int] = ([], 0)
    threads: int = 0
    force: bool = False
    temperature: float = 0.0


def train_steps(run: Run) -> int:
    return (
        Plan(run.cfg).stream()[1]
        if run.cfg.data.budget != "equal-compute" or run.cfg.data.mode == "unified"
        else run.cfg.optim.steps
    )


def train_examples(run: Run) -> int:
    """Examples a run trains on (equal-compute: about the unified run's number), the cost that orders the pool."""
    if run.cfg.data.budget == "equal-compute" and run.cfg.data.mode != "unified":
        return run.cfg.optim.steps * run.cfg.optim.batch
    return int((Plan(run.cfg).stream()[0] >= 0).sum())


ANALYSIS_ROWS = 2  # the analyses' row format (2: per-item values for the claims' intervals); older caches redo


def _analyses(
    run: Run, model: Any, out: Path, kinds: list[str], n: int, force: bool
) -> dict[str, list[dict[str, Any]]]:
    """Each analysis of a run (cached in DIR/analysis/<run>.json with its fingerprint, so re-runs skip it)."""
    from unifylab.analysis.run import analyze

    study = StudyFolder(out)
    path = study.analysis(run.id)
    stamp = {"weights": model.fingerprint["weights"], "n": n, "rows": ANALYSIS_ROWS}
    old = read_json(study.analysis_stamp(run.id)) if study.analysis_stamp(run.id).is_file() else None
    if isinstance(old, dict) and old.get("rows") != ANALYSIS_ROWS and {**old, "rows": ANALYSIS_ROWS} == stamp:
        path.unlink(missing_ok=True)  # rows of an older format, same model: recomputed without asking
    fresh = not check_fingerprint(study.analysis_stamp(run.id), stamp, "the analyses", made=path.is_file(), force=force)
    done = read_json(path) if path.is_file() and not fresh else {}
    for kind in kinds:
        if kind not in done:
            done[kind] = analyze(
                kind,
                model,
                study.run(run.id).path,
                run.cfg.world,
                n=n,
                k=10,
                alpha=1.01,
                examples=min(n, 64),
                seed=0,
                batch=64,
            )
            write_json(path, done)
    return {k: done[k] for k in kinds}


def carried(folder: RunFolder) -> bool:
    """A finished run copied without its weights (a study moved between machines): it answers from its records."""
    from unifylab.models.hub import WEIGHTS

    return folder.finished and not (folder.path / WEIGHTS).is_file()


def train_and_eval(run: Run, work: Work, report: Callable[[str, int], None]) -> RunResult:
    """Train one run (unless finished), score it on every task and look inside it; `report(what, units)` feeds the
    progress bar. A finished run copied without its weights answers from its records (`CarriedRun`)."""
    from unifylab.eval.carried import CarriedRun
    from unifylab.eval.native import NativeModel
    from unifylab.train.loop import Trainer

    single_thread_blas()
    if work.threads:
        torch.set_num_threads(work.threads)
    study = StudyFolder(work.out)
    run_dir = study.run(run.id)
    steps = train_steps(run)
    if not run_dir.finished:
        report(f"training {run.id}", 0)
        last = [0]

        def step(k: int, n: int) -> None:
            report(f"training {run.id}", k - last[0])
            last[0] = k

        Trainer(
            run.cfg, run_dir.path, Console(stderr=True, quiet=True), progress=False, on_step=step, root=study.path
        ).fit()
        report(f"evaluating {run.id}", steps - last[0])
    else:
        report(f"evaluating {run.id}", steps)
    model = (
        CarriedRun(run_dir.path, study.eval(run.id).path, temperature=work.temperature)
        if carried(run_dir)
        else NativeModel(run_dir.path, work.device, temperature=work.temperature)
    )
    scores, summaries, labels = {}, {}, {}
    for spec in run.variant.scored_on(work.specs):
        recs = run_task(
            model,
            spec,
            study.eval(run.id).path,
            limit=work.limit,
            progress=lambda k: report(f"evaluating {run.id}", k),
            force=work.force,
        )
        scores[spec.name] = {rec["id"]: rec["score"] for rec in recs}
        split = {r["id"]: split_of(r, spec, run.cfg.data) for r in recs}
        summaries[spec.name] = summarise(spec, recs, run.cfg.data, splits=split)
        labels[spec.name] = item_labels(recs, split)
    inside = {}
    if work.analyses[0] and not run.variant.contrast:  # the budget contrasts only feed the budget table
        report(f"analysing {run.id}", 0)
        inside = _analyses(run, model, work.out, *work.analyses, work.force)
    return RunResult(scores, summaries, inside, labels)
