"""A synthetic class for the analytics benchmark: a grading workdir with submissions and a run report, no grading.

    python benchmarks/synthetic_class.py WORKDIR [--students 1000] [--assignments all] [--seed 0] [--copied-pairs 5]

:func:`generate_class` writes, for the real assignments of this repository:

* ``release/<a>/<a>.ipynb``: the real starter notebooks, copied;
* ``submitted/<student>/<a>/<a>.ipynb``: the release notebook with every answer cell filled in. Each answer cell
  gets one variant from a pool made of the source's solution (markers stripped): the solution itself, renamed
  (local names changed), reordered (two adjacent independent statements swapped), and plausible wrong versions
  (an operator, a comparison or a constant changed); a few students leave it as released. Most cells also get a
  few statements the student wrote on their own (drawn from a small grammar, different for every student), and
  comments are sprinkled in, so that honest students differ. Written answers get the model answer's sentences
  in another order, or stay blank;
* a handful of **copied pairs**: the copier hands in the original's answers with local names renamed, comments
  added and two statements swapped where they are independent, and gets the original's check outcomes;
* ``reports/<stamp>/report.json`` (and ``grades.csv``) in the format ``cml-course grade`` writes: per submission
  the grade cells of the source with their points, and one check record per check id of each test cell (the ids
  are read from the ``check_*("...")`` calls of the source's test cells). A wrong variant fails the checks of its
  test cell from a fixed check on, with a value digest shared by every student who chose it (so clusters of
  identical wrong values exist); now and then a student fails a check with a value of their own (rare wrong values,
  which a copier shares). Times and memory are drawn around the figures of a real run.

Everything is drawn from one seeded generator: the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import hashlib
import json
import math
import random
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cml.instructor.cells import (  # noqa: E402
    HIDDEN_MARKERS, TEXT_STUB, Role, cell_kind, grade_id, marked_lines, nbgrader_metadata, strip_solution_markers,
)

__all__ = ["SyntheticClass", "generate_class", "main"]

STAMP = "20261201-090000"
BLANK_SHARE = 0.04
"""Share of answer cells left as released (before ability is taken into account)."""
OWN_CODE_SHARE = 0.8
"""Share of answer cells to which a student adds statements of their own."""
RARE_FAILURE_SHARE = 0.015
"""Chance that a check which would pass fails instead with a value nobody else has."""
FLAGGED_SHARE, FAILED_SHARE = 0.02, 0.005
ABILITY_WEIGHT = 2.0
"""Log-odds of a right answer per standard deviation of a student's ability (item-total correlations 0.2 to 0.5)."""
HOSTILE_SHARE = 0.05
"""Share of the students' own wrong values whose preview is hostile text (markup, an RTL override)."""

NUMPY_FUNCTIONS = ("mean", "sum", "max", "min", "abs", "sqrt", "exp", "log1p", "tanh", "cumsum", "sort", "median",
                   "std", "var", "square", "ptp", "argmax", "argmin", "cos", "sin", "prod", "clip", "round", "diff")
OPERATORS = ("+", "-", "*", "/", "//", "%", "**")
WORDS = ("alpha", "beta", "gamma", "delta", "loss", "grad", "step", "scale", "shift", "total", "count", "norm",
         "batch", "epoch", "rate", "width", "depth", "mask", "weight", "bias", "score", "limit", "ratio", "offset",
         "cache", "trace", "probe", "guess", "check", "buffer", "window", "margin", "target", "signal", "noise")
COMMENTS = ("# compute the result", "# vectorised, no loop", "# see the lecture notes", "# shape (n,)",
            "# TODO: tidy up", "# I think this is right", "# broadcasting here", "# from the formula in Part 2",
            "# keep it numerically stable", "# as in the example above", "# debug", "# works on the small example")
MESSAGES = ("{what} differs from the expected value: largest absolute error {error:.3g}",
            "{what} has the wrong sign in {count} entries", "{what} is off by a factor of {factor:.3g}",
            "{what}: expected shape (17,), got (17, 1)")
HOSTILE_PREVIEW = "<script>alert('synthetic student value')</script> 1e309 \u202e"


@dataclass
class CheckSpec:
    """One check of a test cell as the generator sees it."""

    id: str
    hidden: bool
    valued: bool
    """The check compares a value (``check_equal``, ``check_close``...): its records carry a digest."""


@dataclass
class TestCell:
    grade_id: str
    points: float
    checks: list[CheckSpec]
    answers: list[str]
    """The answer cells whose code this test cell runs (those between the previous test cell and this one)."""


@dataclass
class AssignmentPlan:
    """What the generator needs to know of one assignment."""

    name: str
    release: dict
    answer_cells: dict[str, str]
    """Grade id of each code answer cell -> the solution, markers stripped."""
    written_cells: dict[str, str]
    """Grade id of each written (markdown) answer -> the model answer."""
    grade_cells: list[tuple[str, float, str, bool]]
    """Every grade cell in order: (grade id, points, cell type, manually graded)."""
    tests: list[TestCell]
    variants: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)
    """Per answer cell: (variant name, its code, wrong?)."""


@dataclass
class SyntheticClass:
    """What was written, and what a benchmark needs to check the analyses against."""

    workdir: Path
    run_dir: Path
    students: list[str]
    assignments: list[str]
    copied_pairs: list[tuple[str, str]]
    """(original, copier) pairs, the same for every assignment."""
    answers: dict[str, dict[str, dict[str, str]]]
    """assignment -> student -> answer cell grade id -> the code handed in (code cells only)."""
    base: dict[str, dict[str, str]]
    """assignment -> answer cell grade id -> the release's starter code."""
    notebook_bytes: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Reading the course


_CHECK_CALL = re.compile(r"\b(check_\w+)\(\s*(f?)(\"[^\"\n]+\"|'[^'\n]+')")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _check_specs(source: str) -> list[CheckSpec]:
    """The check ids a test cell calls, in order; an f-string id stands for two checks (``{...}`` as 0 and 1)."""
    hidden_lines = {index for index, (_, role) in enumerate(marked_lines(source, HIDDEN_MARKERS, strict=False))
                    if role is not Role.OUTSIDE}
    specs: dict[str, CheckSpec] = {}
    for match in _CHECK_CALL.finditer(source):
        function, is_format, literal = match.groups()
        line = source.count("\n", 0, match.start())
        text = literal[1:-1]
        ids = [_PLACEHOLDER.sub(str(k), text) for k in (0, 1)] if is_format and "{" in text else [text]
        for check_id in ids:
            specs.setdefault(check_id, CheckSpec(check_id, line in hidden_lines, function != "check_true"))
    return list(specs.values())


def _plan(repo: Path, assignment: str) -> AssignmentPlan:
    source = json.loads((repo / "source" / assignment / f"{assignment}.ipynb").read_text())
    release = json.loads((repo / "release" / assignment / f"{assignment}.ipynb").read_text())
    answers: dict[str, str] = {}
    written: dict[str, str] = {}
    grade_cells: list[tuple[str, float, str, bool]] = []
    tests: list[TestCell] = []
    pending: list[str] = []
    for cell in source["cells"]:
        kind, cell_id = cell_kind(cell), grade_id(cell)
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        points = float(nbgrader_metadata(cell).get("points", 0) or 0)
        if kind == "solution" and cell["cell_type"] == "code":
            answers[cell_id] = strip_solution_markers(text)
            pending.append(cell_id)
        elif kind == "manual":
            grade_cells.append((cell_id, points, cell["cell_type"], True))
            if cell["cell_type"] == "markdown":
                written[cell_id] = strip_solution_markers(text)
        elif kind == "tests":
            grade_cells.append((cell_id, points, "code", False))
            checks = _check_specs(text)
            for extra in range(max(0, 3 - len(checks))):  # "several checks per test cell"
                checks.append(CheckSpec(f"{cell_id.removeprefix('test_')}.hidden_case_{extra}", True, True))
            tests.append(TestCell(cell_id, points, checks, pending or (tests[-1].answers if tests else [])))
            pending = []
    return AssignmentPlan(assignment, release, answers, written, grade_cells, tests)


# ---------------------------------------------------------------------------------------------------------------
# Variants of a solution


class _Renamer(ast.NodeTransformer):
    """Renames the names a function assigns (not its parameters, not globals) by ``mapping``."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.mapping:
            node.id = self.mapping[node.id]
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        return node


def _local_names(tree: ast.Module) -> list[str]:
    """Names stored inside function bodies, in order of first appearance (parameters excluded)."""
    names: dict[str, None] = {}
    for function in (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
        parameters = {argument.arg for argument in ast.walk(function.args) if isinstance(argument, ast.arg)}
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in parameters:
                names.setdefault(node.id)
    return list(names)


def _renamed(code: str, rng: random.Random) -> ast.Module:
    """The tree of ``code`` with its local names renamed (``code`` must parse)."""
    tree = ast.parse(code)
    names = _local_names(tree)
    mapping = {name: f"{rng.choice(WORDS)}_{name[:3].strip('_') or 'v'}{rng.randrange(10)}" for name in names}
    return _Renamer(mapping).visit(tree)


def _names_of(statement: ast.stmt) -> set[str]:
    return {node.id for node in ast.walk(statement) if isinstance(node, ast.Name)}


def _swap_independent(tree: ast.Module, rng: random.Random) -> bool:
    """Swap two adjacent simple statements that share no name, somewhere in ``tree``; False where none exist."""
    candidates = []
    for node in ast.walk(tree):
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if not isinstance(body, list):
                continue
            for index in range(len(body) - 1):
                first, second = body[index], body[index + 1]
                simple = (ast.Assign, ast.AnnAssign, ast.AugAssign)
                if isinstance(first, simple) and isinstance(second, simple) and not (_names_of(first) & _names_of(second)):
                    candidates.append((body, index))
    if not candidates:
        return False
    body, index = candidates[rng.randrange(len(candidates))]
    body[index], body[index + 1] = body[index + 1], body[index]
    return True


_FLIPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                            ast.GtE: ast.Gt, ast.Gt: ast.GtE, ast.Lt: ast.LtE, ast.LtE: ast.Lt}


def _wrong(code: str, kind: int, rng: random.Random) -> ast.Module | None:
    """A plausible wrong version: ``kind`` 0 flips an arithmetic operator, 1 a comparison, 2 changes a constant;
    None where the solution has nothing of that kind (inside a function body)."""
    tree = ast.parse(code)
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nodes = [node for function in functions for statement in function.body[1:] for node in ast.walk(statement)]
    if kind == 0:
        targets = [node for node in nodes if isinstance(node, ast.BinOp) and type(node.op) in _FLIPS]
        if targets:
            target = targets[rng.randrange(len(targets))]
            target.op = _FLIPS[type(target.op)]()
            return tree
    elif kind == 1:
        targets = [node for node in nodes if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIPS]
        if targets:
            target = targets[rng.randrange(len(targets))]
            target.ops[0] = _FLIPS[type(target.ops[0])]()
            return tree
    else:
        targets = [node for node in nodes if isinstance(node, ast.Constant) and type(node.value) in (int, float)]
        if targets:
            target = targets[rng.randrange(len(targets))]
            target.value = target.value + 1 if isinstance(target.value, int) else target.value * 2 or 1.0
            return tree
    return None


def _variants(solution: str, rng: random.Random) -> list[tuple[str, str, bool]]:
    """The pool of one answer cell: (name, code, wrong?). An unparsable solution gives only itself."""
    try:
        tree = ast.parse(solution)
    except SyntaxError:
        return [("solution", solution, False)]
    pool = [("solution", solution, False), ("renamed", ast.unparse(_renamed(solution, rng)), False)]
    reordered = ast.parse(solution)
    if _swap_independent(reordered, rng):
        pool.append(("reordered", ast.unparse(reordered), False))
    seen = {ast.dump(tree)}
    for kind in (0, 1, 2, 0):
        wrong = _wrong(solution, kind, rng)
        if wrong is not None and ast.dump(wrong) not in seen:
            seen.add(ast.dump(wrong))
            pool.append((f"wrong_{len(pool)}", ast.unparse(wrong), True))
    return pool


# ---------------------------------------------------------------------------------------------------------------
# A student's own code


def _own_statements(rng: random.Random, count: int) -> list[str]:
    """``count`` statements a student might add (dead helper values), from a small grammar with many choices."""
    def name() -> str:
        return f"{rng.choice(WORDS)}{'_' + rng.choice(WORDS) if rng.random() < 0.5 else ''}"

    def number() -> str:
        return str(rng.randrange(2, 98)) if rng.random() < 0.6 else f"{rng.uniform(0.01, 9.99):.2f}"

    def function() -> str:
        return rng.choice(NUMPY_FUNCTIONS)

    def operator() -> str:
        return rng.choice(OPERATORS[:4])

    templates = (
        lambda: f"{name()} = np.{function()}(np.arange({number()})) {operator()} {number()}",
        lambda: f"{name()} = [{number()} {operator()} index for index in range({number()})]",
        lambda: f"{name()} = 0\nfor position in range({number()}):\n    {name()} = position {operator()} {number()}",
        lambda: f"if {number()} > {number()}:\n    {name()} = np.{function()}(np.ones({number()}))",
        lambda: f"{name()} = {{'{rng.choice(WORDS)}': {number()}, '{rng.choice(WORDS)}': {number()}}}",
        lambda: f"{name()} = np.{function()}(np.array([{number()}, {number()}, {number()}]))",
        lambda: f"{name()} = '{rng.choice(WORDS)}-{number()}'",
        lambda: f"{name()} = ({number()} {operator()} {number()}) {operator()} np.{function()}(np.full(3, {number()}))",
        lambda: f"while {number()} < {number()}:\n    break",
        lambda: f"{name()} = tuple(np.linspace({number()}, {number()}, {rng.randrange(3, 9)}).round({rng.randrange(1, 4)}))",
    )
    return [templates[rng.randrange(len(templates))]() for _ in range(count)]


def _with_own_code(code: str, statements: list[str]) -> str:
    """``code`` with ``statements`` put at the start of its first function's body, after the docstring (at the top
    where there is no function). Text is spliced, not unparsed: the student's layout and comments stay."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    function = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    lines = code.split("\n")
    if function is None or not function.body:
        return "\n".join(statements + lines)
    first = function.body[0]
    has_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    after = first.end_lineno if has_docstring else first.lineno - 1
    indent = " " * first.col_offset
    added = [indent + line for statement in statements for line in statement.split("\n")]
    return "\n".join(lines[:after] + added + lines[after:])


def _with_comments(code: str, rng: random.Random, share: float) -> str:
    lines = code.split("\n")
    out: list[str] = []
    for line in lines:
        if line.strip() and rng.random() < share:
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{rng.choice(COMMENTS)}")
        out.append(line)
    return "\n".join(out)


def _disguised(code: str, rng: random.Random) -> str:
    """What a copier makes of someone else's cell: names renamed, statements swapped where independent, comments."""
    try:
        tree = _renamed(code, rng)
    except SyntaxError:
        return _with_comments(code, rng, 0.3)
    _swap_independent(tree, rng)
    return _with_comments(ast.unparse(tree), rng, 0.2)


# ---------------------------------------------------------------------------------------------------------------
# Check outcomes and the run report


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def _failure_message(check: CheckSpec, rng: random.Random) -> str:
    template = rng.choice(MESSAGES)
    return f"[{check.id}] " + template.format(what="the result", error=rng.uniform(0.01, 5), count=rng.randrange(1, 9),
                                              factor=rng.choice([0.5, 2.0, -1.0]))


def _wrong_outcome(assignment: str, test: TestCell, variant: str, answer: str) -> tuple[int, str, str, str]:
    """How a wrong variant fails a test cell, the same for every student who chose it: (index of the first failing
    check, digest, preview, message)."""
    rng = random.Random(_digest(assignment, test.grade_id, answer, variant))
    valued = [index for index, check in enumerate(test.checks) if check.valued] or [0]
    first = rng.choice(valued)
    check = test.checks[first]
    digest = _digest("wrong", assignment, check.id, answer, variant) if check.valued else None
    preview = (HOSTILE_PREVIEW if check.id.endswith("zero_weights") else
               f"float64 array of shape (17,): {[round(rng.gauss(0, 1), 4) for _ in range(4)]}") if check.valued else None
    return first, digest, preview, _failure_message(check, rng)


def _check_records(assignment: str, test: TestCell, choice: dict[str, str], plan: AssignmentPlan,
                   rng: random.Random, student: str) -> list[dict]:
    """The check records of one test cell for a student whose answer cells hold ``choice`` (cell -> variant)."""
    records = [{"notebook": assignment, "cell": test.grade_id, "id": check.id, "hidden": check.hidden,
                "status": "passed", "digest": _digest("right", assignment, check.id) if check.valued else None,
                "value": "float64 array of shape (17,): [0.1 0.5 0.9 ...]" if check.valued else None, "message": ""}
               for check in test.checks]
    failing: tuple[int, str | None, str | None, str] | None = None
    if any(choice.get(answer) == "blank" for answer in test.answers):
        failing = (0, None, None, "NotImplementedError: ")
    else:
        wrong = [(answer, choice[answer]) for answer in test.answers if choice.get(answer, "").startswith("wrong")]
        if wrong:
            failing = _wrong_outcome(assignment, test, wrong[0][1], wrong[0][0])
        else:
            for index, check in enumerate(test.checks):
                if check.valued and rng.random() < RARE_FAILURE_SHARE:
                    preview = HOSTILE_PREVIEW if rng.random() < HOSTILE_SHARE else f"{rng.gauss(0, 1):.6f}"
                    failing = (index, _digest("own", student, check.id), preview,
                               _failure_message(check, rng))
                    break
    if failing is not None:
        first, digest, preview, message = failing
        records[first].update(status="failed", digest=digest, value=preview, message=message)
        for record in records[first + 1:]:
            record.update(status="not_run", digest=None, value=None)
    return records


def _submission(plan: AssignmentPlan, student: str, choice: dict[str, str], rng: random.Random,
                worker: int) -> dict:
    """One submission's record in ``report.json``."""
    status = "graded"
    draw = rng.random()
    notes: list[str] = []
    if draw < FAILED_SHARE:
        status, notes = "failed", ["the kernel died three times while running cell 12 (out of memory?)"]
    elif draw < FAILED_SHARE + FLAGGED_SHARE:
        status, notes = "flagged", [rng.choice([
            "a cell ran past the 120 s cell timeout and was interrupted",
            "the notebook was not valid nbformat and was repaired before grading",
            "a test cell was edited: the grader restored it"])]
    checks: list[dict] = []
    cells: list[dict] = []
    if status != "failed":
        by_test = {}
        for test in plan.tests:
            records = _check_records(plan.name, test, choice, plan, rng, student)
            by_test[test.grade_id] = all(record["status"] == "passed" for record in records)
            checks.extend(records)
        for cell_id, points, cell_type, manual in plan.grade_cells:
            cells.append({"notebook": plan.name, "name": cell_id,
                          "auto_score": None if manual else (points if by_test[cell_id] else 0.0),
                          "max_score": points, "needs_manual_grade": manual, "cell_type": cell_type})
    code_score = sum(cell["auto_score"] or 0.0 for cell in cells if cell["cell_type"] == "code")
    max_code = sum(points for _, points, cell_type, _ in plan.grade_cells if cell_type == "code")
    seconds = rng.lognormvariate(math.log(24.0), 0.3)
    execution = seconds * (rng.uniform(0.7, 0.85))
    return {
        "student": student, "assignment": plan.name, "status": status,
        "code_score": round(code_score, 4), "max_code_score": round(max_code if cells else 0.0, 4),
        "seconds": round(seconds, 2), "execution_seconds": round(execution, 2),
        "peak_memory_mb": round(rng.gauss(420, 90) + (1500 if status == "flagged" else 0), 1),
        "peak_disk_mb": round(rng.expovariate(0.5) if rng.random() < 0.2 else 0.0, 1),
        "notes": notes, "remarks": [], "kernel_start_seconds": round((rng.uniform(0.4, 1.5)), 2),
        "kernels_forked": 1, "isolation_gaps": [], "worker": worker,
        "phases": {"prepare": round((rng.uniform(0.5, 1.2)), 3), "autograde": round(execution + 2.5, 3),
                   "feedback": round((rng.uniform(2.5, 4.0)), 3), "collect": round((rng.uniform(0.1, 0.2)), 3)},
        "cells": cells, "checks": checks,
    }


# ---------------------------------------------------------------------------------------------------------------
# The class


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _choose(plan: AssignmentPlan, ability: float, difficulty: dict[str, float], rng: random.Random) -> dict[str, str]:
    """Which variant a student of ``ability`` hands in for each answer cell."""
    choice = {}
    for cell_id, variants in plan.variants.items():
        if rng.random() < BLANK_SHARE * (2.0 if ability < -1 else 1.0):
            choice[cell_id] = "blank"
            continue
        right = [name for name, _, wrong in variants if not wrong]
        wrong = [name for name, _, is_wrong in variants if is_wrong]
        if not wrong or rng.random() < _sigmoid(1.6 + ABILITY_WEIGHT * ability - difficulty[cell_id]):
            # the plain solution most often, the other correct forms less
            choice[cell_id] = rng.choices(right, [3.0] + [1.0] * (len(right) - 1))[0]
        else:  # the first wrong variant is the common mistake
            choice[cell_id] = rng.choices(wrong, [4.0] + [1.0] * (len(wrong) - 1))[0]
    return choice


def _written_answer(model: str, rng: random.Random) -> str:
    if rng.random() < 0.15 or not model.strip():
        return TEXT_STUB
    sentences = [part.strip() for part in re.split(r"(?<=[.!?])\s+", model) if part.strip()]
    keep = sorted(rng.sample(range(len(sentences)), max(1, int(len(sentences) * rng.uniform(0.4, 1.0)))))
    return " ".join(sentences[index] for index in (keep if rng.random() < 0.5 else keep[::-1]))


def _source_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def generate_class(workdir: Path, *, students: int = 1000, assignments: Sequence[str] | None = None, seed: int = 0,
                   copied_pairs: int = 5, repo: Path = REPO) -> SyntheticClass:
    """Write a synthetic class into ``workdir`` (see the module docstring) and return what was written."""
    rng = random.Random(seed)
    names = assignments or sorted(path.name for path in (repo / "release").iterdir() if path.is_dir())
    plans = [_plan(repo, name) for name in names]
    ids = [f"s{index:04d}" for index in range(students)]
    pair_count = min(copied_pairs, students // 4)
    chosen = rng.sample(ids, 2 * pair_count)
    pairs = [(chosen[2 * k], chosen[2 * k + 1]) for k in range(pair_count)]
    copier_of = {copier: original for original, copier in pairs}
    # copiers come after their originals, so that the originals' answers exist when the copier is written
    order = [student for student in ids if student not in copier_of] + [copier for _, copier in pairs]
    ability = {student: rng.gauss(0, 1) for student in ids}
    run_dir = workdir / "reports" / STAMP
    run_dir.mkdir(parents=True, exist_ok=True)
    result = SyntheticClass(workdir, run_dir, ids, list(names), pairs, {}, {})
    submissions: list[dict] = []
    for plan in plans:
        (workdir / "release" / plan.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / "release" / plan.name / f"{plan.name}.ipynb", workdir / "release" / plan.name)
        plan.variants = {cell_id: _variants(code, rng) for cell_id, code in plan.answer_cells.items()}
        codes = {cell_id: {name: code for name, code, _ in pool} for cell_id, pool in plan.variants.items()}
        difficulty = {cell_id: rng.gauss(0, 1.2) for cell_id in plan.answer_cells}
        positions = {grade_id(cell): index for index, cell in enumerate(plan.release["cells"]) if grade_id(cell)}
        base = {cell_id: "".join(plan.release["cells"][positions[cell_id]]["source"])
                for cell_id in plan.answer_cells if cell_id in positions}
        result.base[plan.name] = base
        answers: dict[str, dict[str, str]] = {}
        written: dict[str, dict[str, str]] = {}
        records: dict[str, dict] = {}
        for student in order:
            own = random.Random(f"{seed}/{student}/{plan.name}")
            original = copier_of.get(student)
            if original is not None:
                answers[student] = {cell_id: _disguised(code, own) for cell_id, code in answers[original].items()}
                written[student] = dict(written[original])
                record = copy.deepcopy(records[original])
                record.update(student=student, worker=own.randrange(16), seconds=round(record["seconds"] * 1.03, 2))
                records[student] = record
                continue
            choice = _choose(plan, ability[student], difficulty, own)
            cells: dict[str, str] = {}
            for cell_id, variant in choice.items():
                if variant == "blank":
                    cells[cell_id] = base.get(cell_id, "")
                    continue
                code = codes[cell_id][variant]
                if own.random() < OWN_CODE_SHARE:
                    code = _with_own_code(code, _own_statements(own, own.randrange(2, 6)))
                cells[cell_id] = _with_comments(code, own, own.choice([0.0, 0.05, 0.15]))
            answers[student] = cells
            written[student] = {cell_id: _written_answer(model, own) for cell_id, model in plan.written_cells.items()}
            records[student] = _submission(plan, student, choice, own, own.randrange(16))
        for student in ids:
            notebook = dict(plan.release)
            notebook["cells"] = list(plan.release["cells"])
            for cell_id, text in {**answers[student], **written[student]}.items():
                if cell_id in positions:
                    index = positions[cell_id]
                    notebook["cells"][index] = {**notebook["cells"][index], "source": _source_lines(text)}
            folder = workdir / "submitted" / student / plan.name
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(notebook, ensure_ascii=False)  # the C encoder: indent would be 20x slower
            (folder / f"{plan.name}.ipynb").write_text(text)
            result.notebook_bytes += len(text)
            submissions.append(records[student])
        result.answers[plan.name] = answers
    _write_report(run_dir, submissions, seed)
    return result


def _write_report(run_dir: Path, submissions: list[dict], seed: int) -> None:
    total = sum(submission["seconds"] for submission in submissions)
    summary = {"started": STAMP, "seconds": round(total / 16, 2), "workers": 16,
               "limits": {"cell_timeout": 120, "time_limit": 900.0, "memory_mb": 4096, "disk_mb": 1024,
                          "max_output_bytes": 2000000},
               "sandbox": True, "unprivileged_user": True, "grading_seed": 1000 + seed,
               "run_notes": ["synthetic run written by benchmarks/synthetic_class.py: nothing was graded"],
               "submissions_per_minute": round(len(submissions) / max(total / 16 / 60, 1e-9), 2),
               "submissions": submissions}
    (run_dir / "report.json").write_text(json.dumps(summary))
    columns = ["student", "assignment", "status", "code_score", "max_code_score", "seconds", "execution_seconds",
               "peak_memory_mb", "peak_disk_mb", "notes", "remarks"]
    with open(run_dir / "grades.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for submission in submissions:
            writer.writerow([" | ".join(submission[key]) if isinstance(submission[key], list) else submission[key]
                             for key in columns])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--assignments", nargs="+", default=["all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copied-pairs", type=int, default=5)
    arguments = parser.parse_args(argv)
    chosen = None if arguments.assignments == ["all"] else arguments.assignments
    made = generate_class(arguments.workdir, students=arguments.students, assignments=chosen, seed=arguments.seed,
                          copied_pairs=arguments.copied_pairs)
    print(f"{len(made.students)} students x {len(made.assignments)} assignments in {made.workdir} "
          f"({made.notebook_bytes / 1e6:.0f} MB of notebooks); run report {made.run_dir / 'report.json'}; "
          f"copied pairs (original, copier): {made.copied_pairs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
