"""Copy detection (``cml-course similarity``) on small synthetic classes built here."""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import nbformat
import pytest

from cml.instructor.analytics.code_fingerprints import kgram_hashes, tokenize_cell, winnow
from cml.instructor.analytics.copy_detection import WrongValue, compare_assignment, find_similar_pairs
from cml.instructor.analytics.similarity_page import write_html

pytest.importorskip("nbgrader")

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5

# Six genuinely different ways to write each of three answers.
SIGMOID = [
    "def sigmoid(x):\n    return 1.0 / (1.0 + np.exp(-x))\n",
    "def sigmoid(x):\n    x = np.asarray(x, dtype=float)\n    out = np.empty_like(x)\n    pos = x >= 0\n"
    "    out[pos] = 1 / (1 + np.exp(-x[pos]))\n    ex = np.exp(x[~pos])\n    out[~pos] = ex / (1 + ex)\n"
    "    return out\n",
    "def sigmoid(x):\n    return 0.5 * (1 + np.tanh(0.5 * x))\n",
    "def sigmoid(x):\n    from scipy.special import expit\n    return expit(x)\n",
    "def sigmoid(x):\n    e = np.exp(np.minimum(x, 0))\n    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), e / (1 + e))\n",
    "def sigmoid(x):\n    z = np.clip(x, -500, 500)\n    denominator = np.add(1.0, np.power(np.e, -z))\n"
    "    return np.divide(1.0, denominator)\n",
]
STEP = [
    "def step(w, X, y, lr):\n    p = sigmoid(X @ w)\n    return w - lr * X.T @ (p - y)\n",
    "def step(w, X, y, lr):\n    grad = np.zeros_like(w)\n    for i in range(len(y)):\n"
    "        grad += (sigmoid(np.dot(X[i], w)) - y[i]) * X[i]\n    w = w - lr * grad\n    return w\n",
    "def step(w, X, y, lr):\n    residual = sigmoid(np.einsum('ij,j->i', X, w)) - y\n"
    "    return w - lr * np.einsum('ij,i->j', X, residual)\n",
    "def step(w, X, y, lr):\n    errors = [sigmoid(sum(a * b for a, b in zip(row, w))) - t for row, t in zip(X, y)]\n"
    "    gradient = [sum(e * row[j] for e, row in zip(errors, X)) for j in range(len(w))]\n"
    "    return np.array([wj - lr * gj for wj, gj in zip(w, gradient)])\n",
    "def step(w, X, y, lr):\n    new_w = w.copy()\n    new_w -= lr * np.sum((sigmoid(X.dot(w)) - y)[:, None] * X, axis=0)\n"
    "    return new_w\n",
    "def step(w, X, y, lr):\n    predictions = 1 / (1 + np.exp(-np.matmul(X, w)))\n    difference = predictions - y\n"
    "    update = lr * np.matmul(difference, X)\n    return np.subtract(w, update)\n",
]
TRAIN = [
    "def train(X, y, lr, n_epochs):\n    w = np.zeros(X.shape[1])\n    losses = []\n    for epoch in range(n_epochs):\n"
    "        w = step(w, X, y, lr)\n        p = sigmoid(X @ w)\n"
    "        losses.append(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))\n    return w, losses\n",
    "def train(X, y, lr, n_epochs):\n    weights = np.zeros(len(X[0]))\n    history = [None] * n_epochs\n"
    "    epoch = 0\n    while epoch < n_epochs:\n        weights = step(weights, X, y, lr)\n"
    "        history[epoch] = float(np.sum(np.logaddexp(0, -(2 * y - 1) * (X @ weights))))\n        epoch += 1\n"
    "    return weights, history\n",
    "def train(X, y, lr, n_epochs):\n    def loss(w):\n        z = X.dot(w)\n"
    "        return np.mean(np.log1p(np.exp(-z)) + (1 - y) * z)\n    w = np.zeros(X.shape[-1])\n"
    "    curve = [loss(w)]\n    for _ in range(n_epochs):\n        w = step(w, X, y, lr)\n"
    "        curve.append(loss(w))\n    return w, curve[1:]\n",
    "def train(X, y, lr, n_epochs):\n    import itertools\n    state = {'w': np.zeros(X.shape[1]), 'log': []}\n"
    "    for _ in itertools.repeat(None, n_epochs):\n        state['w'] = step(state['w'], X, y, lr)\n"
    "        probabilities = np.clip(sigmoid(X @ state['w']), 1e-12, 1 - 1e-12)\n"
    "        state['log'].append(float(-(np.log(probabilities[y == 1]).sum() + np.log(1 - probabilities[y == 0]).sum())))\n"
    "    return state['w'], state['log']\n",
    "def train(X, y, lr, n_epochs):\n    result = functools.reduce(lambda acc, _: (step(acc[0], X, y, lr), acc[1]),\n"
    "                              range(n_epochs), (np.zeros(X.shape[1]), []))\n    return result\n",
    "def train(X, y, lr, n_epochs):\n    w = np.random.default_rng(0).normal(scale=0.0, size=X.shape[1])\n"
    "    record = np.empty(n_epochs)\n    for k in range(n_epochs):\n        w = step(w, X, y, lr)\n"
    "        margin = np.where(y == 1, X @ w, -(X @ w))\n        record[k] = np.log(1 + np.exp(-margin)).sum()\n"
    "    return w, record.tolist()\n",
]
BASE = {"sigmoid": 'def sigmoid(x):\n    """The logistic function, element-wise."""\n    # YOUR CODE HERE\n'
                   "    raise NotImplementedError()\n",
        "step": "def step(w, X, y, lr):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n",
        "train": "def train(X, y, lr, n_epochs):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"}

# student 2's answers, copied: names changed, comments added, layout changed, one statement added and one moved
COPIED = {
    "sigmoid": "def sigmoid(x):\n    return 0.5*(1+np.tanh(0.5*x))  # the tanh identity\n",
    "step": "def step(weights, features, targets, rate):\n    # einsum is faster\n"
            "    r = sigmoid(np.einsum('ij,j->i', features,\n                          weights)) - targets\n"
            "    return weights - rate * np.einsum('ij,i->j', features, r)\n",
    "train": "def train(X, y, lr, n_epochs):\n    w = np.zeros(X.shape[-1])\n"
             "    def objective(weights):\n        '''Mean loss.'''\n        margins = X.dot(weights)\n"
             "        return np.mean(np.log1p(np.exp(-margins)) + (1 - y) * margins)\n"
             "    print('training')\n    values = [objective(w)]\n    for _ in range(n_epochs):\n"
             "        w = step(w, X, y, lr)\n        values.append(objective(w))\n    return w, values[1:]\n",
}


def honest_class(students: int = 6) -> dict[str, dict[str, str]]:
    """Student i writes the i-th way of each answer, under the starter docstring."""
    return {f"student_{i}": {"sigmoid": SIGMOID[i], "step": STEP[i], "train": TRAIN[i]} for i in range(students)}


def test_renaming_comments_and_layout_do_not_change_the_tokens():
    original = "def f(a, b):\n    total = np.sum(a * b, axis=0)\n    return total\n"
    disguised = ('def f(left, right):\n    """Docstring."""\n    # a comment\n    s = np.sum(left*right,\n'
                 "               axis=0)  # summed\n    return s\n")
    assert tokenize_cell(original).texts == tokenize_cell(disguised).texts
    assert "axis" in tokenize_cell(original).texts and "sum" in tokenize_cell(original).texts
    lines = tokenize_cell(disguised, with_lines=True).lines.tolist()
    assert lines[0] == 1 and lines[-1] == 6 and lines.count(5) == 4  # `axis = 0 )` on the continuation line


def test_winnowing_keeps_a_fingerprint_of_every_long_match():
    tokens = tokenize_cell(SIGMOID[1])
    hashes = kgram_hashes(tokens, "sigmoid")
    kept = set(winnow(hashes).tolist())
    for start in range(len(hashes) - 3):  # every window of 4 k-gram hashes holds a kept one
        assert kept & set(hashes[start: start + 4].tolist())


def test_a_disguised_copy_ranks_first_and_alone_above_the_threshold():
    submissions = honest_class() | {"copier": COPIED}
    pairs = find_similar_pairs(submissions, BASE, assignment="01")
    assert (pairs[0].student_a, pairs[0].student_b) == ("copier", "student_2")
    assert pairs[0].combined_score >= THRESHOLD
    assert {match.cell for match in pairs[0].cell_matches} == {"sigmoid", "step", "train"}
    assert all(pair.combined_score < THRESHOLD for pair in pairs[1:])


def test_an_honest_class_has_no_pair_above_the_threshold():
    pairs = find_similar_pairs(honest_class(), BASE)
    assert all(pair.combined_score < THRESHOLD for pair in pairs), [(p.student_a, p.student_b, p.code_score)
                                                                     for p in pairs]


def test_the_starter_code_is_not_counted():
    helper = ("def helper(values, scale=2.0):\n    result = []\n    for value in values:\n"
              "        result.append(value * scale + np.log1p(abs(value)))\n    return result\n\n")
    submissions = {"a": {"sigmoid": helper + SIGMOID[0]}, "b": {"sigmoid": helper + SIGMOID[2]}}
    without_base = find_similar_pairs(submissions, {})
    assert without_base and without_base[0].shared_fingerprints > 0  # the check can fail
    with_base = find_similar_pairs(submissions, {"sigmoid": helper + BASE["sigmoid"]}, min_score=0.0)
    assert all(pair.shared_fingerprints == 0 for pair in with_base)


def test_two_rare_shared_wrong_values_are_evidence():
    students = honest_class()
    values = {student: [WrongValue("step.hidden", f"digest-{student}", True, "unique")] for student in students}
    values["student_1"] += [WrongValue("sigmoid.hidden", "same-1", True, "[0.5 0.5]"),
                            WrongValue("train.hidden", "same-2", True, "<script>alert(1)</script>")]
    values["student_4"] += [WrongValue("sigmoid.hidden", "same-1", True, "[0.5 0.5]"),
                            WrongValue("train.hidden", "same-2", True, "<script>alert(1)</script>")]
    for student in ("student_0", "student_2", "student_3", "student_5"):  # too common to be evidence
        values[student].append(WrongValue("train.visible", "common", False, "0"))
    pairs = find_similar_pairs(students, BASE, wrong_values=values)
    flagged = [pair for pair in pairs if pair.combined_score >= THRESHOLD]
    assert [(pair.student_a, pair.student_b) for pair in flagged] == [("student_1", "student_4")]
    assert sorted(item.check for item in flagged[0].wrong_value_evidence) == ["sigmoid.hidden", "train.hidden"]
    assert flagged[0].code_score < THRESHOLD
    assert not any(item.check == "train.visible" for pair in pairs for item in pair.wrong_value_evidence)


def test_unparsable_and_hostile_cells_do_not_crash(tmp_path):
    submissions = {"a": {"sigmoid": "def sigmoid(x:\n    return '''never closed\n\x00\ufffd\\"},
                   "b": {"sigmoid": "%%timeit\n!pip install x\n" + SIGMOID[0] * 3},
                   "c": {"sigmoid": ""}, "d": {"sigmoid": "x" * 300_000}}
    assert isinstance(find_similar_pairs(submissions, BASE, min_score=0.0), list)


def test_the_page_escapes_student_ids_code_and_values(tmp_path):
    hostile = "<script>alert('id')</script>"
    code = "def sigmoid(x):\n    s = '<script>alert(2)</script>'\n    return 1.0 / (1.0 + np.exp(-x)) + len(s)\n"
    submissions = {hostile: {"sigmoid": code}, "b<img src=x onerror=alert(3)>": {"sigmoid": code}}
    values = {name: [WrongValue("c", "same", True, "<script>alert(4)</script>")] for name in submissions}
    pairs = find_similar_pairs(submissions, BASE, wrong_values=values, assignment="<b>a</b>")
    assert pairs and pairs[0].combined_score >= THRESHOLD
    page = write_html(pairs, {"<b>a</b>": submissions}, {"<b>a</b>": BASE}, tmp_path / "p.html",
                      notes=["<script>note</script>"]).read_text()
    assert "<script" not in page and "onerror" not in page.replace("onerror=alert(3)&gt;", "")
    assert "&lt;script&gt;alert" in page and "Content-Security-Policy" in page and "<mark>" in page


def distinct_class(students: int, seed: int = 0) -> dict[str, dict[str, str]]:
    """Every student writes different code: constants of their own in each statement."""
    rng = random.Random(seed)
    operations = ["np.exp", "np.log", "np.sum", "np.mean", "abs", "np.sqrt"]
    return {f"s{index:03d}": {"cell": "\n".join(
        f"v{line} = {rng.choice(operations)}(x) * {index * 1000 + line} + {rng.randrange(10**6)}"
        for line in range(12))} for index in range(students)}


def test_the_index_scores_far_fewer_pairs_than_all():
    students = 300
    result = compare_assignment(distinct_class(students), {})
    assert result.pairs_scored < 0.02 * students * (students - 1) / 2
    assert compare_assignment(distinct_class(40), {}, brute_force=True).pairs_scored == 40 * 39 // 2


def test_brute_force_finds_the_same_pairs():
    submissions = honest_class() | {"copier": COPIED, "copier_2": {cell: source.replace("x", "xs")
                                                                   for cell, source in SIGMOID_STEP_TRAIN(4).items()}}
    fast = compare_assignment(submissions, BASE)
    slow = compare_assignment(submissions, BASE, brute_force=True)
    key = [(pair.student_a, pair.student_b, round(pair.combined_score, 9)) for pair in fast.pairs]
    assert key and key == [(pair.student_a, pair.student_b, round(pair.combined_score, 9)) for pair in slow.pairs]
    assert fast.pairs_scored < slow.pairs_scored


def SIGMOID_STEP_TRAIN(index: int) -> dict[str, str]:  # noqa: N802 - reads like the three lists above
    return {"sigmoid": SIGMOID[index], "step": STEP[index], "train": TRAIN[index]}


def _notebook(cells: list) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells
    return notebook


def test_the_command_on_a_tiny_workdir(tmp_path, capsys):
    from cml.instructor.analytics.similarity import add_arguments, run

    release = nbformat.read(REPO / "release" / "01_neuron" / "01_neuron.ipynb", as_version=4)
    wanted = {"imports", "sigmoid", "test_sigmoid", "gradient_descent", "test_gradient_descent"}
    cells = [cell for cell in release.cells if cell.metadata.get("nbgrader", {}).get("grade_id") in wanted]
    assert len(cells) == 5
    workdir = tmp_path / "work"
    (workdir / "release" / "01_neuron").mkdir(parents=True)
    nbformat.write(_notebook(cells), workdir / "release" / "01_neuron" / "01_neuron.ipynb")
    answers = {"ann": (SIGMOID[0], STEP[0]), "bob": (SIGMOID[0].replace("x", "z") + "# mine\n", STEP[0]),
               "cat": (SIGMOID[2], STEP[2]), "<script>dan</script>": (SIGMOID[5], STEP[5])}
    for student, (sigmoid, descent) in answers.items():
        filled = []
        for cell in cells:
            cell = nbformat.from_dict(json.loads(json.dumps(cell)))
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            if grade_id == "sigmoid":
                cell.source = cell.source.replace("raise NotImplementedError()", sigmoid.split(":", 1)[1])
            elif grade_id == "gradient_descent":
                cell.source = cell.source.replace("raise NotImplementedError()", descent.split(":", 1)[1])
            filled.append(cell)
        folder = workdir / "submitted" / student / "01_neuron"
        folder.mkdir(parents=True)
        nbformat.write(_notebook(filled), folder / "01_neuron.ipynb")
    broken = workdir / "submitted" / "eve" / "01_neuron"
    broken.mkdir(parents=True)
    (broken / "01_neuron.ipynb").write_text("{ not json")
    checks = [{"notebook": "01_neuron", "cell": "test_sigmoid", "id": "sigmoid.hidden_values", "hidden": True,
               "status": "failed", "digest": "abcdef0123456789", "value": "<b>0.7</b>", "message": ""}]
    report = {"submissions": [{"student": name, "assignment": "01_neuron", "checks": checks if name != "cat" else []}
                              for name in ("cat", "<script>dan</script>")]}
    (workdir / "reports" / "20261130-000000").mkdir(parents=True)
    (workdir / "reports" / "20261130-000000" / "report.json").write_text(json.dumps(report))

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(workdir), "--top", "3"])) == 0
    out = workdir / "reports" / "similarity"
    rows = list(csv.DictReader((out / "similarity.csv").open(encoding="utf-8")))
    assert (rows[0]["student_a"], rows[0]["student_b"]) == ("ann", "bob")
    assert float(rows[0]["combined"]) >= THRESHOLD
    page = (out / "similarity.html").read_text()
    assert "01_neuron.ipynb skipped" in page and "eve" in page and "<script" not in page
    assert "similarity.html" in capsys.readouterr().out
