"""cml.instructor.cells reads cells and markers exactly as nbgrader does: checked against nbgrader's own code."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearSolutions

from cml.instructor.cells import (
    CODE_STUB,
    HIDDEN_MARKERS,
    SOLUTION_MARKERS,
    TEXT_STUB,
    MarkerError,
    cell_kind,
    grade_id,
    is_grade,
    is_locked,
    is_solution,
    is_task,
    released_source,
    remove_regions,
    strip_solution_markers,
)
from cml.instructor.course import Course

REPO = Path(__file__).resolve().parents[1]
PREDICATES = [(is_grade, utils.is_grade), (is_solution, utils.is_solution), (is_locked, utils.is_locked),
              (is_task, utils.is_task)]


def _course_cells() -> list[nbformat.NotebookNode]:
    course = Course(REPO)
    return [cell for assignment in course.assignments() for path in course.notebooks(assignment)
            for cell in course.read(path).cells]


def _nbgrader_release(cell: nbformat.NotebookNode) -> str:
    """What nbgrader's generate_assignment makes of the cell's source: its three clearing steps, in its order."""
    cell = copy.deepcopy(cell)
    ClearSolutions().preprocess_cell(cell, {"language": "python"}, 0)
    ClearHiddenTests().preprocess_cell(cell, {}, 0)
    ClearMarkScheme().preprocess_cell(cell, {}, 0)
    return cell.source


def _outcome(function: Callable[[], str]) -> str:
    """The function's result, or ``"error"`` where it raises as nbgrader does."""
    try:
        return function()
    except RuntimeError:  # nbgrader raises RuntimeError; MarkerError is one
        return "error"


def _graded(cell: nbformat.NotebookNode, **flags: bool) -> nbformat.NotebookNode:
    cell.metadata["nbgrader"] = {"grade_id": "q", "points": 1, "schema_version": 3, **flags}
    return cell


def test_predicates_are_nbgrader_s_on_every_cell_of_the_course() -> None:
    cells = _course_cells()
    assert len(cells) > 100
    for cell in cells:
        for ours, theirs in PREDICATES:
            assert ours(cell) == bool(theirs(cell)), (ours.__name__, cell.source[:80])


def test_released_source_is_what_nbgrader_releases_for_every_cell_of_the_course() -> None:
    for cell in _course_cells():
        assert released_source(cell) == _nbgrader_release(cell), cell.source[:80]


def test_released_source_matches_the_committed_release(course: Course) -> None:
    for assignment in course.assignments():
        for path in course.notebooks(assignment):
            released = course.read(course.release / assignment / path.name)
            assert [released_source(cell) for cell in course.read(path).cells] == [c.source for c in released.cells]


@pytest.mark.parametrize("flags, kind", [
    ({"grade": True, "solution": True}, "manual"),
    ({"grade": True, "solution": False, "locked": True}, "tests"),
    ({"solution": True, "locked": True}, "solution"),  # nbgrader: a solution cell is never locked
    ({"locked": True}, "readonly"),
    ({"task": True, "locked": True}, "readonly"),  # a task cell keeps the kind it always had here
    ({"task": True}, None),
    ({}, None),
])
def test_cell_kinds(flags: dict[str, bool], kind: str | None) -> None:
    assert cell_kind(_graded(new_code_cell(""), **flags)) == kind


def test_cells_nbgrader_could_not_read_are_ordinary_cells() -> None:
    """A submission is read as it comes: nbgrader's own predicates raise on these, ours say 'ordinary cell'."""
    no_metadata = {"cell_type": "code", "source": ""}
    not_a_mapping = new_code_cell("", metadata={"nbgrader": "grade"})
    with pytest.raises(AttributeError):
        utils.is_grade(no_metadata)
    for cell in (no_metadata, not_a_mapping):
        assert (cell_kind(cell), grade_id(cell), is_locked(cell)) == (None, None, False)


HIDDEN_CASES = {
    "plain": "visible()\n### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS\nafter()",
    "text after the marker": "visible()\n### BEGIN HIDDEN TESTS (edge cases)\nsecret()\n### END HIDDEN TESTS -- done",
    "indented, one hash": "def t():\n    # BEGIN HIDDEN TESTS\n    secret()\n    # END HIDDEN TESTS\n    visible()",
    "code before the marker": "visible()  ### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS",
    "stray end": "visible()\n### END HIDDEN TESTS\nafter()",
    "unterminated": "visible()\n### BEGIN HIDDEN TESTS\nsecret()",
    "nested": "### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS",
}


@pytest.mark.parametrize("name", HIDDEN_CASES)
def test_hidden_tests_are_found_as_nbgrader_finds_them(name: str) -> None:
    """The old regular expressions wanted ``### `` at the start of the line and kept the rest of a marker line;
    nbgrader drops any line holding the delimiter, and refuses nested or unterminated regions."""
    cell = _graded(new_code_cell(HIDDEN_CASES[name]), grade=True, locked=True)
    theirs = _outcome(lambda: _nbgrader_release(cell))
    assert _outcome(lambda: remove_regions(HIDDEN_CASES[name], HIDDEN_MARKERS)) == theirs
    assert _outcome(lambda: released_source(cell)) == theirs
    assert "secret" not in theirs and "edge cases" not in theirs and "done" not in theirs


SOLUTION_CASES = {
    "plain": "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
    "text after the marker": "def f():\n    ### BEGIN SOLUTION (replace this)\n    return 1\n    ### END SOLUTION",
    "tab-indented": "def f():\n\t### BEGIN SOLUTION\n\treturn 1\n\t### END SOLUTION\n\tpass",
    "two regions": "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n### BEGIN SOLUTION\nc = 3\n### END SOLUTION",
    "unterminated": "def f():\n    ### BEGIN SOLUTION\n    return 1",
    "nested": "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
}


@pytest.mark.parametrize("name", SOLUTION_CASES)
def test_solutions_are_replaced_as_nbgrader_replaces_them(name: str) -> None:
    cell = _graded(new_code_cell(SOLUTION_CASES[name]), solution=True)
    theirs = _outcome(lambda: _nbgrader_release(cell))
    assert _outcome(lambda: remove_regions(SOLUTION_CASES[name], SOLUTION_MARKERS, CODE_STUB)) == theirs
    assert _outcome(lambda: released_source(cell)) == theirs


def test_a_marker_with_text_after_it_is_dropped_whole() -> None:
    """The old strip_solution_markers left ``(replace this)`` behind as a line of the student's answer."""
    assert strip_solution_markers(SOLUTION_CASES["text after the marker"]) == "def f():\n    return 1"


def test_lenient_reading_hides_what_nbgrader_would_refuse_to_release() -> None:
    assert remove_regions(HIDDEN_CASES["unterminated"], HIDDEN_MARKERS, strict=False) == "visible()"
    assert remove_regions(HIDDEN_CASES["nested"], HIDDEN_MARKERS, "#", strict=False) == "#"
    assert strip_solution_markers(SOLUTION_CASES["unterminated"]) == "def f():\n    return 1"


def test_a_solution_cell_without_a_region_is_released_as_the_stub() -> None:
    """nbgrader replaces the whole cell (the old leak check counted such a code cell as public)."""
    assert released_source(_graded(new_code_cell("answer = 42"), solution=True)) == CODE_STUB
    assert released_source(_graded(new_markdown_cell("Because."), solution=True, grade=True)) == TEXT_STUB


def test_a_region_in_a_cell_of_the_wrong_kind_is_refused_as_nbgrader_refuses_it() -> None:
    readonly = _graded(new_code_cell(HIDDEN_CASES["plain"]), locked=True)
    with pytest.raises(RuntimeError):
        ClearHiddenTests().preprocess_cell(copy.deepcopy(readonly), {}, 0)
    with pytest.raises(MarkerError):
        released_source(readonly)
    assert released_source(readonly, strict=False) == "visible()\nafter()"
