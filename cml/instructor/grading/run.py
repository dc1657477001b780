"""Grade a whole class with nbgrader, in parallel, safely: ``cml-course grade``.

The parent prepares one nbgrader course folder (the *workdir*: config, ``source/``, the class gradebook,
``submitted/``), runs ``nbgrader generate_assignment`` once per assignment (and, with verdicts, the reference run
of the solution with a seed drawn now: :mod:`cml.instructor.grading.reference`), and hands the submissions one at a
time to the workers of a pool (:mod:`cml.instructor.grading.pools`), each of which grades with the one engine
(:mod:`cml.instructor.grading.engine`). The parent alone writes the grades into the class gradebook
(:mod:`cml.instructor.grading.gradebook`), collects ``autograded/``, ``feedback/`` and the logs, and writes a CSV
and a JSON report of the run. nbgrader stays the source of truth: the formgrader, export and feedback commands work
on the workdir as on any nbgrader course.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nbgrader.api import Gradebook
from tqdm.auto import tqdm

import cml
from cml.instructor.authoring.release import CONFIG_FILE, nbgrader_environment, run_nbgrader
from cml.instructor.course import Course
from cml.instructor.defaults import CELL_TIMEOUT_SECONDS, GRADING_ENVIRONMENT
from cml.instructor.grading.gradebook import add_assignments, merge_submission, use_database
from cml.instructor.grading.model import Job, Limits, Outcome, Status, WorkerSettings
from cml.instructor.grading.pools import LocalPool, WorkerPool, failed
from cml.instructor.grading.reference import draw_seed, record_reference
from cml.instructor.isolation.sandbox import write_kernelspec
from cml.instructor.isolation.users import LOCAL_UID_BASE, unprivileged_user_works

__all__ = ["GradingOptions", "GradingRun", "copy_submissions", "default_workers", "format_outcomes", "grade_class",
           "prepare_workdir"]


@dataclass(frozen=True)
class GradingOptions:
    """How to grade a class (see ``cml-course grade --help``)."""

    workers: int | None = None
    """Grading processes; None: one per usable core."""
    limits: Limits = Limits()
    sandbox: bool = True
    feedback: bool = True
    progress: bool = True
    verdicts: bool = True
    """Judge every grade cell again outside the kernel against a reference run with a seed drawn now."""
    fork_kernels: bool = True
    """Fork kernels from a zygote that has loaded the assignment's libraries (False: fresh kernels)."""
    cluster: str | None = None
    """Grade on Dask workers: ``"local"`` for a local cluster of ``workers`` processes, else a scheduler's address."""
    db_url: str | None = None
    """The class gradebook in this database (an SQLAlchemy URL) instead of ``workdir/gradebook.db``."""
    stop_after: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """``(student, assignment)``: grade ids after which that submission stops (see :class:`~.model.Job`)."""
    restart_budget: int | None = None
    """How many dead or overrunning workers a pool replaces in this run; None: the pool's default."""
    seed: int | None = None
    """The grading seed of the hidden tests and the reference runs; None: drawn now. Given to grade described
    submissions with a past run's seed, so that their values compare with that run's (the class report)."""


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


def _plan(workdir: Path, assignments: list[str], stop_after: Mapping[tuple[str, str], tuple[str, ...]]) -> list[Job]:
    submitted = workdir / "submitted"
    students = sorted(p.name for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []
    return [Job(student, assignment, tuple(stop_after.get((student, assignment), ())))
            for assignment in assignments for student in students if (submitted / student / assignment).is_dir()]


def _course_folders_to_hide(course: Course) -> list[Path]:
    """Every folder of the course directory a kernel has no business reading: all but the release, the
    ``cml`` package and the Python environment (sources with solutions, tests, examples, ``.git``, ...)."""
    needed = [Path(sys.prefix).resolve(), Path(cml.__file__).resolve().parent, course.release.resolve()]
    return [entry for entry in course.root.resolve().iterdir()
            if entry.is_dir() and not any(entry == path or entry in path.parents for path in needed)]


def prepare_workdir(course: Course, workdir: Path, assignments: list[str]) -> None:
    """A fresh nbgrader course directory with the config and the source of ``assignments``."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "source").mkdir(parents=True)
    shutil.copy(course.root / CONFIG_FILE, workdir / CONFIG_FILE)
    for assignment in assignments:
        shutil.copytree(course.source / assignment, workdir / "source" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


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
                                 flagged=outcome.status != Status.GRADED)
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
    failing = sorted(grade_id for cells in reference["notebooks"].values()
                     for grade_id, cell in cells.items() if cell["failed"])
    if not failing:
        return []
    return [f"{assignment}: the solution fails {', '.join(failing)} with seed {seed}; those cells keep the kernel's verdict"]


def _generate_assignments(workdir: Path, assignments: list[str], templates: Path, jobs: list[Job],
                          feed: queue.Queue, writer: _GradebookWriter, seed: int | None = None,
                          timeout: int = CELL_TIMEOUT_SECONDS, reference_problems: list[str] | None = None) -> None:
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
                feed.put([failed(job, why) for job in mine])
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
        "remarks": " | ".join(outcome.remarks),
        "kernel_start_seconds": round(outcome.kernel_start_seconds, 2),
        "kernels_forked": outcome.kernels_forked,
    }


def _write_reports(run_dir: Path, outcomes: list[Outcome], summary: dict) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [_row(outcome) for outcome in outcomes]
    csv_path, json_path = run_dir / "grades.csv", run_dir / "report.json"
    with open(csv_path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["student"])
        writer.writeheader()
        writer.writerows(rows)
    details = [{**row, "notes": outcome.notes, "remarks": outcome.remarks, "isolation_gaps": outcome.isolation_gaps, "worker": outcome.worker,
                "phases": {name: round(seconds, 3) for name, seconds in outcome.phases.items()},
                "cells": [{"notebook": notebook["name"], **grade} for notebook in outcome.payload.get("notebooks", [])
                          for grade in notebook["grades"]],
                "checks": outcome.checks}
               for row, outcome in zip(rows, outcomes)]
    json_path.write_text(json.dumps({**summary, "submissions": details}, indent=1))
    return csv_path, json_path


def _settings(course: Course, workdir: Path, submissions: Path, scratch: Path, options: GradingOptions, workers: int,
              seed: int | None, run_notes: list[str]) -> WorkerSettings:
    """What every grading process needs: folders, limits, isolation, the seed."""
    templates = scratch / "template"
    templates.mkdir(mode=0o700)
    # Made now, so that each kernel's view of the file system can cover the other workers' folders.
    worker_dirs = [scratch / f"worker-{index}" for index in range(workers)]
    for folder in worker_dirs:
        folder.mkdir(mode=0o711)
    # Dask workers choose their kernels' user themselves.
    uid_base = LOCAL_UID_BASE if options.sandbox and os.geteuid() == 0 and options.cluster is None else None
    if uid_base is not None and not unprivileged_user_works(uid_base):
        run_notes.append("kernels run as the grader's user: an unprivileged user cannot read the Python environment")
        uid_base = None
    hidden = [workdir, submissions.resolve(), *_course_folders_to_hide(course), templates, *worker_dirs]
    return WorkerSettings(course=str(workdir), templates=str(templates), scratch=str(scratch),
                          kernelspecs=str(write_kernelspec(scratch / "jupyter")), limits=options.limits,
                          sandbox=options.sandbox, uid_base=uid_base, feedback=options.feedback, grading_seed=seed,
                          fork_kernels=options.fork_kernels,
                          hidden_paths=tuple(str(path) for path in hidden if options.sandbox and path.is_dir()))


def _pool(options: GradingOptions, workers: int, settings: WorkerSettings) -> WorkerPool:
    if options.cluster is None:
        return LocalPool(workers, settings, options.restart_budget)
    from cml.instructor.grading.cluster import DaskPool  # distributed is imported only when a cluster is used

    return DaskPool(None if options.cluster == "local" else options.cluster, workers, settings, options.restart_budget)


def _grade_jobs(workdir: Path, assignments: list[str], jobs: list[Job], settings: WorkerSettings,
                options: GradingOptions, workers: int, run_notes: list[str]) -> tuple[list[Outcome], list[str]]:
    """Generate the assignments (and reference runs) in a thread while the pool grades what is ready; returns the
    outcomes and the problems of the reference runs (also added to ``run_notes``)."""
    templates = Path(settings.templates)
    writer = _GradebookWriter(workdir / "gradebook.db", templates / "building.db", options.db_url, assignments)
    bar = tqdm(total=len(jobs), unit="submission", disable=not options.progress, dynamic_ncols=True)
    feed: queue.Queue = queue.Queue()
    outcomes: list[Outcome] = []
    reference_problems: list[str] = []

    def record(outcome: Outcome) -> None:
        writer.merge(outcome)
        outcomes.append(outcome)
        bar.set_postfix_str(f"{outcome.student}/{outcome.assignment}: {outcome.status}", refresh=False)
        bar.update()

    # Workers start (and import nbgrader) while the assignments are generated; each assignment's submissions are
    # handed out as soon as it is ready.
    pool = _pool(options, workers, settings)
    run_notes += [pool.description] if pool.description else []
    generator = threading.Thread(target=_generate_assignments, daemon=True,
                                 args=(workdir, assignments, templates, jobs, feed, writer, settings.grading_seed,
                                       options.limits.cell_timeout, reference_problems))
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
    return outcomes, reference_problems


def grade_class(course: Course, submissions: Path, workdir: Path, assignments: list[str] | None = None,
                options: GradingOptions | None = None, **overrides: object) -> GradingRun:
    """Autograde every submission in ``submissions/<student>/<assignment>/`` into the nbgrader course ``workdir``.

    ``options`` (with any of its fields given as keywords in ``overrides``) say how: see :class:`GradingOptions`.
    """
    options = replace(options or GradingOptions(), **overrides)
    started = time.perf_counter()
    os.environ.update(nbgrader_environment())  # the workers inherit it
    assignments = assignments or course.assignments()
    prepare_workdir(course, workdir, assignments)
    workdir.chmod(0o700)
    if options.db_url:
        use_database(workdir, options.db_url)
    run_notes = copy_submissions(submissions, workdir / "submitted")
    if options.sandbox and not sys.platform.startswith("linux"):
        run_notes.append(f"no sandbox: kernels are isolated on Linux only, not on {sys.platform}")
        options = replace(options, sandbox=False)
    jobs = _plan(workdir, assignments, options.stop_after)
    workers = min(max(1, options.workers or default_workers()), max(1, len(jobs)))
    seed = (draw_seed() if options.seed is None else options.seed) if options.verdicts else None
    scratch = Path(tempfile.mkdtemp(prefix="cml-grade-"))
    scratch.chmod(0o711)
    try:
        settings = _settings(course, workdir, submissions, scratch, options, workers, seed, run_notes)
        outcomes, reference_problems = _grade_jobs(workdir, assignments, jobs, settings, options, workers, run_notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcomes.sort(key=lambda o: (o.assignment, o.student))
    seconds = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary = {"started": stamp, "seconds": round(seconds, 2), "workers": workers, "limits": asdict(options.limits),
               "sandbox": options.sandbox, "unprivileged_user": settings.uid_base is not None, "grading_seed": seed,
               "fork_kernels": options.fork_kernels, "run_notes": run_notes,
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
