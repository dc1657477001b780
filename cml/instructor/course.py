"""A course directory as nbgrader lays it out (cell predicates and markers: :mod:`cml.instructor.cells`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = ["Course"]


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
