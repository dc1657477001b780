"""Grade files that Canvas and Moodle import directly, from the nbgrader gradebook.

The scores are the ones nbgrader's own CSV export gives (``nbgrader/plugins/export.py``): each grade's score (the
manual score where an instructor set one, else the automatic score, plus extra credit), summed over the
submission, minus the submission's late-submission penalty, floored at 0. A mapping CSV ties nbgrader student ids to
LMS ids; an optional assignment mapping names the LMS columns. Everything is read and checked before anything is
written, so a bad mapping leaves no half-written file behind.

- Canvas (Grades > Import): ``Student, ID, SIS User ID, SIS Login ID, Section`` then one column per assignment,
  ``Name (canvas id)`` when the Canvas assignment id is known, else the bare name (Canvas then creates the
  assignment); a second row ``Points Possible`` holds the maximum scores.
- Moodle (Grade administration > Import > CSV file): one identifier column named as Moodle's own export names it
  (``Email address``, ``Username`` or ``ID number``), then one column per grade item.

Every text cell that a student or an instructor controls is guarded against spreadsheet formulas
(:func:`spreadsheet_safe`); scores are written as plain numbers.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cml.instructor.analytics.safe_output import spreadsheet_safe

__all__ = [
    "AssignmentLink",
    "ClassGrades",
    "ExportResult",
    "LmsExportError",
    "MOODLE_ID_FIELDS",
    "StudentLink",
    "add_arguments",
    "canvas_rows",
    "default_db_url",
    "export_grades",
    "format_score",
    "moodle_identifier",
    "moodle_rows",
    "read_assignment_mapping",
    "read_gradebook",
    "read_student_mapping",
    "run",
    "spreadsheet_safe",
    "write_table",
]

LMS_NAMES = ("canvas", "moodle")
CANVAS_FIXED_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_ROW = "Points Possible"
#: Moodle's identifier choices: the header its export writes, and the mapping column that holds the value.
MOODLE_ID_FIELDS = {"email": ("Email address", "email"), "username": ("Username", "login_id"),
                    "idnumber": ("ID number", "sis_user_id")}
STUDENT_COLUMNS = ("student_id", "lms_id", "name", "sis_user_id", "login_id", "section", "email")
ASSIGNMENT_COLUMNS = ("assignment", "lms_name", "lms_id")
SHOWN_LENGTH = 80

Cell = str | float | None


class LmsExportError(Exception):
    """The export cannot be made as asked (bad mapping, missing gradebook, ``--strict`` problems); nothing written."""


@dataclass(frozen=True)
class StudentLink:
    """One row of the student mapping: the nbgrader id and the LMS's ids for the same person."""

    student_id: str
    lms_id: str
    name: str = ""
    sis_user_id: str = ""
    login_id: str = ""
    section: str = ""
    email: str = ""


@dataclass(frozen=True)
class AssignmentLink:
    """One LMS grade column: the nbgrader assignment, the LMS column name and (Canvas) the LMS assignment id."""

    assignment: str
    lms_name: str
    lms_id: str = ""


@dataclass
class ClassGrades:
    """What the gradebook says, keyed by nbgrader names.

    ``scores[assignment][student]`` is the final score (after penalty, at least 0) of each submission that exists;
    ``ungraded`` lists ``(student, assignment, "notebook/cell")`` for grades still needing a manual grade.
    """

    students: list[str]
    assignments: list[str]
    max_scores: dict[str, float]
    scores: dict[str, dict[str, float]]
    ungraded: list[tuple[str, str, str]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportResult:
    """A written grade file: where, how many student rows and grade columns, and the warnings to show."""

    path: Path
    rows: int
    columns: int
    warnings: list[str]


def _shown(text: str) -> str:
    """``text`` as it may go to a terminal: control characters escaped, at most ``SHOWN_LENGTH`` characters."""
    visible = "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
    return visible if len(visible) <= SHOWN_LENGTH else visible[:SHOWN_LENGTH - 1] + "…"


def format_score(score: float) -> str:
    """A score as a plain decimal number (no exponent, at most 6 decimals, no trailing zeros): ``2.5``, ``10``."""
    text = f"{round(score, 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


# ---------------------------------------------------------------- reading the mapping files


def _read_csv(path: Path, required: tuple[str, ...], known: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """The rows of the CSV at ``path`` as dicts of stripped strings over ``known`` columns (absent ones empty).

    Raises :class:`LmsExportError` on an unreadable or malformed file, a missing required column, a row with more
    fields than the header, or an empty required value.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            header = next(reader, None)
            if header is None:
                raise LmsExportError(f"{what} {path} is empty (a header row is required)")
            columns = [name.strip().lower() for name in header]
            missing = [name for name in required if name not in columns]
            if missing:
                raise LmsExportError(f"{what} {path} lacks the column(s) {', '.join(missing)} "
                                     f"(its header: {_shown(','.join(header))})")
            repeated = sorted({name for name in columns if name and columns.count(name) > 1})
            if repeated:
                raise LmsExportError(f"{what} {path} has the column(s) {', '.join(repeated)} more than once")
            rows = []
            for values in reader:
                if not any(value.strip() for value in values):
                    continue
                line = reader.line_num
                if len(values) > len(columns):
                    raise LmsExportError(f"{what} {path}, line {line}: {len(values)} fields for "
                                         f"{len(columns)} columns")
                row = {name: "" for name in known}
                row.update({name: value.strip() for name, value in zip(columns, values) if name in known})
                empty = [name for name in required if not row[name]]
                if empty:
                    raise LmsExportError(f"{what} {path}, line {line}: empty {', '.join(empty)}")
                row["_line"] = str(line)
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LmsExportError(f"cannot read {what} {path}: {error}") from error
    return rows


def _reject_duplicates(rows: list[dict[str, str]], column: str, path: Path, what: str) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        value = row[column]
        if value in seen:
            raise LmsExportError(f"{what} {path}: {column} {_shown(value)!r} on line {seen[value]} and again on "
                                 f"line {row['_line']}")
        seen[value] = row["_line"]


def read_student_mapping(path: Path) -> list[StudentLink]:
    """The student mapping CSV at ``path``: header with ``student_id`` (nbgrader) and ``lms_id``, optionally
    ``name``, ``sis_user_id``, ``login_id``, ``section``, ``email`` (header names are case-insensitive).

    Raises :class:`LmsExportError` for a malformed file, empty or duplicate ``student_id`` or ``lms_id``.
    """
    rows = _read_csv(path, ("student_id", "lms_id"), STUDENT_COLUMNS, "student mapping")
    for column in ("student_id", "lms_id"):
        _reject_duplicates(rows, column, path, "student mapping")
    return [StudentLink(**{name: row[name] for name in STUDENT_COLUMNS}) for row in rows]


def read_assignment_mapping(path: Path) -> list[AssignmentLink]:
    """The assignment mapping CSV at ``path``: header ``assignment,lms_name[,lms_id]``, one row per LMS column,
    in the order the columns are to be written.

    Raises :class:`LmsExportError` for a malformed file, empty or duplicate ``assignment`` or ``lms_name``.
    """
    rows = _read_csv(path, ("assignment", "lms_name"), ASSIGNMENT_COLUMNS, "assignment mapping")
    for column in ("assignment", "lms_name"):
        _reject_duplicates(rows, column, path, "assignment mapping")
    return [AssignmentLink(row["assignment"], row["lms_name"], row["lms_id"]) for row in rows]


# ---------------------------------------------------------------- reading the gradebook

_CONFIG_DB_URL = re.compile(r"^\s*c\.CourseDirectory\.db_url\s*=\s*(.+?)\s*$", re.MULTILINE)


def default_db_url(workdir: Path) -> str:
    """The gradebook of the course ``workdir``: the last ``c.CourseDirectory.db_url = '...'`` literal of its
    ``nbgrader_config.py`` (as ``cml-course grade --db`` writes it), else ``sqlite:///WORKDIR/gradebook.db``."""
    config = workdir / "nbgrader_config.py"
    if config.is_file():
        for literal in reversed(_CONFIG_DB_URL.findall(config.read_text(encoding="utf-8", errors="replace"))):
            try:
                value = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and value:
                return value
    return f"sqlite:///{workdir.resolve() / 'gradebook.db'}"


def _hidden_password(db_url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except ArgumentError:
        return _shown(db_url)


def _check_sqlite_file(db_url: str) -> None:
    """nbgrader would silently create an empty gradebook at a missing SQLite path: refuse instead."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except ArgumentError as error:
        raise LmsExportError(f"not a database URL: {_shown(db_url)} ({error})") from error
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            raise LmsExportError(f"no gradebook at {url.database} (grade the class first, or pass --db URL)")


def read_gradebook(db_url: str) -> ClassGrades:
    """Every student's final score on every assignment of the nbgrader gradebook at ``db_url`` (SQLAlchemy URL).

    A submission's score is ``max(0, score - late_submission_penalty)``, as ``nbgrader export`` computes it;
    students without a submission are absent from ``scores[assignment]``. Raises :class:`LmsExportError` when the
    database cannot be read.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SQLAlchemyError

    _check_sqlite_file(db_url)
    try:
        with Gradebook(db_url) as gradebook:
            students = gradebook.students
            grades = ClassGrades(students=[student.id for student in students], assignments=[], max_scores={},
                                 scores={}, names={student.id: _full_name(student) for student in students})
            for assignment in gradebook.assignments:
                grades.assignments.append(assignment.name)
                grades.max_scores[assignment.name] = float(assignment.max_score or 0.0)
                scores = grades.scores.setdefault(assignment.name, {})
                for submission in assignment.submissions:
                    student = submission.student.id
                    raw, penalty = submission.score or 0.0, submission.late_submission_penalty or 0.0
                    scores[student] = max(0.0, raw - penalty)
                    if submission.needs_manual_grade:
                        grades.ungraded.extend((student, assignment.name, f"{notebook.name}/{grade.name}")
                                               for notebook in submission.notebooks
                                               for grade in notebook.grades if grade.needs_manual_grade)
    except SQLAlchemyError as error:
        raise LmsExportError(f"cannot read the gradebook {_hidden_password(db_url)}: {error}") from error
    return grades


def _full_name(student: object) -> str:
    last, first = getattr(student, "last_name", None) or "", getattr(student, "first_name", None) or ""
    return f"{last}, {first}" if last and first else last or first


# ---------------------------------------------------------------- building the rows


def _score_cell(grades: ClassGrades, assignment: str, student: str, missing_as_zero: bool) -> Cell:
    score = grades.scores.get(assignment, {}).get(student)
    if score is None:
        return 0.0 if missing_as_zero else None
    return score


def canvas_rows(grades: ClassGrades, students: list[StudentLink], columns: list[AssignmentLink], *,
                missing_as_zero: bool = False) -> list[list[Cell]]:
    """The Canvas gradebook import table: header, ``Points Possible`` row, one row per student of ``students``.

    Text cells are ``str`` (not yet guarded), scores ``float``, missing submissions ``None`` (or ``0.0`` with
    ``missing_as_zero``). The student name falls back to the gradebook's ``Last, First``.
    """
    header: list[Cell] = list(CANVAS_FIXED_COLUMNS)
    header += [f"{link.lms_name} ({link.lms_id})" if link.lms_id else link.lms_name for link in columns]
    points: list[Cell] = [CANVAS_POINTS_ROW, "", "", "", ""]
    points += [grades.max_scores[link.assignment] for link in columns]
    table = [header, points]
    for student in students:
        name = student.name or grades.names.get(student.student_id, "")
        row: list[Cell] = [name, student.lms_id, student.sis_user_id, student.login_id, student.section]
        row += [_score_cell(grades, link.assignment, student.student_id, missing_as_zero) for link in columns]
        table.append(row)
    return table


def moodle_identifier(student: StudentLink, id_field: str, mapping_columns: Iterable[str]) -> str:
    """The value Moodle matches ``student`` by: the mapping column of ``id_field`` (``email`` → ``email``,
    ``username`` → ``login_id``, ``idnumber`` → ``sis_user_id``) when the mapping has that column, else ``lms_id``."""
    column = MOODLE_ID_FIELDS[id_field][1]
    return getattr(student, column) if column in mapping_columns else student.lms_id


def moodle_rows(grades: ClassGrades, students: list[StudentLink], columns: list[AssignmentLink], *,
                id_field: str = "email", mapping_columns: Iterable[str] = (), missing_as_zero: bool = False,
                ) -> list[list[Cell]]:
    """The Moodle grade import table: header (identifier, grade items), one row per student of ``students``.

    Raises :class:`LmsExportError` when a student's identifier is empty.
    """
    if id_field not in MOODLE_ID_FIELDS:
        raise LmsExportError(f"unknown Moodle identifier field {_shown(id_field)!r} "
                             f"(one of {', '.join(MOODLE_ID_FIELDS)})")
    mapping_columns = set(mapping_columns)
    table: list[list[Cell]] = [[MOODLE_ID_FIELDS[id_field][0]] + [link.lms_name for link in columns]]
    for student in students:
        identifier = moodle_identifier(student, id_field, mapping_columns)
        if not identifier:
            raise LmsExportError(f"student {_shown(student.student_id)!r} has no "
                                 f"{MOODLE_ID_FIELDS[id_field][1]} in the mapping (Moodle matches by {id_field})")
        row: list[Cell] = [identifier]
        row += [_score_cell(grades, link.assignment, student.student_id, missing_as_zero) for link in columns]
        table.append(row)
    return table


def write_table(table: list[list[Cell]], path: Path) -> None:
    """Write ``table`` as UTF-8 CSV at ``path`` (atomically): text guarded, numbers plain, ``None`` empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            for row in table:
                writer.writerow(["" if cell is None else format_score(cell) if isinstance(cell, float)
                                 else spreadsheet_safe(cell) for cell in row])
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the export


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _listed(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    text = ", ".join(_shown(name) for name in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _columns(grades: ClassGrades, assignment_mapping: list[AssignmentLink] | None) -> tuple[list[AssignmentLink],
                                                                                            list[str]]:
    """The LMS columns to write, and the problems with the assignment mapping (unknown or left-out assignments)."""
    if assignment_mapping is None:
        return [AssignmentLink(name, name) for name in grades.assignments], []
    problems = []
    unknown = [link.assignment for link in assignment_mapping if link.assignment not in grades.max_scores]
    if unknown:
        problems.append(f"{_plural(len(unknown), 'assignment')} of the assignment mapping not in the gradebook "
                        f"(left out): {_listed(unknown)}")
    mapped = {link.assignment for link in assignment_mapping}
    left_out = [name for name in grades.assignments if name not in mapped]
    if left_out:
        problems.append(f"{_plural(len(left_out), 'gradebook assignment')} not in the assignment mapping "
                        f"(not exported): {_listed(left_out)}")
    return [link for link in assignment_mapping if link.assignment in grades.max_scores], problems


def export_grades(workdir: Path, lms: str, mapping: Path, *, assignments: Path | None = None,
                  db_url: str | None = None, out: Path | None = None, missing_as_zero: bool = False,
                  strict: bool = False, require_complete: bool = False, moodle_id_field: str = "email",
                  ) -> ExportResult:
    """Write the ``lms`` (``canvas`` or ``moodle``) grade import file for the course ``workdir``.

    The gradebook is ``db_url`` or :func:`default_db_url`; the file is ``out`` or
    ``WORKDIR/exports/<lms>-grades.csv``. Rows follow the student mapping's order and cover the mapped students
    the gradebook knows. Mismatches between the mappings and the gradebook, and grades still needing manual
    grading, become warnings; with ``strict`` (mismatches) or ``require_complete`` (manual grading) they raise
    :class:`LmsExportError` instead and nothing is written.
    """
    if lms not in LMS_NAMES:
        raise LmsExportError(f"unknown LMS {_shown(lms)!r} (one of {', '.join(LMS_NAMES)})")
    if moodle_id_field not in MOODLE_ID_FIELDS:
        raise LmsExportError(f"unknown Moodle identifier field {_shown(moodle_id_field)!r}")
    students = read_student_mapping(mapping)
    with open(mapping, encoding="utf-8-sig", newline="") as stream:
        mapping_columns = {name.strip().lower() for name in next(csv.reader(stream))}
    assignment_mapping = read_assignment_mapping(assignments) if assignments is not None else None
    grades = read_gradebook(db_url or default_db_url(workdir))

    columns, mismatches = _columns(grades, assignment_mapping)
    known = set(grades.students)
    unmapped = [student for student in grades.students if student not in {link.student_id for link in students}]
    if unmapped:
        mismatches.append(f"{_plural(len(unmapped), 'gradebook student')} not in the mapping (not exported): "
                          f"{_listed(unmapped)}")
    unknown = [link.student_id for link in students if link.student_id not in known]
    if unknown:
        mismatches.append(f"{_plural(len(unknown), 'mapping row')} for students the gradebook does not know "
                          f"(not exported): {_listed(unknown)}")
    if strict and mismatches:
        raise LmsExportError("--strict: " + "; ".join(mismatches))
    exported = [link for link in students if link.student_id in known]

    warnings = list(mismatches)
    exported_ids, exported_assignments = {link.student_id for link in exported}, {link.assignment for link in columns}
    ungraded = [entry for entry in grades.ungraded if entry[0] in exported_ids and entry[1] in exported_assignments]
    if ungraded:
        cells = [f"{student} {assignment} {cell}" for student, assignment, cell in ungraded]
        message = (f"{_plural(len(ungraded), 'grade')} still need manual grading (their current score is "
                   f"exported): {_listed(cells)}")
        if require_complete:
            raise LmsExportError("--require-complete: " + message)
        warnings.append(message)

    if lms == "canvas":
        table = canvas_rows(grades, exported, columns, missing_as_zero=missing_as_zero)
        header_rows = 2
    else:
        table = moodle_rows(grades, exported, columns, id_field=moodle_id_field, mapping_columns=mapping_columns,
                            missing_as_zero=missing_as_zero)
        header_rows = 1
    path = out or workdir / "exports" / f"{lms}-grades.csv"
    write_table(table, path)
    return ExportResult(path=path, rows=len(table) - header_rows, columns=len(columns), warnings=warnings)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cml-course export-lms``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("workdir", type=Path, help="the grading workdir (nbgrader course folder)")
    parser.add_argument("--lms", choices=LMS_NAMES, required=True, help="the LMS whose import format to write")
    parser.add_argument("--mapping", type=Path, required=True,
                        help="CSV with columns student_id (nbgrader), lms_id and optionally name, sis_user_id, "
                             "login_id, section, email")
    parser.add_argument("--assignments", type=Path, default=None,
                        help="CSV assignment,lms_name[,lms_id]: the LMS columns, in order (default: every "
                             "gradebook assignment under its nbgrader name)")
    parser.add_argument("--db", default=None,
                        help="SQLAlchemy URL of the gradebook (default: the one the course's nbgrader_config.py "
                             "names, else WORKDIR/gradebook.db)")
    parser.add_argument("--out", type=Path, default=None, help="the file to write (default: "
                                                               "WORKDIR/exports/<lms>-grades.csv)")
    parser.add_argument("--missing-as-zero", action="store_true",
                        help="write 0 for a missing submission instead of leaving the cell empty")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (exit 2) when the mappings and the gradebook disagree")
    parser.add_argument("--require-complete", action="store_true",
                        help="refuse (exit 2) while any exported grade still needs manual grading")
    parser.add_argument("--moodle-id-field", choices=tuple(MOODLE_ID_FIELDS), default="email",
                        help="how Moodle identifies students: email (mapping column email), username (login_id) "
                             "or idnumber (sis_user_id); lms_id when the mapping lacks that column")


def run(arguments: argparse.Namespace) -> int:
    """Run ``cml-course export-lms``: 0 when written (warnings printed), 2 when refused."""
    try:
        result = export_grades(arguments.workdir, arguments.lms, arguments.mapping,
                               assignments=arguments.assignments, db_url=arguments.db, out=arguments.out,
                               missing_as_zero=arguments.missing_as_zero, strict=arguments.strict,
                               require_complete=arguments.require_complete,
                               moodle_id_field=arguments.moodle_id_field)
    except LmsExportError as error:
        print(f"export-lms: {error}; nothing written", file=sys.stderr)
        return 2
    print(f"wrote {result.path}: {_plural(result.rows, 'student row')}, "
          f"{_plural(result.columns, 'grade column')} ({arguments.lms})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
