"""Every source notebook (the reference solutions) runs from top to bottom without an error; so does the
student's view.

The demo grades an example student who hands in the reference solution of each assignment with nbgrader
(``ada_solution``); that run executes every cell of the solution, hidden tests included, and keeps the
outputs. Where it exists, its autograded notebook is checked here as nbval would check the source notebook,
instead of running the same notebook a second time. A notebook without such a student runs under
``pytest --nbval-lax`` in its own process (nbval keeps one kernel per notebook, which pytest-xdist would
split across workers if the cells were collected here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from cml.instructor.testing.cases import implicit_cases, matching_example
from cml.instructor.cli import EXAMPLES_DIR
from cml.instructor.testing.submissions import load_cases

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "source").glob("*/*.ipynb"))


def _solution_student(assignment: str) -> str | None:
    """The example student who hands in the reference solution of ``assignment``, if there is one."""
    folder = REPO / EXAMPLES_DIR / assignment
    solution = next(case for case in implicit_cases(assignment) if case.name == "solution")
    example = matching_example(solution, load_cases(folder) if folder.is_dir() else [])
    return example.name if example else None


def _nbval_problems(executed: nbformat.NotebookNode) -> list[str]:
    """What ``nbval --nbval-lax`` fails a notebook for: a code cell that raised, or was never run."""
    problems = []
    for index, cell in enumerate(executed.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        errors = [output for output in cell.outputs if output.get("output_type") == "error"]
        if errors:
            problems.append(f"cell {index}: {errors[0].get('ename')}: {errors[0].get('evalue', '')[:300]}")
        elif cell.get("execution_count") is None:
            problems.append(f"cell {index}: not run (the kernel stopped before it)")
    return problems


def _params() -> list:
    """Each notebook, in the demo's group of tests when the demo runs it (see conftest.py)."""
    return [pytest.param(path, id=path.parent.name, marks=[pytest.mark.xdist_group("demo_run")]
                         if _solution_student(path.parent.name) else []) for path in NOTEBOOKS]


@pytest.mark.parametrize("notebook", _params())
def test_solution_notebook_runs_clean(notebook: Path, request: pytest.FixtureRequest, record_property) -> None:
    assignment = notebook.parent.name
    student = _solution_student(assignment)
    if student is not None:
        _, workdir = request.getfixturevalue("demo_run")
        autograded = workdir / "autograded" / student / assignment / notebook.name
        assert autograded.exists(), f"the demo did not autograde {student}/{assignment}/{notebook.name}"
        problems = _nbval_problems(nbformat.read(autograded, as_version=4))
        assert not problems, f"{student} (the reference solution) under nbgrader:\n" + "\n".join(problems)
        return
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "-o", "addopts=", str(notebook.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
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

    from cml.instructor.defaults import GRADING_ENVIRONMENT
    from cml.instructor.testing.cases import error_summary
    from cml.instructor.course import Course
    from cml.instructor.testing.submissions import Case, build_submission

    course = Course(REPO)
    assignment = notebook.parent.name
    student = Case("student", assignment, "every exercise answered", base="solution", lose=())
    submission = build_submission(student, course.read(notebook), course.read(course.release / assignment / notebook.name))
    NotebookClient(submission, kernel_name="python3", timeout=300, allow_errors=True, shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env={**os.environ, **GRADING_ENVIRONMENT})
    problems = [f"cell {index}: {error_summary(cell)}" for index, cell in enumerate(submission.cells)
                if cell.cell_type == "code" and error_summary(cell)]
    assert not problems, "\n".join(problems)
