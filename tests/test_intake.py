"""Repairs made before grading, and the feedback filter, on notebooks built in memory (no kernels)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from nbformat.v4 import new_code_cell, new_output
from probe_course import source_notebook, student_notebook

from cml.instructor.preprocessors.feedback import HIDDEN_PLACEHOLDER, hide_test_code
from cml.instructor.preprocessors.intake import UNANSWERED_STUB, prepare_submission, repair_notebook
from cml.instructor.course import grade_id


def _ids(notebook) -> list[str | None]:
    return [grade_id(cell) for cell in notebook.cells]


def test_an_untouched_submission_needs_no_repair() -> None:
    submission = student_notebook()
    before = copy.deepcopy(submission)
    repaired, notes = repair_notebook(submission, source_notebook())
    assert notes == [] and repaired == before


def test_a_deleted_answer_comes_back_unanswered_and_never_as_the_solution() -> None:
    submission = student_notebook()
    submission.cells = [cell for cell in submission.cells if grade_id(cell) != "answer_b"]
    repaired, notes = repair_notebook(submission, source_notebook())
    cell = next(cell for cell in repaired.cells if grade_id(cell) == "answer_b")
    assert cell.source == UNANSWERED_STUB and "BEGIN SOLUTION" not in json.dumps(repaired)
    assert _ids(repaired) == _ids(source_notebook()) and any("'answer_b' was deleted" in n for n in notes)


def test_cells_a_student_added_stay_after_the_cell_they_followed() -> None:
    submission = student_notebook()
    helper = new_code_cell("HELPER = 1")
    submission.cells.insert(3, helper)  # after answer_a
    submission.cells.append(submission.cells.pop(2))  # answer_a moved to the end: the helper now follows setup
    repaired, notes = repair_notebook(submission, source_notebook())
    sources = [cell.source for cell in repaired.cells]
    assert _ids(repaired)[:5] == [None, "setup", None, "answer_a", "test_a"]
    assert sources[2] == "HELPER = 1" and any("source order" in note for note in notes)


def test_invented_grading_metadata_is_removed() -> None:
    submission = student_notebook()
    fake = new_code_cell("pass")
    fake.metadata["nbgrader"] = {"grade": True, "points": 100, "grade_id": "free_points", "locked": True}
    submission.cells.append(fake)
    repaired, notes = repair_notebook(submission, source_notebook())
    assert "nbgrader" not in repaired.cells[-1].metadata and any("free_points" in note for note in notes)


def test_unreadable_and_renamed_notebooks(tmp_path: Path) -> None:
    sources = {"probe.ipynb": source_notebook()}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "probe (1).ipynb").write_text(json.dumps(student_notebook()))
    report = prepare_submission(tmp_path / "a", sources)
    assert (tmp_path / "a" / "probe.ipynb").exists() and "had been renamed" in report.notes[0]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "probe.ipynb").write_text('{"nbformat": 4, "cells": 3}')
    report = prepare_submission(tmp_path / "b", sources)
    assert report.unreadable == ["probe.ipynb"] and not (tmp_path / "b" / "probe.ipynb").exists()


def test_feedback_hides_hidden_tests_and_their_tracebacks() -> None:
    cell = copy.deepcopy(source_notebook().cells[3])
    cell.outputs = [new_output("error", ename="AssertionError", evalue="secret-a failed",
                               traceback=['----> 2 assert double(-3) == -6, "secret-a"'])]
    hidden = hide_test_code(cell)
    assert "double(-3)" not in json.dumps(hidden) and HIDDEN_PLACEHOLDER in hidden.source
    assert hidden.source.startswith("assert double(2) == 4")
    assert hidden.outputs[0].traceback == ["AssertionError: secret-a failed"]
    unterminated = new_code_cell("visible()\n### BEGIN HIDDEN TESTS\nsecret()")
    unterminated.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t", "points": 1}
    assert "secret" not in hide_test_code(unterminated).source
