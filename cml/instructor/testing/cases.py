"""Grade the described submissions of ``tests/submissions/<assignment>/`` and check their expectations.

Every assignment also gets two implicit cases: ``solution`` (must score full marks) and ``blank``
(the untouched release, must score zero). Usage::

    python -m cml.instructor.testing.cases 01_neuron [case ...] [--jobs N] [--full] [--more]

The cases are graded as a class whose students are the cases, by the one grading engine students are graded
with (:func:`cml.instructor.grading.run.grade_class`): intake repairs, nbgrader's autograde with resilient
execution in the sandbox, kernels forked from a zygote, and the verdicts given outside the kernel against a
reference run with a fresh seed. So what a case proves about the hidden tests is what a student gets.

The test suite grades the cases of ``tests/submissions/<assignment>/``; the further cases in its ``more/``
sub-folder (other variants of mistakes the suite's cases already cover) run with ``--more``, which keeps the suite
inside its time budget while every written case stays runnable.

A wrong answer's case stops after the last test cell in its ``lose`` list: the cells before its first changed cell
are the solution's, and the cells after that one only repeat what the correct answers already prove, or lose as a
consequence (its ``cascade`` list: whether they do is bookkeeping, not a test of the hidden tests). This roughly
halves the suite's grading time. ``--full`` (or ``CML_CASES_FULL=1``) runs every case to the end and checks every
later test cell too: the ``cascade`` cells must lose, the others keep their points. Correct answers, the solution
and the blank release always run in full.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from cml.instructor.authoring.release import generate_release
from cml.instructor.cells import cell_kind, grade_id
from cml.instructor.course import Course
from cml.instructor.grading.model import CellGrade, NotebookGrade, Outcome, Status
from cml.instructor.grading.run import grade_class
from cml.instructor.testing.submissions import Case, build_submission, load_cases

MORE_CASES = "more"
"""Sub-folder of an assignment's cases that only ``--more`` grades (see the module docstring)."""

__all__ = ["MORE_CASES", "CaseResult", "expectation_failures", "implicit_cases", "matching_example", "error_summary", "run_case",
           "run_cases"]


@dataclass
class CaseResult:
    case: Case
    grade: NotebookGrade
    seconds: float
    stopped_after: str | None = None
    """The grade cell after which grading stopped (see the module docstring), or None for a full run."""
    notes: list[str] = field(default_factory=list)
    """What the grader flagged (an interrupted cell, a verdict given outside the kernel, a repair)."""
    outcome: Outcome | None = None
    """The grading engine's outcome for the case's submission."""

    @property
    def failures(self) -> list[str]:
        return expectation_failures(self.case, self.grade)


def implicit_cases(assignment: str) -> list[Case]:
    """The full solution (expected: nothing lost) and the untouched release (expected: every test cell lost)."""
    return [
        Case("solution", assignment, "the reference solution", base="solution", lose=()),
        Case("blank", assignment, "the untouched release", base="blank", lose=("*",)),
    ]


def matching_example(case: Case, examples: list[Case]) -> Case | None:
    """The example student among ``examples`` who hands in ``case`` under another name, or None.

    The same starting point and expectation, and nothing written or left blank on top: ``ada_solution`` is
    the implicit ``solution`` case, ``ben_blank`` the ``blank`` one.
    """
    return next((example for example in examples if example.base == case.base and example.lose == case.lose
                 and not example.cells and not example.blank), None)


def expectation_failures(case: Case, grade: NotebookGrade) -> list[str]:
    """Where ``grade`` contradicts the case's ``lose`` and ``cascade`` lists (``"*"`` means every test cell).

    Cells that were not run (a case stopped early) are not in ``grade`` and so are not judged.
    """
    if case.lose is None:
        return []
    failures = []
    if grade.problem:
        failures.append(f"notebook problem: {grade.problem}")
    test_cells = [cell for cell in grade.cells if cell.kind == "tests"]
    known = {cell.grade_id for cell in test_cells}
    for name in case.lose:
        if name != "*" and name not in known:
            failures.append(f"`lose` names {name!r}, which is not a test cell")
    for cell in test_cells:
        should_lose = "*" in case.lose or cell.grade_id in case.lose or cell.grade_id in case.cascade
        if should_lose and cell.score:
            failures.append(f"{cell.grade_id}: expected 0, scored {cell.score:g}/{cell.max_score:g}")
        if not should_lose and cell.score != cell.max_score:
            failures.append(
                f"{cell.grade_id}: expected {cell.max_score:g}, scored {cell.score or 0:g} ({cell.error or 'no error'})"
            )
    return failures


def full_runs_requested() -> bool:
    """Whether ``CML_CASES_FULL`` asks for every case to run to the end."""
    return os.environ.get("CML_CASES_FULL", "") not in ("", "0")


def last_lost_cell(case: Case, notebook: NotebookNode) -> str | None:
    """The grade id of the last cell of ``notebook`` that ``case`` must lose, or None to run it all.

    None for the cases that run in full: correct answers (nothing lost), the blank release (``"*"``),
    cases without expectations, and wrong answers whose lost cells are not in this notebook.
    """
    if not case.lose or "*" in case.lose:
        return None
    lost = [grade_id(cell) for cell in notebook.cells if grade_id(cell) in case.lose]
    return lost[-1] if lost else None


def error_summary(cell: NotebookNode) -> str:
    """A cell's first error or stderr output in one line (the last line of a stderr stream); empty if none."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"[:500]
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "").strip().splitlines()
            return ("wrote to stderr: " + (text[-1] if text else ""))[:500]
    return ""


def _case_grade(outcome: Outcome, sources: dict[str, NotebookNode], autograded: Path, stops: tuple[str, ...]
                ) -> NotebookGrade:
    """The grade cells of the case as the gradebook scored them, in notebook order, up to the cell it stopped after;
    each lost cell with its error as the graded notebook shows it."""
    scores = {(notebook["name"], grade["name"]): grade for notebook in outcome.payload.get("notebooks", [])
              for grade in notebook["grades"]}
    result = NotebookGrade(problem="; ".join(outcome.notes) if outcome.status == Status.FAILED else "")
    for name, source in sources.items():
        stem = Path(name).stem
        graded_path = autograded / name
        graded = {grade_id(cell): cell for cell in nbformat.read(graded_path, as_version=4).cells} \
            if graded_path.exists() else {}
        for cell in source.cells:
            kind, identifier = cell_kind(cell), grade_id(cell)
            if kind not in ("tests", "manual"):
                continue
            score = scores.get((stem, identifier), {})
            points = score.get("auto_score") if kind == "tests" else None
            error = error_summary(graded[identifier]) if kind == "tests" and not points and identifier in graded \
                else ""
            maximum = float(score.get("max_score", cell.metadata["nbgrader"].get("points", 0)))
            result.cells.append(CellGrade(identifier, kind, float(points or 0) if kind == "tests" else None,
                                          maximum, error))
            if identifier in stops:
                break
    return result


def run_cases(cases: list[Case], course_root: Path, jobs: int = 1, release_root: Path | None = None, *,
              full: bool | None = None, **options: object) -> list[CaseResult]:
    """Grade ``cases`` as one class with ``jobs`` grading workers, and return each case's result.

    ``options`` go to :func:`~cml.instructor.grading.run.grade_class` (``limits``, ``fork_kernels``, ...).
    Submissions are built from ``release_root``; by default from a release freshly generated from source. Unless
    ``full`` (default: :func:`full_runs_requested`), a wrong answer's notebook stops after the last cell it must lose.
    """
    full = full_runs_requested() if full is None else full
    course = Course(course_root)
    assignments = sorted({case.assignment for case in cases})
    sources = {assignment: {path.name: course.read(path) for path in course.notebooks(assignment)}
               for assignment in assignments}
    for case in cases:
        test_ids = {grade_id(cell) for source in sources[case.assignment].values() for cell in source.cells
                    if cell_kind(cell) == "tests"}
        unknown = sorted(set(case.cascade) - test_ids)
        if unknown:
            raise ValueError(f"case {case.name}: `cascade` names {unknown}, which are not test cells of "
                             f"{case.assignment}")
    with tempfile.TemporaryDirectory(prefix="cml-cases-") as scratch_name:
        scratch = Path(scratch_name)
        if release_root is None:
            release_root = generate_release(course, scratch / "release", assignments)
        stops: dict[tuple[str, str], tuple[str, ...]] = {}
        for case in cases:
            folder = scratch / "submitted" / case.name / case.assignment
            folder.mkdir(parents=True)
            for name, source in sources[case.assignment].items():
                release = course.read(release_root / case.assignment / name)
                nbformat.write(build_submission(case, source, release), folder / name)
            last = [] if full else [last_lost_cell(case, source) for source in sources[case.assignment].values()]
            stops[(case.name, case.assignment)] = tuple(identifier for identifier in last if identifier)
        run = grade_class(course, scratch / "submitted", scratch / "work", assignments, workers=jobs, feedback=False,
                          progress=False, stop_after=stops, **options)
        outcomes = {(outcome.student, outcome.assignment): outcome for outcome in run.outcomes}
        results = []
        for case in cases:
            outcome = outcomes[(case.name, case.assignment)]
            key = (case.name, case.assignment)
            autograded = scratch / "work" / "autograded" / case.name / case.assignment
            grade = _case_grade(outcome, sources[case.assignment], autograded, stops[key])
            results.append(CaseResult(case, grade, outcome.seconds, stops[key][-1] if stops[key] else None,
                                      outcome.notes + run.reference_problems, outcome))
    return results


def run_case(case: Case, course_root: Path, release_root: Path | None = None, *, full: bool | None = None
             ) -> CaseResult:
    """Grade one case (see :func:`run_cases`)."""
    return run_cases([case], course_root, release_root=release_root, full=full)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("cases", nargs="*", help="case names (default: all, plus solution and blank)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="course directory (default: here)")
    parser.add_argument("--cases-dir", type=Path, default=None, help="default: <root>/tests/submissions/<assignment>")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--full", action="store_true", help="run wrong answers to the end too (see above)")
    parser.add_argument("--more", action="store_true", help="also grade the cases in the more/ sub-folder")
    arguments = parser.parse_args(argv)
    folder = arguments.cases_dir or arguments.root / "tests" / "submissions" / arguments.assignment
    cases = implicit_cases(arguments.assignment) + (load_cases(folder) if folder.is_dir() else [])
    if arguments.more and (folder / MORE_CASES).is_dir():
        cases += load_cases(folder / MORE_CASES, arguments.assignment)
    if arguments.cases:
        cases = [case for case in cases if case.name in arguments.cases]
    results = run_cases(cases, arguments.root, arguments.jobs, full=arguments.full or None)
    n_bad = 0
    for result in results:
        status = "ok  " if not result.failures else "FAIL"
        n_bad += bool(result.failures)
        stopped = f" (stopped after {result.stopped_after})" if result.stopped_after else ""
        print(f"{status} {result.case.name:<32} {result.grade.auto_score:5g}/{result.grade.auto_max:<5g} "
              f"{result.seconds:5.1f}s  {result.case.description}{stopped}")
        for failure in result.failures:
            print(f"       - {failure}")
    print(f"{len(results) - n_bad} passed, {n_bad} failed")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
