"""``cml-course``: the instructor's workflow as commands.

    cml-course release [A ...]        regenerate release/ from source/ with nbgrader
    cml-course check-release          release/ equals a fresh build and leaks nothing
    cml-course validate [A ...]       check-release, then solution = full marks and release = zero
    cml-course examples OUT           write the bundled example submissions as OUT/<student>/<assignment>/
    cml-course autograde SUBMITTED    autograde a folder of submissions with plain nbgrader, one by one
    cml-course grade SUBMITTED [A ...] grade a class in parallel and sandboxed: gradebook, feedback, report
                                      (--cluster ADDRESS: on a Dask cluster; --db URL: the gradebook in a database)
    cml-course demo                   the main job: check the release, autograde the examples, print grades
    cml-course cases A [CASE ...]     grade the described test submissions of tests/submissions/A
    cml-course check NOTEBOOK         for students: run a copy from the top in a fresh kernel, list the visible
                                      checks and points per exercise, warn about what costs points (exit 1)
    cml-course report RUN_OR_WORKDIR  item analysis, clusters of identical wrong answers named by their described
                                      case, time and memory, flagged submissions and items (HTML and CSVs)
    cml-course similarity WORKDIR     pairs of students whose answer cells look copied, with identical rare wrong
                                      values as evidence, side by side (HTML and CSV)
    cml-course export-lms WORKDIR     grade files Canvas or Moodle import (--lms canvas|moodle --mapping FILE)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from cml import selfcheck
from cml.instructor.analytics import lms, report, similarity
from cml.instructor.testing import cases as cases_module
from cml.instructor.grading.baseline import GradeRow, autograde, format_table, read_grades, write_csv
from cml.instructor.testing.cases import expectation_failures
from cml.instructor.grading.run import default_workers, format_outcomes, grade_class
from cml.instructor.grading.model import NotebookGrade
from cml.instructor.course import Course
from cml.instructor.authoring.release import find_leaks, generate_release, release_differences, update_release
from cml.instructor.testing.submissions import Case, load_cases, write_submission
from cml.instructor.grading.model import Limits

__all__ = ["main"]

EXAMPLES_DIR = Path("examples") / "submissions"


def _course(arguments: argparse.Namespace) -> Course:
    root = arguments.root.resolve()
    if not (root / "source").is_dir():
        raise SystemExit(f"{root} is not a course directory (no source/ folder); pass --root")
    return Course(root)


def _check_release(course: Course) -> bool:
    """Print how release/ differs from a fresh build and what it leaks; True when nothing does."""
    with tempfile.TemporaryDirectory(prefix="cml-fresh-") as fresh:
        problems = release_differences(course, generate_release(course, Path(fresh)))
    problems += find_leaks(course)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print("release/ matches source/ and leaks nothing" if not problems else f"{len(problems)} release problems")
    return not problems


def command_release(arguments: argparse.Namespace) -> int:
    course = _course(arguments)
    changes = update_release(course)
    print("\n".join(changes) if changes else "release/ is already up to date")
    return 0


def command_check_release(arguments: argparse.Namespace) -> int:
    return 0 if _check_release(_course(arguments)) else 1


def command_validate(arguments: argparse.Namespace) -> int:
    course = _course(arguments)
    status = command_check_release(arguments)
    assignments = arguments.assignments or course.assignments()
    implicit = [case for assignment in assignments for case in cases_module.implicit_cases(assignment)]
    for result in cases_module.run_cases(implicit, course.root, arguments.jobs, release_root=course.release):
        verdict = "ok" if not result.failures else "FAIL"
        print(f"{verdict:<4} {result.case.assignment:<22} {result.case.name:<9} "
              f"{result.grade.auto_score:g}/{result.grade.auto_max:g} ({result.seconds:.1f} s)")
        for failure in result.failures:
            print(f"     - {failure}")
        status |= bool(result.failures)
    return status


def write_examples(course: Course, target: Path) -> list[Case]:
    """Build every example of ``examples/submissions/<assignment>/<student>.toml`` into nbgrader's layout."""
    examples = []
    for assignment in course.assignments():
        folder = course.root / EXAMPLES_DIR / assignment
        for case in load_cases(folder) if folder.is_dir() else []:
            write_submission(case, course, target / case.name / assignment)
            examples.append(case)
    return examples


def example_problems(examples: list[Case], rows: list[GradeRow]) -> list[str]:
    """Where nbgrader's grades contradict what the example students' files say they should lose."""
    by_key = {(row.student, row.assignment): row for row in rows}
    problems = []
    for case in examples:
        row = by_key.get((case.name, case.assignment))
        if row is None:
            problems.append(f"{case.name}/{case.assignment}: no grade in the gradebook")
            continue
        grade = NotebookGrade(list(row.cells))
        problems += [f"{case.name}/{case.assignment}: {failure}" for failure in expectation_failures(case, grade)]
    return problems


def command_examples(arguments: argparse.Namespace) -> int:
    examples = write_examples(_course(arguments), arguments.out)
    print(f"wrote {len(examples)} example submissions into {arguments.out}")
    return 0


def _grade_and_report(
    course: Course, submitted: Path, workdir: Path, assignments: list[str] | None
) -> list[GradeRow]:
    started = time.perf_counter()
    rows = autograde(course, submitted, workdir, assignments)
    write_csv(rows, workdir / "grades.csv")
    print(format_table(rows))
    print(f"\ngraded {len(rows)} submissions in {time.perf_counter() - started:.1f} s; "
          f"CSV: {workdir / 'grades.csv'}; feedback: {workdir / 'feedback'}; gradebook: {workdir / 'gradebook.db'}")
    return rows


def command_autograde(arguments: argparse.Namespace) -> int:
    course = _course(arguments)
    _grade_and_report(course, arguments.submitted.resolve(), arguments.workdir.resolve(), arguments.assignments)
    return 0


def _memory_mb() -> int:
    return psutil.virtual_memory().total // 2**20


def command_grade(arguments: argparse.Namespace) -> int:
    course = _course(arguments)
    memory = arguments.memory_limit or min(Limits.memory_mb, _memory_mb() // (arguments.workers + 1))
    limits = Limits(cell_timeout=arguments.cell_timeout, time_limit=arguments.time_limit, memory_mb=memory,
                    disk_mb=arguments.disk_limit)
    run = grade_class(course, arguments.submitted.resolve(), arguments.workdir.resolve(), arguments.assignments,
                      workers=arguments.workers, limits=limits, sandbox=not arguments.no_sandbox,
                      feedback=not arguments.no_feedback, progress=not arguments.no_progress,
                      cluster=arguments.cluster, db_url=arguments.db, verdicts=not arguments.no_verdicts)
    print(format_outcomes(run.outcomes))
    print(f"\ngraded {len(run.outcomes)} submissions in {run.seconds:.1f} s with {run.workers} workers "
          f"({run.submissions_per_minute():.1f} per minute)")
    for note in run.run_notes:
        print(f"NOTE {note}")
    gradebook = "the database given by --db" if arguments.db else arguments.workdir / "gradebook.db"
    print(f"report: {run.csv_report} and {run.json_report}; gradebook: {gradebook}; "
          f"feedback: {arguments.workdir / 'feedback'}")
    return 1 if any(outcome.status == "failed" for outcome in run.outcomes) else 0


def command_demo(arguments: argparse.Namespace) -> int:
    """Check the release, grade the bundled examples in parallel, and verify what each example student gets."""
    course = _course(arguments)
    print("== release: fresh nbgrader build vs release/, leak check")
    release_ok = _check_release(course)
    workdir = arguments.workdir.resolve()
    with tempfile.TemporaryDirectory(prefix="cml-examples-") as submitted:
        examples = write_examples(course, Path(submitted))
        students = sorted({case.name for case in examples})
        print(f"\n== grading the example students ({', '.join(students)}) with nbgrader, "
              f"{default_workers()} workers, sandboxed")
        run = grade_class(course, Path(submitted), workdir, progress=sys.stderr.isatty())
    rows = read_grades(f"sqlite:///{workdir / 'gradebook.db'}", course.assignments())
    write_csv(rows, workdir / "grades.csv")
    print(format_table(rows))
    print(f"\ngraded {len(run.outcomes)} submissions in {run.seconds:.1f} s with {run.workers} workers; "
          f"CSV: {workdir / 'grades.csv'}; report: {run.json_report}; feedback: {workdir / 'feedback'}; "
          f"gradebook: {workdir / 'gradebook.db'}")
    expectations = example_problems(examples, rows)
    expectations += [f"{o.student}/{o.assignment}: {o.status}: {' | '.join(o.notes)}"
                     for o in run.outcomes if o.status != "graded"]
    expectations += run.reference_problems
    print("\n== what the run says about the class: item analysis, common wrong answers, resources")
    try:
        page = report.build_report(run.json_report.parent, course_root=course.root)
        print(f"class report: {page} (CSVs beside it; again with: cml-course report {workdir})")
    except report.ReportError as error:
        expectations.append(f"class report: {error}")
    for problem in expectations:
        print(f"PROBLEM {problem}")
    ok = release_ok and not expectations
    print("\nall checks passed" if ok else "\nsome checks FAILED")
    return 0 if ok else 1


def command_cases(arguments: argparse.Namespace) -> int:
    forwarded = [arguments.assignment, *arguments.cases, "--root", str(arguments.root), "--jobs", str(arguments.jobs)]
    forwarded += ["--full"] * arguments.full + ["--more"] * arguments.more
    return cases_module.main(forwarded)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cml-course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course directory (default: here)")
    commands = parser.add_subparsers(dest="command", required=True)
    jobs = os.cpu_count() or 1

    release = commands.add_parser("release", help="regenerate release/ from source/")
    release.set_defaults(handler=command_release)
    check = commands.add_parser("check-release", help="release/ equals a fresh build and leaks nothing")
    check.set_defaults(handler=command_check_release)
    validate = commands.add_parser("validate", help="check-release, solution full marks, blank zero")
    validate.add_argument("assignments", nargs="*")
    validate.add_argument("--jobs", type=int, default=jobs)
    validate.set_defaults(handler=command_validate)
    examples = commands.add_parser("examples", help="write the example submissions")
    examples.add_argument("out", type=Path)
    examples.set_defaults(handler=command_examples)
    grade = commands.add_parser("autograde", help="autograde SUBMITTED/<student>/<assignment>/*.ipynb")
    grade.add_argument("submitted", type=Path)
    grade.add_argument("assignments", nargs="*")
    grade.add_argument("--workdir", type=Path, default=Path("course_work"))
    grade.set_defaults(handler=command_autograde)
    parallel = commands.add_parser("grade", help="grade a class in parallel, sandboxed: gradebook, feedback, report")
    parallel.add_argument("submitted", type=Path, help="SUBMITTED/<student>/<assignment>/*.ipynb")
    parallel.add_argument("assignments", nargs="*", help="default: every assignment")
    parallel.add_argument("--workdir", type=Path, default=Path("course_work"))
    parallel.add_argument("--workers", type=int, default=default_workers(), help="default: the usable cores")
    parallel.add_argument("--cell-timeout", type=int, default=Limits.cell_timeout, help="seconds per cell")
    parallel.add_argument("--time-limit", type=float, default=Limits.time_limit, help="seconds per submission")
    parallel.add_argument("--memory-limit", type=int, default=None,
                          help=f"MB per submission (default: {Limits.memory_mb}, less if the workers' share of "
                               "this machine's memory is smaller)")
    parallel.add_argument("--disk-limit", type=int, default=Limits.disk_mb,
                          help="MB a submission's kernel may write: its folder, temporary files, /dev/shm (default: "
                               f"{Limits.disk_mb}; held in memory, in a file system of the kernel's own)")
    parallel.add_argument("--no-sandbox", action="store_true", help="run kernels without isolation (and no disk limit)")
    parallel.add_argument("--no-feedback", action="store_true",
                          help="no HTML feedback now (nbgrader generate_feedback writes it later, after manual grading)")
    parallel.add_argument("--no-progress", action="store_true", help="no progress bar")
    parallel.add_argument("--no-verdicts", action="store_true",
                          help="trust the kernels' test results (no seeded reference run of the solution, no "
                               "out-of-kernel comparison; see README: Tamper-proof verdicts)")
    parallel.add_argument("--cluster", metavar="ADDRESS",
                          help="grade on Dask workers: a scheduler's address (tcp://host:8786), or 'local' for "
                               "--workers worker processes here")
    parallel.add_argument("--db", metavar="URL",
                          help="the class gradebook in this database (SQLAlchemy URL, e.g. "
                               "postgresql://grader@dbhost/grades) instead of WORKDIR/gradebook.db")
    parallel.set_defaults(handler=command_grade)
    demo = commands.add_parser("demo", help="the main job on the bundled examples")
    demo.add_argument("--workdir", type=Path, default=Path("course_work"))
    demo.set_defaults(handler=command_demo)
    case = commands.add_parser("cases", help="grade the test submissions of an assignment")
    case.add_argument("assignment")
    case.add_argument("cases", nargs="*")
    case.add_argument("--jobs", type=int, default=jobs)
    case.add_argument("--full", action="store_true", help="run wrong answers to the end too")
    case.add_argument("--more", action="store_true", help="also the cases in tests/submissions/<assignment>/more/")
    case.set_defaults(handler=command_cases)
    check = selfcheck.add_arguments(commands.add_parser(
        "check", help="before submitting: run a copy of NOTEBOOK from the top, report what would cost points"))
    check.set_defaults(handler=selfcheck.run_command)
    analysis = commands.add_parser("report", help="what a grading run says about the class (HTML and CSVs)")
    report.add_arguments(analysis)
    analysis.set_defaults(handler=report.run)
    alike = commands.add_parser("similarity", help="pairs of students whose answers look copied (MOSS-style)")
    similarity.add_arguments(alike)
    alike.set_defaults(handler=similarity.run)
    export = commands.add_parser("export-lms", help="grade files for Canvas or Moodle from the gradebook")
    lms.add_arguments(export)
    export.set_defaults(handler=lms.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    return arguments.handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
