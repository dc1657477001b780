"""``cml-course report``: item analysis, clusters of identical wrong values, and the inert page and CSVs.

A synthetic class of 20 students whose ability is known (student ``k`` scores ``k`` points on a skill cell), with
planted items: one everyone passes, one nobody passes (four of them with the same wrong value, a named case), one
whose pass is unrelated to ability. The numbers are checked against independent NumPy calculations.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nbgrader")

from cml.instructor.analytics import report as report_module  # noqa: E402
from cml.instructor.analytics.clusters import find_clusters, name_clusters  # noqa: E402
from cml.instructor.analytics.items import (  # noqa: E402
    analyse_cells,
    analyse_checks,
    corrected_item_total,
    flag_items,
    resource_quantiles,
    score_summaries,
)

N_STUDENTS = 20
ASSIGNMENT = "a1"
HOSTILE_ID = "<script>alert('id')</script>"
HOSTILE_VALUE = "<script>alert('value')</script>"
CLUSTER_DIGEST = "d" * 16
CASE = ("hard_wrong_sign", "hard returns -x instead of x")
CASE_NAMES = {(ASSIGNMENT, "hard.value", CLUSTER_DIGEST): CASE}
RANDOM_PASSERS = {k for k in range(N_STUDENTS) if k % 4 in (0, 3)}  # mean ability of passers = of the others


def student_id(k: int) -> str:
    return HOSTILE_ID if k == 5 else f"s{k:02d}"


def cell(name: str, score: float | None, max_score: float, cell_type: str = "code") -> dict:
    return {"notebook": ASSIGNMENT, "name": name, "auto_score": score, "max_score": max_score,
            "needs_manual_grade": cell_type == "markdown", "cell_type": cell_type}


def check(cell_name: str, check_id: str, status: str, digest: str | None = None, value: str | None = None,
          message: str = "") -> dict:
    return {"notebook": ASSIGNMENT, "cell": cell_name, "id": check_id, "hidden": True, "status": status,
            "digest": digest, "value": value, "message": message}


def core(k: int) -> int:
    """Points on a second cell that measures ability."""
    return min(k // 2, 9)


def submission(k: int) -> dict:
    random_pass = k in RANDOM_PASSERS
    cells = [cell("test_easy", 1.0, 1.0), cell("test_hard", 0.0, 2.0), cell("test_random", float(random_pass), 1.0),
             cell("test_skill", float(k), 19.0), cell("test_core", float(core(k)), 9.0),
             cell("essay", None, 2.0, "markdown")]
    hard = (check("test_hard", "hard.value", "failed", CLUSTER_DIGEST, HOSTILE_VALUE, "=HYPERLINK wrong sign")
            if k < 4 else check("test_hard", "hard.value", "failed", f"{k:016x}", str(k), f"wrong value {k}"))
    checks = [check("test_easy", "easy.value", "passed"), hard,
              check("test_random", "random.ok", "passed" if random_pass else "failed", message="unlucky"),
              check("test_skill", "skill.partial", "passed" if k >= 10 else "failed", message="too weak")]
    return {"student": student_id(k), "assignment": ASSIGNMENT, "status": "flagged" if k == 5 else "graded",
            "code_score": 1.0 + random_pass + k + core(k), "max_code_score": 32.0, "seconds": 10.0 + k,
            "execution_seconds": 5.0 + k, "peak_memory_mb": 100.0 + 10 * k, "peak_disk_mb": 0.0,
            "notes": ["<script>evil()</script> timed out"] if k == 5 else [], "cells": cells, "checks": checks}


def class_report() -> dict:
    failed = {"student": "s99", "assignment": ASSIGNMENT, "status": "failed", "code_score": None,
              "max_code_score": 32.0, "seconds": 1.0, "notes": ["kernel died"], "cells": [], "checks": []}
    return {"started": "20261130-000000", "grading_seed": 7, "run_notes": [],
            "submissions": [submission(k) for k in range(N_STUDENTS)] + [failed]}


def by_item(items):
    return {item.item: item for item in items}


def test_discrimination_is_the_corrected_item_total_correlation():
    item = np.array([1, 0, 1, 1, 0, 1, 0], dtype=float)
    totals = np.array([9, 3, 7, 8, 4, 5, 6], dtype=float)
    expected = np.corrcoef(item, totals - item)[0, 1]
    assert corrected_item_total(item, totals) == pytest.approx(expected, rel=1e-12)
    own = 2 * item
    assert corrected_item_total(item, totals, own) == pytest.approx(np.corrcoef(item, totals - own)[0, 1], rel=1e-12)
    assert corrected_item_total(item[:4], totals[:4]) is None  # fewer than 5 students
    assert corrected_item_total(np.ones(7), totals) is None  # zero variance


def test_cells_checks_and_scores_against_independent_calculations():
    submissions = class_report()["submissions"]
    cells = by_item(analyse_cells(submissions))
    checks = by_item(analyse_checks(submissions))
    ability = np.arange(N_STUDENTS, dtype=float)
    random_pass = np.array([k in RANDOM_PASSERS for k in range(N_STUDENTS)], dtype=float)
    totals = 1.0 + random_pass + ability + np.array([core(k) for k in range(N_STUDENTS)])

    assert cells["test_easy"].n_students == N_STUDENTS  # the failed submission is not an item's student
    assert cells["test_easy"].pass_rate == 1.0 and cells["test_hard"].pass_rate == 0.0
    assert cells["test_hard"].attempt_rate == 1.0  # its check ran for everyone
    assert cells["test_hard"].pass_rate_attempted == 0.0
    assert cells["test_skill"].mean_points == pytest.approx(ability.mean())
    assert cells["test_skill"].discrimination == pytest.approx(np.corrcoef(ability, totals - ability)[0, 1])
    assert cells["test_easy"].discrimination is None  # everyone the same
    assert cells["essay"].pass_rate is None and cells["essay"].discrimination is None

    skill_pass = (ability >= 10).astype(float)
    assert checks["skill.partial"].pass_rate == 0.5
    assert checks["skill.partial"].discrimination == pytest.approx(
        np.corrcoef(skill_pass, totals - ability)[0, 1], rel=1e-9)
    assert checks["random.ok"].discrimination == pytest.approx(
        np.corrcoef(random_pass, totals - random_pass)[0, 1], abs=1e-9)
    assert checks["hard.value"].top_failures[0] == ("=HYPERLINK wrong sign", 4)

    summary, = score_summaries(submissions)
    fractions = totals / 32.0
    assert (summary.n_graded, summary.n_flagged, summary.n_failed) == (19, 1, 1)
    assert summary.median == pytest.approx(np.median(fractions))
    assert summary.q3 == pytest.approx(np.percentile(fractions, 75))

    seconds = {row.metric: row for row in resource_quantiles(submissions)}["seconds"]
    all_seconds = [10.0 + k for k in range(N_STUDENTS)] + [1.0]
    assert seconds.p90 == pytest.approx(np.percentile(all_seconds, 90)) and seconds.max == 29.0


def test_flags_say_why():
    submissions = class_report()["submissions"]
    flags = flag_items(analyse_cells(submissions), analyse_checks(submissions))
    reasons = {(flag.kind, flag.item): flag.reason for flag in flags}
    assert reasons[("cell", "test_easy")] == "too_easy" and reasons[("check", "easy.value")] == "too_easy"
    assert reasons[("cell", "test_hard")] == "too_hard" and reasons[("check", "hard.value")] == "too_hard"
    assert reasons[("check", "random.ok")] in ("low_discrimination", "negative_discrimination")
    assert ("check", "skill.partial") not in reasons
    skill_reasons = {flag.reason for flag in flags if flag.item == "test_skill"}
    assert skill_reasons == {"too_hard"}  # only student 19 has full points; it discriminates well
    assert all(flag.why for flag in flags)


def test_the_planted_cluster_and_its_case():
    clusters = name_clusters(find_clusters(class_report()["submissions"]), CASE_NAMES)
    cluster, = clusters
    assert cluster.check_id == "hard.value" and cluster.members == ("s00", "s01", "s02", "s03")
    assert cluster.share == pytest.approx(4 / N_STUDENTS) and cluster.case_name == CASE[0]
    assert find_clusters(class_report()["submissions"], min_size=5) == []


def write_run(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_page_and_csvs(tmp_path):
    run_dir = write_run(tmp_path / "run", class_report())
    page = report_module.build_report(run_dir, case_names=CASE_NAMES)
    assert page == run_dir / "analysis" / "report.html"
    text = page.read_text()
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in text
    assert "<script" not in text.lower() and "&lt;script&gt;" in text
    assert "nan" not in text.lower().replace("nanos", "")
    assert "20% of the students who failed <code>hard.value</code> returned the same value (4 students)" in text
    assert "hard_wrong_sign" in text and CASE[1] in text
    clusters_section = text[text.index("Clusters of identical"):text.index("Time and memory")]
    assert not any(f"s0{k}" in clusters_section for k in range(4))
    assert "too easy" in text and "too hard" in text and "timed out" in text

    cluster_rows = read_csv(page.parent / "clusters.csv")
    assert len(cluster_rows) == 1
    assert cluster_rows[0]["members"] == "s00 s01 s02 s03" and cluster_rows[0]["case_name"] == CASE[0]
    assert cluster_rows[0]["message"] == "'=HYPERLINK wrong sign"  # formula guard
    checks = {row["check_id"]: row for row in read_csv(page.parent / "checks.csv")}
    assert float(checks["skill.partial"]["pass_rate_all"]) == 0.5
    scores = read_csv(page.parent / "scores.csv")
    assert len(scores) == N_STUDENTS + 1 and {row["status"] for row in scores} == {"graded", "flagged", "failed"}
    flags = {(row["item"], row["reason"]) for row in read_csv(page.parent / "flags.csv")}
    assert ("test_hard", "too_hard") in flags
    assert len(read_csv(page.parent / "resources.csv")) == 4


def test_old_report_without_checks(tmp_path):
    report = class_report()
    for entry in report["submissions"]:
        entry.pop("checks")
    page = report_module.build_report(write_run(tmp_path / "run", report), name_cases=False)
    text = page.read_text()
    assert "no check records" in text
    cells = {row["cell"]: row for row in read_csv(page.parent / "cells.csv")}
    assert float(cells["test_hard"]["attempt_rate"]) == 0.0  # no score, no notebook: not seen attempted
    assert float(cells["test_skill"]["attempt_rate"]) == pytest.approx(19 / 20)
    assert read_csv(page.parent / "clusters.csv") == []


def notebook(cells: list[dict]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})


def grade_cell(grade_id: str, cell_type: str = "code", source: str = "", outputs: list | None = None) -> dict:
    cell = {"cell_type": cell_type, "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id}},
            "source": source}
    if cell_type == "code":
        cell["outputs"] = outputs or []
    return cell


def error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    report_module.add_arguments(parser)
    return report_module.run(parser.parse_args(list(argv)))


def test_cli_on_a_workdir_reads_the_autograded_notebooks(tmp_path, capsys):
    report = class_report()
    for entry in report["submissions"]:
        entry.pop("checks")
    workdir = tmp_path / "work"
    write_run(workdir / "reports" / "20200101-000000", {"submissions": []})
    run_dir = write_run(workdir / "reports" / "20261130-000000", report)
    for k in range(N_STUDENTS):
        folder = workdir / "autograded" / student_id(k).replace("/", "_") / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        hard_output = [error("NotImplementedError", "")] if k < 10 else [error("AssertionError", "<b>off</b>\nmore")]
        essay = "<div class=\"cml-sanitised\"><p>YOUR ANSWER HERE</p></div>" if k % 2 else "The bias shifts it."
        (folder / f"{ASSIGNMENT}.ipynb").write_text(notebook([grade_cell("test_hard", outputs=hard_output),
                                                              grade_cell("essay", "markdown", essay)]))
    (workdir / "autograded" / "s01" / ASSIGNMENT / "extra.ipynb").write_text("{not json")

    assert run_cli(str(workdir), "--no-cases") == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == run_dir / "analysis" / "report.html"
    cells = {row["cell"]: row for row in read_csv(page.parent / "cells.csv")}
    assert float(cells["test_hard"]["attempt_rate"]) == 0.5  # NotImplementedError is no attempt
    # the student whose id is no safe folder name is not read (9 NotImplementedError, not 10)
    assert cells["test_hard"]["top_failures"] == "10x AssertionError: <b>off</b> | 9x NotImplementedError"
    assert float(cells["essay"]["attempt_rate"]) == 0.5
    text = page.read_text()
    assert "extra.ipynb of s01 (a1) could not be read" in text and "&lt;b&gt;off&lt;/b&gt;" in text

    out = tmp_path / "elsewhere"
    assert run_cli(str(run_dir), "--no-cases", "--out", str(out)) == 0
    assert Path(capsys.readouterr().out.strip()) == out / "report.html"
    assert run_cli(str(tmp_path / "nothing"), "--no-cases") == 2


def test_clusters_are_named_by_the_described_cases_unless_no_cases(tmp_path, monkeypatch, capsys):
    import sys
    import types

    calls = []

    def name_wrong_values(course_root, run_dir, wanted):
        calls.append((course_root, run_dir, wanted))
        return {key: CASE for key in wanted}

    fake = types.ModuleType("cml.instructor.analytics.casevalues")
    fake.name_wrong_values = name_wrong_values
    monkeypatch.setitem(sys.modules, "cml.instructor.analytics.casevalues", fake)
    monkeypatch.chdir(tmp_path)
    run_dir = write_run(tmp_path / "run", class_report())

    assert run_cli(str(run_dir)) == 0
    page = Path(capsys.readouterr().out.strip())
    assert calls == [(tmp_path, run_dir, {(ASSIGNMENT, "hard.value", CLUSTER_DIGEST)})]
    assert "case <code>hard_wrong_sign</code>" in page.read_text()

    assert run_cli(str(run_dir), "--no-cases") == 0 and len(calls) == 1
    assert "hard_wrong_sign" not in Path(capsys.readouterr().out.strip()).read_text()

    def broken(course_root, run_dir, wanted):
        raise RuntimeError("no <kernel>")

    fake.name_wrong_values = broken
    assert run_cli(str(run_dir)) == 0
    text = Path(capsys.readouterr().out.strip()).read_text()
    assert "clusters not named: grading the described cases failed (RuntimeError: no &lt;kernel&gt;)" in text
