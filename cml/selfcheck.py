"""Before submitting: run a copy of a notebook from the top in a fresh kernel and say what would cost points.

``cml-course check NOTEBOOK`` (or ``python -m cml.selfcheck NOTEBOOK``) and :func:`check_this_notebook`, the last cell
of every course notebook, run the same check:

* a copy of the saved notebook runs top to bottom in a fresh kernel (the original is never modified), in the
  notebook's own folder so that files next to it are found, with the grader's environment (progress bars off);
* per exercise: its grade id and points, the visible checks of :mod:`cml.checks` passed and run in its test cell,
  whether the cell passed as a whole; per written answer: its points, and whether it is still the unanswered stub;
* how many points hidden tests decide too, and the points already secured by visible checks alone (test cells
  without hidden tests);
* what would cost points: a cell that fails in the fresh run but not in the saved notebook (it ran out of order,
  or depends on a cell deleted or changed since), a test cell that writes to stderr (nbgrader scores it zero), an
  edited test or locked cell (nbgrader's checksum in the cell's metadata no longer matches), a deleted or
  duplicated graded cell, a renamed file, and output, run time or file size near the grader's limits.

What the student's notebook cannot tell (which cells were handed out, which hold hidden tests, the file's name) comes
from the course manifest that the release build writes into the notebook's metadata (:data:`MANIFEST_KEY`; see
:mod:`cml.instructor.preprocessors.manifest`): grade ids, kinds, points and one boolean per cell, nothing of the tests.

The exit status of the command is 1 when anything would cost points (:attr:`Report.ok`), so it serves CI and
GitHub Classroom as well. Nothing here needs nbgrader: a student's install has nbclient (with JupyterLab) but not the
instructor's tools.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "CHILD_VARIABLE",
    "MANIFEST_KEY",
    "NEAR_LIMIT",
    "Exercise",
    "Finding",
    "Kind",
    "Report",
    "Severity",
    "add_arguments",
    "cell_kind",
    "check_notebook",
    "check_this_notebook",
    "compute_checksum",
    "format_report",
    "main",
    "run_command",
    "skip_reason",
]

CHILD_VARIABLE = "CML_SELFCHECK_CHILD"
"""Set in the kernel that runs the copy: the notebook's own last cell, :func:`check_this_notebook`, does nothing there."""
MANIFEST_KEY = "cml"
"""The key of the course manifest in a release notebook's metadata."""
NEAR_LIMIT = 0.8
"""A warning is given above this fraction of one of the grader's limits."""
_RESULT_MIME = "application/vnd.cml.selfcheck+json"
"""The output type of the cells the check adds after each test cell of the copy: that cell's verdicts."""
_GRADER_VARIABLES = ("NBGRADER_EXECUTION", "CML_CHECK_LOG", "CML_GRADING_SEED")
"""Set in every kernel nbgrader (autograde, validate) or the course's grading engine runs (nbgrader's FAQ documents
``NBGRADER_EXECUTION``; the engine sets the other two when it judges verdicts outside the kernel)."""
_TEST_VARIABLE = "CML_NO_PROGRESS"
"""Set by the grading environment and by the test suite (nbval) alike: no student is waiting for a report there."""


class Kind(str, Enum):
    """What a cell of the manifest is, from nbgrader's flags."""

    TESTS = "tests"
    """An autograded test cell (``grade``, not ``solution``)."""
    WRITTEN = "written"
    """A manually graded answer (``grade`` and ``solution``): the instructor grades it."""
    ANSWER = "answer"
    """Where the student writes code (``solution``, not ``grade``); the test cells after it give its points."""
    LOCKED = "locked"
    """A locked cell that is neither (a setup cell): grading replaces it with the original."""


class Severity(str, Enum):
    PROBLEM = "problem"
    """Costs points; the command exits with status 1."""
    WARNING = "warning"
    """May cost points, or shows a habit that will."""


@dataclass(frozen=True)
class Finding:
    severity: Severity
    message: str
    cell: int | None = None
    """The cell's index in the saved notebook, when the finding is about one cell."""


@dataclass
class Exercise:
    """One graded cell of the notebook as the fresh run saw it."""

    grade_id: str
    kind: Kind
    points: float
    cell: int
    hidden_tests: bool | None = None
    """From the manifest; ``None`` when the notebook has none."""
    checks_passed: int = 0
    checks_run: int = 0
    checks_skipped: int = 0
    passed: bool | None = None
    """Test cells: the cell ran without an error (and nothing on stderr). ``None`` for written answers."""
    error: str = ""
    unanswered: bool | None = None
    """Written answers: still the text the release handed out."""


@dataclass
class Report:
    notebook: str
    assignment: str | None
    has_manifest: bool
    exercises: list[Exercise] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing costs points: no problem found and every test cell passed."""
        return not self.problems() and all(ex.passed is not False for ex in self.exercises)

    def problems(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity is Severity.PROBLEM]

    def total_points(self) -> float:
        return sum(ex.points for ex in self.exercises if ex.kind in (Kind.TESTS, Kind.WRITTEN))

    def hidden_points(self) -> float:
        return sum(ex.points for ex in self.exercises if ex.kind is Kind.TESTS and ex.hidden_tests)

    def secured_points(self) -> float:
        """Points of test cells that pass and have no hidden tests (known only with a manifest)."""
        return sum(ex.points for ex in self.exercises
                   if ex.kind is Kind.TESTS and ex.passed and ex.hidden_tests is False)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.update(ok=self.ok, total_points=self.total_points(), hidden_points=self.hidden_points(),
                      secured_points=self.secured_points())
        return json.loads(json.dumps(result, default=lambda value: value.value))

    def text(self) -> str:
        return format_report(self)


# --- nbgrader's cell predicates and checksum, without needing nbgrader -------------------------------------------

def _nbgrader(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = cell.get("metadata")
    section = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
    return section if isinstance(section, Mapping) else {}


def _flags(cell: Mapping[str, Any]) -> tuple[bool, bool, bool]:
    """``(grade, solution, locked)`` as :mod:`nbgrader.utils` reads them (a solution cell is never locked, a
    grade cell always is)."""
    section = _nbgrader(cell)
    grade, solution = bool(section.get("grade", False)), bool(section.get("solution", False))
    return grade, solution, False if solution else True if grade else bool(section.get("locked", False))


def cell_kind(cell: Mapping[str, Any]) -> Kind | None:
    """The cell's :class:`Kind`, or ``None`` for an ordinary cell."""
    grade, solution, locked = _flags(cell)
    if grade:
        return Kind.WRITTEN if solution else Kind.TESTS
    if solution:
        return Kind.ANSWER
    return Kind.LOCKED if locked else None


def compute_checksum(cell: Mapping[str, Any]) -> str:
    """nbgrader's checksum of a cell, as :func:`nbgrader.utils.compute_checksum` (0.9) computes it: the MD5 of the
    source, the cell type, the three flags, the grade id and (of a grade cell) the points.

    Written out here because a student's install has no nbgrader; ``tests/test_selfcheck.py`` proves it equal to
    nbgrader's on every cell of the release. Raises ``KeyError`` for a cell without a grade id (as nbgrader does).
    """
    grade, solution, locked = _flags(cell)
    digest = hashlib.md5()
    for part in (cell.get("source", ""), cell.get("cell_type", ""), str(grade), str(solution), str(locked),
                 _nbgrader(cell)["grade_id"]):
        digest.update(part.encode("utf-8"))
    if grade:
        digest.update(str(float(_nbgrader(cell)["points"])).encode("utf-8"))
    return digest.hexdigest()


def _grade_id(cell: Mapping[str, Any]) -> str | None:
    value = _nbgrader(cell).get("grade_id")
    return value if isinstance(value, str) else None


def _points(cell: Mapping[str, Any]) -> float:
    try:
        return float(_nbgrader(cell).get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def _checksum_matches(cell: Mapping[str, Any]) -> bool | None:
    """Whether the cell is as the release handed it out (``None``: no checksum, or one that cannot be computed)."""
    stored = _nbgrader(cell).get("checksum")
    if not isinstance(stored, str) or _grade_id(cell) is None:
        return None
    try:
        return compute_checksum(cell) == stored
    except (KeyError, TypeError, ValueError):
        return None


# --- the grader's limits ----------------------------------------------------------------------------------------

def _limits() -> dict[str, float]:
    """The grader's limits on a cell's output, a cell's and a submission's run time, and a notebook's file size."""
    from cml.instructor.defaults import CELL_TIMEOUT_SECONDS, MAX_NOTEBOOK_BYTES, MAX_OUTPUT_BYTES, TIME_LIMIT_SECONDS

    return {"output_bytes": float(MAX_OUTPUT_BYTES), "cell_seconds": float(CELL_TIMEOUT_SECONDS),
            "total_seconds": float(TIME_LIMIT_SECONDS), "notebook_bytes": float(MAX_NOTEBOOK_BYTES)}


# --- running the copy -------------------------------------------------------------------------------------------

def _begin_test_cell() -> None:
    """Run (in the copy's kernel) before a test cell: remember how many verdicts there were."""
    global _verdicts_before
    from cml import checks

    _verdicts_before = len(checks.records)


_verdicts_before = 0


def _end_test_cell() -> None:
    """Run (in the copy's kernel) after a test cell: show the verdicts the cell gave, as one output of its own."""
    from IPython.display import display

    from cml import checks

    verdicts = [{"id": record.check_id, "passed": bool(record.passed), "skipped": bool(record.skipped)}
                for record in checks.records[_verdicts_before:]]
    display({_RESULT_MIME: {"verdicts": verdicts}}, raw=True)


def _probe(function: str) -> Any:
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(f"__import__('cml.selfcheck').selfcheck.{function}()")
    cell.metadata["cml_selfcheck_probe"] = True
    return cell


def _instrumented_copy(notebook: Any) -> tuple[Any, list[int | None]]:
    """The notebook with a probe around every test cell, and for each of its cells the saved notebook's index
    (``None`` for a probe)."""
    import copy

    copied = copy.deepcopy(notebook)
    cells, origin = [], []
    for index, cell in enumerate(notebook.cells):
        is_test = cell.cell_type == "code" and cell_kind(cell) is Kind.TESTS
        if is_test:
            cells.append(_probe("_begin_test_cell"))
            origin.append(None)
        fresh = copy.deepcopy(cell)
        if fresh.cell_type == "code":  # a cell the run never reaches must not show the saved outputs
            fresh.outputs, fresh.execution_count = [], None
        cells.append(fresh)
        origin.append(index)
        if is_test:
            cells.append(_probe("_end_test_cell"))
            origin.append(None)
    copied.cells = cells
    return copied, origin


def _child_environment() -> dict[str, str]:
    from cml.instructor.defaults import GRADING_ENVIRONMENT

    environment = {key: value for key, value in os.environ.items() if key != "JPY_SESSION_NAME"}
    return {**environment, **GRADING_ENVIRONMENT, CHILD_VARIABLE: "1"}


@dataclass
class _Run:
    cells: list[Any]
    """The fresh run's cells, one per cell of the saved notebook."""
    verdicts: dict[int, list[dict[str, Any]] | None]
    """Per test cell (saved index): the verdicts it gave; ``None`` when the probe after it did not run."""
    seconds: float
    stopped: str = ""
    """Why the run ended before the last cell, if it did."""


def _run_fresh(notebook: Any, folder: Path, timeout: float) -> _Run:
    from nbclient import NotebookClient

    instrumented, origin = _instrumented_copy(notebook)
    started = time.perf_counter()
    stopped = ""
    with tempfile.TemporaryDirectory(prefix="cml-selfcheck-") as scratch:
        import nbformat

        nbformat.write(instrumented, os.path.join(scratch, "copy.ipynb"))
        client = NotebookClient(instrumented, kernel_name="python3", timeout=int(timeout), allow_errors=True,
                                interrupt_on_timeout=True, record_timing=True, shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(folder)}})
        try:
            # The kernel's own stderr (its log) would reach the caller's: a notebook shows it as an error stream.
            client.execute(env=_child_environment(), stderr=subprocess.DEVNULL)
        except Exception as error:  # noqa: BLE001 - a dead kernel, a kernel that would not start: say so
            stopped = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
    seconds = time.perf_counter() - started
    cells: list[Any] = [None] * len(notebook.cells)
    verdicts: dict[int, list[dict[str, Any]] | None] = {}
    last_test: int | None = None
    for cell, index in zip(instrumented.cells, origin):
        if index is not None:
            cells[index] = cell
            if cell_kind(cell) is Kind.TESTS:
                last_test, verdicts[index] = index, None
            continue
        if cell.source.endswith("_end_test_cell()") and last_test is not None:
            for output in cell.get("outputs", []):
                data = output.get("data", {}).get(_RESULT_MIME)
                if isinstance(data, Mapping) and isinstance(data.get("verdicts"), list):
                    verdicts[last_test] = list(data["verdicts"])
    return _Run(cells, verdicts, seconds, stopped)


# --- reading a cell's outputs -----------------------------------------------------------------------------------

def _error(cell: Any) -> str:
    """The cell's first error as ``Name: message`` (``""`` when it has none)."""
    for output in cell.get("outputs", []) if cell is not None else []:
        if output.get("output_type") == "error":
            message = str(output.get("evalue", "")).strip().splitlines()
            return f"{output.get('ename', 'Error')}: {message[0] if message else ''}".rstrip(": ")
    return ""


def _stderr(cell: Any) -> str:
    text = "".join(str(output.get("text", "")) for output in (cell.get("outputs", []) if cell is not None else [])
                   if output.get("output_type") == "stream" and output.get("name") == "stderr")
    return text.strip()


def _output_bytes(cell: Any) -> int:
    return len(json.dumps(cell.get("outputs", []))) if cell is not None else 0


def _cell_seconds(cell: Any) -> float | None:
    from datetime import datetime

    timing = cell.get("metadata", {}).get("execution", {}) if cell is not None else {}
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    try:
        return (datetime.fromisoformat(end.replace("Z", "+00:00"))
                - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    except (AttributeError, TypeError, ValueError):
        return None


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the check --------------------------------------------------------------------------------------------------

def _manifest(notebook: Any) -> Mapping[str, Any] | None:
    manifest = notebook.metadata.get(MANIFEST_KEY)
    if isinstance(manifest, Mapping) and isinstance(manifest.get("cells"), list):
        return manifest
    return None


def _static_findings(notebook: Any, path: Path, manifest: Mapping[str, Any] | None) -> list[Finding]:
    """What the saved notebook shows without running it: name, deleted/duplicated/edited cells, execution order."""
    findings: list[Finding] = []
    problem = Severity.PROBLEM
    ids = [(index, _grade_id(cell)) for index, cell in enumerate(notebook.cells) if cell_kind(cell) is not None]
    counts = Counter(grade_id for _, grade_id in ids if grade_id)
    for grade_id, count in sorted(counts.items()):
        if count > 1:
            findings.append(Finding(problem, f"cell {grade_id!r} appears {count} times: a graded cell was copied "
                                             "(the grader keeps one; delete the copies, or undo with Edit > Undo)"))
    if manifest is not None:
        expected_name = manifest.get("notebook")
        if isinstance(expected_name, str) and expected_name != path.name:
            findings.append(Finding(problem, f"the file is called {path.name!r}, but the grader expects "
                                             f"{expected_name!r}: rename it back before submitting"))
        by_id = {grade_id: index for index, grade_id in ids if grade_id}
        order = []
        for entry in manifest["cells"]:
            grade_id = entry.get("grade_id") if isinstance(entry, Mapping) else None
            if not isinstance(grade_id, str):
                continue
            if grade_id not in by_id:
                what = {"tests": "test cell", "written": "written answer", "answer": "answer cell",
                        "locked": "locked cell"}.get(str(entry.get("kind")), "cell")
                findings.append(Finding(problem, f"the {what} {grade_id!r} was deleted: download a fresh copy of the "
                                                 "assignment and copy your answers into it"))
                continue
            order.append(by_id[grade_id])
            cell = notebook.cells[by_id[grade_id]]
            kind = cell_kind(cell)
            if kind is not None and kind.value != entry.get("kind") or (
                    entry.get("kind") in ("tests", "written") and _points(cell) != float(entry.get("points", 0))):
                findings.append(Finding(problem, f"the nbgrader metadata of cell {grade_id!r} was changed (kind or "
                                                 "points): the grader restores it", by_id[grade_id]))
        if order != sorted(order):
            findings.append(Finding(Severity.WARNING, "graded cells were moved out of their original order: the "
                                                      "grader puts them back, and your code may then run in another "
                                                      "order than yours"))
        known = {entry.get("grade_id") for entry in manifest["cells"] if isinstance(entry, Mapping)}
        for index, grade_id in ids:
            if grade_id and grade_id not in known:
                findings.append(Finding(Severity.WARNING, f"cell {grade_id!r} has nbgrader metadata but is not one of "
                                                          "this assignment's cells (pasted from another notebook?)",
                                        index))
    for index, cell in enumerate(notebook.cells):
        kind = cell_kind(cell)
        if kind in (Kind.TESTS, Kind.LOCKED) and _checksum_matches(cell) is False:
            what = "test cell" if kind is Kind.TESTS else "locked cell"
            findings.append(Finding(problem, f"the {what} {_grade_id(cell)!r} was edited: the grader replaces it with "
                                             "the original, so your changes there do not count (undo them)", index))
    counts_seen = [(index, cell.get("execution_count")) for index, cell in enumerate(notebook.cells)
                   if cell.cell_type == "code" and isinstance(cell.get("execution_count"), int)]
    for (before, count_before), (after, count_after) in zip(counts_seen, counts_seen[1:]):
        if count_after <= count_before:
            findings.append(Finding(Severity.WARNING, f"the saved notebook ran cells out of order (cell {after} ran "
                                                      f"before cell {before}): what you saw may not be what a run "
                                                      "from the top gives", after))
            break
    return findings


def check_notebook(path: str | os.PathLike[str], *, timeout: float | None = None) -> Report:
    """Run a copy of the notebook at ``path`` from the top in a fresh kernel and report what would cost points.

    ``timeout``: seconds one cell may run (default: the grader's per-cell limit). The notebook is only read.
    """
    import nbformat

    path = Path(path).resolve()
    limits = _limits()
    timeout = float(timeout or limits["cell_seconds"])
    notebook = nbformat.read(path, as_version=4)
    manifest = _manifest(notebook)
    report = Report(notebook=str(path), assignment=str(manifest.get("assignment")) if manifest else None,
                    has_manifest=manifest is not None)
    report.findings += _static_findings(notebook, path, manifest)
    hidden = {entry.get("grade_id"): bool(entry.get("hidden_tests")) for entry in (manifest or {}).get("cells", [])
              if isinstance(entry, Mapping)}
    run = _run_fresh(notebook, path.parent, timeout)
    report.seconds = run.seconds
    if run.stopped:
        reached = [index for index, cell in enumerate(run.cells)
                   if cell is not None and cell.cell_type == "code" and cell.get("execution_count") is not None]
        where = f" in cell {reached[-1]}" if reached else ""
        report.findings.append(Finding(Severity.PROBLEM, f"the fresh run stopped{where} ({run.stopped}); the cells "
                                                         "after it did not run"))
    first_failure: Finding | None = None
    later_failures: list[int] = []
    for index, (saved, fresh) in enumerate(zip(notebook.cells, run.cells)):
        kind = cell_kind(saved)
        grade_id = _grade_id(saved)
        error = _error(fresh) if saved.cell_type == "code" else ""
        if error.startswith("KeyboardInterrupt") and (_cell_seconds(fresh) or 0) >= timeout - 1:
            error = f"timed out: stopped after {timeout:.0f} s, as the grader stops a cell"
        saved_ok = saved.get("execution_count") is not None and not _error(saved)
        if error and kind is not Kind.TESTS:  # a test cell's error is reported with its exercise
            label = f"cell {index}" + (f" ({grade_id!r})" if grade_id else "")
            if first_failure is not None:
                later_failures.append(index)
            elif saved_ok:
                first_failure = Finding(Severity.PROBLEM, f"{label} fails when the notebook runs from the top, but not "
                                        f"in your saved notebook ({_short(error)}): it ran out of order, or depends "
                                        "on a cell deleted or changed since", index)
            else:
                first_failure = Finding(Severity.PROBLEM, f"{label} fails: {_short(error)}", index)
            if first_failure.cell == index:
                report.findings.append(first_failure)
        if saved.cell_type == "code" and _output_bytes(fresh) > NEAR_LIMIT * limits["output_bytes"]:
            report.findings.append(Finding(Severity.WARNING, f"cell {index} prints {_output_bytes(fresh) / 1e6:.1f} MB "
                                           f"of output; the grader drops more than "
                                           f"{limits['output_bytes'] / 1e6:.1f} MB per cell", index))
        seconds = _cell_seconds(fresh)
        if seconds is not None and seconds > NEAR_LIMIT * limits["cell_seconds"]:
            report.findings.append(Finding(Severity.WARNING, f"cell {index} took {seconds:.0f} s; the grader stops a "
                                           f"cell after {limits['cell_seconds']:.0f} s (on a machine that may be "
                                           "slower than yours)", index))
        if kind is None or grade_id is None:
            continue
        if kind is Kind.TESTS:
            exercise = Exercise(grade_id, kind, _points(saved), index, hidden.get(grade_id) if manifest else None)
            verdicts = run.verdicts.get(index) or []
            exercise.checks_run = sum(1 for verdict in verdicts if not verdict.get("skipped"))
            exercise.checks_passed = sum(1 for verdict in verdicts if verdict.get("passed"))
            exercise.checks_skipped = sum(1 for verdict in verdicts if verdict.get("skipped"))
            exercise.error = error or (f"wrote to stderr: {_short(_stderr(fresh), 100)}" if _stderr(fresh) else "")
            if fresh is None or fresh.get("execution_count") is None:
                exercise.error = exercise.error or "did not run"
            exercise.passed = not exercise.error
            if error and saved_ok:
                exercise.error += " (it passed in your saved notebook: cells ran out of order?)"
            report.exercises.append(exercise)
        elif kind is Kind.WRITTEN:
            report.exercises.append(Exercise(grade_id, kind, _points(saved), index,
                                             unanswered=_checksum_matches(saved) is True))
    if later_failures:
        cells = ", ".join(str(index) for index in later_failures[:10]) + (", ..." if len(later_failures) > 10 else "")
        report.findings.append(Finding(Severity.PROBLEM, f"{len(later_failures)} more cells fail after it ({cells}), "
                                       "often only because of the first: fix that one and check again"))
    total_seconds = limits["total_seconds"]
    if total_seconds and run.seconds > NEAR_LIMIT * total_seconds:
        report.findings.append(Finding(Severity.WARNING, f"the whole notebook took {run.seconds:.0f} s; the grader "
                                       f"stops a submission after {total_seconds:.0f} s"))
    size = path.stat().st_size
    notebook_limit = limits["notebook_bytes"]
    if size > NEAR_LIMIT * notebook_limit:
        severity = Severity.PROBLEM if size > notebook_limit else Severity.WARNING
        report.findings.append(Finding(severity, f"the file is {size / 2**20:.0f} MB; the grader refuses notebooks "
                                       f"over {notebook_limit / 2**20:.0f} MB (clear large outputs)"))
    if manifest is None:
        report.findings.append(Finding(Severity.WARNING, "this notebook carries no course manifest (a release from "
                                       "before the self-check, or cells pasted into a new notebook): deleted cells, "
                                       "hidden tests and the file's name cannot be checked"))
    return report


def _points_text(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def format_report(report: Report) -> str:
    """The report as plain text for a terminal or a notebook's output."""
    lines = [f"Self-check of {report.notebook}" + (f" (assignment {report.assignment})" if report.assignment else ""),
             f"ran a copy from the top in a fresh kernel in {report.seconds:.0f} s", ""]
    run = passed = 0
    for exercise in report.exercises:
        if exercise.kind is Kind.TESTS:
            run += exercise.checks_run
            passed += exercise.checks_passed
            status = "passes" if exercise.passed else f"FAILS ({_short(exercise.error, 120)})"
            checks = f"visible checks {exercise.checks_passed}/{exercise.checks_run} passed"
            if exercise.checks_skipped:
                checks += f", {exercise.checks_skipped} skipped"
            hidden = " + hidden tests" if exercise.hidden_tests else ""
            lines.append(f"  {'ok ' if exercise.passed else 'X  '} {exercise.grade_id:<36} "
                         f"{_points_text(exercise.points):>10}  {checks}; cell {status}{hidden}")
        else:
            stub = "still the unanswered stub" if exercise.unanswered else "answered"
            lines.append(f"  {'.. ' if not exercise.unanswered else '?  '} {exercise.grade_id:<36} "
                         f"{_points_text(exercise.points):>10}  written, graded by your instructor; {stub}")
    total = report.total_points()
    written = sum(ex.points for ex in report.exercises if ex.kind is Kind.WRITTEN)
    lines += ["", f"Visible checks: {passed} of {run} passed."]
    if report.has_manifest:
        lines.append(f"{report.hidden_points():g} of {total:g} points are decided by hidden tests too: those cells can "
                     "fail at grading even where their visible checks pass.")
        lines.append(f"Secured by visible checks alone (passing test cells without hidden tests): "
                     f"{report.secured_points():g} points. Written answers, graded by your instructor: {written:g}.")
    else:
        lines.append(f"{total:g} points in all, {written:g} of them for written answers graded by your instructor; "
                     "the grader's hidden tests can fail even where the visible checks pass.")
    for severity, title in ((Severity.PROBLEM, "Costs points"), (Severity.WARNING, "Warnings")):
        found = [finding for finding in report.findings if finding.severity is severity]
        if found:
            lines += ["", f"{title}:"] + [f"  - {finding.message}" for finding in found]
    lines += ["", "OK: nothing found that costs points." if report.ok
              else "NOT OK: fix what is listed above, save, and check again."]
    return "\n".join(lines)


# --- the notebook's last cell -----------------------------------------------------------------------------------

def _hint(name: str = "NOTEBOOK.ipynb") -> str:
    return f"run `cml-course check {name}` (or `python -m cml.selfcheck {name}`) in a terminal"


def skip_reason() -> str | None:
    """Why :func:`check_this_notebook` does nothing here (the one line it prints), or ``None`` to check."""
    if os.environ.get(CHILD_VARIABLE):
        return "self-check: this is the self-check's own run of the notebook."
    if any(os.environ.get(variable) for variable in _GRADER_VARIABLES):
        return "self-check: skipped while grading."
    if os.environ.get(_TEST_VARIABLE, "") not in ("", "0"):
        return f"self-check: skipped under the grader's environment ({_TEST_VARIABLE} is set); {_hint()}."
    return None


def _this_notebook() -> Path | None:
    """The saved file of the notebook this kernel runs, as JupyterLab (``__session__``, ``JPY_SESSION_NAME``) or VS
    Code (``__vsc_ipynb_file__``) tell it; ``None`` when nothing does (nbclient, nbval, a console)."""
    namespace: Mapping[str, Any] = {}
    with contextlib.suppress(Exception):
        from IPython import get_ipython

        shell = get_ipython()
        namespace = shell.user_ns if shell is not None else {}
    for candidate in (namespace.get("__vsc_ipynb_file__"), namespace.get("__session__"),
                      os.environ.get("JPY_SESSION_NAME")):
        if not isinstance(candidate, str) or not candidate.endswith(".ipynb"):
            continue
        path = Path(candidate)
        for option in (path, Path.cwd() / path, Path.cwd() / path.name):
            if option.is_file():
                return option.resolve()
    return None


def check_this_notebook(*, timeout: float | None = None) -> None:
    """The last cell of every course notebook: check the saved file of this notebook (:func:`check_notebook`) and
    show the report.

    Prints one line and returns at once where no student waits for a report: in the self-check's own run, under
    nbgrader or the course's grader, under the tests (nbval), or where the notebook's file is unknown. Never raises
    and never writes to stderr.
    """
    try:
        reason = skip_reason()
        if reason is not None:
            print(reason)
            return
        path = _this_notebook()
        if path is None:
            print(f"self-check: this kernel does not know its notebook's file; {_hint()}.")
            return
        saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
        print(f"Checking the SAVED file {path.name} (saved at {saved}): save first (Ctrl+S) if you changed anything "
              "since. This takes as long as running all cells...", flush=True)
        # In a thread of its own: no event loop of the kernel's is running there for nbclient to share.
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings(), ThreadPoolExecutor(1) as pool:
            warnings.simplefilter("ignore")
            report = pool.submit(check_notebook, path, timeout=timeout).result()
        print(report.text())
    except Exception as error:  # noqa: BLE001 - the last cell of every notebook must not fail
        print(f"self-check could not run ({type(error).__name__}: {_short(str(error), 200)}); {_hint()}.")


# --- the command ------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command's arguments (shared by ``cml-course check`` and ``python -m cml.selfcheck``)."""
    parser.add_argument("notebook", type=Path, help="the notebook to check (it is only read)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one cell may run (default: the grader's per-cell limit)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def run_command(arguments: argparse.Namespace) -> int:
    """Check ``arguments.notebook``; 0 when nothing costs points, 1 otherwise, 2 when it cannot be read."""
    if not arguments.notebook.is_file():
        print(f"cml-course check: no such notebook: {arguments.notebook}", file=sys.stderr)
        return 2
    report = check_notebook(arguments.notebook, timeout=arguments.timeout)
    print(json.dumps(report.as_dict(), indent=1) if arguments.json else report.text())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m cml.selfcheck") -> int:
    """The command line: ``python -m cml.selfcheck NOTEBOOK [--timeout S] [--json]`` (``cml-course check`` too)."""
    parser = add_arguments(argparse.ArgumentParser(
        prog=prog, description="Run a copy of a notebook from the top in a fresh kernel and report what would cost "
                               "points at grading. Exit status: 0 when nothing does, 1 otherwise."))
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
