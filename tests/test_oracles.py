"""The hidden tests' oracles: the convention every notebook keeps, and the code a grading kernel runs instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cml import check_log, checks
from cml.instructor.cells import cell_kind, grade_id
from cml.instructor.course import Course
from cml.instructor.oracles import (
    OracleError,
    hidden_tests_for_kernel,
    oracle_helpers,
    oracle_problems,
    withheld_checks,
)

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)

CELL = '''check_close("f.visible", f(1.0), 2.0)
### BEGIN HIDDEN TESTS
from scipy.special import expit as _unused
_x = np.random.default_rng(grading_seed(3)).normal(size=4)
### BEGIN ORACLE
def _reference(x):
    return 2 * x


_expected = _reference(_x)
_table = {key: 2 * key for key in range(3)}
### END ORACLE
check_close("f.random", f(_x), _expected, rtol=1e-9,
            what="f of a random vector")
check_equal("f.inline", int(f(2.0)),
            int(_reference(2.0)))
check_close("f.again", f(_x), f(_x), expected_from_student=True)
check_true("f.finite", np.all(np.isfinite(f(_x))), "finite")
### END HIDDEN TESTS
'''


def test_a_students_kernel_runs_the_hidden_tests_without_any_oracle() -> None:
    withheld = hidden_tests_for_kernel(CELL, withhold=True)
    assert withheld.count("\n") == CELL.count("\n")  # tracebacks point where they would have
    assert "_reference(" not in withheld and "2 * x" not in withheld
    assert withheld.count("checks.WITHHELD") == 3  # two expected arguments and the oracle block's binding
    assert "_reference = _expected = _table = " in withheld  # not `key`: a comprehension's variable is its own
    assert 'check_close("f.visible", f(1.0), 2.0)' in withheld  # visible checks keep their oracles
    assert "f(_x), f(_x), expected_from_student=True" in withheld  # a check of the student's own values stays
    namespace = {"np": np, "grading_seed": checks.grading_seed, "f": lambda x: 2 * np.asarray(x),
                 **{name: getattr(checks, name) for name in ("check_close", "check_equal", "check_true")}}
    exec(compile(withheld, "cell", "exec"), namespace)  # runs, and every hidden check passes without an oracle
    assert namespace["_expected"] is checks.WITHHELD


def test_the_reference_run_marks_every_hidden_oracle_and_keeps_the_code() -> None:
    marked = hidden_tests_for_kernel(CELL, withhold=False)
    assert marked.count("\n") == CELL.count("\n")
    assert marked.count("checks.hidden_oracle(") == 2
    assert "hidden_oracle(_expected)" in marked and "hidden_oracle(int(_reference(2.0)))" in marked
    assert "def _reference(x):" in marked
    assert hidden_tests_for_kernel("check_close('a', 1, 1)", withhold=True) == "check_close('a', 1, 1)"


def test_marked_and_withheld_checks_log_what_the_grader_judges(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv(check_log.LOG_VARIABLE, str(log))
    checks.check_close("a", [1.0, 2.0], checks.hidden_oracle([1.0, 2.0]), what="a's value")
    checks.check_close("b", [5.0], checks.WITHHELD, what="b's value")  # never raises: the grader decides
    checks.check_gradient("c", checks.WITHHELD, np.ones(2), np.zeros(2))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["hidden"] and records[0]["what"] == "a's value" and "expected" in records[0]
    withheld = [record for record in records if record.get("withheld")]
    assert [record["id"] for record in withheld] == ["b", "c"]
    assert all("expected" not in record for record in withheld)


def test_the_convention_is_enforced() -> None:
    assert oracle_problems(CELL) == []
    computed_outside = CELL.replace("### BEGIN ORACLE\n", "").replace("### END ORACLE\n", "")
    problems = oracle_problems(computed_outside)
    assert any("'_expected' is computed in the kernel only for an oracle" in problem for problem in problems)
    assert oracle_problems("check_close('a', f(1), 2)") != []  # no hidden value check at all
    assert oracle_problems("### BEGIN ORACLE\nx = 1\n### END ORACLE\n### BEGIN HIDDEN TESTS\n"
                           "check_close('a', f(1), 2)\n### END HIDDEN TESTS")[0].startswith("an oracle block outside")
    helper = "def _check(x):\n    check_close('h', f(x), 2 * x)\n"
    assert oracle_helpers([helper]) == {"_check"}
    calls_helper = helper + "### BEGIN HIDDEN TESTS\n_check(3.0)\ncheck_close('a', f(1), 2)\n### END HIDDEN TESTS"
    assert any("_check()" in problem for problem in oracle_problems(calls_helper, oracle_helpers([calls_helper])))
    with pytest.raises(OracleError):
        hidden_tests_for_kernel("### BEGIN HIDDEN TESTS\nif True:\n### END HIDDEN TESTS", withhold=True)
    with pytest.raises(RuntimeError):  # an oracle block never closed
        hidden_tests_for_kernel("### BEGIN HIDDEN TESTS\n### BEGIN ORACLE\nx = 1\n### END HIDDEN TESTS", withhold=True)


@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_every_graded_cell_has_hidden_checks_judged_outside_the_kernel(assignment: str) -> None:
    """Every autograded test cell keeps the convention, and its points rest on at least one hidden value check
    whose oracle the grader holds (none computed in the student's kernel)."""
    for path in COURSE.notebooks(assignment):
        cells = [cell for cell in COURSE.read(path).cells if cell.cell_type == "code"]
        helpers = oracle_helpers([cell.source for cell in cells])
        problems = {grade_id(cell): found for cell in cells if cell_kind(cell) == "tests"
                    if (found := oracle_problems(cell.source, helpers))}
        assert not problems, f"{path.name}: " + "; ".join(f"{cell}: {found}" for cell, found in problems.items())
        for cell in cells:
            if cell_kind(cell) == "tests":
                assert withheld_checks(cell.source) >= 1, grade_id(cell)
                withheld = hidden_tests_for_kernel(cell.source, withhold=True)
                compile(withheld, grade_id(cell) or "cell", "exec")

