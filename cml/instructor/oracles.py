"""The oracles of the hidden tests, and the code a student's graded kernel runs instead of them.

A hidden test draws inputs, calls the student's code, and compares the result with an *oracle*: the value a
correct answer gives. If the oracle is computed in the student's kernel, the student's code can reach it (wrap a
check so that it passes the expected value back, read the caller's frame or the notebook's globals, read the
cell's source from IPython's history). So no oracle of a hidden test ever runs there: the grader computes every
oracle in the reference run of the solution, with the same grading seed, and compares outside the kernel
(:mod:`cml.instructor.preprocessors.verdicts`).

The convention that makes the oracles removable, inside each ``BEGIN HIDDEN TESTS`` region of a test cell:

* the oracle of a value check is the check's expected argument: ``expected`` of
  :func:`~cml.checks.check_close` and :func:`~cml.checks.check_equal`, ``expected_shape`` of
  :func:`~cml.checks.check_shape`, ``function`` of :func:`~cml.checks.check_gradient` (whose finite differences
  are the oracle), ``expected`` of :func:`~cml.torch_checks.check_parameters_close`, unless the call says
  ``expected_from_student=True`` (a second run of the student's code that must reproduce the first: that value is
  the student's, and the check stays in the kernel);
* whatever only an oracle needs (a reference implementation, a reference loop, an import) stands between
  ``### BEGIN ORACLE`` and ``### END ORACLE`` lines. A block runs in the reference run only, so it must not draw
  from a generator the test draws from later, nor change anything the test reads later (a reference epoch that
  draws from torch's global generator runs inside ``torch.random.fork_rng``).
* the hidden checks are written in the hidden region itself: a helper defined in the visible part cannot have its
  oracles withheld, so a hidden region may not call one that checks against an oracle (:func:`oracle_helpers`).

:func:`hidden_tests_for_kernel` rewrites a test cell for a grading kernel: in a student's run every expected
argument becomes :data:`cml.checks.WITHHELD` and every oracle block binds its names to it (the kernel logs the
student's values; the grader judges them); in the reference run every expected argument is wrapped in
:func:`cml.checks.hidden_oracle`, so that its record says the grader must judge it. Line numbers are kept, so a
traceback points where it would have. The notebooks themselves never change: nbval of the source, and students
practising with the release, run the tests as written. :func:`oracle_problems` is the convention's lint.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

from cml.instructor.cells import HIDDEN_MARKERS, Markers, Role, marked_lines

__all__ = ["ORACLE_ARGUMENTS", "ORACLE_MARKERS", "HiddenRegion", "OracleError", "hidden_regions",
           "hidden_tests_for_kernel", "oracle_helpers", "oracle_problems", "withheld_checks"]

ORACLE_MARKERS = Markers("BEGIN ORACLE", "END ORACLE")
ORACLE_ARGUMENTS = {"check_close": (2, "expected"), "check_equal": (2, "expected"),
                    "check_shape": (2, "expected_shape"), "check_gradient": (1, "function"),
                    "check_parameters_close": (2, "expected")}
"""For each check of :mod:`cml.checks` and :mod:`cml.torch_checks` that compares with an oracle: the position and name of that argument."""
_WITHHELD = '__import__("cml.checks").checks.WITHHELD'
_MARK_OPEN, _MARK_CLOSE = '__import__("cml.checks").checks.hidden_oracle(', ")"


class OracleError(ValueError):
    """A hidden region the rewriting cannot read (not whole statements, an oracle block left open)."""


@dataclass(frozen=True)
class HiddenRegion:
    """The lines of one ``BEGIN HIDDEN TESTS`` region: ``first`` is the index of its first inside line."""

    first: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def hidden_regions(source: str) -> list[HiddenRegion]:
    """The hidden-test regions of a test cell, with their position (nbgrader's reading of the markers)."""
    regions: list[HiddenRegion] = []
    current: list[str] | None = None
    for index, (line, role) in enumerate(marked_lines(source, HIDDEN_MARKERS)):
        if role is Role.BEGIN:
            current = []
            regions.append(HiddenRegion(index + 1, current))
        elif role is Role.INSIDE and current is not None:
            current.append(line)
        elif role is Role.END:
            current = None
    return regions


def _parse(text: str, what: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as error:
        raise OracleError(f"{what} is not a sequence of whole statements: {error.msg} (line {error.lineno})") from None


def _is_check(call: ast.Call) -> str | None:
    function = call.func
    name = function.id if isinstance(function, ast.Name) else function.attr if isinstance(function, ast.Attribute) else None
    return name if name in ORACLE_ARGUMENTS else None


def _from_student(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "expected_from_student":
            if not isinstance(keyword.value, ast.Constant):
                raise OracleError("expected_from_student must be written as True or False")
            return bool(keyword.value.value)
    return False


def _oracle_argument(call: ast.Call) -> ast.expr | None:
    """The expression of a check call's oracle argument, or None (not a check, a check of the student's own values,
    or an argument not given)."""
    name = _is_check(call)
    if name is None or _from_student(call):
        return None
    position, keyword_name = ORACLE_ARGUMENTS[name]
    for keyword in call.keywords:
        if keyword.arg == keyword_name:
            return keyword.value
    return call.args[position] if len(call.args) > position and not isinstance(call.args[position], ast.Starred) else None


def _oracle_arguments(tree: ast.AST) -> list[ast.expr]:
    """Every oracle argument in ``tree``, outermost first (an oracle inside another is part of it)."""
    found = [argument for node in ast.walk(tree) if isinstance(node, ast.Call)
             if (argument := _oracle_argument(node)) is not None]
    spans = [(node.lineno, node.col_offset, node.end_lineno, node.end_col_offset) for node in found]
    return [node for node, span in zip(found, spans)
            if not any(other != span and other[:2] <= span[:2] and span[2:] <= other[2:] for other in spans)]


def _bound_names(tree: ast.AST, skip: frozenset[int] = frozenset()) -> list[str]:
    """The names a block of statements binds at its own level (not inside the functions, lambdas and comprehensions
    it holds, nor inside the nodes whose ``id`` is in ``skip``)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if id(node) in skip:
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return  # their variables are their own
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.extend((alias.asname or alias.name).split(".")[0] for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return list(dict.fromkeys(names))


def _replace_spans(lines: list[str], spans: list[tuple[int, int, int, int, str]]) -> list[str]:
    """``lines`` with each span ``(first line, first byte, last line, end byte, text)`` (1-based lines, UTF-8
    offsets, as :mod:`ast` gives them) replaced by ``text``, padded with newlines to keep the line count."""
    encoded = [line.encode() for line in lines]
    for first, start, last, end, text in sorted(spans, reverse=True):
        replaced_lines = last - first
        padded = text + "\n" * max(0, replaced_lines - text.count("\n"))
        merged = encoded[first - 1][:start] + padded.encode() + encoded[last - 1][end:]
        encoded[first - 1:last] = merged.split(b"\n")
    return [line.decode() for line in encoded]


def _withhold_oracle_blocks(lines: list[str]) -> list[str]:
    """The region's lines with each oracle block's statements replaced by one binding of its names to WITHHELD."""
    result: list[str] = []
    block: list[str] = []
    for line, role in marked_lines("\n".join(lines), ORACLE_MARKERS):
        if role is Role.INSIDE:
            block.append(line)
            continue
        if role is Role.END:
            result += _withheld_block(block)
            block = []
        result.append(line)
    return result


def _withheld_block(block: list[str]) -> list[str]:
    code = [line for line in block if line.strip()]
    if not code:
        return block
    indent = code[0][: len(code[0]) - len(code[0].lstrip())]
    names = _bound_names(_parse(textwrap.dedent("\n".join(block)), "an oracle block"))
    binding = indent + (" = ".join(names) + f" = {_WITHHELD}" if names else "pass")
    return [binding] + [""] * (len(block) - 1)


def _rewrite_region(lines: list[str], withhold: bool) -> list[str]:
    marked_lines("\n".join(lines), ORACLE_MARKERS)  # raises on an oracle block left open or nested
    if withhold:
        lines = _withhold_oracle_blocks(lines)
    tree = _parse("\n".join(lines), "a hidden-test region")
    spans = []
    for node in _oracle_arguments(tree):
        original = ast.get_source_segment("\n".join(lines), node, padded=False) or ""
        text = _WITHHELD if withhold else _MARK_OPEN + original + _MARK_CLOSE
        spans.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, text))
    return _replace_spans(lines, spans)


def hidden_tests_for_kernel(source: str, *, withhold: bool) -> str:
    """A test cell's source as a grading kernel runs it (see the module docstring): ``withhold`` for a student's
    run (no oracle left), else the reference run's (every oracle marked). Cells without hidden tests are unchanged.

    Raises :class:`OracleError` where a hidden region is not whole statements or an oracle block is malformed.
    """
    regions = hidden_regions(source)
    if not regions:
        return source
    lines = source.split("\n")
    for region in regions:
        if not region.lines:
            continue
        rewritten = _rewrite_region(region.lines, withhold)
        lines[region.first:region.first + len(region.lines)] = rewritten
    return "\n".join(lines)


def withheld_checks(source: str) -> int:
    """How many value checks in the cell's hidden regions have their oracle withheld from a student's kernel."""
    return sum(len(_oracle_arguments(_parse(region.text, "a hidden-test region"))) for region in hidden_regions(source))


def oracle_helpers(sources: list[str]) -> set[str]:
    """The functions defined in ``sources`` (cells' code, outside their hidden regions) that call a check with an
    oracle: called from a hidden region, they would compute a hidden oracle in the student's kernel."""
    helpers: set[str] = set()
    for source in sources:
        visible = "\n".join(line for line, role in marked_lines(source, HIDDEN_MARKERS, strict=False)
                            if role is Role.OUTSIDE)
        try:
            tree = ast.parse(visible)
        except SyntaxError:
            continue
        helpers |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and _oracle_arguments(node)}
    return helpers


def oracle_problems(source: str, helpers: set[str] = frozenset()) -> list[str]:
    """Where a test cell breaks the convention (empty: it keeps it).

    * an oracle block outside a hidden region, or a hidden region that is not whole statements;
    * no value check in the hidden tests whose oracle the grader holds (every graded cell needs one: its points
      must not rest on visible checks or checks decided in the kernel alone);
    * a name bound in a hidden region outside an oracle block and read only inside oracle arguments: a value
      computed only for an oracle, which would be computed in the student's kernel;
    * a hidden region that calls one of ``helpers`` (:func:`oracle_helpers`): its checks' oracles are not in the
      hidden region, so they cannot be withheld.
    """
    problems: list[str] = []
    outside = [line for line, role in marked_lines(source, HIDDEN_MARKERS, strict=False) if role is Role.OUTSIDE]
    if any(ORACLE_MARKERS.begin in line or ORACLE_MARKERS.end in line for line in outside):
        problems.append("an oracle block outside the hidden tests")
    judged = 0
    for region in hidden_regions(source):
        try:
            tree = _parse("\n".join(_withhold_oracle_blocks(region.lines)), "a hidden-test region")
        except (OracleError, RuntimeError) as error:
            problems.append(str(error))
            continue
        arguments = _oracle_arguments(tree)
        judged += len(arguments)
        # What the kernel computes itself: everything but the oracle arguments and the oracle blocks' bindings.
        skipped = {id(node) for argument in arguments for node in ast.walk(argument)}
        skipped |= {id(node) for statement in ast.walk(tree) if _is_withheld_binding(statement)
                    for node in ast.walk(statement)}
        read_by_kernel = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
                          and isinstance(node.ctx, ast.Load) and id(node) not in skipped}
        read_by_oracles = {node.id for argument in arguments for node in ast.walk(argument)
                           if isinstance(node, ast.Name)}
        called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        for name in sorted(called & set(helpers)):
            problems.append(f"the hidden tests call {name}(), whose checks compute their oracles outside the hidden "
                            "region: write the hidden checks in the hidden region")
        for name in _bound_names(tree, frozenset(skipped)):
            if name in read_by_oracles and name not in read_by_kernel:
                problems.append(f"{name!r} is computed in the kernel only for an oracle: move it into the check's "
                                "expected argument or an oracle block")
    if not judged:
        problems.append("no hidden value check the grader judges (a check_close, check_equal, check_shape, "
                        "check_gradient or check_parameters_close with an oracle, in the hidden tests)")
    return problems


def _is_withheld_binding(node: ast.AST) -> bool:
    """Whether ``node`` is the statement an oracle block became in a student's kernel."""
    return (isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "WITHHELD")
