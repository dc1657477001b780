"""The main job end to end: the bundled example submissions graded by ``cml-course grade`` (nbgrader's
own autograde, in parallel sandboxed workers). The ``demo_run`` fixture (conftest.py) runs it once for the suite.
"""

from __future__ import annotations

import csv
from pathlib import Path


from cml.instructor.cli import EXAMPLES_DIR
from cml.instructor.course import Course
from cml.instructor.testing.submissions import load_cases

REPO = Path(__file__).resolve().parents[1]


def _examples() -> list:
    course = Course(REPO)
    return [case for a in course.assignments() for case in load_cases(REPO / EXAMPLES_DIR / a)]


def test_demo_succeeds_and_prints_the_grade_table(demo_run) -> None:
    completed, _ = demo_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "release/ matches source/ and leaks nothing" in completed.stdout
    assert "student" in completed.stdout and "autograded" in completed.stdout
    for case in _examples():
        assert case.name in completed.stdout
    assert "all checks passed" in completed.stdout


def test_examples_cover_full_zero_and_partial_marks(demo_run) -> None:
    _, workdir = demo_run
    with open(workdir / "grades.csv") as stream:
        rows = list(csv.DictReader(stream))
    expected = {(case.name, case.assignment) for case in _examples()}
    assert {(row["student"], row["assignment"]) for row in rows} == expected
    scores = {(row["student"], row["assignment"]): float(row["code_score"]) for row in rows}
    maxima = {(row["student"], row["assignment"]): float(row["max_code_score"]) for row in rows}
    kinds = set()
    for key, score in scores.items():
        kinds.add("full" if score == maxima[key] else "zero" if score == 0 else "partial")
    assert kinds == {"full", "zero", "partial"}


def test_feedback_is_generated_for_every_submission(demo_run) -> None:
    _, workdir = demo_run
    for case in _examples():
        pages = list((workdir / "feedback" / case.name / case.assignment).glob("*.html"))
        assert pages, f"no feedback for {case.name}/{case.assignment}"
