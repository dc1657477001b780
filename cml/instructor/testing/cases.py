"""Grade the described submissions of ``tests/submissions/<assignment>/`` and check their expectations.

Every assignment also gets two implicit cases: ``solution`` (must score full marks) and ``blank``
(the untouched release, must score zero). Usage::

    python -m cml.instructor.testing.cases 01_neuron [case ...] [--jobs N] [--full] [--more]

The test suite grades the cases of ``tests/submissions/<assignment>/``; the further cases in its
``more/`` sub-folder (other variants of mistakes the suite's cases already cover) run with ``--more``,
which keeps the suite inside its time budget while every written case stays runnable.

A wrong answer's case stops after the last test cell in its ``lose`` list: the cells before its first
changed cell are the solution's, and the cells after that one only repeat what the correct answers
already prove, or lose as a consequence (its ``cascade`` list: whether they do is bookkeeping, not a
test of the hidden tests). This roughly halves the suite's grading time. ``--full`` (or
``CML_CASES_FULL=1``) runs every case to the end and checks every later test cell too: the
``cascade`` cells must lose, the others keep their points. Correct answers, the solution and the
blank release always run in full.

The kernels are forked from a process that has already imported the assignment's libraries (torch,
jax, ...; see :mod:`cml.instructor.isolation.zygote`), which saves each case those seconds of loading;
``CML_FORKED_KERNELS=off`` starts every kernel afresh.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from cml.instructor.isolation.zygote import Zygote, forked_kernel_manager, preloadable_modules
from cml.instructor.grading.grader import NotebookGrade, grade_notebook, kernel_environment
from cml.instructor.course import Course, cell_kind, grade_id
from cml.instructor.authoring.release import generate_release
from cml.instructor.testing.submissions import Case, build_submission, load_cases

MORE_CASES = "more"
"""Sub-folder of an assignment's cases that only ``--more`` grades (see the module docstring)."""

__all__ = ["MORE_CASES", "CaseResult", "forked_kernels", "implicit_cases", "matching_example", "run_case", "run_cases",
           "expectation_failures"]


@dataclass
class CaseResult:
    case: Case
    grade: NotebookGrade
    seconds: float
    stopped_after: str | None = None
    """The grade cell after which grading stopped (see the module docstring), or None for a full run."""

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


def jax_cache_environment() -> dict[str, str]:
    """Kernel variables that share JAX's compiled programs between the cases' kernels through a disk cache.

    Every case recompiles the same small JAX programs; the persistent cache makes that a disk read
    (about 2 s of the 01 and 02 notebooks). Only for the instructor's own described submissions: a
    cache that kernels write is shared state, so grading real students never uses it.
    ``CML_JAX_CACHE`` chooses the folder (default: ``~/.cache/cml/jax``); ``off`` disables it.
    """
    folder = os.environ.get("CML_JAX_CACHE", str(Path.home() / ".cache" / "cml" / "jax"))
    if folder == "off":
        return {}
    return {
        "JAX_COMPILATION_CACHE_DIR": folder,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


_ZYGOTES: list[tuple[Zygote, type | None]] = []
"""The kernel zygote in use in this process, with its kernel manager class (one at a time: cases come by assignment)."""


def _close_zygotes() -> None:
    for zygote, _ in _ZYGOTES:
        zygote.close()
    _ZYGOTES.clear()


atexit.register(_close_zygotes)


def forked_kernels(notebook: NotebookNode, environment: dict[str, str]) -> type | None:
    """A kernel manager class whose kernels fork from a zygote that has loaded ``notebook``'s libraries, or None.

    None (kernels start afresh) where ``CML_FORKED_KERNELS`` is ``off`` or ``0``, where there is no ``fork``,
    and where the zygote cannot fork safely (see :mod:`cml.instructor.isolation.zygote`).
    """
    if os.environ.get("CML_FORKED_KERNELS", "") in ("off", "0") or not hasattr(os, "fork"):
        return None
    modules = preloadable_modules(notebook)
    full_environment = kernel_environment(environment)
    if not (_ZYGOTES and _ZYGOTES[0][0].modules == modules and _ZYGOTES[0][0].serves(full_environment)):
        _close_zygotes()
        zygote = Zygote(modules, full_environment)
        _ZYGOTES.append((zygote, forked_kernel_manager(zygote) if zygote.usable else None))
    return _ZYGOTES[0][1]


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


def run_case(case: Case, course_root: Path, release_root: Path, *, full: bool | None = None) -> CaseResult:
    """Build and grade one case (every notebook of its assignment, merged into one result).

    Unless ``full`` (default: :func:`full_runs_requested`), a wrong answer's notebook stops after
    the last cell it must lose.
    """
    full = full_runs_requested() if full is None else full
    course = Course(course_root)
    sources = {path.name: course.read(path) for path in course.notebooks(case.assignment)}
    test_ids = {grade_id(cell) for source in sources.values() for cell in source.cells if cell_kind(cell) == "tests"}
    unknown = sorted(set(case.cascade) - test_ids)
    if unknown:
        raise ValueError(f"case {case.name}: `cascade` names {unknown}, which are not test cells of {case.assignment}")
    started = time.perf_counter()
    total = NotebookGrade()
    stopped_after = None
    with tempfile.TemporaryDirectory(prefix=f"case-{case.name}-") as workdir:
        for name, source in sources.items():
            release = course.read(release_root / case.assignment / name)
            submission = build_submission(case, source, release)
            stop_after = None if full else last_lost_cell(case, source)
            environment = jax_cache_environment()
            grade, _ = grade_notebook(source, submission, workdir=Path(workdir), stop_after=stop_after,
                                      environment=environment,
                                      kernel_manager_class=forked_kernels(source, environment))
            stopped_after = stopped_after or stop_after
            total.cells.extend(grade.cells)
            total.problem = total.problem or grade.problem
    return CaseResult(case, total, time.perf_counter() - started, stopped_after)


def run_cases(
    cases: list[Case], course_root: Path, jobs: int = 1, release_root: Path | None = None, *, full: bool | None = None
) -> list[CaseResult]:
    """Grade ``cases`` with ``jobs`` worker processes (each case runs its own kernel).

    Submissions are built from ``release_root``; by default from a release freshly generated from source.
    """
    if release_root is None:
        with tempfile.TemporaryDirectory(prefix="cml-cases-release-") as fresh:
            assignments = sorted({case.assignment for case in cases})
            generate_release(Course(course_root), Path(fresh), assignments)
            return run_cases(cases, course_root, jobs, Path(fresh), full=full)
    grade_one = functools.partial(run_case, course_root=course_root, release_root=release_root, full=full)
    if jobs <= 1:
        return [grade_one(case) for case in cases]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(grade_one, cases))


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
