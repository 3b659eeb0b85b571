"""Where a study's runs execute: `local` (this machine: in this process, or a pool of spawned worker processes) or
`ray` (a Ray cluster, one task per run). Both call `execute.train_and_eval`, which writes everything to the study
folder, so a run's results, resume and fingerprints are the same wherever it executed."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import NoReturn

import torch

from unifylab.errors import UserError
from unifylab.layout import StudyFolder
from unifylab.runtime import physical_cores
from unifylab.study.execute import Run, RunResult, Work, train_and_eval, train_examples

Report = Callable[[str, int], None]  # (what is happening, units of work done since the last report)


def parent_of(run: Run) -> str | None:
    """The id of the run this one starts from (its `init_from`), if any."""
    return Path(run.cfg.init_from).name if run.cfg.init_from is not None else None


class Executor(ABC):
    """Trains and evaluates a study's runs, at most `jobs` at once, a run only after the run it starts from."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    @abstractmethod
    def run_all(self, runs: list[Run], work: Work, report: Report) -> dict[str, RunResult]:
        """Each run's result by id; on an interrupt or a failure, nothing keeps running when this returns."""


def default_jobs(device: str) -> int:
    """Parallel trainings on a CPU: one per physical core (a small model uses one core well and a second poorly);
    on a GPU one (the runs share it)."""
    return physical_cores() if device == "cpu" else 1


def queue(runs: list[Run], *, cost: Callable[[Run], int] = train_examples) -> list[Run]:
    """The order a pool starts runs in: seed by seed, so a study stopped part-way leaves whole seeds to report on
    (a long study goes on across sessions), and within a seed longest first, so no long run starts last."""
    costs = {r.id: cost(r) for r in runs}
    return sorted(runs, key=lambda r: (r.seed, -costs[r.id]))


class LocalExecutor(Executor):
    """This machine: with one job, each run in this process; with more, `jobs` spawned worker processes that each
    take the next run in `queue` order when they finish one (torch and the lab are imported once per worker, not
    once per run), progress and results coming back through a pipe. An interrupt or a failing run stops every
    worker (SIGTERM, then SIGKILL after STOP_GRACE_SECONDS); a worker whose study process dies (kill -9) stops by
    itself."""

    def run_all(self, runs: list[Run], work: Work, report: Report) -> dict[str, RunResult]:
        if self.jobs == 1:
            return {r.id: train_and_eval(r, work, report) for r in runs}
        ctx = mp.get_context("spawn")
        done: dict[str, RunResult] = {}
        waiting = queue(runs)
        workers: dict[Connection, mp.process.BaseProcess] = {}  # each worker's pipe -> its process
        running: dict[Connection, str] = {}  # a busy worker's pipe -> the run it is on
        try:
            while waiting or running:
                for r in [r for r in waiting if parent_of(r) is None or parent_of(r) in done]:
                    idle = [conn for conn in workers if conn not in running]
                    if not idle and len(workers) >= self.jobs:
                        break
                    if not idle:
                        mine, theirs = ctx.Pipe()
                        proc = ctx.Process(
                            target=_pool_worker, args=(work, theirs, os.getpid()), name=f"worker-{len(workers)}"
                        )
                        workers[mine] = proc  # before it starts: an interrupt now still stops it
                        proc.start()
                        theirs.close()
                        idle = [mine]
                    waiting.remove(r)
                    try:
                        idle[0].send(r)
                    except OSError:  # the worker died while idle (killed from outside)
                        _worker_lost(workers[idle[0]], r.id)
                    running[idle[0]] = r.id
                if not running:
                    raise RuntimeError(f"runs {[r.id for r in waiting]} wait for runs that are not in the study")
                for conn in wait(list(running)):
                    rid = running[conn]
                    try:
                        kind, payload = conn.recv()
                    except EOFError:
                        _worker_lost(workers[conn], rid)
                    if kind == "progress":
                        report(*payload)
                        continue
                    del running[conn]
                    if kind == "error":
                        raise payload
                    done[rid] = payload
            for conn in workers:  # no run left: each worker returns when told
                with contextlib.suppress(OSError):
                    conn.send(None)
            _stop_workers(list(workers.values()), terminate=False)
        finally:
            _stop_workers(list(workers.values()))
            for conn in workers:
                conn.close()
        return done


STOP_GRACE_SECONDS = 10.0  # how long a worker may take to exit after SIGTERM before it is killed


def _worker_lost(proc: mp.process.BaseProcess, run_id: str) -> NoReturn:
    """Raise the error for a worker that ended without a result for `run_id`."""
    proc.join()
    raise RuntimeError(
        f"run {run_id}: its worker process ended without a result (exit code {proc.exitcode}); "
        "re-run the study to resume it"
    ) from None


def _stop_workers(procs: list[mp.process.BaseProcess], *, terminate: bool = True) -> None:
    """Terminate the workers (unless they were asked to return), wait at most STOP_GRACE_SECONDS in all, then kill
    what is left and reap it."""
    procs = [proc for proc in procs if proc.pid is not None]  # started
    for proc in procs:
        if terminate and proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker at once when the study process that started it is gone (killed with -9, say): its runs are
    resumed by the next study, and no orphan keeps training or holding a run folder's lock."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _pool_worker(work: Work, conn: Connection, parent_pid: int) -> None:
    """A study worker process: for each run the study process sends (None: stop), train and evaluate it, sending
    progress and then ('done', result) or ('error', exception). Ctrl-C reaches the whole process group; the study
    process decides, so it is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent_pid)
    try:
        while (run := conn.recv()) is not None:
            try:
                result = train_and_eval(run, work, lambda what, units: conn.send(("progress", (what, units))))
                conn.send(("done", result))
            except BrokenPipeError:
                raise
            except BaseException as e:  # every failure goes back to the study process, which raises it
                try:
                    pickle.loads(pickle.dumps(e))  # its own bytes, just made: can the study process rebuild it?
                except Exception:  # an exception that cannot cross the pipe: its text and traceback do
                    e = RuntimeError(f"run {run.id}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
                conn.send(("error", e))
            if torch.cuda.is_initialized():  # the next run starts with the device's memory free, as in a new process
                torch.cuda.empty_cache()
    except (BrokenPipeError, EOFError):  # the study process is gone
        os._exit(1)
    finally:
        conn.close()


class RayExecutor(Executor):
    """A Ray cluster (`address`: 'auto' or ray://..., None: RAY_ADDRESS, else a local Ray on this machine): each
    run is one Ray task holding `cpus` CPUs (its torch threads) and `gpus` GPUs (a fraction shares one between small
    models); a run that starts from another waits for it (Ray resolves the dependency). Workers write to the study
    folder, which every node must mount at the same path; progress is read from the run folders, and the results
    are collected from the folder afterwards, so a lost driver loses no finished work and resume works unchanged."""

    def __init__(self, jobs: int, *, address: str | None = None, gpus: float = 0.0) -> None:
        super().__init__(jobs)
        self.address, self.gpus = address, gpus

    def run_all(self, runs: list[Run], work: Work, report: Report) -> dict[str, RunResult]:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        if not ray.is_initialized():
            local = (
                {} if self.address or os.environ.get("RAY_ADDRESS") else {"num_cpus": self.jobs * max(1, work.threads)}
            )
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
            except (ConnectionError, RuntimeError) as e:
                where = self.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
                raise UserError(f"--executor ray: cannot start or reach {where} ({e}); check --ray-address") from None
        task = ray.remote(_ray_task).options(num_cpus=max(1, work.threads), num_gpus=self.gpus, max_retries=0)
        refs: dict[str, object] = {}
        for r in runs:  # training order: a run's parent comes first
            parent = parent_of(r)
            refs[r.id] = task.remote(r, work, *([refs[parent]] if parent in refs else []))
        pending = {ref: rid for rid, ref in refs.items()}
        seen = _FolderProgress(StudyFolder(work.out), runs, report)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                seen.poll()
                for ref in ready:
                    rid = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = e.as_instanceof_cause()
                        raise (cause.cause if isinstance(getattr(cause, "cause", None), Exception) else cause) from None
                    seen.finished(rid)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        quiet = lambda what, units: None  # noqa: E731 (all of it is on disk: this only reads it back)
        return {r.id: train_and_eval(r, work, quiet) for r in runs}


def _ray_task(run: Run, work: Work, *_parent_done: object) -> str:
    """A Ray task: train and evaluate one run into the study folder (its parent's result, when it has one, is an
    argument only so that Ray starts this task after it)."""
    train_and_eval(run, work, lambda what, units: None)
    return run.id


class _FolderProgress:
    """Progress of runs that execute elsewhere, read from the study folder: steps logged in each run's metrics.jsonl
    and records in its eval folder."""

    def __init__(self, study: StudyFolder, runs: list[Run], report: Report) -> None:
        self.study, self.runs, self.report = study, runs, report
        self.counted = {r.id: 0 for r in runs}
        self.done: set[str] = set()

    def _units(self, run: Run) -> int:
        metrics = self.study.run(run.id).metrics
        steps = sum(1 for _ in metrics.open(encoding="utf-8")) if metrics.is_file() else 0
        records = sum(sum(1 for _ in f.open(encoding="utf-8")) for f in self.study.eval(run.id).path.glob("*.jsonl"))
        return steps + records

    def poll(self) -> None:
        for r in self.runs:
            if r.id in self.done:
                continue
            units = self._units(r)
            if units > self.counted[r.id]:
                self.report(f"ray: {r.id}", units - self.counted[r.id])
                self.counted[r.id] = units

    def finished(self, run_id: str) -> None:
        self.poll()
        self.done.add(run_id)
