"""Plain progress lines off a terminal: throttled per task, a line on completion, no ANSI codes; the bar on a TTY."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from unifylab.errors import UserError
from unifylab.progress import LineProgress, progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_throttled_per_task_and_completion_always_prints() -> None:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, width=40)  # narrower than a line: lines must not wrap
    with LineProgress(console, interval=5, clock=clock) as bar:
        task = bar.add_task("training", total=100, loss="")
        assert out.getvalue() == ""  # nothing until the first update
        clock.now += 1
        bar.update(task, completed=10, loss="loss 2.500")
        clock.now += 1
        bar.advance(task, 5)  # within the interval: no line
        bar.update(task, description="training shared-s0", loss="loss 2.000")
        clock.now += 5
        bar.update(task, completed=50, loss="loss 1.250")
        clock.now += 1
        bar.update(task, completed=100)  # completion prints at once
        bar.update(task, completed=100)  # but only once
        other = bar.add_task("drawing")
        bar.advance(other, 3)
    assert out.getvalue().splitlines() == [
        "training  10/100 (10%)  loss 2.500  elapsed 1s  ETA 9s",
        "training shared-s0  50/100 (50%)  loss 1.250  elapsed 7s  ETA 7s",
        "training shared-s0  100/100 (100%)  loss 1.250  elapsed 8s  ETA 0s",
        "drawing  3  elapsed 0s",
    ]
    assert "\x1b" not in out.getvalue()


def test_eta_counts_from_where_a_resumed_task_started_and_long_runs_read_in_minutes() -> None:
    out, clock = io.StringIO(), Clock()
    with LineProgress(Console(file=out), clock=clock) as bar:
        task = bar.add_task("training", total=10790, completed=790)
        clock.now += 62
        bar.update(task, completed=1234, description="study quick: training shared-s0")
    assert out.getvalue() == "study quick: training shared-s0  1234/10790 (11%)  elapsed 1m02s  ETA 22m14s\n"


def test_the_factory_picks_lines_off_a_terminal_and_the_bar_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIFYLAB_PROGRESS_SECONDS", "0.5")
    lines = progress(Console(file=io.StringIO()))
    assert isinstance(lines, LineProgress) and lines.interval == 0.5
    assert isinstance(progress(Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert isinstance(progress(Console(file=io.StringIO()), enabled=False), Progress)  # disabled: shows nothing
    quiet = io.StringIO()
    with progress(Console(file=quiet, quiet=True)) as bar:
        bar.update(bar.add_task("training", total=1), completed=1)
    assert quiet.getvalue() == ""
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("UNIFYLAB_PROGRESS_SECONDS", bad)
        with pytest.raises(UserError, match=f"UNIFYLAB_PROGRESS_SECONDS: .*got '{bad}'"):
            progress(Console(file=io.StringIO()))


def test_train_off_a_terminal_prints_progress_lines(tmp_path: Path) -> None:
    tiny = ["--set", "model.dim=32", "--set", "model.layers=1", "--set", "model.heads=2", "--set", "optim.steps=3"]
    proc = subprocess.run(
        [sys.executable, "-m", "unifylab", "train", "--out", str(tmp_path / "run"), *tiny],
        capture_output=True,  # stderr is a pipe, not a terminal
        text=True,
        env={**os.environ, "UNIFYLAB_PROGRESS_SECONDS": "0"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = re.findall(r"^training  (\d)/3 \(\d+%\)  loss \d+\.\d+  [\d,]+ tok/s  elapsed \S+", proc.stderr, re.M)
    assert steps and steps[-1] == "3", proc.stderr  # at least one line, and the final one
    assert "\x1b" not in proc.stderr
