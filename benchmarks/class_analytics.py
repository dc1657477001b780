"""Benchmark: ``cml-course report`` and ``cml-course similarity`` on a synthetic class, in one run.

    python benchmarks/class_analytics.py [--students 1000] [--assignments all] [--workdir DIR] [--seed 0]
                                         [--copied-pairs 5] [--baseline-students 300] [--threshold 0.5]
                                         [--target 60]

The class is written by :mod:`synthetic_class` (submitted notebooks, the release, a run's ``report.json`` with
check records; nothing is graded): by default 1,000 students x the six assignments, with a handful of planted
copied pairs. Timed, and printed side by side:

* generating the class (not counted);
* ``cml-course report WORKDIR --no-cases`` (item analysis, clusters, HTML and CSVs);
* ``cml-course similarity WORKDIR`` (the inverted index of rare fingerprints; reads every submitted notebook);
* the baseline, on ``--baseline-students`` students only (the planted pairs and the first others): ``find_similar_pairs(..., brute_force=True)``,
  which scores all pairs, beside the index on the same students (the same code, read from memory, so only the
  algorithm differs), and an extrapolation of the brute force to the full class, stated as such.

Also printed: the sizes of report.html, the CSVs and similarity.html, the pairs above the threshold, and where
the planted copied pairs ranked. The target (report + similarity under ``--target`` seconds) is information:
PASS or OVER is printed, nothing fails.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_class import SyntheticClass, generate_class  # noqa: E402

__all__ = ["main"]

REPORT_MODULE = "cml.instructor.analytics.report"
SIMILARITY_MODULE = "cml.instructor.analytics.similarity"
PAIR_FINDER_MODULES = ("cml.instructor.analytics.similarity", "cml.instructor.analytics.copy_detection")


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _timed(action: Callable[[], Any]) -> tuple[Any, float, float]:
    """(what ``action`` returns, wall seconds, CPU seconds of this process): on a shared machine the CPU time is
    what the step would take alone, as long as it runs on one core."""
    started, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - started, time.process_time() - cpu


def _run_command(module: Any, argv: list[str], root: Path) -> tuple[int, str, float, float]:
    """Run a sub-command's ``add_arguments``/``run`` pair as ``cml-course`` would; (status, its output, wall
    seconds, CPU seconds)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    arguments = parser.parse_args(argv)
    arguments.root = root
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status, seconds, cpu = _timed(lambda: module.run(arguments))
    return int(status or 0), output.getvalue(), seconds, cpu


def _bytes(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths if path.is_file())


def _wrong_values(run_dir: Path, students: set[str]) -> dict[str, dict[str, list]]:
    """assignment -> student -> the WrongValue records of the checks they failed with a value (for the baseline)."""
    from cml.instructor.analytics.copy_detection import WrongValue

    report = json.loads((run_dir / "report.json").read_text())
    values: dict[str, dict[str, list]] = {}
    for submission in report["submissions"]:
        if submission["student"] not in students:
            continue
        values.setdefault(submission["assignment"], {})[submission["student"]] = [
            WrongValue(check["id"], check["digest"], bool(check["hidden"]), check["value"])
            for check in submission.get("checks", []) if check["status"] == "failed" and check["digest"]]
    return values


def _column(row: dict[str, str], word: str) -> str:
    """The value of the first column of a similarity.csv row whose name holds ``word``."""
    return next((value for key, value in row.items() if key and word in key.lower()), "")


def _number(row: dict[str, str], word: str) -> float:
    try:
        return float(_column(row, word) or 0)
    except ValueError:
        return 0.0


def _planted_ranks(rows: list[dict[str, str]], planted: list[tuple[str, str]], assignments: list[str]
                   ) -> dict[str, list[int | None]]:
    """Per assignment, the rank (1 = top) of each planted pair among the rows of similarity.csv (None: absent)."""
    ranks: dict[str, list[int | None]] = {}
    for assignment in assignments:
        ordered = sorted((row for row in rows if _column(row, "assignment") == assignment),
                         key=lambda row: -_number(row, "combined"))
        positions = {frozenset((_column(row, "student_a"), _column(row, "student_b"))): rank
                     for rank, row in enumerate(ordered, start=1)}
        ranks[assignment] = [positions.get(frozenset(pair)) for pair in planted]
    return ranks


def _ranks_line(ranks: dict[str, list[int | None]], planted: int) -> str:
    on_top = sum(all(rank is not None and rank <= planted for rank in values) for values in ranks.values())
    worst = [rank for values in ranks.values() for rank in values]
    detail = "" if on_top == len(ranks) else "; ranks per assignment: " + ", ".join(
        f"{assignment} {values}" for assignment, values in ranks.items())
    found = sum(rank is not None for rank in worst)
    return (f"planted copied pairs: all {planted} in the top {planted} in {on_top} of {len(ranks)} assignments "
            f"({found} of {len(worst)} pair-assignments listed){detail}")


def _table(rows: list[tuple[str, str, str]]) -> str:
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"  {name:<{width}}  {seconds:>9}  {remark}" for name, seconds, remark in rows)


def _baseline(made: SyntheticClass, count: int, threshold: float, finder: Callable[..., list]
              ) -> tuple[float, float, int, int, int]:
    """(brute-force seconds, index seconds, pairs above threshold by each, of the index's those whose code score
    alone reaches the threshold) on ``count`` students: the planted copied pairs and the first others."""
    planted = sorted({student for pair in made.copied_pairs for student in pair})[:count]
    students = planted + [student for student in sorted(made.students) if student not in planted][:count - len(planted)]
    values = _wrong_values(made.run_dir, set(students))
    brute_seconds = index_seconds = 0.0
    brute_pairs = index_pairs = by_code = 0
    for assignment in made.assignments:
        submissions = {student: made.answers[assignment][student] for student in students}
        wrong = values.get(assignment, {})
        for brute in (True, False):
            pairs, seconds, _ = _timed(lambda: finder(submissions, made.base[assignment], wrong_values=wrong,
                                                   assignment=assignment, brute_force=brute))
            above = sum(pair.combined_score >= threshold for pair in pairs)
            if brute:
                brute_seconds, brute_pairs = brute_seconds + seconds, brute_pairs + above
            else:
                index_seconds, index_pairs = index_seconds + seconds, index_pairs + above
                by_code += sum(pair.code_score >= threshold for pair in pairs)
    return brute_seconds, index_seconds, brute_pairs, index_pairs, by_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--assignments", nargs="+", default=["all"], help="assignment ids, or all (default)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the class (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copied-pairs", type=int, default=5)
    parser.add_argument("--baseline-students", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.5, help="similarity threshold (its default: 0.5)")
    parser.add_argument("--target", type=float, default=60.0, help="seconds for report + similarity (information)")
    arguments = parser.parse_args(argv)

    if arguments.workdir is not None and arguments.workdir.exists() and any(arguments.workdir.iterdir()):
        print(f"--workdir {arguments.workdir} is not empty: give an empty or new folder (a class left there would "
              "mix with the new one)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        workdir = arguments.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cml-analytics-")))
        return _benchmark(arguments, workdir)


def _benchmark(arguments: argparse.Namespace, workdir: Path) -> int:
    chosen = None if arguments.assignments == ["all"] else arguments.assignments
    made, generate_seconds, _ = _timed(lambda: generate_class(
        workdir, students=arguments.students, assignments=chosen, seed=arguments.seed,
        copied_pairs=arguments.copied_pairs))
    report_json = made.run_dir / "report.json"
    print(f"synthetic class: {len(made.students)} students x {len(made.assignments)} assignments "
          f"({len(made.students) * len(made.assignments)} notebooks, {made.notebook_bytes / 1e6:.0f} MB; "
          f"report.json {report_json.stat().st_size / 1e6:.1f} MB), {len(made.copied_pairs)} planted copied pairs, "
          f"in {workdir}")
    rows: list[tuple[str, str, str]] = [("generating the class", f"{generate_seconds:.1f} s", "not counted")]
    lines: list[str] = []
    counted = counted_cpu = 0.0
    missing: list[str] = []
    out = workdir / "benchmark-output"

    report = _module(REPORT_MODULE)
    if report is None:
        missing.append(f"report: {REPORT_MODULE} is not there yet, so it was not timed")
    else:
        status, output, seconds, cpu = _run_command(report, [str(workdir), "--no-cases", "--out", str(out / "report")], REPO)
        counted, counted_cpu = counted + seconds, counted_cpu + cpu
        rows.append(("report --no-cases", f"{seconds:.1f} s",
                     f"counted; CPU {cpu:.1f} s" + ("" if status == 0 else f"; exit {status}")))
        csvs = sorted((out / "report").glob("*.csv"))
        lines.append(f"report.html {_bytes([out / 'report' / 'report.html']):,} bytes; {len(csvs)} CSVs "
                     f"{_bytes(csvs):,} bytes; PNGs beside: {len(list((out / 'report').glob('*.png')))}")
        if status != 0:
            lines.append("report said: " + output.strip()[-500:])

    similarity = _module(SIMILARITY_MODULE)
    if similarity is None:
        missing.append(f"similarity: {SIMILARITY_MODULE} is not there yet, so the command was not timed")
    else:
        status, output, seconds, cpu = _run_command(
            similarity, [str(workdir), "--out", str(out / "similarity"), "--threshold", str(arguments.threshold)], REPO)
        counted, counted_cpu = counted + seconds, counted_cpu + cpu
        rows.append(("similarity (index)", f"{seconds:.1f} s",
                     f"counted; CPU {cpu:.1f} s" + ("" if status == 0 else f"; exit {status}")))
        table = out / "similarity" / "similarity.csv"
        pairs = list(csv.DictReader(table.open(encoding="utf-8"))) if table.is_file() else []
        above = [row for row in pairs if _number(row, "combined") >= arguments.threshold]
        by_code = sum(_number(row, "code") >= arguments.threshold for row in above)
        lines.append(f"similarity.html {_bytes([out / 'similarity' / 'similarity.html']):,} bytes; "
                     f"similarity.csv {_bytes([table]):,} bytes, {len(pairs)} rows; "
                     f"{len(above)} pairs at or above the threshold {arguments.threshold:g} ({by_code} by code alone, "
                     f"{len(above) - by_code} raised there by shared rare wrong values)")
        if made.copied_pairs:
            lines.append(_ranks_line(_planted_ranks(pairs, made.copied_pairs, made.assignments), len(made.copied_pairs)))
        if status != 0:
            lines.append("similarity said: " + output.strip()[-500:])

    verdict = "PASS" if counted < arguments.target else "OVER"
    if report is not None or similarity is not None:
        rows.append(("total (report + similarity)", f"{counted:.1f} s",
                     f"target < {arguments.target:g} s: {verdict}" + (" (incomplete)" if missing else "")
                     + f"; CPU {counted_cpu:.1f} s"))

    finder = next((getattr(module, "find_similar_pairs") for module in map(_module, PAIR_FINDER_MODULES)
                   if module is not None and hasattr(module, "find_similar_pairs")), None)
    if finder is None:
        missing.append("baseline: no find_similar_pairs(..., brute_force=True) yet, so the row is skipped")
    else:
        count = min(arguments.baseline_students, len(made.students))
        brute, index, brute_pairs, index_pairs, by_code = _baseline(made, count, arguments.threshold, finder)
        rows.append((f"baseline: brute force, all pairs, {count} students", f"{brute:.1f} s",
                     f"from memory, {count * (count - 1) // 2:,} pairs per assignment; {brute_pairs} above threshold"))
        rows.append((f"index on the same {count} students", f"{index:.1f} s",
                     f"from memory; {index_pairs} above threshold"
                     + ("" if index_pairs == brute_pairs else " (DIFFERS from the brute force)")
                     + f", {by_code} of them by code alone, {index_pairs - by_code} raised by shared wrong values"))
        n = len(made.students)
        if count < n and count > 1:
            # fingerprinting grows as n and is what the index run costs; pair scoring, the rest, grows as n^2
            estimate = index * n / count + max(0.0, brute - index) * (n * (n - 1)) / (count * (count - 1))
            rows.append((f"brute force at {n} students (extrapolated)", f"~{estimate:.0f} s",
                         f"an estimate, not measured: index time x {n / count:.2f} (fingerprints) + "
                         f"(brute - index) x {n * (n - 1) / (count * (count - 1)):.1f} (pairs)"))

    print(_table(rows))
    for line in lines:
        print(line)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"peak memory of this process: {peak:.0f} MB; {os.cpu_count()} CPUs, load average now {load} "
          "(other work on the machine slows every figure)")
    for line in missing:
        print(f"SKIPPED {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
