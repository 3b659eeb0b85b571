"""The folder owners (unifylab.layout): atomic writes, tolerant reads, locks, fingerprints, leftovers swept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unifylab.errors import UserError
from unifylab.layout import EvalFolder, RunFolder, StudyFolder


def test_run_folder_log_survives_a_torn_line_and_restarts_at_a_checkpoint(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.start_metrics(0)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": 1.0 / step})
    with open(run.metrics, "a") as f:
        f.write('{"step": 4, "lo')  # what a kill mid-write leaves
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    run.start_metrics(2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert not run.finished
    run.write_summary({"steps": 2})
    assert run.finished and run.read_summary() == {"steps": 2}


def test_eval_folder_reuses_only_under_the_same_fingerprint(tmp_path: Path) -> None:
    ev = EvalFolder(tmp_path / "eval")
    assert not ev.reusable("vqa", {"model": "a"}, force=False)  # nothing made yet: the stamp is written
    with ev.appending("vqa") as f:
        f.write(json.dumps({"id": "vqa-0", "score": 1.0}) + "\n")
    ev.images("vqa").mkdir()
    (ev.images("vqa") / "x.png").write_bytes(b"png")
    assert ev.reusable("vqa", {"model": "a"}, force=False)
    with pytest.raises(UserError, match=r"model: 'a' there, 'b' now.*--force"):
        ev.reusable("vqa", {"model": "b"}, force=False)
    assert ev.records("vqa").is_file()  # refused: nothing removed
    assert not ev.reusable("vqa", {"model": "b"}, force=True)
    assert not ev.records("vqa").exists() and not ev.images("vqa").exists()
    assert json.loads(ev.stamp("vqa").read_text()) == {"model": "b"}


def test_eval_records_read_without_writing_and_resume_drops_a_torn_line(tmp_path: Path) -> None:
    ev = EvalFolder(tmp_path)
    torn = '{"id": "t-0", "score": 1.0}\n{"id": "t-1", "sc'
    ev.records("t").write_text(torn)
    assert list(ev.read_records("t")) == ["t-0"]
    assert ev.records("t").read_text() == torn  # a read (the report's) leaves the file as it is
    assert list(ev.resume_records("t")) == ["t-0"]
    assert ev.records("t").read_text() == '{"id": "t-0", "score": 1.0}\n'
    inode = ev.records("t").stat().st_ino
    assert list(ev.resume_records("t")) == ["t-0"] and ev.records("t").stat().st_ino == inode  # whole: untouched
    ev.records("t").write_text('{"step": 1}\n')
    with pytest.raises(UserError, match="not one this program wrote"):
        ev.read_records("t")


def test_a_lock_refuses_a_second_holder_and_sweeps_temp_leftovers(tmp_path: Path) -> None:
    study = StudyFolder(tmp_path / "study")
    ev = study.eval("shared-s0")
    ev.path.mkdir(parents=True)
    (ev.path / ".vqa.jsonl.abc123.tmp").write_text("half a rewrite")  # a kill -9 inside an atomic write
    (study.path / ".results.json.x.tmp").write_text("{")
    (study.path / "notes.txt").write_text("mine")
    with study.lock():
        assert not (ev.path / ".vqa.jsonl.abc123.tmp").exists()
        assert not (study.path / ".results.json.x.tmp").exists()
        assert (study.path / "notes.txt").read_text() == "mine"
        with pytest.raises(UserError, match="in use by process"):
            with study.lock():
                pass


def test_forgetting_a_run_removes_what_was_made_from_it_only(tmp_path: Path) -> None:
    study = StudyFolder(tmp_path)
    for rid in ("a-s0", "b-s0"):
        study.run(rid).path.mkdir(parents=True)
        study.eval(rid).path.mkdir(parents=True)
        study.analysis(rid).parent.mkdir(exist_ok=True)
        study.analysis(rid).write_text("{}")
        study.analysis_stamp(rid).write_text("{}")
    study.forget_run("a-s0")
    assert not any(
        p.exists()
        for p in (study.run("a-s0").path, study.eval("a-s0").path, study.analysis("a-s0"), study.analysis_stamp("a-s0"))
    )
    assert all(
        p.exists()
        for p in (study.run("b-s0").path, study.eval("b-s0").path, study.analysis("b-s0"), study.analysis_stamp("b-s0"))
    )
