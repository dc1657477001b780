"""Benchmark: a synthetic class graded by plain ``nbgrader autograde`` and by ``cml-course grade``, in one run.

    python benchmarks/class_grading.py [--students 40] [--assignments 01_neuron ...] [--workers N]
                                       [--cell-timeout 30] [--out DIR] [--no-feedback] [--reuse-plain]
                                       [--verdicts-overhead]

The class: every student hands in every assignment; student ``i`` is, in turn, correct (the reference
solution or a correct alternative from ``tests/submissions``), blank, half-done (the second half of the
answers left as released), buggy (a wrong answer from ``tests/submissions``, a different one for each
student where there are enough) or hostile (an infinite loop, ``os._exit``, a segfault, a 2.5 GB
allocation, or a background process, each in a cell of its own in the middle of a correct notebook).

Both graders get the same course, submissions, per-cell timeout and kernel environment:

* plain nbgrader: ``nbgrader generate_assignment`` then ``nbgrader autograde`` for each assignment, one
  notebook after another, as its documentation says (and ``generate_feedback``, timed separately);
* ``cml-course grade``: the same steps, with N workers, with feedback (compared with plain nbgrader's three
  steps) or, with ``--no-feedback``, without (compared with its first two).

With ``--verdicts-overhead`` the class is instead graded twice by ``cml-course grade``, without and with
its out-of-kernel verdicts (``--no-verdicts``), and the two times are compared.

Printed: submissions per minute of each and their ratio; the per-notebook overhead beyond the notebook's
own execution (wall time per notebook minus the summed cell run times nbclient records in each graded
notebook); and every submission whose score differs between the two (none may, except hostile ones).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.instructor.grading.baseline import read_grades
from cml.instructor.grading.run import GradingRun, default_workers, grade_class, prepare_workdir
from cml.instructor.defaults import GRADING_ENVIRONMENT
from cml.instructor.cells import cell_kind
from cml.instructor.course import Course
from cml.instructor.authoring.release import run_nbgrader
from cml.instructor.testing.submissions import Case, build_submission, load_cases
from cml.instructor.grading.model import Limits

KINDS = ("correct", "blank", "half", "buggy", "correct", "hostile", "buggy", "half", "correct", "buggy")
"""Student ``i`` hands in ``KINDS[i % 10]`` for every assignment: 3 correct, 3 buggy, 2 half-done, 1 blank and
1 hostile in every 10."""
BACKGROUND_MARKER = "cml-benchmark-background"
HOSTILE_CELLS = (
    "while True:\n    pass",
    "import os\nos._exit(1)",
    "import ctypes\nctypes.string_at(0)",
    "hog = bytearray(int(2.5 * 2**30))\ndel hog",
    (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(900)', "
     f"'{BACKGROUND_MARKER}'], start_new_session=True)"),
)


def _cases(assignment: str) -> tuple[list[Case], list[Case]]:
    """Correct alternatives and wrong answers described for ``assignment`` (suite and more/)."""
    folder = REPO / "tests" / "submissions" / assignment
    cases = load_cases(folder, assignment) + (load_cases(folder / "more", assignment) if (folder / "more").is_dir()
                                              else [])
    return [c for c in cases if c.lose == ()], [c for c in cases if c.lose]


def _notebook(course: Course, assignment: str, case: Case):
    source_path = course.notebooks(assignment)[0]
    release_path = course.release / assignment / source_path.name
    return build_submission(case, course.read(source_path), course.read(release_path)), source_path.name


def _half_done(notebook):
    answers = [cell for cell in notebook.cells if cell_kind(cell) == "solution"]
    for cell in answers[len(answers) // 2:]:
        cell.source = "# YOUR CODE HERE\nraise NotImplementedError()"
    return notebook


def _hostile(notebook, number: int):
    hostile = copy.deepcopy(notebook)
    answers = [index for index, cell in enumerate(hostile.cells) if cell_kind(cell) == "solution"]
    position = answers[len(answers) // 2]
    hostile.cells.insert(position, nbformat.v4.new_code_cell(HOSTILE_CELLS[number % len(HOSTILE_CELLS)]))
    return hostile


def build_class(course: Course, assignments: list[str], students: int, target: Path) -> dict[tuple[str, str], str]:
    """Write ``target/<student>/<assignment>/``; returns the kind of each (student, assignment)."""
    kinds = {}
    for assignment in assignments:
        correct, wrong = _cases(assignment)
        solution = Case("solution", assignment, "the reference solution", lose=())
        blank = Case("blank", assignment, "nothing answered", base="release", lose=("*",))
        for index in range(students):
            student = f"student{index + 1:02d}"
            kind = KINDS[index % len(KINDS)]
            if kind == "correct":
                case = ([solution] + correct)[(index // len(KINDS)) % (len(correct) + 1)]
            elif kind == "buggy":
                case = wrong[(index * 7) % len(wrong)]
            elif kind == "blank":
                case = blank
            else:
                case = solution
            notebook, name = _notebook(course, assignment, case)
            if kind == "half":
                notebook = _half_done(notebook)
            elif kind == "hostile":
                notebook = _hostile(notebook, index // len(KINDS) + assignments.index(assignment))
            folder = target / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(notebook, folder / name)
            kinds[(student, assignment)] = kind
    return kinds


def _execution_seconds(workdir: Path) -> dict[tuple[str, str], float]:
    """Summed cell run times (nbclient's timing metadata) of every graded notebook under ``workdir/autograded``."""
    seconds = {}
    for path in (workdir / "autograded").glob("*/*/*.ipynb"):
        total = 0.0
        for cell in json.loads(path.read_text())["cells"]:
            timing = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
                start, end = (datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                              for key in ("iopub.execute_input", "shell.execute_reply"))
                total += (end - start).total_seconds()
        key = (path.parents[1].name, path.parent.name)
        seconds[key] = seconds.get(key, 0.0) + total
    return seconds


def _kill_leftovers() -> int:
    """Plain nbgrader leaves the hostile background processes running; the benchmark cleans up after it."""
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if BACKGROUND_MARKER in " ".join(p.info["cmdline"] or [])]
    for process in leftovers:
        process.kill()
    return len(leftovers)


def run_plain_nbgrader(course: Course, submitted: Path, workdir: Path, assignments: list[str],
                       cell_timeout: int) -> dict[str, float]:
    prepare_workdir(course, workdir, assignments)
    shutil.copytree(submitted, workdir / "submitted")
    database = f"sqlite:///{workdir}/gradebook.db"
    timeout = [f"--Execute.timeout={cell_timeout}"]
    times = {"generate_assignment": 0.0, "autograde": 0.0, "generate_feedback": 0.0}
    for assignment in assignments:
        for step, extra in (("generate_assignment", []), ("autograde", ["--create"] + timeout),
                            ("generate_feedback", [])):
            started = time.perf_counter()
            try:
                run_nbgrader([step, assignment, "--force", "--db", database, *extra], workdir,
                             log=workdir / "grading.log", environment=GRADING_ENVIRONMENT)
            except RuntimeError as error:  # nbgrader exits non-zero when a submission failed; the rest are graded
                print(f"  nbgrader {step} {assignment}: {str(error).splitlines()[0]}")
            times[step] += time.perf_counter() - started
    return times


def report_engine(label: str, run: GradingRun, arguments: argparse.Namespace) -> None:
    """Print one ``cml-course grade`` run: its rate, and per submission the time in its worker beyond running cells
    and the time from asking for the kernel to the first answer cell starting (kernel start and imports)."""
    overhead = [o.overhead_seconds for o in run.outcomes if o.status != "failed"]
    first = [o.kernel_start_seconds for o in run.outcomes if o.kernel_start_seconds]
    execution = [o.execution_seconds for o in run.outcomes if o.status != "failed"]
    statuses = {status: sum(o.status == status for o in run.outcomes) for status in ("graded", "flagged", "failed")}
    with_or_without = "without" if arguments.no_feedback else "with"
    print(f"\ncml-course grade, {label} ({run.workers} workers, {with_or_without} feedback): {run.seconds:.1f} s, "
          f"{run.submissions_per_minute():.2f} submissions per minute; {statuses}")
    print(f"  per submission in its worker beyond running cells: {statistics.fmean(overhead):.2f} s "
          f"(median {statistics.median(overhead):.2f} s); running cells: {statistics.fmean(execution):.2f} s")
    if first:
        print(f"  kernel start to first answer: {statistics.fmean(first):.2f} s (median {statistics.median(first):.2f} s)")
    phases = {}
    for outcome in run.outcomes:
        for name, seconds in outcome.phases.items():
            phases.setdefault(name, []).append(seconds)
    print("  phases (mean s): " + ", ".join(f"{name} {statistics.fmean(values):.2f}" for name, values in phases.items()))
    print(f"  report: {run.csv_report}")


def verdicts_overhead(course: Course, class_folder: Path, root: Path, assignments: list[str],
                      kinds: dict[tuple[str, str], str], limits: Limits, arguments: argparse.Namespace) -> int:
    """Grade the class without, then with, the out-of-kernel verdicts; print both times and what the verdicts
    changed (nothing may change on a submission that does not tamper with the tests: none here does)."""
    runs = {}
    for verdicts in (False, True):
        runs[verdicts] = grade_class(course, class_folder, root / f"verdicts-{verdicts}", assignments,
                                     workers=arguments.workers, limits=limits, feedback=not arguments.no_feedback,
                                     progress=sys.stderr.isatty(), verdicts=verdicts)
        _kill_leftovers()
    without, with_ = runs[False], runs[True]
    print(f"\nwithout verdicts: {without.seconds:.1f} s ({without.submissions_per_minute():.2f} submissions per minute)")
    print(f"with verdicts:    {with_.seconds:.1f} s ({with_.submissions_per_minute():.2f} submissions per minute); "
          f"grading seed {with_.grading_seed}")
    print(f"the verdicts add {100 * (with_.seconds / without.seconds - 1):.1f}% to the class's grading time")
    for note in with_.reference_problems:
        print(f"  reference: {note}")
    before = {(o.student, o.assignment): o.code_total() for o in without.outcomes}
    after = {(o.student, o.assignment): o.code_total() for o in with_.outcomes}
    differ = [key for key in sorted(kinds) if before.get(key) != after.get(key) and kinds[key] != "hostile"]
    print(f"scores: {len(kinds) - len(differ)}/{len(kinds)} identical with and without; "
          f"{len(differ)} differences on non-hostile submissions")
    for key in differ:
        print(f"  {key[0]}/{key[1]} ({kinds[key]}): without {before.get(key)}, with {after.get(key)}")
    return 1 if differ or with_.reference_problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--assignments", nargs="*", help="default: all")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--cell-timeout", type=int, default=30, help="seconds per cell, for both graders")
    parser.add_argument("--reuse-plain", action="store_true",
                        help="take plain nbgrader's results from an earlier run with the same --out and class")
    parser.add_argument("--no-feedback", action="store_true",
                        help="the new command without feedback (compared with plain autograde without it)")
    parser.add_argument("--out", type=Path, help="keep the class and both course folders here")
    parser.add_argument("--compare-kernels", action=argparse.BooleanOptionalAction, default=True,
                        help="also grade with fresh kernels (the engine before forked kernels), for comparison")
    parser.add_argument("--verdicts-overhead", action="store_true",
                        help="instead: grade the class with and without out-of-kernel verdicts and compare the times")
    arguments = parser.parse_args(argv)
    course = Course(REPO)
    assignments = arguments.assignments or course.assignments()
    root = arguments.out or Path(tempfile.mkdtemp(prefix="cml-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    class_folder = root / "class"
    if class_folder.exists():
        shutil.rmtree(class_folder)
    kinds = build_class(course, assignments, arguments.students, class_folder)
    count = len(kinds)
    print(f"synthetic class: {arguments.students} students x {len(assignments)} assignments = {count} submissions "
          f"({', '.join(f'{k}: {list(kinds.values()).count(k)}' for k in dict.fromkeys(KINDS))}); "
          f"{os.cpu_count()} cores; cell timeout {arguments.cell_timeout} s")

    limits = Limits(cell_timeout=arguments.cell_timeout, time_limit=max(600, 10 * arguments.cell_timeout),
                    memory_mb=2048)
    if arguments.verdicts_overhead:
        return verdicts_overhead(course, class_folder, root, assignments, kinds, limits, arguments)

    saved = root / "plain" / "benchmark-times.json"
    if arguments.reuse_plain:
        plain, left = json.loads(saved.read_text()), "(earlier run)"
    else:
        plain = run_plain_nbgrader(course, class_folder, root / "plain", assignments, arguments.cell_timeout)
        left = _kill_leftovers()
        saved.write_text(json.dumps(plain))
    plain_scores = {(row.student, row.assignment): row.code_score for row in read_grades(
        f"sqlite:///{root / 'plain' / 'gradebook.db'}", assignments)}
    plain_exec = _execution_seconds(root / "plain")
    autograde_rate = 60 * count / (plain["generate_assignment"] + plain["autograde"])
    overhead = plain["autograde"] / count - statistics.fmean(plain_exec.values())
    print(f"\nplain nbgrader: generate_assignment {plain['generate_assignment']:.1f} s, autograde "
          f"{plain['autograde']:.1f} s, generate_feedback {plain['generate_feedback']:.1f} s; "
          f"{len(plain_scores)}/{count} submissions got a grade; {left} background processes were still running")
    print(f"  {autograde_rate:.2f} submissions per minute (generate_assignment + autograde), "
          f"{60 * count / sum(plain.values()):.2f} with feedback")
    print(f"  per-notebook overhead beyond execution: {overhead:.2f} s "
          f"(autograde time per notebook {plain['autograde'] / count:.2f} s, "
          f"own execution {statistics.fmean(plain_exec.values()):.2f} s)")

    runs = {}
    for fork in ((False, True) if arguments.compare_kernels else (True,)):
        label = "forked kernels" if fork else "fresh kernels (the engine before kernels were forked)"
        runs[fork] = run = grade_class(course, class_folder, root / f"parallel-{'forked' if fork else 'fresh'}",
                                       assignments, workers=arguments.workers, limits=limits,
                                       feedback=not arguments.no_feedback, progress=sys.stderr.isatty(),
                                       fork_kernels=fork)
        _kill_leftovers()
        report_engine(label, run, arguments)
    run = runs[True]
    if False in runs:
        fresh = {(o.student, o.assignment): o.code_total() for o in runs[False].outcomes}
        same = sum(fresh[key] == o.code_total() for o in run.outcomes if (key := (o.student, o.assignment)) in fresh)
        print(f"\nforked vs fresh kernels: {run.submissions_per_minute() / runs[False].submissions_per_minute():.2f}x "
              f"the rate; {same}/{len(run.outcomes)} scores identical")

    if arguments.no_feedback:
        ratio = run.submissions_per_minute() / autograde_rate
        print(f"\nspeed-up, both without feedback: {ratio:.2f}x over plain generate_assignment + autograde")
    else:
        ratio = run.submissions_per_minute() / autograde_rate
        with_feedback = run.submissions_per_minute() / (60 * count / sum(plain.values()))
        print(f"\nspeed-up, both with feedback: {with_feedback:.2f}x over plain generate_assignment + autograde "
              f"+ generate_feedback ({ratio:.2f}x over plain nbgrader without its feedback step)")
    ours = {(o.student, o.assignment): o.code_total() for o in run.outcomes}
    differ = [(key, plain_scores.get(key), ours[key], kinds[key]) for key in sorted(kinds)
              if plain_scores.get(key) != ours.get(key)]
    benign = [d for d in differ if d[3] != "hostile"]
    print(f"scores: {count - len(differ)}/{count} identical; "
          f"{len(benign)} differences on non-hostile submissions")
    for key, before, after, kind in differ:
        print(f"  {key[0]}/{key[1]} ({kind}): plain nbgrader {before}, cml-course grade {after}")
    return 1 if benign else 0


if __name__ == "__main__":
    sys.exit(main())
