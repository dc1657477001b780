"""Name a common wrong answer by the described submission that produces it.

The instructor's described wrong answers (``tests/submissions/<assignment>/*.toml`` and their ``more/`` folder)
each say in a sentence what a student got wrong. When many students of a class gave the same wrong value at a check,
this grades the described cases that lose that check's cell, with the very seed the class was graded with (the hidden
tests draw their inputs from it), by the one grading engine, and compares the cases' values with the class's: a
case producing the same digest names the mistake. Grading is the costly part, so only the cases that can matter
are graded, and their values are kept beside the run (``case-values.json``) for the next report of the same run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cml.instructor.grading.run import default_workers
from cml.instructor.testing.cases import MORE_CASES, run_cases
from cml.instructor.testing.submissions import Case, load_cases

__all__ = ["CACHE_FILE", "candidate_cases", "name_wrong_values"]

CACHE_FILE = "case-values.json"
"""Beside ``report.json``: ``{"seed": ..., "cases": {name: {"assignment": ..., "values": [[check_id, digest], ...]}}}``."""

WrongValue = tuple[str, str, str]
"""``(assignment, check_id, digest)``."""


def candidate_cases(course_root: Path, assignment: str, cells: Iterable[str]) -> list[Case]:
    """The described wrong answers of ``assignment`` that must lose at least one of ``cells``."""
    folder = course_root / "tests" / "submissions" / assignment
    cases = load_cases(folder) if folder.is_dir() else []
    if (folder / MORE_CASES).is_dir():
        cases += load_cases(folder / MORE_CASES, assignment)
    wanted = set(cells)
    return [case for case in cases if case.lose and wanted & set(case.lose)]


def _read_cache(path: Path, seed: int) -> dict[str, dict]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache.get("cases", {}) if isinstance(cache, dict) and cache.get("seed") == seed else {}


def name_wrong_values(course_root: Path, run_dir: Path, wanted: set[WrongValue], *, jobs: int | None = None
                      ) -> dict[WrongValue, tuple[str, str]]:
    """``(case_name, case_description)`` for each wanted wrong value that a described case produces.

    ``run_dir`` holds the run's ``report.json`` (its grading seed, and the cell of each check). Values of a run
    graded without a seed (no out-of-kernel verdicts) cannot be compared: nothing is named then.
    """
    report = json.loads((run_dir / "report.json").read_text())
    seed = report.get("grading_seed")
    if not wanted or not isinstance(seed, int):
        return {}
    cell_of = {(submission.get("assignment"), record.get("id")): record.get("cell")
               for submission in report.get("submissions", []) for record in submission.get("checks", [])}
    cache_path = run_dir / CACHE_FILE
    cache = _read_cache(cache_path, seed)
    to_grade: list[Case] = []
    for assignment in sorted({assignment for assignment, _, _ in wanted}):
        cells = {cell_of.get((assignment, check_id)) for a, check_id, _ in wanted if a == assignment} - {None}
        to_grade += [case for case in candidate_cases(course_root, assignment, cells) if case.name not in cache]
    if to_grade:
        results = run_cases(to_grade, course_root, jobs or default_workers(), seed=seed)
        for result in results:
            checks = result.outcome.checks if result.outcome else []
            cache[result.case.name] = {"assignment": result.case.assignment, "description": result.case.description,
                                       "values": [[record["id"], record["digest"]] for record in checks
                                                  if record.get("digest")]}
        cache_path.write_text(json.dumps({"seed": seed, "cases": cache}, indent=1))
    names: dict[WrongValue, tuple[str, str]] = {}
    for name, entry in sorted(cache.items()):
        for check_id, digest in entry.get("values", []):
            key = (entry.get("assignment", ""), check_id, digest)
            if key in wanted and key not in names:
                names[key] = (name, entry.get("description", ""))
    return names
