"""Bad inputs and faults: each case is one `error:` line with exit code 2, and every file that existed before is
byte-identical afterwards (nothing outside --out written, nothing lost or mixed)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from unifylab.eval.realunify import load_realunify
from unifylab.io import read_jsonl_tolerant

Cli = Callable[..., tuple[int, str, str]]
FIXTURE = Path(__file__).parent / "fixtures" / "realunify" / "realunify_small.json"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _realunify(tmp: Path, edit: Callable[[list[dict]], None]) -> Path:
    """A copy of the small RealUnify fixture (with its images) after `edit`."""
    folder = tmp / "ru"
    shutil.copytree(FIXTURE.parent, folder)
    items = json.loads(FIXTURE.read_text())
    edit(items)
    (folder / FIXTURE.name).write_text(json.dumps(items))
    return folder / FIXTURE.name


def _geu(items: list[dict]) -> dict:
    return next(d for d in items if "question_list" not in d)


def _ueg(items: list[dict]) -> dict:
    return next(d for d in items if "question_list" in d)


REALUNIFY_CASES = {
    "id climbing out of --out": (lambda it: _ueg(it).update(id="../../victim/images/00000"), "cannot name a file"),
    "absolute id": (lambda it: _ueg(it).update(id="/tmp/unifylab-victim"), "cannot name a file"),
    "image outside the data folder": (lambda it: _geu(it).update(image="../outside/x.png"), "points outside"),
    "absolute image path": (lambda it: _geu(it).update(image="/etc/hostname"), "points outside"),
    "five options": (lambda it: _geu(it).update(options=["a", "b", "c", "d", "e"]), "exactly 4 options"),
    "GEU item without image": (lambda it: (_geu(it).pop("image", None), _geu(it).pop("images", None)), "needs 'image'"),
    "verification answer neither yes nor no": (
        lambda it: _ueg(it)["question_list"][0].update(answer="maybe"),
        "must say yes or no",
    ),
    "answer letter E": (lambda it: _geu(it).update(answer="E"), "answer' as a letter A-D"),
}


@pytest.mark.parametrize("case", list(REALUNIFY_CASES))
def test_bad_realunify_items_are_one_error_and_write_nothing(cli: Cli, tmp_path: Path, case: str) -> None:
    edit, message = REALUNIFY_CASES[case]
    data = _realunify(tmp_path, edit)
    (tmp_path / "victim" / "images").mkdir(parents=True)
    (tmp_path / "victim" / "images" / "00000.png").write_bytes(b"precious")
    before = _snapshot(tmp_path)
    code, _, err = cli("score", "realunify", "--data", data, "--model", "oracle", "--out", tmp_path / "out" / "a")
    assert code == 2 and err.count("error:") == 1 and message in err, err
    assert _snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_realunify_yes_no_answers_are_normalised_like_the_judges() -> None:
    items = load_realunify(FIXTURE)  # the fixture writes "Yes" / "No"
    assert {q["answer"] for it in items if it.kind == "ueg" for q in it.questions} == {"yes", "no"}


def test_realunify_top_level_that_is_not_a_list(cli: Cli, tmp_path: Path) -> None:
    for body in ('{"data": 5}', "5", '"text"'):
        (tmp_path / "x.json").write_text(body)
        code, _, err = cli(
            "score", "realunify", "--data", tmp_path / "x.json", "--model", "oracle", "--out", tmp_path / "o"
        )
        assert code == 2 and err.count("error:") == 1 and ("expected a list" in err or "expected an object" in err)


def test_task_yaml_named_to_escape_the_eval_folder(cli: Cli, tmp_path: Path) -> None:
    spec = yaml.safe_load((Path(__file__).parents[1] / "src/unifylab/eval/tasks/vqa.yaml").read_text())
    spec["name"] = "../../escaped"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    before = _snapshot(tmp_path)
    code, _, err = cli("eval", "oracle", "--tasks", tmp_path / "t.yaml", "--out", tmp_path / "a" / "b")
    assert code == 2 and err.count("error:") == 1 and "name" in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "escaped.jsonl").exists()


def test_another_model_or_seed_never_reuses_records(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "6", "--out", out)[0] == 0
    before = _snapshot(out)
    for args in (("oracle",), ("random", "--seed", "3")):
        code, _, err = cli("eval", *args, "--tasks", "vqa", "--limit", "6", "--out", out)
        assert code == 2 and err.count("error:") == 1 and "--force" in err, err
        assert _snapshot(out) == before


def test_a_torn_last_line_is_dropped_on_resume(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "6", "--out", out)[0] == 0
    rows = (out / "vqa.jsonl").read_text()
    (out / "vqa.jsonl").write_text(rows + '{"id": "vqa-99", "sco')  # what a kill or a full disk leaves
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "6", "--out", out)[0] == 0
    assert (out / "vqa.jsonl").read_text() == rows and not list(out.glob(".vqa.jsonl.*"))
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl_tolerant(tmp_path / "m.jsonl") == [{"step": 1}, {"step": 2}]
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(Exception, match="m.jsonl:2: malformed JSON"):
        read_jsonl_tolerant(tmp_path / "m.jsonl")


def test_an_empty_trainer_json_marks_its_checkpoint_damaged(tmp_path: Path) -> None:
    import torch

    from unifylab.train import checkpoint as C

    weights = {"w": torch.zeros(2)}
    for step in (2, 4):
        C.save_checkpoint(tmp_path, step, weights, {"optimizer": {}}, {"tokens_seen": 10 * step}, keep=2)
    (tmp_path / C.CKPT_DIR / "step-4" / C.META).write_text("{}")
    warnings: list[str] = []
    path, (_, _, meta) = C.latest_checkpoint(tmp_path, warnings.append)
    assert path.name == "step-2" and meta["step"] == 2
    assert len(warnings) == 1 and "step-4 is damaged" in warnings[0] and "tokens_seen" in warnings[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (("eval", "oracle", "--tasks", ""), "no task named"),
        (("eval", "oracle", "--tasks", "vqa", "--device", "tpu"), "expected auto, cpu, cuda or cuda:N"),
        (("eval", "oracle", "--tasks", "vqa", "--limit", "2"), "a file stands where a folder is needed"),
        (("train", "--set", "optim.steps=2"), "a file stands where a folder is needed"),
        (("world", "sample", "--n", "2"), "already exists"),
    ],
)
def test_bad_options_and_an_out_that_is_a_file(cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "out").write_text("mine")
    code, _, err = cli(*args, "--out", tmp_path / "out")
    assert code == 2 and err.count("error:") == 1 and message in err, err
    assert (tmp_path / "out").read_text() == "mine"


def test_a_full_disk_is_one_error_and_keeps_what_was_scored(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from unifylab.eval import harness

    out = tmp_path / "ev"
    assert cli("eval", "random", "--tasks", "t2i", "--limit", "4", "--out", out)[0] == 0
    before = _snapshot(out)

    def full(path: Path, image: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(harness, "save_png", full)
    code, _, err = cli("eval", "random", "--tasks", "t2i", "--limit", "8", "--out", out)
    assert code == 2 and err.count("error:") == 1 and "No space left on device (ENOSPC)" in err, err
    assert _snapshot(out) == before
    monkeypatch.undo()
    assert cli("eval", "random", "--tasks", "t2i", "--limit", "8", "--out", out)[0] == 0  # resumes once fixed
    assert len((out / "t2i.jsonl").read_text().splitlines()) == 8


@pytest.mark.parametrize("command", ["eval", "train", "study"])
def test_a_second_writer_into_a_busy_folder_is_refused(cli: Cli, tmp_path: Path, command: str) -> None:
    import fcntl
    import os

    from unifylab.io import LOCK

    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's writer, as far as the CLI can tell
    try:
        before = _snapshot(out)
        args = {
            "eval": ("eval", "random", "--tasks", "vqa", "--limit", "2"),
            "train": ("train", "--set", "optim.steps=2"),
            "study": ("study", "--preset", "quick"),
        }[command]
        code, _, err = cli(*args, "--out", out)
        assert code == 2 and err.count("error:") == 1 and "in use by process 4242" in err, err
        assert _snapshot(out) == before
    finally:
        os.close(fd)


def test_checkpoints_hold_no_pickle_and_old_pickle_ones_are_refused(tmp_path: Path) -> None:
    import torch

    from unifylab.errors import UserError
    from unifylab.train import checkpoint as C

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": C.rng_state()}
    path = C.save_checkpoint(tmp_path, 2, model.state_dict(), state, {"tokens_seen": 8}, keep=2)
    assert {p.name for p in path.iterdir()} == {C.MODEL, C.STATE, C.STATE_TREE, C.META}
    _, back, _ = C.load_checkpoint(path)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["rng"]["python"] == state["rng"]["python"]
    legacy = tmp_path / C.CKPT_DIR / "step-4"
    legacy.mkdir()
    (legacy / C.LEGACY_STATE).write_bytes(b"\x80\x04pickle")
    with pytest.raises(UserError, match="older unifylab"):
        C.latest_checkpoint(tmp_path, print)


def test_a_max_len_too_short_for_the_data_is_refused_before_anything_is_written(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    small = ("--set", "model.dim=32", "--set", "model.layers=1", "--set", "model.heads=2", "--set", "optim.steps=2")
    code, _, err = cli("train", "--out", run, "--quiet", *small, "--set", "model.max_len=16")
    assert code == 2 and err.count("error:") == 1 and "model.max_len 16 is shorter" in err, err
    assert not run.exists() or not [p for p in run.iterdir() if p.name != ".unifylab.lock"]
    code, _, err = cli("train", "--out", run, "--quiet", *small)  # the corrected config is then accepted
    assert code == 0, err


def test_a_foreign_line_in_an_eval_file_is_refused_then_forced(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "4", "--out", out)[0] == 0
    (out / "vqa.jsonl").write_text("{}\n" + (out / "vqa.jsonl").read_text())
    before = _snapshot(out)
    code, _, err = cli("eval", "random", "--tasks", "vqa", "--limit", "4", "--out", out)
    assert code == 2 and err.count("error:") == 1 and "record 1 is not one this program wrote" in err, err
    assert _snapshot(out) == before
    assert cli("eval", "random", "--tasks", "vqa", "--limit", "4", "--out", out, "--force")[0] == 0
    assert [json.loads(x)["id"] for x in (out / "vqa.jsonl").read_text().splitlines()] == [f"vqa-{i}" for i in range(4)]


CLI_CASES = {
    "eval --limit 0": (("eval", "oracle", "--tasks", "vqa", "--limit", "0", "--out", "{out}"), "--limit"),
    "eval of a missing run": (("eval", "{tmp}/missing", "--tasks", "vqa", "--out", "{out}"), "missing"),
    "eval of an unknown task": (("eval", "oracle", "--tasks", "vqa,dance", "--out", "{out}"), "dance"),
    "compare of missing folders": (("compare", "{tmp}/a", "{tmp}/b"), "a"),
    "study with bad seeds": (("study", "--seeds", "0,x", "--out", "{out}"), "--seeds"),
    "study with --jobs 0": (("study", "--jobs", "0", "--out", "{out}"), "--jobs"),
    "train with a missing config": (("train", "{tmp}/none.yaml", "--out", "{out}"), "none.yaml"),
    "train with a negative width": (("train", "--set", "model.dim=-1", "--out", "{out}"), "dim: Input should be"),
    "train with an unknown device": (("train", "--set", "device=tpu", "--out", "{out}"), "tpu"),
    "world render of a malformed scene file": (("world", "render", "{tmp}/bad.jsonl", "--out", "{out}"), "bad.jsonl"),
    "score geneval of malformed metadata": (
        ("score", "geneval", "--metadata", "{tmp}/bad.jsonl", "--images", "{tmp}", "--out", "{out}"),
        "bad.jsonl",
    ),
    "score geneval without images": (
        ("score", "geneval", "--metadata", "{tmp}/meta.jsonl", "--images", "{tmp}/noimages", "--out", "{out}"),
        "noimages",
    ),
    "analyze alignment with too few scenes": (("analyze", "alignment", "oracle", "--n", "2", "--out", "{out}"), "n"),
    "data geneval with zero items": (("data", "geneval", "--n-per-task", "0", "--out", "{out}"), "n-per-task"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_command_lines_are_one_error_and_change_nothing(cli: Cli, tmp_path: Path, case: str) -> None:
    args, needle = CLI_CASES[case]
    (tmp_path / "bad.jsonl").write_text('{"size": 32, "grid":\n')
    (tmp_path / "meta.jsonl").write_text(
        json.dumps(
            {"tag": "single_object", "prompt": "a photo of a circle", "include": [{"class": "circle", "count": 1}]}
        )
        + "\n"
    )
    (tmp_path / "keep.txt").write_text("mine")
    before = _snapshot(tmp_path)
    code, _, err = cli(*(a.format(tmp=tmp_path, out=tmp_path / "out") for a in args))
    assert code == 2 and err.count("error:") == 1 and needle in err, err
    assert _snapshot(tmp_path) == before


def test_kill_9_during_a_jsonl_rewrite_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "t2i.jsonl"
    old = "".join(json.dumps({"id": f"t2i-{i}", "score": 1.0}) + "\n" for i in range(100))
    path.write_text(old)
    code = (
        "import sys; from unifylab.io import write_jsonl; "
        "write_jsonl(sys.argv[1], ({'id': f'x-{i}', 'pad': 'p' * 400} for i in range(10**6)))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    while not list(tmp_path.glob(".t2i.jsonl.*.tmp")) and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # inside the rewrite (about 420 MB of rows to write)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-write, not finished
    assert path.read_text() == old  # the rename never happened: the old file is whole
    torn = list(tmp_path.glob(".t2i.jsonl.*.tmp"))  # the half-written temp file is the only trace, beside it
    assert len(torn) == 1 and torn[0].stat().st_size > 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (real ENOSPC and EROFS); skipped where this process may not mount (not root in a container)."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path, leave: int = 0) -> None:
    """Take every free byte of `folder`'s filesystem but `leave`."""
    for name, chunk in (("filler", 65536), ("filler-tail", 1)):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * chunk):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
    os.truncate(folder / "filler", max(0, (folder / "filler").stat().st_size - leave))


TINY = ("--set", "model.dim=32", "--set", "model.layers=1", "--set", "model.heads=2")


@pytest.mark.parametrize(
    "first, command, leave",
    [
        (
            ("eval", "random", "--tasks", "vqa,t2i", "--limit", "3"),
            ("eval", "random", "--tasks", "vqa,t2i", "--limit", "6"),
            0,
        ),
        (None, ("train", "--set", "optim.steps=4", "--set", "checkpoint.every=2", *TINY), 150_000),
    ],
)
def test_a_really_full_disk_is_one_error_and_keeps_earlier_outputs(
    cli: Cli, tmpfs: Path, first: tuple | None, command: tuple[str, ...], leave: int
) -> None:
    out = tmpfs / "out"
    if first is not None:
        assert cli(*first, "--out", out)[0] == 0
    _fill(tmpfs, leave)
    before = _snapshot(tmpfs)
    code, _, err = cli(*command, "--out", out)
    assert code == 2 and err.count("error:") == 1 and "No space left on device" in err, err
    after = _snapshot(tmpfs)
    for name, data in before.items():  # an appended log may have grown by whole lines; nothing earlier is lost
        assert after[name][: len(data)] == data, name
    if first is None:  # the run got as far as the disk allowed and resumes once there is room
        (tmpfs / "filler").unlink()
        assert cli(*command, "--out", out)[0] == 0
        assert [r["step"] for r in read_jsonl_tolerant(out / "metrics.jsonl")] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "command",
    [
        ("eval", "random", "--tasks", "vqa", "--limit", "6"),
        ("train", "--set", "optim.steps=2", *TINY),
        ("world", "sample", "--n", "2"),
    ],
)
def test_a_read_only_output_is_one_error_and_changes_nothing(cli: Cli, tmpfs: Path, command: tuple[str, ...]) -> None:
    import subprocess

    out = tmpfs / "out"
    first = (
        ("eval", "random", "--tasks", "vqa", "--limit", "3")
        if command[0] == "eval"
        else command
        if command[0] == "train"
        else None
    )
    if first is not None:
        assert cli(*first, "--out", out)[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    target = out if first is not None else tmpfs / "new"
    before = _snapshot(tmpfs)
    code, _, err = cli(*command, "--out", target)
    assert code == 2 and err.count("error:") == 1 and "Read-only file system" in err, err
    assert _snapshot(tmpfs) == before


def test_a_run_folder_deleted_mid_run_is_one_error(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unifylab.train import loop

    out = tmp_path / "run"
    real_step = loop.Trainer._step

    def step_then_vanish(self: loop.Trainer, step: int) -> dict:
        if step == 1:
            shutil.rmtree(self.run)  # a user (or a cleanup job) removes the folder while training writes into it
        return real_step(self, step)

    monkeypatch.setattr(loop.Trainer, "_step", step_then_vanish)
    code, _, err = cli("train", "--set", "optim.steps=3", *TINY, "--out", out)
    assert code == 2 and err.count("error:") == 1 and "No such file or directory (ENOENT)" in err, err
