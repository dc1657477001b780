"""The course manifest: what a student's self-check needs to know of the release, written into the release notebook.

``nbgrader generate_assignment`` runs :class:`WriteManifest` first (``nbgrader_config.py``), on the source notebook,
while the hidden tests are still there to be seen. It writes into the notebook's metadata, under
:data:`cml.selfcheck.MANIFEST_KEY`::

    {"assignment": "01_neuron", "notebook": "01_neuron.ipynb",
     "cells": [{"grade_id": "test_sigmoid", "kind": "tests", "points": 2.0, "hidden_tests": true}, ...]}

one entry per nbgrader cell, in order (kinds: :class:`cml.selfcheck.Kind`). Only ids, kinds, points and one boolean
per cell: nothing of a test's code. Students' copies keep the notebook's metadata, so the manifest travels into
their submissions, where :mod:`cml.selfcheck` reads it (deleted cells, hidden-test points, the file's name); grading
ignores it.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from cml.instructor.cells import HIDDEN_MARKERS, cell_kind, grade_id, has_region, nbgrader_metadata
from cml.selfcheck import MANIFEST_KEY, Kind

__all__ = ["KINDS", "WriteManifest", "build_manifest"]

KINDS = {"tests": Kind.TESTS, "manual": Kind.WRITTEN, "solution": Kind.ANSWER, "readonly": Kind.LOCKED}
""":func:`cml.instructor.cells.cell_kind`'s names for the manifest's kinds."""


def build_manifest(notebook: NotebookNode, assignment: str, notebook_name: str) -> dict[str, Any]:
    """The manifest of a source notebook (hidden tests still in it) released as ``notebook_name``."""
    cells = []
    for cell in notebook.cells:
        kind = KINDS.get(cell_kind(cell) or "")
        if kind is None or grade_id(cell) is None:
            continue
        graded = kind in (Kind.TESTS, Kind.WRITTEN)
        cells.append({
            "grade_id": grade_id(cell),
            "kind": kind.value,
            "points": float(nbgrader_metadata(cell).get("points", 0)) if graded else 0.0,
            "hidden_tests": kind is Kind.TESTS and has_region(cell.source, HIDDEN_MARKERS, strict=False),
        })
    return {"assignment": assignment, "notebook": notebook_name, "cells": cells}


class WriteManifest(NbGraderPreprocessor):
    """``generate_assignment`` step: the manifest into the notebook's metadata. It must run before
    ``ClearHiddenTests``; first in the list is simplest."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        names = resources["nbgrader"]
        nb.metadata[MANIFEST_KEY] = build_manifest(nb, names["assignment"], f"{names['notebook']}.ipynb")
        return nb, resources
