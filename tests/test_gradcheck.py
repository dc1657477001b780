"""The students' gradient checker: right gradients pass, plausible wrong ones fail, nothing is left perturbed."""

import numpy as np
import pytest

from cml.gradcheck import GOOD, gradient_check


def _two_layer(rng):
    X = rng.standard_normal((5, 3))
    params = {"W1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4),
              "W2": rng.standard_normal((4, 2)), "b2": rng.standard_normal(2)}

    def forward():
        h = np.tanh(X @ params["W1"] + params["b1"])
        return h @ params["W2"] + params["b2"]

    def backward(upstream):
        h = np.tanh(X @ params["W1"] + params["b1"])
        d_a = (upstream @ params["W2"].T) * (1 - h ** 2)
        return {"W1": X.T @ d_a, "b1": d_a.sum(axis=0), "W2": h.T @ upstream, "b2": upstream.sum(axis=0)}

    return params, forward, backward


def test_a_correct_backward_pass_is_ok_on_every_layer_and_arrays_are_restored():
    params, forward, backward = _two_layer(np.random.default_rng(0))
    before = {name: value.copy() for name, value in params.items()}
    upstream = np.random.default_rng(1).standard_normal((5, 2))
    report = gradient_check(forward, params, backward(upstream), upstream=upstream)
    assert [row.verdict for row in report.rows] == ["ok"] * 4
    assert report.max_error < GOOD and report.passed()
    assert all(np.array_equal(params[name], before[name]) for name in params)
    assert "W1" in str(report) and "<table>" in report._repr_html_()


def test_a_hidden_layer_error_is_named():
    params, forward, backward = _two_layer(np.random.default_rng(2))
    upstream = np.random.default_rng(3).standard_normal((5, 2))
    gradients = backward(upstream)
    gradients["W1"] = -gradients["W1"]
    report = gradient_check(forward, params, gradients, upstream=upstream)
    assert report["W1"].verdict == "WRONG" and report["W2"].verdict == "ok"
    assert not report.passed()


def test_an_upstream_gradient_catches_what_a_plain_sum_hides():
    z = np.random.default_rng(4).standard_normal((3, 4))

    def softmax():
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    wrong = {"z": np.zeros_like(z)}  # the gradient of sum(softmax) is zero: a plain sum would accept it
    report = gradient_check(softmax, {"z": z}, wrong, upstream="random")
    assert report["z"].verdict == "WRONG"


def test_shape_mismatch_array_output_without_upstream_and_missing_gradient_are_clear():
    w = np.ones(3)
    assert gradient_check(lambda: w.sum(), {"w": w}, {"w": np.ones(4)})["w"].verdict == "WRONG"
    with pytest.raises(ValueError, match="upstream"):
        gradient_check(lambda: w * 2, {"w": w}, {"w": np.ones(3)})
    with pytest.raises(KeyError, match="w"):
        gradient_check(lambda: w.sum(), {"w": w}, {})
    with pytest.raises(TypeError, match="float"):
        gradient_check(lambda: 0.0, {"n": np.arange(3)}, {"n": np.zeros(3)})


def test_max_entries_samples_large_arrays():
    w = np.random.default_rng(5).standard_normal((30, 30))
    report = gradient_check(lambda: np.sum(w ** 2), {"w": w}, {"w": 2 * w}, max_entries=50)
    assert report["w"].checked == 50 and report["w"].verdict == "ok"
    full = gradient_check(lambda: np.sum(w ** 2), {"w": w}, {"w": 2 * w}, max_entries=None)
    assert full["w"].checked == 900
