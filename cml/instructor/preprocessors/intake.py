"""Repair a submitted assignment before nbgrader grades it, and say what was repaired.

nbgrader fails a whole submission on a notebook it cannot read, ignores a notebook saved under another
name, and grades a notebook whose test cells were deleted or moved as it finds it. Here every
problem that can be repaired is, with a note for the report and for the student's feedback.

For the folder, :func:`prepare_submission` (before nbgrader runs):

* a notebook saved under another name (the only unexpected notebook, or the one sharing the most grade
  ids with the expected one) is renamed back;
* a file that is not JSON, not a notebook, or larger than the limit is set aside: the notebook counts
  as missing (zero points) and the note says why.

For each notebook, :func:`repair_notebook`: in the files by :func:`prepare_submission` (``repair=True``), or
on the notebook nbgrader reads by :class:`IntakeRepairs`, the first of ``Autograde.sanitize_preprocessors``:

* a notebook saved before cell ids existed (nbformat 4.4 or older) gets them from nbformat's upgrade;
* cell ids that are missing or repeated are renewed;
* nbgrader metadata the student invented or duplicated is removed; changed metadata (points, cell
  type flags) is restored from the source;
* deleted test and read-only cells are restored from the source, a deleted answer cell comes back as
  an unanswered one, and graded cells the student moved return to the source order (each cell the
  student added stays after the graded cell it followed).

Each :class:`Note` carries a flag: a repair flags the submission for the instructor to look at, a routine
change (the upgrade of an older notebook) is only reported. The flagged notes are also written at the top
of the notebook, in a "Notes from the grader" cell. A submission that needs none of this is left byte for
byte as it was.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from cml.instructor.cells import cell_kind, grade_id, nbgrader_metadata, released_source
from cml.instructor.defaults import MAX_NOTEBOOK_BYTES
from cml.instructor.web.sanitize import escape_markdown

__all__ = ["IntakeRepairs", "IntakeReport", "Note", "prepare_submission", "read_notes",
           "repair_notebook"]

_GRADING_KEYS = ("grade_id", "grade", "solution", "locked", "task", "points")
UNANSWERED_STUB = 'raise NotImplementedError("this answer cell was deleted from the submission")'


class Note(NamedTuple):
    """One sentence of the intake's report."""

    text: str
    flag: bool = True
    """Whether the submission needs the instructor's eye; ``False`` for a routine change."""


@dataclass
class IntakeReport:
    notes: list[str] = field(default_factory=list)
    """What was repaired or set aside, one sentence each: these flag the submission."""
    remarks: list[str] = field(default_factory=list)
    """Routine changes (an older notebook upgraded), one sentence each: reported, not flagged."""
    unreadable: list[str] = field(default_factory=list)
    """Notebooks that could not be read and count as missing."""

    def add(self, notes: Iterable[Note]) -> None:
        """File each note under :attr:`notes` or :attr:`remarks` by its flag (e.g. those of :func:`read_notes`)."""
        for note in notes:
            (self.notes if note.flag else self.remarks).append(note.text)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def _shared_ids(path: Path, source: NotebookNode) -> int:
    try:
        cells = json.loads(path.read_text(errors="replace")).get("cells", [])
    except (ValueError, AttributeError):
        return 0
    wanted = {grade_id(cell) for cell in source.cells} - {None}
    return sum(1 for cell in cells if isinstance(cell, dict) and grade_id(cell) in wanted)


def _rename_strays(folder: Path, sources: dict[str, NotebookNode], report: IntakeReport) -> None:
    present = {p.name for p in _notebooks(folder)}
    strays = [p for p in _notebooks(folder) if p.name not in sources]
    for name in sorted(set(sources) - present):
        if not strays:
            report.add([Note(f"{name} was not submitted: its cells score zero.")])
            continue
        best = max(strays, key=lambda path: _shared_ids(path, sources[name]))
        if len(strays) > 1 and _shared_ids(best, sources[name]) == 0:
            report.add([Note(f"{name} was not submitted: its cells score zero.")])
            continue
        best.rename(folder / name)
        strays.remove(best)
        report.add([Note(f"{best.name} was graded as {name} (the notebook had been renamed).")])


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
    report.add([Note(f"{path.name} could not be graded because {problem}: its cells score zero.")])
    return None


def _upgrade(notebook: NotebookNode) -> list[Note]:
    """nbformat's own upgrade of a notebook saved before cell ids existed, which gives every cell one.

    Any notebook older than nbformat 4.5 has no ids (nbgrader's documentation's example course, say): a
    routine upgrade, so a note without a flag.
    """
    minor = notebook.get("nbformat_minor")
    if not isinstance(minor, int) or minor >= 5:
        return []
    nbformat.v4.upgrade(notebook, from_version=4, from_minor=minor)
    return [Note(f"The notebook was saved before cell ids existed (nbformat 4.{minor}); nbformat's upgrade gave "
                 "its cells ids.", flag=False)]


def _fresh_ids(notebook: NotebookNode) -> list[Note]:
    """Ids for the cells of a notebook whose format has them, where one is missing or repeated (flagged)."""
    notes = _upgrade(notebook)
    seen: set[str] = set()
    changed = False
    for cell in notebook.cells:
        identifier = cell.get("id")
        if not isinstance(identifier, str) or not identifier or identifier in seen:
            cell["id"] = uuid.uuid4().hex[:12]
            changed = True
        seen.add(cell["id"])
    if changed:
        notes.append(Note("Missing or repeated cell ids were renewed."))
    return notes


def _unanswered(source_cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(source_cell)
    if cell.cell_type == "code":
        cell.source, cell.outputs, cell.execution_count = UNANSWERED_STUB, [], None
    else:
        cell.source = ""
    return cell


def _visible(cell: NotebookNode) -> str:
    """A locked cell as the student received it (nbgrader's release of it), without blank lines and trailing
    spaces. Never raises: the submitted cell holds whatever the student wrote."""
    released = released_source(cell, strict=False)
    return "\n".join(line.rstrip() for line in released.splitlines() if line.strip())


def _grading(cell: NotebookNode) -> dict[str, object]:
    """The nbgrader metadata that decides how a cell is graded."""
    metadata = nbgrader_metadata(cell)
    return {key: metadata.get(key) for key in _GRADING_KEYS}


def repair_notebook(submitted: NotebookNode, source: NotebookNode) -> tuple[NotebookNode, list[Note]]:
    """The submission with its graded cells as the source has them (see the module docstring); and the notes."""
    notes = _fresh_ids(submitted)
    source_cells = {grade_id(cell): cell for cell in source.cells if grade_id(cell)}
    order = list(source_cells)
    head: list[NotebookNode] = []
    segments: dict[str, list[NotebookNode]] = {}
    current: str | None = None
    for cell in submitted.cells:
        identifier = grade_id(cell)
        if "nbgrader" in cell.get("metadata", {}) and (identifier not in source_cells or identifier in segments):
            what = "a copy of graded cell" if identifier in segments else "unknown grading metadata"
            notes.append(Note(f"Grading metadata was removed from a cell ({what} {identifier!r})."))
            del cell.metadata["nbgrader"]
            identifier = None
        if identifier is None:
            (segments[current] if current else head).append(cell)
            continue
        wanted = source_cells[identifier]
        if cell.cell_type != wanted.cell_type or _grading(cell) != _grading(wanted):
            notes.append(Note(f"The cell type or grading metadata of {identifier!r} was changed; the source's was "
                              "restored."))
            cell.cell_type = wanted.cell_type
            cell.metadata["nbgrader"] = copy.deepcopy(wanted.metadata["nbgrader"])
            if cell.cell_type == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        if cell_kind(wanted) in ("tests", "readonly") and _visible(cell) != _visible(wanted):
            notes.append(Note(f"The locked cell {identifier!r} had been edited; the original was used."))
            cell.source = wanted.source
        current = identifier
        segments[identifier] = [cell]
    present_order = [identifier for identifier in segments]
    if present_order != [identifier for identifier in order if identifier in segments]:
        notes.append(Note("Graded cells had been moved; they were put back in the source order."))
    cells = list(head)
    for identifier in order:
        if identifier in segments:
            cells += segments[identifier]
            continue
        wanted = source_cells[identifier]
        if cell_kind(wanted) in ("tests", "readonly"):
            notes.append(Note(f"The deleted cell {identifier!r} was restored from the source."))
            cells.append(copy.deepcopy(wanted))
        else:
            notes.append(Note(f"The answer cell {identifier!r} was deleted: it counts as unanswered."))
            cells.append(_unanswered(wanted))
    submitted.cells = cells
    return submitted, notes


def _add_note_cell(notebook: NotebookNode, notes: list[Note]) -> None:
    """The flagged notes, for the student, at the top of the notebook (none: no cell)."""
    flagged = [note.text for note in notes if note.flag]
    if not flagged:
        return
    # The notes quote what the student chose (file names, cell ids): shown as plain text, never as markup.
    text = "**Notes from the grader**\n\n" + "\n".join(f"- {escape_markdown(note)}" for note in flagged)
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(text, id=uuid.uuid4().hex[:12]))


def _named(notebook: str, note: Note) -> Note:
    """The note as the report lists it, after the notebook's file name."""
    return note._replace(text=f"{notebook}: {note.text}")


def _repair_file(path: Path, source: NotebookNode, notebook: NotebookNode, report: IntakeReport) -> None:
    repaired, notes = repair_notebook(notebook, source)
    if notes:
        report.add(_named(path.name, note) for note in notes)
        _add_note_cell(repaired, notes)
        nbformat.write(repaired, path)


def prepare_submission(folder: Path, sources: dict[str, NotebookNode], repair: bool = True) -> IntakeReport:
    """Prepare one submitted assignment folder in place; ``sources`` maps file name to notebook.

    Renames strays and sets aside unreadable files; with ``repair``, also repairs each notebook in its file
    (:func:`repair_notebook`). Without, :class:`IntakeRepairs` does that on the notebooks nbgrader reads.
    """
    report = IntakeReport()
    _rename_strays(folder, sources, report)
    for name, source in sources.items():
        path = folder / name
        if not path.exists():
            continue
        notebook = _read(path, report)
        if notebook is not None and repair:
            _repair_file(path, source, notebook, report)
    return report


def read_notes(path: str | Path) -> list[Note]:
    """The notes :class:`IntakeRepairs` appended to ``path``, each as ``"<notebook>.ipynb: <note>"`` (as
    :attr:`IntakeReport.notes`); none if it wrote none."""
    path = Path(path)
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [_named(record["notebook"], Note(record["note"], bool(record["flag"]))) for record in records]


class IntakeRepairs(NbGraderPreprocessor):
    """:func:`repair_notebook` on the notebook nbgrader reads: the first of ``Autograde.sanitize_preprocessors``.

    The source notebook is ``<source_folder>/<notebook>.ipynb``, where ``<notebook>`` is nbgrader's
    ``resources["nbgrader"]["notebook"]``. The notes go to the top of the notebook (the flagged ones, as
    :func:`prepare_submission` writes them) and, as JSON lines ``{"notebook", "note", "flag"}``, to
    ``notes_file`` for the caller (:func:`read_notes`).
    """

    source_folder = Unicode("", help="Folder of the assignment's source notebooks; empty: do nothing.").tag(
        config=True)
    notes_file = Unicode("", help="File the notes are appended to, as JSON lines; empty: not written.").tag(
        config=True)

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        if not self.source_folder:
            return nb, resources
        name = f"{resources['nbgrader']['notebook']}.ipynb"
        source_path = Path(self.source_folder) / name
        if not source_path.is_file():
            return nb, resources
        repaired, notes = repair_notebook(nb, nbformat.read(source_path, as_version=4))
        _add_note_cell(repaired, notes)
        self._record(name, notes)
        return repaired, resources

    def _record(self, name: str, notes: list[Note]) -> None:
        if not self.notes_file or not notes:
            return
        with open(self.notes_file, "a") as stream:
            for note in notes:
                stream.write(json.dumps({"notebook": name, "note": note.text, "flag": note.flag}) + "\n")
