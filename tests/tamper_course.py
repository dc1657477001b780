"""A four-exercise assignment graded through ``cml.checks``, and submissions that try to cheat it.

Every attack is added to the same wrong code, ``WRONG``: functions that only know the visible tests'
answers. Graded honestly that code scores zero; each attack tampers with the tests from inside the
kernel (or steals their oracles) so that it would score full marks in plain nbgrader.
"""

from __future__ import annotations

from nbformat.v4 import new_markdown_cell, new_notebook
from probe_course import graded_cell

from cml.instructor.cells import grade_id

SETUP = ("import numpy as np\nimport torch\n"
         "from cml.checks import check_close, check_equal, check_gradient, grading_seed, log_inputs")
CORRECT = {
    "answer_sigmoid": "def sigmoid(z):\n    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))",
    "answer_count": "def count_positive(x):\n    return int(np.sum(np.asarray(x) > 0))",
    "answer_scale": "def scale(t):\n    return 3 * t",
    "answer_gradient": "def grad_square(v):\n    return 2 * np.asarray(v, dtype=float)",
}
TESTS = {
    "test_sigmoid": (2, 'check_close("sigmoid.zero", sigmoid(np.zeros(3)), np.full(3, 0.5))',
                     ("_z = np.random.default_rng(grading_seed(11)).normal(size=6)\n"
                      'log_inputs("sigmoid.inputs", _z)\n'
                      # The oracle is computed before the student's call, in an oracle block: a function that reads
                      # its caller's globals could find it there, were it not withheld.
                      "### BEGIN ORACLE\n_expected = 1 / (1 + np.exp(-_z))\n### END ORACLE\n"
                      'check_close("sigmoid.random", sigmoid(_z), _expected)')),
    "test_count": (1, 'check_equal("count.small", count_positive([1, -2, 3]), 2)',
                   # Twenty counts, not one: a single small count matches a wrong answer by chance.
                   ("_x = np.random.default_rng(grading_seed(12)).normal(size=(20, 9))\n"
                    'log_inputs("count.inputs", _x)\n'
                    'check_equal("count.random", [count_positive(row) for row in _x], (_x > 0).sum(axis=1).tolist())')),
    "test_scale": (1, 'check_close("scale.ones", scale(torch.ones(2)), torch.full((2,), 3.0))',
                   ("_t = torch.randn(4, generator=torch.Generator().manual_seed(grading_seed(13)))\n"
                    'log_inputs("scale.inputs", _t)\n'
                    'check_close("scale.random", scale(_t), 3 * _t)')),
    "test_gradient": (1, 'check_gradient("gradient.ones", lambda v: np.sum(v ** 2), np.ones(3), grad_square(np.ones(3)))',
                      ("_v = np.random.default_rng(grading_seed(14)).normal(size=5)\n"
                       'log_inputs("gradient.inputs", _v)\n'
                       'check_gradient("gradient.random", lambda v: np.sum(v ** 2), _v, grad_square(_v))')),
}
WRONG = {
    "answer_sigmoid": "def sigmoid(z):\n    return np.full(np.shape(z), 0.5)",
    "answer_count": "def count_positive(x):\n    return 2",
    "answer_scale": "def scale(t):\n    return torch.full(t.shape, 3.0)",
    "answer_gradient": "def grad_square(v):\n    return np.full(np.shape(v), 2.0)",
}

# Each attack runs before the wrong code, in the first answer cell.
ATTACKS = {
    "patch_comparisons": """
np.isclose = lambda a, b, **kw: np.ones(np.broadcast(np.asarray(a), np.asarray(b)).shape, dtype=bool)
np.allclose = lambda *a, **kw: True
np.array_equal = lambda *a, **kw: True
np.testing.assert_allclose = lambda *a, **kw: None
np.testing.assert_array_equal = lambda *a, **kw: None
torch.allclose = lambda *a, **kw: True
torch.equal = lambda *a, **kw: True
torch.testing.assert_close = lambda *a, **kw: None
np.sum = lambda *a, **kw: 0
""",
    "stub_helpers": """
import cml.checks
cml.checks.check_close = cml.checks.check_equal = lambda *a, **kw: None
check_close = check_equal = lambda *a, **kw: None
""",
    "stub_verdict": """
import cml.checks
cml.checks.record_verdict = lambda *a, **kw: None
""",
    "reseed": """
_real_rng, _RealGenerator = np.random.default_rng, torch.Generator
class _FixedGenerator:
    def __new__(cls, *args, **kwargs):
        generator = _RealGenerator(*args, **kwargs)
        return type("G", (), {"manual_seed": lambda self, seed: generator.manual_seed(0)})()
np.random.default_rng = lambda *a, **kw: _real_rng(0)
torch.Generator = _FixedGenerator
np.random.seed(0); torch.manual_seed(0)
_z0 = _real_rng(0).normal(size=6)
_x0 = _real_rng(0).normal(size=(20, 9))
_t0 = torch.randn(4, generator=_RealGenerator().manual_seed(0))
# A table of answers for the inputs the tests will now draw: right there, wrong everywhere else.
_SIGMOID = {_z0.tobytes(): 1 / (1 + np.exp(-_z0))}
_COUNT = {row.tobytes(): int(np.sum(row > 0)) for row in _x0}
""",
    "fake_records": """
import json, os
import cml.checks
from cml import check_log
def _forge(kind, check_id, value):
    with open(os.environ.get(check_log.LOG_VARIABLE, os.devnull), "a") as log:
        log.write(json.dumps({"kind": kind, "id": check_id, "actual": check_log.encode(value),
                              "expected": check_log.encode(value),
                              "parameters": {"rtol": 1e9, "atol": 1e9}}) + "\\n")
        log.write(json.dumps({"kind": "verdict", "id": check_id, "passed": True}) + "\\n")
def _fake_close(check_id, actual, expected, **kw):
    _forge("close", check_id, actual)
def _fake_equal(check_id, actual, expected, **kw):
    _forge("equal", check_id, actual)
cml.checks.check_close, cml.checks.check_equal = _fake_close, _fake_equal
check_close, check_equal = _fake_close, _fake_equal
cml.checks.records.append(cml.checks.CheckRecord("sigmoid.random", True))
""",
    # Each check hands the expected value back in place of the student's.
    "rebind_checks": """
import cml.checks
_real_close, _real_equal, _real_gradient = cml.checks.check_close, cml.checks.check_equal, cml.checks.check_gradient
def _close(check_id, actual, expected, **kw):
    return _real_close(check_id, expected, expected, **kw)
def _equal(check_id, actual, expected, **kw):
    return _real_equal(check_id, expected, expected, **kw)
def _gradient(check_id, function, x, analytic, **kw):
    return _real_gradient(check_id, function, x, cml.checks.numerical_gradient(function, x), **kw)
cml.checks.check_close, cml.checks.check_equal, cml.checks.check_gradient = _close, _equal, _gradient
check_close, check_equal, check_gradient = _close, _equal, _gradient
""",
    "read_frame": "",  # the theft is in the answers (FRAME_WRONG)
    "read_history": "",  # the theft is in the answers (HISTORY_WRONG)
}
FRAME_WRONG = {
    **WRONG,
    # The wrong sigmoid, unless the caller's globals hold the test's expected value.
    "answer_sigmoid": "import sys\ndef sigmoid(z):\n    found = sys._getframe(1).f_globals.get('_expected')\n"
                      "    return found if found is not None else np.full(np.shape(z), 0.5)",
}
HISTORY_WRONG = {
    **WRONG,
    # The wrong count, unless the running cell's source (IPython's history) holds the test's oracle: then that
    # oracle, evaluated in the notebook's namespace.
    "answer_count": """import re
def count_positive(x):
    namespace = get_ipython().user_ns
    match = re.search(r'check_equal\\("count\\.random", .*?, (.+)\\)\\s*$', namespace["In"][-1], re.M)
    if match is None or "_x" not in namespace:
        return 2
    answers = eval(match.group(1), namespace)
    rows = [row.tobytes() for row in namespace["_x"]]
    key = np.asarray(x, dtype=float).tobytes()
    return answers[rows.index(key)] if isinstance(answers, list) and key in rows else answers""",
}
RESEED_WRONG = {
    "answer_sigmoid": "def sigmoid(z):\n    z = np.asarray(z, dtype=float)\n"
                      "    return _SIGMOID[z.tobytes()] if z.tobytes() in _SIGMOID else np.full(z.shape, 0.5)",
    "answer_count": "def count_positive(x):\n    x = np.asarray(x, dtype=float)\n"
                    "    return _COUNT.get(x.tobytes(), 2)",
    "answer_scale": "def scale(t):\n    return 3 * _t0 if t.shape == _t0.shape and bool((t == _t0).all()) "
                    "else torch.full(t.shape, 3.0)",
    "answer_gradient": WRONG["answer_gradient"],
}
ATTACK_ANSWERS = {"reseed": RESEED_WRONG, "read_frame": FRAME_WRONG, "read_history": HISTORY_WRONG}
"""The attacks whose theft is in the answers themselves; the others run before ``WRONG``."""


def source_notebook():
    cells = [new_markdown_cell("# Checks under attack"), graded_cell("readonly", "setup", SETUP)]
    for (answer, body), (test, (points, visible, hidden)) in zip(CORRECT.items(), TESTS.items()):
        header, _, rest = body.partition("\n")
        cells.append(graded_cell("solution", answer, f"{header}\n    ### BEGIN SOLUTION\n{rest}\n    ### END SOLUTION"))
        cells.append(graded_cell("tests", test, f"{visible}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS", points))
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def student_notebook(answers: dict[str, str], attack: str = ""):
    """The release version with ``answers`` filled in and ``attack`` run first; hidden tests removed."""
    notebook = source_notebook()
    for cell in notebook.cells:
        identifier = grade_id(cell)
        if identifier in answers:
            cell.source = (attack + "\n" if identifier == "answer_sigmoid" else "") + answers[identifier]
        elif identifier and identifier.startswith("test_"):
            cell.source = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip()
    return notebook


def class_of_attackers() -> dict[str, object]:
    """``{student: notebook}``: the correct and the wrong code graded honestly, and every attack."""
    students = {"honest_correct": student_notebook(CORRECT), "honest_wrong": student_notebook(WRONG)}
    for name, attack in ATTACKS.items():
        students[name] = student_notebook(ATTACK_ANSWERS.get(name, WRONG), attack)
    return students
