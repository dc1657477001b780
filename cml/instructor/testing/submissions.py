"""Submissions made from a description: the bundled example students and the graded test cases.

A case is a TOML file naming the assignment's starting point and the cells a student wrote::

    description = "d_sigmoid uses the output s instead of the pre-activation x"
    base = "solution"          # or "blank": the untouched release
    blank = ["fit"]            # optional: solution cells left as released
    lose = ["test_d_sigmoid"]  # grade cells that must score zero; every other autograded cell keeps full marks
    cascade = ["test_train"]   # optional: later cells that also score zero because they use the broken function

    [cells]
    d_sigmoid = '''
    def d_sigmoid(x):
        return x * (1 - x)
    '''

``lose`` names the cells whose tests must catch the mistake; ``cascade`` those that lose only because
they build on the broken answer (a training cell after a wrong ``backward``). The case runner stops a
wrong answer after its last ``lose`` cell, so cascades are checked by full runs (``--full``) only.

The submission is the *release* notebook with its solution cells filled in, exactly what a student
hands in; grading then restores the locked cells (and hidden tests) from the source, as nbgrader does.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from cml.instructor.cells import cell_kind, grade_id, strip_solution_markers

from cml.instructor.course import Course

__all__ = ["Case", "load_case", "load_cases", "build_submission", "write_submission"]


@dataclass(frozen=True)
class Case:
    """A described submission (see the module docstring)."""

    name: str
    assignment: str
    description: str
    base: str = "solution"
    cells: dict[str, str] = field(default_factory=dict)
    blank: tuple[str, ...] = ()
    lose: tuple[str, ...] | None = None
    """Grade cells expected to score zero; ``None`` when the case states no expectation."""
    cascade: tuple[str, ...] = ()
    """Later grade cells that also score zero, as a consequence (checked in full runs)."""


def load_case(path: Path, assignment: str | None = None) -> Case:
    """Read one case file; the assignment defaults to the name of its folder."""
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    unknown = set(data) - {"description", "base", "cells", "blank", "lose", "cascade"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    base = data.get("base", "solution")
    if base not in ("solution", "blank"):
        raise ValueError(f"{path}: base must be 'solution' or 'blank', got {base!r}")
    lose = data.get("lose")
    cascade = tuple(data.get("cascade", ()))
    if cascade and not lose:
        raise ValueError(f"{path}: `cascade` lists consequences of a mistake, so `lose` must name the cells it fails")
    return Case(
        name=path.stem,
        assignment=assignment or path.parent.name,
        description=data.get("description", ""),
        base=base,
        cells={key: value.rstrip("\n") for key, value in data.get("cells", {}).items()},
        blank=tuple(data.get("blank", ())),
        lose=tuple(lose) if lose is not None else None,
        cascade=cascade,
    )


def load_cases(folder: Path, assignment: str | None = None) -> list[Case]:
    """Every ``*.toml`` case in ``folder``, sorted by name (the assignment defaults to the folder's name)."""
    return [load_case(path, assignment) for path in sorted(folder.glob("*.toml"))]


def build_submission(case: Case, source: NotebookNode, release: NotebookNode) -> NotebookNode:
    """The notebook a student following ``case`` would hand in, built from the release notebook."""
    source_cells = {grade_id(cell): cell for cell in source.cells if grade_id(cell)}
    release_ids = {grade_id(cell) for cell in release.cells if cell_kind(cell) in ("solution", "manual")}
    for name in (*case.cells, *case.blank):
        if name not in release_ids:
            raise KeyError(f"case {case.name!r}: the release has no answer cell {name!r} (known: {sorted(release_ids)})")
    submission = copy.deepcopy(release)
    for cell in submission.cells:
        identifier = grade_id(cell)
        if cell_kind(cell) not in ("solution", "manual"):
            continue
        if identifier in case.cells:
            cell.source = case.cells[identifier]
        elif case.base == "solution" and identifier not in case.blank and identifier in source_cells:
            cell.source = strip_solution_markers(source_cells[identifier].source)
    return submission


def write_submission(case: Case, course: Course, folder: Path) -> list[Path]:
    """Write the case's submission of every notebook of its assignment into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source_path in course.notebooks(case.assignment):
        release_path = course.release / case.assignment / source_path.name
        notebook = build_submission(case, course.read(source_path), course.read(release_path))
        target = folder / source_path.name
        nbformat.write(notebook, target)
        written.append(target)
    return written
