"""Pairs of students whose answers to one assignment are suspiciously alike: rare shared code, rare wrong values.

**Code.** Each answer cell gives winnowed fingerprints (:mod:`.code_fingerprints`); those that occur anywhere in
the release's version of the same cell (the starter code, MOSS's "base file") are removed. An inverted index
fingerprint -> students finds candidate pairs; a fingerprint held by more than
``max(2, common_fraction * n)`` of the ``n`` students is *common* and ignored. The default fraction, 0.1, keeps a
fingerprint that a group of three copiers shares in a class of 30, while the idioms a tenth of a class writes
the same way (the textbook one-line sigmoid, the lecture's training loop) stop linking everyone to everyone,
and each posting list stays short, so the pairs counted stay far fewer than ``n**2 / 2``.

``code_score = shared rare fingerprints / max(min(rare fingerprints of the two), MIN_FINGERPRINTS)``, in
``[0, 1]``: 1 when the smaller answer is wholly inside the larger. ``MIN_FINGERPRINTS`` keeps two students who
each wrote one short line from scoring 1.

**Wrong values.** Two students who failed a check with the same value (equal digest) that at most
:func:`rare_value_limit` students gave (2 in a class of up to 60, else 3) share a *rare wrong value*. Each is
evidence, and raises the ranking: ``combined = 1 - (1 - code_score) * prod(1 - weight)``, with weight 0.3 for a
hidden check (the student never saw its input) and 0.2 for a visible one. Two hidden ones alone give 0.51, above the default threshold 0.5; the
code score is always reported beside it. Pairs linked only by wrong values are reported too.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cml.instructor.analytics.code_fingerprints import (KGRAM_TOKENS, WINDOW, CellTokens, cell_salt, segment_kgrams,
                                                        segment_winnow, tokenize_cell)

__all__ = ["COMMON_FRACTION", "HIDDEN_VALUE_WEIGHT", "MIN_FINGERPRINTS", "VISIBLE_VALUE_WEIGHT", "AssignmentSimilarity",
           "CellMatch", "Evidence", "Pair", "WrongValue", "compare_assignment", "find_similar_pairs",
           "rare_value_limit"]

COMMON_FRACTION = 0.1
MIN_FINGERPRINTS = 5
HIDDEN_VALUE_WEIGHT = 0.3
VISIBLE_VALUE_WEIGHT = 0.2
MIN_SCORE = 0.1
"""Pairs below this combined score (and without evidence) are left out of the result."""


@dataclass(frozen=True)
class WrongValue:
    """A check a student failed with a value: its id, the value's digest, whether hidden, a preview (untrusted)."""

    check: str
    digest: str
    hidden: bool = False
    preview: str | None = None


@dataclass(frozen=True)
class Evidence:
    """A rare wrong value two students share: the check, whether hidden, the preview, how many students gave it."""

    check: str
    hidden: bool
    preview: str | None
    holders: int


@dataclass(frozen=True)
class CellMatch:
    """How many rare fingerprints two students share in one answer cell."""

    cell: str
    shared: int


@dataclass(frozen=True)
class Pair:
    """Two students of one assignment, ``student_a < student_b``, and why they look alike."""

    assignment: str
    student_a: str
    student_b: str
    code_score: float
    shared_fingerprints: int
    rare_fingerprints: tuple[int, int]
    wrong_value_evidence: tuple[Evidence, ...]
    combined_score: float
    cell_matches: tuple[CellMatch, ...]


@dataclass
class AssignmentSimilarity:
    """The ranked pairs of one assignment (highest ``combined_score`` first) and how they were found."""

    assignment: str
    pairs: list[Pair]
    students: int
    pairs_scored: int
    common_limit: float


def rare_value_limit(students: int) -> int:
    """At most this many students may share a wrong value for it to be evidence: 3, and fewer than 5% of the
    class, but always a pair. A wrong value a dozen students give is a common mistake (``cml-course report``
    clusters those), and in a class of 1,000 each such value would link 66 pairs that have nothing else in
    common; a value only two or three students give is hard to reach independently."""
    return max(2, min(3, math.ceil(0.05 * students) - 1))


@dataclass
class _Fingerprints:
    """Every student's winnowed fingerprints without the starter code's, as flat arrays sorted by student."""

    hashes: np.ndarray
    owners: np.ndarray
    cells: np.ndarray
    """Index into ``cell_names``."""
    cell_names: list[str]


def _fingerprint_class(students: Sequence[str], submissions: Mapping[str, Mapping[str, str]],
                       base: Mapping[str, str], k: int, window: int) -> _Fingerprints:
    """Tokenise every cell (once per distinct source), then hash and winnow the whole class in one pass."""
    cell_names = sorted({cell for student in students for cell in submissions[student]} | set(base))
    cell_index = {cell: position for position, cell in enumerate(cell_names)}
    salts = np.array([cell_salt(cell) for cell in cell_names], dtype=np.uint64)
    tokens: dict[str, CellTokens] = {}
    hashes, lengths, segment_cells, segment_owners = [], [], [], []
    for owner, student in enumerate(students):
        for cell, source in submissions[student].items():
            if source not in tokens:
                tokens[source] = tokenize_cell(source)
            cell_tokens = tokens[source]
            hashes.append(cell_tokens.hashes)
            lengths.append(len(cell_tokens.hashes))
            segment_cells.append(cell_index[cell])
            segment_owners.append(owner)
    segment_cells_array = np.array(segment_cells, dtype=np.int64)
    kgrams, segment = segment_kgrams(np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
                                     np.array(lengths, dtype=np.int64), salts[segment_cells_array], k)
    fingerprints, segment = segment_winnow(kgrams, segment, window)
    base_cells = list(base)
    if base_cells:
        base_tokens = [tokenize_cell(base[cell]).hashes for cell in base_cells]
        base_kgrams, _ = segment_kgrams(np.concatenate(base_tokens), np.array([len(t) for t in base_tokens]),
                                        salts[[cell_index[cell] for cell in base_cells]], k)
        keep = ~np.isin(fingerprints, base_kgrams)
        fingerprints, segment = fingerprints[keep], segment[keep]
    return _Fingerprints(fingerprints, np.array(segment_owners, dtype=np.int64)[segment],
                         segment_cells_array[segment], cell_names)


def _pair_counts(groups: np.ndarray, owners: np.ndarray, students: int) -> tuple[np.ndarray, np.ndarray]:
    """For owners sorted into runs of equal ``groups`` values: each pair of owners in a run, encoded
    ``a * students + b`` (a < b), and how many runs hold it. Runs of one size are expanded together."""
    if len(groups) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    codes = []
    for size in np.unique(sizes):
        if size < 2:
            continue
        members = owners[starts[sizes == size][:, None] + np.arange(size)]  # (runs, size)
        first, second = np.triu_indices(size, 1)
        low = np.minimum(members[:, first], members[:, second])
        high = np.maximum(members[:, first], members[:, second])
        codes.append((low * students + high).ravel())
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.unique(np.concatenate(codes), return_counts=True)


def _evidence(wrong_values: Mapping[str, Sequence[WrongValue]], index: Mapping[str, int]
              ) -> dict[tuple[int, int], list[Evidence]]:
    holders: dict[tuple[str, str], list[tuple[int, WrongValue]]] = defaultdict(list)
    for student, values in wrong_values.items():
        if student in index:
            for value in {value.check: value for value in values}.values():
                holders[value.check, value.digest].append((index[student], value))
    limit = rare_value_limit(len(index))
    found: dict[tuple[int, int], list[Evidence]] = defaultdict(list)
    for group in holders.values():
        if 2 <= len(group) <= limit:
            for (a, value), (b, _) in itertools.combinations(sorted(group, key=lambda item: item[0]), 2):
                found[a, b].append(Evidence(value.check, value.hidden, value.preview, len(group)))
    return found


def _combined(code_score: float, evidence: Sequence[Evidence]) -> float:
    remaining = 1.0 - code_score
    for item in evidence:
        remaining *= 1.0 - (HIDDEN_VALUE_WEIGHT if item.hidden else VISIBLE_VALUE_WEIGHT)
    return 1.0 - remaining


def compare_assignment(submissions: Mapping[str, Mapping[str, str]], base: Mapping[str, str], *,
                       assignment: str = "", wrong_values: Mapping[str, Sequence[WrongValue]] | None = None,
                       common_fraction: float = COMMON_FRACTION, min_score: float = MIN_SCORE,
                       brute_force: bool = False, k: int = KGRAM_TOKENS, window: int = WINDOW
                       ) -> AssignmentSimilarity:
    """Rank the pairs of ``submissions[student][cell] = source`` (see the module docstring).

    ``base[cell]`` is the starter code of each cell; ``wrong_values[student]`` the checks the student failed
    with a value. ``brute_force`` scores every pair the slow way with the same measure (a baseline for tests
    and benchmarks). Pairs below ``min_score`` without evidence are left out.
    """
    students = sorted(submissions)
    count = len(students)
    prints = _fingerprint_class(students, submissions, base, k, window)
    common_limit = max(2.0, common_fraction * count)
    order = np.argsort(prints.hashes, kind="stable")
    sorted_hashes = prints.hashes[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    holders_of = np.empty(len(order), dtype=np.int64)
    holders_of[order] = np.repeat(np.diff(np.r_[run_starts, len(order)]), np.diff(np.r_[run_starts, len(order)]))
    rare = holders_of <= common_limit
    rare_count = np.bincount(prints.owners[rare], minlength=count)
    # per student, its rare fingerprints sorted (the flat arrays are sorted by student, then cell)
    bounds = np.searchsorted(prints.owners[rare], np.arange(count + 1))
    rare_hashes, rare_cells = prints.hashes[rare], prints.cells[rare]

    if brute_force:
        by_student = [np.sort(rare_hashes[bounds[s]: bounds[s + 1]]) for s in range(count)]
        codes, shared = [], []
        for a, b in itertools.combinations(range(count), 2):
            codes.append(a * count + b)
            shared.append(len(np.intersect1d(by_student[a], by_student[b], assume_unique=True)))
        codes_array, shared_array = np.array(codes, dtype=np.int64), np.array(shared, dtype=np.int64)
    else:
        linking = rare & (holders_of >= 2)
        linking_sorted = order[linking[order]]
        codes_array, shared_array = _pair_counts(prints.hashes[linking_sorted], prints.owners[linking_sorted], count)
    evidence = _evidence(wrong_values or {}, {student: position for position, student in enumerate(students)})
    pairs_scored = len(codes_array) + sum(1 for a, b in evidence
                                          if not _contains(codes_array, a * count + b))

    smaller = np.minimum(rare_count[codes_array // count], rare_count[codes_array % count]) if count else codes_array
    code_scores = np.minimum(1.0, shared_array / np.maximum(smaller, MIN_FINGERPRINTS))
    candidates = {(int(code // count), int(code % count)): (int(share), float(score))
                  for code, share, score in zip(codes_array[code_scores >= min_score],
                                                shared_array[code_scores >= min_score],
                                                code_scores[code_scores >= min_score]) if share}
    for a, b in evidence:
        if (a, b) not in candidates:
            position = np.searchsorted(codes_array, a * count + b)
            found = _contains(codes_array, a * count + b)
            candidates[a, b] = (int(shared_array[position]), float(code_scores[position])) if found else (0, 0.0)

    pairs = []
    for (a, b), (share, code_score) in candidates.items():
        items = evidence.get((a, b), [])
        combined = _combined(code_score, items)
        if combined < min_score and not items:
            continue
        pairs.append(Pair(assignment, students[a], students[b], code_score, share,
                          (int(rare_count[a]), int(rare_count[b])), tuple(items), combined,
                          _cell_matches(rare_hashes, rare_cells, bounds, a, b, prints.cell_names)))
    pairs.sort(key=lambda pair: (-pair.combined_score, -pair.code_score, pair.student_a, pair.student_b))
    return AssignmentSimilarity(assignment, pairs, count, pairs_scored, common_limit)


def _contains(sorted_codes: np.ndarray, code: int) -> bool:
    position = np.searchsorted(sorted_codes, code)
    return bool(position < len(sorted_codes) and sorted_codes[position] == code)


def _cell_matches(hashes: np.ndarray, cells: np.ndarray, bounds: np.ndarray, a: int, b: int,
                  cell_names: list[str]) -> tuple[CellMatch, ...]:
    """The shared rare fingerprints of students ``a`` and ``b``, counted per cell."""
    _, in_a, _ = np.intersect1d(hashes[bounds[a]: bounds[a + 1]], hashes[bounds[b]: bounds[b + 1]],
                                assume_unique=True, return_indices=True)
    counts = Counter(cells[bounds[a] + in_a].tolist())
    return tuple(CellMatch(cell_names[cell], shared) for cell, shared in sorted(counts.items()))


def find_similar_pairs(submissions: Mapping[str, Mapping[str, str]], base: Mapping[str, str], *,
                       wrong_values: Mapping[str, Sequence[WrongValue]] | None = None, assignment: str = "",
                       common_fraction: float = COMMON_FRACTION, min_score: float = MIN_SCORE,
                       brute_force: bool = False) -> list[Pair]:
    """The ranked pairs of one assignment: :func:`compare_assignment` without the bookkeeping."""
    return compare_assignment(submissions, base, assignment=assignment, wrong_values=wrong_values,
                              common_fraction=common_fraction, min_score=min_score,
                              brute_force=brute_force).pairs
