"""The one grading engine on the mini course: nbgrader's rules, broken submissions, stopped cases, forked kernels.

Every case here is graded the way a student is (``grade_class``: intake, sandbox, verdicts), in one batch per
kernel mode, so that the class is set up once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cml.instructor.cells import strip_solution_markers

from cml.instructor.course import Course
from cml.instructor.grading.model import Limits
from cml.instructor.testing.cases import CaseResult, last_lost_cell, run_cases
from cml.instructor.testing.submissions import Case

CUBE = "def square(x):\n    return x ** 3"
CASES = [
    Case("solution", "mini", "", lose=()),
    Case("blank", "mini", "", base="blank", lose=("*",)),
    Case("hidden_wrong", "mini", "right on the visible input only", cells={
        "square": "def square(x):\n    return 9.0 if x == 3 else x"}, lose=("test_square",)),
    Case("noisy", "mini", "writes to stderr", cells={
        "square": "import sys\ndef square(x):\n    print('debug', file=sys.stderr)\n    return x * x"},
         lose=("test_square",)),
    Case("dies", "mini", "the kernel exits", cells={"square": "import os\nos._exit(3)"}, lose=("test_square",)),
    Case("hangs", "mini", "never returns", cells={"square": "def square(x):\n    while True:\n        pass"},
         lose=("test_square",)),
    Case("cube", "mini", "stops after its lost cell", cells={"square": CUBE}, lose=("test_square",)),
]
FRESH = ("solution", "hidden_wrong", "dies", "hangs")
"""The cases graded again with fresh kernels, to compare: a score, a lost hidden test, a dead and a hung kernel."""


def _batch(course: Course, cases: list[Case] = CASES, **options) -> dict[str, CaseResult]:
    results = run_cases(cases, course.root, jobs=2, release_root=course.release, limits=Limits(cell_timeout=5),
                        **options)
    return {result.case.name: result for result in results}


@pytest.fixture(scope="module")
def graded(mini_course_template: Path) -> dict[str, CaseResult]:
    return _batch(Course(mini_course_template))


def test_every_case_meets_its_expectation(graded) -> None:
    assert {name: result.failures for name, result in graded.items() if result.failures} == {}


def test_solution_and_blank(graded) -> None:
    assert graded["solution"].grade.by_id()["test_square"].score == 1
    assert graded["solution"].grade.by_id()["why"].score is None  # a written answer awaits a human
    assert graded["blank"].grade.auto_score == 0
    assert "NotImplementedError" in graded["blank"].grade.by_id()["test_square"].error


def test_hidden_tests_are_restored_and_run(graded) -> None:
    assert "square.hidden_negative" in graded["hidden_wrong"].grade.by_id()["test_square"].error


def test_stderr_output_scores_zero_like_nbgrader(graded) -> None:
    assert "stderr" in graded["noisy"].grade.by_id()["test_square"].error


def test_a_dying_or_hanging_kernel_costs_only_its_cells_and_is_flagged(graded) -> None:
    assert any("exited with code 3" in note for note in graded["dies"].notes), graded["dies"].notes
    assert any("ran longer than 5 s" in note for note in graded["hangs"].notes), graded["hangs"].notes


def test_wrong_answers_stop_after_their_last_lost_cell(graded, mini_course: Course) -> None:
    source = mini_course.read(mini_course.notebooks("mini")[0])
    assert last_lost_cell(CASES[-1], source) == "test_square"
    for runs_in_full in (Case("ok", "mini", "", lose=()), Case("blank", "mini", "", base="blank", lose=("*",)),
                         Case("elsewhere", "mini", "", lose=("test_other_notebook",))):
        assert last_lost_cell(runs_in_full, source) is None
    stopped = graded["cube"]
    assert stopped.stopped_after == "test_square"
    assert [cell.grade_id for cell in stopped.grade.cells] == ["test_square"]  # the written answer was not reached
    assert graded["hidden_wrong"].stopped_after == "test_square"
    assert graded["solution"].stopped_after is None and "why" in graded["solution"].grade.by_id()


def test_kernels_are_forked_and_grade_as_fresh_ones(graded, mini_course_template: Path) -> None:
    """Production kernels fork from a zygote (cml.instructor.isolation.zygote), inside the sandbox: the same
    grades and the same notes as fresh kernels, including a hanging cell interrupted and a dying kernel's exit code
    (the zygote's child is not the worker's child)."""
    assert all(result.outcome.kernels_forked == 1 for result in graded.values()), \
        {name: result.outcome.kernels_forked for name, result in graded.items()}
    fresh = _batch(Course(mini_course_template), [case for case in CASES if case.name in FRESH], fork_kernels=False)
    assert all(result.outcome.kernels_forked == 0 for result in fresh.values())
    graded = {name: graded[name] for name in FRESH}
    assert {name: result.grade for name, result in fresh.items()} == {name: result.grade for name, result in graded.items()}
    assert {name: [note.split(":")[0] for note in result.notes] for name, result in fresh.items()} == \
        {name: [note.split(":")[0] for note in result.notes] for name, result in graded.items()}


def test_strip_solution_markers_keeps_the_answer() -> None:
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert strip_solution_markers(source) == "def f():\n    return 1"
    scheme = "Answer.\n=== BEGIN MARK SCHEME ===\nGive 2 points.\n=== END MARK SCHEME ===\n"
    assert strip_solution_markers(scheme) == "Answer."


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


def test_a_zygote_that_loaded_torch_and_jax_can_fork() -> None:
    import os

    from cml.instructor.defaults import GRADING_ENVIRONMENT
    from cml.instructor.isolation.zygote import Zygote

    zygote = Zygote(("numpy", "torch", "jax", "jax.numpy"), {**os.environ, **GRADING_ENVIRONMENT})
    try:
        assert zygote.usable, f"a zygote that loaded torch and jax cannot fork: {zygote.problem}"
    finally:
        zygote.close()
