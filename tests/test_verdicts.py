"""Verdicts outside the kernel: no tampering from inside a notebook raises its score.

The class (:mod:`tamper_course`) is graded twice: by plain ``nbgrader autograde``, where each attack
works (the test checks that it does, so the class is a real threat), and by ``cml-course grade``,
where every attack scores at most what its code earns honestly, and honest code scores exactly what
plain nbgrader gives it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from tamper_course import ATTACKS, class_of_attackers, source_notebook

from cml import check_log
from cml.instructor.grading.baseline import autograde
from cml.instructor.grading.run import grade_class
from cml.instructor.course import Course
from cml.instructor.preprocessors.verdicts import judge_cell
from cml.instructor.grading.model import Limits

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(cell_timeout=60, time_limit=300, memory_mb=3000)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, object]:
    root = tmp_path_factory.mktemp("tamper")
    course = Course(root / "course")
    (course.root / "source" / "tamper").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", course.root / "nbgrader_config.py")
    nbformat.write(source_notebook(), course.root / "source" / "tamper" / "tamper.ipynb")
    for student, notebook in class_of_attackers().items():
        (root / "submitted" / student / "tamper").mkdir(parents=True)
        nbformat.write(notebook, root / "submitted" / student / "tamper" / "tamper.ipynb")
    run = grade_class(course, root / "submitted", root / "work", workers=2, limits=LIMITS, progress=False,
                      feedback=False)
    ours = {outcome.student: outcome for outcome in run.outcomes}
    plain = {row.student: row.code_score for row in autograde(course, root / "submitted", root / "plain")}
    return ours, plain, run


def test_every_attack_works_against_plain_nbgrader(graded) -> None:
    _, plain, _ = graded
    assert plain["honest_correct"] == 5 and plain["honest_wrong"] == 0
    for attack in ATTACKS:
        assert plain[attack] > plain["honest_wrong"], f"{attack} is no threat to plain nbgrader: {plain[attack]}"


def test_honest_code_scores_what_plain_nbgrader_gives(graded) -> None:
    ours, plain, _ = graded
    for student in ("honest_correct", "honest_wrong"):
        assert ours[student].code_total() == plain[student], ours[student].notes
        assert ours[student].status == "graded", ours[student].notes


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_no_attack_scores_more_than_its_code_honestly_earns(graded, attack: str) -> None:
    ours, plain, _ = graded
    outcome = ours[attack]
    assert outcome.code_total() <= plain["honest_wrong"], (attack, outcome.payload, outcome.notes)
    # Every cell the attack won inside the kernel is zeroed, and said to be likely tampering.
    assert outcome.status == "flagged"
    assert any("likely tampering" in note for note in outcome.notes), outcome.notes


def test_the_run_reports_its_seed_and_the_seed_reaches_the_tests(graded) -> None:
    _, _, run = graded
    report = json.loads(run.json_report.read_text())
    assert isinstance(report["grading_seed"], int)
    assert not [note for note in run.run_notes if "reference" in note or "solution fails" in note], run.run_notes


def _close_record(check_id: str, actual, expected) -> list[dict]:
    return [{"kind": "close", "id": check_id, "actual": check_log.encode(actual), "expected": check_log.encode(expected),
             "parameters": {"rtol": 1e-6, "atol": 1e-8}}, {"kind": "verdict", "id": check_id, "passed": True}]


def test_judge_cell_matches_in_order_and_allows_one_guess_per_check() -> None:
    reference = _close_record("a", [1.0, 2.0], [1.0, 2.0]) + _close_record("b", 3.0, 3.0)
    assert judge_cell(reference, _close_record("a", [1.0, 2.0], 0) + _close_record("b", 3.0, 0)) is None
    # The student's own values are compared with the reference's oracle, not with what the kernel claimed.
    assert "sigmoid" not in (judge_cell(reference, _close_record("a", [1.0, 2.5], [1.0, 2.5])
                                         + _close_record("b", 3.0, 3.0)) or "sigmoid")
    assert judge_cell(reference, _close_record("a", [1.0, 2.5], [1.0, 2.5]) + _close_record("b", 3.0, 3.0))
    # A missing check, a forged first guess followed by the right value, and a wrong order all fail.
    assert "never reported" in judge_cell(reference, _close_record("a", [1.0, 2.0], 0)).message
    assert judge_cell(reference, _close_record("a", [9.0, 9.0], 0) + _close_record("a", [1.0, 2.0], 0)
                      + _close_record("b", 3.0, 0))
    assert judge_cell(reference, _close_record("b", 3.0, 0) + _close_record("a", [1.0, 2.0], 0))
    # A failed verdict record fails, and so does an unreadable value.
    failed = _close_record("a", [1.0, 2.0], 0)
    failed[1]["passed"] = False
    assert judge_cell(reference[:2], failed)
    # A check whose expected value comes from the student's code too is compared with the student's expected
    # value (two runs of the student's that must agree), still here, with the reference's tolerance.
    derived = _close_record("r", [5.0], [5.0])
    derived[0]["derived"] = True
    assert judge_cell(derived, _close_record("r", [7.0], [7.0])) is None
    assert "wrong" in judge_cell(derived, _close_record("r", [7.0], [7.5])).message
    unreadable = _close_record("a", [1.0, 2.0], 0)
    unreadable[0]["actual"] = {"dtype": "O", "shape": [1], "data": ""}
    assert "unreadable" in judge_cell(reference[:2], unreadable).message


def _hidden_reference(check_id: str, expected) -> list[dict]:
    """What the reference run logs for a hidden check: its oracle value, marked hidden, then its verdict."""
    observe, verdict = _close_record(check_id, expected, expected)
    return [{**observe, "hidden": True, "what": "the thing"}, verdict]


def _withheld(check_id: str, actual) -> dict:
    """What a student's kernel logs for a hidden check: the value alone."""
    return {"kind": "close", "id": check_id, "actual": check_log.encode(actual), "hidden": True, "withheld": True,
            "what": "ignored", "parameters": {"rtol": 1e9, "atol": 1e9}}


def test_hidden_checks_are_decided_by_their_values_alone() -> None:
    reference = _hidden_reference("h", [1.0, 2.0])
    # No verdict record is needed from the kernel, and the kernel's tolerances count for nothing.
    assert judge_cell(reference, [_withheld("h", [1.0, 2.0])]) is None
    wrong = judge_cell(reference, [_withheld("h", [1.0, 2.5])])
    assert not wrong.tampering and "the thing is wrong at 1 of 2 entries" in wrong.message
    assert not judge_cell(reference, [_withheld("h", None)]).tampering  # a missing `return` is an honest mistake
    # The placeholder handed back, a record the grader's check did not write, a missing check: tampering.
    from cml.checks import WITHHELD

    assert judge_cell(reference, [_withheld("h", WITHHELD)]).tampering
    assert judge_cell(reference, [_withheld("h", [WITHHELD, 1.0])]).tampering
    assert judge_cell(reference, _close_record("h", [1.0, 2.0], [1.0, 2.0])).tampering
    assert judge_cell(reference, []).tampering
    # Inputs drawn from other generators than the reference's are tampering, whatever the values.
    inputs = [{"kind": "inputs", "id": "h.inputs", "actual": check_log.encode(np.arange(3.0))}]
    assert judge_cell(inputs + reference, inputs + [_withheld("h", [1.0, 2.0])]) is None
    moved = [{"kind": "inputs", "id": "h.inputs", "actual": check_log.encode(np.arange(3.0) + 1)}]
    assert judge_cell(inputs + reference, moved + [_withheld("h", [1.0, 2.0])]).tampering


def test_large_arrays_are_compared_on_a_sample_of_equal_real_shape() -> None:
    big = np.random.default_rng(0).normal(size=(300, 400))
    reference = _close_record("big", big, big)
    assert len(json.dumps(reference)) < 3 * check_log.MAX_LOGGED_VALUES * 8
    assert judge_cell(reference, _close_record("big", big.copy(), 0)) is None
    assert judge_cell(reference, _close_record("big", big + 1.0, 0))
    assert "shape" in judge_cell(reference, _close_record("big", big.reshape(400, 300), 0)).message


def test_check_log_values_round_trip_and_refuse_objects() -> None:
    for value in (np.arange(6.0).reshape(2, 3), np.int64(3), True, "text", None, {"w": np.ones(2)}):
        decoded = check_log.decode(json.loads(json.dumps(check_log.encode(value))))
        if isinstance(value, dict):
            np.testing.assert_array_equal(decoded["w"], value["w"])
        elif isinstance(value, np.ndarray | np.int64):
            np.testing.assert_array_equal(decoded, value)
        else:
            assert decoded == value
    with pytest.raises(check_log.UndecodableValue):
        check_log.decode({"dtype": "<f8", "shape": [3], "data": "AAAA"})
    with pytest.raises(check_log.UndecodableValue):
        check_log.decode({"dtype": "|O", "shape": [1], "data": "AAAAAAAAAAA="})


WRONG_SIGMOIDS = {
    "sigmoid": "def sigmoid(x):\n    return 1 / (1 + np.exp(np.asarray(x, dtype=float)))",
    "d_sigmoid": "def d_sigmoid(x):\n    return np.asarray(x, dtype=float) * (1 - np.asarray(x, dtype=float))",
}
REBIND = '''import cml.checks
_real_check_close = cml.checks.check_close
def _hand_back(check_id, actual, expected, **options):
    return _real_check_close(check_id, expected, expected, **options)
cml.checks.check_close = check_close = _hand_back
'''
TABLE_SIGMOID = '''import sys
_VISIBLE = {0.0: 0.5, -1.0: 0.2689414213699951, 2.0: 0.8807970779778823, -1000.0: 0.0, 1000.0: 1.0}
def _stolen():
    return None
def sigmoid(x):
    found = _stolen()
    if found is not None:
        return found
    return np.vectorize(lambda value: _VISIBLE.get(float(value), 0.5), otypes=[float])(np.asarray(x, dtype=float))
'''
"""A wrong sigmoid that knows only the visible tests' answers."""
READ_GLOBALS = TABLE_SIGMOID.replace("def _stolen():\n    return None", """def _stolen():
    return sys._getframe(2).f_globals.get("_expected")""")
"""The same, returning the test's expected value when its caller's globals hold one."""


def test_attacks_on_the_course_itself_gain_nothing_and_are_flagged() -> None:
    """01_neuron with a wrong sigmoid and d_sigmoid, graded honestly, then with check_close rebound to hand the
    expected value back (the attack that scored 19/25 instead of 12/25 while hidden oracles ran in the kernel),
    then a sigmoid that knows only the visible answers, honest and reading the test's expected value from its
    caller's globals."""
    from cml.instructor.testing.cases import run_cases
    from cml.instructor.testing.submissions import Case

    cases = [Case("honest", "01_neuron", "wrong sigmoid and d_sigmoid", cells=WRONG_SIGMOIDS),
             Case("rebind", "01_neuron", "the same, check_close rebound",
                  cells={**WRONG_SIGMOIDS, "sigmoid": REBIND + WRONG_SIGMOIDS["sigmoid"]}),
             Case("table", "01_neuron", "a sigmoid that knows the visible answers only",
                  cells={**WRONG_SIGMOIDS, "sigmoid": TABLE_SIGMOID}),
             Case("read_globals", "01_neuron", "the same, the caller's globals read",
                  cells={**WRONG_SIGMOIDS, "sigmoid": READ_GLOBALS})]
    results = {result.case.name: result.outcome for result in run_cases(cases, REPO, jobs=2, full=True,
                                                                         release_root=REPO / "release")}
    for attack, honest in (("rebind", "honest"), ("read_globals", "table")):
        assert results[honest].status == "graded", results[honest].notes
        outcome = results[attack]
        assert outcome.code_total() <= results[honest].code_total(), (attack, outcome.code_total())
        assert outcome.status == "flagged" and any("likely tampering" in note for note in outcome.notes), outcome.notes


def test_a_cell_that_stopped_with_an_error_is_searched_for_tampering_only() -> None:
    from cml.checks import WITHHELD

    visible = _close_record("v", 1.0, 1.0)
    reference = visible + _hidden_reference("h1", [1.0]) + _hidden_reference("h2", [2.0])
    failed_visible = _close_record("v", 5.0, 1.0)
    failed_visible[1]["passed"] = False
    # An honest visible failure, then the error: nothing more to say (the cell scores zero already).
    assert judge_cell(reference, failed_visible, complete=False) is None
    # A wrong hidden value, then the placeholder handed back, then the error: tampering, though a failure came first.
    stolen = visible + [_withheld("h1", [9.0]), _withheld("h2", WITHHELD)]
    assert judge_cell(reference, stolen, complete=False).tampering
    assert judge_cell(reference, stolen).tampering
    assert not judge_cell(reference, visible + [_withheld("h1", [9.0]), _withheld("h2", [2.0])]).tampering


def test_check_results_give_each_check_its_status_value_and_digest() -> None:
    from cml.instructor.preprocessors.verdicts import check_results

    reference = (_close_record("a", [1.0, 2.0], [1.0, 2.0]) + _hidden_reference("h", [0.5, 0.25])
                 + [{"kind": "verdict", "id": "t", "passed": True}] + _close_record("late", 1.0, 1.0))
    student = (_close_record("a", [1.0, 2.0], 0) + [_withheld("h", np.array([0.5, -0.25]))]
               + [{"kind": "verdict", "id": "t", "passed": False}])
    results = check_results("nb", "test_cell", reference, student)
    assert [(r["id"], r["status"], r["hidden"]) for r in results] == [
        ("a", "passed", False), ("h", "failed", True), ("t", "failed", False), ("late", "not_run", False)]
    visible, hidden, verdict, late = results
    assert visible["digest"] and visible["value"] == "float64 array of shape (2,): [1. 2.]"
    assert "wrong at 1 of 2 entries" in hidden["message"] and "-0.25" in hidden["value"]
    assert verdict["digest"] is None and late["digest"] is None and late["message"] == ""
    assert {r["notebook"] for r in results} == {"nb"} and {r["cell"] for r in results} == {"test_cell"}
    # The same answer has the same digest whatever its numeric type and float noise; another answer another one.
    same = check_results("nb", "c", reference[:2], _close_record("a", np.array([1, 2]), 0))[0]
    noisy = check_results("nb", "c", reference[:2], _close_record("a", [1.0 + 1e-12, 2.0], 0))[0]
    other = check_results("nb", "c", reference[:2], _close_record("a", [1.0, 2.001], 0))[0]
    assert same["digest"] == noisy["digest"] == visible["digest"] != other["digest"]
    # A value nothing can read has no digest, and no record of the student's forges a check the reference lacks.
    unreadable = _close_record("a", [1.0, 2.0], 0)
    unreadable[0]["actual"] = {"dtype": "O", "shape": [1], "data": ""}
    broken = check_results("nb", "c", reference[:2], unreadable + _close_record("forged", 1.0, 1.0))
    assert [(r["id"], r["status"], r["digest"]) for r in broken] == [("a", "failed", None)]
