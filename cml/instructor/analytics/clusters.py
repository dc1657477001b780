"""Clusters of identical wrong values: many students failing a check with the very same value.

A check record's ``digest`` identifies the student's value (equal digests: values equal to about six significant
digits). For each check, the ``failed`` records with the same non-null digest form a cluster when at least
``min_size`` students share it: one common mistake, worth one explanation to the whole class. The described wrong
answers of the course (``tests/submissions/``) can name the mistake: ``case_names`` maps
``(assignment, check_id, digest)`` to ``(case_name, case_description)``. Pure computation, no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cml.instructor.analytics.items import AssignmentChecks, CheckTally, failure_line, tally_checks

__all__ = ["Cluster", "DEFAULT_MIN_CLUSTER", "EXAMPLE_CHARS", "find_clusters", "name_clusters", "wanted_values"]

DEFAULT_MIN_CLUSTER = 2
EXAMPLE_CHARS = 300
"""The example value shown of a cluster is cut to this many characters."""

WrongValue = tuple[str, str, str]
"""``(assignment, check_id, digest)``."""


@dataclass(frozen=True)
class Cluster:
    """Students who failed one check with the same value; ``share`` = ``len(members) / n_failed`` (the students
    who failed the check); ``members`` are student ids, for the instructor's CSV only."""

    assignment: str
    notebook: str
    cell: str
    check_id: str
    digest: str
    members: tuple[str, ...]
    n_failed: int
    example_value: str
    message: str
    case_name: str | None = None
    case_description: str | None = None

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def share(self) -> float:
        return self.size / self.n_failed if self.n_failed else 0.0

    @property
    def key(self) -> WrongValue:
        return self.assignment, self.check_id, self.digest


def find_clusters(submissions: Iterable[Mapping[str, Any]], min_size: int = DEFAULT_MIN_CLUSTER,
                  checks: Mapping[str, AssignmentChecks] | None = None) -> list[Cluster]:
    """The clusters of every check of every assignment (graded and flagged submissions), largest first (then by
    assignment and check); ``checks`` is :func:`~.items.tally_checks` of the submissions, when already made."""
    clusters = []
    for assignment, indexed in (tally_checks(submissions) if checks is None else checks).items():
        students = [str(submission.get("student")) for submission in indexed.submissions]
        for check_id, tally in indexed.tallies.items():
            clusters += _check_clusters(assignment, check_id, tally, students, max(min_size, 2))
    return sorted(clusters, key=lambda cluster: (-len(cluster.members), cluster.assignment, cluster.check_id,
                                                 cluster.digest))


def _check_clusters(assignment: str, check_id: str, tally: CheckTally, students: list[str],
                    min_size: int) -> list[Cluster]:
    shared = {digest for digest, count in Counter(tally.digests).items() if count >= min_size}
    if not shared:
        return []
    members: dict[str, list[tuple[str, Mapping[str, Any]]]] = defaultdict(list)
    for digest, index, record in zip(tally.digests, tally.members, tally.records):
        if digest in shared:
            members[digest].append((students[index], record))
    clusters = []
    for digest, pairs in members.items():
        ids = sorted({student for student, _ in pairs})
        if len(ids) < min_size:
            continue
        first = next(record for student, record in pairs if student == ids[0])
        example = str(first.get("value") or "")
        if len(example) > EXAMPLE_CHARS:
            example = example[:EXAMPLE_CHARS - 1] + "…"
        clusters.append(Cluster(assignment, str(first.get("notebook")), str(first.get("cell")), check_id,
                                digest, tuple(ids), tally.n_failed, example, _common_message(pairs)))
    return clusters


def _common_message(pairs: list[tuple[str, Mapping[str, Any]]]) -> str:
    """The most common failure line of a cluster's records (the first in order among equals)."""
    raw: dict[Any, int] = {}
    for _, record in pairs:
        message = record.get("message") or ""
        raw[message] = raw.get(message, 0) + 1
    if len(raw) == 1:
        return failure_line(str(next(iter(raw))))
    lines: Counter[str] = Counter()
    for message, count in raw.items():
        lines[failure_line(str(message))] += count
    return min(lines.items(), key=lambda pair: (-pair[1], pair[0]))[0]


def wanted_values(clusters: Iterable[Cluster]) -> set[WrongValue]:
    """The ``(assignment, check_id, digest)`` of each cluster: what to ask the described cases to name."""
    return {cluster.key for cluster in clusters}


def name_clusters(clusters: Iterable[Cluster], case_names: Mapping[WrongValue, tuple[str, str]]) -> list[Cluster]:
    """The clusters with the name and description of the described case that produces their value, where known."""
    named = []
    for cluster in clusters:
        case = case_names.get(cluster.key)
        named.append(replace(cluster, case_name=case[0], case_description=case[1]) if case else cluster)
    return named
