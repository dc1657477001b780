"""Item analysis of a grading run: how each grade cell and each check did across the class.

Pure computation on the parsed ``report.json`` (its ``submissions`` list), plus what the autograded notebooks say
about each grade cell (:class:`CellEvidence`, read by :mod:`cml.instructor.analytics.report`). No I/O here.

The population of an assignment is its submissions that were graded or flagged: a ``failed`` submission has no
scores to say anything about the items (it is counted in :class:`ScoreSummary` all the same).

*Discrimination* is the corrected item-total correlation: the Pearson correlation, over the students, between an
item's score and the student's autograded total *minus that item's own points* (for a check, its 0/1 pass against
the total minus the points of the check's cell). Near 1: the students who do well overall do well on the item;
near 0: passing it is unrelated to the rest; negative: the better students fail it (a suspect test).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CellEvidence",
    "CellStats",
    "CheckStats",
    "Flag",
    "MIN_STUDENTS_DISCRIMINATION",
    "MIN_STUDENTS_EASY",
    "MIN_STUDENTS_HARD",
    "LOW_DISCRIMINATION",
    "RESOURCE_METRICS",
    "ResourceStats",
    "ScoreSummary",
    "TOO_EASY_PASS_RATE",
    "TOO_HARD_ATTEMPTED_PASS_RATE",
    "TOO_HARD_OVERALL_PASS_RATE",
    "TOP_FAILURES",
    "AssignmentChecks",
    "CheckTally",
    "analyse_cells",
    "analyse_checks",
    "corrected_item_total",
    "failure_line",
    "flag_items",
    "resource_quantiles",
    "score_summaries",
    "tally_checks",
]

TOO_HARD_ATTEMPTED_PASS_RATE = 0.3
"""An item is too hard when fewer than this share of the students who attempted it pass it ..."""
TOO_HARD_OVERALL_PASS_RATE = 0.2
"""... or fewer than this share of all students."""
MIN_STUDENTS_HARD = 3
"""Too-hard needs at least this many students (one student's miss says nothing about the item)."""
TOO_EASY_PASS_RATE = 0.95
"""An item is too easy when more than this share of all students pass it ..."""
MIN_STUDENTS_EASY = 10
"""... and it has at least this many students (with fewer, 100 % is a small-class accident)."""
LOW_DISCRIMINATION = 0.2
"""An item discriminates badly below this corrected item-total correlation (a common rule of thumb) ..."""
MIN_STUDENTS_DISCRIMINATION = 10
"""... flagged only with at least this many students (the correlation of a handful is noise)."""
MIN_STUDENTS_CORRELATION = 5
"""Below this many students discrimination is undefined (``None``)."""
TOP_FAILURES = 3
"""How many of the most common failure messages an item keeps."""
FAILURE_LINE_CHARS = 200
"""A failure message is cut to its first line and to this many characters."""

RESOURCE_METRICS = ("seconds", "execution_seconds", "peak_memory_mb", "peak_disk_mb")
ITEM_STATUSES = ("graded", "flagged")
NOT_RUN = "not_run"
PASSED = "passed"
FAILED = "failed"


@dataclass(frozen=True)
class CellEvidence:
    """What a student's autograded notebook shows of one grade cell.

    ``attempted`` is ``None`` when the notebook does not tell (no such cell); ``error`` the cell's error output as
    ``ename: evalue`` (first line), or ``None``.
    """

    attempted: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class ScoreSummary:
    """Autograded totals of one assignment; ``fractions`` are ``code_score / max_code_score`` of the scored."""

    assignment: str
    n_graded: int
    n_flagged: int
    n_failed: int
    max_score: float
    fractions: list[float]
    mean: float | None
    median: float | None
    q1: float | None
    q3: float | None


@dataclass
class _ItemCommon:
    assignment: str
    notebook: str
    cell: str
    n_students: int
    n_attempted: int
    n_passed: int | None
    discrimination: float | None
    top_failures: list[tuple[str, int]]

    @property
    def attempt_rate(self) -> float | None:
        return self.n_attempted / self.n_students if self.n_students else None

    @property
    def pass_rate(self) -> float | None:
        """Among all students of the assignment."""
        return None if self.n_passed is None or not self.n_students else self.n_passed / self.n_students

    @property
    def pass_rate_attempted(self) -> float | None:
        """Among the students who attempted the item."""
        return None if self.n_passed is None or not self.n_attempted else self.n_passed / self.n_attempted


@dataclass
class CellStats(_ItemCommon):
    """One grade cell across the class. Manual (written) cells have no pass count, mean or discrimination."""

    cell_type: str = "code"
    max_score: float = 0.0
    mean_points: float | None = None

    @property
    def item(self) -> str:
        return self.cell


@dataclass
class CheckStats(_ItemCommon):
    """One check of an autograded cell across the class (pass = status ``passed``)."""

    check_id: str = ""
    hidden: bool = False

    @property
    def item(self) -> str:
        return self.check_id


@dataclass(frozen=True)
class ResourceStats:
    """Quantiles of one resource metric of one assignment (over the submissions that report it)."""

    assignment: str
    metric: str
    n: int
    median: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class Flag:
    """An item the instructor should look at; ``reason`` is one of ``too_hard``, ``too_easy``,
    ``low_discrimination``, ``negative_discrimination``; ``why`` says it in words with the numbers."""

    assignment: str
    kind: str  # "cell" or "check"
    cell: str
    item: str
    reason: str
    why: str


def failure_line(message: str | None) -> str:
    """The first non-empty line of a failure message, trimmed to ``FAILURE_LINE_CHARS``."""
    for line in (message or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= FAILURE_LINE_CHARS else line[:FAILURE_LINE_CHARS - 1] + "…"
    return ""


def corrected_item_total(item_scores: Sequence[float], totals: Sequence[float],
                         item_points: Sequence[float] | None = None) -> float | None:
    """Pearson correlation of ``item_scores`` with ``totals - item_points`` (``item_points`` defaults to the item
    scores themselves), or ``None`` with fewer than ``MIN_STUDENTS_CORRELATION`` students or zero variance."""
    item = np.asarray(item_scores, dtype=np.float64)
    rest = np.asarray(totals, dtype=np.float64) - np.asarray(item if item_points is None else item_points,
                                                              dtype=np.float64)
    if item.size < MIN_STUDENTS_CORRELATION:
        return None
    item_centred, rest_centred = item - item.mean(), rest - rest.mean()
    denominator = np.sqrt((item_centred ** 2).sum() * (rest_centred ** 2).sum())
    if not np.isfinite(denominator) or denominator <= 1e-12 * max(1.0, item.size):
        return None
    correlation = float((item_centred * rest_centred).sum() / denominator)
    return correlation if np.isfinite(correlation) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _records(submission: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    records = submission.get(key)
    return [record for record in records if isinstance(record, dict)] if isinstance(records, list) else []


def _by_assignment(submissions: Iterable[Mapping[str, Any]], statuses: tuple[str, ...] | None = ITEM_STATUSES
                   ) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for submission in submissions:
        if statuses is None or submission.get("status") in statuses:
            grouped[str(submission.get("assignment"))].append(submission)
    return dict(sorted(grouped.items()))


def _auto_cells(submission: Mapping[str, Any]) -> dict[str, float]:
    """Autograded points per grade cell name (manual cells left out)."""
    points = {}
    for cell in _records(submission, "cells"):
        score = _number(cell.get("auto_score"))
        if score is not None and not cell.get("needs_manual_grade"):
            points[str(cell.get("name"))] = score
    return points


def _quartiles(values: Sequence[float]) -> tuple[float | None, ...]:
    if not values:
        return None, None, None, None
    array = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return float(array.mean()), float(median), float(q1), float(q3)


def score_summaries(submissions: Iterable[Mapping[str, Any]]) -> list[ScoreSummary]:
    """Per assignment: counts by status and the distribution of autograded totals of the graded and flagged."""
    summaries = []
    for assignment, group in _by_assignment(submissions, statuses=None).items():
        statuses = Counter(submission.get("status") for submission in group)
        fractions, maxima = [], []
        for submission in group:
            score, maximum = _number(submission.get("code_score")), _number(submission.get("max_code_score"))
            if submission.get("status") in ITEM_STATUSES and score is not None and maximum:
                fractions.append(score / maximum)
                maxima.append(maximum)
        mean, median, q1, q3 = _quartiles(fractions)
        summaries.append(ScoreSummary(assignment, statuses["graded"], statuses["flagged"], statuses["failed"],
                                      max(maxima, default=0.0), fractions, mean, median, q1, q3))
    return summaries


def _top_counted(raw_counts: Mapping[Any, int]) -> list[tuple[str, int]]:
    """The most common failure lines, from counts of raw messages (each distinct message is trimmed once)."""
    counts: Counter[str] = Counter()
    for message, count in raw_counts.items():
        line = failure_line(str(message))
        if line:
            counts[line] += count
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_FAILURES]


def _top(messages: Iterable[str]) -> list[tuple[str, int]]:
    return _top_counted(Counter(messages))


def analyse_cells(submissions: Iterable[Mapping[str, Any]],
                  evidence: Mapping[tuple[str, str, str], CellEvidence] | None = None,
                  checks: Mapping[str, AssignmentChecks] | None = None) -> list[CellStats]:
    """One :class:`CellStats` per grade cell of each assignment, in the order of the cells' first appearance.

    ``evidence`` maps ``(student, assignment, cell)`` to what the autograded notebook shows. A code cell counts
    as attempted when any of its checks ran; without check records for it, when it scored or its notebook cell
    has an output other than ``NotImplementedError``. A written cell: when the notebook's answer is not the stub.
    A code cell passes with full points. ``checks`` is :func:`tally_checks` of the submissions, when already made.
    """
    evidence = evidence or {}
    checks = tally_checks(submissions) if checks is None else checks
    stats = []
    for assignment, indexed in checks.items():
        group = indexed.submissions
        layout: dict[str, Mapping[str, Any]] = {}
        for submission in group:
            for cell in _records(submission, "cells"):
                layout.setdefault(str(cell.get("name")), cell)
        cell_points = [_auto_cells(submission) for submission in group]
        totals = np.array([sum(points.values()) for points in cell_points])
        has_checks: dict[str, np.ndarray] = {}  # cell -> per student: has records of the cell's checks
        ran_checks: dict[str, np.ndarray] = {}  # cell -> per student: one of them ran
        for tally in indexed.tallies.values():
            cell_name = str(tally.first.get("cell"))
            seen, ran = _flags(tally.seen), _flags(tally.ran)
            has_checks[cell_name] = has_checks[cell_name] | seen if cell_name in has_checks else seen
            ran_checks[cell_name] = ran_checks[cell_name] | ran if cell_name in ran_checks else ran
        for name, first in layout.items():
            manual = bool(first.get("needs_manual_grade")) or first.get("cell_type") == "markdown"
            scores, attempts, messages = [], 0, []
            max_score = _number(first.get("max_score")) or 0.0
            has, ran = has_checks.get(name), ran_checks.get(name)
            for index, (submission, points) in enumerate(zip(group, cell_points)):
                student = str(submission.get("student"))
                seen = evidence.get((student, assignment, name), CellEvidence())
                score = 0.0 if manual else points.get(name, 0.0)
                scores.append(score)
                if manual:
                    attempted = bool(seen.attempted)
                elif has is not None and has[index]:
                    attempted = bool(ran[index])
                else:
                    attempted = score > 0 or bool(seen.attempted)
                attempts += attempted
                if seen.error and not manual:
                    messages.append(seen.error)
            if manual:
                stats.append(CellStats(assignment, str(first.get("notebook")), name, len(group), attempts, None,
                                       None, [], cell_type="markdown", max_score=max_score))
                continue
            score_array = np.asarray(scores)
            passed = int((score_array >= max_score - 1e-9).sum()) if max_score > 0 else int((score_array > 0).sum())
            stats.append(CellStats(assignment, str(first.get("notebook")), name, len(group), attempts, passed,
                                   corrected_item_total(score_array, totals), _top(messages), cell_type="code",
                                   max_score=max_score, mean_points=float(score_array.mean()) if group else None))
    return stats


class CheckTally:
    """One check's records over the students of an assignment (indices into the assignment's students), filled
    in one pass over the records: whether each student has a record (``seen``), ran it, passed it; the raw
    failure messages counted; and the failed values that carry a digest (for the clusters)."""

    __slots__ = ("first", "seen", "ran", "passed", "messages", "n_failed", "digests", "members", "records")

    def __init__(self, first: Mapping[str, Any], n_students: int) -> None:
        self.first = first
        self.seen = bytearray(n_students)
        self.ran = bytearray(n_students)
        self.passed = bytearray(n_students)
        self.messages: Counter[str] = Counter()
        self.n_failed = 0
        self.digests: list[str] = []
        self.members: list[int] = []
        self.records: list[Mapping[str, Any]] = []


@dataclass
class AssignmentChecks:
    """The check records of one assignment: its students (graded or flagged) and a tally per check id."""

    submissions: list[Mapping[str, Any]]
    tallies: dict[str, CheckTally]


def tally_checks(submissions: Iterable[Mapping[str, Any]]) -> dict[str, AssignmentChecks]:
    """The check records of each assignment, read once (the class's largest data: ~10 per cell per student)."""
    indexed = {}
    for assignment, group in _by_assignment(submissions).items():
        tallies: dict[str, CheckTally] = {}
        for index, submission in enumerate(group):
            records = submission.get("checks")
            for record in records if isinstance(records, list) else ():
                if not isinstance(record, dict):
                    continue
                check_id = record.get("id")
                if not isinstance(check_id, str):
                    check_id = str(check_id)
                tally = tallies.get(check_id)
                if tally is None:
                    tally = tallies[check_id] = CheckTally(record, len(group))
                tally.seen[index] = 1
                status = record.get("status")
                if status == NOT_RUN:
                    continue
                tally.ran[index] = 1
                if status == PASSED:
                    tally.passed[index] = 1
                    continue
                tally.messages[record.get("message") or ""] += 1
                if status == FAILED:
                    tally.n_failed += 1
                    digest = record.get("digest")
                    if isinstance(digest, str) and digest:
                        tally.digests.append(digest)
                        tally.members.append(index)
                        tally.records.append(record)
        indexed[assignment] = AssignmentChecks(group, tallies)
    return indexed


def _flags(array: bytearray) -> np.ndarray:
    return np.frombuffer(bytes(array), dtype=np.uint8).astype(bool)


def analyse_checks(submissions: Iterable[Mapping[str, Any]],
                   checks: Mapping[str, AssignmentChecks] | None = None) -> list[CheckStats]:
    """One :class:`CheckStats` per check id of each assignment (reports without ``checks`` give none); ``checks``
    is :func:`tally_checks` of the submissions, when already made.

    A student without a record of the check counts as not having run it.
    """
    stats = []
    for assignment, indexed in (tally_checks(submissions) if checks is None else checks).items():
        if not indexed.tallies:
            continue
        cell_points = [_auto_cells(submission) for submission in indexed.submissions]
        totals = np.array([sum(points.values()) for points in cell_points])
        points_of_cell: dict[str, np.ndarray] = {}
        for check_id, tally in indexed.tallies.items():
            cell = str(tally.first.get("cell"))
            passes = _flags(tally.passed).astype(np.float64)
            own_points = points_of_cell.get(cell)
            if own_points is None:
                own_points = points_of_cell[cell] = np.array([points.get(cell, 0.0) for points in cell_points])
            stats.append(CheckStats(assignment, str(tally.first.get("notebook")), cell, len(indexed.submissions),
                                    int(_flags(tally.ran).sum()), int(passes.sum()),
                                    corrected_item_total(passes, totals, own_points), _top_counted(tally.messages),
                                    check_id=check_id, hidden=bool(tally.first.get("hidden"))))
    return stats


def _percentiles(values: list[float]) -> tuple[float | None, float | None, float | None, float | None]:
    if not values:
        return None, None, None, None
    median, p90, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 90, 99])
    return float(median), float(p90), float(p99), float(max(values))


def resource_quantiles(submissions: Iterable[Mapping[str, Any]]) -> list[ResourceStats]:
    """Median, 90 %, 99 % and maximum of each of ``RESOURCE_METRICS`` per assignment (all statuses)."""
    stats = []
    for assignment, group in _by_assignment(submissions, statuses=None).items():
        for metric in RESOURCE_METRICS:
            values = [value for value in (_number(submission.get(metric)) for submission in group)
                      if value is not None]
            stats.append(ResourceStats(assignment, metric, len(values), *_percentiles(values)))
    return stats


def _percent(rate: float) -> str:
    return f"{100 * rate:.0f}%"


def _flags_of(item: CellStats | CheckStats, kind: str) -> list[Flag]:
    flags: list[Flag] = []

    def flag(reason: str, why: str) -> None:
        flags.append(Flag(item.assignment, kind, item.cell, item.item, reason, why))

    overall, attempted = item.pass_rate, item.pass_rate_attempted
    if overall is None:
        return flags
    if item.n_students >= MIN_STUDENTS_HARD:
        if overall < TOO_HARD_OVERALL_PASS_RATE:
            flag("too_hard", f"{_percent(overall)} of all {item.n_students} students pass it "
                             f"(threshold {_percent(TOO_HARD_OVERALL_PASS_RATE)})")
        elif attempted is not None and attempted < TOO_HARD_ATTEMPTED_PASS_RATE:
            flag("too_hard", f"{_percent(attempted)} of the {item.n_attempted} students who attempted it pass it "
                             f"(threshold {_percent(TOO_HARD_ATTEMPTED_PASS_RATE)})")
    if item.n_students >= MIN_STUDENTS_EASY and overall > TOO_EASY_PASS_RATE:
        flag("too_easy", f"{_percent(overall)} of all {item.n_students} students pass it "
                         f"(threshold {_percent(TOO_EASY_PASS_RATE)})")
    discrimination = item.discrimination
    if discrimination is not None and item.n_students >= MIN_STUDENTS_DISCRIMINATION:
        if discrimination < 0:
            flag("negative_discrimination", f"discrimination {discrimination:.2f} < 0: the students who do better "
                                            "on the rest of the assignment fail it more often (check the test)")
        elif discrimination < LOW_DISCRIMINATION:
            flag("low_discrimination", f"discrimination {discrimination:.2f} < {LOW_DISCRIMINATION}: passing it "
                                       "is nearly unrelated to the rest of the assignment")
    return flags


def flag_items(cells: Iterable[CellStats], checks: Iterable[CheckStats]) -> list[Flag]:
    """The items to review, with the reason in words (thresholds: the module constants)."""
    flags = [flag for cell in cells for flag in _flags_of(cell, "cell")]
    return flags + [flag for check in checks for flag in _flags_of(check, "check")]
