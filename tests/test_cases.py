"""Grade every described submission (tests/submissions/<assignment>/*.toml) and check what it must lose.

Each assignment also has the implicit cases ``solution`` (full marks, every grade cell silent on stderr)
and ``blank`` (the untouched release scores zero), unless its example students already include both: the
main job (test_autograde) grades those with real ``nbgrader autograde`` and fails on any expectation they
miss, which proves the same thing once instead of twice. Submissions are built from the committed release,
which test_release proves equal to a fresh build.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cml.instructor.testing.cases import (
    CaseResult,
    expectation_failures,
    implicit_cases,
    matching_example,
    run_case,
    run_cases,
)
from cml.instructor.cli import EXAMPLES_DIR
from cml.instructor.course import Course
from cml.instructor.testing.submissions import Case, load_cases

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)


def _covered_by_examples(implicit: Case) -> bool:
    """Whether an example student of the main job is this implicit case under another name."""
    folder = REPO / EXAMPLES_DIR / implicit.assignment
    return matching_example(implicit, load_cases(folder) if folder.is_dir() else []) is not None


def _all_cases() -> list[Case]:
    cases = []
    for assignment in COURSE.assignments():
        folder = REPO / "tests" / "submissions" / assignment
        implicit = [case for case in implicit_cases(assignment) if not _covered_by_examples(case)]
        cases += implicit + (load_cases(folder) if folder.is_dir() else [])
    return cases


CASES = sorted(_all_cases(), key=lambda case: case.assignment, reverse=True)
"""The later assignments' cases take longest: they go first, so that short ones even out the workers at the end."""
_GRADED: dict[str, dict[str, CaseResult]] = {}


def _graded(assignment: str) -> dict[str, CaseResult]:
    """Every case of ``assignment``, graded as one class by the grading engine (once per test process: the cases of
    one assignment run on one pytest worker, see their ``xdist_group``)."""
    if assignment not in _GRADED:
        cases = [case for case in CASES if case.assignment == assignment]
        _GRADED[assignment] = {result.case.name: result for result in run_cases(cases, REPO, jobs=1,
                                                                                release_root=COURSE.release)}
    return _GRADED[assignment]


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.xdist_group(f"cases-{case.assignment}"))
                                  for case in CASES], ids=[f"{case.assignment}/{case.name}" for case in CASES])
def test_case_scores_as_described(case: Case) -> None:
    result = _graded(case.assignment)[case.name]
    assert not result.failures, f"{case.description}:\n" + "\n".join(result.failures)
    # No honest submission is taken for tampering: the verdicts given outside the kernel agree with the kernel.
    suspected = [note for note in result.notes if "likely tampering" in note]
    assert not suspected, f"{case.description}: flagged as tampering: {suspected}"
    if case.name == "solution":
        noisy = [cell.grade_id for cell in result.grade.cells if cell.error]
        assert not noisy, f"grade cells with errors or stderr output under the reference solution: {noisy}"


def test_every_assignment_has_wrong_and_right_cases() -> None:
    for assignment in COURSE.assignments():
        described = [case for case in CASES if case.assignment == assignment and case.name not in ("solution", "blank")]
        wrong = [case for case in described if case.lose]
        right = [case for case in described if case.lose == ()]
        assert len(wrong) >= 5, f"{assignment}: only {len(wrong)} wrong-answer cases"
        assert len(right) >= 2, f"{assignment}: only {len(right)} correct-alternative cases"


def test_further_cases_are_well_formed() -> None:
    """The cases in more/ (graded with `./course cases <assignment> --more`, not here) name real cells."""
    from cml.instructor.testing.cases import MORE_CASES
    from cml.instructor.cells import cell_kind, grade_id

    for assignment in COURSE.assignments():
        folder = REPO / "tests" / "submissions" / assignment / MORE_CASES
        cells = {grade_id(cell): cell_kind(cell) for path in COURSE.notebooks(assignment)
                 for cell in COURSE.read(path).cells if grade_id(cell)}
        for case in load_cases(folder, assignment) if folder.is_dir() else []:
            assert case.lose is not None and case.description, f"{assignment}/more/{case.name}: no expectation"
            for name in (*case.lose, *case.cascade):
                assert cells.get(name) == "tests", f"{assignment}/more/{case.name}: {name!r} is not a test cell"
            for name in (*case.cells, *case.blank):
                assert cells.get(name) == "solution", f"{assignment}/more/{case.name}: {name!r} is not a solution cell"


def test_expectations_are_enforced_both_ways() -> None:
    from cml.instructor.grading.model import CellGrade, NotebookGrade

    grade = NotebookGrade([CellGrade("t1", "tests", 2.0, 2.0), CellGrade("t2", "tests", 0.0, 1.0, "boom")])
    assert expectation_failures(Case("c", "a", "", lose=("t2",)), grade) == []
    assert expectation_failures(Case("c", "a", "", lose=()), grade)  # t2 should have passed
    assert expectation_failures(Case("c", "a", "", lose=("t1", "t2")), grade)  # t1 should have failed
    assert expectation_failures(Case("c", "a", "", lose=("nope",)), grade)  # unknown cell named
    assert expectation_failures(Case("c", "a", "", lose=("*",)), grade)  # t1 scored
    assert expectation_failures(Case("c", "a", "", lose=("t1",), cascade=("t2",)), grade)  # t1 scored
    assert expectation_failures(Case("c", "a", "", lose=("t1",), cascade=("t2",)),
                                NotebookGrade([CellGrade("t1", "tests", 0.0, 2.0, "boom")])) == []  # t2 not run
    assert expectation_failures(Case("c", "a", "", lose=(), cascade=()), grade)  # t2 lost, not a cascade


def test_cascades_need_a_lost_cell_and_known_names(tmp_path: Path) -> None:
    from cml.instructor.testing.submissions import load_case

    (tmp_path / "01_neuron").mkdir()
    orphan = tmp_path / "01_neuron" / "orphan.toml"
    orphan.write_text('description = "x"\nlose = []\ncascade = ["test_sigmoid"]\n')
    with pytest.raises(ValueError, match="`lose` must name"):
        load_case(orphan)
    typo = Case("typo", "01_neuron", "", lose=("test_sigmoid",), cascade=("test_sigmoidd",))
    with pytest.raises(ValueError, match="not test cells"):
        run_case(typo, REPO, COURSE.release)
