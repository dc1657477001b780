"""Grade a whole class with nbgrader, in parallel, safely: ``cml-course grade``.

The parent prepares one nbgrader course folder (the *workdir*: config, ``source/``, the class
gradebook, ``submitted/``), runs ``nbgrader generate_assignment`` once per assignment, and hands the
submissions one at a time to N worker processes (:mod:`cml.instructor.grading.engine`). Each worker grades in
a private copy of the course and returns the grades; the parent alone writes them into the class
gradebook (:mod:`cml.instructor.grading.gradebook`), collects ``autograded/``, ``feedback/`` and the logs, and
writes a CSV and a JSON report of the run. nbgrader stays the source of truth: the formgrader, export
and feedback commands work on the workdir as on any nbgrader course.

A worker that dies or hangs costs only the submission it held (reported as ``failed``); a new worker
takes its place.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import queue
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

import psutil
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning
from tqdm.auto import tqdm

import cml
from cml.instructor.grading.baseline import prepare_workdir
from cml.instructor.grading.gradebook import add_assignments, merge_submission, use_database
from cml.instructor.grading.grader import GRADING_ENVIRONMENT
from cml.instructor.course import Course
from cml.instructor.authoring.release import nbgrader_environment, run_nbgrader
from cml.instructor.isolation.sandbox import write_kernelspec
from cml.instructor.preprocessors.verdicts import draw_seed, record_reference
from cml.instructor.isolation.watchdog import become_subreaper, kill_processes
from cml.instructor.grading.engine import Job, Limits, Outcome, WorkerSettings, grade_submission

__all__ = ["SANDBOX_UID_BASE", "GradingRun", "copy_submissions", "default_workers", "format_outcomes", "grade_class",
           "prepare_grading_process"]

SANDBOX_UID_BASE = 64200
"""Worker ``i`` runs its kernels as user id ``SANDBOX_UID_BASE + i`` when grading as root."""
_GRACE_SECONDS = 120
"""How long past a submission's time limit its worker may take before the parent kills it."""


@dataclass
class GradingRun:
    outcomes: list[Outcome]
    seconds: float
    workers: int
    csv_report: Path
    json_report: Path
    run_notes: list[str]
    """What concerns the whole run: files not copied, isolation measures unavailable."""
    grading_seed: int | None = None
    """The seed drawn for this run's hidden tests and reference runs (``None``: no out-of-kernel verdicts)."""
    reference_problems: list[str] = field(default_factory=list)
    """Reference runs that failed, or solutions that failed a cell with this seed (also in ``run_notes``)."""

    def submissions_per_minute(self) -> float:
        return 60 * len(self.outcomes) / self.seconds if self.seconds else 0.0


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}\Z")
"""The student ids (folder names) graded: nbgrader's formgrader writes them into its pages unescaped."""


def copy_submissions(submissions: Path, target: Path) -> list[str]:
    """Copy ``<student>/<assignment>/...`` keeping only plain files and folders; notes on what was left out.

    Links could point at other students' work or at the grader's files, and the grader reads what it copies.
    A student folder whose name is not a plain id (:data:`STUDENT_ID`) is left out, with a note.
    """
    notes = []
    for folder, folders, files in os.walk(submissions):
        relative = Path(folder).relative_to(submissions)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in list(folders):
            if name.startswith(".") or os.path.islink(os.path.join(folder, name)):
                folders.remove(name)
                if not name.startswith("."):
                    notes.append(f"{relative / name}: a link to a folder was not copied")
            elif relative == Path(".") and not STUDENT_ID.match(name):
                folders.remove(name)
                notes.append(f"student folder {name!a} not graded: a student id is letters, digits and . _ - @ + "
                             "(rename the folder)")
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if name.startswith("."):
                continue
            if not stat.S_ISREG(mode):
                notes.append(f"{relative / name}: not a plain file (a link?), not copied")
                continue
            shutil.copyfile(path, target / relative / name)
    return notes


def _plan(workdir: Path, assignments: list[str]) -> list[Job]:
    submitted = workdir / "submitted"
    students = sorted(p.name for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []
    return [Job(student, assignment) for assignment in assignments for student in students
            if (submitted / student / assignment).is_dir()]


def _course_folders_to_hide(course: Course) -> list[Path]:
    """Every folder of the course directory a kernel has no business reading: all but the release, the
    ``cml`` package and the Python environment (sources with solutions, tests, examples, ``.git``, ...)."""
    needed = [Path(sys.prefix).resolve(), Path(cml.__file__).resolve().parent, course.release.resolve()]
    return [entry for entry in course.root.resolve().iterdir()
            if entry.is_dir() and not any(entry == path or entry in path.parents for path in needed)]


def _unprivileged_user_works(uid: int) -> bool:
    """Can a process running as ``uid`` import the kernel and the course package (is the environment readable)?"""
    try:
        probe = subprocess.run([sys.executable, "-c", "import ipykernel, cml"], user=uid, group=uid, extra_groups=[],
                               cwd="/", capture_output=True, timeout=120, check=False)
    except OSError:  # the interpreter itself is out of reach (a Python installed under /root, say)
        return False
    return probe.returncode == 0


def prepare_grading_process(kernelspecs: str) -> None:
    """Once in every process that runs :func:`~cml.instructor.grading.engine.grade_submission` (a local worker, a Dask
    worker): adopt the kernels' orphans, find the sandbox kernelspec in ``kernelspecs``, set the kernels'
    environment."""
    become_subreaper()
    # nbgrader's autograde makes SQLAlchemy warn about autoflush on every new submission; it is harmless.
    warnings.filterwarnings("ignore", category=SAWarning)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [kernelspecs, os.environ.get("JUPYTER_PATH")]))
    os.environ.update(GRADING_ENVIRONMENT)


def _serve(index: int, connection: Connection, settings: WorkerSettings) -> None:
    """A worker process: grade the jobs the parent sends until it sends ``None``."""
    prepare_grading_process(settings.kernelspecs)
    while True:
        job = connection.recv()
        if job is None:
            return
        connection.send(grade_submission(job, settings, index))


@dataclass
class _Slot:
    index: int
    process: multiprocessing.process.BaseProcess
    connection: Connection
    job: Job | None = None
    started: float = 0.0


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


class _WorkerPool:
    def __init__(self, size: int, settings: WorkerSettings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.slots = [self._start(index) for index in range(size)]

    def _start(self, index: int) -> _Slot:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(index, theirs, self.settings), daemon=True,
                                       name=f"cml-grader-{index}")
        process.start()
        theirs.close()
        return _Slot(index, process, ours)

    def _replace(self, slot: _Slot) -> None:
        _kill_tree(slot.process.pid)
        slot.process.join(timeout=5)
        self.slots[slot.index] = self._start(slot.index)

    def run(self, feed: queue.Queue, on_outcome: Callable[[Outcome], None]) -> None:
        """Grade the jobs that arrive on ``feed`` (lists of jobs or of ready outcomes, then ``None``) and pass
        on each outcome."""
        pending: deque[Job] = deque()
        fed = False
        deadline = self.settings.limits.time_limit + _GRACE_SECONDS
        while not fed or pending or any(slot.job for slot in self.slots):
            fed = fed or _take_jobs(feed, pending, on_outcome, busy=any(slot.job for slot in self.slots))
            for slot in self.slots:
                if slot.job is None and pending:
                    slot.job, slot.started = pending.popleft(), time.monotonic()
                    slot.connection.send(slot.job)
            busy = [slot for slot in self.slots if slot.job]
            if not busy:
                continue
            wait([s.connection for s in busy] + [s.process.sentinel for s in busy], timeout=0.5)
            for slot in busy:
                outcome = None
                if slot.connection.poll():
                    try:
                        outcome = slot.connection.recv()
                    except (EOFError, OSError):
                        outcome = None
                if outcome is None and slot.process.is_alive() and time.monotonic() - slot.started < deadline:
                    continue
                if outcome is None:
                    why = ("its grading worker did not finish within the time limit and was killed"
                           if slot.process.is_alive() else
                           f"its grading worker died (exit code {slot.process.exitcode})")
                    outcome = Outcome(slot.job.student, slot.job.assignment, status="failed", notes=[why],
                                      seconds=time.monotonic() - slot.started, worker=slot.index)
                    self._replace(slot)
                    slot = self.slots[slot.index]
                slot.job = None
                on_outcome(outcome)

    def close(self) -> None:
        for slot in self.slots:
            try:
                slot.connection.send(None)
            except OSError:
                pass
        for slot in self.slots:
            slot.process.join(timeout=10)
            if slot.process.is_alive():
                _kill_tree(slot.process.pid)


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        kill_processes(root.children(recursive=True) + [root])
    except psutil.Error:
        return


class _GradebookWriter:
    """The one writer of the class gradebook. It is built by ``generate_assignment`` in a separate file while
    grading starts; grades that arrive before it is complete wait, then go in one by one.

    With ``db_url`` (a PostgreSQL database, say) the class gradebook is that database instead: once the
    assignments are generated, nbgrader records them there too, keeping what the database already holds."""

    def __init__(self, database: Path, building: Path, db_url: str | None = None,
                 assignments: list[str] | None = None) -> None:
        self.database, self.building = database, building
        self.db_url, self.assignments = db_url, assignments or []
        self.ready = threading.Event()
        self.waiting: list[Outcome] = []
        self.problem: str | None = None

    def merge(self, outcome: Outcome) -> None:
        if outcome.payload:
            self.waiting.append(outcome)
        if self.ready.is_set():
            self.flush()

    def flush(self) -> None:
        if not self.ready.is_set() or not self.waiting:
            return
        with Gradebook(self.db_url or f"sqlite:///{self.database}") as gradebook:
            for outcome in self.waiting:
                merge_submission(gradebook, outcome.student, outcome.assignment, outcome.payload,
                                 flagged=outcome.status != "graded")
        self.waiting.clear()

    def publish(self) -> None:
        """Called once every assignment is generated: the built gradebook becomes the class gradebook (with a
        ``db_url``, the generated assignments go into that database; if they cannot, no grade goes there)."""
        if self.db_url is None:
            shutil.copy(self.building, self.database)
        else:
            generated = [name for name in self.assignments if (self.building.parent / f"{name}.db").exists()]
            try:
                add_assignments(self.database.parent, generated)
            except RuntimeError as error:
                self.problem = (f"no grade was written to the gradebook database: {str(error).strip().splitlines()[-1]}"
                                f" (see {self.database.parent / 'grading.log'})")
                return
        self.ready.set()


def _record_reference(workdir: Path, assignment: str, seed: int, templates: Path, timeout: int) -> list[str]:
    """Run the assignment's solution with the grading seed and keep its check log, ``<assignment>.reference.json``,
    for the verdicts given outside the kernels; notes on what went wrong."""
    scratch = Path(tempfile.mkdtemp(prefix=f"reference-{assignment}-", dir=templates))
    try:
        reference = record_reference(workdir / "source" / assignment, seed, scratch, timeout=timeout,
                                     environment=GRADING_ENVIRONMENT)
    except Exception as error:  # noqa: BLE001 - grading goes on with the kernels' own verdicts, and says so
        why = f"{type(error).__name__}: {str(error)[:200]}"
        return [f"{assignment}: no verdicts outside the kernels, the reference run failed: {why}"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (templates / f"{assignment}.reference.json").write_text(json.dumps(reference))
    failed = sorted(grade_id for cells in reference["notebooks"].values()
                    for grade_id, cell in cells.items() if cell["failed"])
    if not failed:
        return []
    return [f"{assignment}: the solution fails {', '.join(failed)} with seed {seed}; those cells keep the kernel's verdict"]


def _generate_assignments(workdir: Path, assignments: list[str], templates: Path, jobs: list[Job],
                          feed: queue.Queue, writer: _GradebookWriter, seed: int | None = None,
                          timeout: int = 120, reference_problems: list[str] | None = None) -> None:
    """``nbgrader generate_assignment`` for each assignment, feeding its jobs to the pool once it is done
    (or their failed outcomes, if it fails). With a grading ``seed``, the solution's reference run comes
    first (:func:`_record_reference`)."""
    building = templates / "building.db"
    try:
        for assignment in assignments:
            mine = [job for job in jobs if job.assignment == assignment]
            try:
                run_nbgrader(["generate_assignment", assignment, "--force", "--db", f"sqlite:///{building}"],
                             workdir, log=workdir / "grading.log")
            except RuntimeError as error:
                why = f"nbgrader generate_assignment failed: {str(error).splitlines()[0]}"
                feed.put([Outcome(job.student, job.assignment, status="failed", notes=[why]) for job in mine])
                continue
            shutil.copy(building, templates / f"{assignment}.db")
            (templates / f"{assignment}.db").chmod(0o600)
            if seed is not None and mine:
                notes = _record_reference(workdir, assignment, seed, templates, timeout)
                (reference_problems if reference_problems is not None else []).extend(notes)
            feed.put(mine)
    finally:
        if building.exists():
            writer.publish()
        feed.put(None)


def _row(outcome: Outcome) -> dict:
    return {
        "student": outcome.student,
        "assignment": outcome.assignment,
        "status": outcome.status,
        "code_score": round(outcome.code_total("auto_score"), 4),
        "max_code_score": round(outcome.code_total("max_score"), 4),
        "seconds": round(outcome.seconds, 2),
        "execution_seconds": round(outcome.execution_seconds, 2),
        "peak_memory_mb": round(outcome.peak_memory_mb, 1),
        "peak_disk_mb": round(outcome.peak_disk_mb, 1),
        "notes": " | ".join(outcome.notes),
    }


def _write_reports(run_dir: Path, outcomes: list[Outcome], summary: dict) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [_row(outcome) for outcome in outcomes]
    csv_path, json_path = run_dir / "grades.csv", run_dir / "report.json"
    with open(csv_path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["student"])
        writer.writeheader()
        writer.writerows(rows)
    details = [{**row, "notes": outcome.notes, "isolation_gaps": outcome.isolation_gaps, "worker": outcome.worker,
                "phases": {name: round(seconds, 3) for name, seconds in outcome.phases.items()},
                "cells": [{"notebook": notebook["name"], **grade} for notebook in outcome.payload.get("notebooks", [])
                          for grade in notebook["grades"]]}
               for row, outcome in zip(rows, outcomes)]
    json_path.write_text(json.dumps({**summary, "submissions": details}, indent=1))
    return csv_path, json_path


def grade_class(
    course: Course,
    submissions: Path,
    workdir: Path,
    assignments: list[str] | None = None,
    *,
    workers: int | None = None,
    limits: Limits | None = None,
    sandbox: bool = True,
    feedback: bool = True,
    progress: bool = True,
    verdicts: bool = True,
    cluster: str | None = None,
    db_url: str | None = None,
) -> GradingRun:
    """Autograde every submission in ``submissions/<student>/<assignment>/`` into the nbgrader course ``workdir``.

    ``cluster``: grade on Dask workers instead of local processes, ``"local"`` for a cluster of ``workers``
    processes on this machine, else a scheduler's address (:mod:`cml.instructor.grading.cluster`). ``db_url``: the class
    gradebook is that database (an SQLAlchemy URL, e.g. ``postgresql://grader@dbhost/grades``) instead of
    ``workdir/gradebook.db``.

    With ``verdicts`` (the default), every grade cell is also judged outside the kernel against a run of the
    solution with a seed drawn now (:mod:`cml.instructor.preprocessors.verdicts`).
    """
    started = time.perf_counter()
    limits = limits or Limits()
    os.environ.update(nbgrader_environment())  # the workers inherit it
    assignments = assignments or course.assignments()
    workers = max(1, workers or default_workers())
    prepare_workdir(course, workdir, assignments)
    workdir.chmod(0o700)
    if db_url:
        use_database(workdir, db_url)
    run_notes = copy_submissions(submissions, workdir / "submitted")
    if sandbox and not sys.platform.startswith("linux"):
        run_notes.append(f"no sandbox: kernels are isolated on Linux only, not on {sys.platform}")
        sandbox = False
    jobs = _plan(workdir, assignments)
    workers = min(workers, max(1, len(jobs)))
    seed = draw_seed() if verdicts else None
    reference_problems: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="cml-grade-"))
    scratch.chmod(0o711)
    outcomes: list[Outcome] = []
    try:
        templates = scratch / "template"
        templates.mkdir(mode=0o700)
        # Made now, so that each kernel's view of the file system can cover the other workers' folders.
        worker_dirs = [scratch / f"worker-{index}" for index in range(workers)]
        for folder in worker_dirs:
            folder.mkdir(mode=0o711)
        # Dask workers choose their kernels' user themselves.
        uid_base = SANDBOX_UID_BASE if sandbox and os.geteuid() == 0 and cluster is None else None
        if uid_base is not None and not _unprivileged_user_works(uid_base):
            run_notes.append("kernels run as the grader's user: an unprivileged user cannot read the Python "
                              "environment")
            uid_base = None
        hidden = [workdir, submissions.resolve(), *_course_folders_to_hide(course), templates, *worker_dirs]
        settings = WorkerSettings(course=str(workdir), templates=str(templates), scratch=str(scratch),
                                  kernelspecs=str(write_kernelspec(scratch / "jupyter")), limits=limits,
                                  sandbox=sandbox, uid_base=uid_base, feedback=feedback, grading_seed=seed,
                                  hidden_paths=tuple(str(path) for path in hidden if sandbox and path.is_dir()))
        bar = tqdm(total=len(jobs), unit="submission", disable=not progress, dynamic_ncols=True)
        writer = _GradebookWriter(workdir / "gradebook.db", templates / "building.db", db_url, assignments)
        feed: queue.Queue = queue.Queue()

        def record(outcome: Outcome) -> None:
            writer.merge(outcome)
            outcomes.append(outcome)
            bar.set_postfix_str(f"{outcome.student}/{outcome.assignment}: {outcome.status}", refresh=False)
            bar.update()

        # Workers start (and import nbgrader) while the assignments are generated; each assignment's
        # submissions are handed out as soon as it is ready.
        if cluster is None:
            pool = _WorkerPool(workers, settings)
        else:
            from cml.instructor.grading.cluster import DaskPool  # not at the top: it imports this module

            pool = DaskPool(None if cluster == "local" else cluster, workers, settings)
            run_notes.append(pool.description)
        generator = threading.Thread(target=_generate_assignments, daemon=True,
                                     args=(workdir, assignments, templates, jobs, feed, writer, seed,
                                           limits.cell_timeout, reference_problems))
        generator.start()
        try:
            pool.run(feed, record)
        finally:
            pool.close()
            bar.close()
        generator.join()
        run_notes += reference_problems
        writer.flush()
        run_notes += [writer.problem] if writer.problem else []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcomes.sort(key=lambda o: (o.assignment, o.student))
    seconds = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary = {"started": stamp, "seconds": round(seconds, 2), "workers": workers, "limits": asdict(limits),
               "sandbox": sandbox, "unprivileged_user": uid_base is not None, "grading_seed": seed,
               "run_notes": run_notes,
               "submissions_per_minute": round(60 * len(outcomes) / seconds, 2) if seconds else 0.0}
    csv_path, json_path = _write_reports(workdir / "reports" / stamp, outcomes, summary)
    return GradingRun(outcomes, seconds, workers, csv_path, json_path, run_notes, seed, reference_problems)


def format_outcomes(outcomes: list[Outcome]) -> str:
    """A plain-text table: score, status and what happened, one line per submission."""
    header = f"{'student':<16} {'assignment':<22} {'autograded':>12} {'status':<8} {'seconds':>7}  notes"
    lines = [header, "-" * len(header)]
    for outcome in outcomes:
        row = _row(outcome)
        notes = row["notes"] if len(row["notes"]) <= 70 else row["notes"][:67] + "..."
        lines.append(f"{outcome.student:<16} {outcome.assignment:<22} {row['code_score']:>6g}/{row['max_code_score']:<5g} "
                     f"{outcome.status:<8} {outcome.seconds:>7.1f}  {notes or '-'}")
    return "\n".join(lines)
