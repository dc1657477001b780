"""Grade the described submissions of ``tests/submissions/<assignment>/`` and check their expectations.

Every assignment also gets two implicit cases: ``solution`` (must score full marks) and ``blank``
(the untouched release, must score zero). Usage::

    python -m cml.instructor.cases 01_neuron [case ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cml.instructor.grader import NotebookGrade, grade_notebook
from cml.instructor.notebooks import Course
from cml.instructor.release import generate_release
from cml.instructor.submissions import Case, build_submission, load_cases

__all__ = ["CaseResult", "implicit_cases", "run_case", "run_cases", "expectation_failures"]


@dataclass
class CaseResult:
    case: Case
    grade: NotebookGrade
    seconds: float

    @property
    def failures(self) -> list[str]:
        return expectation_failures(self.case, self.grade)


def implicit_cases(assignment: str) -> list[Case]:
    """The full solution (expected: nothing lost) and the untouched release (expected: every test cell lost)."""
    return [
        Case("solution", assignment, "the reference solution", base="solution", lose=()),
        Case("blank", assignment, "the untouched release", base="blank", lose=("*",)),
    ]


def expectation_failures(case: Case, grade: NotebookGrade) -> list[str]:
    """Where ``grade`` contradicts the case's ``lose`` list (``"*"`` means every test cell)."""
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
        should_lose = "*" in case.lose or cell.grade_id in case.lose
        if should_lose and cell.score:
            failures.append(f"{cell.grade_id}: expected 0, scored {cell.score:g}/{cell.max_score:g}")
        if not should_lose and cell.score != cell.max_score:
            failures.append(
                f"{cell.grade_id}: expected {cell.max_score:g}, scored {cell.score or 0:g} ({cell.error or 'no error'})"
            )
    return failures


def run_case(case: Case, course_root: Path, release_root: Path) -> CaseResult:
    """Build and grade one case (every notebook of its assignment, merged into one result)."""
    course = Course(course_root)
    started = time.perf_counter()
    total = NotebookGrade()
    with tempfile.TemporaryDirectory(prefix=f"case-{case.name}-") as workdir:
        for source_path in course.notebooks(case.assignment):
            source = course.read(source_path)
            release = course.read(release_root / case.assignment / source_path.name)
            submission = build_submission(case, source, release)
            grade, _ = grade_notebook(source, submission, workdir=Path(workdir))
            total.cells.extend(grade.cells)
            total.problem = total.problem or grade.problem
    return CaseResult(case, total, time.perf_counter() - started)


def run_cases(
    cases: list[Case], course_root: Path, jobs: int = 1, release_root: Path | None = None
) -> list[CaseResult]:
    """Grade ``cases`` with ``jobs`` worker processes (each case runs its own kernel).

    Submissions are built from ``release_root``; by default from a release freshly generated from source.
    """
    if release_root is None:
        with tempfile.TemporaryDirectory(prefix="cml-cases-release-") as fresh:
            assignments = sorted({case.assignment for case in cases})
            generate_release(Course(course_root), Path(fresh), assignments)
            return run_cases(cases, course_root, jobs, Path(fresh))
    if jobs <= 1:
        return [run_case(case, course_root, release_root) for case in cases]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_case, cases, [course_root] * len(cases), [release_root] * len(cases)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("cases", nargs="*", help="case names (default: all, plus solution and blank)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="course directory (default: here)")
    parser.add_argument("--cases-dir", type=Path, default=None, help="default: <root>/tests/submissions/<assignment>")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    arguments = parser.parse_args(argv)
    folder = arguments.cases_dir or arguments.root / "tests" / "submissions" / arguments.assignment
    cases = implicit_cases(arguments.assignment) + (load_cases(folder) if folder.is_dir() else [])
    if arguments.cases:
        cases = [case for case in cases if case.name in arguments.cases]
    results = run_cases(cases, arguments.root, arguments.jobs)
    n_bad = 0
    for result in results:
        status = "ok  " if not result.failures else "FAIL"
        n_bad += bool(result.failures)
        print(f"{status} {result.case.name:<32} {result.grade.auto_score:5g}/{result.grade.auto_max:<5g} "
              f"{result.seconds:5.1f}s  {result.case.description}")
        for failure in result.failures:
            print(f"       - {failure}")
    print(f"{len(results) - n_bad} passed, {n_bad} failed")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
