"""LMS export: Canvas and Moodle grade files from an nbgrader gradebook built here with nbgrader's API.

The expected scores are computed in this file from the raw numbers put into the gradebook (manual score over
automatic score, summed, minus the notebooks' late penalties, at least 0), not by asking nbgrader, and every cell of
both files is compared. The PostgreSQL test uses the server fixture of ``test_cluster.py``: skipped with the reason
when PostgreSQL is not installed, failed under CI.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning
from test_cluster import postgres_url  # noqa: F401  (the PostgreSQL server fixture, used by name)

from cml.instructor.analytics import lms
from cml.instructor.analytics.lms import LmsExportError, export_grades

# assignment -> notebook -> cell -> max score; "essay" is a manually graded markdown cell.
CELLS = {"a1_neuron": {"nb1": {"q1": 3.0, "q2": 2.0, "essay": 5.0}, "nb2": {"q3": 4.0}},
         "a2_mlp": {"p1": {"r1": 10.0}}}
# (student, assignment) -> cell -> (auto_score, manual_score, needs_manual_grade); absent pair = no submission.
GRADES = {
    ("ada", "a1_neuron"): {"q1": (3.0, None, False), "q2": (1.0, 2.0, False), "essay": (None, 4.0, False),
                           "q3": (4.0, None, False)},
    ("ada", "a2_mlp"): {"r1": (7.25, None, False)},
    ("ben", "a1_neuron"): {"q1": (0.0, None, False), "q2": (2.0, None, False), "essay": (None, None, True),
                           "q3": (2.0, None, False)},
    ("ben", "a2_mlp"): {"r1": (10.0, 6.5, False)},
    ("cyd", "a1_neuron"): {"q1": (1.5, None, False), "q2": (0.0, None, False), "essay": (None, 3.0, False),
                           "q3": (0.0, 1.0, False)},
    ("=evil", "a2_mlp"): {"r1": (1.0, None, False)},
}
# (student, assignment, notebook) -> late submission penalty
PENALTIES = {("ada", "a1_neuron", "nb2"): 1.5, ("ben", "a2_mlp", "p1"): 100.0}
STUDENTS = {"ada": ("Lovelace", "Ada"), "ben": ("Bitdiddle", "Ben"), "cyd": ("", ""), "=evil": ("", "")}
MAPPING = ("student_id,lms_id,name,sis_user_id,login_id,section,email\n"
           "ada,101,\"Lovelace, Ada\",S1,ada.l,Sec A,ada@uni.example\n"
           "ben,102,,S2,ben.b,Sec A,ben@uni.example\n"
           "cyd,103,Cyd,S3,cyd.c,Sec B,cyd@uni.example\n"
           "=evil,104,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-S4,@evil,+Sec,=evil@uni.example\n")


def expected_score(student: str, assignment: str) -> float | None:
    """The final score computed from the raw inputs above; ``None`` for no submission."""
    cells = GRADES.get((student, assignment))
    if cells is None:
        return None
    raw = sum(manual if manual is not None else auto or 0.0 for auto, manual, _ in cells.values())
    penalty = sum(value for (who, what, _), value in PENALTIES.items() if (who, what) == (student, assignment))
    return max(0.0, raw - penalty)


def build_gradebook(db_url: str) -> None:
    """Put ``CELLS``, ``STUDENTS``, ``GRADES`` and ``PENALTIES`` into a new gradebook at ``db_url``."""
    # nbgrader stamps a new database with the head revision it asks an ``alembic`` subprocess for (seconds, and
    # the program must be on PATH); the same answer comes from alembic's API in-process.
    from alembic.script import ScriptDirectory
    from nbgrader import api
    from nbgrader.dbutil import ALEMBIC_DIR

    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setattr(api, "get_alembic_version", lambda: head)
        # nbgrader's add_submission triggers a harmless SQLAlchemy autoflush warning
        warnings.simplefilter("ignore", SAWarning)
        _fill_gradebook(db_url)


def _fill_gradebook(db_url: str) -> None:
    with Gradebook(db_url) as gradebook:
        for assignment, notebooks in CELLS.items():
            gradebook.add_assignment(assignment)
            for notebook, cells in notebooks.items():
                gradebook.add_notebook(notebook, assignment)
                for cell, max_score in cells.items():
                    gradebook.add_grade_cell(cell, notebook, assignment, max_score=max_score,
                                             cell_type="markdown" if cell == "essay" else "code")
        for student, (last, first) in STUDENTS.items():
            gradebook.add_student(student, last_name=last or None, first_name=first or None)
        for (student, assignment), cells in GRADES.items():
            gradebook.add_submission(assignment, student)
            for notebook, cell_scores in CELLS[assignment].items():
                for cell in cell_scores:
                    grade = gradebook.find_grade(cell, notebook, assignment, student)
                    grade.auto_score, grade.manual_score, grade.needs_manual_grade = cells[cell]
        for (student, assignment, notebook), penalty in PENALTIES.items():
            gradebook.find_submission_notebook(notebook, assignment, student).late_submission_penalty = penalty
        gradebook.db.commit()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course folder with ``gradebook.db`` and ``mapping.csv``."""
    folder = tmp_path_factory.mktemp("course")
    build_gradebook(f"sqlite:///{folder / 'gradebook.db'}")
    (folder / "mapping.csv").write_text(MAPPING, encoding="utf-8")
    return folder


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def as_cell(score: float | None) -> str:
    return "" if score is None else f"{score:g}"


def test_canvas_file_has_every_cell_right(workdir: Path, tmp_path: Path) -> None:
    assignments = tmp_path / "assignments.csv"
    assignments.write_text("assignment,lms_name,lms_id\na2_mlp,MLP lab,5521\na1_neuron,Neuron lab,\n")
    result = export_grades(workdir, "canvas", workdir / "mapping.csv", assignments=assignments,
                           out=tmp_path / "canvas.csv")
    rows = read_rows(result.path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "MLP lab (5521)", "Neuron lab"]
    assert rows[1] == ["Points Possible", "", "", "", "", "10", "14"]
    expected_fixed = {"101": ["Lovelace, Ada", "101", "S1", "ada.l", "Sec A"],
                      "102": ["Bitdiddle, Ben", "102", "S2", "ben.b", "Sec A"],  # name from the gradebook
                      "103": ["Cyd", "103", "S3", "cyd.c", "Sec B"],
                      "104": ["'=HYPERLINK(\"http://x\",\"y\")", "104", "'-S4", "'@evil", "'+Sec"]}
    by_lms_id = {"101": "ada", "102": "ben", "103": "cyd", "104": "=evil"}
    assert [row[1] for row in rows[2:]] == ["101", "102", "103", "104"]  # the mapping's order
    for row in rows[2:]:
        student = by_lms_id[row[1]]
        assert row[:5] == expected_fixed[row[1]]
        assert row[5:] == [as_cell(expected_score(student, "a2_mlp")), as_cell(expected_score(student, "a1_neuron"))]
    # spot values, so that a wrong formula above cannot pass unnoticed
    assert rows[2][5:] == ["7.25", "11.5"] and rows[3][5:] == ["0", "4"] and rows[4][5] == ""
    assert (result.rows, result.columns) == (4, 2)


@pytest.mark.parametrize(("id_field", "header", "values"), [
    ("email", "Email address", ["ada@uni.example", "ben@uni.example", "cyd@uni.example", "'=evil@uni.example"]),
    ("username", "Username", ["ada.l", "ben.b", "cyd.c", "'@evil"]),
    ("idnumber", "ID number", ["S1", "S2", "S3", "'-S4"]),
])
def test_moodle_file_for_each_identifier(workdir: Path, tmp_path: Path, id_field: str, header: str,
                                         values: list[str]) -> None:
    result = export_grades(workdir, "moodle", workdir / "mapping.csv", out=tmp_path / "moodle.csv",
                           moodle_id_field=id_field)
    rows = read_rows(result.path)
    assert rows[0] == [header, "a1_neuron", "a2_mlp"]  # nbgrader's names and order by default
    assert [row[0] for row in rows[1:]] == values
    for row, student in zip(rows[1:], ["ada", "ben", "cyd", "=evil"]):
        assert row[1:] == [as_cell(expected_score(student, "a1_neuron")), as_cell(expected_score(student, "a2_mlp"))]


def test_moodle_falls_back_to_lms_id_when_the_mapping_lacks_the_column(workdir: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("student_id,lms_id\nada,ada@uni.example\nben,ben@uni.example\ncyd,cyd@uni.example\n"
                       "=evil,evil@uni.example\n")
    result = export_grades(workdir, "moodle", mapping, out=tmp_path / "moodle.csv")
    assert [row[0] for row in read_rows(result.path)] == ["Email address", "ada@uni.example", "ben@uni.example",
                                                          "cyd@uni.example", "evil@uni.example"]
    mapping.write_text("student_id,lms_id,email\nada,1,ada@uni.example\nben,2,\n")
    with pytest.raises(LmsExportError, match="no email"):
        export_grades(workdir, "moodle", mapping, out=tmp_path / "moodle2.csv")
    assert not (tmp_path / "moodle2.csv").exists()


def test_missing_as_zero_and_default_output_path(workdir: Path) -> None:
    result = export_grades(workdir, "canvas", workdir / "mapping.csv", missing_as_zero=True)
    assert result.path == workdir / "exports" / "canvas-grades.csv"
    rows = read_rows(result.path)
    assert rows[4][5:] == [as_cell(expected_score("cyd", "a1_neuron")), "0"]  # cyd handed in no a2_mlp
    assert rows[5][5:] == ["0", "1"]


def test_manual_grading_is_a_warning_or_a_refusal(workdir: Path, tmp_path: Path) -> None:
    result = export_grades(workdir, "canvas", workdir / "mapping.csv", out=tmp_path / "c.csv")
    manual = [warning for warning in result.warnings if "manual grading" in warning]
    assert len(manual) == 1 and "ben a1_neuron nb1/essay" in manual[0] and "1 grade " in manual[0]
    with pytest.raises(LmsExportError, match="require-complete.*ben a1_neuron nb1/essay"):
        export_grades(workdir, "canvas", workdir / "mapping.csv", out=tmp_path / "d.csv", require_complete=True)
    assert not (tmp_path / "d.csv").exists()


def test_mismatches_warn_and_strict_refuses(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("student_id,lms_id\nada,101\nzed,999\n")
    assignments = tmp_path / "assignments.csv"
    assignments.write_text("assignment,lms_name\na1_neuron,Neuron\nghost,Ghost\n")
    result = export_grades(workdir, "canvas", mapping, assignments=assignments, out=tmp_path / "c.csv")
    text = "\n".join(result.warnings)
    assert "ben" in text and "cyd" in text and "=evil" in text and "not in the mapping" in text
    assert "zed" in text and "does not know" in text
    assert "ghost" in text and "a2_mlp" in text
    rows = read_rows(result.path)
    assert [row[1] for row in rows[2:]] == ["101"] and rows[0][5:] == ["Neuron"]

    parser = argparse.ArgumentParser()
    lms.add_arguments(parser)
    out = tmp_path / "strict.csv"
    arguments = parser.parse_args([str(workdir), "--lms", "canvas", "--mapping", str(mapping), "--strict",
                                   "--out", str(out)])
    assert lms.run(arguments) == 2
    assert "--strict" in capsys.readouterr().err and not out.exists()
    arguments = parser.parse_args([str(workdir), "--lms", "moodle", "--mapping", str(mapping),
                                   "--moodle-id-field", "idnumber", "--out", str(out)])
    assert lms.run(arguments) == 0
    printed = capsys.readouterr().out
    assert "1 student row, 2 grade columns" in printed and "warning:" in printed
    assert read_rows(out)[0] == ["ID number", "a1_neuron", "a2_mlp"]


@pytest.mark.parametrize(("content", "message"), [
    (b"student_id,name\nada,Ada\n", "lacks the column"),
    (b"", "empty"),
    (b"student_id,lms_id\nada,1\nben,1\n", "lms_id '1' on line 2 and again on line 3"),
    (b"student_id,lms_id\nada,1\nada,2\n", "student_id 'ada'"),
    (b"student_id,lms_id\nada,\n", "line 2: empty lms_id"),
    (b"student_id,lms_id\n ,7\n", "empty student_id"),
    (b"student_id,lms_id\nada,1,extra\n", "3 fields for 2 columns"),
    (b"student_id,lms_id\nada,\"1\n", "cannot read"),
    (b"student_id,lms_id\nada,\xff\xfe\n", "cannot read"),
    (b"student_id,lms_id,LMS_ID\nada,1,2\n", "more than once"),
])
def test_bad_mapping_is_refused_and_nothing_written(workdir: Path, tmp_path: Path, content: bytes,
                                                    message: str) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_bytes(content)
    with pytest.raises(LmsExportError, match=message.replace("(", r"\(")):
        export_grades(workdir, "canvas", mapping, out=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_bad_assignment_mapping_is_refused(workdir: Path, tmp_path: Path) -> None:
    assignments = tmp_path / "assignments.csv"
    assignments.write_text("assignment,lms_name\na1_neuron,Lab\na2_mlp,Lab\n")
    with pytest.raises(LmsExportError, match="lms_name 'Lab'"):
        export_grades(workdir, "canvas", workdir / "mapping.csv", assignments=assignments, out=tmp_path / "o.csv")


def test_spreadsheet_guard_leaves_numbers_and_plain_text_alone(tmp_path: Path) -> None:
    for text in ("=1+2", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert lms.spreadsheet_safe(text) == "'" + text
    for text in ("Ada", "", "1e3", "'already"):
        assert lms.spreadsheet_safe(text) == text
    path = tmp_path / "t.csv"
    lms.write_table([["=x", 2.5, None, 10.0, 0.1 + 0.2, 1e-9]], path)
    assert read_rows(path) == [["'=x", "2.5", "", "10", "0.3", "0"]]


def test_gradebook_location(tmp_path: Path, workdir: Path) -> None:
    assert lms.default_db_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'gradebook.db'}"
    with pytest.raises(LmsExportError, match="no gradebook"):
        export_grades(tmp_path, "canvas", workdir / "mapping.csv")
    assert not (tmp_path / "gradebook.db").exists()  # not silently created
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.db_url = 'postgresql://old/x'\n"
        f"c.CourseDirectory.db_url = {str('sqlite:///' + str(workdir / 'gradebook.db'))!r}\n")
    assert lms.default_db_url(tmp_path) == f"sqlite:///{workdir / 'gradebook.db'}"
    result = export_grades(tmp_path, "moodle", workdir / "mapping.csv")
    assert result.rows == 4 and result.path == tmp_path / "exports" / "moodle-grades.csv"


def test_postgresql_gradebook_gives_the_same_files(workdir: Path, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url")
    build_gradebook(url)
    for lms_name in ("canvas", "moodle"):
        from_sqlite = export_grades(workdir, lms_name, workdir / "mapping.csv", out=tmp_path / f"s-{lms_name}.csv")
        from_postgres = export_grades(workdir, lms_name, workdir / "mapping.csv", db_url=url,
                                      out=tmp_path / f"p-{lms_name}.csv")
        assert from_postgres.path.read_bytes() == from_sqlite.path.read_bytes()
        assert from_postgres.warnings == from_sqlite.warnings


def test_scores_agree_with_nbgrader_own_csv_export(workdir: Path, tmp_path: Path) -> None:
    from nbgrader.plugins.export import CsvExportPlugin

    with Gradebook(f"sqlite:///{workdir / 'gradebook.db'}") as gradebook:
        CsvExportPlugin(to=str(tmp_path / "nbgrader.csv")).export(gradebook)
    with open(tmp_path / "nbgrader.csv", newline="") as stream:
        theirs = {(row["student_id"], row["assignment"]): float(row["score"]) for row in csv.DictReader(stream)
                  if (row["student_id"], row["assignment"]) in GRADES}
    ours = read_rows(export_grades(workdir, "moodle", workdir / "mapping.csv", moodle_id_field="idnumber",
                                   out=tmp_path / "ours.csv").path)
    by_sis = {"S1": "ada", "S2": "ben", "S3": "cyd", "'-S4": "=evil"}
    compared = {(by_sis[row[0]], assignment): float(value)
                for row in ours[1:] for assignment, value in zip(ours[0][1:], row[1:]) if value}
    assert compared == pytest.approx(theirs) and len(compared) == len(GRADES)
