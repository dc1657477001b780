"""Requirement maps: what each graded exercise's text asks of a correct answer, and what holds an answer to it.

Each assignment keeps one next to its source, ``source/<assignment>/requirements.toml`` (kept out of the
release by ``CourseDirectory.ignore``), with a table per graded test cell::

    [test_sigmoid]
    answer = "sigmoid"                      # the answer cell the text describes

    [[test_sigmoid.requirement]]
    says = "sigmoid(x) = 1 / (1 + exp(-x)), element-wise, for a float and for an array of any shape"
    checks = ["sigmoid.values", "sigmoid.matrix_*"]   # check ids in that test cell (``*`` matches anything)
    wrong = ["sigmoid_wrong_sign"]                     # described wrong answers (tests/submissions/<assignment>/)

A requirement is one sentence of the exercise text that a correct answer must honour: a value, a shape, a dtype,
a device, what is left unchanged, a side effect, an edge case. :func:`map_problems` lists what does not hold:
a graded test cell with no entry, a requirement without a check or without a wrong answer, a check id that no
check of that cell writes, a wrong answer that is not a described case of the assignment's suite folder or does
not name the cell among those it must lose. The suite grades every one of those cases, so each requirement is
shown, on every run, to tell the wrong answer from the solution.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from cml.instructor.cells import cell_kind, grade_id, nbgrader_metadata, strip_markers, HIDDEN_MARKERS
from cml.instructor.testing.submissions import Case

__all__ = ["REQUIREMENTS_FILE", "Requirement", "ExerciseMap", "load_map", "check_ids", "map_problems"]

REQUIREMENTS_FILE = "requirements.toml"
_CHECK_ID = re.compile(r"^[A-Za-z_][\w*]*(\.[\w*]+)+$")


@dataclass(frozen=True)
class Requirement:
    """One thing the exercise text says a correct answer does, and the checks and wrong answers that hold it."""

    says: str
    checks: tuple[str, ...]
    wrong: tuple[str, ...]


@dataclass(frozen=True)
class ExerciseMap:
    """The requirements of one graded test cell (``test``), which checks the answer cell ``answer``."""

    test: str
    answer: str
    requirements: tuple[Requirement, ...]


def load_map(path: Path) -> dict[str, ExerciseMap]:
    """Read one assignment's requirement map; raises ValueError on keys or values it does not know."""
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    exercises = {}
    for test, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"{path}: {test!r} should be a table of a graded test cell")
        unknown = set(table) - {"answer", "requirement"}
        if unknown:
            raise ValueError(f"{path}: [{test}] has unknown keys {sorted(unknown)}")
        requirements = []
        for index, entry in enumerate(table.get("requirement", [])):
            unknown = set(entry) - {"says", "checks", "wrong"}
            if unknown:
                raise ValueError(f"{path}: [{test}] requirement {index + 1} has unknown keys {sorted(unknown)}")
            requirements.append(Requirement(str(entry.get("says", "")).strip(), tuple(entry.get("checks", ())),
                                            tuple(entry.get("wrong", ()))))
        exercises[test] = ExerciseMap(test, str(table.get("answer", "")), tuple(requirements))
    return exercises


def check_ids(test_source: str) -> list[str]:
    """The check ids a test cell's checks write, as glob patterns (an f-string's ``{...}`` becomes ``*``).

    A check id is the first argument of a call, a string with at least one dot (``"sigmoid.values"``).
    """
    tree = ast.parse(strip_markers(test_source, HIDDEN_MARKERS, strict=False))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            pattern = first.value
        elif isinstance(first, ast.JoinedStr):
            pattern = "".join(part.value if isinstance(part, ast.Constant) else "*" for part in first.values)
        else:
            continue
        if _CHECK_ID.match(pattern):
            found.append(pattern)
    return found


def _matches(mapped: str, written: list[str]) -> bool:
    """Whether the map's check id (a name or a glob) names a check the cell writes (a name or a glob)."""
    return any(fnmatch.fnmatchcase(mapped, pattern) or fnmatch.fnmatchcase(pattern, mapped) for pattern in written)


def map_problems(exercises: dict[str, ExerciseMap], notebooks: list[NotebookNode], cases: list[Case]) -> list[str]:
    """What is wrong with an assignment's requirement map, against its source notebooks and described cases."""
    problems = []
    tests = {grade_id(cell): cell for notebook in notebooks for cell in notebook.cells
             if cell_kind(cell) == "tests" and float(nbgrader_metadata(cell).get("points") or 0) > 0}
    answers = {grade_id(cell) for notebook in notebooks for cell in notebook.cells if cell_kind(cell) == "solution"}
    by_name = {case.name: case for case in cases}
    for test in sorted(set(tests) - set(exercises)):
        problems.append(f"graded test cell {test!r} has no entry in the requirement map")
    for test, exercise in exercises.items():
        if test not in tests:
            problems.append(f"[{test}] is not a graded test cell of the notebooks")
            continue
        if exercise.answer not in answers:
            problems.append(f"[{test}] answer = {exercise.answer!r} is not an answer cell of the notebooks")
        if not exercise.requirements:
            problems.append(f"[{test}] lists no requirement")
        written = check_ids(tests[test].source)
        for requirement in exercise.requirements:
            label = f"[{test}] {requirement.says[:70]!r}"
            if not requirement.says:
                problems.append(f"[{test}] a requirement does not say what the text asks")
            if not requirement.checks:
                problems.append(f"{label}: no check enforces it")
            for check in requirement.checks:
                if not _matches(check, written):
                    problems.append(f"{label}: check {check!r} is not written by any check of {test}")
            if not requirement.wrong:
                problems.append(f"{label}: no described wrong answer breaks it")
            for name in requirement.wrong:
                case = by_name.get(name)
                if case is None:
                    problems.append(f"{label}: wrong answer {name!r} is not a described case of the suite")
                elif not case.lose or test not in case.lose:
                    problems.append(f"{label}: wrong answer {name!r} does not say it loses {test}")
    return problems
