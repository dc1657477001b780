"""nbgrader's cells as nbgrader itself reads them: the cell predicates and the one parser of its markers.

The predicates are :func:`nbgrader.utils.is_grade`, :func:`~nbgrader.utils.is_solution`,
:func:`~nbgrader.utils.is_locked` and :func:`~nbgrader.utils.is_task`, called on a view of the cell whose
``metadata.nbgrader`` is always a mapping: a submission is read as it comes, and a cell without metadata (or
with a string where nbgrader expects a mapping) is an ordinary cell instead of an ``AttributeError``.
:func:`cell_kind` names the combinations; its values are those the instructor tools have always used.

The markers follow ``ClearSolutions._replace_solution_region``, ``ClearHiddenTests._remove_hidden_test_region``
and ``ClearMarkScheme._remove_mark_scheme_region`` (nbgrader 0.9), which all read a cell the same way:

* the source is split on ``"\\n"``; a line that *contains* the begin delimiter (``BEGIN SOLUTION``,
  ``BEGIN HIDDEN TESTS``, ``BEGIN MARK SCHEME``) anywhere opens a region and is dropped whole, whatever
  stands before or after the delimiter (so ``### BEGIN SOLUTION``, ``# BEGIN SOLUTION (hint)`` and
  ``x = 1  # BEGIN SOLUTION`` are all markers); the begin test comes first, so a line holding both opens;
* a line containing the end delimiter closes the region and is dropped, also outside a region;
* the delimiters carry no comment prefix, so they are the same for every kernel language; a region opened
  inside another, or never closed, is an error (nbgrader raises ``RuntimeError``: :class:`MarkerError` here);
* a solution region is replaced by the stub, indented as its begin line; a solution cell without a region is
  replaced whole; hidden tests and mark schemes are removed; a region in a cell of the wrong kind is an error.

The delimiters are nbgrader's defaults, read from its preprocessors' traits. A course that configures
``ClearSolutions.begin_solution_delimeter`` and its kin passes its own :class:`Markers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, Callable, NamedTuple

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearSolutions

__all__ = [
    "CODE_STUB",
    "HIDDEN_MARKERS",
    "MARK_SCHEME_MARKERS",
    "SOLUTION_MARKERS",
    "TEXT_STUB",
    "MarkerError",
    "Markers",
    "Role",
    "cell_kind",
    "grade_id",
    "has_region",
    "is_grade",
    "is_locked",
    "is_solution",
    "is_task",
    "marked_lines",
    "nbgrader_metadata",
    "released_source",
    "remove_regions",
    "strip_markers",
    "strip_solution_markers",
]


class Markers(NamedTuple):
    """The delimiters of one kind of region, as nbgrader's ``Clear*`` preprocessors configure them."""

    begin: str
    end: str


def _default(preprocessor: type, trait: str) -> Any:
    return preprocessor.class_traits()[trait].default()


SOLUTION_MARKERS = Markers(_default(ClearSolutions, "begin_solution_delimeter"),
                           _default(ClearSolutions, "end_solution_delimeter"))
HIDDEN_MARKERS = Markers(_default(ClearHiddenTests, "begin_test_delimeter"),
                         _default(ClearHiddenTests, "end_test_delimeter"))
MARK_SCHEME_MARKERS = Markers(_default(ClearMarkScheme, "begin_mark_scheme_delimeter"),
                              _default(ClearMarkScheme, "end_mark_scheme_delimeter"))
CODE_STUB: str = _default(ClearSolutions, "code_stub")["python"]
TEXT_STUB: str = _default(ClearSolutions, "text_stub")


class MarkerError(RuntimeError):
    """A cell nbgrader refuses to release: a nested or unterminated region, or one in a cell of the wrong kind."""


def nbgrader_metadata(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    """The cell's ``metadata.nbgrader``, or ``{}`` where there is none or it is not a mapping."""
    metadata = cell.get("metadata")
    section = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
    return section if isinstance(section, Mapping) else {}


def _view(cell: Mapping[str, Any]) -> NotebookNode:
    """The cell as :mod:`nbgrader.utils` expects it: attribute access, ``metadata.nbgrader`` a mapping."""
    return NotebookNode(metadata=NotebookNode(nbgrader=nbgrader_metadata(cell)))


def is_grade(cell: Mapping[str, Any]) -> bool:
    """nbgrader's :func:`~nbgrader.utils.is_grade`: the cell is worth points (tests, or a manually graded answer)."""
    return bool(utils.is_grade(_view(cell)))


def is_solution(cell: Mapping[str, Any]) -> bool:
    """nbgrader's :func:`~nbgrader.utils.is_solution`: the student answers in this cell."""
    return bool(utils.is_solution(_view(cell)))


def is_locked(cell: Mapping[str, Any]) -> bool:
    """nbgrader's :func:`~nbgrader.utils.is_locked`: grading overwrites the cell with the source's (a solution
    cell never is, a grade cell always is, any other as its ``locked`` flag says)."""
    return bool(utils.is_locked(_view(cell)))


def is_task(cell: Mapping[str, Any]) -> bool:
    """nbgrader's :func:`~nbgrader.utils.is_task`: a "manually graded task" cell (mark schemes belong there)."""
    return bool(utils.is_task(_view(cell)))


def grade_id(cell: Mapping[str, Any]) -> str | None:
    """The nbgrader ``grade_id`` of a cell, or ``None`` for an ordinary cell."""
    return nbgrader_metadata(cell).get("grade_id")


def cell_kind(cell: Mapping[str, Any]) -> str | None:
    """``"manual"`` (grade and solution), ``"tests"`` (grade), ``"solution"``, ``"readonly"`` (locked; a task
    cell is locked), else ``None``."""
    if is_grade(cell):
        return "manual" if is_solution(cell) else "tests"
    if is_solution(cell):
        return "solution"
    return "readonly" if is_locked(cell) else None


class Role(Enum):
    """What a line of a cell is to one kind of region."""

    OUTSIDE = "outside"
    BEGIN = "begin"
    INSIDE = "inside"
    END = "end"
    """Also a stray end marker outside any region: nbgrader drops it all the same."""


def marked_lines(source: str, markers: Markers, *, strict: bool = True) -> list[tuple[str, Role]]:
    """Each line of ``source`` (split on ``"\\n"``, as nbgrader does) with its role (see the module docstring).

    ``strict`` raises :class:`MarkerError` where nbgrader raises. Otherwise a nested begin line counts as
    inside and an unterminated region runs to the end of the cell: a reader of untrusted or unchecked cells
    never shows less than nbgrader would have hidden.
    """
    roles: list[tuple[str, Role]] = []
    inside = False
    for line in source.split("\n"):
        if markers.begin in line:
            if inside and strict:
                raise MarkerError(f"{markers.begin!r} inside a region it opened already")
            role = Role.INSIDE if inside else Role.BEGIN
            inside = True
        elif markers.end in line:
            role, inside = Role.END, False
        else:
            role = Role.INSIDE if inside else Role.OUTSIDE
        roles.append((line, role))
    if inside and strict:
        raise MarkerError(f"{markers.begin!r} without {markers.end!r}")
    return roles


def has_region(source: str, markers: Markers, *, strict: bool = True) -> bool:
    """Whether ``source`` opens a region of this kind."""
    return any(role is Role.BEGIN for _, role in marked_lines(source, markers, strict=strict))


def remove_regions(source: str, markers: Markers, replacement: str | None = None, *, strict: bool = True) -> str:
    """``source`` without its regions and marker lines; ``replacement`` (if any) stands in for each region,
    indented as its begin line (as nbgrader's stub)."""
    kept: list[str] = []
    for line, role in marked_lines(source, markers, strict=strict):
        if role is Role.OUTSIDE:
            kept.append(line)
        elif role is Role.BEGIN and replacement is not None:
            indent = re.match(r"\s*", line).group(0)
            kept += [indent + stub_line for stub_line in replacement.split("\n")]
    return "\n".join(kept)


def strip_markers(source: str, markers: Markers, *, strict: bool = True) -> str:
    """``source`` with its regions' content kept and their marker lines dropped."""
    return "\n".join(line for line, role in marked_lines(source, markers, strict=strict)
                     if role in (Role.OUTSIDE, Role.INSIDE))


def strip_solution_markers(source: str) -> str:
    """A solution cell as a student who solved it would write it: the source without nbgrader's markers.

    Mark schemes (instructor notes inside written answers) are removed with their content. Never raises: a
    region left open keeps (a solution) or drops (a mark scheme) the rest of the cell.
    """
    without_scheme = remove_regions(source, MARK_SCHEME_MARKERS, strict=False)
    return strip_markers(without_scheme, SOLUTION_MARKERS, strict=False).rstrip("\n")


def _cleared(cell: Mapping[str, Any], source: str, markers: Markers, allowed: Callable[[Mapping[str, Any]], bool],
             replacement: str | None, strict: bool) -> str:
    """One of nbgrader's ``Clear*`` steps; with ``strict``, its ``enforce_metadata`` check as well."""
    if strict and not allowed(cell) and has_region(source, markers):
        raise MarkerError(f"a {markers.begin!r} region in a cell nbgrader does not mark for it ({grade_id(cell)!r})")
    return remove_regions(source, markers, replacement, strict=strict)


def released_source(cell: Mapping[str, Any], *, strict: bool = True, code_stub: str = CODE_STUB,
                    text_stub: str = TEXT_STUB) -> str:
    """The cell's source as ``nbgrader generate_assignment`` releases it: ``ClearSolutions``, then
    ``ClearHiddenTests`` and ``ClearMarkScheme`` (``strict``: see :func:`marked_lines`)."""
    source = cell.get("source", "")
    stub = code_stub if cell.get("cell_type") == "code" else text_stub
    if is_solution(cell) and not has_region(source, SOLUTION_MARKERS, strict=strict):
        source = stub
    else:
        source = _cleared(cell, source, SOLUTION_MARKERS, is_solution, stub, strict)
    source = _cleared(cell, source, HIDDEN_MARKERS, is_grade, None, strict)
    return _cleared(cell, source, MARK_SCHEME_MARKERS, is_task, None, strict)
