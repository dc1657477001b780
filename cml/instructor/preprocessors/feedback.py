"""Feedback without the hidden tests: a preprocessor for ``nbgrader generate_feedback``.

The autograded notebook holds every test cell with its hidden part (nbgrader restores them before
running), and nbgrader's feedback shows those cells as they are: the hidden tests' code, and the
tracebacks of failed checks, which quote it line by line. :class:`HideTestCode` removes both from the
feedback only. A test cell keeps its visible tests, what it printed (the checks' PASSED/FAILED lines),
its failure message and its points; the hidden part becomes one comment line. ``nbgrader_config.py``
puts it into ``GenerateFeedback.preprocessors``, so the formgrader's feedback uses it too.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from cml.instructor.cells import HIDDEN_MARKERS, cell_kind, remove_regions

__all__ = ["HIDDEN_PLACEHOLDER", "HideTestCode", "hide_test_code"]

HIDDEN_PLACEHOLDER = "# (hidden tests: their code is not shown in feedback)"


def hide_test_code(cell: NotebookNode) -> NotebookNode:
    """Replace the hidden tests of a test cell by a placeholder and cut its error tracebacks to one line.

    A region left open is hidden to the end of the cell: the feedback never shows what nbgrader would hide.
    """
    if cell.cell_type != "code" or cell_kind(cell) != "tests":
        return cell
    cell.source = remove_regions(cell.source, HIDDEN_MARKERS, HIDDEN_PLACEHOLDER, strict=False)
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
    return cell


class HideTestCode(NbGraderPreprocessor):
    """Feedback preprocessor: no hidden test code, no traceback quoting a test cell's code."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        return hide_test_code(cell), resources
