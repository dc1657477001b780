"""A small class of 01_neuron with a planted common mistake and a planted copied pair, built from described cases.

Every student hands in the solution with a few cells of their own, taken from the described submissions of
``tests/submissions/01_neuron/`` (correct alternatives and wrong answers), so no two honest students share their own
cells. Planted:

- a **common mistake**: four students return the negative gradient from ``grad_loss_i`` (the described case
  ``grad_loss_i_wrong_sign``), each written in their own way, so they share a wrong value but not their code;
- a **copied pair**: ``rory`` hands in ``quinn``'s cells with the local variables renamed, comments added and the
  layout changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

from cml.instructor.course import Course
from cml.instructor.testing.submissions import Case, load_case, write_submission

ASSIGNMENT = "01_neuron"
CASES = Path(__file__).resolve().parent / "submissions" / ASSIGNMENT
PLANTED_CASE = "grad_loss_i_wrong_sign"
MISTAKEN = ("eli", "fay", "gus", "hana")
COPIED_PAIR = ("quinn", "rory")

WRONG_SIGN_VARIANTS = [
    '''
def loss_i(w, x_i, y_i):
    p = sigmoid(w @ x_i)
    return -(y_i * np.log(p) + (1 - y_i) * np.log(1 - p))


def grad_loss_i(w, x_i, y_i):
    return (y_i - sigmoid(w @ x_i)) * x_i
''',
    '''
def loss_i(w, x_i, y_i):
    z = np.dot(w, x_i)
    s = sigmoid(z)
    return -y_i * np.log(s) - (1 - y_i) * np.log(1 - s)


def grad_loss_i(w, x_i, y_i):
    s = sigmoid(np.dot(w, x_i))
    grad = np.zeros(len(x_i))
    for j in range(len(x_i)):
        grad[j] = (y_i - s) * x_i[j]
    return grad
''',
    '''
def loss_i(w, x_i, y_i):
    prediction = sigmoid(x_i @ w)
    return -(y_i * np.log(prediction) + (1 - y_i) * np.log(1 - prediction))


def grad_loss_i(w, x_i, y_i):
    residual = sigmoid(x_i @ w) - y_i
    return -residual * x_i
''',
    '''
def loss_i(w, x_i, y_i):
    a = sigmoid(np.sum(w * x_i))
    first = y_i * np.log(a)
    second = (1 - y_i) * np.log(1 - a)
    return -(first + second)


def grad_loss_i(w, x_i, y_i):
    a = sigmoid(np.sum(w * x_i))
    return x_i * y_i - x_i * a
''',
]

HONEST = {  # student: the described cases whose cells they wrote
    "amal": ["naive_formulas_and_loops"],
    "bo": ["jax_log_sigmoid_module_grad", "linear_regression_loops"],
    "cem": ["perceptron_strict_threshold", "minibatch_no_shuffle"],
    "dana": ["clipped_sigmoid_array_labels"],
    "quinn": ["d_sigmoid_scalar_only", "gradient_descent_mean", "linear_regression_loss_before_step"],
}
MISTAKEN_EXTRAS = {"eli": "threshold_ignores_bias", "fay": "linear_regression_sum", "gus": "perceptron_counts_updates",
                   "hana": "more/minibatch_array_split_loops"}


def _cells_of(*names: str) -> dict[str, str]:
    cells: dict[str, str] = {}
    for name in names:
        cells.update(load_case(CASES / f"{name}.toml", ASSIGNMENT).cells)
    return cells


class _RenameLocals(ast.NodeTransformer):
    """Rename the variables a function assigns (not its parameters, so keyword calls still work)."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        parameters = {argument.arg for argument in ast.walk(node.args) if isinstance(argument, ast.arg)}
        assigned = {name.id for name in ast.walk(node) if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store)}
        renames = {name: f"my_{name.strip('_') or 'unused'}_value" for name in assigned - parameters}
        for name in ast.walk(node):
            if isinstance(name, ast.Name) and name.id in renames:
                name.id = renames[name.id]
        return node


def disguise(source: str) -> str:
    """What a student copying ``source`` might hand in: locals renamed, comments added, the layout changed."""
    tree = _RenameLocals().visit(ast.parse(source))
    lines = ["# my own solution, worked out on paper first"]
    for line in ast.unparse(tree).splitlines():
        lines.append(line)
        if line.lstrip().startswith("def "):
            lines.append("    # compute step by step")
    return "\n".join(lines) + "\n"


def planted_cases() -> list[Case]:
    """The class's students as cases (their names are the student ids)."""
    students = {name: _cells_of(*cases) for name, cases in HONEST.items()}
    for name, variant in zip(MISTAKEN, WRONG_SIGN_VARIANTS):
        students[name] = {**_cells_of(MISTAKEN_EXTRAS[name]), "loss_i": variant.strip("\n")}
    students["rory"] = {cell: disguise(source) for cell, source in students["quinn"].items()}
    return [Case(name=name, assignment=ASSIGNMENT, description=f"student {name}", cells=cells)
            for name, cells in sorted(students.items())]


def write_planted_class(course: Course, submitted: Path) -> list[str]:
    """Write every student's notebook as ``submitted/<student>/01_neuron/01_neuron.ipynb``; returns the ids."""
    cases = planted_cases()
    for case in cases:
        write_submission(case, course, submitted / case.name / ASSIGNMENT)
    return [case.name for case in cases]
