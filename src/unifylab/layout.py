"""The output folders a user gets (a training run, an evaluation, a study, an analysis, a world sample), each owned
by one small typed object that knows its files. Every owner writes atomically (temp file, fsync, rename), reads its
append-only logs tolerantly (a torn last line is what a crash leaves), locks the folder against a second writer,
stamps it as its own (so no other kind of owner, nor an eval of another model, writes into it), and keeps the
fingerprint of what made its contents, so work is reused only under an equal fingerprint."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

from unifylab.config import first_diff
from unifylab.errors import UserError
from unifylab.io import folder_lock, open_append, read_json, read_jsonl_tolerant, write_jsonl, write_text_atomic

CHECKPOINTS = "checkpoints"  # a run's checkpoint folders (train/checkpoint.py)
OWNER = ".unifylab-owner.json"  # which owner (kind, and for an eval folder its model) a folder belongs to


def _read_owner(file: Path) -> dict[str, Any] | None:
    """A folder's owner stamp (None when it has none); a file there that this program did not write is refused."""
    if not (file.exists() or file.is_symlink()):
        return None
    try:
        stamp = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = None
    if not (isinstance(stamp, dict) and isinstance(stamp.get("kind"), str)):
        raise UserError(f"{file}: not an owner stamp this program wrote; move it away, or choose another --out")
    return stamp


def _claim(folder: Path, kind: str, mine: tuple[str, ...], identity: dict[str, Any] | None, force: bool) -> None:
    """Make `folder` this owner's, or refuse it with one line: a folder another kind of owner stamped; one an eval
    of another model (`identity`) stamped, unless `force`; an unstamped one holding files named like this owner's
    (`mine`: patterns) that it did not make, unless `force` (then they are overwritten); and any folder holding a
    symbolic link (this program never writes through one)."""
    what = f"this {kind} folder"
    old = _read_owner(folder / OWNER)
    if old is not None and old["kind"] != kind:
        raise UserError(
            f"{folder}: a unifylab {old['kind']} folder (see its {OWNER}), not {what}; choose another --out"
        )
    held = {k: v for k, v in (old or {}).items() if k != "kind"}
    if old is not None and identity is not None and held and held != identity and not force:
        raise UserError(
            f"{folder}: holds the outputs of another model ({first_diff(held, identity)}); choose another --out, "
            "or re-run with --force to score this model there instead"
        )
    if old is None and not force:
        foreign = sorted(
            p.name for p in folder.iterdir() if not p.name.startswith(".") and any(fnmatch(p.name, m) for m in mine)
        )
        if foreign:
            listed = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise UserError(
                f"{folder}: holds {listed}, not made by {what} (it has no {OWNER}); choose another --out, or "
                "re-run with --force to overwrite them"
            )
    for root, dirs, files in os.walk(folder):
        link = next((Path(root, n) for n in (*dirs, *files) if os.path.islink(os.path.join(root, n))), None)
        if link is not None:
            raise UserError(
                f"{link}: a symbolic link inside {what}; this program never writes through links: replace it by "
                "what it points to, or choose another --out"
            )
    if old is None or (identity is not None and held != identity):
        write_text_atomic(folder / OWNER, json.dumps({"kind": kind, **(identity or {})}) + "\n")


@contextmanager
def _owned(
    folder: Path,
    kind: str,
    swept: list[Path],
    *,
    mine: tuple[str, ...] = (),
    identity: dict[str, Any] | None = None,
    force: bool = False,
) -> Iterator[None]:
    """Hold `folder`'s lock and claim it for this `kind` of owner (`_claim`); then, as no other writer can be at
    work, remove the temp files and folders that an atomic write killed mid-way left in `swept`
    (`.<name>.<random>.tmp`)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"{folder}: already exists as a file (a file stands where a folder is needed); choose another --out"
        )
    with folder_lock(folder, f"this {kind} folder"):
        _claim(folder, kind, mine, identity, force)
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
        old = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    except (ValueError, RecursionError):  # malformed JSON, not UTF-8, nested too deeply
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
        """The run's lock and stamp; any unstamped folder is taken (the trainer checks its config.yaml first)."""
        return _owned(self.path, "run", [self.path, self.checkpoints])

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
        with open_append(self.metrics) as f:
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

    def stamps(self) -> list[Path]:
        """Every task's fingerprint file, in name order."""
        return sorted(self.path.glob("*.fingerprint.json"))

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    def lock(self, model: dict[str, Any] | None = None, *, force: bool = False) -> AbstractContextManager[None]:
        """The eval's lock and stamp, naming `model` (its identity: where it lives and its weights); a folder of
        another model, or an unstamped one holding anything, is refused unless `force`."""
        return _owned(self.path, "eval", [self.path], mine=("*",), identity=model, force=force)

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
        with open_append(self.records(task)) as f:
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

    def finished_runs(self) -> list[str]:
        """Ids of the runs here that finished training (none when the folder does not exist)."""
        runs = self.path / "runs"
        return sorted(p.name for p in runs.iterdir() if RunFolder(p).finished) if runs.is_dir() else []

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

    def lock(self, *, force: bool = False) -> AbstractContextManager[None]:
        """The study's lock and stamp (an unstamped folder holding a results.json, report or figures it did not
        make is refused unless `force`); its runs are locked by their trainers, which sweep their own folders."""
        evals = [*(self.path / "eval").glob("*"), *(self.path / "baselines").glob("*")]
        mine = ("results.json", "report.md", "report.html", "figures", "analysis", "tokenizers")
        return _owned(self.path, "study", [self.path, self.path / "analysis", *evals], mine=mine, force=force)

    def forget_run(self, run_id: str) -> None:
        """Remove a run with everything made from it (its scores and analyses)."""
        shutil.rmtree(self.run(run_id).path, ignore_errors=True)
        shutil.rmtree(self.eval(run_id).path, ignore_errors=True)
        self.analysis(run_id).unlink(missing_ok=True)
        self.analysis_stamp(run_id).unlink(missing_ok=True)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.results, results)


@dataclass(frozen=True)
class AnalysisFolder:
    """An analysis (`unifylab analyze KIND --out DIR`): per kind `<kind>.jsonl` and `<kind>.png`, and
    states/<model>/<und|gen>/ (saved states)."""

    path: Path

    def rows(self, kind: str) -> Path:
        return self.path / f"{kind}.jsonl"

    def plot(self, kind: str) -> Path:
        return self.path / f"{kind}.png"

    def states(self, model: str, form: str) -> Path:
        return self.path / "states" / model / form

    def lock(self) -> AbstractContextManager[None]:
        """The analysis' lock and stamp; any unstamped folder is taken (each analysis refuses to overwrite its own
        files there without --force)."""
        return _owned(self.path, "analysis", [self.path])


@dataclass(frozen=True)
class SampleFolder:
    """A world sample (`unifylab world sample --out DIR`): world.json (the options: its fingerprint, written first),
    images/000000.png ... (each written whole, so a killed sample resumes) and scenes.jsonl (written last)."""

    path: Path

    @property
    def world(self) -> Path:
        return self.path / "world.json"

    @property
    def images(self) -> Path:
        return self.path / "images"

    @property
    def scenes(self) -> Path:
        return self.path / "scenes.jsonl"

    def image(self, i: int) -> Path:
        return self.images / f"{i:06d}.png"

    def lock(self, *, force: bool = False) -> AbstractContextManager[None]:
        """The sample's lock and stamp (an unstamped folder holding a sample it did not make is refused unless
        `force`)."""
        mine = ("world.json", "images", "scenes.jsonl")
        return _owned(self.path, "world sample", [self.path, self.images], mine=mine, force=force)

    def reusable(self, info: dict[str, Any], *, force: bool) -> bool:
        """Whether the images already here were drawn with the options `info` (else refused, or with `force`
        removed)."""
        made = self.images.is_dir() or self.scenes.is_file()
        ok = check_fingerprint(self.world, info, "the images", made=made, force=force)
        if not ok:
            self.scenes.unlink(missing_ok=True)
            shutil.rmtree(self.images, ignore_errors=True)
        return ok
