"""Grade a class on a Dask cluster: worker processes on other machines, no file system in common.

:func:`~cml.instructor.grading.run.grade_class` hands its submissions to :class:`DaskPool` instead of local
processes when it is given ``cluster=``: ``"local"`` for a :class:`~distributed.LocalCluster` of worker
processes on this machine, or a scheduler's address (``tcp://host:8786``) for workers started anywhere with
``dask worker ADDRESS --nthreads 1``. A task carries what its submission needs as bytes (the course config,
the assignment's source and gradebook templates, the student's folder); the worker writes them into a folder
of its own, grades there with :class:`~cml.instructor.grading.engine.GradingWorker` exactly as a local grading
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
import shutil
import stat
import tempfile
import uuid
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cml.instructor.authoring.release import CONFIG_FILE, nbgrader_environment
from cml.instructor.isolation.sandbox import write_kernelspec
from cml.instructor.defaults import GRACE_SECONDS
from cml.instructor.grading.engine import GradingWorker
from cml.instructor.grading.model import Job, Outcome, WorkerSettings
from cml.instructor.grading.pools import WorkerPool, failed, prepare_grading_process
from cml.instructor.isolation.users import DASK_UID_BASE, unprivileged_user_works

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["DaskPool", "pack_files", "unpack_files"]

Files = dict[str, bytes]
"""File contents by path, relative to some folder (``/``-separated)."""
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


@dataclass
class _Place:
    """Where one Dask worker process grades. ``slot`` is its number among the grading processes of its machine
    (its private folder is ``root/worker-<slot>``, its kernels' user ``uid_base + slot``); ``folder`` holds its
    copy of the course and templates."""

    slot: int
    root: Path
    folder: Path
    uid_base: int | None
    lock: IO
    grader: GradingWorker | None = None
    """This process's grading worker, kept from one task to the next (with its kernels' zygote)."""


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
        privileged = os.geteuid() == 0 and unprivileged_user_works(DASK_UID_BASE + slot)
        _PLACE = _Place(slot, root, folder, DASK_UID_BASE if privileged else None, lock)
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
    if place.grader is None:
        place.grader = GradingWorker(local, place.slot)
    place.grader.settings = local  # the same run's settings but for this task's folders: the zygote stays
    outcome = place.grader.grade(job)
    if settings.sandbox and os.geteuid() == 0 and place.uid_base is None:
        outcome.isolation_gaps.append("kernels ran as the grader's user: an unprivileged user cannot read the "
                                      "Python environment")
    produced = [f"autograded/{job.student}/{job.assignment}", f"feedback/{job.student}/{job.assignment}",
                f"logs/{job.assignment}/{job.student}.log"]
    return outcome, pack_files(course, produced)


class DaskPool(WorkerPool):
    """Grade on a Dask cluster (a scheduler's ``address``, or ``size`` local worker processes when ``None``). A
    worker is one Dask worker address; one that overruns is restarted, one that dies or leaves is just gone."""

    def __init__(self, address: str | None, size: int, settings: WorkerSettings,
                 restart_budget: int | None = None) -> None:
        from distributed import Client, LocalCluster

        super().__init__(settings.limits.time_limit, size + 3 if restart_budget is None else restart_budget)
        self.settings = settings
        self.cluster = None if address else LocalCluster(n_workers=size, threads_per_worker=1, processes=True,
                                                         dashboard_address=":0")
        self.client = Client(address or self.cluster)
        if address:
            self.client.wait_for_workers(1, timeout=GRACE_SECONDS)
        where = f"the Dask cluster at {address}" if address else "a local Dask cluster"
        self.description = f"graded on {where}: {len(self.client.nthreads())} workers at the start"
        # The workers get ready while the assignments are generated (kept: a released future would be dropped).
        self._preparing = [self.client.submit(_prepare, key=f"prepare-{uuid.uuid4().hex[:8]}", pure=False,
                                              workers=[worker], allow_other_workers=False)
                           for worker in self.client.nthreads()]
        self._shared: dict[str, tuple[Files, Files]] = {}
        self._futures: dict[str, Future] = {}
        self._restarting: set[str] = set()

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

    def idle_workers(self, busy: set[Hashable]) -> list[Hashable]:
        workers = set(self.client.nthreads())
        self._restarting &= workers
        return sorted(workers - busy - self._restarting)

    def start(self, worker: Hashable, job: Job) -> None:
        self._futures[worker] = self._submit(job, worker)

    def wait(self, busy: set[Hashable], timeout: float) -> None:
        from distributed import wait

        try:
            wait([self._futures[worker] for worker in busy], timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass

    def settle(self, worker: Hashable, job: Job, seconds: float, overdue: bool) -> Outcome | None:
        future = self._futures[worker]
        if future.done():
            del self._futures[worker]
            return self._collect(job, future, seconds)
        if worker not in self.client.nthreads():
            future.cancel()
            del self._futures[worker]
            return failed(job, f"its Dask worker ({worker}) died or left the cluster", seconds)
        if overdue:
            future.cancel()
            del self._futures[worker]
            if self.replaced():
                self._restarting.add(worker)
                self.client.restart_workers([worker], raise_for_error=False)
            else:
                self.client.retire_workers([worker], close_workers=True)
            return failed(job, "its Dask worker did not finish within the time limit and was restarted", seconds)
        return None

    def _collect(self, job: Job, future: Future, seconds: float) -> Outcome:
        try:
            outcome, files = future.result()
        except Exception as error:  # noqa: BLE001 - the task's failure is this submission's alone
            return failed(job, f"its grading task failed on the Dask cluster: {type(error).__name__}: "
                               f"{str(error)[:300]}", seconds)
        workdir = Path(self.settings.course)
        for stage in ("autograded", "feedback"):
            shutil.rmtree(workdir / stage / job.student / job.assignment, ignore_errors=True)
        unpack_files(files, workdir)
        return outcome

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
