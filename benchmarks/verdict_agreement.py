"""Benchmark: do the verdicts given outside the kernel agree with the kernel's on honest work, and what do they cost?

    python benchmarks/verdict_agreement.py [--assignments 01_neuron ...] [--workers N] [--more] [--timing]

Every case of ``tests/submissions/<assignment>/`` (correct alternatives and wrong answers, with
``--more`` the further variants too) is an honest submission: none tampers with the tests. It is graded
by ``cml-course grade`` with its out-of-kernel verdicts (the hidden tests' oracles withheld from the kernel); a
grade cell flagged as likely tampering (``VerdictMismatch``: a visible check that passed inside but not outside,
a check missing from the log, the placeholder handed back) is a disagreement, and there must be none.
Printed: per assignment, submissions, disagreements (with their reasons), any problem of the
reference runs, and the grading seed.

With ``--timing`` the same class is graded again without the verdicts (every hidden check then judged in the
kernel, with its oracle), and the wall times of both runs are printed with the overhead of the verdicts (the
reference runs, the comparisons) in percent, and every submission whose score differs between the two.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.instructor.grading.run import default_workers, grade_class
from cml.instructor.course import Course
from cml.instructor.testing.submissions import load_cases, write_submission
from cml.instructor.grading.model import Limits


def write_class(course: Course, assignments: list[str], folder: Path, more: bool) -> int:
    """Each case becomes a student ``<case name>`` of its assignment; returns the number of submissions."""
    count = 0
    for assignment in assignments:
        cases_folder = REPO / "tests" / "submissions" / assignment
        cases = load_cases(cases_folder, assignment) + (load_cases(cases_folder / "more", assignment) if more else [])
        for case in cases:
            write_submission(case, course, folder / case.name / assignment)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", nargs="*")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--cell-timeout", type=int, default=120)
    parser.add_argument("--more", action="store_true", help="also the further variants in more/")
    parser.add_argument("--timing", action="store_true", help="grade again without verdicts and compare times")
    parser.add_argument("--no-sandbox", action="store_true")
    arguments = parser.parse_args(argv)
    course = Course(REPO)
    assignments = arguments.assignments or course.assignments()
    root = Path(tempfile.mkdtemp(prefix="cml-verdicts-"))
    try:
        submitted = root / "submitted"
        count = write_class(course, assignments, submitted, arguments.more)
        print(f"{count} honest submissions of {len(assignments)} assignments, {arguments.workers} workers", flush=True)
        limits = Limits(cell_timeout=arguments.cell_timeout)
        options = {"workers": arguments.workers, "limits": limits, "sandbox": not arguments.no_sandbox,
                   "feedback": False, "progress": sys.stderr.isatty()}
        started = time.perf_counter()
        run = grade_class(course, submitted, root / "with", assignments, **options)
        with_verdicts = time.perf_counter() - started
        disagreements = [(outcome, note) for outcome in run.outcomes for note in outcome.notes
                         if "likely tampering" in note]
        for assignment in assignments:
            graded = [o for o in run.outcomes if o.assignment == assignment]
            mine = [note for outcome, note in disagreements if outcome.assignment == assignment]
            print(f"{assignment:<26} {len(graded):>4} submissions  {len(mine):>3} disagreements")
        for outcome, note in disagreements:
            print(f"  {outcome.student}/{outcome.assignment}: {note}")
        for note in run.run_notes:
            print(f"run note: {note}")
        for note in run.reference_problems:
            print(f"reference problem: {note}")
        print(f"with verdicts: {with_verdicts:.1f} s; grading seed {run.grading_seed}")
        different = []
        if arguments.timing:
            started = time.perf_counter()
            plain = grade_class(course, submitted, root / "without", assignments, verdicts=False, **options)
            without = time.perf_counter() - started
            print(f"without verdicts: {without:.1f} s; the verdicts add {100 * (with_verdicts / without - 1):.1f}%")
            # Without verdicts every hidden check is judged in the kernel, with its oracle: the scores must agree.
            in_kernel = {(o.student, o.assignment): o.code_total() for o in plain.outcomes}
            different = [(o.student, o.assignment, in_kernel.get((o.student, o.assignment)), o.code_total())
                         for o in run.outcomes if in_kernel.get((o.student, o.assignment)) != o.code_total()]
            print(f"scores judged outside the kernel vs inside: {len(run.outcomes) - len(different)} identical, "
                  f"{len(different)} different")
            for student, assignment, inside, outside in different:
                print(f"  {student}/{assignment}: {inside} inside, {outside} outside")
        return 1 if disagreements or different or run.reference_problems else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
