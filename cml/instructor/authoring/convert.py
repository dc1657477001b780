"""Convert between nbgrader source notebooks and a plain-text "percent" script, for authors.

``source/*/*.ipynb`` stays the single source of truth; this is a convenience for writing and reviewing
notebooks in a text editor. A script is a sequence of cells, each opened by a header line::

    # %% [markdown]                          a markdown cell, its lines prefixed by "# "
    # %%                                     an ordinary code cell
    # %% solution id=sigmoid                 autograded answer (code with BEGIN/END SOLUTION)
    # %% tests id=test_sigmoid points=2      autograder tests (locked; may hold BEGIN/END HIDDEN TESTS)
    # %% manual id=why_batches points=2      manually graded answer (add [markdown] for a written one)
    # %% readonly id=setup                   locked cell students cannot edit

Usage: ``python -m cml.instructor.authoring.convert to-notebook script.py notebook.ipynb`` and ``to-script``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import nbformat

from cml.instructor.cells import cell_kind, is_grade

__all__ = ["script_to_notebook", "notebook_to_script", "nbgrader_metadata"]

_HEADER = re.compile(r"^# %%(?P<rest>.*)$")
_KINDS = ("solution", "tests", "manual", "readonly")


def nbgrader_metadata(kind: str, grade_id: str, points: float | None = None) -> dict[str, Any]:
    """The ``nbgrader`` cell metadata (schema 3) for one of the kinds above."""
    if kind not in _KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; expected one of {_KINDS}")
    graded = kind in ("tests", "manual")
    if graded and points is None:
        raise ValueError(f"cell {grade_id!r} of kind {kind!r} needs points=")
    metadata: dict[str, Any] = {
        "grade": graded,
        "grade_id": grade_id,
        "locked": kind in ("tests", "readonly"),
        "schema_version": 3,
        "solution": kind in ("solution", "manual"),
        "task": False,
    }
    if graded:
        metadata["points"] = points
    return metadata


def _parse_header(rest: str, line_number: int) -> tuple[str, dict[str, Any] | None]:
    words = shlex.split(rest.strip())
    cell_type = "code"
    if words and words[0] == "[markdown]":
        cell_type, words = "markdown", words[1:]
    if not words:
        return cell_type, None
    kind, options = words[0], dict(word.split("=", 1) for word in words[1:])
    if "id" not in options:
        raise ValueError(f"line {line_number}: a {kind} cell needs id=")
    points = float(options["points"]) if "points" in options else None
    return cell_type, nbgrader_metadata(kind, options["id"], points)


def script_to_notebook(text: str) -> nbformat.NotebookNode:
    """Build an nbformat 4.5 notebook from a percent script (see the module docstring)."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    current: dict[str, Any] | None = None
    cells: list[dict[str, Any]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.match(line)
        if match:
            cell_type, metadata = _parse_header(match.group("rest"), line_number)
            current = {"type": cell_type, "nbgrader": metadata, "lines": []}
            cells.append(current)
        elif current is not None:
            current["lines"].append(line)
        elif line.strip():
            raise ValueError(f"line {line_number}: text before the first '# %%' header")
    seen_ids: set[str] = set()
    for index, cell in enumerate(cells):
        lines = cell["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        if cell["type"] == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
            node = nbformat.v4.new_markdown_cell("\n".join(lines))
        else:
            node = nbformat.v4.new_code_cell("\n".join(lines))
        metadata = cell["nbgrader"]
        node.id = metadata["grade_id"] if metadata else f"cell-{index:03d}"
        if node.id in seen_ids:
            raise ValueError(f"duplicate cell id {node.id!r}")
        seen_ids.add(node.id)
        if metadata:
            node.metadata["nbgrader"] = metadata
            if metadata["locked"]:
                node.metadata["deletable"] = False
                node.metadata["editable"] = False
        notebook.cells.append(node)
    nbformat.validate(notebook)
    return notebook


def notebook_to_script(notebook: nbformat.NotebookNode) -> str:
    """The inverse of :func:`script_to_notebook` (outputs are dropped)."""
    blocks = []
    for cell in notebook.cells:
        metadata = cell.metadata.get("nbgrader")
        header = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "")
        if metadata:
            header += f" {cell_kind(cell) or 'readonly'} id={metadata['grade_id']}"
            if "points" in metadata and is_grade(cell):
                points = metadata["points"]
                header += f" points={int(points) if float(points).is_integer() else points}"
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + line).rstrip() for line in cell.source.splitlines())
        else:
            body = cell.source
        blocks.append(header + "\n" + body)
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("to-notebook", "to-script"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.direction == "to-notebook":
        notebook = script_to_notebook(arguments.source.read_text())
        arguments.target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, arguments.target)
    else:
        arguments.target.write_text(notebook_to_script(nbformat.read(arguments.source, as_version=4)))


if __name__ == "__main__":
    main()
