"""The in-process grader scores cells with nbgrader's rules and survives broken submissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from cml.instructor.testing.cases import run_case
from cml.instructor.grading.grader import grade_notebook
from cml.instructor.course import Course
from cml.instructor.course import strip_solution_markers
from cml.instructor.testing.submissions import Case, build_submission


def _grade(mini_course: Course, square_source: str, tmp_path: Path, **options):
    source = mini_course.read(mini_course.notebooks("mini")[0])
    release = mini_course.read(mini_course.release / "mini" / "mini.ipynb")
    submission = build_submission(Case("x", "mini", "", cells={"square": square_source}), source, release)
    grade, executed = grade_notebook(source, submission, workdir=tmp_path, **options)
    return grade.by_id(), grade, executed


def test_solution_blank_and_wrong(mini_course: Course) -> None:
    solution = run_case(Case("solution", "mini", "", lose=()), mini_course.root, mini_course.release)
    assert solution.grade.by_id()["test_square"].score == 1 and not solution.failures
    assert solution.grade.by_id()["why"].score is None  # written answer awaits a human
    blank = run_case(Case("blank", "mini", "", base="blank", lose=("*",)), mini_course.root, mini_course.release)
    assert blank.grade.auto_score == 0 and not blank.failures
    assert "NotImplementedError" in blank.grade.by_id()["test_square"].error
    assert blank.grade.by_id()["why"].score == 0  # an untouched written answer scores zero


def test_hidden_tests_are_restored_and_run(mini_course: Course, tmp_path: Path) -> None:
    # Right on the visible input (3 -> 9), wrong on the hidden one (-2 -> 4).
    cells, _, executed = _grade(mini_course, "def square(x):\n    return 9.0 if x == 3 else x", tmp_path)
    assert cells["test_square"].score == 0
    assert "square.hidden_negative" in cells["test_square"].error
    assert any("BEGIN HIDDEN TESTS" in cell.source for cell in executed.cells)


def test_stderr_output_scores_zero_like_nbgrader(mini_course: Course, tmp_path: Path) -> None:
    noisy = "import sys\ndef square(x):\n    print('debug', file=sys.stderr)\n    return x * x"
    cells, _, _ = _grade(mini_course, noisy, tmp_path)
    assert cells["test_square"].score == 0 and "stderr" in cells["test_square"].error


def test_a_dying_kernel_loses_only_the_cells_after_it(mini_course: Course, tmp_path: Path) -> None:
    cells, grade, _ = _grade(mini_course, "import os\nos._exit(3)", tmp_path)
    assert cells["test_square"].score == 0
    assert grade.problem  # reported, not raised


def test_a_hanging_cell_is_interrupted(mini_course: Course, tmp_path: Path) -> None:
    cells, _, _ = _grade(mini_course, "def square(x):\n    while True:\n        pass", tmp_path, cell_timeout=3)
    assert cells["test_square"].score == 0


def test_strip_solution_markers_keeps_the_answer() -> None:
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert strip_solution_markers(source) == "def f():\n    return 1"
    scheme = "Answer.\n=== BEGIN MARK SCHEME ===\nGive 2 points.\n=== END MARK SCHEME ===\n"
    assert strip_solution_markers(scheme) == "Answer."


def test_wrong_answers_stop_after_their_last_lost_cell(mini_course: Course, tmp_path: Path) -> None:
    from cml.instructor.testing.cases import last_lost_cell

    source = mini_course.read(mini_course.notebooks("mini")[0])
    wrong = Case("cube", "mini", "", cells={"square": "def square(x):\n    return x ** 3"}, lose=("test_square",))
    assert last_lost_cell(wrong, source) == "test_square"
    for runs_in_full in (Case("ok", "mini", "", lose=()), Case("blank", "mini", "", base="blank", lose=("*",)),
                         Case("elsewhere", "mini", "", lose=("test_other_notebook",))):
        assert last_lost_cell(runs_in_full, source) is None

    stopped = run_case(wrong, mini_course.root, mini_course.release)
    assert stopped.stopped_after == "test_square" and not stopped.failures
    assert [cell.grade_id for cell in stopped.grade.cells] == ["test_square"]  # the written answer was not reached
    full = run_case(wrong, mini_course.root, mini_course.release, full=True)
    assert full.stopped_after is None and "why" in full.grade.by_id() and not full.failures

    cells, _, executed = _grade(mini_course, "def square(x):\n    return x * x", tmp_path, stop_after="test_square")
    assert list(cells) == ["test_square"] and executed.cells[-1].metadata["nbgrader"]["grade_id"] == "test_square"
    with pytest.raises(ValueError, match="not a cell"):
        _grade(mini_course, "def square(x):\n    return x * x", tmp_path, stop_after="nope")


def test_preloadable_modules_are_those_imported_before_the_first_answer() -> None:
    from cml.instructor.authoring.convert import script_to_notebook
    from cml.instructor.isolation.zygote import preloadable_modules

    notebook = script_to_notebook('''# %% readonly id=imports
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
from torch import nn
import cml.checks

# %% solution id=answer
import jax

# %% tests id=test_answer points=1
"""The answer."""
import sklearn
''')
    assert preloadable_modules(notebook) == ("numpy", "torch")


def test_forked_kernels_grade_as_fresh_ones(mini_course: Course, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The test cases' kernels fork from a zygote (cml.instructor.isolation.zygote): same grades as fresh kernels, and a
    hanging cell is interrupted and a dying kernel reported there too (the zygote's child is not our child)."""
    from cml.instructor.testing.cases import _ZYGOTES, forked_kernels
    from cml.instructor.isolation.zygote import Zygote
    from cml.instructor.grading.grader import kernel_environment

    wrong = Case("cube", "mini", "", cells={"square": "def square(x):\n    return x ** 3"}, lose=("test_square",))
    forked = run_case(wrong, mini_course.root, mini_course.release, full=True)
    assert _ZYGOTES and _ZYGOTES[0][0].kernels_forked >= 1, "the case's kernel was not forked"
    monkeypatch.setenv("CML_FORKED_KERNELS", "off")
    fresh = run_case(wrong, mini_course.root, mini_course.release, full=True)
    assert forked.grade == fresh.grade and not forked.failures

    source = mini_course.read(mini_course.notebooks("mini")[0])
    monkeypatch.delenv("CML_FORKED_KERNELS")
    manager = forked_kernels(source, {})
    hanging = "def square(x):\n    while True:\n        pass"
    cells, _, _ = _grade(mini_course, hanging, tmp_path, cell_timeout=3, kernel_manager_class=manager)
    assert cells["test_square"].score == 0
    cells, grade, _ = _grade(mini_course, "import os\nos._exit(3)", tmp_path, kernel_manager_class=manager)
    assert cells["test_square"].score == 0 and grade.problem

    zygote = Zygote(("numpy", "torch", "jax", "jax.numpy"), kernel_environment({}))
    try:
        assert zygote.usable, f"a zygote that loaded torch and jax cannot fork: {zygote.problem}"
    finally:
        zygote.close()
