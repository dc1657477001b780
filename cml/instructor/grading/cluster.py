"""Grade a class on a Dask cluster: worker processes on other machines, no file system in common.

:func:`~cml.instructor.grading.run.grade_class` hands its submissions to :class:`DaskPool` instead of local
processes when it is given ``cluster=``: ``"local"`` for a :class:`~distributed.LocalCluster` of worker
processes on this machine, or a scheduler's address (``tcp://host:8786``) for workers started anywhere with
``dask worker ADDRESS --nthreads 1``. A task carries what its submission needs as bytes (the course config,
the assignment's source and gradebook templates, the student's folder); the worker writes them into a folder
of its own, grades there with :func:`~cml.instructor.grading.engine.grade_submission` exactly as a local grading
process does, and returns the outcome with the files grading produced (``autograded/``, ``feedback/``, the
log), which the parent writes into the workdir.

A Dask worker grades one submission at a time: the parent gives it a task only while it holds none, whatever
its number of threads (grading sets process-wide state). A task that raises, whose worker dies or leaves, or
that overruns the time limit (its worker is then restarted) fails that submission only; nothing is retried.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import queue
import shutil
import stat
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cml.instructor.grading.run import (
    _GRACE_SECONDS,
    SANDBOX_UID_BASE,
    _take_jobs,
    _unprivileged_user_works,
    prepare_grading_process,
)
from cml.instructor.authoring.release import CONFIG_FILE, nbgrader_environment
from cml.instructor.isolation.sandbox import write_kernelspec
from cml.instructor.grading.engine import Job, Outcome, WorkerSettings, grade_submission

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["UID_BASE", "DaskPool", "pack_files", "unpack_files"]

Files = dict[str, bytes]
"""File contents by path, relative to some folder (``/``-separated)."""
UID_BASE = SANDBOX_UID_BASE + 1000
"""Grading process ``slot`` of a machine runs its kernels as user ``UID_BASE + slot`` when grading as root: apart from
the local pool's users, since the watchdog ends every process of its kernel's user after each submission."""


def pack_files(root: Path, paths: list[str]) -> Files:
    """Every plain file at or below each of ``paths`` (relative to ``root``); links are left out."""
    files: Files = {}
    for relative in paths:
        top = root / relative
        if top.is_symlink():
            continue
        if top.is_file():
            files[relative] = top.read_bytes()
        for folder, _, names in os.walk(top):
            for name in names:
                path = Path(folder, name)
                if stat.S_ISREG(path.lstat().st_mode):
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def unpack_files(files: Files, root: Path, mode: int | None = None) -> None:
    """Write ``files`` below ``root`` (with permissions ``mode``, if given); a path leading out of it is refused."""
    for relative, data in files.items():
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(f"refusing to write {relative!r}: it leads out of {root}")
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mode is not None:
            path.chmod(mode)


@dataclass(frozen=True)
class _Place:
    """Where one Dask worker process grades. ``slot`` is its number among the grading processes of its machine
    (its private folder is ``root/worker-<slot>``, its kernels' user ``uid_base + slot``); ``folder`` holds its
    copy of the course and templates."""

    slot: int
    root: Path
    folder: Path
    uid_base: int | None
    lock: IO


_PLACE: _Place | None = None


def _claim_slot(root: Path) -> tuple[int, IO]:
    """The lowest number no other process of this machine holds, held (by a lock file) while this one lives."""
    for slot in itertools.count():
        lock = open(root / f"slot-{slot}.lock", "a")  # noqa: SIM115 - kept open: closing frees the slot
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, lock
        except BlockingIOError:
            lock.close()
    raise AssertionError("unreachable")


def _place() -> _Place:
    """This process's place, made on its first task, with the setup a local grading process does."""
    global _PLACE
    if _PLACE is None:
        root = Path(tempfile.gettempdir()) / f"cml-grading-{os.geteuid()}"
        root.mkdir(mode=0o711, exist_ok=True)
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise RuntimeError(f"{root} is not a folder of the grader's own")
        root.chmod(0o711)
        slot, lock = _claim_slot(root)
        folder = root / f"job-{slot}"
        folder.mkdir(mode=0o700, exist_ok=True)
        prepare_grading_process(str(write_kernelspec(folder / "jupyter")))
        os.environ.update(nbgrader_environment())
        privileged = os.geteuid() == 0 and _unprivileged_user_works(UID_BASE + slot)
        _PLACE = _Place(slot, root, folder, UID_BASE if privileged else None, lock)
    return _PLACE


def _prepare() -> None:
    """On a Dask worker: import the grader and make this process's place, ahead of its first submission."""
    _place()


def _grade_remotely(job: Job, course_files: Files, template_files: Files,
                    settings: WorkerSettings) -> tuple[Outcome, Files]:
    """On a Dask worker: lay out the course and templates, grade ``job`` with the caller's limits, sandbox and
    feedback settings, and return the outcome with the files grading wrote into the course."""
    place = _place()
    course, templates = place.folder / "course", place.folder / "templates"
    for folder, files in ((course, course_files), (templates, template_files)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        unpack_files(files, folder, mode=0o600)
    (course / "submitted" / job.student / job.assignment).mkdir(parents=True, exist_ok=True)  # files or none
    # Hidden from the kernel: this process's course and every other grading process's folders.
    hidden = [str(path) for path in place.root.iterdir() if path.is_dir() and path.name != f"worker-{place.slot}"]
    local = replace(settings, course=str(course), templates=str(templates), scratch=str(place.root),
                    kernelspecs=str(place.folder / "jupyter"), uid_base=place.uid_base if settings.sandbox else None,
                    hidden_paths=tuple(hidden) if settings.sandbox else ())
    outcome = grade_submission(job, local, place.slot)
    if settings.sandbox and os.geteuid() == 0 and place.uid_base is None:
        outcome.isolation_gaps.append("kernels ran as the grader's user: an unprivileged user cannot read the "
                                      "Python environment")
    produced = [f"autograded/{job.student}/{job.assignment}", f"feedback/{job.student}/{job.assignment}",
                f"logs/{job.assignment}/{job.student}.log"]
    return outcome, pack_files(course, produced)


@dataclass
class _Task:
    job: Job
    future: Future
    started: float


class DaskPool:
    """Grade on a Dask cluster (a scheduler's ``address``, or ``size`` local worker processes when ``None``), with
    the interface of the local process pool: :meth:`run`, :meth:`close`."""

    def __init__(self, address: str | None, size: int, settings: WorkerSettings) -> None:
        from distributed import Client, LocalCluster

        self.settings = settings
        self.cluster = None if address else LocalCluster(n_workers=size, threads_per_worker=1, processes=True,
                                                         dashboard_address=":0")
        self.client = Client(address or self.cluster)
        if address:
            self.client.wait_for_workers(1, timeout=_GRACE_SECONDS)
        where = f"the Dask cluster at {address}" if address else "a local Dask cluster"
        self.description = f"graded on {where}: {len(self.client.nthreads())} workers at the start"
        # The workers get ready while the assignments are generated (kept: a released future would be dropped).
        self._preparing = [self.client.submit(_prepare, key=f"prepare-{uuid.uuid4().hex[:8]}", pure=False,
                                              workers=[worker], allow_other_workers=False)
                           for worker in self.client.nthreads()]
        self._shared: dict[str, tuple[Files, Files]] = {}

    def _submit(self, job: Job, address: str) -> Future:
        """The job's task, for the worker at ``address`` only."""
        if job.assignment not in self._shared:  # the same for every student: read once
            course, templates = Path(self.settings.course), Path(self.settings.templates)
            self._shared[job.assignment] = (
                pack_files(course, [CONFIG_FILE, f"source/{job.assignment}"]),
                {path.name: path.read_bytes() for path in templates.glob(f"{job.assignment}.*") if path.is_file()})
        course_files, template_files = self._shared[job.assignment]
        course_files = {**course_files,
                        **pack_files(Path(self.settings.course), [f"submitted/{job.student}/{job.assignment}"])}
        return self.client.submit(_grade_remotely, job, course_files, template_files, self.settings,
                                  key=f"grade-{job.assignment}-{job.student}-{uuid.uuid4().hex[:8]}", pure=False,
                                  workers=[address], allow_other_workers=False, retries=0)

    def _collect(self, task: _Task) -> Outcome:
        try:
            outcome, files = task.future.result()
        except Exception as error:  # noqa: BLE001 - the task's failure is this submission's alone
            return _failed(task, f"its grading task failed on the Dask cluster: {type(error).__name__}: "
                                 f"{str(error)[:300]}")
        workdir = Path(self.settings.course)
        for stage in ("autograded", "feedback"):
            shutil.rmtree(workdir / stage / task.job.student / task.job.assignment, ignore_errors=True)
        unpack_files(files, workdir)
        return outcome

    def _settle(self, address: str, task: _Task, workers: set[str], restarted: set[str]) -> Outcome | None:
        """The task's outcome once it has one: finished, failed, its worker gone, or out of time."""
        if task.future.done():
            return self._collect(task)
        if address not in workers:
            task.future.cancel()
            return _failed(task, f"its Dask worker ({address}) died or left the cluster")
        if time.monotonic() - task.started > self.settings.limits.time_limit + _GRACE_SECONDS:
            task.future.cancel()
            restarted.add(address)
            self.client.restart_workers([address], raise_for_error=False)
            return _failed(task, "its Dask worker did not finish within the time limit and was restarted")
        return None

    def run(self, feed: queue.Queue, on_outcome: Callable[[Outcome], None]) -> None:
        """Grade the jobs that arrive on ``feed`` (lists of jobs or of ready outcomes, then ``None``) and pass
        on each outcome."""
        from distributed import wait

        pending: deque[Job] = deque()
        running: dict[str, _Task] = {}
        restarted: set[str] = set()
        fed = False
        seen_workers = time.monotonic()
        while not fed or pending or running:
            fed = fed or _take_jobs(feed, pending, on_outcome, busy=bool(running))
            workers = set(self.client.nthreads())
            restarted &= workers
            for address in sorted(workers - running.keys() - restarted)[:len(pending)]:
                job = pending.popleft()
                running[address] = _Task(job, self._submit(job, address), time.monotonic())
            if workers:
                seen_workers = time.monotonic()
            elif pending and time.monotonic() - seen_workers > _GRACE_SECONDS:
                for job in pending:
                    on_outcome(Outcome(job.student, job.assignment, status="failed",
                                       notes=["no Dask worker was left to grade it"]))
                pending.clear()
            if not running:
                time.sleep(0.2 if pending else 0.0)  # waiting for a worker
                continue
            try:
                wait([task.future for task in running.values()], timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            for address, task in list(running.items()):
                outcome = self._settle(address, task, workers, restarted)
                if outcome is not None:
                    del running[address]
                    on_outcome(outcome)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _failed(task: _Task, why: str) -> Outcome:
    return Outcome(task.job.student, task.job.assignment, status="failed", notes=[why],
                   seconds=time.monotonic() - task.started)
