"""Repairs made before grading, and the feedback filter, on notebooks built in memory (no kernels)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat.v4 import new_code_cell, new_output
from traitlets.config import Config
from probe_course import source_notebook, student_notebook

from cml.instructor.preprocessors.feedback import HIDDEN_PLACEHOLDER, hide_test_code
from cml.instructor.cells import grade_id
from cml.instructor.preprocessors.intake import (
    UNANSWERED_STUB,
    IntakeReport,
    IntakeRepairs,
    prepare_submission,
    read_notes,
    repair_notebook,
)

REPO = Path(__file__).resolve().parents[1]


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
    assert _ids(repaired) == _ids(source_notebook()) and any("'answer_b' was deleted" in n.text for n in notes)


def test_cells_a_student_added_stay_after_the_cell_they_followed() -> None:
    submission = student_notebook()
    helper = new_code_cell("HELPER = 1")
    submission.cells.insert(3, helper)  # after answer_a
    submission.cells.append(submission.cells.pop(2))  # answer_a moved to the end: the helper now follows setup
    repaired, notes = repair_notebook(submission, source_notebook())
    sources = [cell.source for cell in repaired.cells]
    assert _ids(repaired)[:5] == [None, "setup", None, "answer_a", "test_a"]
    assert sources[2] == "HELPER = 1" and any("source order" in note.text for note in notes)


def test_invented_grading_metadata_is_removed() -> None:
    submission = student_notebook()
    fake = new_code_cell("pass")
    fake.metadata["nbgrader"] = {"grade": True, "points": 100, "grade_id": "free_points", "locked": True}
    submission.cells.append(fake)
    repaired, notes = repair_notebook(submission, source_notebook())
    assert "nbgrader" not in repaired.cells[-1].metadata and any("free_points" in note.text for note in notes)


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


def _pre_cell_ids(notebook) -> dict:
    """``notebook`` as a Jupyter from before cell ids (nbformat 4.4) saved it: plain JSON, no ``id`` keys."""
    saved = json.loads(json.dumps(notebook))
    saved["nbformat_minor"] = 4
    for cell in saved["cells"]:
        cell.pop("id", None)
    return saved


def test_a_notebook_saved_before_cell_ids_is_upgraded_without_a_flag(tmp_path: Path) -> None:
    """nbgrader's documentation's example course has such notebooks: grading them is routine, not a problem."""
    source_path = REPO / "source" / "01_neuron" / "01_neuron.ipynb"
    released = nbformat.read(REPO / "release" / "01_neuron" / "01_neuron.ipynb", as_version=4)
    (tmp_path / "01_neuron.ipynb").write_text(json.dumps(_pre_cell_ids(released)))
    report = prepare_submission(tmp_path, {"01_neuron.ipynb": nbformat.read(source_path, as_version=4)})
    assert report.notes == [] and len(report.remarks) == 1 and "nbformat 4.4" in report.remarks[0]
    upgraded = nbformat.read(tmp_path / "01_neuron.ipynb", as_version=4)
    assert upgraded.nbformat_minor == 5 and len({cell.id for cell in upgraded.cells}) == len(upgraded.cells)
    assert "Notes from the grader" not in upgraded.cells[0].source and _ids(upgraded) == _ids(released)


def test_repeated_cell_ids_of_a_current_notebook_still_flag() -> None:
    submission = student_notebook()
    submission.cells[2].id = submission.cells[1].id
    _, notes = repair_notebook(submission, source_notebook())
    assert [note.flag for note in notes] == [True] and "cell ids were renewed" in notes[0].text


def test_without_repair_the_folder_is_prepared_and_the_notebooks_left_as_they_are(tmp_path: Path) -> None:
    broken = student_notebook()
    broken.cells = [cell for cell in broken.cells if grade_id(cell) != "answer_b"]
    (tmp_path / "probe (1).ipynb").write_text(json.dumps(broken))
    report = prepare_submission(tmp_path, {"probe.ipynb": source_notebook()}, repair=False)
    assert len(report.notes) == 1 and "had been renamed" in report.notes[0]
    assert json.loads((tmp_path / "probe.ipynb").read_text()) == json.loads(json.dumps(broken))


def _intake(tmp_path: Path, submission, notebook: str = "probe") -> tuple:
    (tmp_path / "source").mkdir(exist_ok=True)
    nbformat.write(source_notebook(), tmp_path / "source" / "probe.ipynb")
    repairs = IntakeRepairs(source_folder=str(tmp_path / "source"), notes_file=str(tmp_path / "notes.jsonl"))
    return repairs.preprocess(submission, {"nbgrader": {"notebook": notebook}})


def test_the_preprocessor_repairs_the_notebook_nbgrader_reads_and_writes_its_notes(tmp_path: Path) -> None:
    submission = student_notebook()
    submission.cells = [cell for cell in submission.cells if grade_id(cell) != "answer_b"]
    repaired, resources = _intake(tmp_path, submission)
    assert resources == {"nbgrader": {"notebook": "probe"}}
    assert repaired.cells[0].source.startswith("**Notes from the grader**") and "was deleted" in repaired.cells[0].source
    assert _ids(repaired)[1:] == _ids(source_notebook())
    records = [json.loads(line) for line in (tmp_path / "notes.jsonl").read_text().splitlines()]
    assert records == [{"notebook": "probe.ipynb", "flag": True,
                        "note": "The answer cell 'answer_b' was deleted: it counts as unanswered."}]
    notes = read_notes(tmp_path / "notes.jsonl")
    assert notes == [("probe.ipynb: The answer cell 'answer_b' was deleted: it counts as unanswered.", True)]
    report = IntakeReport()
    report.add(notes)
    assert report.notes == [notes[0].text] and report.remarks == []


def test_the_preprocessor_notes_an_upgrade_without_a_flag_or_a_cell(tmp_path: Path) -> None:
    submission = nbformat.from_dict(_pre_cell_ids(student_notebook()))
    repaired, _ = _intake(tmp_path, submission)
    assert repaired.nbformat_minor == 5 and _ids(repaired) == _ids(source_notebook())
    assert [flag for _, flag in read_notes(tmp_path / "notes.jsonl")] == [False]


def test_the_preprocessor_leaves_alone_what_it_has_no_source_for(tmp_path: Path) -> None:
    submission = student_notebook()
    submission.cells.pop(2)
    before = copy.deepcopy(submission)
    assert _intake(tmp_path, submission, notebook="other")[0] == before
    assert IntakeRepairs().preprocess(submission, {})[0] == before
    assert read_notes(tmp_path / "notes.jsonl") == []


def test_the_preprocessor_runs_as_nbconvert_runs_nbgrader_s_sanitize_step(tmp_path: Path) -> None:
    """nbconvert reads the file (an nbformat 4.4 one stays 4.4) and hands it on: the upgrade is seen and noted."""
    (tmp_path / "source").mkdir()
    nbformat.write(source_notebook(), tmp_path / "source" / "probe.ipynb")
    (tmp_path / "probe.ipynb").write_text(json.dumps(_pre_cell_ids(student_notebook())))
    config = Config({"IntakeRepairs": {"source_folder": str(tmp_path / "source"),
                                       "notes_file": str(tmp_path / "notes.jsonl")}})
    exporter = NotebookExporter(config=config)
    exporter.register_preprocessor(IntakeRepairs, enabled=True)
    output, _ = exporter.from_filename(str(tmp_path / "probe.ipynb"), resources={"nbgrader": {"notebook": "probe"}})
    assert json.loads(output)["nbformat_minor"] == 5
    assert [flag for _, flag in read_notes(tmp_path / "notes.jsonl")] == [False]
