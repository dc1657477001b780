"""The one grading engine: grade one submission the way every student is graded.

:class:`GradingWorker` grades one submission at a time. For each it builds a throwaway nbgrader course
(``private/course``) holding a copy of the gradebook as ``generate_assignment`` left it, the assignment's
source and this one student's files, and runs there, in this process:

1. intake (:mod:`cml.instructor.preprocessors.intake`): a notebook saved under another name is renamed back, an
   unreadable one set aside;
2. nbgrader's own ``Autograde``: first its sanitize steps, led by
   :class:`~cml.instructor.preprocessors.intake.IntakeRepairs` (deleted, moved or edited graded cells put right,
   each repair noted), then :class:`~cml.instructor.preprocessors.execute.ResilientExecute` (a dead
   kernel costs only the cells it did not run) in a sandboxed kernel (:mod:`cml.instructor.isolation.sandbox`)
   forked from a zygote that has loaded the assignment's libraries (:mod:`cml.instructor.isolation.zygote`),
   under the watchdog's memory and time limits (:class:`~cml.instructor.isolation.watchdog.KernelWatchdog`);
3. the verdicts given outside the kernel (:class:`~cml.instructor.preprocessors.verdicts.CheckVerdicts`);
4. nbgrader's ``GenerateFeedback`` (inert HTML without hidden tests).

Nothing in the private course is shared with another worker, so workers never contend for a database lock; the
parent copies the grades into the class gradebook (:func:`cml.instructor.grading.gradebook.merge_submission`) one
submission at a time. Every path that grades goes through here: ``cml-course grade`` (local pool and Dask),
``demo``, ``validate`` and the instructor's described test cases.

The kernel runs as user ``uid`` (when the worker is root), in ``private/home`` (its ``HOME``, caches and working
folder, the only place it may write).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
import traceback
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)
from traitlets.config import Config, PyFileConfigLoader

from cml.check_log import SEED_VARIABLE
from cml.instructor.authoring.release import CONFIG_FILE
from cml.instructor.defaults import GRADING_ENVIRONMENT
from cml.instructor.grading.model import Job, Outcome, Status, WorkerSettings
from cml.instructor.isolation.kernels import GradingKernelManager
from cml.instructor.isolation.sandbox import KERNEL_NAME, POLICY_VARIABLE, SandboxPolicy, read_outcome
from cml.instructor.isolation.watchdog import KernelWatchdog
from cml.instructor.isolation.zygote import Zygotes, preloadable_modules
from cml.instructor.preprocessors.execute import ExecutionReport, ResilientExecute
from cml.instructor.preprocessors.intake import IntakeRepairs, prepare_submission, read_notes
from cml.instructor.preprocessors.verdicts import CheckVerdicts
from cml.instructor.web.sanitize import SanitizeNotebook

__all__ = ["GradingWorker", "submission_payload", "zero_payload"]


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


def _job_logger(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logging.getLogger("traitlets").addHandler(handler)
    logging.getLogger("traitlets").setLevel(logging.INFO)
    return handler


class GradingWorker:
    """Grades submissions one after another in its private folder ``scratch/worker-<index>``.

    It keeps, from one submission to the next, only what holds no trace of a submission: the zygote its kernels
    are forked from (which never runs a cell), the kernels' font cache, and its settings.
    """

    def __init__(self, settings: WorkerSettings, index: int) -> None:
        self.settings, self.index = settings, index
        self.private = Path(settings.scratch) / f"worker-{index}"
        self.uid = settings.uid_base + index if settings.uid_base is not None else None
        self.zygotes = Zygotes(enabled=settings.fork_kernels)
        self._modules: dict[str, tuple[str, ...]] = {}

    def close(self) -> None:
        self.zygotes.close()

    def grade(self, job: Job) -> Outcome:
        """Autograde and write feedback for one submission; never raises (a failure is the outcome's status)."""
        started = time.perf_counter()
        outcome = Outcome(job.student, job.assignment, worker=self.index)
        log_path = Path(self.settings.course) / "logs" / job.assignment / f"{job.student}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = _job_logger(log_path)
        try:
            self._grade(job, outcome, started)
        except Exception as error:  # noqa: BLE001 - one submission's failure must not stop the class
            outcome.status = Status.FAILED
            outcome.notes.append(f"grading failed: {type(error).__name__}: {str(error)[:300]}")
            logging.getLogger("traitlets").error(traceback.format_exc())
        finally:
            logging.getLogger("traitlets").removeHandler(handler)
            handler.close()
            outcome.seconds = time.perf_counter() - started
        return outcome

    def _grade(self, job: Job, outcome: Outcome, started: float) -> None:
        def phase(name: str) -> None:
            outcome.phases[name] = time.perf_counter() - started - sum(outcome.phases.values())

        course = self._private_course(job)
        submitted = course / "submitted" / job.student / job.assignment
        sources = {path.name: nbformat.read(path, as_version=4)
                   for path in sorted((course / "source" / job.assignment).glob("*.ipynb"))}
        intake = prepare_submission(submitted, sources, repair=False)  # the notebooks are repaired by IntakeRepairs
        outcome.notes += intake.notes
        outcome.remarks += intake.remarks
        if not any((submitted / name).exists() for name in sources):
            outcome.payload = zero_payload(course / "gradebook.db", job)
            outcome.status = Status.FLAGGED
            return
        home = self._kernel_home()
        kernel_outcome = self.private / "kernel-outcome.json"
        report = ExecutionReport()
        config = self._nbgrader_config(course, home, job, report, sources)
        coursedir = CourseDirectory(config=config)
        phase("prepare")
        forked = self.zygotes.kernels_forked
        with KernelWatchdog(self.settings.limits.memory_mb * 2**20, self.settings.limits.time_limit, uid=self.uid,
                            spare=self.zygotes.pids) as watchdog:
            config.ResilientExecute.interruption_source = (
                lambda: watchdog.verdict or read_outcome(kernel_outcome).get("verdict"))
            Autograde(coursedir=coursedir, config=config).start()
        for note in read_notes(self.private / "intake-notes.jsonl"):
            (outcome.notes if note.flag else outcome.remarks).append(note.text)
        outcome.kernels_forked = self.zygotes.kernels_forked - forked
        outcome.execution_seconds = report.cell_seconds
        outcome.kernel_start_seconds = report.first_answer_seconds or 0.0
        outcome.notes += report.problems
        outcome.checks = report.checks
        outcome.peak_memory_mb = watchdog.peak_bytes / 2**20
        outcome.peak_disk_mb = read_outcome(kernel_outcome).get("peak_disk_bytes", 0) / 2**20
        if watchdog.leftover_processes:
            outcome.notes.append(f"{watchdog.leftover_processes} process(es) the notebook left running were killed.")
        gaps = self.private / "isolation-gaps.txt"
        outcome.isolation_gaps = gaps.read_text().splitlines() if gaps.exists() else []
        phase("autograde")
        if self.settings.feedback:
            GenerateFeedback(coursedir=coursedir, config=config).start()
        phase("feedback")
        outcome.payload = submission_payload(course / "gradebook.db", job)
        self._copy_results(course, job)
        phase("collect")
        if outcome.notes:
            outcome.status = Status.FLAGGED

    def _private_course(self, job: Job) -> Path:
        """A fresh nbgrader course with this submission only; folders the kernel must not read are root-only."""
        settings, private = self.settings, self.private
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

    def _kernel_home(self) -> Path:
        """The kernel's private folder, with the font list matplotlib would otherwise rebuild (seconds, and a note
        on stderr, which zeroes a test cell)."""
        home = self.private / "home"
        for sub in ("work", "tmp", ".matplotlib", ".cache", ".ipython"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        import matplotlib

        for fontlist in glob.glob(os.path.join(matplotlib.get_cachedir(), "fontlist-*.json")):
            shutil.copy(fontlist, home / ".matplotlib")
        return home

    def _kernel_variables(self, home: Path) -> dict[str, str]:
        """The variables that keep every cache and temporary file of the kernel inside its private folder."""
        user = f"cml-grader-{self.index}"
        return {
            **GRADING_ENVIRONMENT,
            "HOME": str(home), "USER": user, "LOGNAME": user, "TMPDIR": str(home / "tmp"),
            "MPLCONFIGDIR": str(home / ".matplotlib"), "XDG_CACHE_HOME": str(home / ".cache"),
            "IPYTHONDIR": str(home / ".ipython"),
        }

    def _hidden_paths(self) -> list[str]:
        """Everything of the grader's the kernel must not see: the class's folders, the other workers' folders,
        and this worker's private course (sources with hidden tests, the gradebook copy)."""
        return [path for path in self.settings.hidden_paths if path != str(self.private)] + [
            str(self.private / "course")]

    def _preloaded(self, job: Job, sources: dict) -> tuple[str, ...]:
        if job.assignment not in self._modules:
            modules: list[str] = []
            for source in sources.values():
                modules += [name for name in preloadable_modules(source) if name not in modules]
            self._modules[job.assignment] = tuple(modules)
        return self._modules[job.assignment]

    def _nbgrader_config(self, course: Path, home: Path, job: Job, report: ExecutionReport,
                         sources: dict) -> Config:
        settings = self.settings
        config = PyFileConfigLoader(CONFIG_FILE, path=str(course)).load_config()
        config.CourseDirectory.root = str(course)
        config.CourseDirectory.db_url = f"sqlite:///{course}/gradebook.db"
        config.CourseDirectory.assignment_id = job.assignment
        config.CourseDirectory.student_id = job.student
        config.Autograde.sanitize_preprocessors = [
            IntakeRepairs, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
        config.IntakeRepairs.source_folder = str(course / "source" / job.assignment)
        config.IntakeRepairs.notes_file = str(self.private / "intake-notes.jsonl")
        config.Autograde.autograde_preprocessors = [
            ResilientExecute, CheckVerdicts, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
            AssignLatePenalties, SanitizeNotebook,  # last: the grades are saved, then made inert
        ]  # nbgrader's list, but its second CheckCellMetadata: nothing after the sanitize steps changes metadata
        limits = settings.limits
        execute = config.ResilientExecute
        execute.timeout = limits.cell_timeout
        execute.max_output_bytes = limits.max_output_bytes
        execute.working_directory = str(home / "work")
        execute.report = config.CheckVerdicts.report = report
        execute.stop_after = list(job.stop_after)
        execute.probe_integrity = True
        execute.kernel_manager_class = GradingKernelManager
        self.zygotes.use_modules(self._preloaded(job, sources))
        execute.zygotes = self.zygotes
        variables = {}
        if settings.grading_seed is not None:
            variables[SEED_VARIABLE] = str(settings.grading_seed)
            reference = Path(settings.templates) / f"{job.assignment}.reference.json"
            if reference.exists():
                execute.check_log = str(home / "checks.jsonl")
                execute.oracles = "withhold"
                config.CheckVerdicts.reference_file = str(reference)
        if settings.sandbox:
            policy = SandboxPolicy(home=str(home), uid=self.uid, environment=self._kernel_variables(home),
                                   hidden_paths=self._hidden_paths(), report=str(self.private / "isolation-gaps.txt"),
                                   disk_limit_bytes=limits.disk_mb * 2**20,
                                   outcome=str(self.private / "kernel-outcome.json"))
            policy.save(self.private / "policy.json")
            variables[POLICY_VARIABLE] = str(self.private / "policy.json")
            execute.kernel_name = KERNEL_NAME
            # Unix sockets instead of TCP: they work from the kernel's empty network namespace. The kernel makes them
            # in its own file system; the connection file is the grader's, outside it.
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = str(home / "kernel")
            config.KernelManager.connection_file = str(self.private / "kernel.json")
        else:
            variables.update(self._kernel_variables(home))
        execute.extra_environment = variables
        return config

    def _copy_results(self, course: Path, job: Job) -> None:
        for stage in ("autograded", "feedback"):
            source = course / stage / job.student / job.assignment
            target = Path(self.settings.course) / stage / job.student / job.assignment
            if target.exists():
                shutil.rmtree(target)
            if source.is_dir():
                shutil.copytree(source, target, symlinks=True)
