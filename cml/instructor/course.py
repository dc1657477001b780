"""What the instructor tools need to know about a course's notebooks and nbgrader cells."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = [
    "Course",
    "cell_kind",
    "grade_id",
    "strip_solution_markers",
    "SOLUTION_MARKERS",
    "HIDDEN_MARKERS",
    "MARK_SCHEME_MARKERS",
]

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
MARK_SCHEME_MARKERS = ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ===")


@dataclass(frozen=True)
class Course:
    """A course directory laid out as nbgrader expects: ``source/<assignment>/*.ipynb`` and ``release/``."""

    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    def assignments(self) -> list[str]:
        """Assignment ids, sorted: the folders of ``source/`` that hold at least one notebook."""
        if not self.source.is_dir():
            return []
        return sorted(p.name for p in self.source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

    def notebooks(self, assignment: str, *, released: bool = False) -> list[Path]:
        """The assignment's notebooks, in the source (default) or the release folder."""
        folder = (self.release if released else self.source) / assignment
        if not folder.is_dir():
            raise FileNotFoundError(f"no assignment folder {folder}")
        return sorted(p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)

    def read(self, path: Path) -> NotebookNode:
        return nbformat.read(path, as_version=4)


def grade_id(cell: NotebookNode) -> str | None:
    """The nbgrader ``grade_id`` of a cell, or ``None`` for an ordinary cell."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def cell_kind(cell: NotebookNode) -> str | None:
    """``"solution"``, ``"tests"``, ``"manual"``, ``"readonly"`` for nbgrader cells, else ``None``."""
    metadata = cell.get("metadata", {}).get("nbgrader")
    if not metadata:
        return None
    if metadata.get("grade") and metadata.get("solution"):
        return "manual"
    if metadata.get("grade"):
        return "tests"
    if metadata.get("solution"):
        return "solution"
    if metadata.get("locked"):
        return "readonly"
    return None


_MARKER_LINE = re.compile(
    r"^[ \t]*(### (BEGIN|END) SOLUTION|=== (BEGIN|END) MARK SCHEME ===)[ \t]*\n?", re.MULTILINE
)


def strip_solution_markers(source: str) -> str:
    """A solution cell as a student who solved it would write it: the source without nbgrader's markers.

    Mark schemes (instructor notes inside written answers) are removed with their content.
    """
    without_scheme = re.sub(
        r"^[ \t]*=== BEGIN MARK SCHEME ===.*?=== END MARK SCHEME ===[ \t]*\n?", "", source, flags=re.S | re.M
    )
    return _MARKER_LINE.sub("", without_scheme).rstrip("\n")
