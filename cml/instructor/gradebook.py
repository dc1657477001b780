"""Write one submission's grades into the class's nbgrader gradebook.

Only the grading parent writes to the class gradebook, one submission at a time, so SQLite never
sees two writers. What is written is what nbgrader's own ``autograde`` writes (automatic scores and
comments, late penalties, the timestamp), plus nbgrader's ``flagged`` mark on the notebooks of a
submission the report has something to say about; manual grades already given are left alone. The
formgrader, ``nbgrader export`` and ``generate_feedback`` read the result like any other.
"""

from __future__ import annotations

import warnings
from datetime import datetime

from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

__all__ = ["merge_submission"]


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
