"""Grade one submission with nbgrader in a private course folder of its own.

A grading worker handles one submission at a time. For each it builds a throwaway nbgrader course
(``private/course``) holding a copy of the gradebook as ``generate_assignment`` left it, the
assignment's source and this one student's files, and runs nbgrader's own ``Autograde`` and
``GenerateFeedback`` converters there, in this process. Nothing in it is shared with another worker,
so workers never contend for a database lock; the parent copies the grades into the class gradebook
(:func:`cml.instructor.grading.gradebook.merge_submission`) one submission at a time.

The kernel runs through :mod:`cml.instructor.isolation.sandbox` as user ``uid`` (when the worker is root),
in ``private/home`` (its ``HOME``, caches and working folder, the only place it may write), while
:class:`~cml.instructor.isolation.watchdog.KernelWatchdog` enforces the memory and time limits.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades
from traitlets.config import Config, PyFileConfigLoader

from cml.check_log import SEED_VARIABLE
from cml.instructor.preprocessors import execute as execution
from cml.instructor.preprocessors.execute import ResilientExecute, SandboxKernelManager
from cml.instructor.grading.grader import GRADING_ENVIRONMENT
from cml.instructor.preprocessors.intake import prepare_submission
from cml.instructor.authoring.release import CONFIG_FILE
from cml.instructor.web.sanitize import SanitizeNotebook
from cml.instructor.isolation.sandbox import KERNEL_NAME, POLICY_VARIABLE, SandboxPolicy, read_outcome
from cml.instructor.preprocessors.verdicts import CheckVerdicts
from cml.instructor.isolation.watchdog import KernelWatchdog

__all__ = ["Job", "Limits", "Outcome", "WorkerSettings", "grade_submission", "submission_payload", "zero_payload"]


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    cell_timeout: int = 120
    """Seconds one cell may run before it is interrupted."""
    time_limit: float = 900.0
    """Seconds the whole submission (all its notebooks) may take."""
    memory_mb: int = 4096
    """Resident memory of the kernel and everything it starts, together."""
    disk_mb: int = 1024
    """What the kernel may write, together: its private folder, its temporary files and ``/dev/shm`` (sandboxed
    kernels only: the sandbox keeps them in a file system of this size, in memory)."""
    max_output_bytes: int = 2_000_000
    """Output one cell may produce."""


@dataclass(frozen=True)
class WorkerSettings:
    course: str
    """The class's nbgrader course folder (the grading workdir): ``source/``, ``submitted/``, config."""
    templates: str
    """A folder of gradebooks right after ``generate_assignment``, ``<assignment>.db``: every private course
    starts from a copy of its assignment's."""
    scratch: str
    """A root-only folder for the private courses (one subfolder per worker)."""
    kernelspecs: str
    """A folder put on ``JUPYTER_PATH``, holding the sandbox kernelspec."""
    limits: Limits = Limits()
    sandbox: bool = True
    uid_base: int | None = None
    """Worker ``i`` runs its kernels as user ``uid_base + i`` (root only); ``None``: the grader's own user."""
    feedback: bool = True
    """Write each student's HTML feedback (``nbgrader generate_feedback`` can do it later, after manual grading)."""
    hidden_paths: tuple[str, ...] = ()
    """Folders the kernels must not see (see :class:`~cml.instructor.isolation.sandbox.SandboxPolicy`)."""
    grading_seed: int | None = None
    """The seed drawn for this grading run (:func:`cml.check_log.grading_seed`); with ``templates/<assignment>
    .reference.json`` from :func:`~cml.instructor.preprocessors.verdicts.record_reference`, every grade cell is judged again
    outside the kernel (:class:`~cml.instructor.preprocessors.verdicts.CheckVerdicts`)."""


@dataclass(frozen=True)
class Job:
    student: str
    assignment: str


@dataclass
class Outcome:
    """What happened to one submission; ``payload`` carries its grades to the class gradebook."""

    student: str
    assignment: str
    status: str = "graded"
    """``graded``; ``flagged`` (graded, but something went wrong or was repaired); ``failed`` (no grade)."""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    execution_seconds: float = 0.0
    """Time spent running cells (the part of ``seconds`` that plain execution would cost as well)."""
    peak_memory_mb: float = 0.0
    peak_disk_mb: float = 0.0
    """The most the kernel's private file system held (sandboxed kernels with a disk limit)."""
    isolation_gaps: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step: ``prepare``, ``autograde`` (nbgrader, with execution), ``feedback``, ``collect``."""
    payload: dict = field(default_factory=dict)
    worker: int = -1

    def code_total(self, key: str = "auto_score") -> float:
        """Sum of ``key`` (``auto_score`` or ``max_score``) over the autograded (code) grade cells, as nbgrader's
        ``code_score`` counts them."""
        return sum(grade[key] or 0.0 for notebook in self.payload.get("notebooks", [])
                   for grade in notebook["grades"] if grade["cell_type"] == "code")


def _private_course(settings: WorkerSettings, private: Path, job: Job) -> Path:
    """A fresh nbgrader course with this submission only; folders the kernel must not read are root-only."""
    # Emptied, not replaced: other kernels' views cover this very folder, and would see a new one.
    private.mkdir(parents=True, exist_ok=True)
    for entry in private.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    course = private / "course"
    course.mkdir()
    for folder in (private, course):
        folder.chmod(0o711)
    shutil.copy(Path(settings.course) / CONFIG_FILE, course / CONFIG_FILE)
    shutil.copy(Path(settings.templates) / f"{job.assignment}.db", course / "gradebook.db")
    (course / "gradebook.db").chmod(0o600)
    shutil.copytree(Path(settings.course) / "source" / job.assignment, course / "source" / job.assignment)
    (course / "source").chmod(0o700)
    shutil.copytree(Path(settings.course) / "submitted" / job.student / job.assignment,
                    course / "submitted" / job.student / job.assignment, symlinks=True)
    (course / "submitted").chmod(0o700)
    return course


def _kernel_home(private: Path, worker: int, settings: WorkerSettings) -> tuple[Path, dict[str, str]]:
    """The kernel's private folder and the variables that keep every cache and temp file inside it."""
    home = private / "home"
    for sub in ("work", "tmp", ".matplotlib", ".cache", ".ipython"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    # Without its font list matplotlib would rebuild it (seconds) and say so on stderr, which zeroes a test cell.
    import matplotlib

    for fontlist in glob.glob(os.path.join(matplotlib.get_cachedir(), "fontlist-*.json")):
        shutil.copy(fontlist, home / ".matplotlib")
    user = f"cml-grader-{worker}"
    environment = {
        **GRADING_ENVIRONMENT,
        "HOME": str(home), "USER": user, "LOGNAME": user, "TMPDIR": str(home / "tmp"),
        "MPLCONFIGDIR": str(home / ".matplotlib"), "XDG_CACHE_HOME": str(home / ".cache"),
        "IPYTHONDIR": str(home / ".ipython"),
    }
    return home, environment


def _hidden_paths(settings: WorkerSettings, private: Path) -> list[str]:
    """Everything of the grader's the kernel must not see: the class's folders, the other workers' folders,
    and this worker's private course (sources with hidden tests, the gradebook copy)."""
    return [path for path in settings.hidden_paths if path != str(private)] + [str(private / "course")]


def _nbgrader_config(settings: WorkerSettings, course: Path, home: Path, job: Job) -> Config:
    config = PyFileConfigLoader(CONFIG_FILE, path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course}/gradebook.db"
    config.CourseDirectory.assignment_id = job.assignment
    config.CourseDirectory.student_id = job.student
    config.Autograde.autograde_preprocessors = [
        ResilientExecute, CheckVerdicts, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata, SanitizeNotebook,  # last: the grades are saved, then made inert
    ]
    limits = settings.limits
    config.ResilientExecute.timeout = limits.cell_timeout
    config.ResilientExecute.max_output_bytes = limits.max_output_bytes
    config.ResilientExecute.working_directory = str(home / "work")
    if settings.grading_seed is not None:
        config.ResilientExecute.extra_environment = {SEED_VARIABLE: str(settings.grading_seed)}
        reference = Path(settings.templates) / f"{job.assignment}.reference.json"
        if reference.exists():
            config.ResilientExecute.check_log = str(home / "checks.jsonl")
            config.CheckVerdicts.reference_file = str(reference)
    if settings.sandbox:
        config.ResilientExecute.kernel_name = KERNEL_NAME
        config.ResilientExecute.kernel_manager_class = SandboxKernelManager
        # Unix sockets instead of TCP: they work from the kernel's empty network namespace. The kernel makes them
        # in its own file system; the connection file is the grader's, outside it.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(home / "kernel")
        config.KernelManager.connection_file = str(home.parent / "kernel.json")
    return config


def submission_payload(database: Path, job: Job) -> dict:
    """The submission's grades, comments and flags as nbgrader stored them, in plain types."""
    with Gradebook(f"sqlite:///{database}") as gradebook:
        submission = gradebook.find_submission(job.assignment, job.student)
        return {
            "timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
            "notebooks": [
                {
                    "name": notebook.name,
                    "late_submission_penalty": notebook.late_submission_penalty,
                    "grades": [{"name": grade.name, "auto_score": grade.auto_score, "max_score": grade.max_score,
                                "needs_manual_grade": grade.needs_manual_grade, "cell_type": grade.cell_type}
                               for grade in notebook.grades],
                    "comments": [{"name": comment.name, "auto_comment": comment.auto_comment}
                                 for comment in notebook.comments],
                }
                for notebook in submission.notebooks
            ],
        }


def zero_payload(database: Path, job: Job) -> dict:
    """Zero for every grade cell of the assignment: what a submission with no readable notebook gets."""
    with Gradebook(f"sqlite:///{database}") as gradebook:
        assignment = gradebook.find_assignment(job.assignment)
        return {
            "timestamp": None,
            "notebooks": [
                {
                    "name": notebook.name,
                    "late_submission_penalty": None,
                    "grades": [{"name": cell.name, "auto_score": 0.0, "max_score": cell.max_score,
                                "needs_manual_grade": False, "cell_type": cell.cell_type}
                               for cell in notebook.grade_cells],
                    "comments": [],
                }
                for notebook in assignment.notebooks
            ],
        }


def _copy_results(course: Path, settings: WorkerSettings, job: Job) -> None:
    for stage in ("autograded", "feedback"):
        source = course / stage / job.student / job.assignment
        target = Path(settings.course) / stage / job.student / job.assignment
        if target.exists():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)


def _job_logger(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logging.getLogger("traitlets").addHandler(handler)
    logging.getLogger("traitlets").setLevel(logging.INFO)
    return handler


def grade_submission(job: Job, settings: WorkerSettings, worker: int) -> Outcome:
    """Autograde and write feedback for one submission; never raises (a failure is the outcome's status)."""
    started = time.perf_counter()
    outcome = Outcome(job.student, job.assignment, worker=worker)
    private = Path(settings.scratch) / f"worker-{worker}"
    log_path = Path(settings.course) / "logs" / job.assignment / f"{job.student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = _job_logger(log_path)
    uid = settings.uid_base + worker if settings.uid_base is not None else None
    try:
        course = _private_course(settings, private, job)
        sources = {path.name: nbformat.read(path, as_version=4)
                   for path in sorted((course / "source" / job.assignment).glob("*.ipynb"))}
        intake = prepare_submission(course / "submitted" / job.student / job.assignment, sources)
        outcome.notes += intake.notes
        if not any((course / "submitted" / job.student / job.assignment / name).exists() for name in sources):
            outcome.payload = zero_payload(course / "gradebook.db", job)
            outcome.status = "flagged"
            return outcome
        home, environment = _kernel_home(private, worker, settings)
        kernel_outcome = private / "kernel-outcome.json"
        policy = SandboxPolicy(home=str(home), uid=uid, environment=environment,
                               hidden_paths=_hidden_paths(settings, private), report=str(private / "isolation-gaps.txt"),
                               disk_limit_bytes=settings.limits.disk_mb * 2**20, outcome=str(kernel_outcome))
        policy.save(private / "policy.json")
        os.environ[POLICY_VARIABLE] = str(private / "policy.json")
        config = _nbgrader_config(settings, course, home, job)
        coursedir = CourseDirectory(config=config)
        outcome.phases["prepare"] = time.perf_counter() - started
        with KernelWatchdog(settings.limits.memory_mb * 2**20, settings.limits.time_limit, uid=uid) as watchdog:
            execution.set_interruption_source(lambda: watchdog.verdict or read_outcome(kernel_outcome).get("verdict"))
            execution.reset_statistics()
            Autograde(coursedir=coursedir, config=config).start()
        outcome.execution_seconds = execution.statistics()["cell_seconds"]
        outcome.notes += execution.statistics()["problems"]
        outcome.peak_memory_mb = watchdog.peak_bytes / 2**20
        outcome.peak_disk_mb = read_outcome(kernel_outcome).get("peak_disk_bytes", 0) / 2**20
        if watchdog.leftover_processes:
            outcome.notes.append(f"{watchdog.leftover_processes} process(es) the notebook left running were killed.")
        gaps = private / "isolation-gaps.txt"
        outcome.isolation_gaps = gaps.read_text().splitlines() if gaps.exists() else []
        outcome.phases["autograde"] = time.perf_counter() - started - outcome.phases["prepare"]
        if settings.feedback:
            GenerateFeedback(coursedir=coursedir, config=config).start()
        outcome.phases["feedback"] = time.perf_counter() - started - sum(outcome.phases.values())
        outcome.payload = submission_payload(course / "gradebook.db", job)
        _copy_results(course, settings, job)
        outcome.phases["collect"] = time.perf_counter() - started - sum(outcome.phases.values())
        if outcome.notes:
            outcome.status = "flagged"
    except Exception as error:  # noqa: BLE001 - one submission's failure must not stop the class
        outcome.status = "failed"
        outcome.notes.append(f"grading failed: {type(error).__name__}: {str(error)[:300]}")
        logging.getLogger("traitlets").error(traceback.format_exc())
    finally:
        execution.set_interruption_source(lambda: None)
        logging.getLogger("traitlets").removeHandler(handler)
        handler.close()
        outcome.seconds = time.perf_counter() - started
    return outcome
