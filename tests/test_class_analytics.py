"""What a grading run says about a class, on a class really graded: the report names the planted common mistake by
its described case, the similarity report ranks the planted copied pair first and no honest pair above its
threshold, the LMS files hold the gradebook's scores (a manual grade and a late penalty included), and the HTML
report opens in headless Chromium.

The class (``tests/planted_class.py``) is ten students of 01_neuron graded once by the one grading engine, with its
sandbox and its verdicts outside the kernel (about three to five minutes on two cores).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from browser_support import SCREENSHOTS, headless_chromium
from planted_class import ASSIGNMENT, COPIED_PAIR, MISTAKEN, PLANTED_CASE, write_planted_class

from cml.instructor.course import Course
from cml.instructor.grading.run import grade_class

REPO = Path(__file__).resolve().parents[1]
PLANTED_CHECK = "grad_loss_i.zero_weights"
"""The first check the sign mistake fails: every planted student returns the same wrong gradient there."""


@pytest.fixture(scope="module")
def class_report(graded_class, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cml-course report`` of the graded class, its clusters named by grading the described cases with the run's
    seed (clusters of three or more students here, so that only the sign mistake's candidate cases are graded)."""
    from cml.instructor.analytics.report import build_report

    _, run = graded_class
    return build_report(run.json_report.parent, tmp_path_factory.mktemp("analysis"), course_root=REPO,
                        min_cluster=3)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("planted")
    students = write_planted_class(Course(REPO), root / "handed-in")
    run = grade_class(Course(REPO), root / "handed-in", root / "work", [ASSIGNMENT], workers=2, feedback=False,
                      progress=False)
    assert [outcome.status.value for outcome in run.outcomes] == ["graded"] * len(students), run.outcomes
    return root / "work", run


def test_every_check_of_the_class_is_recorded(graded_class) -> None:
    _, run = graded_class
    report = json.loads(run.json_report.read_text())
    counts = {len(submission["checks"]) for submission in report["submissions"]}
    assert len(counts) == 1 and counts.pop() > 50  # every student: every check of 01, in the reference's order
    planted = {submission["student"]: record for submission in report["submissions"]
               for record in submission["checks"] if record["id"] == PLANTED_CHECK}
    assert {student for student, record in planted.items() if record["status"] == "failed"} == set(MISTAKEN)
    assert len({planted[student]["digest"] for student in MISTAKEN}) == 1


def test_lms_files_hold_the_gradebook_scores(graded_class, tmp_path: Path) -> None:
    from cml.instructor.analytics.lms import export_grades

    workdir, run = graded_class
    gradebook = tmp_path / "gradebook.db"  # a copy: the instructor's manual grading, done here, changes it
    gradebook.write_bytes((workdir / "gradebook.db").read_bytes())
    db_url = f"sqlite:///{gradebook}"
    students = sorted(outcome.student for outcome in run.outcomes)
    with Gradebook(db_url) as book:
        notebook = book.find_submission(ASSIGNMENT, "amal").notebooks[0]
        written = next(grade for grade in notebook.grades if grade.cell_type == "markdown")
        written_points = written.max_score
        written.manual_score = written_points
        book.find_submission(ASSIGNMENT, "bo").notebooks[0].late_submission_penalty = 4.0
        book.db.commit()
        expected = {}
        for student in students:
            submission = book.find_submission(ASSIGNMENT, student)
            expected[student] = max(0.0, submission.score - (submission.late_submission_penalty or 0.0))
        max_score = book.find_assignment(ASSIGNMENT).max_score
    amal_before = next(outcome for outcome in run.outcomes if outcome.student == "amal").code_total()
    assert expected["amal"] == amal_before + written_points and expected["bo"] == 25.0 - 4.0

    mapping = tmp_path / "roster.csv"
    with open(mapping, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["student_id", "lms_id", "name", "sis_user_id", "login_id", "section", "email"])
        for number, student in enumerate(students):
            writer.writerow([student, 1000 + number, student.title(), f"S{number:03d}", student, "A",
                             f"{student}@uni.example"])
    canvas = export_grades(workdir, "canvas", mapping, db_url=db_url, out=tmp_path / "canvas.csv")
    rows = list(csv.reader(canvas.path.open(newline="")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", ASSIGNMENT]
    assert rows[1][0].strip() == "Points Possible" and float(rows[1][5]) == max_score
    assert {row[3]: float(row[5]) for row in rows[2:]} == expected
    moodle = export_grades(workdir, "moodle", mapping, db_url=db_url, out=tmp_path / "moodle.csv",
                           moodle_id_field="email")
    rows = list(csv.reader(moodle.path.open(newline="")))
    assert rows[0] == ["Email address", ASSIGNMENT]
    assert {row[0]: float(row[1]) for row in rows[1:]} == {f"{s}@uni.example": v for s, v in expected.items()}


def test_the_report_names_the_planted_mistake_by_its_case(class_report: Path) -> None:
    clusters = list(csv.DictReader((class_report.parent / "clusters.csv").open(newline="")))
    planted = [row for row in clusters if row["check_id"] == PLANTED_CHECK]
    assert len(planted) == 1 and planted[0]["case_name"] == PLANTED_CASE
    assert sorted(planted[0]["members"].split()) == sorted(MISTAKEN) and planted[0]["size"] == "4"
    assert "-0.5" in planted[0]["example_value"]
    page = class_report.read_text()
    section = page[page.index("Clusters of identical wrong values"):]
    section = section[:section.index("<h3", 10)]
    assert PLANTED_CASE in section and PLANTED_CHECK in section
    assert not any(student in section for student in MISTAKEN)  # ids are in the CSV only
    assert "Content-Security-Policy" in page and "<script" not in page.lower()


def test_the_copied_pair_ranks_first_and_no_honest_pair_passes_the_threshold(graded_class, tmp_path: Path) -> None:
    import argparse

    from cml.instructor.analytics import similarity
    from cml.instructor.analytics.similarity_page import DEFAULT_THRESHOLD

    workdir, _ = graded_class
    parser = argparse.ArgumentParser()
    similarity.add_arguments(parser)
    assert similarity.run(parser.parse_args([str(workdir), "--out", str(tmp_path)])) == 0
    pairs = list(csv.DictReader((tmp_path / "similarity.csv").open(newline="")))
    assert pairs, "no pair at all"
    assert {pairs[0]["student_a"], pairs[0]["student_b"]} == set(COPIED_PAIR)
    assert float(pairs[0]["code_score"]) >= 0.9  # renamed, commented, laid out anew: the same code
    above = [{row["student_a"], row["student_b"]} for row in pairs if float(row["combined"]) >= DEFAULT_THRESHOLD]
    assert above == [set(COPIED_PAIR)]
    # The copied wrong answers are evidence too: the pair shares wrong values on hidden checks nobody else gave.
    assert "(hidden)" in pairs[0]["evidence"] and "linear_regression" in pairs[0]["evidence"]
    page = (tmp_path / "similarity.html").read_text()
    assert all(student in page for student in COPIED_PAIR) and "<mark>" in page


def test_the_class_report_opens_in_chromium(class_report: Path) -> None:
    with headless_chromium() as chromium:
        page = chromium.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(class_report.as_uri())
        assert page.title() and page.locator("h2", has_text=ASSIGNMENT).count() == 1
        figures = page.locator("img")
        assert figures.count() >= 2
        assert all(figures.nth(i).evaluate("image => image.naturalWidth") > 0 for i in range(figures.count()))
        assert page.locator("text=" + PLANTED_CASE).count() >= 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert len(page.screenshot(path=SCREENSHOTS / "class-report.png", full_page=True)) > 10_000
        assert errors == [], errors
