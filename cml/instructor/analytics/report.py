"""``cml-course report RUN_OR_WORKDIR``: what a grading run says about the class, as one inert HTML page and CSVs.

Reads a run folder (``reports/<stamp>/report.json``; given a workdir, its latest run) and the run's autograded
notebooks (``WORKDIR/autograded/<student>/<assignment>/*.ipynb``: error outputs and answers of the grade cells),
computes the item analysis (:mod:`~cml.instructor.analytics.items`) and the clusters of identical wrong values
(:mod:`~cml.instructor.analytics.clusters`), names the clusters by the course's described wrong answers
(:func:`cml.instructor.analytics.casevalues.name_wrong_values`, unless ``--no-cases``), and writes into
``RUN_DIR/analysis/`` (or ``--out``): ``report.html`` (one file: figures are embedded PNGs, no script at all, a
strict Content-Security-Policy, every student text escaped and sanitised), ``scores.csv``, ``cells.csv``,
``checks.csv``, ``clusters.csv`` (with the member ids, for the instructor), ``resources.csv`` and ``flags.csv``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml.instructor.analytics.clusters import DEFAULT_MIN_CLUSTER, Cluster, find_clusters, name_clusters, wanted_values
from cml.instructor.analytics.items import (
    LOW_DISCRIMINATION,
    MIN_STUDENTS_DISCRIMINATION,
    MIN_STUDENTS_EASY,
    MIN_STUDENTS_HARD,
    TOO_EASY_PASS_RATE,
    TOO_HARD_ATTEMPTED_PASS_RATE,
    TOO_HARD_OVERALL_PASS_RATE,
    CellEvidence,
    CellStats,
    CheckStats,
    Flag,
    ResourceStats,
    ScoreSummary,
    analyse_cells,
    analyse_checks,
    failure_line,
    flag_items,
    resource_quantiles,
    score_summaries,
    tally_checks,
)
from cml.instructor.analytics.safe_output import PAGE_POLICY, spreadsheet_safe

__all__ = [
    "ANALYSIS_FOLDER",
    "Analysis",
    "ReportError",
    "add_arguments",
    "analyse_report",
    "build_report",
    "find_run_dir",
    "read_evidence",
    "run",
    "write_analysis",
]

ANALYSIS_FOLDER = "analysis"
ANSWER_STUB = "YOUR ANSWER HERE"
"""nbgrader's stub in a written (markdown) answer cell."""
NOTE_CHARS = 500
MAX_LABELLED_POINTS = 12
"""A scatter of items labels at most this many flagged ones (the figure stays readable in a large course)."""
MAX_CLUSTER_BARS = 15
MAX_CLUSTERS_SHOWN = 40
"""The page shows an assignment's largest clusters only (``clusters.csv`` has them all)."""
_TAG = re.compile(r"<[^>]*>")


class ReportError(Exception):
    """The run folder or workdir cannot be read."""


@dataclass
class Analysis:
    """Everything the page and the CSVs show of one run."""

    run_dir: Path
    report: Mapping[str, Any]
    summaries: list[ScoreSummary]
    cells: list[CellStats]
    checks: list[CheckStats]
    clusters: list[Cluster]
    resources: list[ResourceStats]
    flags: list[Flag]
    flagged_submissions: list[Mapping[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def assignments(self) -> list[str]:
        return [summary.assignment for summary in self.summaries]


# ---------------------------------------------------------------- reading

def find_run_dir(path: Path) -> Path:
    """``path`` when it holds ``report.json``; for a workdir, its latest ``reports/<stamp>/`` holding one."""
    if (path / "report.json").is_file():
        return path
    runs = sorted(run for run in (path / "reports").glob("*") if (run / "report.json").is_file()) \
        if (path / "reports").is_dir() else []
    if not runs:
        raise ReportError(f"{path} is neither a run folder (with report.json) nor a workdir with reports/<stamp>/")
    return runs[-1]


def workdir_of(run_dir: Path) -> Path | None:
    """The workdir a run folder belongs to (``WORKDIR/reports/<stamp>``), or ``None``."""
    return run_dir.parent.parent if run_dir.parent.name == "reports" else None


def _safe_name(name: Any) -> bool:
    """A student id or assignment usable as one path component (student ids are hostile)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not set(name) & {"/", "\\", "\0"}


def _source_text(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(part for part in source if isinstance(part, str)) if isinstance(source, list) else str(source)


def _written_answer(text: str) -> bool:
    """A written answer differs from the stub (the sanitiser stores student markdown as HTML: tags are dropped)."""
    plain = html.unescape(_TAG.sub(" ", text)).strip()
    return bool(plain) and plain != ANSWER_STUB


def _notebook_evidence(notebook: Mapping[str, Any]) -> dict[str, CellEvidence]:
    evidence = {}
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        if not isinstance(nbgrader, dict) or not nbgrader.get("grade") or not isinstance(nbgrader.get("grade_id"),
                                                                                               str):
            continue
        if cell.get("cell_type") == "markdown":
            evidence[nbgrader["grade_id"]] = CellEvidence(attempted=_written_answer(_source_text(cell)))
            continue
        outputs = [output for output in cell.get("outputs") or [] if isinstance(output, dict)]
        errors = [output for output in outputs if output.get("output_type") == "error"]
        error = None
        if errors:
            error = failure_line(f"{errors[0].get('ename', '')}: {errors[0].get('evalue', '')}".rstrip(": "))
        attempted = any(output.get("ename") != "NotImplementedError" for output in outputs)
        evidence[nbgrader["grade_id"]] = CellEvidence(attempted=attempted, error=error)
    return evidence


def read_evidence(workdir: Path | None, submissions: Iterable[Mapping[str, Any]]
                  ) -> tuple[dict[tuple[str, str, str], CellEvidence], list[str]]:
    """What each autograded notebook shows of its grade cells, keyed ``(student, assignment, cell)``, and a note
    for each notebook that could not be read."""
    evidence: dict[tuple[str, str, str], CellEvidence] = {}
    notes: list[str] = []
    if workdir is None or not (workdir / "autograded").is_dir():
        return evidence, notes
    root = workdir / "autograded"
    for submission in submissions:
        student, assignment = submission.get("student"), submission.get("assignment")
        if not (_safe_name(student) and _safe_name(assignment)):
            continue
        for path in sorted((root / student / assignment).glob("*.ipynb")):
            try:
                notebook = json.loads(path.read_text(encoding="utf-8"))
                found = _notebook_evidence(notebook)
            except (OSError, ValueError, AttributeError, TypeError) as error:
                notes.append(f"autograded notebook {path.name} of {student} ({assignment}) could not be read: "
                             f"{type(error).__name__}: {failure_line(str(error))}")
                continue
            for name, seen in found.items():
                evidence[student, assignment, name] = seen
    return evidence, notes


def _load_report(run_dir: Path) -> dict[str, Any]:
    try:
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{run_dir / 'report.json'} cannot be read: {error}") from error
    if not isinstance(report, dict) or not isinstance(report.get("submissions"), list):
        raise ReportError(f"{run_dir / 'report.json'} has no list of submissions")
    report["submissions"] = [entry for entry in report["submissions"] if isinstance(entry, dict)]
    return report


# ---------------------------------------------------------------- computing

def analyse_report(report: Mapping[str, Any], run_dir: Path, *,
                   evidence: Mapping[tuple[str, str, str], CellEvidence] | None = None,
                   case_names: Mapping[tuple[str, str, str], tuple[str, str]] | None = None,
                   min_cluster: int = DEFAULT_MIN_CLUSTER, notes: Sequence[str] = ()) -> Analysis:
    """The analysis of a parsed ``report.json``; ``case_names`` names the clusters (see :mod:`.clusters`)."""
    submissions = report.get("submissions", [])
    tallies = tally_checks(submissions)
    cells = analyse_cells(submissions, evidence, tallies)
    checks = analyse_checks(submissions, tallies)
    clusters = find_clusters(submissions, min_cluster, tallies)
    if case_names:
        clusters = name_clusters(clusters, case_names)
    flagged = [submission for submission in submissions if submission.get("status") in ("flagged", "failed")]
    return Analysis(run_dir, report, score_summaries(submissions), cells, checks, clusters,
                    resource_quantiles(submissions), flag_items(cells, checks), flagged, list(notes))


def _case_names(course_root: Path, run_dir: Path, clusters: list[Cluster]
                ) -> tuple[dict[tuple[str, str, str], tuple[str, str]], list[str]]:
    if not clusters:
        return {}, []
    try:
        from cml.instructor.analytics.casevalues import name_wrong_values
    except ImportError as error:
        return {}, [f"clusters not named: the described cases cannot be graded here ({error})"]
    try:
        return name_wrong_values(course_root, run_dir, wanted_values(clusters)), []
    except Exception as error:  # naming is a help: a failure of it must not lose the report
        return {}, [f"clusters not named: grading the described cases failed ({type(error).__name__}: "
                    f"{failure_line(str(error))})"]


# ---------------------------------------------------------------- writing: CSV

def _cell_text(value: Any) -> Any:
    """A CSV value: numbers as they are, ``None`` empty, text guarded against spreadsheet formulas."""
    if value.__class__ is str:
        return spreadsheet_safe(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (int, bool)):
        return value
    return _cell_text(str(value))


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([_cell_text(value) for value in row] for row in rows)


def _failures_text(failures: Sequence[tuple[str, int]]) -> str:
    return " | ".join(f"{count}x {message}" for message, count in failures)


def _write_csvs(analysis: Analysis, out: Path) -> None:
    _write_csv(out / "scores.csv", ["student", "assignment", "code_score", "max", "status"],
               ([submission.get("student"), submission.get("assignment"), submission.get("code_score"),
                 submission.get("max_code_score"), submission.get("status")]
                for submission in analysis.report.get("submissions", [])))
    common = ["n_students", "n_attempted", "attempt_rate", "n_passed", "pass_rate_all", "pass_rate_attempted"]
    _write_csv(out / "cells.csv", ["assignment", "notebook", "cell", "cell_type", "max_score", *common,
                                   "mean_points", "discrimination", "top_failures"],
               ([cell.assignment, cell.notebook, cell.cell, cell.cell_type, cell.max_score, cell.n_students,
                 cell.n_attempted, cell.attempt_rate, cell.n_passed, cell.pass_rate, cell.pass_rate_attempted,
                 cell.mean_points, cell.discrimination, _failures_text(cell.top_failures)] for cell in analysis.cells))
    _write_csv(out / "checks.csv", ["assignment", "notebook", "cell", "check_id", "hidden", *common,
                                    "discrimination", "top_failures"],
               ([check.assignment, check.notebook, check.cell, check.check_id, check.hidden, check.n_students,
                 check.n_attempted, check.attempt_rate, check.n_passed, check.pass_rate, check.pass_rate_attempted,
                 check.discrimination, _failures_text(check.top_failures)] for check in analysis.checks))
    _write_csv(out / "clusters.csv", ["assignment", "notebook", "cell", "check_id", "digest", "size", "n_failed",
                                      "share_of_failed", "example_value", "message", "case_name",
                                      "case_description", "members"],
               ([cluster.assignment, cluster.notebook, cluster.cell, cluster.check_id, cluster.digest, cluster.size,
                 cluster.n_failed, cluster.share, cluster.example_value, cluster.message, cluster.case_name,
                 cluster.case_description, " ".join(cluster.members)] for cluster in analysis.clusters))
    _write_csv(out / "resources.csv", ["assignment", "metric", "n", "median", "p90", "p99", "max"],
               ([row.assignment, row.metric, row.n, row.median, row.p90, row.p99, row.max]
                for row in analysis.resources))
    _write_csv(out / "flags.csv", ["assignment", "kind", "cell", "item", "reason", "why"],
               ([flag.assignment, flag.kind, flag.cell, flag.item, flag.reason, flag.why] for flag in analysis.flags))


# ---------------------------------------------------------------- writing: figures

def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)  # margins set by each figure: a tight bounding box draws twice
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(analysis: Analysis, assignment: str) -> list[tuple[str, str]]:
    """At most three ``(data URI, alt text)`` figures of one assignment, whatever the class size."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figures = []
    summary = next(summary for summary in analysis.summaries if summary.assignment == assignment)
    if summary.fractions:
        figure = Figure(figsize=(5, 3))
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.17, top=0.9)
        axes = figure.add_subplot()
        axes.hist([100 * fraction for fraction in summary.fractions], bins=20, range=(0, 100), color="#4477aa")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel="autograded score (% of maximum)", ylabel="students", title="Score distribution")
        figures.append((_png(figure), "histogram of autograded scores"))
    items = [item for item in (*analysis.cells, *analysis.checks)
             if item.assignment == assignment and item.pass_rate is not None and item.discrimination is not None]
    if items:
        flagged = {(flag.kind, flag.item) for flag in analysis.flags if flag.assignment == assignment}
        figure = Figure(figsize=(5, 3.5))
        figure.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.91)
        axes = figure.add_subplot()
        for kind, marker, colour in (("cell", "o", "#4477aa"), ("check", ".", "#66ccee")):
            chosen = [item for item in items if isinstance(item, CellStats) == (kind == "cell")]
            if chosen:
                axes.scatter([item.pass_rate for item in chosen], [item.discrimination for item in chosen],
                             marker=marker, color=colour, label=f"{kind}s")
        labelled = [item for item in items
                    if (("cell" if isinstance(item, CellStats) else "check"), item.item) in flagged]
        for item in sorted(labelled, key=lambda item: item.discrimination)[:MAX_LABELLED_POINTS]:
            axes.annotate(item.item[:30], (item.pass_rate, item.discrimination), fontsize=6, color="#aa3377")
        axes.axhline(LOW_DISCRIMINATION, color="grey", linestyle=":", linewidth=1)
        axes.set(xlabel="pass rate (all students)", ylabel="discrimination", xlim=(-0.05, 1.05),
                 title="Items: pass rate vs discrimination")
        axes.legend(fontsize=7)
        figures.append((_png(figure), "scatter of pass rate against discrimination"))
    clusters = [cluster for cluster in analysis.clusters if cluster.assignment == assignment][:MAX_CLUSTER_BARS]
    if clusters:
        height = 1.2 + 0.22 * len(clusters)
        figure = Figure(figsize=(6, height))
        figure.subplots_adjust(left=0.42, right=0.97, bottom=0.55 / height, top=1 - 0.35 / height)
        axes = figure.add_subplot()
        labels = [f"{cluster.check_id[:28]} #{index + 1}" for index, cluster in enumerate(clusters)]
        axes.barh(labels[::-1], [cluster.size for cluster in clusters][::-1], color="#ee6677")
        axes.tick_params(axis="y", labelsize=7)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel="students with the same wrong value", title="Largest clusters")
        figures.append((_png(figure), "bar chart of cluster sizes"))
    return figures


# ---------------------------------------------------------------- writing: HTML

def _text(value: Any) -> str:
    """Any text (student text included) escaped for HTML; the blocks holding it are sanitised by :func:`_inert`."""
    return html.escape(value if isinstance(value, str) else str(value))


def _inert(markup: str) -> str:
    """A block of our markup with escaped student text in it, passed through the sanitiser as well (it keeps
    tables, classes and ``data:`` images; it drops ids and in-page links, so headings and the contents are not
    passed through it: they hold no student text)."""
    from cml.instructor.web.sanitize import sanitize_html

    return sanitize_html(markup)


def _number(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] = frozenset(),
           classes: Sequence[str] | None = None) -> str:
    """A table; ``rows`` hold HTML already made safe; columns in ``numeric`` are right-aligned."""
    head = "".join(f'<th{" class=num" if index in numeric else ""}>{_text(name)}</th>'
                   for index, name in enumerate(header))
    body = []
    for row_index, row in enumerate(rows):
        row_class = f' class="{classes[row_index]}"' if classes and classes[row_index] else ""
        cells = "".join(f'<td{" class=num" if index in numeric else ""}>{value}</td>' for index, value in enumerate(row))
        body.append(f"<tr{row_class}>{cells}</tr>")
    if not body:
        return "<p class=none>None.</p>"
    return _inert(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _failures_html(failures: Sequence[tuple[str, int]]) -> str:
    return "<br>".join(f"{count}&times; <code>{_text(message)}</code>" for message, count in failures)


def _cluster_sentence(cluster: Cluster) -> str:
    sentence = (f"{_rate(cluster.share)} of the students who failed <code>{_text(cluster.check_id)}</code> returned "
                f"the same value ({cluster.size} students)")
    if cluster.case_name:
        sentence += f": case <code>{_text(cluster.case_name)}</code>: {_text(cluster.case_description or '')}"
    return sentence


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; line-height: 1.4 }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.85em }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; text-align: left }
th { background: #f0f0f0 } .num { text-align: right; font-variant-numeric: tabular-nums }
tr.negative td { background: #fbe3e3 } tr.flagged td { background: #fff6da }
code { font-size: 0.95em; overflow-wrap: break-word }
td { overflow-wrap: break-word; max-width: 40em } .none { color: #777 } img { margin: 0.3em 0.6em 0.3em 0 }
section.assignment { border-top: 2px solid #4477aa; margin-top: 2em } .note { color: #8a4b00 }
nav ul { columns: 2 } .explain { background: #f7f7f7; padding: 0.6em 1em; border-left: 3px solid #4477aa }
"""


def _how_to_read() -> str:
    return (
        "<div class=explain><h2 id=how>How to read this</h2><ul>"
        "<li><b>Pass rate</b> is given among <i>all</i> the students of the assignment (graded or flagged "
        "submissions) and among those who <i>attempted</i> the item (a check attempted: it ran; a code cell: one "
        "of its checks ran, or it scored, or its output is more than <code>NotImplementedError</code>; a written "
        "cell: its answer is not the stub). A code cell passes with full points.</li>"
        "<li><b>Discrimination</b> is the corrected item-total correlation: the correlation, over the students, "
        "between the item's score and the student's autograded total <i>without that item's points</i> (for a "
        "check: pass 0/1 against the total without its cell's points). Near 1: strong students pass it and weak "
        "ones fail it; near 0: passing it is unrelated to the rest; negative: the stronger students fail it "
        "more often, which usually means a faulty test. It is n/a below 5 students or when everyone scores "
        "the same.</li>"
        "<li>A <b>cluster</b> is a group of students who failed a check with the very same value (equal to 6 "
        "significant digits): one common mistake. Where a described wrong answer of the course produces that "
        "value, its name says what the mistake is. Student ids are only in <code>clusters.csv</code>.</li>"
        f"<li><b>Flagged items</b>: too hard: pass rate under {_rate(TOO_HARD_OVERALL_PASS_RATE)} of all "
        f"students or under {_rate(TOO_HARD_ATTEMPTED_PASS_RATE)} of those attempting (at least "
        f"{MIN_STUDENTS_HARD} students); too easy: over {_rate(TOO_EASY_PASS_RATE)} of all students pass (at "
        f"least {MIN_STUDENTS_EASY}); discriminating badly: under {LOW_DISCRIMINATION} (at least "
        f"{MIN_STUDENTS_DISCRIMINATION} students); negative discrimination is highlighted in red.</li>"
        "</ul></div>")


def _item_classes(items: Sequence[CellStats | CheckStats], flagged: set[tuple[str, str]], kind: str) -> list[str]:
    classes = []
    for item in items:
        if item.discrimination is not None and item.discrimination < 0:
            classes.append("negative")
        else:
            classes.append("flagged" if (kind, item.item) in flagged else "")
    return classes


def _assignment_html(analysis: Analysis, assignment: str, anchor: str) -> str:
    summary = next(summary for summary in analysis.summaries if summary.assignment == assignment)
    flags = [flag for flag in analysis.flags if flag.assignment == assignment]
    flagged = {(flag.kind, flag.item) for flag in flags}
    parts = [f'<section class=assignment><h2 id="{anchor}">{_text(assignment)}</h2>',
             f'<h3 id="{anchor}-scores">Score distribution</h3>',
             _table(["graded", "flagged", "failed", "max points", "mean", "median", "lower quartile",
                     "upper quartile"],
                    [[str(summary.n_graded), str(summary.n_flagged), str(summary.n_failed),
                      _number(summary.max_score, 1), _rate(summary.mean), _rate(summary.median), _rate(summary.q1),
                      _rate(summary.q3)]], numeric=set(range(8)))]
    parts += [f'<img alt="{html.escape(alt)}" src="{uri}">' for uri, alt in _figures(analysis, assignment)]
    cells = [cell for cell in analysis.cells if cell.assignment == assignment]
    parts += [f'<h3 id="{anchor}-cells">Grade cells</h3>',
              _table(["cell", "notebook", "type", "max", "attempted", "pass (all)", "pass (attempting)",
                      "mean points", "discrimination", "most common failures"],
                     [[f"<code>{_text(cell.cell)}</code>", _text(cell.notebook), _text(cell.cell_type),
                       _number(cell.max_score, 1), _rate(cell.attempt_rate), _rate(cell.pass_rate),
                       _rate(cell.pass_rate_attempted), _number(cell.mean_points), _number(cell.discrimination),
                       _failures_html(cell.top_failures)] for cell in cells],
                     numeric={3, 4, 5, 6, 7, 8}, classes=_item_classes(cells, flagged, "cell"))]
    checks = [check for check in analysis.checks if check.assignment == assignment]
    parts += [f'<h3 id="{anchor}-checks">Checks</h3>',
              _table(["check", "cell", "hidden", "attempted", "pass (all)", "pass (attempting)", "discrimination",
                      "most common failures"],
                     [[f"<code>{_text(check.check_id)}</code>", f"<code>{_text(check.cell)}</code>",
                       "yes" if check.hidden else "no", _rate(check.attempt_rate), _rate(check.pass_rate),
                       _rate(check.pass_rate_attempted), _number(check.discrimination),
                       _failures_html(check.top_failures)] for check in checks],
                     numeric={3, 4, 5, 6}, classes=_item_classes(checks, flagged, "check"))
              if checks else "<p class=none>This run's report has no check records (an older report).</p>"]
    clusters = [cluster for cluster in analysis.clusters if cluster.assignment == assignment]
    named = [cluster for cluster in clusters if cluster.case_name]
    parts.append(f'<h3 id="{anchor}-clusters">Clusters of identical wrong values</h3>')
    if named:
        parts.append(_inert("<ul>" + "".join(f"<li>{_cluster_sentence(cluster)}</li>"
                                             for cluster in named[:MAX_CLUSTERS_SHOWN]) + "</ul>"))
    parts.append(_table(["check", "cell", "students", "share of those failing", "example value", "failure message",
                         "described case"],
                        [[f"<code>{_text(cluster.check_id)}</code>", f"<code>{_text(cluster.cell)}</code>",
                          str(cluster.size), _rate(cluster.share), f"<code>{_text(cluster.example_value)}</code>",
                          _text(cluster.message),
                          (f"<code>{_text(cluster.case_name)}</code>: {_text(cluster.case_description or '')}"
                           if cluster.case_name else "&mdash;")] for cluster in clusters[:MAX_CLUSTERS_SHOWN]],
                        numeric={2, 3}))
    if len(clusters) > MAX_CLUSTERS_SHOWN:
        parts.append(f"<p>The {MAX_CLUSTERS_SHOWN} largest of {len(clusters)} clusters; all are in "
                     "<code>clusters.csv</code>.</p>")
    resources = [row for row in analysis.resources if row.assignment == assignment]
    parts += [f'<h3 id="{anchor}-resources">Time and memory</h3>',
              _table(["metric", "submissions", "median", "90%", "99%", "max"],
                     [[_text(row.metric), str(row.n), _number(row.median), _number(row.p90), _number(row.p99),
                       _number(row.max)] for row in resources], numeric={1, 2, 3, 4, 5})]
    submissions = [submission for submission in analysis.flagged_submissions
                   if str(submission.get("assignment")) == assignment]
    parts += [f'<h3 id="{anchor}-flagged">Flagged and failed submissions</h3>',
              _table(["student", "status", "notes"],
                     [[_text(str(submission.get("student"))[:NOTE_CHARS]), _text(submission.get("status")),
                       "<br>".join(_text(str(note)[:NOTE_CHARS]) for note in submission.get("notes") or []
                                   if note is not None)]
                      for submission in submissions])]
    parts += [f'<h3 id="{anchor}-review">Items flagged for review</h3>',
              _table(["item", "kind", "cell", "reason", "why"],
                     [[f"<code>{_text(flag.item)}</code>", flag.kind, f"<code>{_text(flag.cell)}</code>",
                       _text(flag.reason.replace("_", " ")), _text(flag.why)] for flag in flags],
                     classes=["negative" if flag.reason == "negative_discrimination" else "" for flag in flags])]
    parts.append("</section>")
    return "\n".join(parts)


def _page(analysis: Analysis) -> str:
    report = analysis.report
    anchors = {assignment: f"a{index}" for index, assignment in enumerate(analysis.assignments)}
    toc = []
    for assignment, anchor in anchors.items():
        sections = "".join(f'<a href="#{anchor}-{key}">{label}</a> ' for key, label in (
            ("scores", "scores"), ("cells", "cells"), ("checks", "checks"), ("clusters", "clusters"),
            ("resources", "time"), ("flagged", "flagged"), ("review", "review")))
        toc.append(f'<li><a href="#{anchor}">{_text(assignment)}</a> &middot; <small>{sections}</small></li>')
    notes = [*(str(note) for note in report.get("run_notes") or []), *analysis.notes]
    meta = (f"run {_text(report.get('started', analysis.run_dir.name))}, "
            f"{len(report.get('submissions', []))} submissions, {len(analysis.assignments)} assignments, "
            f"grading seed {_text(report.get('grading_seed', 'n/a'))}")
    body = "\n".join([
        f"<h1>Grading run report</h1><p>{meta}</p>",
        _inert("<ul class=note>" + "".join(f"<li>{_text(note[:NOTE_CHARS])}</li>" for note in notes) + "</ul>")
        if notes else "",
        _how_to_read(),
        "<nav><h2>Assignments</h2><ul>" + "".join(toc) + "</ul></nav>",
        *(_assignment_html(analysis, assignment, anchor) for assignment, anchor in anchors.items()),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{PAGE_POLICY}">'
            f"<title>Grading run report</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_analysis(analysis: Analysis, out: Path) -> Path:
    """Write ``report.html`` and the CSVs into ``out``; the path of ``report.html``."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csvs(analysis, out)
    page = out / "report.html"
    page.write_text(_page(analysis), encoding="utf-8")
    return page


def build_report(run_or_workdir: Path, out: Path | None = None, *, name_cases: bool = True,
                 course_root: Path | None = None,
                 case_names: Mapping[tuple[str, str, str], tuple[str, str]] | None = None,
                 min_cluster: int = DEFAULT_MIN_CLUSTER) -> Path:
    """Analyse a run folder or a workdir's latest run; the path of the ``report.html`` written.

    ``case_names`` given: the clusters are named from it; otherwise, with ``name_cases``, by grading the described
    cases of ``course_root`` (the current directory by default).
    """
    run_dir = find_run_dir(Path(run_or_workdir))
    report = _load_report(run_dir)
    evidence, notes = read_evidence(workdir_of(run_dir), report["submissions"])
    analysis = analyse_report(report, run_dir, evidence=evidence, case_names=case_names, min_cluster=min_cluster,
                              notes=notes)
    if case_names is None and name_cases:
        found, problems = _case_names(Path(course_root or Path.cwd()), run_dir, analysis.clusters)
        analysis.clusters = name_clusters(analysis.clusters, found)
        analysis.notes += problems
    return write_analysis(analysis, out or run_dir / ANALYSIS_FOLDER)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cml-course report``."""
    parser.add_argument("run_or_workdir", type=Path, metavar="RUN_OR_WORKDIR",
                        help="a run folder (holding report.json) or a workdir (its latest reports/<stamp>/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/analysis/)")
    parser.add_argument("--no-cases", action="store_true",
                        help="do not name the clusters by grading the described wrong answers (faster)")
    parser.add_argument("--min-cluster", type=int, default=DEFAULT_MIN_CLUSTER,
                        help="students sharing a wrong value to form a cluster (default: %(default)s)")


def run(arguments: argparse.Namespace) -> int:
    """``cml-course report``: write the analysis and print the path of ``report.html``."""
    try:
        page = build_report(arguments.run_or_workdir, arguments.out, name_cases=not arguments.no_cases,
                            course_root=getattr(arguments, "root", None), min_cluster=arguments.min_cluster)
    except ReportError as error:
        print(f"cml-course report: {error}", file=sys.stderr)
        return 2
    print(page)
    return 0
