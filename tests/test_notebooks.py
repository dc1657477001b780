"""nbval runs every source notebook (the reference solutions) from top to bottom; the student's view runs too.

Each notebook runs in its own ``pytest --nbval-lax`` process: nbval keeps one kernel per notebook, which
pytest-xdist would split across workers if the cells were collected here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "source").glob("*/*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.parent.name for path in NOTEBOOKS])
def test_notebook_runs_under_nbval(notebook: Path, record_property) -> None:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "-o", "addopts=", str(notebook.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    record_property("seconds", round(time.perf_counter() - started, 1))
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]


# 01 and 02 are run this way by the browser test (in JupyterLab), so they are not repeated here.
STUDENT_VIEWS = [path for path in NOTEBOOKS if path.parent.name not in ("01_neuron", "02_backprop")]


@pytest.mark.parametrize("notebook", STUDENT_VIEWS, ids=[path.parent.name for path in STUDENT_VIEWS])
def test_release_with_answers_runs_without_hidden_tests(notebook: Path, tmp_path: Path) -> None:
    """A student's view: the release notebook with every exercise answered runs clean without the hidden tests.

    This catches a visible test (or any later cell) that relies on something defined only inside a
    hidden-test block, which nbval and grading cannot see since both run with the hidden tests in place.
    """
    from nbclient import NotebookClient

    from cml.instructor.grader import GRADING_ENVIRONMENT, error_summary
    from cml.instructor.notebooks import Course
    from cml.instructor.submissions import Case, build_submission

    course = Course(REPO)
    assignment = notebook.parent.name
    student = Case("student", assignment, "every exercise answered", base="solution", lose=())
    submission = build_submission(student, course.read(notebook), course.read(course.release / assignment / notebook.name))
    NotebookClient(submission, kernel_name="python3", timeout=300, allow_errors=True, shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env={**os.environ, **GRADING_ENVIRONMENT})
    problems = [f"cell {index}: {error_summary(cell)}" for index, cell in enumerate(submission.cells)
                if cell.cell_type == "code" and error_summary(cell)]
    assert not problems, "\n".join(problems)
