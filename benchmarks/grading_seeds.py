"""Check: does every solution pass its hidden tests whatever grading seed is drawn?

    python benchmarks/grading_seeds.py [--assignments 01_neuron ...] [--seeds 4]

Hidden tests draw their inputs through ``cml.checks.grading_seed``, so each grading run tests other
inputs. Here each assignment's solution is run, exactly as the grader's reference run does, with
``--seeds`` seeds drawn at random; printed: every grade cell the solution fails under some seed (there
must be none), and the time per run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.instructor.defaults import GRADING_ENVIRONMENT
from cml.instructor.course import Course
from cml.instructor.grading.reference import record_reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", nargs="*")
    parser.add_argument("--seeds", type=int, default=4)
    arguments = parser.parse_args(argv)
    course = Course(REPO)
    failures = 0
    for assignment in arguments.assignments or course.assignments():
        for seed in random.sample(range(2**31), arguments.seeds):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as scratch:
                reference = record_reference(course.source / assignment, seed, Path(scratch),
                                             environment=GRADING_ENVIRONMENT)
            failed = sorted(grade_id for cells in reference["notebooks"].values()
                            for grade_id, cell in cells.items() if cell["failed"])
            failures += len(failed)
            print(f"{assignment:<26} seed {seed:>10}  {time.perf_counter() - started:6.1f} s  "
                  f"{'fails ' + ', '.join(failed) if failed else 'all cells pass'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
