"""Progress for long commands: rich's live bar on a terminal, plain throttled lines elsewhere (a pipe, nohup, CI).

Off a terminal each task prints at most one line every UNIFYLAB_PROGRESS_SECONDS seconds (default 5; 0 prints
every update), and always a line when it completes, e.g.
`study quick: training shared-s0  1234/10790 (11%)  elapsed 1m02s  ETA 8m10s`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn

from unifylab.errors import UserError

ENV = "UNIFYLAB_PROGRESS_SECONDS"


def progress(
    console: Console, *, columns: tuple[ProgressColumn, ...] = (), enabled: bool = True
) -> Progress | LineProgress:
    """rich's transient bar with `columns` (default: description, bar, done/total, ETA) when `console` is a
    terminal or when disabled (then it shows nothing); else a `LineProgress` printing through `console`."""
    if console.is_terminal or not enabled:
        columns = columns or (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        return Progress(*columns, console=console, transient=True, disable=not enabled)
    return LineProgress(console, interval=_seconds())


def _seconds() -> float:
    """Seconds between two lines of one task, from UNIFYLAB_PROGRESS_SECONDS (default 5)."""
    text = os.environ.get(ENV, "5")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserError(f"{ENV}: expected seconds between progress lines (a number >= 0, e.g. 5), got {text!r}")
    return seconds


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    start: float  # clock time when added
    first: float  # `completed` when added (a resumed run starts part-way), for the ETA
    shown: float = -math.inf  # clock time of the last line


class LineProgress:
    """The part of rich's `Progress` API the project uses, printing plain lines (no ANSI codes), throttled per task."""

    def __init__(self, console: Console, *, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.interval, self.clock = console, interval, clock
        self.tasks: list[_Task] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to close: every line is already printed."""

    def add_task(self, description: str, total: float | None = None, *, completed: float = 0, **fields: Any) -> int:
        """A new task, shown from its first update; `fields` (e.g. loss) are shown after the count."""
        self.tasks.append(_Task(description, total, completed, fields, self.clock(), completed))
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count `advance` more units done."""
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        advance: float | None = None,
        **fields: Any,
    ) -> None:
        """Change a task as rich's `Progress.update` does; prints a line if the interval has passed or it completed."""
        t = self.tasks[task_id]
        was_done = t.total is not None and t.completed >= t.total
        t.total = t.total if total is None else total
        t.completed = (t.completed if completed is None else completed) + (advance or 0)
        t.description = t.description if description is None else description
        t.fields.update(fields)
        done = t.total is not None and t.completed >= t.total
        if (done and not was_done) or self.clock() - t.shown >= self.interval:
            self._show(task_id)

    def _show(self, task_id: int) -> None:
        t = self.tasks[task_id]
        now = self.clock()
        t.shown = now
        elapsed = now - t.start
        parts = [t.description, _number(t.completed) + ("" if t.total is None else f"/{_number(t.total)}")]
        if t.total:
            parts[-1] += f" ({100 * t.completed / t.total:.0f}%)"
        parts += [str(v) for v in t.fields.values() if v != ""]
        parts.append(f"elapsed {_duration(elapsed)}")
        if t.total is not None and t.completed > t.first:
            remaining = max(0.0, t.total - t.completed)
            parts.append(f"ETA {_duration(elapsed * remaining / (t.completed - t.first))}")
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True, emoji=False)


def _number(x: float) -> str:
    """1234 for a whole count, else 12.5."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _duration(seconds: float) -> str:
    """45s, 1m02s or 2h05m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
