"""Repair a submitted assignment folder before nbgrader sees it, and say what was repaired.

nbgrader fails a whole submission on a notebook it cannot read, ignores a notebook saved under another
name, and grades a notebook whose test cells were deleted or moved as it finds it. Here every
problem that can be repaired is, with a note for the report and for the student's feedback:

* a notebook saved under another name (the only unexpected notebook, or the one sharing the most grade
  ids with the expected one) is renamed back;
* a file that is not JSON, not a notebook, or larger than the limit is set aside: the notebook counts
  as missing (zero points) and the note says why;
* cell ids that are missing or repeated are renewed;
* nbgrader metadata the student invented or duplicated is removed; changed metadata (points, cell
  type flags) is restored from the source;
* deleted test and read-only cells are restored from the source, a deleted answer cell comes back as
  an unanswered one, and graded cells the student moved return to the source order (each cell the
  student added stays after the graded cell it followed).

A submission that needs none of this is left byte for byte as it was.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from cml.instructor.course import HIDDEN_MARKERS, cell_kind, grade_id
from cml.instructor.web.sanitize import escape_markdown

__all__ = ["MAX_NOTEBOOK_BYTES", "IntakeReport", "prepare_submission", "repair_notebook"]

MAX_NOTEBOOK_BYTES = 50 * 2**20
_GRADING_KEYS = ("grade_id", "grade", "solution", "locked", "task", "points")
_HIDDEN_BLOCK = re.compile(
    rf"^[ \t]*{re.escape(HIDDEN_MARKERS[0])}.*?^[ \t]*{re.escape(HIDDEN_MARKERS[1])}[^\n]*\n?", re.MULTILINE | re.DOTALL)
UNANSWERED_STUB = 'raise NotImplementedError("this answer cell was deleted from the submission")'


@dataclass
class IntakeReport:
    notes: list[str] = field(default_factory=list)
    """What was repaired or set aside, one sentence each."""
    unreadable: list[str] = field(default_factory=list)
    """Notebooks that could not be read and count as missing."""


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def _shared_ids(path: Path, source: NotebookNode) -> int:
    try:
        cells = json.loads(path.read_text(errors="replace")).get("cells", [])
    except (ValueError, AttributeError):
        return 0
    wanted = {grade_id(cell) for cell in source.cells} - {None}
    return sum(1 for cell in cells if isinstance(cell, dict) and grade_id(NotebookNode(cell)) in wanted)


def _rename_strays(folder: Path, sources: dict[str, NotebookNode], report: IntakeReport) -> None:
    present = {p.name for p in _notebooks(folder)}
    strays = [p for p in _notebooks(folder) if p.name not in sources]
    for name in sorted(set(sources) - present):
        if not strays:
            report.notes.append(f"{name} was not submitted: its cells score zero.")
            continue
        best = max(strays, key=lambda path: _shared_ids(path, sources[name]))
        if len(strays) > 1 and _shared_ids(best, sources[name]) == 0:
            report.notes.append(f"{name} was not submitted: its cells score zero.")
            continue
        best.rename(folder / name)
        strays.remove(best)
        report.notes.append(f"{best.name} was graded as {name} (the notebook had been renamed).")


def _read(path: Path, report: IntakeReport) -> NotebookNode | None:
    problem = None
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        problem = f"it is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    else:
        try:
            text = path.read_text(errors="replace")
            json.loads(text)
            notebook = nbformat.reads(text, as_version=4)
            if not isinstance(notebook.get("cells"), list):
                raise ValueError("it has no list of cells")
            return notebook
        except json.JSONDecodeError as error:
            problem = f"it is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        except Exception as error:  # noqa: BLE001 - any unreadable file is set aside the same way
            problem = f"it is not a readable notebook ({type(error).__name__}: {str(error)[:200]})"
    path.rename(path.with_name(path.name + ".unreadable"))
    report.unreadable.append(path.name)
    report.notes.append(f"{path.name} could not be graded because {problem}: its cells score zero.")
    return None


def _fresh_ids(notebook: NotebookNode) -> bool:
    seen: set[str] = set()
    changed = False
    for cell in notebook.cells:
        identifier = cell.get("id")
        if not isinstance(identifier, str) or not identifier or identifier in seen:
            cell["id"] = uuid.uuid4().hex[:12]
            changed = True
        seen.add(cell["id"])
    return changed


def _unanswered(source_cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(source_cell)
    if cell.cell_type == "code":
        cell.source, cell.outputs, cell.execution_count = UNANSWERED_STUB, [], None
    else:
        cell.source = ""
    return cell


def _visible(source: str) -> str:
    """A locked cell as the student received it: without hidden tests, blank lines and trailing spaces."""
    released = _HIDDEN_BLOCK.sub("", source)
    return "\n".join(line.rstrip() for line in released.splitlines() if line.strip())


def _grading(cell: NotebookNode) -> dict[str, object]:
    """The nbgrader metadata that decides how a cell is graded."""
    metadata = cell.metadata.get("nbgrader", {})
    return {key: metadata.get(key) for key in _GRADING_KEYS}


def repair_notebook(submitted: NotebookNode, source: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The submission with its graded cells as the source has them (see the module docstring); and the notes."""
    notes: list[str] = []
    if _fresh_ids(submitted):
        notes.append("Missing or repeated cell ids were renewed.")
    source_cells = {grade_id(cell): cell for cell in source.cells if grade_id(cell)}
    order = list(source_cells)
    head: list[NotebookNode] = []
    segments: dict[str, list[NotebookNode]] = {}
    current: str | None = None
    for cell in submitted.cells:
        identifier = grade_id(cell)
        if "nbgrader" in cell.get("metadata", {}) and (identifier not in source_cells or identifier in segments):
            what = "a copy of graded cell" if identifier in segments else "unknown grading metadata"
            notes.append(f"Grading metadata was removed from a cell ({what} {identifier!r}).")
            del cell.metadata["nbgrader"]
            identifier = None
        if identifier is None:
            (segments[current] if current else head).append(cell)
            continue
        wanted = source_cells[identifier]
        if cell.cell_type != wanted.cell_type or _grading(cell) != _grading(wanted):
            notes.append(f"The cell type or grading metadata of {identifier!r} was changed; the source's was restored.")
            cell.cell_type = wanted.cell_type
            cell.metadata["nbgrader"] = copy.deepcopy(wanted.metadata["nbgrader"])
            if cell.cell_type == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        if cell_kind(wanted) in ("tests", "readonly") and _visible(cell.source) != _visible(wanted.source):
            notes.append(f"The locked cell {identifier!r} had been edited; the original was used.")
            cell.source = wanted.source
        current = identifier
        segments[identifier] = [cell]
    present_order = [identifier for identifier in segments]
    if present_order != [identifier for identifier in order if identifier in segments]:
        notes.append("Graded cells had been moved; they were put back in the source order.")
    cells = list(head)
    for identifier in order:
        if identifier in segments:
            cells += segments[identifier]
            continue
        wanted = source_cells[identifier]
        if cell_kind(wanted) in ("tests", "readonly"):
            notes.append(f"The deleted cell {identifier!r} was restored from the source.")
            cells.append(copy.deepcopy(wanted))
        else:
            notes.append(f"The answer cell {identifier!r} was deleted: it counts as unanswered.")
            cells.append(_unanswered(wanted))
    submitted.cells = cells
    return submitted, notes


def _note_cell(notes: list[str]) -> NotebookNode:
    # The notes quote what the student chose (file names, cell ids): shown as plain text, never as markup.
    text = "**Notes from the grader**\n\n" + "\n".join(f"- {escape_markdown(note)}" for note in notes)
    return nbformat.v4.new_markdown_cell(text, id=uuid.uuid4().hex[:12])


def prepare_submission(folder: Path, sources: dict[str, NotebookNode]) -> IntakeReport:
    """Repair the notebooks of one submitted assignment folder in place; ``sources`` maps file name to notebook."""
    report = IntakeReport()
    _rename_strays(folder, sources, report)
    for name, source in sources.items():
        path = folder / name
        if not path.exists():
            continue
        notebook = _read(path, report)
        if notebook is None:
            continue
        repaired, notes = repair_notebook(notebook, source)
        if notes:
            report.notes += [f"{name}: {note}" for note in notes]
            repaired.cells.insert(0, _note_cell(notes))
            nbformat.write(repaired, path)
    return report
