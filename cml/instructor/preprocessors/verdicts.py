"""Verdicts student code cannot reach: every check judged again in the grader's own process.

A student's code runs in the same interpreter as the tests, so it can make any check pass from inside:
replace ``np.allclose``, stub :func:`cml.checks.check_close`, reseed the generators a test draws its
inputs from, or append fake records. So the grader does not take the kernel's word for it:

1. At grading time it draws a seed and runs the instructor's notebook (the solution) with it; every
   check logs the values it compares (:mod:`cml.check_log`). That is the *reference* log of each grade
   cell: which checks run, in which order, their oracle values and tolerances (:func:`record_reference`).
2. Each student's notebook runs with the same seed and logs the same way.
   The hidden tests run there without their oracles (:mod:`cml.instructor.oracles`): each hidden check
   only logs the student's value, and its verdict is given here.
3. :class:`CheckVerdicts`, an nbgrader preprocessor running in the grading worker, walks each grade cell
   that passed in the kernel: every check of the reference log must appear in the student's log, in
   order, and the student's value must agree with the *reference run's* oracle value under the
   reference's tolerance, compared here with clean NumPy. A hidden check that fails here is an honest
   failure: the cell gets the check's message as an error output (so nbgrader scores it zero), as it would
   have in the kernel. Any other disagreement (a visible check that passed inside but not here, a check that
   never reported, a value that is the withheld placeholder) can only be tampering: the cell scores zero and
   the submission is flagged.

What this cannot see is documented in the README (*Tamper-proof verdicts*): a check whose value the test
derives from the student's own code (``check_true`` conditions, an accuracy of the student's model) has
no oracle value outside the kernel, so only its pass/fail record is compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Instance, Unicode

from cml import check_log, checks
from cml.check_log import UndecodableValue, decode, sampled_shape
from cml.instructor.analytics.values import describe_value
from cml.instructor.cells import grade_id, is_grade
from cml.instructor.preprocessors.execute import CHECK_RECORDS, ExecutionReport

__all__ = ["HIDDEN_CHECK_FAILED", "VERDICT_MISMATCH", "CheckVerdicts", "Judgement", "check_results", "has_error",
           "judge_cell", "graded_code_id"]

VERDICT_MISMATCH = "VerdictMismatch"
"""``ename`` of the error given to a grade cell that passed in the kernel but not in the grader."""
HIDDEN_CHECK_FAILED = "CheckFailed"
"""``ename`` of the error given to a grade cell whose hidden check, judged by the grader, failed (as in the kernel)."""


def graded_code_id(cell: NotebookNode) -> str | None:
    """The grade id of an autograded code cell (tests, or an answer graded by its own output), else None."""
    return grade_id(cell) if cell.cell_type == "code" and is_grade(cell) else None


def has_error(cell: NotebookNode) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(size) for size in np.asarray(value).reshape(-1))


def _judge(reference: dict, student: dict) -> None:
    """Give the reference record's check again on the student's value; raises ``CheckFailed`` if it fails."""
    kind, check_id = reference["kind"], reference["id"]
    if kind == "verdict":
        checks.check_true(check_id, student.get("passed") is True, "this check did not pass.")
        return
    if kind == "skip":
        return
    if kind == "inputs":
        if student.get("actual") != reference.get("actual"):
            raise checks.CheckFailed(check_id, "the inputs this test drew differ from the reference run's with the same "
                                     "seed: the notebook changed the random generators the tests draw from.")
        return
    # A derived expected value comes from the student's code: only the comparison can be given again.
    expected_record = (student if reference.get("derived") else reference).get("expected")
    actual, expected = decode(student.get("actual")), decode(expected_record)
    real_shapes = sampled_shape(student.get("actual")), sampled_shape(expected_record)
    if real_shapes[0] != real_shapes[1]:  # large arrays are compared on samples, which must come from equal shapes
        checks.check_true(check_id, False, f"the result should have shape {real_shapes[1]}, got {real_shapes[0]}.")
    parameters = reference.get("parameters", {})
    what = str(reference.get("what", "the result"))
    if kind == "close":
        checks.check_close(check_id, actual, expected, rtol=parameters["rtol"], atol=parameters["atol"], what=what)
    elif kind == "equal":
        checks.check_equal(check_id, actual, expected, what=what)
    elif kind == "shape":
        checks.check_true(check_id, _shape(actual) == _shape(expected),
                          f"{what} should have shape {_shape(expected)}, got {_shape(actual)}.")
    elif kind == "gradient":
        checks.check_shape(check_id, np.asarray(actual), np.shape(expected), what=what)
        error = checks.rel_error(actual, expected)
        checks.check_true(check_id, error <= parameters["tolerance"],
                          f"{what} disagrees with a finite-difference estimate (relative error {error:.2e}, allowed "
                          f"{parameters['tolerance']:.0e}). Check signs, missing factors and which terms are summed.")
    elif kind == "accuracy":
        value = float(np.asarray(actual, dtype=np.float64).reshape(-1)[0])
        checks.check_true(check_id, 0.0 <= value <= 1.0 and value >= float(expected),
                          f"the accuracy {value:.3f} does not reach {float(expected):.3f}.")
    elif kind == "parameters":
        _judge_parameters(check_id, actual, expected, parameters, what)
    else:
        checks.check_true(check_id, False, f"the grader does not know checks of kind {kind!r}.")


def _judge_parameters(check_id: str, actual: Any, expected: Any, parameters: dict, what: str) -> None:
    if not isinstance(actual, dict) or set(actual) != set(expected):
        checks.check_true(check_id, False, f"{what}: the model's parameters are not the expected ones.")
    for name, target in expected.items():
        value = np.asarray(actual[name], dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        checks.check_true(check_id, value.shape == target.shape and
                          bool(np.allclose(value, target, rtol=parameters["rtol"], atol=parameters["atol"])),
                          f"{what}: '{name}' differs from the expected values. Each batch should take exactly one "
                          "step on that batch's gradient: zero the gradients, compute the loss on the model's raw "
                          "outputs (logits), backpropagate, step.")


class Judgement(NamedTuple):
    """Why a grade cell fails outside the kernel."""

    message: str
    tampering: bool
    """True: the kernel's word disagrees with the grader's (the cell passed inside, a check is missing or was handed
    the withheld placeholder), which only tampering explains. False: a hidden check, judged here as it is for
    everyone, found the student's value wrong: an honest failure."""


def _holds_placeholder(record: dict) -> bool:
    return checks.WITHHELD_REPR in json.dumps(record.get("actual"))


def _next_match(student: list[dict], start: int, key: tuple[Any, Any]) -> int | None:
    """The index of the first student record at or after ``start`` whose ``(kind, id)`` is ``key``."""
    return next((index for index in range(start, len(student))
                 if (student[index].get("kind"), student[index].get("id")) == key), None)


def judge_cell(reference: list[dict], student: list[dict], *, complete: bool = True) -> Judgement | None:
    """``None`` when the student's log of one grade cell holds every reference check, in order, each passing
    against the reference's values; otherwise why not: the first sign of tampering if there is one (the whole log
    is searched for it), else the first hidden check that failed.

    Each reference record is matched with the *first* student record of the same kind and id after the
    previous match, and judged there: extra records (the student's own, or forged ones) are skipped, but a
    forged record cannot be followed by a second guess. The checks of the hidden tests (``hidden`` records) are
    decided by their values alone: the kernel never saw their oracles, so its verdict records say nothing.
    ``complete=False``: the cell stopped with an error, so the log may end early and the kernel's verdicts on
    visible checks may be that error: only the hidden checks and the inputs are judged, and a missing check ends
    the judging instead of counting as tampering.
    """
    hidden = {record.get("id") for record in reference if record.get("hidden") and record.get("kind") != "verdict"}
    position = 0
    failure: Judgement | None = None
    check_log.suspended = True
    try:
        for expected in reference:
            key = (expected.get("kind"), expected.get("id"))
            if key[0] == "verdict" and key[1] in hidden:
                continue
            match = _next_match(student, position, key)
            if match is None:
                if not complete:
                    break
                return Judgement(f"the check [{key[1]}] never reported its result to the grader", True)
            position = match + 1
            if not complete and not expected.get("hidden") and key[0] != "inputs":
                continue  # the kernel's own verdict on a visible check may be the very error the cell stopped with
            judgement = _judge_record(expected, student[match])
            if judgement is not None and judgement.tampering:
                return judgement
            failure = failure or judgement
    finally:
        check_log.suspended = False
    return failure


def _judge_record(expected: dict, record: dict) -> Judgement | None:
    check_id = expected.get("id")
    if expected.get("hidden") and _holds_placeholder(record):
        return Judgement(f"the check [{check_id}] was handed the grader's placeholder for its expected value instead "
                         "of a value the student's code computed", True)
    if expected.get("hidden") and not record.get("withheld"):
        return Judgement(f"the check [{check_id}] was not logged by the grader's own check function (a check "
                         "replaced, or a forged record)", True)
    try:
        _judge(expected, record)
    except checks.CheckFailed as failure:
        return Judgement(str(failure), not expected.get("hidden"))
    except (UndecodableValue, KeyError, TypeError, ValueError) as error:
        return Judgement(f"the check [{check_id}] reported an unreadable value ({type(error).__name__})", True)
    return None


MAX_MESSAGE_CHARS = 500


def check_results(notebook: str, cell_id: str, reference: list[dict], student: list[dict]) -> list[dict]:
    """One record per check of a grade cell, in the reference run's order, for the class report: ``status``
    (``passed``, ``failed`` or ``not_run``), the failure ``message``, and a ``digest`` and ``preview`` of the
    student's value (``None`` for a check that compares no value). Records are matched as :func:`judge_cell` matches
    them; a check's verdict record counts only where the check logged no value (``check_true`` and the like)."""
    hidden = {record.get("id") for record in reference if record.get("hidden") and record.get("kind") != "verdict"}
    valued = {record.get("id") for record in reference if "actual" in record and record.get("kind") != "inputs"}
    results: list[dict] = []
    position = 0
    check_log.suspended = True
    try:
        for expected in reference:
            kind, check_id = expected.get("kind"), expected.get("id")
            if kind in ("skip", "inputs") or (kind == "verdict" and check_id in valued):
                continue
            match = _next_match(student, position, (kind, check_id))
            record = {"notebook": notebook, "cell": cell_id, "id": str(check_id), "hidden": check_id in hidden,
                      "status": "not_run", "digest": None, "value": None, "message": ""}
            if match is not None:
                position = match + 1
                judgement = _judge_record(expected, student[match])
                record["status"] = "failed" if judgement else "passed"
                record["message"] = judgement.message[:MAX_MESSAGE_CHARS] if judgement else ""
                if "actual" in student[match]:
                    record["digest"], record["value"] = describe_value(student[match]["actual"])
            results.append(record)
    finally:
        check_log.suspended = False
    return results


class CheckVerdicts(NbGraderPreprocessor):
    """After execution: zero every grade cell whose checks pass in the kernel but not against the reference."""

    reference_file = Unicode("", help="The JSON written from record_reference(); empty: do nothing.").tag(config=True)

    report = Instance(ExecutionReport, args=(), help="Where disagreements are reported (the ExecutionReport given to "
                      "ResilientExecute).").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        if not self.reference_file:
            return nb, resources
        reference = json.loads(Path(self.reference_file).read_text())
        cells = reference["notebooks"].get(resources.get("unique_key", ""), {})
        logged = resources.get(CHECK_RECORDS, {})
        for index, cell in enumerate(nb.cells):
            grade_id = graded_code_id(cell)
            if grade_id not in cells:
                continue
            if cells[grade_id]["failed"]:
                if any(record.get("withheld") for record in logged.get(index, [])) and not has_error(cell):
                    self.report.problems.append(f"{grade_id}: the solution fails this cell in the reference run, so "
                                                "its hidden checks could not be judged; the kernel's score stands")
                continue
            self.report.checks += check_results(resources.get("unique_key", ""), grade_id, cells[grade_id]["records"],
                                                logged.get(index, []))
            errored = has_error(cell)  # zero already; judged only for signs of tampering before the error
            judgement = judge_cell(cells[grade_id]["records"], logged.get(index, []), complete=not errored)
            if judgement is None or (errored and not judgement.tampering):
                continue
            if not judgement.tampering:
                cell.outputs.append(new_output("error", ename=HIDDEN_CHECK_FAILED, evalue=judgement.message,
                                               traceback=[f"{HIDDEN_CHECK_FAILED}: {judgement.message}"]))
                continue
            reason = judgement.message
            self.report.problems.append(f"{grade_id} passed in the notebook but not the grader's own check "
                           f"(likely tampering with the tests): {reason}")
            explanation = (f"{VERDICT_MISMATCH}: the tests in this cell passed inside the notebook, but the grader's "
                           f"own comparison, made outside the notebook, disagrees: {reason}. The cell scores zero "
                           "and the submission is flagged for review.")
            cell.outputs.append(new_output("error", ename=VERDICT_MISMATCH, evalue=reason, traceback=[explanation]))
        return nb, resources
