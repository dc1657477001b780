"""What a grading run hands around: jobs, limits, the settings of a grading process, and outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from cml.instructor.defaults import (
    CELL_TIMEOUT_SECONDS,
    DISK_LIMIT_MB,
    MAX_OUTPUT_BYTES,
    MEMORY_LIMIT_MB,
    TIME_LIMIT_SECONDS,
)

__all__ = ["CellGrade", "Job", "Limits", "NotebookGrade", "Outcome", "Status", "WorkerSettings"]


class Status(str, Enum):
    """What became of one submission."""

    GRADED = "graded"
    FLAGGED = "flagged"
    """Graded, but something went wrong or had to be repaired: the notes say what."""
    FAILED = "failed"
    """No grade could be given."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    cell_timeout: int = CELL_TIMEOUT_SECONDS
    """Seconds one cell may run before it is interrupted."""
    time_limit: float = TIME_LIMIT_SECONDS
    """Seconds the whole submission (all its notebooks) may take."""
    memory_mb: int = MEMORY_LIMIT_MB
    """Resident memory of the kernel and everything it starts, together."""
    disk_mb: int = DISK_LIMIT_MB
    """What the kernel may write, together: its private folder, its temporary files and ``/dev/shm`` (sandboxed
    kernels only: the sandbox keeps them in a file system of this size, in memory)."""
    max_output_bytes: int = MAX_OUTPUT_BYTES
    """Output one cell may produce."""


@dataclass(frozen=True)
class Job:
    student: str
    assignment: str
    stop_after: tuple[str, ...] = ()
    """Grade ids: each notebook stops after the last of these it holds (the later cells score zero as not run).
    Only the instructor's described submissions use it (:mod:`cml.instructor.testing.cases`)."""


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
    .reference.json`` from :func:`~cml.instructor.grading.reference.record_reference`, every grade cell is judged
    again outside the kernel (:class:`~cml.instructor.preprocessors.verdicts.CheckVerdicts`)."""
    fork_kernels: bool = True
    """Fork kernels from a zygote that has imported the assignment's libraries (:mod:`cml.instructor.isolation.zygote`);
    False: every kernel starts afresh (the baseline of ``benchmarks/class_grading.py``)."""


@dataclass
class Outcome:
    """What happened to one submission; ``payload`` carries its grades to the class gradebook."""

    student: str
    assignment: str
    status: Status = Status.GRADED
    notes: list[str] = field(default_factory=list)
    """Why the submission is flagged (or failed), one sentence each."""
    remarks: list[str] = field(default_factory=list)
    """What is worth knowing but flags nothing (a routine upgrade of an old notebook format, say)."""
    seconds: float = 0.0
    execution_seconds: float = 0.0
    """Time spent running cells (the part of ``seconds`` that plain execution would cost as well)."""
    peak_memory_mb: float = 0.0
    peak_disk_mb: float = 0.0
    """The most the kernel's private file system held (sandboxed kernels with a disk limit)."""
    isolation_gaps: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step: ``prepare``, ``autograde`` (nbgrader, with execution), ``feedback``, ``collect``."""
    kernel_start_seconds: float = 0.0
    """From asking for the first notebook's kernel to its first answer cell starting (start and imports)."""
    kernels_forked: int = 0
    """How many of its kernels were forked from a zygote (the others started afresh)."""
    payload: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    """Every check of the judged grade cells, for the class report (see
    :func:`~cml.instructor.preprocessors.verdicts.check_results`); empty when verdicts are off."""
    worker: int = -1

    @property
    def overhead_seconds(self) -> float:
        """Time in the worker beyond running cells: set-up, kernel start, bookkeeping, feedback."""
        return max(0.0, self.seconds - self.execution_seconds)

    def code_total(self, key: str = "auto_score") -> float:
        """Sum of ``key`` (``auto_score`` or ``max_score``) over the autograded (code) grade cells, as nbgrader's
        ``code_score`` counts them."""
        return sum(grade[key] or 0.0 for notebook in self.payload.get("notebooks", [])
                   for grade in notebook["grades"] if grade["cell_type"] == "code")


@dataclass(frozen=True)
class CellGrade:
    grade_id: str
    kind: str
    score: float | None
    """Points given automatically; ``None`` for a written answer awaiting manual grading."""
    max_score: float
    error: str = ""
    """The last line of the cell's error or stderr output, when it scored zero."""


@dataclass
class NotebookGrade:
    cells: list[CellGrade] = field(default_factory=list)
    problem: str = ""
    """What went wrong with the notebook as a whole (dead kernel), if anything."""

    @property
    def auto_score(self) -> float:
        return sum(cell.score or 0.0 for cell in self.cells if cell.kind == "tests")

    @property
    def auto_max(self) -> float:
        return sum(cell.max_score for cell in self.cells if cell.kind == "tests")

    def by_id(self) -> dict[str, CellGrade]:
        return {cell.grade_id: cell for cell in self.cells}
