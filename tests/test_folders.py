"""Folders have owners (issue 31, item 6): no write goes through a symbolic link, every owner refuses a folder that
is another's, and a fault mid-write leaves every earlier file whole and the command resumable. Each case is one
`error:` line with exit code 2 and changes nothing it did not own."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from test_faults import TINY, _fill, _snapshot, tmpfs  # noqa: F401 (tmpfs: a fixture used by name)

from unifylab.io import LOCK

Cli = Callable[..., tuple[int, str, str]]
FIXTURE = Path(__file__).parent / "fixtures" / "realunify" / "realunify_small.json"
SCENE = {"world": "shapes", "size": 32, "grid": 3, "objects": [{"shape": "circle", "color": "red", "row": 0, "col": 2}]}
TOKENIZER = ("tokenizer", "train-text", "--n-scenes", "40", "--vocab-size", "300")


def _one_error(code: int, err: str, *needles: str) -> None:
    assert code == 2 and err.count("error:") == 1 and all(n in err for n in needles), err


@contextmanager
def _busy(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock as another process's writer would (pid 4242)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:
        os.close(fd)


def _mini_study(tmp: Path) -> Path:
    """The quick preset cut to two runs (unified, understanding-only) of two steps, scored on two vqa items."""
    from test_study import _tiny

    path = _tiny("quick", tmp, tasks=["vqa"], analyses=[], limit=2)
    raw = yaml.safe_load(path.read_text())
    raw["variants"] = [v for v in raw["variants"] if v["name"] in ("shared", "und-only")]
    raw["base"]["optim"]["steps"] = 2
    path.write_text(yaml.safe_dump(raw))
    return path


def _unlocked(snapshot: Path | dict[str, bytes]) -> dict[str, bytes]:
    """A folder's files (or a snapshot of them) but the lock files, which a refused command may leave."""
    files = _snapshot(snapshot) if isinstance(snapshot, Path) else snapshot
    return {k: v for k, v in files.items() if Path(k).name != LOCK}


def _train(cli: Cli, out: Path) -> Path:
    code, _, err = cli("train", "--out", out, "--quiet", "--set", "optim.steps=2", *TINY)
    assert code == 0, err
    return out


# ---------------------------------------------------------------------------------------------- symbolic links


def test_render_force_onto_a_link_replaces_the_link_not_its_target(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "scene.json").write_text(json.dumps(SCENE))
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "out.png").symlink_to(tmp_path / "victim.txt")
    code, _, err = cli("world", "render", tmp_path / "scene.json", "--out", tmp_path / "out.png")
    _one_error(code, err, "out.png", "--force")
    assert cli("world", "render", tmp_path / "scene.json", "--out", tmp_path / "out.png", "--force")[0] == 0
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert not (tmp_path / "out.png").is_symlink() and (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_a_folder_output_over_a_link_replaces_the_link_not_its_target(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "notes.txt").write_text("precious")
    (tmp_path / "tok").symlink_to(tmp_path / "victim")
    assert cli(*TOKENIZER, "--out", tmp_path / "tok", "--force")[0] == 0
    assert (tmp_path / "victim" / "notes.txt").read_text() == "precious" and len(
        list((tmp_path / "victim").iterdir())
    ) == 1
    assert not (tmp_path / "tok").is_symlink() and (tmp_path / "tok" / "tokenizer.json").is_file()


@pytest.mark.parametrize("linked", ["t2i", "vqa.jsonl"])
def test_a_link_inside_an_eval_folder_is_refused(cli: Cli, tmp_path: Path, linked: str) -> None:
    out, elsewhere = tmp_path / "ev", tmp_path / "elsewhere"
    assert cli("eval", "random", "--tasks", "vqa,t2i", "--limit", "2", "--out", out)[0] == 0
    (out / linked).rename(elsewhere)
    (out / linked).symlink_to(elsewhere)
    before = _snapshot(tmp_path)
    code, _, err = cli("eval", "random", "--tasks", "vqa,t2i", "--limit", "4", "--out", out)
    _one_error(code, err, str(out / linked), "symbolic link")
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------- folder ownership


@pytest.mark.parametrize(
    "args",
    [("world", "sample", "--n", "2"), ("analyze", "entropy", "oracle"), ("eval", "random", "--tasks", "vqa")],
)
def test_a_second_writer_is_refused_by_every_owner(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "busy"
    with _busy(out):
        before = _snapshot(tmp_path)
        code, _, err = cli(*args, "--out", out)
        _one_error(code, err, "in use by process 4242")
        assert _snapshot(tmp_path) == before


def test_an_eval_folder_belongs_to_one_model(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "2", "--out", out)[0] == 0
    (out / "results.json").unlink()  # partial: killed before its summary
    before = _snapshot(out)
    code, _, err = cli("eval", "oracle", "--tasks", "t2i", "--limit", "2", "--out", out)
    _one_error(code, err, str(out), "another model", "'random' there, 'oracle' now", "--force")
    assert _snapshot(out) == before
    assert cli("eval", "oracle", "--tasks", "t2i", "--limit", "2", "--out", out, "--force")[0] == 0
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "2", "--out", out, "--force")[0] == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "random" and set(results["tasks"]) == {"vqa"}  # no summary of the model before


def test_runs_that_share_a_folder_name_are_different_models(cli: Cli, tmp_path: Path) -> None:
    a, b = _train(cli, tmp_path / "a" / "run"), _train(cli, tmp_path / "b" / "run")
    out = tmp_path / "ev"
    assert cli("eval", a, "--tasks", "vqa", "--limit", "2", "--out", out)[0] == 0
    before = _snapshot(out)
    code, _, err = cli("eval", b, "--tasks", "caption", "--limit", "2", "--out", out)
    _one_error(code, err, "another model", str(a.resolve()), str(b.resolve()))
    assert _snapshot(out) == before
    code, _, err = cli("eval", "random", "--tasks", "vqa", "--limit", "2", "--out", a)  # a run folder is no eval's
    _one_error(code, err, f"{a}: a unifylab run folder", "choose another --out")


def test_a_study_refuses_an_eval_folder_and_files_it_did_not_make(cli: Cli, tmp_path: Path) -> None:
    ev, mine = tmp_path / "ev", tmp_path / "mine"
    study = ("study", "--preset", _mini_study(tmp_path), "--device", "cpu", "--jobs", "1")
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "2", "--out", ev)[0] == 0
    mine.mkdir()
    (mine / "results.json").write_text('{"my": "results"}')
    (mine / "report.html").write_text("<p>my report</p>")
    before = _snapshot(tmp_path)
    code, _, err = cli(*study, "--out", ev)
    _one_error(code, err, f"{ev}: a unifylab eval folder", "not this study folder")
    code, _, err = cli(*study, "--out", mine)
    _one_error(code, err, str(mine), "report.html, results.json", "--force")
    assert _unlocked(tmp_path) == _unlocked(before)


# ---------------------------------------------------------------------------------------------- faults mid-write


def test_a_full_disk_leaves_an_old_png_whole_and_no_empty_new_one(cli: Cli, tmpfs: Path) -> None:  # noqa: F811
    (tmpfs / "scene.json").write_text(json.dumps(SCENE))
    assert cli("world", "render", tmpfs / "scene.json", "--out", tmpfs / "old.png")[0] == 0
    old = (tmpfs / "old.png").read_bytes()
    _fill(tmpfs)
    for name, force in (("old.png", ("--force",)), ("new.png", ())):
        code, _, err = cli("world", "render", tmpfs / "scene.json", "--noise", "9", "--out", tmpfs / name, *force)
        _one_error(code, err, str(tmpfs / name), "No space left on device")
    assert (tmpfs / "old.png").read_bytes() == old and not (tmpfs / "new.png").exists()
    assert not list(tmpfs.glob(".*.tmp"))


def test_a_full_disk_under_a_text_tokenizer_is_one_error(cli: Cli, tmpfs: Path) -> None:  # noqa: F811
    _fill(tmpfs)
    code, _, err = cli(*TOKENIZER, "--out", tmpfs / "tok")
    _one_error(code, err, "No space left on device")
    assert not (tmpfs / "tok").exists() and not list(tmpfs.glob(".tok.*"))


def test_a_model_folder_rewritten_on_a_full_disk_stays_whole(cli: Cli, tmpfs: Path) -> None:  # noqa: F811
    from unifylab.models.hub import from_pretrained, save_pretrained
    from unifylab.models.unified import UnifiedTransformer

    run = _train(cli, tmpfs / "run")
    model, before = from_pretrained(run), _snapshot(run)
    deeper = UnifiedTransformer(model.cfg.model_copy(update={"layers": 3}))
    _fill(tmpfs)
    with pytest.raises(OSError) as e:  # the disk fills while a bigger model replaces it
        save_pretrained(deeper, run)
    assert e.value.errno == errno.ENOSPC
    assert _snapshot(run) == before and from_pretrained(run).cfg == model.cfg  # config.json and weights still agree


def test_a_killed_folder_write_is_swept_by_the_next_one(cli: Cli, tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tok.{int(gone.stdout)}.k1lled.tmp"  # what `kill -9` inside atomic_folder leaves
    live = tmp_path / f".tok.{os.getpid()}.writing.tmp"  # a writer still at work
    other = tmp_path / f".tok.v2.{int(gone.stdout)}.x.tmp"  # another target's
    for p in (stale, live, other):
        p.mkdir()
        (p / "tokenizer.json").write_text("half")
    assert cli(*TOKENIZER, "--out", tmp_path / "tok")[0] == 0
    assert not stale.exists() and live.exists() and other.exists()


def test_a_killed_world_sample_resumes_and_other_options_are_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unifylab.data import folder

    args = ("world", "sample", "--n", "5", "--seed", "3", "--noise", "8")
    real, written = folder.save_png, []

    def killed_at_the_third(path: Path, image: object) -> None:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real(path, image)

    monkeypatch.setattr(folder, "save_png", killed_at_the_third)
    assert cli(*args, "--out", tmp_path / "a")[0] == 130
    monkeypatch.undo()
    assert len(list((tmp_path / "a" / "images").iterdir())) == 3 and not (tmp_path / "a" / "scenes.jsonl").exists()
    before = _snapshot(tmp_path / "a")
    code, _, err = cli(*args[:-1], "9", "--out", tmp_path / "a")
    _one_error(code, err, str(tmp_path / "a"), "noise: 8.0 there, 9.0 now", "--force")
    assert _snapshot(tmp_path / "a") == before
    assert cli(*args, "--out", tmp_path / "a")[0] == 0
    assert cli(*args, "--out", tmp_path / "b")[0] == 0
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")  # the resumed sample is the uninterrupted one


def test_a_killed_realunify_resumes_with_the_same_command(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unifylab.eval import realunify

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    command = ("score", "realunify", "--data", FIXTURE, "--model", "random", "--out", tmp_path / "r")
    monkeypatch.setattr(realunify, "summarise_realunify", killed)
    assert cli(*command)[0] == 130
    monkeypatch.undo()
    code, _, err = cli(*command)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "results.json").read_text())["overall"]["n"] == 6


def test_a_report_that_cannot_be_written_is_one_error_naming_it(cli: Cli, tmp_path: Path) -> None:
    out, study = tmp_path / "study", ("study", "--preset", _mini_study(tmp_path), "--device", "cpu", "--jobs", "1")
    assert cli(*study, "--out", out)[0] == 0
    (out / "report.html").unlink()
    (out / "report.html").mkdir()  # where the report should go, something it cannot replace
    code, _, err = cli(*study, "--out", out)
    _one_error(code, err, f"{out / 'report.html'}: Is a directory")
    assert ".tmp" not in err and not list(out.glob(".*.tmp")) and (out / "report.md").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ("world", "sample", "--n", "2"),
        ("world", "render", "{tmp}/scene.json"),
        ("eval", "random", "--tasks", "vqa", "--limit", "2"),
        (*TOKENIZER,),
        ("data", "geneval", "--n-per-task", "1"),
    ],
)
def test_an_empty_out_is_refused_not_the_working_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    (tmp_path / "scene.json").write_text(json.dumps(SCENE))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    code, _, err = cli(*(a.format(tmp=tmp_path) for a in args), "--out", "")
    _one_error(code, err, "--out ''", "empty path")
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["scene.json"]


# ---------------------------------------------------------------------------------------------- report tables


def test_report_table_cells_keep_pipes_and_line_breaks_inside_one_cell() -> None:
    import re

    from unifylab.study.report import md_row

    row = md_row(["run|a", "two\nlines", "plain"])
    assert "\n" not in row
    cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
    assert [c.strip() for c in cells] == ["run\\|a", "two <br> lines", "plain"]
