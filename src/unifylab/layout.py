"""The output folders a user gets (a training run, an evaluation, a study), each owned by one small typed object
that knows its files. Every owner writes atomically (temp file, fsync, rename), reads its append-only logs
tolerantly (a torn last line is what a crash leaves), locks the folder against a second writer, and keeps the
fingerprint of what made its contents, so work is reused only under an equal fingerprint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from unifylab.config import first_diff
from unifylab.errors import UserError
from unifylab.io import folder_lock, read_json, read_jsonl_tolerant, write_jsonl, write_text_atomic

CHECKPOINTS = "checkpoints"  # a run's checkpoint folders (train/checkpoint.py)


@contextmanager
def _owned(folder: Path, what: str, swept: list[Path]) -> Iterator[None]:
    """Hold `folder`'s lock; then, as no other writer can be at work, remove the temp files and folders that an
    atomic write killed mid-way left in `swept` (`.<name>.<random>.tmp`)."""
    with folder_lock(folder, what):
        for p in (p for f in swept if f.is_dir() for p in f.glob(".*.tmp")):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        yield


def write_json(path: Path, obj: Any) -> None:
    """Replace `path` with `obj` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def check_fingerprint(file: Path, stamp: dict[str, Any], what: str, *, made: bool, force: bool) -> bool:
    """True when results that `made` under `file`'s stamp may be reused (the stamp is `stamp`). Results made under
    another stamp, or none (an older unifylab), are refused with the changed field named, unless `force`; then (or
    when nothing was made yet) the new stamp is written and False returned: the caller (re)computes."""
    try:
        old = json.loads(file.read_text()) if file.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = "an unreadable fingerprint file"
    if old == stamp:
        return True
    if made and not force:
        why = first_diff(old, stamp) if old is not None else "no fingerprint: made by an older unifylab"
        raise UserError(
            f"{file.parent}: {what} were made under other settings ({why}); re-run with --force to "
            "recompute them, or choose another --out"
        )
    write_text_atomic(file, json.dumps(stamp) + "\n")
    return False


@dataclass(frozen=True)
class RunFolder:
    """A training run (`unifylab train --out RUN`): config.yaml (its fingerprint: a resume needs the same config),
    metrics.jsonl (one line per step, appended), checkpoints/, and at the end the weights, tokenizers and
    summary.json."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def finished(self) -> bool:
        return self.summary_file.is_file()

    def lock(self) -> AbstractContextManager[None]:
        return _owned(self.path, "this run folder", [self.path, self.checkpoints])

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config, text)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The step log, without a torn last line."""
        return read_jsonl_tolerant(self.metrics) if self.metrics.is_file() else []

    def start_metrics(self, step: int) -> None:
        """Keep only the log lines of steps up to `step` (the checkpoint a run resumes from; 0: a new log), so the
        log equals an uninterrupted run's."""
        write_jsonl(self.metrics, [r for r in self.read_metrics() if r.get("step", 0) <= step] if step else [])

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary_file)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_file, summary)


@dataclass(frozen=True)
class EvalFolder:
    """An evaluation (`unifylab eval --out DIR`): per task `<task>.jsonl` (one record per item, appended as items are
    scored), `<task>.fingerprint.json` (the model and task they were made by), `<task>/` (generated images), and
    results.json (the summary table)."""

    path: Path

    def records(self, task: str) -> Path:
        return self.path / f"{task}.jsonl"

    def stamp(self, task: str) -> Path:
        return self.path / f"{task}.fingerprint.json"

    def images(self, task: str) -> Path:
        return self.path / task

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    def lock(self) -> AbstractContextManager[None]:
        return _owned(self.path, "this eval folder", [self.path])

    def reusable(self, task: str, stamp: dict[str, Any], *, force: bool) -> bool:
        """Whether the task's records were made under `stamp` (else refused, or with `force` forgotten)."""
        self.path.mkdir(parents=True, exist_ok=True)
        ok = check_fingerprint(
            self.stamp(task), stamp, f"the {task} records", made=self.records(task).is_file(), force=force
        )
        if not ok:
            self.forget(task)
        return ok

    def forget(self, task: str) -> None:
        """Remove the task's records and images (its fingerprint stays: it names what comes next)."""
        self.records(task).unlink(missing_ok=True)
        shutil.rmtree(self.images(task), ignore_errors=True)

    def read_records(self, task: str) -> dict[str, dict[str, Any]]:
        """Records already written, by id, without a torn last line (what an interrupted run leaves). A line this
        program did not write is an error naming it."""
        path = self.records(task)
        if not path.is_file():
            return {}
        rows = read_jsonl_tolerant(path)
        for n, rec in enumerate(rows, 1):
            if not (isinstance(rec, dict) and isinstance(rec.get("id"), str) and "score" in rec):
                raise UserError(
                    f"{path}: record {n} is not one this program wrote (no 'id' and 'score'); move the "
                    "file away, or re-run with --force to score the task again"
                )
        return {rec["id"]: rec for rec in rows}

    def resume_records(self, task: str) -> dict[str, dict[str, Any]]:
        """`read_records`, ready for appending: a file with a torn last line (or a repeated id) is rewritten
        atomically without it; a whole one is left as it is."""
        out = self.read_records(task)
        path = self.records(task)
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if text and (not text.endswith("\n") or text.count("\n") != len(out)):
                write_jsonl(path, out.values())
        return out

    @contextmanager
    def appending(self, task: str) -> Iterator[IO[str]]:
        """The task's record file opened for appending one JSON line per record."""
        with open(self.records(task), "a", encoding="utf-8") as f:
            yield f

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.results, results)


@dataclass(frozen=True)
class StudyFolder:
    """A study (`unifylab study --out DIR`): runs/<run>/ (RunFolder), eval/<run>/ (EvalFolder), analysis/<run>.json
    (+ its fingerprint), baselines/, tokenizers/, results.json, report.md with figures/, and report.html."""

    path: Path

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.path / "runs" / run_id)

    def eval(self, run_id: str) -> EvalFolder:
        return EvalFolder(self.path / "eval" / run_id)

    def analysis(self, run_id: str) -> Path:
        return self.path / "analysis" / f"{run_id}.json"

    def analysis_stamp(self, run_id: str) -> Path:
        return self.analysis(run_id).with_suffix(".fingerprint.json")

    def baseline(self, name: str) -> EvalFolder:
        return EvalFolder(self.path / "baselines" / name)

    @property
    def tokenizers(self) -> Path:
        return self.path / "tokenizers"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    def lock(self) -> AbstractContextManager[None]:
        """The study's lock; its runs are locked by their trainers, which sweep their own folders."""
        evals = [*(self.path / "eval").glob("*"), *(self.path / "baselines").glob("*")]
        return _owned(self.path, "this study folder", [self.path, self.path / "analysis", *evals])

    def forget_run(self, run_id: str) -> None:
        """Remove a run with everything made from it (its scores and analyses)."""
        shutil.rmtree(self.run(run_id).path, ignore_errors=True)
        shutil.rmtree(self.eval(run_id).path, ignore_errors=True)
        self.analysis(run_id).unlink(missing_ok=True)
        self.analysis_stamp(run_id).unlink(missing_ok=True)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.results, results)
