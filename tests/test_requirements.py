"""Every graded exercise's requirement map: each requirement has a check in its cell and a wrong answer that loses it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cml.instructor.course import Course
from cml.instructor.testing.requirements import REQUIREMENTS_FILE, check_ids, load_map, map_problems
from cml.instructor.testing.submissions import Case, load_cases

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)


@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_every_requirement_has_a_check_and_a_wrong_answer_that_loses_it(assignment: str) -> None:
    path = REPO / "source" / assignment / REQUIREMENTS_FILE
    assert path.is_file(), f"{assignment} has no requirement map ({path.relative_to(REPO)})"
    notebooks = [COURSE.read(notebook) for notebook in COURSE.notebooks(assignment)]
    cases = load_cases(REPO / "tests" / "submissions" / assignment, assignment)
    problems = map_problems(load_map(path), notebooks, cases)
    assert not problems, f"{assignment}/{REQUIREMENTS_FILE}:\n" + "\n".join(problems)


def test_the_requirement_map_is_never_released() -> None:
    for assignment in COURSE.assignments():
        assert not (COURSE.release / assignment / REQUIREMENTS_FILE).exists()


def _test_cell(source: str, grade_id: str = "test_f", points: float = 2.0) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": grade_id,
                                 "points": points, "schema_version": 3}
    return cell


def _answer_cell(grade_id: str = "f") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("### BEGIN SOLUTION\ndef f(x):\n    return x\n### END SOLUTION")
    cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": grade_id,
                                 "schema_version": 3}
    return cell


def test_the_map_is_held_to_the_notebook_and_the_cases(tmp_path: Path) -> None:
    test = ('check_close("f.visible", f(1.0), 1.0)\n### BEGIN HIDDEN TESTS\n'
            'for _n in (2, 3):\n    check_shape(f"f.shape_{_n}", f(np.ones(_n)), (_n,))\n### END HIDDEN TESTS')
    notebook = nbformat.v4.new_notebook(cells=[_answer_cell(), _test_cell(test), _test_cell("pass", "test_g", 0)])
    assert check_ids(test) == ["f.visible", "f.shape_*"]
    path = tmp_path / REQUIREMENTS_FILE
    path.write_text('[test_f]\nanswer = "f"\n[[test_f.requirement]]\nsays = "f is the identity"\n'
                    'checks = ["f.visible", "f.shape_3"]\nwrong = ["f_doubles"]\n')
    doubles = Case("f_doubles", "a", "f doubles", lose=("test_f",))
    assert map_problems(load_map(path), [notebook], [doubles]) == []
    problems = map_problems(load_map(path), [notebook], [Case("f_doubles", "a", "f doubles", lose=())])
    assert problems == ["[test_f] 'f is the identity': wrong answer 'f_doubles' does not say it loses test_f"]

    path.write_text('[test_f]\nanswer = "f"\n[[test_f.requirement]]\nsays = "f keeps its input"\n'
                    'checks = ["f.unchanged"]\n[test_h]\nanswer = "h"\n')
    problems = map_problems(load_map(path), [notebook], [doubles])
    assert any("check 'f.unchanged' is not written" in problem for problem in problems)
    assert any("no described wrong answer" in problem for problem in problems)
    assert any("[test_h] is not a graded test cell" in problem for problem in problems)

    path.write_text('[test_f]\nanswer = "f"\n[[test_f.requirement]]\nsay = "typo"\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_map(path)
    path.write_text("")
    assert map_problems(load_map(path), [notebook], []) == ["graded test cell 'test_f' has no entry in the requirement map"]
