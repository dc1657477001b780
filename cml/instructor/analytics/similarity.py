"""``cml-course similarity WORKDIR``: pairs of students whose answers look copied, per assignment (MOSS-style).

This module reads a grading workdir: the answer cells of ``submitted/<student>/<assignment>/*.ipynb`` (code cells
nbgrader marks ``solution``, tests and given cells left out), the release's version of each cell as the starter
code to discount, and the failed checks of the latest ``reports/<stamp>/report.json`` as wrong-value evidence.
The comparison itself is :mod:`.copy_detection`; the pages are :mod:`.similarity_page`. Written answers
(markdown) are left out: prose is compared badly by code fingerprints, and the same sentence from a lecture is
no sign of copying.

A notebook that cannot be read is skipped with a note in the output; the rest of the class is still compared.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml.instructor.analytics.copy_detection import (COMMON_FRACTION, AssignmentSimilarity, Pair, WrongValue,
                                                     compare_assignment, find_similar_pairs)
from cml.instructor.analytics.similarity_page import DEFAULT_THRESHOLD, write_csv, write_html
from cml.instructor.cells import cell_kind, grade_id, nbgrader_metadata

__all__ = ["SimilarityResult", "add_arguments", "analyse_workdir", "answer_cells", "find_similar_pairs",
           "latest_report", "run", "wrong_values"]

_STAMP = re.compile(r"\d{8}-\d{6}\Z")
_ANSWER_KINDS = ("solution", "manual")


@dataclass
class SimilarityResult:
    """Every assignment's ranked pairs, the cells compared (for the side-by-side view) and what was skipped."""

    workdir: Path
    assignments: list[AssignmentSimilarity]
    sources: dict[str, dict[str, dict[str, str]]]
    """assignment -> student -> cell -> source."""
    base: dict[str, dict[str, str]]
    """assignment -> cell -> starter source."""
    report: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[Pair]:
        """All pairs, highest combined score first."""
        return sorted((pair for result in self.assignments for pair in result.pairs),
                      key=lambda pair: (-pair.combined_score, pair.assignment, pair.student_a, pair.student_b))


def _read_notebook(path: Path) -> Mapping[str, Any]:
    """The notebook's JSON, or ValueError saying why it is not one."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not readable as JSON ({type(error).__name__})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError("not a notebook (no list of cells)")
    return notebook


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def answer_cells(notebook: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{grade_id: source}`` of the code cells students answer in (solution cells, manually graded code)."""
    cells: dict[str, str] = {}
    for cell in notebook.get("cells", []):
        # most cells are not answers: nbgrader_metadata is cheap, the full predicate only for the candidates
        if not isinstance(cell, dict) or cell.get("cell_type") != "code" or not nbgrader_metadata(cell).get("solution") \
                or cell_kind(cell) not in _ANSWER_KINDS:
            continue
        identifier = grade_id(cell)
        if isinstance(identifier, str) and identifier and prefix + identifier not in cells:
            cells[prefix + identifier] = _source(cell)
    return cells


def _assignment_cells(folder: Path, assignment: str, notes: list[str], who: str) -> dict[str, str]:
    """The answer cells of every notebook in an assignment folder (cells of ``other.ipynb`` as ``other/<id>``)."""
    cells: dict[str, str] = {}
    for path in sorted(folder.glob("*.ipynb")):
        try:
            notebook = _read_notebook(path)
        except ValueError as error:
            notes.append(f"{assignment}: {who}: {path.name} skipped: {error}")
            continue
        cells.update(answer_cells(notebook, "" if path.stem == assignment else path.stem + "/"))
    return cells


def latest_report(workdir: Path) -> Path | None:
    """``reports/<stamp>/report.json`` of the latest grading run, or ``None``."""
    runs = sorted(path for path in (workdir / "reports").glob("*/report.json") if _STAMP.match(path.parent.name))
    return runs[-1] if runs else None


def wrong_values(report: Mapping[str, Any], assignment: str) -> dict[str, list[WrongValue]]:
    """student -> the checks of ``assignment`` they failed with a value (older reports have no checks: empty)."""
    found: dict[str, list[WrongValue]] = {}
    for submission in report.get("submissions") or []:
        if not isinstance(submission, dict) or submission.get("assignment") != assignment:
            continue
        student = submission.get("student")
        for check in submission.get("checks") or []:
            if not isinstance(check, dict) or check.get("status") != "failed":
                continue
            digest, identifier = check.get("digest"), check.get("id")
            if not isinstance(student, str) or not isinstance(digest, str) or not isinstance(identifier, str):
                continue
            notebook = check.get("notebook")
            name = identifier if notebook in (None, assignment) else f"{notebook}/{identifier}"
            preview = check.get("value")
            found.setdefault(student, []).append(WrongValue(name, digest, check.get("hidden") is True,
                                                            preview if isinstance(preview, str) else None))
    return found


def analyse_workdir(workdir: Path, *, assignments: Sequence[str] | None = None, release: Path | None = None,
                    common_fraction: float = COMMON_FRACTION) -> SimilarityResult:
    """Compare every assignment of a grading workdir (see the module docstring)."""
    workdir = Path(workdir)
    release = Path(release) if release is not None else workdir / "release"
    submitted = workdir / "submitted"
    notes: list[str] = []
    students = sorted(path.name for path in submitted.iterdir() if path.is_dir()) if submitted.is_dir() else []
    if not students:
        notes.append(f"no student folders in {submitted}")
    if assignments is None:
        assignments = sorted({path.name for student in students for path in (submitted / student).iterdir()
                              if path.is_dir()})
    report_path = latest_report(workdir)
    report: Mapping[str, Any] = {}
    if report_path is None:
        notes.append("no grading report (reports/<stamp>/report.json): no wrong-value evidence")
    else:
        try:
            loaded = json.loads(report_path.read_text(encoding="utf-8"))
            report = loaded if isinstance(loaded, dict) else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            notes.append(f"{report_path} unreadable ({type(error).__name__}): no wrong-value evidence")
    results, sources, bases = [], {}, {}
    for assignment in assignments:
        if not (release / assignment).is_dir():
            notes.append(f"{assignment}: no starter notebook in {release / assignment}: starter code not discounted")
        base = _assignment_cells(release / assignment, assignment, notes, "release")
        submissions = {student: _assignment_cells(submitted / student / assignment, assignment, notes, student)
                       for student in students if (submitted / student / assignment).is_dir()}
        result = compare_assignment(submissions, base, assignment=assignment,
                                    wrong_values=wrong_values(report, assignment), common_fraction=common_fraction)
        results.append(result)
        sources[assignment], bases[assignment] = submissions, base
    return SimilarityResult(workdir, results, sources, bases, report_path, notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cml-course similarity``."""
    parser.add_argument("workdir", type=Path, help="the grading workdir (submitted/, release/, reports/)")
    parser.add_argument("--assignments", nargs="+", metavar="A", help="only these assignments (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: WORKDIR/reports/similarity)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="show pairs with a combined score at least this in the HTML page "
                             f"(default {DEFAULT_THRESHOLD}: half of the smaller answer's rare code is shared, "
                             "or the equivalent in rare shared wrong values)")
    parser.add_argument("--release", type=Path, help="the starter notebooks (default: WORKDIR/release)")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="print the N highest pairs (default 10)")
    parser.add_argument("--common-fraction", type=float, default=COMMON_FRACTION,
                        help="ignore code that more than this fraction of the class shares "
                             f"(default {COMMON_FRACTION}, never fewer than 2 students)")


def run(arguments: argparse.Namespace) -> int:
    """Compare, write ``similarity.csv`` and ``similarity.html``, print the top pairs; 0, or 2 without a workdir."""
    workdir: Path = arguments.workdir
    if not workdir.is_dir():
        print(f"no such workdir: {workdir}")
        return 2
    result = analyse_workdir(workdir, assignments=arguments.assignments, release=arguments.release,
                             common_fraction=arguments.common_fraction)
    out = arguments.out if arguments.out is not None else workdir / "reports" / "similarity"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(result.pairs, out / "similarity.csv")
    html_path = write_html(result.pairs, result.sources, result.base, out / "similarity.html",
                           threshold=arguments.threshold, notes=result.notes)
    pairs = result.pairs
    above = sum(pair.combined_score >= arguments.threshold for pair in pairs)
    print(f"{len(pairs)} pairs scored worth listing, {above} at or above {arguments.threshold}")
    for pair in pairs[: max(arguments.top, 0)]:
        print(f"  {pair.combined_score:.2f}  {pair.assignment}  {pair.student_a!r} ~ {pair.student_b!r}  "
              f"(code {pair.code_score:.2f}, {pair.shared_fingerprints} shared, "
              f"{len(pair.wrong_value_evidence)} rare wrong values)")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {html_path} and {csv_path}")
    return 0
