"""The similarity report's files: ``similarity.csv`` (every listed pair) and ``similarity.html`` (the pairs at or
above the threshold, each with its answer cells side by side and the shared lines marked).

Everything a student wrote (ids, code, values) is escaped, the page body passes through
:func:`~cml.instructor.web.sanitize.sanitize_html`, and the page forbids every script by its Content-Security-Policy.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cml.instructor.analytics.code_fingerprints import kgram_hashes, matched_lines, tokenize_cell
from cml.instructor.analytics.copy_detection import HIDDEN_VALUE_WEIGHT, MIN_FINGERPRINTS, VISIBLE_VALUE_WEIGHT, Pair
from cml.instructor.analytics.safe_output import PAGE_POLICY, spreadsheet_safe
from cml.instructor.web.sanitize import sanitize_html

__all__ = ["CSV_COLUMNS", "DEFAULT_THRESHOLD", "MAX_DETAILED_PAIRS", "cell_view", "write_csv", "write_html"]

DEFAULT_THRESHOLD = 0.5
"""Half of the smaller answer's rare code shared (or two rare hidden wrong values): worth a human look."""
MAX_DETAILED_PAIRS = 200
MAX_SHOWN_LINES = 400
MAX_LINE_CHARS = 300
CSV_COLUMNS = ("assignment", "student_a", "student_b", "combined", "code_score", "shared", "evidence")
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 110em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; text-align: left; }
table.side { width: 100%; table-layout: fixed; }
pre { margin: 0; font-size: 0.85em; white-space: pre-wrap; overflow-wrap: anywhere; }
mark { background: #ffd27f; }
.ln { color: #999; }
.note { color: #a40; }
"""


def _cell_text(value: object) -> str:
    """A CSV field a spreadsheet will not run as a formula."""
    return spreadsheet_safe(str(value))


def _evidence_text(pair: Pair) -> str:
    return "; ".join(f"{item.check}{' (hidden)' if item.hidden else ''}: {(item.preview or '')[:80]}"
                     for item in pair.wrong_value_evidence)


def write_csv(pairs: Sequence[Pair], path: Path) -> Path:
    """One row per pair, highest combined score first; returns ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for pair in pairs:
            writer.writerow([_cell_text(pair.assignment), _cell_text(pair.student_a), _cell_text(pair.student_b),
                             f"{pair.combined_score:.3f}", f"{pair.code_score:.3f}", pair.shared_fingerprints,
                             _cell_text(_evidence_text(pair))])
    return path


def _lines_markup(source: str, marked: set[int]) -> str:
    lines = source.split("\n")
    shown = []
    for number, line in enumerate(lines[:MAX_SHOWN_LINES], start=1):
        text = html.escape(line[:MAX_LINE_CHARS] + ("…" if len(line) > MAX_LINE_CHARS else ""))
        text = f"<mark>{text}</mark>" if number in marked else text
        shown.append(f'<span class="ln">{number:4d}</span> {text}')
    if len(lines) > MAX_SHOWN_LINES:
        shown.append(f"… {len(lines) - MAX_SHOWN_LINES} more lines")
    return "<pre>" + "\n".join(shown) + "</pre>"


def cell_view(cell: str, source_a: str, source_b: str, base: str | None) -> tuple[set[int], set[int]]:
    """The lines of each source covered by a k-gram the two share and the starter code does not."""
    tokens_a, tokens_b = tokenize_cell(source_a, with_lines=True), tokenize_cell(source_b, with_lines=True)
    hashes_a, hashes_b = kgram_hashes(tokens_a, cell), kgram_hashes(tokens_b, cell)
    shared = np.intersect1d(hashes_a, hashes_b)
    if base is not None:
        shared = np.setdiff1d(shared, kgram_hashes(tokenize_cell(base), cell))
    return matched_lines(tokens_a, hashes_a, shared), matched_lines(tokens_b, hashes_b, shared)


def _pair_markup(pair: Pair, sources: Mapping[str, Mapping[str, Mapping[str, str]]],
                 base: Mapping[str, Mapping[str, str]]) -> str:
    escape = html.escape
    parts = [f"<h2>{escape(pair.assignment)}: {escape(pair.student_a)} ~ {escape(pair.student_b)}</h2>",
             f"<p>combined {pair.combined_score:.2f}; code {pair.code_score:.2f} "
             f"({pair.shared_fingerprints} shared of {pair.rare_fingerprints[0]} and {pair.rare_fingerprints[1]} "
             "rare fingerprints)</p>"]
    if pair.wrong_value_evidence:
        items = "".join(f"<li><code>{escape(item.check)}</code>{' (hidden)' if item.hidden else ''}: "
                        f"<code>{escape(item.preview or '(no preview)')}</code>, given by {item.holders} students</li>"
                        for item in pair.wrong_value_evidence)
        parts.append(f"<p>Rare wrong values both gave:</p><ul>{items}</ul>")
    if not pair.cell_matches:
        parts.append("<p>No rare code shared.</p>")
    cells_a = sources.get(pair.assignment, {}).get(pair.student_a, {})
    cells_b = sources.get(pair.assignment, {}).get(pair.student_b, {})
    for match in pair.cell_matches:
        source_a, source_b = cells_a.get(match.cell, ""), cells_b.get(match.cell, "")
        lines_a, lines_b = cell_view(match.cell, source_a, source_b, base.get(pair.assignment, {}).get(match.cell))
        parts.append(f"<h3>cell <code>{escape(match.cell)}</code>: {match.shared} shared fingerprints</h3>"
                     f'<table class="side"><tr><th>{escape(pair.student_a)}</th><th>{escape(pair.student_b)}</th></tr>'
                     f"<tr><td>{_lines_markup(source_a, lines_a)}</td><td>{_lines_markup(source_b, lines_b)}</td>"
                     "</tr></table>")
    return "\n".join(parts)


def write_html(pairs: Sequence[Pair], sources: Mapping[str, Mapping[str, Mapping[str, str]]],
               base: Mapping[str, Mapping[str, str]], path: Path, *, threshold: float = DEFAULT_THRESHOLD,
               notes: Sequence[str] = ()) -> Path:
    """The page: how to read it, notes, the summary of pairs at or above ``threshold``, then each side by side.

    ``sources[assignment][student][cell]`` and ``base[assignment][cell]`` are the compared cells. Returns ``path``.
    """
    escape = html.escape
    shown = [pair for pair in pairs if pair.combined_score >= threshold]
    body = ["<h1>Similar submissions</h1>",
            f"<p>Pairs with a combined score of at least {threshold:g}, highest first. <b>Code score</b>: rare "
            "fingerprints (winnowed 5-token runs, names and layout ignored, starter code removed, code shared by "
            "more than a tenth of the class ignored) the two share, over the smaller student's count (at least "
            f"{MIN_FINGERPRINTS}). <b>Combined</b>: 1 - (1 - code) x (1 - w) for each rare wrong value both gave "
            f"(w = {HIDDEN_VALUE_WEIGHT} for a hidden check, {VISIBLE_VALUE_WEIGHT} for a visible one). "
            "A high score is a reason to read the two side by side, not a verdict.</p>"]
    if notes:
        body.append('<ul class="note">' + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    if not shown:
        body.append("<p>No pair reaches the threshold.</p>")
    else:
        rows = "".join(f"<tr><td>{rank}</td><td>{escape(pair.assignment)}</td><td>{escape(pair.student_a)}</td>"
                       f"<td>{escape(pair.student_b)}</td><td>{pair.combined_score:.2f}</td>"
                       f"<td>{pair.code_score:.2f}</td><td>{pair.shared_fingerprints}</td>"
                       f"<td>{len(pair.wrong_value_evidence)}</td></tr>"
                       for rank, pair in enumerate(shown, start=1))
        body.append("<table><tr><th>#</th><th>assignment</th><th>student A</th><th>student B</th><th>combined</th>"
                    f"<th>code</th><th>shared</th><th>rare wrong values</th></tr>{rows}</table>")
        body.extend(_pair_markup(pair, sources, base) for pair in shown[:MAX_DETAILED_PAIRS])
        if len(shown) > MAX_DETAILED_PAIRS:
            body.append(f"<p>… {len(shown) - MAX_DETAILED_PAIRS} more pairs in similarity.csv.</p>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{PAGE_POLICY}">'
            f"<title>Similar submissions</title><style>{_STYLE}</style></head>\n<body>\n"
            + sanitize_html("\n".join(body)) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
