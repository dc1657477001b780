"""Write one submission's grades into the class's nbgrader gradebook.

The class gradebook is ``gradebook.db`` (SQLite) in the grading workdir, or any database nbgrader can
use, named by an SQLAlchemy URL (PostgreSQL, when many graders share it). Only the grading parent
writes to it, one submission at a time, so SQLite never sees two writers. What is written is what
nbgrader's own ``autograde`` writes (automatic scores and comments, late penalties, the timestamp), plus
nbgrader's ``flagged`` mark on the notebooks of a submission the report has something to say about;
manual grades already given are left alone. The formgrader, ``nbgrader export`` and
``generate_feedback`` read the result like any other.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

from cml.instructor.authoring.release import CONFIG_FILE, run_nbgrader

__all__ = ["add_assignments", "merge_submission", "use_database"]


def merge_submission(gradebook: Gradebook, student: str, assignment: str, payload: dict, *, flagged: bool) -> None:
    """Create or update ``student``'s submission of ``assignment`` from a worker's ``payload``."""
    gradebook.update_or_create_student(student)
    timestamp = payload.get("timestamp")
    extra = {"timestamp": datetime.fromisoformat(timestamp)} if timestamp else {}
    with warnings.catch_warnings():
        # nbgrader's own autograde triggers the same harmless autoflush warning when it creates a submission.
        warnings.simplefilter("ignore", SAWarning)
        submission = gradebook.update_or_create_submission(assignment, student, **extra)
    notebooks = {notebook.name: notebook for notebook in submission.notebooks}
    for stored in payload["notebooks"]:
        notebook = notebooks[stored["name"]]
        grades = {grade.name: grade for grade in notebook.grades}
        for values in stored["grades"]:
            grade = grades[values["name"]]
            grade.auto_score = values["auto_score"]
            grade.needs_manual_grade = values["needs_manual_grade"]
        comments = {comment.name: comment for comment in notebook.comments}
        for values in stored["comments"]:
            comments[values["name"]].auto_comment = values["auto_comment"]
        if stored.get("late_submission_penalty") is not None:
            notebook.late_submission_penalty = stored["late_submission_penalty"]
        notebook.flagged = flagged
    gradebook.db.commit()


def use_database(workdir: Path, db_url: str) -> None:
    """Make the database at ``db_url`` (an SQLAlchemy URL) the gradebook of the nbgrader course ``workdir``.

    nbgrader creates its tables there if they are missing (so an unreachable database stops the run before any
    grading), and the course's ``nbgrader_config.py`` names it, for the formgrader, ``nbgrader export`` and
    :func:`add_assignments`; the config becomes readable by its owner only, since the URL may hold a password.
    """
    with Gradebook(db_url):
        pass
    config = workdir / CONFIG_FILE
    with open(config, "a") as stream:
        stream.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")
    config.chmod(0o600)


def add_assignments(workdir: Path, assignments: list[str]) -> None:
    """Record ``assignments`` (notebooks, grade cells) in the gradebook the config of ``workdir`` names, with
    ``nbgrader generate_assignment``: it adds or updates them and leaves students, submissions and manual grades
    alone. Raises ``RuntimeError`` with nbgrader's output when it fails."""
    for assignment in assignments:
        run_nbgrader(["generate_assignment", assignment, "--force"], workdir, log=workdir / "grading.log")
