"""Grade one notebook the way ``nbgrader autograde`` does, without a gradebook.

Used by the test cases and by ``validate``: restore every locked cell (tests with their hidden part)
from the source notebook, keep the student's answer cells, execute, then score each grade cell with
nbgrader's own rule (:func:`nbgrader.utils.determine_grade`). The bundled example submissions go
through real ``nbgrader autograde`` and a test checks that both agree.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.utils import determine_grade

from cml.instructor.course import cell_kind, grade_id

__all__ = ["GRADING_ENVIRONMENT", "CellGrade", "NotebookGrade", "merge_for_grading", "error_summary", "grade_notebook",
           "kernel_environment"]

GRADING_ENVIRONMENT = {
    "CML_NO_PROGRESS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""Environment for grading kernels: progress bars off (tqdm writes to stderr), and one BLAS thread per
kernel, since kernels run side by side and the course's small matrices gain nothing from more threads."""


def kernel_environment(environment: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a grading kernel: this process's, with :data:`GRADING_ENVIRONMENT` and ``environment``."""
    return {**os.environ, **GRADING_ENVIRONMENT, **(environment or {})}


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


def merge_for_grading(source: NotebookNode, submission: NotebookNode) -> NotebookNode:
    """The submission with every locked cell replaced by its source version, as nbgrader's OverwriteCells does.

    Locked cells the student deleted are not restored here (nbgrader would flag the submission); their
    points are simply missing from the result.
    """
    locked_cells = {grade_id(cell): cell for cell in source.cells if cell_kind(cell) in ("tests", "readonly")}
    merged = copy.deepcopy(submission)
    for index, cell in enumerate(merged.cells):
        identifier = grade_id(cell)
        if identifier in locked_cells:
            replacement = copy.deepcopy(locked_cells[identifier])
            replacement["id"] = cell.get("id", replacement.get("id"))
            merged.cells[index] = replacement
    for cell in merged.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return merged


def error_summary(cell: NotebookNode) -> str:
    """A cell's first error or stderr output in one line (the last line of a stderr stream); empty if none."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"[:500]
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "").strip().splitlines()
            return ("wrote to stderr: " + (text[-1] if text else ""))[:500]
    return ""


def grade_notebook(
    source: NotebookNode,
    submission: NotebookNode,
    *,
    workdir: Path,
    cell_timeout: int = 120,
    stop_after: str | None = None,
    environment: dict[str, str] | None = None,
    kernel_manager_class: type | None = None,
) -> tuple[NotebookGrade, NotebookNode]:
    """Execute the merged notebook in ``workdir`` and score its grade cells. Returns the grades and the executed notebook.

    With ``stop_after`` (a grade id), cells after that one are neither run nor graded: the test cases
    use it to stop once the last cell a wrong answer must lose has run. ``environment`` adds
    variables to the kernel's environment (see :func:`kernel_environment`). ``kernel_manager_class``
    replaces jupyter_client's (the test cases fork their kernels: :mod:`cml.instructor.isolation.zygote`).
    """
    notebook = merge_for_grading(source, submission)
    if stop_after is not None:
        ids = [grade_id(cell) for cell in notebook.cells]
        if stop_after not in ids:
            raise ValueError(f"stop_after names {stop_after!r}, which is not a cell of this notebook")
        del notebook.cells[ids.index(stop_after) + 1:]
    options = {"kernel_manager_class": kernel_manager_class} if kernel_manager_class is not None else {}
    client = NotebookClient(
        notebook,
        timeout=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        resources={"metadata": {"path": str(workdir)}},
        kernel_name="python3",
        # Every output is in by then; a graceful shutdown only waits ~3 s for the kernel to exit by itself.
        shutdown_kernel="immediate",
        **options,
    )
    result = NotebookGrade()
    try:
        client.execute(env=kernel_environment(environment))
    except (DeadKernelError, CellExecutionError, RuntimeError) as error:
        result.problem = f"{type(error).__name__}: {error}"[:500]
    for cell in notebook.cells:
        kind = cell_kind(cell)
        if kind not in ("tests", "manual"):
            continue
        if kind == "tests" and cell.get("execution_count") is None and not cell.get("outputs"):
            score, max_score = 0.0, float(cell.metadata["nbgrader"]["points"])
            error = "not executed (the kernel stopped before this cell)"
        else:
            score, max_score = determine_grade(cell)
            error = error_summary(cell) if score == 0 else ""
        result.cells.append(CellGrade(grade_id(cell), kind, score, max_score, error))
    return result, notebook
