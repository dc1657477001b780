"""Worker pools: where the submissions of a grading run are graded, one per worker at a time.

:class:`WorkerPool` holds the one scheduling loop: take the jobs that arrive on a feed, give each idle worker one,
wait, settle the outcomes (finished, failed, or the worker died or overran and is replaced). A pool says only how
to start, wait for and settle a job on one of its workers: :class:`LocalPool` (processes of this machine) and
:class:`~cml.instructor.grading.cluster.DaskPool` (workers of a Dask cluster). Each pool replaces at most
``restart_budget`` workers in a run; once it is spent, the jobs still waiting fail with the reason, so that a
submission that kills every worker it meets cannot keep the run going forever.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import psutil

from cml.instructor.defaults import GRACE_SECONDS, GRADING_ENVIRONMENT
from cml.instructor.grading.engine import GradingWorker
from cml.instructor.grading.model import Job, Outcome, Status, WorkerSettings
from cml.instructor.isolation.watchdog import become_subreaper, kill_processes

__all__ = ["LocalPool", "WorkerPool", "prepare_grading_process"]


def prepare_grading_process(kernelspecs: str) -> None:
    """Once in every process that grades (a local worker, a Dask worker): adopt the kernels' orphans, find the
    sandbox kernelspec in ``kernelspecs``, set the kernels' environment."""
    from sqlalchemy.exc import SAWarning

    become_subreaper()
    # nbgrader's autograde makes SQLAlchemy warn about autoflush on every new submission; it is harmless.
    warnings.filterwarnings("ignore", category=SAWarning)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [kernelspecs, os.environ.get("JUPYTER_PATH")]))
    os.environ.update(GRADING_ENVIRONMENT)


def failed(job: Job, why: str, seconds: float = 0.0, worker: int = -1) -> Outcome:
    """The outcome of a submission that got no grade."""
    return Outcome(job.student, job.assignment, status=Status.FAILED, notes=[why], seconds=seconds, worker=worker)


@dataclass
class _Running:
    job: Job
    started: float


class WorkerPool(ABC):
    """The scheduling loop shared by every pool (see the module docstring)."""

    description = ""
    """What the run report should say about where grading happened (empty: nothing)."""

    def __init__(self, time_limit: float, restart_budget: int) -> None:
        self.deadline = time_limit + GRACE_SECONDS
        self.restart_budget = restart_budget
        self.restarts = 0

    @abstractmethod
    def idle_workers(self, busy: set[Hashable]) -> list[Hashable]:
        """The workers that could take a job now, besides the ``busy`` ones."""

    @abstractmethod
    def start(self, worker: Hashable, job: Job) -> None:
        """Hand ``job`` to ``worker``."""

    @abstractmethod
    def wait(self, busy: set[Hashable], timeout: float) -> None:
        """Return when one of the ``busy`` workers may have finished, or after ``timeout`` seconds."""

    @abstractmethod
    def settle(self, worker: Hashable, job: Job, seconds: float, overdue: bool) -> Outcome | None:
        """The outcome of ``job`` once ``worker`` has one (replacing the worker if it died or is ``overdue``, with
        :meth:`replaced`); None while it is still grading."""

    def replaced(self) -> bool:
        """Count a worker replacement; False once the restart budget is spent (the worker is then not replaced)."""
        self.restarts += 1
        return self.restarts <= self.restart_budget

    def close(self) -> None:
        """Stop the workers."""

    def run(self, feed: queue.Queue, on_outcome: Callable[[Outcome], None]) -> None:
        """Grade the jobs that arrive on ``feed`` (lists of jobs or of ready outcomes, then ``None``) and pass on
        each outcome."""
        pending: deque[Job] = deque()
        running: dict[Hashable, _Running] = {}
        fed = False
        starving_since = time.monotonic()
        while not fed or pending or running:
            fed = fed or _take_jobs(feed, pending, on_outcome, busy=bool(running))
            idle = self.idle_workers(set(running))
            for worker in idle[:len(pending)]:
                job = pending.popleft()
                self.start(worker, job)
                running[worker] = _Running(job, time.monotonic())
            if idle or running:
                starving_since = time.monotonic()
            elif pending and (time.monotonic() - starving_since > GRACE_SECONDS
                              or self.restarts > self.restart_budget):
                why = (f"no grading worker was left to grade it: {self.restart_budget} were replaced, the most a "
                       "run allows" if self.restarts > self.restart_budget else "no grading worker was left to grade it")
                for job in pending:
                    on_outcome(failed(job, why))
                pending.clear()
            if not running:
                time.sleep(0.2 if pending else 0.0)
                continue
            self.wait(set(running), timeout=0.5)
            for worker, task in list(running.items()):
                seconds = time.monotonic() - task.started
                outcome = self.settle(worker, task.job, seconds, overdue=seconds > self.deadline)
                if outcome is not None:
                    del running[worker]
                    on_outcome(outcome)


def _take_jobs(feed: queue.Queue, pending: deque[Job], on_outcome: Callable[[Outcome], None], busy: bool) -> bool:
    """Move the jobs that have arrived on ``feed`` to ``pending`` (ready outcomes go straight to ``on_outcome``),
    waiting a little for some when there is nothing else to do; True once the feed has ended (``None``)."""
    while True:
        try:
            batch = feed.get(timeout=0.2) if not pending and not busy else feed.get_nowait()
        except queue.Empty:
            return False
        if batch is None:
            return True
        for item in batch:
            on_outcome(item) if isinstance(item, Outcome) else pending.append(item)


def _serve(index: int, connection: Connection, settings: WorkerSettings) -> None:
    """A local worker process: grade the jobs the parent sends until it sends ``None``."""
    prepare_grading_process(settings.kernelspecs)
    worker = GradingWorker(settings, index)
    try:
        while True:
            job = connection.recv()
            if job is None:
                return
            connection.send(worker.grade(job))
    finally:
        worker.close()


@dataclass
class _Process:
    process: multiprocessing.process.BaseProcess
    connection: Connection


class LocalPool(WorkerPool):
    """``size`` worker processes of this machine (spawned: they import nbgrader while the assignments are
    generated). A worker that dies or overruns costs only the submission it held and is replaced."""

    def __init__(self, size: int, settings: WorkerSettings, restart_budget: int | None = None) -> None:
        super().__init__(settings.limits.time_limit, size + 3 if restart_budget is None else restart_budget)
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Process | None] = [self._spawn(index) for index in range(size)]

    def _spawn(self, index: int) -> _Process:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(index, theirs, self.settings), daemon=True,
                                       name=f"cml-grader-{index}")
        process.start()
        theirs.close()
        return _Process(process, ours)

    def idle_workers(self, busy: set[Hashable]) -> list[Hashable]:
        return [index for index, handle in enumerate(self.workers) if handle is not None and index not in busy]

    def start(self, worker: Hashable, job: Job) -> None:
        self.workers[worker].connection.send(job)

    def wait(self, busy: set[Hashable], timeout: float) -> None:
        handles = [self.workers[index] for index in busy]
        wait([h.connection for h in handles] + [h.process.sentinel for h in handles], timeout=timeout)

    def settle(self, worker: Hashable, job: Job, seconds: float, overdue: bool) -> Outcome | None:
        handle = self.workers[worker]
        if handle.connection.poll():
            try:
                return handle.connection.recv()
            except (EOFError, OSError):
                pass
        alive = handle.process.is_alive()
        if alive and not overdue:
            return None
        why = ("its grading worker did not finish within the time limit and was killed" if alive else
               f"its grading worker died (exit code {handle.process.exitcode})")
        _kill_tree(handle.process.pid)
        handle.process.join(timeout=5)
        self.workers[worker] = self._spawn(worker) if self.replaced() else None
        return failed(job, why, seconds, worker)

    def close(self) -> None:
        live = [handle for handle in self.workers if handle is not None]
        for handle in live:
            try:
                handle.connection.send(None)
            except OSError:
                pass
        for handle in live:
            handle.process.join(timeout=10)
            if handle.process.is_alive():
                _kill_tree(handle.process.pid)


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        kill_processes(root.children(recursive=True) + [root])
    except psutil.Error:
        return
