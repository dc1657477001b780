"""A three-question probe assignment, built in memory, for the grading tests (no kernels needed to build it)."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cml.instructor.cells import grade_id

CORRECT = {
    "answer_a": "def double(x):\n    return 2 * x",
    "answer_b": "def triple(x):\n    return 3 * x",
    "answer_c": "def square(x):\n    return x * x",
}


WRITTEN_ANSWER = "The derivative of $x^2$ is $2x$."
"""The written (manually graded) answer of the probe's optional fourth question."""


def graded_cell(kind: str, identifier: str, source: str, points: int = 0):
    """A cell with nbgrader metadata: ``kind`` is ``solution``, ``tests`` (worth ``points``) or ``readonly`` (code
    cells), or ``written`` (a markdown answer graded by hand, worth ``points``)."""
    flags = {"solution": {"solution": True, "grade": False, "locked": False},
             "tests": {"solution": False, "grade": True, "locked": True, "points": points},
             "readonly": {"solution": False, "grade": False, "locked": True},
             "written": {"solution": True, "grade": True, "locked": False, "points": points}}[kind]
    cell = new_markdown_cell(source) if kind == "written" else new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": identifier, "schema_version": 3, **flags}
    return cell


def _solution(body: str) -> str:
    header, _, rest = body.partition("\n")
    return f"{header}\n    ### BEGIN SOLUTION\n{rest}\n    ### END SOLUTION"


def source_notebook(written: bool = False):
    """The instructor's notebook; ``written`` adds a question answered in words (2 points, graded by hand)."""
    hidden = "### BEGIN HIDDEN TESTS\n{}\n### END HIDDEN TESTS"
    notebook = new_notebook(cells=[
        new_markdown_cell("# A probe assignment"),
        graded_cell("readonly", "setup", "import os, sys, time"),
        graded_cell("solution", "answer_a", _solution(CORRECT["answer_a"])),
        graded_cell("tests", "test_a", "assert double(2) == 4\n" + hidden.format('assert double(-3) == -6, "secret-a"'), 1),
        graded_cell("solution", "answer_b", _solution(CORRECT["answer_b"])),
        graded_cell("tests", "test_b", "assert triple(2) == 6\n" + hidden.format('assert triple(-1) == -3, "secret-b"'), 2),
        graded_cell("solution", "answer_c", _solution(CORRECT["answer_c"])),
        graded_cell("tests", "test_c", "assert square(3) == 9\n" + hidden.format('assert square(-2) == 4, "secret-c"'), 3),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    if written:
        notebook.cells += [new_markdown_cell("Why is the derivative of `square` what it is? Answer in words."),
                           graded_cell("written", "answer_w", WRITTEN_ANSWER, 2)]
    return notebook


def student_notebook(written: bool = False, **answers: str):
    """The release version with the answers given (default: correct) and the hidden tests removed."""
    notebook = source_notebook(written)
    for cell in notebook.cells:
        identifier = grade_id(cell)
        if identifier in CORRECT or identifier == "answer_w":
            cell.source = answers.get(identifier, CORRECT.get(identifier, WRITTEN_ANSWER))
        elif identifier and identifier.startswith("test_"):
            cell.source = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip()
    return notebook
