"""Autograde a folder of submissions with nbgrader and summarise the gradebook.

Submissions are laid out as nbgrader collects them: ``<submissions>/<student>/<assignment>/*.ipynb``.
Grading happens in a working course directory (its own gradebook, ``submitted/``, ``autograded/``,
``feedback/``), so the repository is never written to.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from cml.instructor.defaults import GRADING_ENVIRONMENT
from cml.instructor.grading.model import CellGrade
from cml.instructor.grading.run import prepare_workdir
from cml.instructor.course import Course
from cml.instructor.authoring.release import run_nbgrader

__all__ = ["GradeRow", "autograde", "read_grades", "write_csv", "format_table"]


@dataclass(frozen=True)
class GradeRow:
    student: str
    assignment: str
    code_score: float
    max_code_score: float
    written_score: float
    max_written_score: float
    needs_manual_grade: bool
    failed_cells: str
    """Grade ids of the test cells that scored less than their points."""
    cells: tuple[CellGrade, ...] = field(default=(), repr=False, compare=False)
    """Every grade cell's score (not written to the CSV)."""


def autograde(course: Course, submissions: Path, workdir: Path, assignments: list[str] | None = None) -> list[GradeRow]:
    """Grade every submission of ``assignments`` (default: all) and write feedback; returns the grade rows.

    The log of every nbgrader call goes to ``workdir/grading.log``.
    """
    assignments = assignments or course.assignments()
    prepare_workdir(course, workdir, assignments)
    log = workdir / "grading.log"
    shutil.copytree(submissions, workdir / "submitted",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    database = f"sqlite:///{workdir.resolve()}/gradebook.db"
    for assignment in assignments:
        steps = (
            ["generate_assignment", assignment, "--force", "--db", database],
            ["autograde", assignment, "--create", "--force", "--db", database],
            ["generate_feedback", assignment, "--force", "--db", database],
        )
        for step in steps:
            run_nbgrader(step, workdir, log=log, environment=GRADING_ENVIRONMENT)
    return read_grades(database, assignments)


def read_grades(database: str, assignments: list[str]) -> list[GradeRow]:
    """One row per (student, assignment) that the gradebook holds a submission for."""
    rows = []
    with Gradebook(database) as gradebook:
        for student in sorted(gradebook.students, key=lambda s: s.id):
            for assignment in assignments:
                try:
                    submission = gradebook.find_submission(assignment, student.id)
                except MissingEntry:
                    continue
                cells = tuple(
                    CellGrade(
                        grade.name,
                        "tests" if grade.cell_type == "code" and not grade.needs_manual_grade else "manual",
                        None if grade.needs_manual_grade else float(grade.score or 0),
                        float(grade.max_score),
                    )
                    for notebook in submission.notebooks
                    for grade in notebook.grades
                )
                failed = [cell.grade_id for cell in cells if cell.kind == "tests" and cell.score < cell.max_score]
                rows.append(GradeRow(
                    student=student.id,
                    assignment=assignment,
                    code_score=float(submission.code_score),
                    max_code_score=float(submission.max_code_score),
                    written_score=float(submission.written_score),
                    max_written_score=float(submission.max_written_score),
                    needs_manual_grade=bool(submission.needs_manual_grade),
                    failed_cells=" ".join(sorted(failed)),
                    cells=cells,
                ))
    return rows


def write_csv(rows: list[GradeRow], path: Path) -> None:
    with open(path, "w", newline="") as stream:
        columns = [column.name for column in fields(GradeRow) if column.name != "cells"]
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows({column: getattr(row, column) for column in columns} for row in rows)


def format_table(rows: list[GradeRow]) -> str:
    """A plain-text grade table: autograded points, written answers awaiting a grader, failed test cells."""
    header = f"{'student':<16} {'assignment':<22} {'autograded':>12} {'written':>10}  failed tests"
    lines = [header, "-" * len(header)]
    for row in rows:
        written = "pending" if row.needs_manual_grade else f"{row.written_score:g}/{row.max_written_score:g}"
        failed = row.failed_cells if len(row.failed_cells) <= 60 else row.failed_cells[:57] + "..."
        lines.append(f"{row.student:<16} {row.assignment:<22} {row.code_score:>6g}/{row.max_code_score:<5g} "
                     f"{written:>10}  {failed or '-'}")
    return "\n".join(lines)
